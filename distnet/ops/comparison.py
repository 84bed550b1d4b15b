"""Comparisons and selection: greater, less, equal, ..., where,
clip_by_value, argmax / argmin, logical_and / or / not.

Comparisons and logical ops return bool tensors and record no op: they are
not differentiable and gradients do not flow through them (as in TF1).
``where`` and ``clip_by_value`` are differentiable in their value inputs.

``where(cond, x, y)`` follows TF1: a rank-1 ``cond`` with an ``x`` of higher
rank picks whole rows (``cond[i]`` chooses ``x[i]`` or ``y[i]``) and must have
``x``'s first size; otherwise ``cond``, ``x`` and ``y`` broadcast together.
``where_v2(cond, x, y)`` always broadcasts as numpy does (TF's ``where_v2``),
so a rank-1 ``cond`` there lines up with the *last* axis.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.autodiff import Op, unbroadcast
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.ops.arithmetic import check_broadcast
from distnet.ops.shape import _check_axis
from distnet.tensor import Tensor, as_tensor, binary_operands


def _leaf(data) -> Tensor:
    """A tensor with no op (not differentiable)."""
    return Tensor._from_op(data if isinstance(data, np.ndarray) else np.asarray(data), None, ())


def _compare(fn, op_name: str, x: Any, y: Any) -> Tensor:
    x, y = binary_operands(x, y, op_name)
    check_broadcast(op_name, x, y)
    return _leaf(fn(x.data, y.data))


def greater(x: Any, y: Any) -> Tensor:
    """``x > y`` element-wise, with broadcasting; a bool tensor (not differentiable).

    Example:
      >>> distnet.greater([1.0, 3.0], 2.0).numpy()
      array([False,  True])
    """
    return _compare(np.greater, "greater", x, y)


def greater_equal(x: Any, y: Any) -> Tensor:
    """``x >= y`` element-wise, with broadcasting; a bool tensor."""
    return _compare(np.greater_equal, "greater_equal", x, y)


def less(x: Any, y: Any) -> Tensor:
    """``x < y`` element-wise, with broadcasting; a bool tensor."""
    return _compare(np.less, "less", x, y)


def less_equal(x: Any, y: Any) -> Tensor:
    """``x <= y`` element-wise, with broadcasting; a bool tensor."""
    return _compare(np.less_equal, "less_equal", x, y)


def equal(x: Any, y: Any) -> Tensor:
    """``x == y`` element-wise, with broadcasting; a bool tensor.

    (``Tensor.__eq__`` compares identity, as in TF1; use this for values.)
    """
    return _compare(np.equal, "equal", x, y)


def not_equal(x: Any, y: Any) -> Tensor:
    """``x != y`` element-wise, with broadcasting; a bool tensor."""
    return _compare(np.not_equal, "not_equal", x, y)


def _as_bool(op_name: str, x: Any, arg: str = "x") -> Tensor:
    x = as_tensor(x)
    if x.dtype != np.bool_:
        raise DTypeError(f"{op_name}: {arg}: a bool tensor: Expect: bool Actual: {x.dtype.name}")
    return x


def logical_and(x: Any, y: Any) -> Tensor:
    """Element-wise ``x and y`` of bool tensors."""
    x, y = _as_bool("logical_and", x), _as_bool("logical_and", y, "y")
    check_broadcast("logical_and", x, y)
    return _leaf(np.logical_and(x.data, y.data))


def logical_or(x: Any, y: Any) -> Tensor:
    """Element-wise ``x or y`` of bool tensors."""
    x, y = _as_bool("logical_or", x), _as_bool("logical_or", y, "y")
    check_broadcast("logical_or", x, y)
    return _leaf(np.logical_or(x.data, y.data))


def logical_not(x: Any) -> Tensor:
    """Element-wise ``not x`` of a bool tensor."""
    return _leaf(np.logical_not(_as_bool("logical_not", x).data))


class Where(Op):
    __slots__ = ("cond", "xs", "ys")

    def __init__(self, cond):
        self.cond = cond

    def forward(self, x, y):
        self.xs, self.ys = x.shape, y.shape
        return np.where(self.cond, x, y)

    def backward(self, g, needs):
        zero = np.zeros((), dtype=g.dtype)
        return (unbroadcast(np.where(self.cond, g, zero), self.xs) if needs[0] else None,
                unbroadcast(np.where(self.cond, zero, g), self.ys) if needs[1] else None)


def where(condition: Any, x: Any = None, y: Any = None) -> Tensor:
    """Elements of ``x`` where ``condition`` is true, else of ``y`` (TF1's ``tf.where``).

    Args:
      condition: a bool tensor (e.g. from :func:`greater`).
      x, y: tensors or numbers of one dtype.  Give both, or neither.  A
        rank-1 ``condition`` with ``x`` (or ``y``) of higher rank selects
        whole rows, as TF1 does, and its length must be their first size;
        otherwise ``condition``, ``x`` and ``y`` broadcast together (see
        :func:`where_v2`).

    Returns:
      With ``x`` and ``y``: a tensor of the broadcast shape; the gradient goes
      to ``x`` where ``condition`` holds and to ``y`` elsewhere.  Without them
      (TF1): the coordinates of the true elements, int64 of shape
      ``[num_true, rank]``.

    Example (a piecewise loss: a unit over-predicted costs 1, under-predicted 9):
      >>> y, y_ = distnet.constant([3.0, 1.0]), distnet.constant([2.0, 2.0])
      >>> distnet.reduce_sum(distnet.where(distnet.greater(y, y_), (y - y_) * 1.0, (y_ - y) * 9.0)).numpy()
      np.float32(10.0)
    """
    return _where("where", condition, x, y, rows=True)


def where_v2(condition: Any, x: Any = None, y: Any = None) -> Tensor:
    """Elements of ``x`` where ``condition`` is true, else of ``y``; ``condition``,
    ``x`` and ``y`` broadcast together as numpy does (TF's ``tf.where_v2``).

    Example (a rank-1 condition lines up with the last axis):
      >>> distnet.where_v2([True, False], [[1.0, 2.0], [3.0, 4.0]], 0.0).numpy()
      array([[1., 0.],
             [3., 0.]], dtype=float32)
    """
    return _where("where_v2", condition, x, y, rows=False)


def _where(op_name: str, condition: Any, x: Any, y: Any, rows: bool) -> Tensor:
    cond = _as_bool(op_name, condition, "condition")
    if x is None and y is None:
        return _leaf(np.argwhere(cond.data).astype(np.int64, copy=False))
    if x is None or y is None:
        raise InvalidArgumentError(f"{op_name}: give both x and y, or neither")
    x, y = binary_operands(x, y, op_name)
    c = cond.data
    rank = max(x.ndim, y.ndim)
    if rows and c.ndim == 1 and rank > 1:
        # TF1: a vector condition picks rows (numpy would line it up with the last axis).
        first = x.shape[0] if x.ndim == rank else y.shape[0]
        if c.shape[0] != first:
            raise ShapeError(
                f"{op_name}: a rank-1 condition selects rows of x and y; Expect: condition of length {first} "
                f"(x {x.shape}, y {y.shape}) Actual: length {c.shape[0]}; use where_v2 to broadcast instead")
        c = c.reshape((c.shape[0],) + (1,) * (rank - 1))
    if not (c.shape == x.data.shape == y.data.shape):
        try:
            np.broadcast_shapes(c.shape, x.data.shape, y.data.shape)
        except ValueError:
            raise ShapeError(
                f"{op_name}: incompatible shapes: condition {cond.shape}, x {x.shape}, y {y.shape}; "
                "Expect: shapes that broadcast together"
            ) from None
    return Where.apply(x, y, cond=c)


class ClipByValue(Op):
    __slots__ = ("x", "lo", "hi")

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, x):
        self.x = x
        return np.minimum(np.maximum(x, self.lo), self.hi)

    def backward(self, g, needs):
        # TF1 (_ClipByValueGrad): zero where x < lo or x > hi, so the gradient
        # passes inside the closed interval [lo, hi], bounds included.
        x = self.x
        outside = (x < self.lo) | (x > self.hi)
        return (np.where(outside, np.zeros((), dtype=g.dtype), g),)


def _bound(value: Any, t: Tensor, name: str) -> np.ndarray:
    if isinstance(value, Tensor):
        if value.dtype != t.dtype:
            raise DTypeError(
                f"clip_by_value: {name} must have the dtype of t. Expect: {t.dtype.name} Actual: {value.dtype.name}"
            )
        return value.data
    return np.asarray(value, dtype=t.dtype)


def clip_by_value(t: Any, clip_value_min: Any, clip_value_max: Any) -> Tensor:
    """``t`` with values below ``clip_value_min`` / above ``clip_value_max``
    replaced by the bound (TF's ``tf.clip_by_value``).

    The gradient w.r.t. ``t`` is 1 inside ``[min, max]`` (bounds included) and
    0 outside (TF1).  The bounds are scalars or tensors that broadcast to
    ``t``'s shape; they are treated as constants (no gradient).

    Raises:
      InvalidArgumentError: ``clip_value_min > clip_value_max`` somewhere.

    Example (the clipping of a cross-entropy on probabilities):
      >>> distnet.clip_by_value(distnet.constant([0.0, 0.5, 2.0]), 1e-12, 1.0).numpy()
      array([1.e-12, 5.e-01, 1.e+00], dtype=float32)
    """
    t = as_tensor(t)
    lo, hi = _bound(clip_value_min, t, "clip_value_min"), _bound(clip_value_max, t, "clip_value_max")
    if lo.ndim or hi.ndim:
        try:
            out_shape = np.broadcast_shapes(t.shape, lo.shape, hi.shape)
        except ValueError:
            out_shape = None
        if out_shape != t.shape:
            raise ShapeError(
                f"clip_by_value: bounds of shapes {lo.shape} and {hi.shape} do not broadcast to t's shape {t.shape}"
            )
    if np.any(lo > hi):
        raise InvalidArgumentError(
            f"clip_by_value: Expect: clip_value_min <= clip_value_max Actual: min {clip_value_min!r} "
            f"and max {clip_value_max!r}"
        )
    return ClipByValue.apply(t, lo=lo, hi=hi)


def _arg_reduce(fn, op_name: str, x: Any, axis, output_type) -> Tensor:
    x = as_tensor(x)
    if x.ndim == 0:
        raise ShapeError(f"{op_name}: Expect: a tensor of rank >= 1 Actual: a scalar")
    ax = _check_axis(op_name, 0 if axis is None else axis, x.ndim)
    if x.shape[ax] == 0:
        raise ShapeError(f"{op_name}: cannot reduce axis {ax} of size 0 (shape {x.shape})")
    out_dtype = np.dtype(output_type)
    if out_dtype.kind not in "iu":
        raise DTypeError(f"{op_name}: output_type: Expect: an integer dtype Actual: {out_dtype}")
    return _leaf(fn(x.data, axis=ax).astype(out_dtype, copy=False))


def argmax(input: Any, axis: int | None = None, output_type=np.int64) -> Tensor:  # noqa: A002 (TF's name)
    """Index of the largest value along ``axis`` (TF1: ``axis=None`` means 0).

    Returns an int64 tensor (not differentiable); ties give the first index.

    Example:
      >>> distnet.argmax(distnet.constant([[1.0, 9.0], [8.0, 2.0]]), 1).numpy()
      array([1, 0])
    """
    return _arg_reduce(np.argmax, "argmax", input, axis, output_type)


def argmin(input: Any, axis: int | None = None, output_type=np.int64) -> Tensor:  # noqa: A002 (TF's name)
    """Index of the smallest value along ``axis`` (TF1: ``axis=None`` means 0); int64."""
    return _arg_reduce(np.argmin, "argmin", input, axis, output_type)
