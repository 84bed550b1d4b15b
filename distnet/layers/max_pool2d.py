"""``MaxPool2D``: maximum over 2-D windows of NHWC inputs."""
from __future__ import annotations

from typing import Optional

from distnet.errors import ShapeError
from distnet.layers.base import NAME, PADDING, Layer, check_padding, pair_option, positive_pair, window_out
from distnet.registry import register
from distnet.tensor import Tensor


@register("layer", "max_pool2d", pair_option("pool_size", 2, "`p` or `[ph, pw]`"),
          pair_option("strides", None, "`s` or `[sh, sw]` (default `pool_size`)"), PADDING, NAME,
          aliases=("maxpool2d", "max_pool", "maxpool"), doc="maximum over windows of NHWC images",
          image_input=True)
class MaxPool2D(Layer):
    """Max pooling (Keras ``MaxPool2D``; no variables).

    Args:
      pool_size: int or (ph, pw), default 2.
      strides: int or pair; default ``pool_size``.
      padding: 'valid' (default) or 'same'.
      name: layer name (default ``max_pooling2d``, as Keras).

    Example:
      >>> MaxPool2D(2, padding="same")
    """

    base_name = "max_pooling2d"

    def __init__(self, pool_size=2, strides=None, padding: str = "valid", name: Optional[str] = None):
        super().__init__(name=name)
        self.pool_size = positive_pair(pool_size, "pool_size", "MaxPool2D")
        self.strides = self.pool_size if strides is None else positive_pair(strides, "strides", "MaxPool2D")
        self.padding = check_padding(padding, "MaxPool2D")

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(f"MaxPool2D {self.name!r}: expects NHWC inputs [batch, height, width, channels]; "
                             f"Actual: per-sample shape {tuple(input_shape)}")
        h, w, c = input_shape
        oh = window_out(h, self.pool_size[0], self.strides[0], self.padding)
        ow = window_out(w, self.pool_size[1], self.strides[1], self.padding)
        if oh <= 0 or ow <= 0:
            raise ShapeError(f"MaxPool2D {self.name!r}: pool {self.pool_size} is larger than the input {(h, w)}")
        return (oh, ow, c)

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:
        from distnet.nn import max_pool

        return max_pool(x, ksize=self.pool_size, strides=self.strides, padding=self.padding)


MaxPooling2D = MaxPool2D
