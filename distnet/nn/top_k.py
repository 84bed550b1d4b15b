"""``top_k``: the ``k`` largest entries of the last axis and their indices (TF's ``tf.nn.top_k``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.autodiff import Op
from distnet.errors import InvalidArgumentError, ShapeError
from distnet.tensor import Tensor, as_tensor


class TopKValues(Op):
    __slots__ = ("indices", "shape")

    def __init__(self, indices):
        self.indices = indices

    def forward(self, x):
        self.shape = x.shape
        return np.take_along_axis(x, self.indices, axis=-1)

    def backward(self, g, needs):
        gx = np.zeros(self.shape, dtype=g.dtype)
        np.put_along_axis(gx, self.indices, g, axis=-1)   # the k indices of a row are distinct
        return (gx,)


def top_k(input: Any, k: int = 1, sorted: bool = True, name: str | None = None) -> tuple:  # noqa: A002
    """``(values, indices)``: the ``k`` largest entries along the last axis.

    Ties are broken by the lower index first, as TF does; with ``sorted``
    (the default) the values are in descending order (TF leaves the order
    unspecified otherwise; here it is the same).  ``indices`` are int32 and
    have no gradient; the values' gradient goes to the chosen entries.

    Example:
      >>> v, i = distnet.nn.top_k([1.0, 3.0, 2.0], k=2)
      >>> v.numpy(), i.numpy()
      (array([3., 2.], dtype=float32), array([1, 2], dtype=int32))
    """
    x = as_tensor(input)
    if x.ndim == 0:
        raise ShapeError("top_k: Expect: a tensor of rank >= 1 Actual: a scalar")
    k = int(k.data) if isinstance(k, Tensor) else k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= x.shape[-1]:
        raise InvalidArgumentError(f"top_k: Expect: k an int in [0, {x.shape[-1]}] (the last size of the input) "
                                   f"Actual: {k!r}")
    # A stable sort of the negated values keeps equal values in index order.
    order = np.argsort(-x.data if x.dtype.kind != "u" else x.data.max() - x.data, axis=-1, kind="stable")
    idx = order[..., :k].astype(np.int32)
    values = TopKValues.apply(x, indices=idx.astype(np.intp))
    return values, Tensor(idx)
