"""``Reshape``: ``[batch, ...] -> [batch, *target_shape]`` (Keras ``Reshape``)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from distnet.errors import InvalidArgumentError, ShapeError
from distnet.layers.base import NAME, Layer
from distnet.registry import INT_LIST, REQUIRED, Option, register
from distnet.tensor import Tensor


@register("layer", "reshape", Option("target_shape", INT_LIST, REQUIRED,
                                     "the per-sample shape, one entry may be -1 (inferred)"), NAME,
          doc="`[batch, ...] -> [batch, *target_shape]` (row-major; e.g. images to rows for a recurrent layer)",
          sequence_output=True)
class Reshape(Layer):
    """Keep the batch axis, reshape the rest (row-major), one ``-1`` inferred.

    Example:
      >>> Sequential([Dense(7 * 7 * 8), Reshape((7, 7, 8)), Conv2DTranspose(1, 3, 4, "same")], input_shape=(16,))
    """

    base_name = "reshape"

    def __init__(self, target_shape, name: Optional[str] = None):
        super().__init__(name=name)
        try:
            shape = tuple(int(v) for v in target_shape)
            ok = all(int(v) == v and not isinstance(v, bool) for v in target_shape)
        except (TypeError, ValueError):
            ok, shape = False, ()
        if not ok or not shape or any(v == 0 or v < -1 for v in shape) or shape.count(-1) > 1:
            raise InvalidArgumentError(f"Reshape: target_shape: Expect: positive ints with at most one -1 "
                                       f"Actual: {target_shape!r}")
        self.target_shape = shape

    def compute_output_shape(self, input_shape):
        total = int(np.prod(input_shape, dtype=np.int64))
        known = int(np.prod([v for v in self.target_shape if v != -1], dtype=np.int64))
        if -1 in self.target_shape:
            if total % known:
                raise ShapeError(f"Reshape {self.name!r}: cannot reshape {tuple(input_shape)} ({total} values) to "
                                 f"{self.target_shape}: {total} is not a multiple of {known}")
            return tuple(total // known if v == -1 else v for v in self.target_shape)
        if known != total:
            raise ShapeError(f"Reshape {self.name!r}: Expect: a target_shape of {total} values (the input "
                             f"{tuple(input_shape)}) Actual: {self.target_shape} holds {known}")
        return self.target_shape

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:
        from distnet.ops import reshape

        return reshape(x, (x.shape[0],) + self.output_shape)
