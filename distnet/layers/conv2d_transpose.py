"""``Conv2DTranspose``: transposed 2-D convolution (Keras ``Conv2DTranspose``, ``tf.layers.conv2d_transpose``)."""
from __future__ import annotations

from typing import Optional

from distnet.errors import InvalidArgumentError, ShapeError
from distnet.layers.base import NAME, PADDING, WEIGHTED, WeightedLayer, check_padding, pair_option, positive_pair
from distnet.registry import INT, REQUIRED, Option, register
from distnet.tensor import Tensor


def transpose_out(size: int, k: int, s: int, padding: str) -> int:
    """Keras' output size: ``in * s`` ('same'), ``in * s + max(k - s, 0)`` ('valid')."""
    return size * s if padding == "SAME" else size * s + max(k - s, 0)


@register("layer", "conv2d_transpose",
          Option("filters", INT, doc="output channels", low=0, low_open=True),
          pair_option("kernel_size", REQUIRED, "`kh` or `[kh, kw]`"),
          pair_option("strides", 1, "`s` or `[sh, sw]`"), PADDING, *WEIGHTED, NAME,
          aliases=("deconv2d", "conv_transpose"),
          doc="transposed convolution (up-sampling by `strides`), kernel `[kh, kw, filters, in]`; output "
              "`in * s` (`\"same\"`) or `in * s + max(k - s, 0)` (`\"valid\"`)",
          image_input=True)
class Conv2DTranspose(WeightedLayer):
    """The transpose of :class:`Conv2D` (kernel ``[kh, kw, filters, in_channels]``, TF's layout).

    Args:
      filters: output channels, > 0.
      kernel_size: int or (kh, kw).
      strides: int or (sh, sw), default 1: the up-sampling factor.
      padding: 'valid' (default, Keras) or 'same'.
      activation, use_bias, kernel_initializer, bias_initializer,
      kernel_regularizer, bias_regularizer, name: as :class:`Dense`.

    Example:
      >>> Conv2DTranspose(16, 3, strides=2, padding="same")    # 7x7 -> 14x14
    """

    base_name = "conv2d_transpose"

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, name: Optional[str] = None):
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise InvalidArgumentError(f"Conv2DTranspose: filters: Expect: a positive int Actual: {filters!r}")
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, name)
        self.filters = filters
        self.kernel_size = positive_pair(kernel_size, "kernel_size", "Conv2DTranspose")
        self.strides = positive_pair(strides, "strides", "Conv2DTranspose")
        self.padding = check_padding(padding, "Conv2DTranspose")

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(f"Conv2DTranspose {self.name!r}: expects NHWC inputs [batch, height, width, channels]; "
                             f"Actual: per-sample shape {tuple(input_shape)}")
        h, w, _ = input_shape
        return (transpose_out(h, self.kernel_size[0], self.strides[0], self.padding),
                transpose_out(w, self.kernel_size[1], self.strides[1], self.padding), self.filters)

    def build_weights(self, input_shape, rng):
        # Keras' initializers see [kh, kw, filters, in]: fan_in = kh*kw*filters as Keras computes it.
        self._make_weights(self.kernel_size + (self.filters, input_shape[2]), self.filters, rng)

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:
        from distnet.nn import conv2d_transpose

        out = (x.shape[0],) + self.output_shape
        return self._finish(conv2d_transpose(x, self.kernel, out, strides=self.strides, padding=self.padding))
