"""``AvgPool2D`` and ``GlobalAvgPool2D``: means over windows / over the whole image of NHWC inputs."""
from __future__ import annotations

from typing import Optional

from distnet.errors import ShapeError
from distnet.layers._pool2d import _Pool2D
from distnet.layers.base import NAME, PADDING, Layer, pair_option
from distnet.registry import register
from distnet.tensor import Tensor


@register("layer", "avg_pool2d", pair_option("pool_size", 2, "`p` or `[ph, pw]`"),
          pair_option("strides", None, "`s` or `[sh, sw]` (default `pool_size`)"), PADDING, NAME,
          aliases=("average_pooling2d", "avgpool2d", "avg_pool"),
          doc="mean over windows of NHWC images (`\"same\"`: a border window averages its real pixels)",
          image_input=True)
class AvgPool2D(_Pool2D):
    """Average pooling (Keras ``AveragePooling2D``; no variables).

    Args:
      pool_size: int or (ph, pw), default 2.
      strides: int or pair; default ``pool_size``.
      padding: 'valid' (default) or 'same' (border windows average their real pixels, as TF).
      name: layer name (default ``average_pooling2d``, as Keras).
    """

    base_name = "average_pooling2d"

    pool_op = "avg_pool"


@register("layer", "global_avg_pool2d", NAME, aliases=("global_average_pooling2d",),
          doc="`[batch, h, w, c] -> [batch, c]`: the mean of each channel over the image",
          image_input=True, flat_output=True)
class GlobalAvgPool2D(Layer):
    """The mean over height and width (Keras ``GlobalAveragePooling2D``)."""

    base_name = "global_average_pooling2d"

    def __init__(self, name: Optional[str] = None):
        super().__init__(name=name)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(f"GlobalAvgPool2D {self.name!r}: expects NHWC inputs [batch, height, width, channels]; "
                             f"Actual: per-sample shape {tuple(input_shape)}")
        return (input_shape[2],)

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:
        from distnet.ops import reduce_mean

        return reduce_mean(x, axis=[1, 2])


AveragePooling2D = AvgPool2D
GlobalAveragePooling2D = GlobalAvgPool2D
