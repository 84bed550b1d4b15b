"""``Flatten``: ``[batch, d1, d2, ...] -> [batch, d1 * d2 * ...]``."""
from __future__ import annotations

from typing import Optional

import numpy as np

from distnet.layers.base import NAME, Layer
from distnet.registry import register
from distnet.tensor import Tensor


@register("layer", "flatten", NAME, doc="`[batch, d1, d2, ...] -> [batch, d1 * d2 * ...]`",
          flat_output=True)
class Flatten(Layer):
    """Keep the batch axis, flatten the rest (row-major, as Keras' channels_last).

    Example:
      >>> Sequential([Conv2D(8, 3), Flatten(), Dense(10)], input_shape=(28, 28, 1))
    """

    base_name = "flatten"

    def __init__(self, name: Optional[str] = None):
        super().__init__(name=name)

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape, dtype=np.int64)),)

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:
        from distnet.ops import reshape

        return reshape(x, (x.shape[0],) + self.output_shape)
