"""``Tensor``, ``Variable`` and ``constant``: numpy arrays that remember how
they were computed, so that :func:`distnet.gradients` can differentiate them.

Conventions (TensorFlow 1.x):

* Python floats and lists of floats become float32; Python ints become int32;
  a numpy array keeps its dtype.
* In a binary op between a Tensor and a non-Tensor (scalar, list, ndarray),
  the non-Tensor is converted to the Tensor's dtype.  Two Tensors of different
  dtypes are an error, as in TensorFlow: cast one explicitly.
* ``==`` compares identity (TF1 semantics, keeps tensors hashable); use
  :func:`distnet.equal` for the element-wise comparison.  ``<``, ``>``,
  ``<=``, ``>=`` are element-wise and return non-differentiable bool tensors.
* A Variable created without a name is named as TF1 names them: the first
  ``Variable``, then ``Variable_1``, ``Variable_2``, ... in creation order
  (the same order, so the same names, on every rank).
* Every in-place write to a Variable (``assign``, an optimizer step, an EMA
  swap) increments its *version*; a tensor computed from a variable remembers
  the version it read.  :func:`check_not_stale` refuses to differentiate a
  tensor whose variables have changed since (PyTorch's version counters):
  its saved values are those of the old weights, so its gradient would be
  silently wrong.
"""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from distnet.errors import DistnetError, DTypeError, InvalidArgumentError, ShapeError

DEFAULT_FLOAT = np.dtype(np.float32)
DEFAULT_INT = np.dtype(np.int32)


def _to_array(value: Any, dtype=None) -> np.ndarray:
    """Convert a Python or numpy value to an ndarray with TF's default dtypes."""
    if isinstance(value, Tensor):
        arr = value.data
    elif isinstance(value, np.ndarray):
        arr = value
    elif isinstance(value, np.generic):
        arr = np.asarray(value)
    else:
        arr = np.asarray(value)
        if dtype is None:
            if arr.dtype == np.float64:
                arr = arr.astype(DEFAULT_FLOAT)
            elif arr.dtype == np.int64 and _fits(arr, DEFAULT_INT):
                # TF1: Python ints are int32, int64 when a value does not fit.
                arr = arr.astype(DEFAULT_INT)
    if arr.dtype == object:
        raise DTypeError(f"cannot make a tensor from {type(value).__name__}: it holds Python objects")
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype.kind in "iu" and arr.dtype.kind in "iu" and not _fits(arr, dtype):
            raise DTypeError(f"cannot convert to {dtype.name}: Expect: values in [{np.iinfo(dtype).min}, "
                             f"{np.iinfo(dtype).max}] Actual: [{arr.min()}, {arr.max()}]")
        if dtype.kind in "iu" and arr.dtype.kind in "fc":
            # Never a silent truncation (numpy's astype would turn 3.7 into 3).  TF1 refuses
            # every float here; whole numbers that fit are let through.
            flat = arr.reshape(-1)
            info = np.iinfo(dtype)
            # Bounds as powers of two, which every float type holds exactly (info.max itself
            # rounds up to 2**bits in float32/float64, and would let the first value past it wrap).
            lo, hi = float(info.min), float(info.max) + 1.0
            with np.errstate(invalid="ignore"):
                ok = (np.isfinite(flat) & (flat == np.round(flat)) & (flat >= lo) & (flat < hi)
                      if arr.dtype.kind == "f" else np.zeros(flat.shape, dtype=bool))
            if not ok.all():
                raise DTypeError(f"cannot convert {arr.dtype.name} values to {dtype.name}: Expect: whole numbers "
                                 f"in [{info.min}, {info.max}] Actual: {flat[~ok][:3].tolist()}; "
                                 "use distnet.cast to truncate on purpose")
        arr = arr.astype(dtype, copy=False)
    return arr


def _fits(arr: np.ndarray, dtype) -> bool:
    """Whether every value of the integer array ``arr`` is representable in ``dtype``."""
    if arr.size == 0 or np.can_cast(arr.dtype, dtype):
        return True
    info = np.iinfo(dtype)
    return bool(int(arr.min()) >= info.min and int(arr.max()) <= info.max)


class Tensor:
    """An n-dimensional array in a differentiable computation.

    Create one with :func:`constant` or as the result of an op.  The wrapped
    array is ``tensor.data``; :meth:`numpy` returns it.
    """

    __slots__ = ("data", "_op", "_parents", "name", "_read", "__weakref__")
    # Make ``ndarray + Tensor`` defer to Tensor.__radd__.
    __array_priority__ = 1000

    def __init__(self, value: Any, dtype=None, name: str | None = None):
        self.data = _to_array(value, dtype)
        self._op = None
        self._parents: tuple = ()
        self._read: tuple = ()
        self.name = name

    @classmethod
    def _from_op(cls, data: np.ndarray, op, parents) -> "Tensor":
        t = Tensor.__new__(Tensor)
        t.data = data if isinstance(data, np.ndarray) else np.asarray(data)
        t._op = op
        t._parents = parents = tuple(parents)
        # The versions of the variables this op read (see check_not_stale).
        t._read = tuple([(p, p._version) for p in parents if isinstance(p, Variable)]) \
            if op is not None else ()
        t.name = None
        return t

    # -- array-like properties -------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    def numpy(self) -> np.ndarray:
        """The value as a numpy array (the tensor's own buffer, not a copy)."""
        return self.data

    def item(self):
        return self.data.item()

    def __float__(self) -> float:
        return float(self.data)

    def __int__(self) -> int:
        return int(self.data)

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self) -> str:
        kind = type(self).__name__
        name = f" name={self.name!r}" if self.name else ""
        return f"<distnet.{kind}{name} shape={self.shape} dtype={self.dtype.name}\n{self.data!r}>"

    __hash__ = object.__hash__

    # -- operators (the ops live in distnet.ops) ---------------------------
    def __add__(self, other):
        return _ops.add(self, other)

    def __radd__(self, other):
        return _ops.add(other, self)

    def __sub__(self, other):
        return _ops.subtract(self, other)

    def __rsub__(self, other):
        return _ops.subtract(other, self)

    def __mul__(self, other):
        return _ops.multiply(self, other)

    def __rmul__(self, other):
        return _ops.multiply(other, self)

    def __truediv__(self, other):
        return _ops.divide(self, other)

    def __rtruediv__(self, other):
        return _ops.divide(other, self)

    def __matmul__(self, other):
        return _ops.matmul(self, other)

    def __rmatmul__(self, other):
        return _ops.matmul(other, self)

    def __pow__(self, other):
        return _ops.pow(self, other)

    def __rpow__(self, other):
        return _ops.pow(other, self)

    def __neg__(self):
        return _ops.negative(self)

    def __abs__(self):
        return _ops.abs(self)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    def __gt__(self, other):
        return _ops.greater(self, other)

    def __ge__(self, other):
        return _ops.greater_equal(self, other)

    def __lt__(self, other):
        return _ops.less(self, other)

    def __le__(self, other):
        return _ops.less_equal(self, other)

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(
                f"the truth value of a tensor of shape {self.shape} is ambiguous; "
                "use distnet.reduce_any / reduce_all or compare a scalar"
            )
        return bool(self.data)

    # -- conveniences -----------------------------------------------------
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops.reshape(self, shape)

    @property
    def T(self):
        return _ops.transpose(self)


class Variable(Tensor):
    """A mutable, named tensor: a model parameter.

    ``Variable(initial_value, name=None, trainable=True, dtype=None)``.  The
    value is copied into a buffer the variable owns; :meth:`assign` writes
    into that buffer in place, so optimizers and all-reduce can update it
    without allocating.
    """

    __slots__ = ("trainable", "_version", "_initial")

    # Creation order of unnamed variables, for TF1's names.  Class state on
    # purpose: TF1 keeps the same counter in its default graph, and a name
    # must be the same on every rank, which creation order guarantees.
    _unnamed = itertools.count()

    def __init__(self, initial_value: Any, name: str | None = None, trainable: bool = True, dtype=None):
        arr = _to_array(initial_value, dtype)
        if arr.dtype.kind not in "fiu":
            raise DTypeError(f"Variable {name!r}: Expect: a numeric dtype Actual: {arr.dtype}")
        if name is None:
            n = next(Variable._unnamed)
            name = "Variable" if n == 0 else f"Variable_{n}"
        super().__init__(np.array(arr, copy=True, order="C"), name=name)
        self.trainable = bool(trainable)
        self._version = 0
        self._initial: np.ndarray | None = None

    @property
    def version(self) -> int:
        """How many times the value was written in place since creation."""
        return self._version

    def mark_written(self) -> None:
        """Call before writing ``self.data`` in place (optimizers, EMA swaps do).

        Increments :attr:`version`; the first write keeps a copy of the
        value, so :attr:`initial_value` stays available (TF1's
        ``initialized_value``, from which moving averages start).
        """
        if self._initial is None and self._version == 0:
            self._initial = self.data.copy()
        self._version += 1

    def forget_initial_value(self) -> None:
        """Keep no copy of the initial value from now on: whoever needed it has
        it (the Trainer builds its moving average before the first step), and
        the copy would cost the variable's size again."""
        self._initial = _FORGOTTEN

    @property
    def initial_value(self) -> np.ndarray:
        """The value the variable was created with (a read-only array)."""
        if self._initial is _FORGOTTEN:
            raise InvalidArgumentError(
                f"Variable {self.name!r}: initial_value: Expect: a variable whose initial value is kept Actual: "
                "forget_initial_value() was called (a Trainer built its moving average from it); build a "
                "moving average before training instead")
        arr = self._initial if self._initial is not None else self.data.copy()
        arr = arr.view()
        arr.flags.writeable = False
        return arr

    def assign(self, value: Any) -> "Variable":
        """Set the value in place; the shape must match, the dtype is cast."""
        arr = value.data if isinstance(value, Tensor) else np.asarray(value)
        if arr.shape != self.data.shape:
            raise ShapeError(
                f"Variable {self.name!r}: assign of a value with shape {arr.shape}; "
                f"Expect: shape {self.data.shape} Actual: shape {arr.shape}"
            )
        self.mark_written()
        np.copyto(self.data, arr, casting="unsafe")
        return self

    def assign_add(self, delta: Any) -> "Variable":
        return self.assign(self.data + np.asarray(delta.data if isinstance(delta, Tensor) else delta))

    def assign_sub(self, delta: Any) -> "Variable":
        return self.assign(self.data - np.asarray(delta.data if isinstance(delta, Tensor) else delta))

    def value(self) -> Tensor:
        """A constant snapshot of the current value (a copy)."""
        return Tensor(self.data.copy())

    def __repr__(self) -> str:
        return f"<distnet.Variable {self.name!r} shape={self.shape} dtype={self.dtype.name} trainable={self.trainable}>"


#: ``Variable._initial`` after :meth:`Variable.forget_initial_value`.
_FORGOTTEN = np.zeros(0)


class StaleGradientError(DistnetError, RuntimeError):
    """A gradient was asked through values computed from old variable values."""


def check_not_stale(ys: "Tensor") -> None:
    """Raise :class:`StaleGradientError` if a variable that ``ys`` was computed
    from has been written since (assign, an optimizer step): the graph holds the
    old values, so its gradient would belong to the old weights.
    :func:`distnet.gradients` makes this check as it walks the graph.

    Build the loss again after every update (a function returning the loss,
    ``opt.minimize(lambda: loss_fn())``, does that), as eager frameworks do.
    """
    if not isinstance(ys, Tensor) or ys._op is None:
        return
    from distnet.autodiff import _stale

    seen = {id(ys)}
    stack = [ys]
    while stack:
        node = stack.pop()
        for var, version in node._read:
            if var._version != version:
                _stale(var, version)
        for p in node._parents:
            if p._op is not None and id(p) not in seen:
                seen.add(id(p))
                stack.append(p)


def constant(value: Any, dtype=None, name: str | None = None) -> Tensor:
    """A tensor holding ``value`` (TF's ``tf.constant``).

    Python floats become float32 and ints int32 unless ``dtype`` is given;
    numpy arrays keep their dtype.
    """
    return Tensor(value, dtype=dtype, name=name)


def as_tensor(value: Any, like: Tensor | None = None) -> Tensor:
    """``value`` as a Tensor; a non-Tensor takes ``like``'s dtype if given."""
    if isinstance(value, Tensor):
        return value
    if like is not None:
        dt = like.dtype
        if dt.kind in "iub":
            # TF1: a float value never silently truncates into an integer tensor.
            probe = value if isinstance(value, np.ndarray) else np.asarray(value)
            if probe.dtype.kind in "fc":
                raise DTypeError(
                    f"cannot combine a {dt.name} tensor with the float value {value!r}; "
                    f"Expect: a value of dtype {dt.name} Actual: {probe.dtype.name}; "
                    "use distnet.cast to make the tensor floating"
                )
        return Tensor._from_op(_to_array(value, dt), None, ())  # converted once, not twice
    return Tensor(value)


def binary_operands(x: Any, y: Any, op_name: str) -> tuple[Tensor, Tensor]:
    """Convert the operands of a binary op, enforcing one dtype.

    A non-Tensor adopts the other operand's dtype; two Tensors with different
    dtypes raise :class:`DTypeError` naming both.
    """
    xt, yt = isinstance(x, Tensor), isinstance(y, Tensor)
    if xt and not yt:
        y = as_tensor(y, like=x)
    elif yt and not xt:
        x = as_tensor(x, like=y)
    elif not xt and not yt:
        x, y = as_tensor(x), as_tensor(y)
        if x.dtype != y.dtype:
            y = Tensor(y.data.astype(x.dtype))
    if x.dtype != y.dtype:
        raise DTypeError(
            f"{op_name}: both operands must have the same dtype. "
            f"Expect: {x.dtype.name} and {x.dtype.name} Actual: {x.dtype.name} and {y.dtype.name}; "
            "use distnet.cast to convert one"
        )
    return x, y


from distnet import ops as _ops  # noqa: E402  (operators need the ops; ops need Tensor)
