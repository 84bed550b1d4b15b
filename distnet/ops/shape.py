"""Ops that move elements without computing: reshape, transpose, concat,
stack, indexing (``getitem``) and ``gather``, ``cast``, ``stop_gradient``,
``expand_dims``, ``squeeze``.

Conventions (TF1):

* ``transpose(x)`` without ``perm`` reverses the axes.
* ``gather`` indices must lie in ``[0, n)`` (TF raises on negative indices
  rather than wrapping them as numpy does).
* ``cast`` passes the gradient only from a floating input to a floating
  output; casting to or from an integer or bool dtype stops it.
* Indexing accepts what numpy accepts (ints, slices, ``None``, ``...``,
  integer and bool arrays); the gradient of a repeated fancy index is
  accumulated (``np.add.at``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from distnet.autodiff import Op
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.tensor import Tensor, as_tensor


class IndexOutOfRangeError(InvalidArgumentError, IndexError):
    """An index or gather index lies outside its axis (also an ``IndexError``,
    so that iterating over a tensor stops at its end)."""


def _check_axis(op_name: str, axis: Any, ndim: int) -> int:
    """``axis`` in ``[-ndim, ndim)`` as a non-negative int."""
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise InvalidArgumentError(f"{op_name}: axis: Expect: an int Actual: {axis!r}")
    if not -ndim <= axis < ndim:
        raise InvalidArgumentError(
            f"{op_name}: axis {axis} is out of range; Expect: an axis in [{-ndim}, {ndim}) Actual: {axis}"
        )
    return int(axis) % ndim


# -- reshape family -------------------------------------------------------------

class Reshape(Op):
    __slots__ = ("shape", "in_shape")

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, g, needs):
        return (g.reshape(self.in_shape),)


def reshape(x: Any, shape: int | Sequence[int]) -> Tensor:
    """``x`` with a new shape of the same size; one dimension may be -1.

    Example:
      >>> distnet.reshape(distnet.constant([1.0, 2.0, 3.0, 4.0]), (2, -1)).shape
      (2, 2)
    """
    x = as_tensor(x)
    try:
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"reshape: shape: Expect: an int or a sequence of ints Actual: {shape!r}") from None
    if shape == x.shape:
        return x
    try:
        x.data.reshape(shape)  # a view: validates without copying
    except ValueError:
        raise ShapeError(f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) to {shape}") from None
    return Reshape.apply(x, shape=shape)


def expand_dims(x: Any, axis: int) -> Tensor:
    """``x`` with a new axis of size 1 inserted at ``axis`` (composed from reshape).

    ``axis`` lies in ``[-rank-1, rank]``; a negative axis counts from the end
    of the result, as in TF.
    """
    x = as_tensor(x)
    ax = _check_axis("expand_dims", axis, x.ndim + 1)
    shape = x.shape[:ax] + (1,) + x.shape[ax:]
    return reshape(x, shape)


def squeeze(x: Any, axis: int | Sequence[int] | None = None) -> Tensor:
    """``x`` without size-1 axes: all of them, or those in ``axis`` (composed from reshape).

    Raises ShapeError if an axis in ``axis`` does not have size 1.
    """
    x = as_tensor(x)
    if axis is None:
        axes = {i for i, n in enumerate(x.shape) if n == 1}
    else:
        seq = axis if isinstance(axis, (tuple, list)) else (axis,)
        axes = {_check_axis("squeeze", a, x.ndim) for a in seq}
        for a in sorted(axes):
            if x.shape[a] != 1:
                raise ShapeError(
                    f"squeeze: cannot squeeze axis {a} of a tensor of shape {x.shape}; "
                    f"Expect: size 1 Actual: size {x.shape[a]}"
                )
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in axes))


class Transpose(Op):
    __slots__ = ("perm",)

    def __init__(self, perm):
        self.perm = perm

    def forward(self, x):
        return np.transpose(x, self.perm)

    def backward(self, g, needs):
        return (np.transpose(g, np.argsort(self.perm)),)


def transpose(x: Any, perm: Sequence[int] | None = None) -> Tensor:
    """Permute the axes of ``x``; without ``perm`` reverse them (TF's ``tf.transpose``).

    Example:
      >>> distnet.transpose(distnet.constant([[1.0, 2.0, 3.0]])).shape
      (3, 1)
    """
    x = as_tensor(x)
    if perm is None:
        perm = tuple(range(x.ndim - 1, -1, -1))
    else:
        try:
            perm = tuple(int(p) for p in perm)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"transpose: perm: Expect: a sequence of ints Actual: {perm!r}") from None
        if sorted(perm) != list(range(x.ndim)):
            raise InvalidArgumentError(
                f"transpose: perm {perm} is not a permutation of the {x.ndim} axes of a tensor of shape {x.shape}; "
                f"Expect: a permutation of {tuple(range(x.ndim))}"
            )
    if perm == tuple(range(x.ndim)):
        return x
    return Transpose.apply(x, perm=perm)


# -- joining --------------------------------------------------------------------

def _same_dtype(op_name: str, values: Sequence[Any]) -> list[Tensor]:
    if isinstance(values, (Tensor, np.ndarray)) or not isinstance(values, (list, tuple)):
        raise InvalidArgumentError(f"{op_name}: values: Expect: a list or tuple of tensors Actual: {type(values).__name__}")
    if len(values) == 0:
        raise InvalidArgumentError(f"{op_name}: values is empty; Expect: at least one tensor")
    like = next((v for v in values if isinstance(v, Tensor)), None)
    ts = [as_tensor(v, like=like) for v in values]
    dt = ts[0].dtype
    for i, t in enumerate(ts):
        if t.dtype != dt:
            raise DTypeError(
                f"{op_name}: all values must have the same dtype. "
                f"Expect: {dt.name} Actual: {t.dtype.name} at values[{i}]; use distnet.cast"
            )
    return ts


class Concat(Op):
    __slots__ = ("axis", "splits")

    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        self.splits = np.cumsum([x.shape[self.axis] for x in xs[:-1]])
        return np.concatenate(xs, axis=self.axis)

    def backward(self, g, needs):
        parts = np.split(g, self.splits, axis=self.axis)
        return tuple(p if n else None for p, n in zip(parts, needs))


def concat(values: Sequence[Any], axis: int) -> Tensor:
    """Join tensors along an existing ``axis`` (TF's ``tf.concat``).

    All values have the same rank and dtype, and equal sizes on every other
    axis.

    Example:
      >>> distnet.concat([distnet.constant([[1.0]]), distnet.constant([[2.0]])], axis=1).numpy()
      array([[1., 2.]], dtype=float32)
    """
    ts = _same_dtype("concat", values)
    ndim = ts[0].ndim
    if ndim == 0:
        raise ShapeError("concat: cannot concatenate scalars (shape ()); use distnet.stack")
    ax = _check_axis("concat", axis, ndim)
    ref = ts[0].shape
    for i, t in enumerate(ts):
        if t.ndim != ndim or any(a != b for k, (a, b) in enumerate(zip(t.shape, ref)) if k != ax):
            raise ShapeError(
                f"concat: values[{i}] has shape {t.shape}, values[0] has shape {ref}; "
                f"Expect: the same rank and the same sizes on every axis but {ax}"
            )
    if len(ts) == 1:
        return ts[0]
    return Concat.apply(*ts, axis=ax)


class Stack(Op):
    __slots__ = ("axis",)

    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        return np.stack(xs, axis=self.axis)

    def backward(self, g, needs):
        lead = (slice(None),) * self.axis
        return tuple(g[lead + (i,)] if n else None for i, n in enumerate(needs))


def stack(values: Sequence[Any], axis: int = 0) -> Tensor:
    """Join tensors of one shape along a new ``axis`` (TF's ``tf.stack``).

    Example:
      >>> distnet.stack([distnet.constant([1.0, 2.0]), distnet.constant([3.0, 4.0])], axis=1).shape
      (2, 2)
    """
    ts = _same_dtype("stack", values)
    ref = ts[0].shape
    for i, t in enumerate(ts):
        if t.shape != ref:
            raise ShapeError(
                f"stack: values[{i}] has shape {t.shape}, values[0] has shape {ref}; Expect: equal shapes"
            )
    ax = _check_axis("stack", axis, len(ref) + 1)
    return Stack.apply(*ts, axis=ax)


# -- indexing -------------------------------------------------------------------

def _plain_index(index: Any) -> tuple[Any, bool]:
    """The index with tensors unwrapped, and whether it is an advanced (fancy) one."""
    items = index if isinstance(index, tuple) else (index,)
    out = []
    fancy = False
    for it in items:
        if isinstance(it, Tensor):
            it = it.data
        elif isinstance(it, list):
            it = np.asarray(it)
        if isinstance(it, np.ndarray):
            if it.ndim == 0 and it.dtype.kind in "iu":
                it = int(it)
            else:
                fancy = True
        out.append(it)
    return (tuple(out) if isinstance(index, tuple) else out[0]), fancy


class GetItem(Op):
    __slots__ = ("index", "fancy", "shape")

    def __init__(self, index, fancy, shape):
        self.index, self.fancy, self.shape = index, fancy, shape

    def forward(self, x):  # pragma: no cover - getitem computes the value itself
        return x[self.index]

    def backward(self, g, needs):
        gx = np.zeros(self.shape, dtype=g.dtype)
        if self.fancy:
            np.add.at(gx, self.index, g)  # repeated indices accumulate
        else:
            gx[self.index] = g
        return (gx,)


def getitem(x: Any, index: Any) -> Tensor:
    """``x[index]``: numpy indexing, differentiable (``Tensor.__getitem__``).

    Basic indices (ints, slices, ``None``, ``...``) give a view; integer or
    bool arrays (lists, ndarrays, tensors) select elements, and the gradient
    of an element selected several times is summed.

    Raises:
      IndexOutOfRangeError: an index outside its axis.
    """
    x = as_tensor(x)
    idx, fancy = _plain_index(index)
    try:
        out = x.data[idx]
    except IndexError as e:
        if "out of bounds" in str(e):
            raise IndexOutOfRangeError(f"getitem: {e} (tensor of shape {x.shape}, index {index!r})") from None
        raise InvalidArgumentError(
            f"getitem: invalid index {index!r} for a tensor of shape {x.shape}: {e}"
        ) from None
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(
            f"getitem: invalid index {index!r} for a tensor of shape {x.shape}: {e}; "
            "Expect: ints, slices, None, Ellipsis, or integer/bool arrays"
        ) from None
    if not isinstance(out, np.ndarray):
        out = np.asarray(out)
    return Tensor._from_op(out, GetItem(idx, fancy, x.shape), (x,))


class Gather(Op):
    __slots__ = ("indices", "axis", "shape")

    def __init__(self, indices, axis):
        self.indices, self.axis = indices, axis

    def forward(self, x):
        self.shape = x.shape
        return np.take(x, self.indices, axis=self.axis)

    def backward(self, g, needs):
        gx = np.zeros(self.shape, dtype=g.dtype)
        np.add.at(gx, (slice(None),) * self.axis + (self.indices,), g)
        return (gx,)


def gather(params: Any, indices: Any, axis: int = 0) -> Tensor:
    """Slices of ``params`` along ``axis`` at ``indices`` (TF's ``tf.gather``).

    Args:
      params: a tensor of rank >= 1.
      indices: integers in ``[0, params.shape[axis])``, any shape.
      axis: the axis to gather along.

    Returns:
      A tensor of shape ``params.shape[:axis] + indices.shape + params.shape[axis+1:]``.
      The gradient of a repeated index is summed.

    Example:
      >>> distnet.gather(distnet.constant([10.0, 20.0, 30.0]), [2, 0]).numpy()
      array([30., 10.], dtype=float32)
    """
    params = as_tensor(params)
    if params.ndim == 0:
        raise ShapeError("gather: params: Expect: rank >= 1 Actual: a scalar")
    idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if idx.dtype.kind not in "iu":
        if idx.size == 0:
            idx = idx.astype(np.int64)
        else:
            raise DTypeError(f"gather: indices: Expect: integers Actual: dtype {idx.dtype}")
    ax = _check_axis("gather", axis, params.ndim)
    n = params.shape[ax]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx[(idx < 0) | (idx >= n)].flat[0]
        raise IndexOutOfRangeError(
            f"gather: index {bad} is out of range for axis {ax} of size {n} (params shape {params.shape}); "
            f"Expect: indices in [0, {n})"
        )
    return Gather.apply(params, indices=idx, axis=ax)


# -- dtype and gradient control ---------------------------------------------------

class Cast(Op):
    __slots__ = ("src", "dst")

    def __init__(self, src, dst):
        self.src, self.dst = src, dst

    def forward(self, x):
        return x.astype(self.dst)

    def backward(self, g, needs):
        # TF1 (_CastGrad): the gradient flows only between floating dtypes.
        if self.src.kind == "f" and self.dst.kind == "f":
            return (g.astype(self.src),)
        return (None,)


def cast(x: Any, dtype: Any) -> Tensor:
    """``x`` converted to ``dtype`` (TF's ``tf.cast``; floats to ints truncate).

    The gradient flows from a float output back to a float input only.

    Example:
      >>> distnet.cast(distnet.constant([1.7, -1.7]), "int32").numpy()
      array([ 1, -1], dtype=int32)
    """
    x = as_tensor(x)
    try:
        dst = np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"cast: {dtype!r} is not a dtype") from None
    if dst == x.dtype:
        return x
    return Cast.apply(x, src=x.dtype, dst=dst)


def stop_gradient(x: Any) -> Tensor:
    """The value of ``x`` as a new leaf: no gradient flows back through it.

    The result shares ``x``'s buffer (no copy).
    """
    x = as_tensor(x)
    return Tensor._from_op(x.data, None, ())


class Tile(Op):
    __slots__ = ("shape", "multiples")

    def __init__(self, multiples):
        self.multiples = multiples

    def forward(self, x):
        self.shape = x.shape
        return np.tile(x, self.multiples)

    def backward(self, g, needs):
        # Each output axis of size m*n is m copies of the input's n: sum the copies.
        split = []
        for m, n in zip(self.multiples, self.shape):
            split += [m, n]
        return (g.reshape(split).sum(axis=tuple(range(0, 2 * len(self.shape), 2))),)


def tile(x: Any, multiples: Sequence[int]) -> Tensor:
    """``x`` repeated ``multiples[i]`` times along axis ``i`` (TF's ``tf.tile``).

    Example:
      >>> distnet.tile(distnet.constant([[1, 2]]), [2, 3]).numpy()
      array([[1, 2, 1, 2, 1, 2],
             [1, 2, 1, 2, 1, 2]], dtype=int32)
    """
    x = as_tensor(x)
    mult = np.asarray(multiples.data if isinstance(multiples, Tensor) else multiples)
    if mult.ndim != 1 or mult.size != x.ndim or mult.dtype.kind not in "iu":
        raise ShapeError(f"tile: Expect: multiples a list of {x.ndim} integers (one per axis of a {x.shape} "
                         f"tensor) Actual: {mult.tolist()!r}")
    if (mult < 0).any():
        raise InvalidArgumentError(f"tile: Expect: multiples >= 0 Actual: {mult.tolist()}")
    return Tile.apply(x, multiples=tuple(int(m) for m in mult))


class GatherNd(Op):
    __slots__ = ("index", "shape")

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.shape = x.shape
        return x[self.index]

    def backward(self, g, needs):
        gx = np.zeros(self.shape, dtype=g.dtype)
        np.add.at(gx, self.index, g)
        return (gx,)


def gather_nd(params: Any, indices: Any) -> Tensor:
    """Slices of ``params`` at the index tuples in the last axis of ``indices`` (TF's ``tf.gather_nd``).

    ``indices`` of shape ``[..., k]`` picks ``params[i_1, ..., i_k]``; the
    result has shape ``indices.shape[:-1] + params.shape[k:]``.  The gradient
    of a repeated index is summed.

    Example:
      >>> distnet.gather_nd(distnet.constant([[1.0, 2.0], [3.0, 4.0]]), [[1, 0], [0, 1]]).numpy()
      array([3., 2.], dtype=float32)
    """
    params = as_tensor(params)
    idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if idx.dtype.kind not in "iu" or idx.ndim == 0:
        raise DTypeError(f"gather_nd: Expect: integer indices of rank >= 1 Actual: dtype {idx.dtype}, "
                         f"shape {idx.shape}")
    k = idx.shape[-1]
    if k > params.ndim:
        raise ShapeError(f"gather_nd: index depth {k} (the last size of indices) exceeds the rank of params "
                         f"{params.ndim}; Expect: indices.shape[-1] <= {params.ndim}")
    for d in range(k):
        col = idx[..., d]
        if col.size and (col.min() < 0 or col.max() >= params.shape[d]):
            bad = col[(col < 0) | (col >= params.shape[d])].flat[0]
            raise IndexOutOfRangeError(f"gather_nd: index {bad} of axis {d} is out of range; "
                                       f"Expect: indices in [0, {params.shape[d]})")
    return GatherNd.apply(params, index=tuple(idx[..., d] for d in range(k)))


def split(value: Any, num_or_size_splits: Any, axis: int = 0) -> list:
    """``value`` cut along ``axis`` into equal parts (an int) or parts of the given
    sizes (one size may be -1: the rest) -- TF's ``tf.split``; composed from slicing.

    Example:
      >>> [p.shape for p in distnet.split(distnet.zeros([6, 2]), [1, -1, 2])]
      [(1, 2), (3, 2), (2, 2)]
    """
    value = as_tensor(value)
    ax = _check_axis("split", axis, value.ndim)
    n = value.shape[ax]
    spec = num_or_size_splits.data if isinstance(num_or_size_splits, Tensor) else num_or_size_splits
    if np.ndim(spec) == 0:
        parts = int(spec)
        if parts <= 0 or n % parts:
            raise InvalidArgumentError(f"split: Expect: the size {n} of axis {ax} divisible by num_split={parts} "
                                       f"Actual: {n} % {parts} = {n % parts if parts > 0 else 'undefined'}")
        sizes = [n // parts] * parts
    else:
        sizes = [int(s) for s in np.asarray(spec).reshape(-1)]
        if sizes.count(-1) > 1 or any(s < -1 for s in sizes):
            raise InvalidArgumentError(f"split: Expect: sizes >= 0 with at most one -1 Actual: {sizes}")
        if -1 in sizes:
            sizes[sizes.index(-1)] = n - (sum(sizes) + 1)
        if sum(sizes) != n or min(sizes) < 0:
            raise InvalidArgumentError(f"split: Expect: sizes summing to {n} (the size of axis {ax}) "
                                       f"Actual: {sizes}")
    out, start = [], 0
    lead = (slice(None),) * ax
    for s in sizes:
        out.append(getitem(value, lead + (slice(start, start + s),)))
        start += s
    return out
