"""Ops that move elements without computing: reshape, transpose, concat,
stack, indexing/gather, cast, stop_gradient."""
from __future__ import annotations

import numpy as np

from distnet.autodiff import Op
from distnet.errors import ShapeError
from distnet.tensor import Tensor, as_tensor


class Reshape(Op):
    __slots__ = ("shape", "in_shape")

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, g, needs):
        return (g.reshape(self.in_shape),)


def reshape(x, shape) -> Tensor:
    """``x`` with a new shape of the same size; one dimension may be -1."""
    x = as_tensor(x)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    try:
        x.data.reshape(shape)  # a view: validates without copying
    except ValueError:
        raise ShapeError(f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) to {shape}") from None
    if shape == x.shape:
        return x
    return Reshape.apply(x, shape=shape)
