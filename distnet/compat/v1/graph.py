"""TF1's graph: deferred operations, tensors with static shapes, collections,
name scopes and control dependencies.

An :class:`Operation` records a function of its input tensors' values; a
:class:`Tensor` is its output.  Nothing is computed when the graph is built
except *probes*: each op runs once on small stand-in values (unknown sizes
set to 2, then to 3) through the very distnet function it will run in a
session, which gives the output's dtype and static shape (a size that
differs between the two probes is unknown, ``?``).  So shapes and dtypes
follow the real ops, and a shape error is raised where the op is created,
as TF1 does.

TF1 keeps a process-wide default graph and, per thread, a stack of graphs
made default with ``Graph.as_default()``; the API being emulated is defined
by that state, so this module keeps it too (in :data:`_DEFAULTS`), and
nothing else of distnet reads it.
"""
from __future__ import annotations

import contextlib
import re
import threading
import warnings
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from distnet.errors import DistnetError, DTypeError, InvalidArgumentError, ShapeError
from distnet.tensor import Tensor as EagerTensor

#: Probe sizes for an unknown dimension (see the module doc).
PROBE_SIZES = (2, 3)


# -- static shapes ------------------------------------------------------------------

class Dimension:
    """One size of a static shape; ``value`` is an int or None (unknown)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value.value if isinstance(value, Dimension) else (None if value is None else int(value))

    def __int__(self) -> int:
        if self.value is None:
            raise TypeError("cannot convert an unknown Dimension (?) to an int; the size is known only at run time, "
                            "use tf.shape(x) for it")
        return self.value

    __index__ = __int__

    def __eq__(self, other: Any) -> bool:
        other = other.value if isinstance(other, Dimension) else other
        return self.value is not None and other is not None and self.value == other

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self.value)

    def _arith(self, other: Any, fn) -> "Dimension":
        o = other.value if isinstance(other, Dimension) else other
        return Dimension(None if self.value is None or o is None else fn(self.value, int(o)))

    def __mul__(self, other):
        return self._arith(other, lambda a, b: a * b)

    __rmul__ = __mul__

    def __add__(self, other):
        return self._arith(other, lambda a, b: a + b)

    __radd__ = __add__

    def __floordiv__(self, other):
        return self._arith(other, lambda a, b: a // b)

    def __repr__(self) -> str:
        return f"Dimension({self.value})"

    def __str__(self) -> str:
        return "?" if self.value is None else str(self.value)


class TensorShape:
    """A static shape: a list of :class:`Dimension`, or unknown rank (``dims is None``)."""

    __slots__ = ("dims",)

    def __init__(self, dims: Any):
        if isinstance(dims, TensorShape):
            dims = None if dims.dims is None else [d.value for d in dims.dims]
        if dims is not None and not isinstance(dims, (list, tuple)):
            dims = [dims]
        self.dims = None if dims is None else [Dimension(d) for d in dims]

    @property
    def ndims(self) -> int | None:
        return None if self.dims is None else len(self.dims)

    rank = ndims

    def as_list(self) -> list:
        if self.dims is None:
            raise ValueError("as_list() is not defined on an unknown TensorShape")
        return [d.value for d in self.dims]

    def is_fully_defined(self) -> bool:
        return self.dims is not None and all(d.value is not None for d in self.dims)

    def num_elements(self) -> int | None:
        if not self.is_fully_defined():
            return None
        return int(np.prod([d.value for d in self.dims], dtype=np.int64))

    def is_compatible_with(self, shape: Any) -> bool:
        other = shape if isinstance(shape, TensorShape) else TensorShape(list(shape))
        if self.dims is None or other.dims is None:
            return True
        return len(self.dims) == len(other.dims) and all(
            a.value is None or b.value is None or a.value == b.value for a, b in zip(self.dims, other.dims))

    def __len__(self) -> int:
        if self.dims is None:
            raise ValueError("cannot take the length of a shape of unknown rank")
        return len(self.dims)

    def __iter__(self):
        if self.dims is None:
            raise ValueError("cannot iterate over a shape of unknown rank")
        return iter(self.dims)

    def __getitem__(self, key):
        if self.dims is None:
            return TensorShape(None) if isinstance(key, slice) else Dimension(None)
        if isinstance(key, slice):
            return TensorShape([d.value for d in self.dims[key]])
        return self.dims[key]

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, (list, tuple)):
            other = TensorShape(list(other))
        if not isinstance(other, TensorShape):
            return NotImplemented
        if self.dims is None or other.dims is None:
            return self.dims is None and other.dims is None
        return [d.value for d in self.dims] == [d.value for d in other.dims]

    def __hash__(self) -> int:
        return hash(None if self.dims is None else tuple(d.value for d in self.dims))

    def __repr__(self) -> str:
        return "TensorShape(None)" if self.dims is None else f"TensorShape({[d for d in self.dims]})"

    def __str__(self) -> str:
        if self.dims is None:
            return "<unknown>"
        inner = ", ".join(str(d) for d in self.dims)
        return f"({inner},)" if len(self.dims) == 1 else f"({inner})"


_TF_DTYPE_NAMES = {"float": np.float32, "double": np.float64, "half": np.float16}


def as_dtype(dtype: Any) -> np.dtype | None:
    """A numpy dtype from a TF1 dtype (``tf.float32``, ``"float"`` meaning float32, ...)."""
    if dtype is None:
        return None
    if isinstance(dtype, str) and dtype in _TF_DTYPE_NAMES:
        return np.dtype(_TF_DTYPE_NAMES[dtype])
    try:
        return np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"Expect: a TF1 dtype such as tf.float32 or 'float32' Actual: {dtype!r}") from None


def as_shape(shape: Any) -> TensorShape:
    """A static shape from a TensorShape, a list/tuple, None (unknown), or an int
    ``n`` (TF1 reads ``shape=(batch_size)`` -- an int -- as ``[n]``)."""
    if isinstance(shape, TensorShape):
        return shape
    if isinstance(shape, (int, np.integer, Dimension)) and not isinstance(shape, bool):
        return TensorShape([shape])
    return TensorShape(None if shape is None else list(shape))


# -- the default graph --------------------------------------------------------------

class _Defaults(threading.local):
    """The stack of graphs made default with ``as_default()``, of default
    sessions and of ``arg_scope``s, per thread; the process-wide default graph
    below them."""

    def __init__(self) -> None:
        self.graphs: list = []
        self.sessions: list = []
        self.arg_scopes: list = []   # contrib.framework.arg_scope's stack of {function key: kwargs}


_DEFAULTS = _Defaults()
_GLOBAL: dict = {}


def get_default_graph() -> "Graph":
    """The innermost graph of ``with g.as_default():``, else the process-wide default graph."""
    if _DEFAULTS.graphs:
        return _DEFAULTS.graphs[-1]
    g = _GLOBAL.get("graph")
    if g is None:
        g = _GLOBAL["graph"] = Graph()
    return g


def reset_default_graph() -> None:
    """Start a new process-wide default graph (TF1's ``tf.reset_default_graph``)."""
    if _DEFAULTS.graphs:
        raise AssertionError("Do not use tf.reset_default_graph() to clear nested graphs; "
                             "leave the `with graph.as_default():` block first")
    _GLOBAL["graph"] = Graph()


def get_default_session():
    """The innermost session of ``with sess.as_default():`` (or an InteractiveSession), or None."""
    return _DEFAULTS.sessions[-1] if _DEFAULTS.sessions else None


class GraphKeys:
    """TF1's standard collection names."""

    GLOBAL_VARIABLES = "variables"
    VARIABLES = "variables"
    LOCAL_VARIABLES = "local_variables"
    TRAINABLE_VARIABLES = "trainable_variables"
    MOVING_AVERAGE_VARIABLES = "moving_average_variables"
    REGULARIZATION_LOSSES = "regularization_losses"
    LOSSES = "losses"
    UPDATE_OPS = "update_ops"
    SUMMARIES = "summaries"
    GLOBAL_STEP = "global_step"
    TRAIN_OP = "train_op"
    INIT_OP = "init_op"
    MODEL_VARIABLES = "model_variables"
    SAVERS = "savers"
    METRIC_VARIABLES = "metric_variables"
    SUMMARY_OP = "summary_op"
    READY_OP = "ready_op"
    LOCAL_INIT_OP = "local_init_op"


class Graph:
    """A TF1 graph: operations in creation order, unique names, collections.

    Example:
      >>> g = tf.Graph()
      >>> with g.as_default():
      ...     x = tf.placeholder(tf.float32, [None, 3])
      >>> x.graph is g
      True
    """

    def __init__(self) -> None:
        self._ops: list[Operation] = []
        self._by_name: dict[str, Operation] = {}
        self._used: dict[str, int] = {}
        self._collections: dict[str, list] = {}
        self._scopes: list[str] = []
        self._var_scopes: list[tuple[str, Any]] = []
        self._control: list[list] = []
        self._seed: int | None = None
        self._finalized = False
        self._variables_by_name: dict[str, Any] = {}
        self._var_scope_names: set[str] = set()
        self._optimizers: list = []   # the tf.train optimizers that made an update op here (for Saver)
        self._comm = None          # set by DistributedOptimizer: variables are broadcast when initialized
        self._shard = None         # (offset, count, global count) of a constant made of distributed.shard()'s output
        self._batch_norm_sync: tuple | None = None   # (sync statistics, loss reduction): see set_batch_norm_sync

    def multi_rank_comm(self):
        """The communicator a ``DistributedOptimizer`` built on this graph runs over,
        when it spans more than one rank; None on one process (nothing to agree on)."""
        comm = self._comm
        return comm if comm is not None and comm.size > 1 else None

    def set_batch_norm_sync(self, sync: bool, loss_reduction: str) -> None:
        """How this graph's batch normalization ops combine ranks (as a
        ``DistributedOptimizer`` built on it says): whether they all-reduce their
        statistics, and whether the ranks' losses are a mean or a sum.  Every
        ``DistributedOptimizer`` of a graph must agree, as one batch normalization op
        serves all of them (a GAN builds two)."""
        new = (bool(sync), loss_reduction)
        if self._batch_norm_sync is not None and self._batch_norm_sync != new:
            old_sync, old_reduction = self._batch_norm_sync
            raise InvalidArgumentError(
                "DistributedOptimizer: Expect: every DistributedOptimizer of a graph with the same "
                f"sync_batch_norm and loss_reduction (its batch normalization follows them) Actual: "
                f"sync_batch_norm={new[0]}, loss_reduction={loss_reduction!r} after sync_batch_norm={old_sync}, "
                f"loss_reduction={old_reduction!r}")
        self._batch_norm_sync = new

    def batch_norm_sync(self) -> tuple:
        """``(sync statistics, loss reduction)``; ``(True, "mean")`` before any ``DistributedOptimizer``."""
        return self._batch_norm_sync if self._batch_norm_sync is not None else (True, "mean")

    def _shard_offset(self, run) -> int:
        """Index in the global batch of this rank's first sample (0 on one process)."""
        info = run.shard if run is not None and run.shard is not None else self._shard
        return int(info[0]) if info is not None else 0

    # -- default ------------------------------------------------------------
    @contextlib.contextmanager
    def as_default(self) -> Iterator["Graph"]:
        _DEFAULTS.graphs.append(self)
        try:
            yield self
        finally:
            _DEFAULTS.graphs.pop()

    @property
    def seed(self) -> int | None:
        return self._seed

    @seed.setter
    def seed(self, value: int | None) -> None:
        self._seed = None if value is None else int(value)

    def finalize(self) -> None:
        self._finalized = True

    @property
    def finalized(self) -> bool:
        return self._finalized

    # -- names --------------------------------------------------------------
    def get_name_scope(self) -> str:
        return self._scopes[-1] if self._scopes else ""

    def unique_name(self, name: str, mark_as_used: bool = True) -> str:
        """``name`` under the current scope, with ``_1``, ``_2``, ... appended if taken (TF1)."""
        scope = self.get_name_scope()
        full = f"{scope}/{name}" if scope else name
        key = full.lower()
        i = self._used.get(key, 0)
        out = full
        if i > 0:
            while f"{key}_{i}" in self._used:
                i += 1
            out = f"{full}_{i}"
        if mark_as_used:
            self._used[key] = i + 1
            self._used[out.lower()] = max(self._used.get(out.lower(), 0), 1)
        return out

    @contextlib.contextmanager
    def name_scope(self, name: str | None) -> Iterator[str]:
        if name is None or name == "":
            saved = self._scopes
            self._scopes = []
            try:
                yield ""
            finally:
                self._scopes = saved
            return
        if name.endswith("/"):
            scope = name[:-1]
        else:
            scope = self.unique_name(name)
        self._scopes.append(scope)
        try:
            yield scope + "/"
        finally:
            self._scopes.pop()

    # -- collections --------------------------------------------------------
    def add_to_collection(self, name: str, value: Any) -> None:
        self._collections.setdefault(name, []).append(value)

    def add_to_collections(self, names: Sequence[str], value: Any) -> None:
        for n in ([names] if isinstance(names, str) else names):
            self.add_to_collection(n, value)

    def get_collection(self, name: str, scope: str | None = None) -> list:
        items = list(self._collections.get(name, []))
        if scope is None:
            return items
        pattern = re.compile(scope)
        return [it for it in items if pattern.match(getattr(getattr(it, "op", it), "name", "") or "")]

    def get_collection_ref(self, name: str) -> list:
        return self._collections.setdefault(name, [])

    def get_all_collection_keys(self) -> list:
        return sorted(self._collections)

    def clear_collection(self, name: str) -> None:
        self._collections.pop(name, None)

    # -- operations ---------------------------------------------------------
    def get_operations(self) -> list:
        return list(self._ops)

    def get_operation_by_name(self, name: str) -> "Operation":
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"The name {name!r} refers to an Operation not in the graph") from None

    def get_tensor_by_name(self, name: str) -> "Tensor":
        op_name, _, index = name.partition(":")
        if not index:
            raise ValueError(f"The name {name!r} looks like an Operation name; a Tensor name is 'op_name:0'")
        op = self.get_operation_by_name(op_name)
        if op.outputs and int(index) == 0:
            return op.outputs[0]
        raise KeyError(f"The name {name!r} refers to a Tensor which does not exist")

    def as_graph_element(self, obj: Any):
        if isinstance(obj, str):
            return self.get_tensor_by_name(obj) if ":" in obj else self.get_operation_by_name(obj)
        return obj

    @contextlib.contextmanager
    def control_dependencies(self, control_inputs) -> Iterator[None]:
        if control_inputs is None:
            saved = self._control
            self._control = []
            try:
                yield
            finally:
                self._control = saved
            return
        ops = []
        for c in control_inputs:
            c = self.as_graph_element(c)
            if isinstance(c, Tensor):
                c = c.op
            if not isinstance(c, Operation):
                raise DTypeError(f"control_dependencies: Expect: Operations or Tensors Actual: {type(c).__name__}")
            ops.append(c)
        self._control.append(ops)
        try:
            yield
        finally:
            self._control.pop()

    def _control_inputs(self) -> list:
        out: list = []
        for group in self._control:
            for op in group:
                if op not in out:
                    out.append(op)
        return out

    def _add(self, op: "Operation") -> None:
        if self._finalized:
            raise RuntimeError("Graph is finalized and cannot be modified.")
        self._ops.append(op)
        self._by_name[op.name] = op


# -- operations and tensors ---------------------------------------------------------

class Operation:
    """A node of the graph: ``compute(run, input values) -> value`` (a distnet
    tensor, or None for an op without output, e.g. a training step)."""

    #: Computed again whenever an op that needs it is (a variable's read; see session.py).
    _volatile = False

    def __init__(self, op_type: str, inputs: Sequence["Tensor"], compute: Callable, *, name: str | None = None,
                 graph: Graph | None = None, control_inputs: Sequence["Operation"] = ()):
        graph = graph if graph is not None else get_default_graph()
        for t in inputs:
            if t.graph is not graph:
                raise ValueError(f"Tensor {t.name} must be from the same graph as the op {op_type} being created; "
                                 "build the whole model inside one `with graph.as_default():`")
        self.graph = graph
        self.type = op_type
        self.name = graph.unique_name(name or op_type)
        self.inputs = list(inputs)
        self.control_inputs = list(control_inputs) + [c for c in graph._control_inputs() if c not in control_inputs]
        self._compute = compute
        self.outputs: list[Tensor] = []
        graph._add(self)

    def run(self, feed_dict=None, session=None) -> None:
        """Run this op in ``session`` (default: the default session)."""
        from distnet.compat.v1.session import _session_or_default

        _session_or_default(session, "Operation.run").run(self, feed_dict=feed_dict)

    @property
    def values(self):
        return tuple(self.outputs)

    def __repr__(self) -> str:
        return f"<tf.Operation '{self.name}' type={self.type}>"


class Tensor:
    """The output of an :class:`Operation`: a value known when a session runs it.

    ``shape`` is the static shape (unknown sizes are ``?``); ``eval()`` runs it
    in the default session; operators (``+ - * / @ ** [] < >``) make new ops.
    """

    # numpy defers ``ndarray * tensor`` to the tensor's reflected operator.
    __array_ufunc__ = None

    def __init__(self, op: Operation, dtype: np.dtype | None, shape: TensorShape, probes: tuple | None):
        self.op = op
        self.value_index = 0
        self.dtype = None if dtype is None else np.dtype(dtype)
        self._shape = shape
        self._probes = probes
        op.outputs.append(self)

    @property
    def graph(self) -> Graph:
        return self.op.graph

    @property
    def name(self) -> str:
        return f"{self.op.name}:{self.value_index}"

    @property
    def shape(self) -> TensorShape:
        return self._shape

    def get_shape(self) -> TensorShape:
        return self._shape

    def set_shape(self, shape: Any) -> None:
        new = as_shape(shape)
        if not self._shape.is_compatible_with(new):
            raise ValueError(f"Shapes {self._shape} and {new} are incompatible")
        if new.dims is not None:
            old = self._shape.dims
            self._shape = TensorShape([n.value if n.value is not None else (old[i].value if old else None)
                                       for i, n in enumerate(new.dims)])

    @property
    def device(self) -> str:
        return ""

    def eval(self, feed_dict=None, session=None):
        """The value, computed in ``session`` (default: the default session)."""
        from distnet.compat.v1.session import _session_or_default

        return _session_or_default(session, "Tensor.eval").run(self, feed_dict=feed_dict)

    def consumers(self) -> list:
        return [op for op in self.graph._ops if self in op.inputs]

    def __repr__(self) -> str:
        dt = self.dtype.name if self.dtype is not None else "unknown"
        return f"<tf.Tensor '{self.name}' shape={self._shape} dtype={dt}>"

    __hash__ = object.__hash__

    def __eq__(self, other: Any) -> bool:  # TF1: identity (use tf.equal for values)
        return self is other

    def __ne__(self, other: Any) -> bool:
        return self is not other

    def __bool__(self) -> bool:
        raise TypeError("Using a `tf.Tensor` as a Python `bool` is not allowed: its value is known only in "
                        "Session.run; use tf.cond or tf.where, or fetch the value first")

    def __iter__(self):
        raise TypeError("a graph Tensor is not iterable; slice it (x[i]) or use tf.unstack-free indexing")

    def __len__(self) -> int:
        raise TypeError("len() of a graph Tensor is not defined; use x.shape[0] or tf.shape(x)[0]")

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"{self.name} is a graph tensor with no value yet; fetch it with sess.run({self.op.name}) "
                        "or tensor.eval()")

    # operators: the ops of distnet.compat.v1.math_ops
    def __add__(self, o):
        return _m().add(self, o)

    def __radd__(self, o):
        return _m().add(o, self)

    def __sub__(self, o):
        return _m().subtract(self, o)

    def __rsub__(self, o):
        return _m().subtract(o, self)

    def __mul__(self, o):
        return _m().multiply(self, o)

    def __rmul__(self, o):
        return _m().multiply(o, self)

    def __truediv__(self, o):
        return _m().divide(self, o)

    def __rtruediv__(self, o):
        return _m().divide(o, self)

    __div__ = __truediv__

    def __floordiv__(self, o):
        return _m().floordiv(self, o)

    def __rfloordiv__(self, o):
        return _m().floordiv(o, self)

    def __mod__(self, o):
        return _m().floormod(self, o)

    def __rmod__(self, o):
        return _m().floormod(o, self)

    def __matmul__(self, o):
        return _m().matmul(self, o)

    def __rmatmul__(self, o):
        return _m().matmul(o, self)

    def __pow__(self, o):
        return _m().pow(self, o)

    def __rpow__(self, o):
        return _m().pow(o, self)

    def __neg__(self):
        return _m().negative(self)

    def __abs__(self):
        return _m().abs(self)

    def __gt__(self, o):
        return _m().greater(self, o)

    def __ge__(self, o):
        return _m().greater_equal(self, o)

    def __lt__(self, o):
        return _m().less(self, o)

    def __le__(self, o):
        return _m().less_equal(self, o)

    def __and__(self, o):
        return _m().logical_and(self, o)

    def __or__(self, o):
        return _m().logical_or(self, o)

    def __invert__(self):
        return _m().logical_not(self)

    def __getitem__(self, index):
        return _m().getitem(self, index)


def upstream_ops(tensors: Sequence["Tensor"]) -> Iterator[Operation]:
    """Each op that ``tensors`` are computed from (their own ops included), once,
    walking the data inputs (not control inputs); lazily, so ``any(...)`` over it
    stops at the first match."""
    seen: set = set()
    stack = [t.op for t in tensors]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        yield op
        stack.extend(i.op for i in op.inputs)


def reads_fed_data(t: "Tensor") -> bool:
    """Whether ``t`` depends on the program's data: a placeholder, a tf.data or queue
    batch, or a constant made of a rank's shard (ops marked ``_placeholder``)."""
    return any(getattr(op, "_placeholder", False) for op in upstream_ops([t]))


def _m():
    from distnet.compat.v1 import math_ops

    return math_ops


# -- building ops from distnet functions --------------------------------------------

def _flatten(obj: Any, found: list) -> Any:
    """``obj`` with every graph Tensor replaced by ``_Slot(i)``; the tensors appended to ``found``."""
    if isinstance(obj, Tensor):
        found.append(obj)
        return _Slot(len(found) - 1)
    if isinstance(obj, (list, tuple)) and not _is_namedtuple(obj):
        items = [_flatten(x, found) for x in obj]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, dict):
        return {k: _flatten(v, found) for k, v in obj.items()}
    if isinstance(obj, slice):
        return slice(_flatten(obj.start, found), _flatten(obj.stop, found), _flatten(obj.step, found))
    return obj


def _fill(obj: Any, values: Sequence) -> Any:
    if isinstance(obj, _Slot):
        return values[obj.index]
    if isinstance(obj, list):
        return [_fill(x, values) for x in obj]
    if isinstance(obj, tuple):
        return tuple(_fill(x, values) for x in obj)
    if isinstance(obj, dict):
        return {k: _fill(v, values) for k, v in obj.items()}
    if isinstance(obj, slice):
        return slice(_scalar(_fill(obj.start, values)), _scalar(_fill(obj.stop, values)), _scalar(_fill(obj.step, values)))
    return obj


def _scalar(v: Any) -> Any:
    if isinstance(v, EagerTensor):
        return v.data.item()
    return v


def _is_namedtuple(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


class _Slot:
    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


def convert_to_tensor(value: Any, dtype: Any = None, name: str | None = None) -> Tensor:
    """A graph tensor for ``value``: a Tensor (checked against ``dtype``) or a constant."""
    if isinstance(value, Tensor):
        if dtype is not None and value.dtype is not None and np.dtype(dtype) != value.dtype:
            raise DTypeError(f"Tensor conversion requested dtype {np.dtype(dtype).name} for Tensor with dtype "
                             f"{value.dtype.name}: {value!r}; use tf.cast")
        return value
    from distnet.compat.v1.array_ops import constant

    return constant(value, dtype=dtype, name=name or "Const")


def build(op_type: str, fn: Callable, *args, _name: str | None = None, **kwargs) -> Tensor:
    """An op whose value is ``fn(*args, **kwargs)`` with every graph tensor in
    ``args``/``kwargs`` (also inside lists, tuples and dicts) replaced by its
    value; ``fn`` is a distnet function, so the op computes exactly as the
    eager API does.  Its static shape and dtype come from probes."""
    found: list = []
    template_args = _flatten(list(args), found)
    template_kwargs = _flatten(kwargs, found)

    def compute(run, values):
        return fn(*_fill(template_args, values), **_fill(template_kwargs, values))

    dtype, shape, probes = _probe(op_type, compute, found)
    op = Operation(op_type, found, compute, name=_name)
    return Tensor(op, dtype, shape, probes)


def probe_array(t: Tensor, k: int) -> np.ndarray:
    return t._probes[k]


def _probe(op_type: str, compute: Callable, inputs: Sequence[Tensor]):
    """``(dtype, static shape, probes)`` of an op from running ``compute`` on
    the inputs' probes (see the module doc)."""
    rank_known = all(t._shape.dims is not None for t in inputs)
    if any(t._probes is None for t in inputs):
        return None, TensorShape(None), None
    results, errors = _run_probes(compute, [[t._probes[k] for t in inputs] for k in range(2)])
    merged_ok = False
    if len(errors) == 2 and rank_known:
        # TF1 merges an unknown size with a known one (labels [?] against logits [100, 10]);
        # probe again with each unknown size set to a size another input has at that axis.
        for merged in _merged_probes(inputs):
            retried, retry_errors = _run_probes(compute, merged)
            if len(retry_errors) < 2:
                results, merged_ok = retried, True
                break
    if len(errors) == 2 and not merged_ok:
        if rank_known and isinstance(errors[0], (ShapeError, DTypeError, InvalidArgumentError)):
            raise type(errors[0])(_named(op_type, errors[0])) from None
        return None, TensorShape(None), None
    a, b = results
    if a is None or b is None:
        one = a if a is not None else b
        return (None if one is None else one.dtype), TensorShape(None), None
    if not rank_known or a.ndim != b.ndim:
        # An input of unknown rank (a placeholder without shape) probes as a scalar.
        return a.dtype, TensorShape(None), (a, b)
    shape = TensorShape([n if n == m else None for n, m in zip(a.shape, b.shape)])
    return a.dtype, shape, (a, b)


def _named(op_type: str, err: Exception) -> str:
    """``err``'s message starting with the op's name once (the distnet function may name itself)."""
    text = str(err)
    return text if text.startswith(f"{op_type}:") else f"{op_type}: {text}"


def _run_probes(compute: Callable, probe_sets: Sequence[Sequence[np.ndarray]]) -> tuple:
    """``(results, errors)`` of ``compute`` on each set of input probes."""
    results, errors = [], []
    for arrays in probe_sets:
        vals = [EagerTensor._from_op(a, None, ()) for a in arrays]
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = compute(None, vals)
        except (DistnetError, ValueError, TypeError, IndexError) as err:
            errors.append(err)
            results.append(None)
            continue
        if isinstance(out, EagerTensor):
            results.append(out.data)
        elif isinstance(out, (np.ndarray, np.generic)):
            results.append(np.asarray(out))
        else:
            results.append(None)
    return results, errors


def _merged_probes(inputs: Sequence[Tensor]) -> Iterator[list]:
    """Stand-ins where each unknown size takes the known size another input has at
    the same axis, counted from the front (batch axes), then from the back
    (broadcasting); sizes still unknown stay 2, then 3."""
    unknown = [t for t in inputs if any(d.value is None for d in t._shape.dims)]
    if not unknown:
        return
    for from_back in (False, True):
        known: dict = {}
        for t in inputs:
            n = len(t._shape.dims)
            for i, d in enumerate(t._shape.dims):
                if d.value is not None:
                    known.setdefault(i - n if from_back else i, d.value)
        sets = []
        for size in PROBE_SIZES:
            arrays = []
            for t, p in zip(inputs, (t._probes[0] for t in inputs)):
                if t in unknown:
                    n = len(t._shape.dims)
                    dims = tuple(d.value if d.value is not None else known.get(i - n if from_back else i, size)
                                 for i, d in enumerate(t._shape.dims))
                    arrays.append(np.zeros(dims, dtype=p.dtype))
                else:
                    arrays.append(p)
            sets.append(arrays)
        yield sets


def leaf(op_type: str, compute: Callable, dtype: Any, shape: TensorShape, probes: tuple | None, *,
         name: str | None = None, inputs: Sequence[Tensor] = ()) -> Tensor:
    """An op with a given dtype, shape and probes (placeholders, variables, random draws)."""
    op = Operation(op_type, list(inputs), compute, name=name)
    return Tensor(op, dtype, shape, probes)


def probes_for(shape: TensorShape, dtype: Any) -> tuple:
    """Zero-valued stand-ins of ``shape`` (unknown sizes 2, then 3; unknown rank: scalars)."""
    dt = np.dtype(dtype)
    if shape.dims is None:
        z = np.zeros((), dt)
        return (z, z)
    out = []
    for size in PROBE_SIZES:
        dims = tuple(size if d.value is None else d.value for d in shape.dims)
        out.append(np.broadcast_to(np.zeros((), dt), dims))
    return tuple(out)


def no_output(op_type: str, compute: Callable, inputs: Sequence[Tensor] = (), *, name: str | None = None,
              control_inputs: Sequence[Operation] = ()) -> Operation:
    """An op that is run for its effect (a training step, an initializer, a group)."""
    return Operation(op_type, list(inputs), compute, name=name, control_inputs=control_inputs)
