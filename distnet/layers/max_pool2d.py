"""``MaxPool2D``: maximum over 2-D windows of NHWC inputs."""
from __future__ import annotations

from distnet.layers._pool2d import _Pool2D
from distnet.layers.base import NAME, PADDING, pair_option
from distnet.registry import register


@register("layer", "max_pool2d", pair_option("pool_size", 2, "`p` or `[ph, pw]`"),
          pair_option("strides", None, "`s` or `[sh, sw]` (default `pool_size`)"), PADDING, NAME,
          aliases=("maxpool2d", "max_pool", "maxpool"), doc="maximum over windows of NHWC images",
          image_input=True)
class MaxPool2D(_Pool2D):
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

    pool_op = "max_pool"


MaxPooling2D = MaxPool2D
