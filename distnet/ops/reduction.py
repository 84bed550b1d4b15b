"""Reductions over an axis, several axes, or all elements.

``axis=None`` reduces everything; an int or tuple reduces those axes
(negative axes count from the end); ``keepdims`` keeps them with size 1.
Seed 000: on ``[[1,2,3],[4,5,6]]`` axis 0 sums the columns ``[5,7,9]``,
axis 1 the rows ``[6,15]``, no axis everything ``21``.
"""
from __future__ import annotations

import numpy as np

from distnet.autodiff import Op
from distnet.errors import InvalidArgumentError
from distnet.tensor import Tensor, as_tensor


def normalize_axis(axis, ndim: int, op_name: str) -> tuple[int, ...]:
    """``axis`` as a sorted tuple of non-negative ints, validated."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)):
            raise InvalidArgumentError(f"{op_name}: axis must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < max(ndim, 1) or (ndim == 0 and a not in (0, -1)):
            raise InvalidArgumentError(f"{op_name}: axis {a} is out of range for a tensor of rank {ndim}")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise InvalidArgumentError(f"{op_name}: repeated axis in {axis!r}")
    return tuple(sorted(out)) if ndim else ()


def _kept_shape(shape: tuple, axes: tuple) -> tuple:
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Sum(Op):
    __slots__ = ("shape", "axes")

    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        self.shape = x.shape
        return np.sum(x, axis=self.axes, keepdims=True)

    def backward(self, g, needs):
        return (np.broadcast_to(g, self.shape).copy(),)


def reduce_sum(x, axis=None, keepdims: bool = False) -> Tensor:
    """Sum of elements across ``axis`` (TF's ``tf.reduce_sum``)."""
    x = as_tensor(x)
    axes = normalize_axis(axis, x.ndim, "reduce_sum")
    out = Sum.apply(x, axes=axes)
    if keepdims:
        return out
    from distnet.ops.shape import reshape

    return reshape(out, tuple(n for i, n in enumerate(x.shape) if i not in axes))
