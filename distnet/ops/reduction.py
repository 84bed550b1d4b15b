"""Reductions over an axis, several axes, or all elements.

``axis=None`` reduces everything; an int or tuple reduces those axes
(negative axes count from the end); ``keepdims`` keeps them with size 1.
Seed 000: on ``[[1,2,3],[4,5,6]]`` axis 0 sums the columns ``[5,7,9]``,
axis 1 the rows ``[6,15]``, no axis everything ``21``.  TF1's older keyword
``reduction_indices`` is accepted as an alias of ``axis``.

Conventions (TF1):

* ``reduce_mean`` of an integer tensor stays integer (truncating division).
* ``reduce_max`` / ``reduce_min`` split the gradient equally among the
  elements that tie for the extremum.
* ``reduce_any`` / ``reduce_all`` take bool tensors and are not
  differentiable.
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

from distnet.autodiff import Op
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.tensor import Tensor, as_tensor

AxisArg = Union[int, Sequence[int], None]


def normalize_axis(axis, ndim: int, op_name: str) -> tuple[int, ...]:
    """``axis`` as a sorted tuple of non-negative ints, validated."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        axes = (axis,)
    elif isinstance(axis, (tuple, list, np.ndarray)):
        axes = tuple(axis)
    else:
        raise InvalidArgumentError(f"{op_name}: axis: Expect: None, an int or a tuple of ints Actual: {axis!r}")
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise InvalidArgumentError(f"{op_name}: axis: Expect: None, an int or a tuple of ints Actual: {axis!r}")
        if not -ndim <= a < max(ndim, 1) or (ndim == 0 and a not in (0, -1)):
            raise InvalidArgumentError(
                f"{op_name}: axis {a} is out of range for a tensor of rank {ndim}; "
                f"Expect: an axis in [{-ndim}, {ndim})"
            )
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise InvalidArgumentError(f"{op_name}: repeated axis in {axis!r}")
    return tuple(sorted(out)) if ndim else ()


def _kept_shape(shape: tuple, axes: tuple) -> tuple:
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _resolve_axis(axis, reduction_indices, op_name: str):
    if reduction_indices is not None:
        if axis is not None:
            raise InvalidArgumentError(f"{op_name}: give axis or reduction_indices, not both")
        return reduction_indices
    return axis


def _broadcast_copy(g: np.ndarray, shape: tuple) -> np.ndarray:
    """``np.broadcast_to(g, shape).copy()`` (the same values) without broadcast_to's Python layer."""
    out = np.empty(shape, dtype=g.dtype)
    np.copyto(out, g)
    return out


class Sum(Op):
    __slots__ = ("shape", "axes", "keepdims")

    def __init__(self, axes, keepdims=False):
        self.axes, self.keepdims = axes, keepdims

    def forward(self, x):
        self.shape = x.shape
        # TF1: the sum keeps the input's dtype (numpy would widen int32 to int64).
        return np.sum(x, axis=self.axes, keepdims=self.keepdims,
                      dtype=x.dtype if x.dtype.kind in "iu" else None)

    def backward(self, g, needs):
        if not self.keepdims:
            g = g.reshape(_kept_shape(self.shape, self.axes))
        return (_broadcast_copy(g, self.shape),)


class Mean(Op):
    __slots__ = ("shape", "axes", "keepdims", "count")

    def __init__(self, axes, keepdims=False):
        self.axes, self.keepdims = axes, keepdims

    def forward(self, x):
        self.shape = x.shape
        count = 1
        for a in self.axes:
            count *= x.shape[a]
        self.count = count
        if x.dtype.kind in "iu":
            # TF1: the mean of integers is an integer (division truncates toward 0).
            s = np.sum(x, axis=self.axes, keepdims=self.keepdims)
            if count == 0:
                return np.zeros_like(s)
            q = np.abs(s) // count
            return (np.sign(s) * q).astype(x.dtype)
        if count == 0:
            # An empty reduction is NaN (as TF), without numpy's warning.
            return np.full(_kept_shape(x.shape, self.axes) if self.keepdims
                           else tuple(n for i, n in enumerate(x.shape) if i not in self.axes),
                           np.nan, dtype=x.dtype)
        return np.mean(x, axis=self.axes, keepdims=self.keepdims)

    def backward(self, g, needs):
        if not self.keepdims:
            g = g.reshape(_kept_shape(self.shape, self.axes))
        return (_broadcast_copy(g / max(self.count, 1), self.shape),)


class _Extremum(Op):
    """reduce_max / reduce_min: TF1 splits the gradient among tied elements."""

    __slots__ = ("x", "y", "axes", "keepdims")
    reducer = None

    def __init__(self, axes, keepdims=False):
        self.axes, self.keepdims = axes, keepdims

    def forward(self, x):
        self.x = x
        self.y = type(self).reducer(x, axis=self.axes, keepdims=True)
        if self.keepdims:
            return self.y
        return self.y.reshape(tuple(n for i, n in enumerate(x.shape) if i not in self.axes))

    def backward(self, g, needs):
        if not self.keepdims:
            g = g.reshape(self.y.shape)
        mask = self.x == self.y
        count = np.sum(mask, axis=self.axes, keepdims=True)
        return (mask * (g / count.astype(g.dtype)),)


class Max(_Extremum):
    __slots__ = ()
    reducer = staticmethod(np.max)


class Min(_Extremum):
    __slots__ = ()
    reducer = staticmethod(np.min)


def _reduce(op_cls, op_name: str, x: Any, axis, keepdims: bool, reduction_indices) -> Tensor:
    x = as_tensor(x)
    axes = normalize_axis(_resolve_axis(axis, reduction_indices, op_name), x.ndim, op_name)
    return op_cls.apply(x, axes=axes, keepdims=bool(keepdims))


def reduce_sum(x: Any, axis: AxisArg = None, keepdims: bool = False,
               reduction_indices: AxisArg = None) -> Tensor:
    """Sum of elements across ``axis`` (TF's ``tf.reduce_sum``).

    Args:
      x: a tensor (or a value convertible to one).
      axis: None (all axes), an int, or a tuple/list of ints.
      keepdims: keep the reduced axes with size 1.
      reduction_indices: TF1's deprecated alias of ``axis``.

    Returns:
      The reduced tensor, of ``x``'s dtype.

    Example:
      >>> x = distnet.constant([[1, 2, 3], [4, 5, 6]])
      >>> distnet.reduce_sum(x, 0).numpy(), distnet.reduce_sum(x, 1).numpy()
      (array([5, 7, 9], dtype=int32), array([ 6, 15], dtype=int32))
    """
    return _reduce(Sum, "reduce_sum", x, axis, keepdims, reduction_indices)


def reduce_mean(x: Any, axis: AxisArg = None, keepdims: bool = False,
               reduction_indices: AxisArg = None) -> Tensor:
    """Mean of elements across ``axis`` (TF's ``tf.reduce_mean``).

    Integer input gives an integer mean that truncates toward zero, as in
    TF1 (``reduce_mean([[1,2,3],[4,5,6]])`` is ``3``); cast to float first for
    the exact mean.  Arguments as :func:`reduce_sum`.

    Example:
      >>> distnet.reduce_mean(distnet.constant([[1.0, 2.0], [3.0, 4.0]]), axis=1).numpy()
      array([1.5, 3.5], dtype=float32)
    """
    return _reduce(Mean, "reduce_mean", x, axis, keepdims, reduction_indices)


def _check_nonempty(op_name: str, x: Tensor, axes: tuple) -> None:
    for a in axes:
        if x.shape[a] == 0:
            raise ShapeError(
                f"{op_name}: cannot reduce axis {a} of size 0 (shape {x.shape}); "
                "Expect: a non-empty axis"
            )


def reduce_max(x: Any, axis: AxisArg = None, keepdims: bool = False,
               reduction_indices: AxisArg = None) -> Tensor:
    """Maximum of elements across ``axis`` (TF's ``tf.reduce_max``).

    The gradient goes to the elements equal to the maximum, split equally
    among ties (TF1).  Arguments as :func:`reduce_sum`.

    Example:
      >>> distnet.reduce_max(distnet.constant([[1.0, 5.0], [7.0, 2.0]]), axis=0).numpy()
      array([7., 5.], dtype=float32)
    """
    x = as_tensor(x)
    axes = normalize_axis(_resolve_axis(axis, reduction_indices, "reduce_max"), x.ndim, "reduce_max")
    _check_nonempty("reduce_max", x, axes)
    return Max.apply(x, axes=axes, keepdims=bool(keepdims))


def reduce_min(x: Any, axis: AxisArg = None, keepdims: bool = False,
               reduction_indices: AxisArg = None) -> Tensor:
    """Minimum of elements across ``axis`` (TF's ``tf.reduce_min``).

    The gradient is split equally among tied minima (TF1).  Arguments as
    :func:`reduce_sum`.
    """
    x = as_tensor(x)
    axes = normalize_axis(_resolve_axis(axis, reduction_indices, "reduce_min"), x.ndim, "reduce_min")
    _check_nonempty("reduce_min", x, axes)
    return Min.apply(x, axes=axes, keepdims=bool(keepdims))


def _bool_reduce(fn, op_name: str, x: Any, axis, keepdims: bool) -> Tensor:
    x = as_tensor(x)
    if x.dtype != np.bool_:
        raise DTypeError(f"{op_name}: Expect: a bool tensor Actual: {x.dtype.name}; compare first, e.g. x > 0")
    axes = normalize_axis(axis, x.ndim, op_name)
    return Tensor._from_op(np.asarray(fn(x.data, axis=axes, keepdims=bool(keepdims))), None, ())


def reduce_any(x: Any, axis: AxisArg = None, keepdims: bool = False) -> Tensor:
    """Logical or of a bool tensor across ``axis``; not differentiable."""
    return _bool_reduce(np.any, "reduce_any", x, axis, keepdims)


def reduce_all(x: Any, axis: AxisArg = None, keepdims: bool = False) -> Tensor:
    """Logical and of a bool tensor across ``axis``; not differentiable."""
    return _bool_reduce(np.all, "reduce_all", x, axis, keepdims)


class Prod(Op):
    """reduce_prod; its gradient is the product of the *other* elements, computed
    from exclusive cumulative products so that zeros are handled exactly (TF1)."""

    __slots__ = ("x", "axes", "keepdims")

    def __init__(self, axes, keepdims=False):
        self.axes, self.keepdims = axes, keepdims

    def forward(self, x):
        self.x = x
        return np.prod(x, axis=self.axes, keepdims=self.keepdims)

    def backward(self, g, needs):
        x, axes = self.x, self.axes
        if not self.keepdims:
            g = g.reshape(_kept_shape(x.shape, axes))
        rest = tuple(i for i in range(x.ndim) if i not in axes)
        perm = rest + axes
        moved = np.transpose(x, perm)
        lead = moved.shape[:len(rest)]
        flat = moved.reshape(lead + (-1,))
        ones = np.ones(lead + (1,), dtype=x.dtype)
        left = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
        right = np.cumprod(np.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
        others = np.transpose((left * right).reshape(moved.shape), np.argsort(perm))
        return (others * g,)


def reduce_prod(x: Any, axis: AxisArg = None, keepdims: bool = False,
                reduction_indices: AxisArg = None) -> Tensor:
    """Product of elements across ``axis`` (TF's ``tf.reduce_prod``); arguments as :func:`reduce_sum`.

    Example:
      >>> distnet.reduce_prod(distnet.constant([[1.0, 2.0], [3.0, 4.0]]), axis=1).numpy()
      array([ 2., 12.], dtype=float32)
    """
    return _reduce(Prod, "reduce_prod", x, axis, keepdims, reduction_indices)


def reduce_logsumexp(x: Any, axis: AxisArg = None, keepdims: bool = False,
                     reduction_indices: AxisArg = None) -> Tensor:
    """``log(sum(exp(x)))`` across ``axis``, computed stably (TF's ``tf.reduce_logsumexp``).

    Composed: ``log(sum(exp(x - m))) + m`` with ``m`` the (gradient-stopped)
    maximum, replaced by 0 where it is infinite, as TF does; so its gradient
    is the softmax of ``x`` over ``axis``.

    Example:
      >>> distnet.reduce_logsumexp(distnet.constant([0.0, 0.0])).numpy()   # log(2)
      0.6931472
    """
    from distnet import ops

    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"reduce_logsumexp: Expect: a floating tensor Actual: {x.dtype.name}")
    axes = normalize_axis(_resolve_axis(axis, reduction_indices, "reduce_logsumexp"), x.ndim, "reduce_logsumexp")
    top = np.max(x.data, axis=axes, keepdims=True) if x.size else np.zeros(_kept_shape(x.shape, axes), x.dtype)
    m = Tensor(np.where(np.isfinite(top), top, 0).astype(x.dtype))
    s = ops.log(reduce_sum(ops.exp(ops.subtract(x, m)), axis=axes, keepdims=True))
    out = ops.add(s, m)
    if not keepdims:
        out = ops.reshape(out, tuple(n for i, n in enumerate(x.shape) if i not in axes))
    return out
