"""Element-wise arithmetic: add, subtract, multiply, divide, negative, ...

Binary ops broadcast like numpy; their backward sums the gradient back to
each operand's shape with :func:`~distnet.autodiff.unbroadcast`.
Derived ops (``subtract``) are composed from primitives and need no backward.
"""
from __future__ import annotations

import numpy as np

from distnet.autodiff import Op, unbroadcast
from distnet.errors import ShapeError
from distnet.tensor import Tensor, as_tensor, binary_operands


def check_broadcast(op_name: str, a: Tensor, b: Tensor) -> None:
    """Raise a ShapeError naming both shapes when they cannot broadcast."""
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ShapeError(
            f"{op_name}: incompatible shapes {a.shape} and {b.shape}; "
            "Expect: shapes that broadcast (equal, or 1, in each trailing dimension)"
        ) from None


def binary(op_cls, op_name: str, x, y) -> Tensor:
    """Convert, check and apply a broadcasting binary op."""
    x, y = binary_operands(x, y, op_name)
    check_broadcast(op_name, x, y)
    return op_cls.apply(x, y)


class Add(Op):
    __slots__ = ("xs", "ys")

    def forward(self, x, y):
        self.xs, self.ys = x.shape, y.shape
        return x + y

    def backward(self, g, needs):
        return (unbroadcast(g, self.xs) if needs[0] else None,
                unbroadcast(g, self.ys) if needs[1] else None)


class Multiply(Op):
    __slots__ = ("x", "y")

    def forward(self, x, y):
        self.x, self.y = x, y
        return x * y

    def backward(self, g, needs):
        return (unbroadcast(g * self.y, self.x.shape) if needs[0] else None,
                unbroadcast(g * self.x, self.y.shape) if needs[1] else None)


class Negative(Op):
    __slots__ = ()

    def forward(self, x):
        return -x

    def backward(self, g, needs):
        return (-g,)


def add(x, y) -> Tensor:
    """``x + y`` element-wise, with broadcasting."""
    return binary(Add, "add", x, y)


def multiply(x, y) -> Tensor:
    """``x * y`` element-wise, with broadcasting."""
    return binary(Multiply, "multiply", x, y)


def negative(x) -> Tensor:
    """``-x``."""
    return Negative.apply(as_tensor(x))


def subtract(x, y) -> Tensor:
    """``x - y``, composed as ``x + (-y)``."""
    x, y = binary_operands(x, y, "subtract")
    check_broadcast("subtract", x, y)
    return add(x, negative(y))
