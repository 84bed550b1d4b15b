"""Element-wise arithmetic: add, subtract, multiply, divide, negative, square,
sqrt, pow, exp, log, abs, sign, maximum, minimum.

Binary ops broadcast like numpy; their backward sums the gradient back to
each operand's shape with :func:`~distnet.autodiff.unbroadcast`.  Operands are
converted with :func:`~distnet.tensor.binary_operands`: a Python number takes
the tensor's dtype, two tensors of different dtypes are a
:class:`~distnet.errors.DTypeError` (TF1).

``exp``, ``log`` and ``sqrt`` need a floating tensor (TF1 rejects integer
input rather than promoting it); cast first with :func:`distnet.cast`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from distnet.autodiff import Op, unbroadcast
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.tensor import Tensor, as_tensor, binary_operands


def check_broadcast(op_name: str, a: Tensor, b: Tensor) -> None:
    """Raise a ShapeError naming both shapes when they cannot broadcast."""
    sa, sb = a.data.shape, b.data.shape
    if sa == sb or not sa or not sb:
        return
    # numpy's rule, checked in plain Python (np.broadcast_shapes costs ~2 us).
    for m, n in zip(reversed(sa), reversed(sb)):
        if m != n and m != 1 and n != 1:
            raise ShapeError(
                f"{op_name}: incompatible shapes {sa} and {sb}; "
                "Expect: shapes that broadcast (equal, or 1, in each trailing dimension)"
            )


def binary(op_cls, op_name: str, x: Any, y: Any) -> Tensor:
    """Convert, check and apply a broadcasting binary op."""
    x, y = binary_operands(x, y, op_name)
    check_broadcast(op_name, x, y)
    return op_cls.apply(x, y)


def require_float(op_name: str, x: Tensor) -> None:
    """Raise a DTypeError unless ``x`` has a floating dtype."""
    if x.data.dtype.kind != "f":
        raise DTypeError(
            f"{op_name}: Expect: a floating tensor (float32 or float64) Actual: {x.dtype.name}; "
            "use distnet.cast to convert it"
        )


# -- binary ops ---------------------------------------------------------------

class Add(Op):
    __slots__ = ("xs", "ys")

    def forward(self, x, y):
        self.xs, self.ys = x.shape, y.shape
        return x + y

    def backward(self, g, needs):
        return (unbroadcast(g, self.xs) if needs[0] else None,
                unbroadcast(g, self.ys) if needs[1] else None)


class Subtract(Op):
    __slots__ = ("xs", "ys")

    def forward(self, x, y):
        self.xs, self.ys = x.shape, y.shape
        return x - y

    def backward(self, g, needs):
        return (unbroadcast(g, self.xs) if needs[0] else None,
                unbroadcast(-g, self.ys) if needs[1] else None)


class Multiply(Op):
    __slots__ = ("x", "y")

    def forward(self, x, y):
        self.x, self.y = x, y
        return x * y

    def backward(self, g, needs):
        return (unbroadcast(g * self.y, self.x.shape) if needs[0] else None,
                unbroadcast(g * self.x, self.y.shape) if needs[1] else None)


class Divide(Op):
    __slots__ = ("x", "y", "out")

    def forward(self, x, y):
        self.x, self.y = x, y
        self.out = x / y
        return self.out

    def backward(self, g, needs):
        gx = unbroadcast(g / self.y, self.x.shape) if needs[0] else None
        # d(x/y)/dy = -x / y**2 = -out / y
        gy = unbroadcast(-g * self.out / self.y, self.y.shape) if needs[1] else None
        return gx, gy


class Pow(Op):
    __slots__ = ("x", "y", "out")

    def forward(self, x, y):
        self.x, self.y = x, y
        self.out = np.power(x, y)
        return self.out

    def backward(self, g, needs):
        x, y = self.x, self.y
        gx = gy = None
        if needs[0]:
            gx = unbroadcast(g * y * np.power(x, y - 1), x.shape)
        if needs[1]:
            # TF1: the exponent's gradient is out * log(x) where x > 0, else 0
            # (log of a non-positive base is undefined; TF masks it to zero).
            pos = x > 0
            logx = np.log(np.where(pos, x, 1))
            gy = unbroadcast(g * self.out * logx, y.shape)
        return gx, gy


class Maximum(Op):
    __slots__ = ("mask", "xs", "ys")

    def forward(self, x, y):
        self.xs, self.ys = x.shape, y.shape
        # TF1 (_MaximumGrad): x gets the gradient where x >= y, so ties go to x.
        self.mask = x >= y
        return np.maximum(x, y)

    def backward(self, g, needs):
        zero = np.zeros((), dtype=g.dtype)
        return (unbroadcast(np.where(self.mask, g, zero), self.xs) if needs[0] else None,
                unbroadcast(np.where(self.mask, zero, g), self.ys) if needs[1] else None)


class Minimum(Op):
    __slots__ = ("mask", "xs", "ys")

    def forward(self, x, y):
        self.xs, self.ys = x.shape, y.shape
        # TF1 (_MinimumGrad): x gets the gradient where x <= y, so ties go to x.
        self.mask = x <= y
        return np.minimum(x, y)

    def backward(self, g, needs):
        zero = np.zeros((), dtype=g.dtype)
        return (unbroadcast(np.where(self.mask, g, zero), self.xs) if needs[0] else None,
                unbroadcast(np.where(self.mask, zero, g), self.ys) if needs[1] else None)


class AddN(Op):
    __slots__ = ()

    def forward(self, *xs):
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out += x  # ``out`` is a fresh array: accumulate in place
        return out

    def backward(self, g, needs):
        return tuple(g if n else None for n in needs)


# -- unary ops ----------------------------------------------------------------

class Negative(Op):
    __slots__ = ()

    def forward(self, x):
        return -x

    def backward(self, g, needs):
        return (-g,)


class Square(Op):
    __slots__ = ("x",)

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, g, needs):
        return (2 * g * self.x,)


class Sqrt(Op):
    __slots__ = ("out",)

    def forward(self, x):
        self.out = np.sqrt(x)
        return self.out

    def backward(self, g, needs):
        # TF1: grad * 0.5 / sqrt(x) (infinite at x == 0, as in TF).
        return (g * 0.5 / self.out,)


class Exp(Op):
    __slots__ = ("out",)

    def forward(self, x):
        self.out = np.exp(x)
        return self.out

    def backward(self, g, needs):
        return (g * self.out,)


class Log(Op):
    __slots__ = ("x",)

    def forward(self, x):
        self.x = x
        return np.log(x)

    def backward(self, g, needs):
        return (g / self.x,)


class Abs(Op):
    __slots__ = ("x",)

    def forward(self, x):
        self.x = x
        return np.abs(x)

    def backward(self, g, needs):
        # TF1: grad * sign(x), so the gradient at exactly 0 is 0.
        return (g * np.sign(self.x),)


class Sign(Op):
    __slots__ = ("shape",)

    def forward(self, x):
        self.shape = x.shape
        # NaN -> NaN (numpy, TF 2); early TF1 kernels gave 0 for NaN.
        return np.sign(x)

    def backward(self, g, needs):
        # TF1 (_SignGrad): the gradient is zeros, connected (not None).
        return (np.zeros(self.shape, dtype=g.dtype),)


# -- public functions ---------------------------------------------------------

def add(x: Any, y: Any) -> Tensor:
    """``x + y`` element-wise, with broadcasting.

    Args:
      x, y: tensors or values convertible to one (a number takes the other
        operand's dtype).

    Returns:
      A tensor of the broadcast shape.

    Example:
      >>> distnet.add([1.0, 2.0], 1.0).numpy()
      array([2., 3.], dtype=float32)
    """
    return binary(Add, "add", x, y)


def subtract(x: Any, y: Any) -> Tensor:
    """``x - y`` element-wise, with broadcasting."""
    return binary(Subtract, "subtract", x, y)


def multiply(x: Any, y: Any) -> Tensor:
    """``x * y`` element-wise, with broadcasting."""
    return binary(Multiply, "multiply", x, y)


def divide(x: Any, y: Any) -> Tensor:
    """``x / y`` element-wise (true division), with broadcasting.

    Integer tensors divide to float64, as numpy and TF1's ``truediv`` do for
    int32/int64.
    """
    return binary(Divide, "divide", x, y)


def pow(x: Any, y: Any) -> Tensor:  # noqa: A001  (TF's name)
    """``x ** y`` element-wise; ``y`` is a tensor or a number.

    The gradient w.r.t. ``x`` is ``y * x**(y-1)``; w.r.t. ``y`` it is
    ``x**y * log(x)`` where ``x > 0`` and 0 elsewhere (TF1).

    Example:
      >>> distnet.pow(distnet.constant([2.0, 3.0]), 2.0).numpy()
      array([4., 9.], dtype=float32)
    """
    x, y = binary_operands(x, y, "pow")
    check_broadcast("pow", x, y)
    if y.data.dtype.kind in "iu" and x.data.dtype.kind in "iu" and np.any(y.data < 0):
        raise InvalidArgumentError(
            "pow: integers to negative integer powers are not allowed; "
            f"Expect: exponents >= 0 for dtype {x.dtype.name} Actual: min exponent {y.data.min()}; "
            "cast the base to a float dtype"
        )
    return Pow.apply(x, y)


def maximum(x: Any, y: Any) -> Tensor:
    """Element-wise maximum, with broadcasting.

    Ties (``x == y``) send the whole gradient to ``x`` (TF1's convention).
    """
    return binary(Maximum, "maximum", x, y)


def minimum(x: Any, y: Any) -> Tensor:
    """Element-wise minimum, with broadcasting.

    Ties (``x == y``) send the whole gradient to ``x`` (TF1's convention).
    """
    return binary(Minimum, "minimum", x, y)


def negative(x: Any) -> Tensor:
    """``-x``."""
    return Negative.apply(as_tensor(x))


def square(x: Any) -> Tensor:
    """``x * x`` element-wise.

    Example:
      >>> distnet.reduce_sum(distnet.square([[5.0, -2.0], [-3.0, 1.0]])).numpy()
      np.float32(39.0)
    """
    return Square.apply(as_tensor(x))


def sqrt(x: Any) -> Tensor:
    """Element-wise square root of a floating tensor."""
    x = as_tensor(x)
    require_float("sqrt", x)
    return Sqrt.apply(x)


def exp(x: Any) -> Tensor:
    """Element-wise ``e ** x`` of a floating tensor."""
    x = as_tensor(x)
    require_float("exp", x)
    return Exp.apply(x)


def log(x: Any) -> Tensor:
    """Element-wise natural logarithm of a floating tensor (``-inf`` at 0, as TF)."""
    x = as_tensor(x)
    require_float("log", x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return Log.apply(x)


def abs(x: Any) -> Tensor:  # noqa: A001  (TF's name)
    """Element-wise absolute value; the gradient is ``sign(x)`` (0 at 0, TF1).

    Example:
      >>> distnet.reduce_sum(distnet.abs([[5.0, -2.0], [-3.0, 1.0]])).numpy()
      np.float32(11.0)
    """
    return Abs.apply(as_tensor(x))


def sign(x: Any) -> Tensor:
    """Element-wise sign: -1 where ``x < 0``, 0 where ``x == 0``, 1 where ``x > 0``
    (TF's ``tf.sign``), in ``x``'s dtype.

    NaN gives NaN (numpy's and TF 2's rule; early TF1 documented 0 for NaN:
    a NaN is not hidden here).  The gradient is zero everywhere (TF1's
    ``_SignGrad``): connected, so ``gradients`` gives zeros, never ``None``.

    Args:
      x: an integer or floating tensor, or a value convertible to one.

    Returns:
      A tensor of ``x``'s shape and dtype.

    Example:
      >>> distnet.sign(distnet.constant([-2.5, 0.0, 3.0])).numpy()
      array([-1.,  0.,  1.], dtype=float32)
    """
    x = as_tensor(x)
    if x.data.dtype.kind not in "iuf":
        raise DTypeError(
            f"sign: Expect: an integer or floating tensor Actual: {x.dtype.name}; "
            "use distnet.cast to convert it"
        )
    return Sign.apply(x)


def add_n(inputs: Sequence[Any]) -> Tensor:
    """Element-wise sum of a list of tensors of one shape and dtype (TF's ``tf.add_n``).

    One op for the whole list, e.g. ``add_n([base_loss] + regularization_losses)``
    for a total loss.

    Args:
      inputs: a non-empty list or tuple of tensors (numbers take the first
        tensor's dtype); no broadcasting, as in TF.

    Returns:
      Their sum; a single input is returned as it is.

    Example:
      >>> distnet.add_n([distnet.constant(1.0), distnet.constant(2.0), 3.0]).numpy()
      np.float32(6.0)
    """
    if not isinstance(inputs, (list, tuple)) or len(inputs) == 0:
        raise InvalidArgumentError(
            f"add_n: Expect: a non-empty list or tuple of tensors Actual: {type(inputs).__name__} "
            f"{'of length 0' if isinstance(inputs, (list, tuple)) else ''}".rstrip()
        )
    like = next((t for t in inputs if isinstance(t, Tensor)), None)
    ts = [as_tensor(t, like=like) for t in inputs]
    first = ts[0]
    for i, t in enumerate(ts):
        if t.dtype != first.dtype:
            raise DTypeError(
                f"add_n: all inputs must have one dtype. Expect: {first.dtype.name} "
                f"Actual: {t.dtype.name} at inputs[{i}]; use distnet.cast"
            )
        if t.shape != first.shape:
            raise ShapeError(
                f"add_n: all inputs must have one shape. Expect: {first.shape} "
                f"Actual: {t.shape} at inputs[{i}]"
            )
    if len(ts) == 1:
        return first
    return AddN.apply(*ts)


def squared_difference(x: Any, y: Any) -> Tensor:
    """``(x - y) ** 2`` element-wise, broadcasting (TF's ``tf.squared_difference``); composed.

    Example:
      >>> distnet.squared_difference(distnet.constant([1.0, 5.0]), 2.0).numpy()
      array([1., 9.], dtype=float32)
    """
    return square(subtract(x, y))
