"""``Conv2D``: 2-D convolution over NHWC inputs (TF's ``tf.layers.conv2d`` / Keras ``Conv2D``)."""
from __future__ import annotations

from typing import Optional

from distnet.errors import InvalidArgumentError, ShapeError
from distnet.layers.base import (
    NAME, PADDING, WEIGHTED, WeightedLayer, check_padding, pair_option, positive_pair, window_out,
)
from distnet.registry import INT, REQUIRED, Option, register
from distnet.tensor import Tensor


@register("layer", "conv2d",
          Option("filters", INT, doc="output channels", low=0, low_open=True),
          pair_option("kernel_size", REQUIRED, "`kh` or `[kh, kw]`"),
          pair_option("strides", 1, "`s` or `[sh, sw]`"), PADDING, *WEIGHTED, NAME,
          aliases=("conv",), doc="2-D convolution over NHWC images, kernel `[kh, kw, in, filters]`",
          image_input=True)
class Conv2D(WeightedLayer):
    """Convolution with a kernel ``[kh, kw, in_channels, filters]`` (HWIO).

    Args:
      filters: number of output channels, > 0.
      kernel_size: int or (kh, kw).
      strides: int or (sh, sw), default 1.
      padding: 'valid' (default, Keras) or 'same' (output ``ceil(in / stride)``).
      activation, use_bias, kernel_initializer, bias_initializer,
      kernel_regularizer, bias_regularizer, name: as :class:`Dense`.

    Example:
      >>> Conv2D(32, 5, padding="same", activation="relu")   # the reference net's first layer
    """

    base_name = "conv2d"

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, name: Optional[str] = None):
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise InvalidArgumentError(f"Conv2D: filters: Expect: a positive int Actual: {filters!r}")
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, name)
        self.filters = filters
        self.kernel_size = positive_pair(kernel_size, "kernel_size", "Conv2D")
        self.strides = positive_pair(strides, "strides", "Conv2D")
        self.padding = check_padding(padding, "Conv2D")
        #: the convolution algorithm (``distnet.nn.conv2d``'s ``algorithm``); set by
        #: :func:`distnet.nn.conv_choice.choose_conv_algorithms` (the Trainer's ``conv_algorithm``)
        self.algorithm = "gemm"

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(f"Conv2D {self.name!r}: expects NHWC inputs [batch, height, width, channels]; "
                             f"Actual: per-sample shape {tuple(input_shape)}")
        h, w, _ = input_shape
        oh = window_out(h, self.kernel_size[0], self.strides[0], self.padding)
        ow = window_out(w, self.kernel_size[1], self.strides[1], self.padding)
        if oh <= 0 or ow <= 0:
            raise ShapeError(f"Conv2D {self.name!r}: kernel {self.kernel_size} is larger than the input "
                             f"{(h, w)} with padding 'valid'")
        return (oh, ow, self.filters)

    def build_weights(self, input_shape, rng):
        self._make_weights(self.kernel_size + (input_shape[2], self.filters), self.filters, rng)

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:
        from distnet.nn import conv2d

        return self._finish(conv2d(x, self.kernel, strides=self.strides, padding=self.padding,
                                   algorithm=self.algorithm))
