"""Tensors made from a shape and a value: zeros, ones, fill, zeros_like,
ones_like, one_hot.

Conventions (TF1):

* The results are constants: they record no op, so no gradient flows to the
  inputs (TF1 registers ``ZerosLike``, ``OnesLike`` and ``OneHot`` as not
  differentiable).  ``gradients`` w.r.t. ``x`` of ``zeros_like(x)`` alone is
  unconnected: zeros, or ``None`` with ``unconnected_gradients="none"``, as
  for the comparison ops.
* ``zeros`` and ``ones`` take a shape as a list or tuple of ints, or one int
  (``zeros(3)`` is ``zeros([3])``, as TF1's ``tf.zeros``); ``fill`` needs a
  list or tuple (TF's ``tf.fill`` refuses a bare number).
* ``fill`` takes its dtype from the value: a Python float gives float32, an
  int int32 (int64 when it does not fit in int32), a bool bool; numpy values
  and tensors keep theirs.
* ``one_hot``: an index outside ``[0, depth)`` -- negative ones included --
  gives a row of ``off_value`` (TF1's documented ``one_hot(-1)``); the new
  axis goes at ``axis`` (-1: last); the dtype comes from ``dtype``, else from
  ``on_value`` / ``off_value``, else float32.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.tensor import DEFAULT_FLOAT, DEFAULT_INT, Tensor, as_tensor

# numpy's limit on the number of dimensions of an array.
_MAX_RANK = 64
_INT32 = np.iinfo(np.int32)


def _constant(data: np.ndarray) -> Tensor:
    """A tensor with no op: a constant, no gradient flows through it."""
    return Tensor._from_op(data, None, ())


def _is_int(value: Any) -> bool:
    """A Python or numpy integer (bools are not sizes)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _dtype(op_name: str, dtype: Any, arg: str = "dtype") -> np.dtype:
    """``dtype`` as a numpy dtype of a kind a tensor can hold (bool, int, float)."""
    if dtype is None:
        raise DTypeError(f"{op_name}: {arg}: Expect: a dtype such as float32 or int32 Actual: None")
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        raise DTypeError(
            f"{op_name}: {arg}: Expect: a dtype such as float32 or int32 Actual: {_describe(dtype)}") from None
    if dt.kind not in "biuf":
        raise DTypeError(f"{op_name}: {arg}: Expect: a bool, integer or floating dtype Actual: {dt}")
    return dt


def _shape(op_name: str, shape: Any, arg: str = "shape", allow_int: bool = True) -> tuple:
    """Validate a shape argument: a sequence of ints >= 0 (or one int)."""
    if isinstance(shape, Tensor):
        shape = shape.data
    if isinstance(shape, np.ndarray):
        if shape.dtype.kind not in "iu":
            raise InvalidArgumentError(
                f"{op_name}: {arg}: Expect: integer sizes Actual: an array of dtype {shape.dtype}")
        if shape.ndim == 0 and allow_int:
            shape = (shape.item(),)
        elif shape.ndim == 1:
            shape = tuple(shape.tolist())
        else:
            raise InvalidArgumentError(
                f"{op_name}: {arg}: Expect: a 1-D list of sizes Actual: an array of shape {shape.shape}")
    elif _is_int(shape):
        if not allow_int:
            raise InvalidArgumentError(
                f"{op_name}: {arg}: Expect: a list or tuple of sizes such as [{shape}] Actual: the number {shape!r}")
        shape = (shape,)
    elif not isinstance(shape, (list, tuple)):
        raise InvalidArgumentError(
            f"{op_name}: {arg}: Expect: a list or tuple of non-negative ints Actual: {_describe(shape)}")
    if len(shape) > _MAX_RANK:
        raise InvalidArgumentError(
            f"{op_name}: {arg}: Expect: at most {_MAX_RANK} dimensions Actual: {len(shape)}")
    dims = []
    for i, n in enumerate(shape):
        if isinstance(n, np.ndarray) and n.ndim == 0 and n.dtype.kind in "iu":
            n = n.item()
        if not _is_int(n):
            raise InvalidArgumentError(
                f"{op_name}: {arg}[{i}]: Expect: a non-negative int Actual: {_describe(n)}")
        if n < 0:
            raise InvalidArgumentError(
                f"{op_name}: {arg}[{i}]: Expect: a size >= 0 Actual: {int(n)} (shape {list(shape)})")
        dims.append(int(n))
    return tuple(dims)


def _full(op_name: str, shape: tuple, value: Any, dt: np.dtype) -> Tensor:
    try:
        return _constant(np.full(shape, value, dtype=dt))
    except ValueError as e:  # numpy: "array is too big" (the size overflows)
        raise InvalidArgumentError(f"{op_name}: cannot make a tensor of shape {shape} and dtype {dt}: {e}") from None


def zeros(shape: int | Sequence[int], dtype: Any = np.float32) -> Tensor:
    """A tensor of ``shape`` with every element 0 (TF's ``tf.zeros``).

    Args:
      shape: a list or tuple of non-negative ints, or one int.
      dtype: the element type (default float32); bool gives ``False``.

    Returns:
      A constant tensor (no gradient flows through it).

    Example (a layer's biases):
      >>> b = distnet.Variable(distnet.zeros([10]))
      >>> b.shape, b.dtype
      ((10,), dtype('float32'))
    """
    dt = _dtype("zeros", dtype)
    return _full("zeros", _shape("zeros", shape), 0, dt)


def ones(shape: int | Sequence[int], dtype: Any = np.float32) -> Tensor:
    """A tensor of ``shape`` with every element 1 (TF's ``tf.ones``).

    Args:
      shape: a list or tuple of non-negative ints, or one int.
      dtype: the element type (default float32); bool gives ``True``.

    Returns:
      A constant tensor.

    Example:
      >>> distnet.ones([2, 3], dtype="int32").numpy()
      array([[1, 1, 1],
             [1, 1, 1]], dtype=int32)
    """
    dt = _dtype("ones", dtype)
    return _full("ones", _shape("ones", shape), 1, dt)


def _scalar(op_name: str, arg: str, value: Any, dtype: np.dtype | None = None) -> np.ndarray:
    """A scalar argument as a 0-d array.

    A Python number takes ``dtype`` when it converts to it without loss of
    kind (an int into a float dtype, not a float into an int one), else TF's
    default for it: float -> float32, int -> int32 (int64 beyond int32),
    bool -> bool.  numpy values and tensors keep their dtype.
    """
    if isinstance(value, Tensor):
        arr = value.data
    elif isinstance(value, (np.ndarray, np.generic, list, tuple)):
        try:
            arr = np.asarray(value)  # a list is not a scalar: refused by shape below
        except ValueError:  # ragged nested lists
            raise ShapeError(f"{op_name}: {arg}: a scalar: Expect: shape () Actual: a ragged list") from None
    elif isinstance(value, (bool, int, float)):
        if isinstance(value, bool):
            kind_ok = dtype is not None and dtype.kind == "b"
        elif isinstance(value, int):
            kind_ok = dtype is not None and dtype.kind in "iuf"
        else:
            kind_ok = dtype is not None and dtype.kind == "f"
        if kind_ok:
            arr = np.asarray(value)
            if dtype.kind in "iu" and not np.iinfo(dtype).min <= value <= np.iinfo(dtype).max:
                raise InvalidArgumentError(
                    f"{op_name}: {arg}: Expect: a value that fits in {dtype} Actual: {value!r}")
            arr = arr.astype(dtype)
        elif isinstance(value, bool):
            arr = np.asarray(value)
        elif isinstance(value, int):
            if not -(2 ** 63) <= value < 2 ** 63:
                raise InvalidArgumentError(f"{op_name}: {arg}: Expect: a value that fits in int64 Actual: {value!r}")
            # TF1: a Python int is int32, or int64 when it does not fit in int32.
            arr = np.asarray(value, dtype=DEFAULT_INT if _INT32.min <= value <= _INT32.max else np.int64)
        else:
            arr = np.asarray(value, dtype=DEFAULT_FLOAT)
    else:
        raise DTypeError(f"{op_name}: {arg}: Expect: a number, a bool or a scalar tensor Actual: {_describe(value)}")
    if arr.ndim != 0:
        raise ShapeError(f"{op_name}: {arg}: a scalar: Expect: shape () Actual: shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise DTypeError(f"{op_name}: {arg}: Expect: a bool, integer or floating value Actual: dtype {arr.dtype}")
    return arr


def fill(dims: Sequence[int], value: Any) -> Tensor:
    """A tensor of shape ``dims`` with every element ``value`` (TF's ``tf.fill``).

    Args:
      dims: a list or tuple of non-negative ints (not a bare int, as in TF).
      value: a scalar; it fixes the dtype: a Python float gives float32, an
        int int32 (int64 if it does not fit), a bool bool; numpy scalars and
        0-d tensors keep their dtype.

    Returns:
      A constant tensor.

    Example:
      >>> distnet.fill([2, 3], 9).numpy()
      array([[9, 9, 9],
             [9, 9, 9]], dtype=int32)
    """
    shape = _shape("fill", dims, arg="dims", allow_int=False)
    arr = _scalar("fill", "value", value)
    return _full("fill", shape, arr, arr.dtype)


def _like(op_name: str, x: Any, dtype: Any, value: int) -> Tensor:
    x = as_tensor(x)
    dt = x.dtype if dtype is None else _dtype(op_name, dtype)
    if dt.kind not in "biuf":
        raise DTypeError(f"{op_name}: x: Expect: a bool, integer or floating tensor Actual: dtype {dt}")
    return _constant(np.full(x.shape, value, dtype=dt))


def zeros_like(x: Any, dtype: Any = None) -> Tensor:
    """Zeros of ``x``'s shape and (unless ``dtype`` is given) dtype (TF's ``tf.zeros_like``).

    The result is a constant: no gradient flows back to ``x`` through it.

    Args:
      x: a tensor, or a value convertible to one.
      dtype: the element type; default ``x``'s.

    Returns:
      A constant tensor of ``x``'s shape.

    Example:
      >>> x = distnet.Variable([1.0, 2.0])
      >>> distnet.gradients(distnet.reduce_sum(x * distnet.zeros_like(x)), [x])
      [array([0., 0.], dtype=float32)]
    """
    return _like("zeros_like", x, dtype, 0)


def ones_like(x: Any, dtype: Any = None) -> Tensor:
    """Ones of ``x``'s shape and (unless ``dtype`` is given) dtype (TF's ``tf.ones_like``).

    The result is a constant: no gradient flows back to ``x`` through it.

    Example:
      >>> distnet.ones_like(distnet.constant([[1, 2, 3]])).numpy()
      array([[1, 1, 1]], dtype=int32)
    """
    return _like("ones_like", x, dtype, 1)


def _depth(depth: Any) -> int:
    if isinstance(depth, Tensor):
        depth = depth.data
    if isinstance(depth, np.ndarray) and depth.ndim == 0 and depth.dtype.kind in "iu":
        depth = depth.item()
    if not _is_int(depth):
        raise InvalidArgumentError(f"one_hot: depth: Expect: a non-negative int Actual: {_describe(depth)}")
    if depth < 0:
        raise InvalidArgumentError(f"one_hot: depth: Expect: depth >= 0 Actual: {int(depth)}")
    return int(depth)


def one_hot(indices: Any, depth: int, on_value: Any = None, off_value: Any = None,
            axis: int | None = -1, dtype: Any = None) -> Tensor:
    """A one-hot encoding of integer ``indices`` (TF's ``tf.one_hot``).

    The output has rank ``rank(indices) + 1``: the new axis, of size
    ``depth``, goes at ``axis`` (-1, the default, appends it; TF1 allows -1 or
    ``0 .. rank(indices)``).  Where the index equals the position along that
    axis the element is ``on_value``, elsewhere ``off_value``; an index
    outside ``[0, depth)``, negative or too large, gives all ``off_value``
    (TF1's documented ``one_hot(-1)``).

    Args:
      indices: an integer tensor or a (nested) list of ints, of any shape.
      depth: the number of classes, an int >= 0.
      on_value, off_value: scalars, default 1 and 0.
      axis: where the new axis goes: -1 (or None) for last, else 0 .. rank.
      dtype: the output dtype.  Without it, TF1's rule: the dtype of
        ``on_value`` (else ``off_value``) when given -- a Python float is
        float32, an int int32 -- else float32.  With it, given values must
        have it (a Python int converts to a floating ``dtype``).

    Returns:
      A constant tensor (no gradient flows through it).

    Raises:
      DTypeError: non-integer ``indices``; ``on_value`` and ``off_value`` of
        different dtypes, or not of ``dtype``.
      InvalidArgumentError: a negative or non-integer ``depth``; ``axis``
        out of range.

    Example (TF1's documented example):
      >>> distnet.one_hot([0, 2, -1, 1], 3, on_value=5.0, off_value=0.0, axis=-1).numpy()
      array([[5., 0., 0.],
             [0., 0., 5.],
             [0., 0., 0.],
             [0., 5., 0.]], dtype=float32)
    """
    idx = as_tensor(indices)
    if idx.dtype.kind not in "iu":
        raise DTypeError(f"one_hot: indices: Expect: an integer tensor (int32, int64, uint8, ...) Actual: {idx.dtype}")
    d = _depth(depth)
    rank = idx.ndim
    if axis is None:
        axis = -1
    if not _is_int(axis):
        raise InvalidArgumentError(f"one_hot: axis: Expect: an int, -1 or 0 .. {rank} Actual: {_describe(axis)}")
    if not -1 <= axis <= rank:
        # TF1 (OneHot kernel): "Expected axis to be -1 or between [0, N]".
        raise InvalidArgumentError(
            f"one_hot: axis: Expect: -1 or an axis in [0, {rank}] for indices of rank {rank} Actual: {int(axis)}")
    ax = rank if axis == -1 else int(axis)

    # TF1's dtype rule: dtype, else on_value's, else off_value's, else float32.
    dt = None if dtype is None else _dtype("one_hot", dtype)
    on = None if on_value is None else _scalar("one_hot", "on_value", on_value, dt)
    off = None if off_value is None else _scalar("one_hot", "off_value", off_value, dt)
    if dt is None:
        dt = on.dtype if on is not None else off.dtype if off is not None else DEFAULT_FLOAT
    for name, val in (("on_value", on), ("off_value", off)):
        if val is not None and val.dtype != dt:
            source = "dtype" if dtype is not None else "on_value"
            raise DTypeError(
                f"one_hot: {name} must have the dtype of {source}; Expect: {dt} Actual: {val.dtype}; "
                "give both values of one dtype, or cast them")
    on = np.ones((), dt) if on is None else on
    off = np.zeros((), dt) if off is None else off

    # The classes along the new axis; comparing broadcasts to the output shape
    # directly in C order (no transpose), and an out-of-range index matches none.
    classes = np.arange(d).reshape((1,) * ax + (d,) + (1,) * (rank - ax))
    hit = np.expand_dims(idx.data, ax) == classes
    return _constant(np.where(hit, on, off))


__all__ = ["zeros", "ones", "fill", "zeros_like", "ones_like", "one_hot"]
