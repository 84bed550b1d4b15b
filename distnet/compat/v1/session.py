"""``Session``: runs parts of a graph with ``feed_dict``, holds the variables' values.

``sess.run(fetches, feed_dict)`` evaluates the ops the fetches need, each
once per call, inputs and control inputs first (control inputs in the order
they were given: ``control_dependencies([train_step, ema_op])`` runs the
step, then the average).  Values are distnet tensors, so a gradient op can
differentiate the values of the same call with :func:`distnet.gradients`.

An op marked ``_volatile`` (a variable's read) is computed again each time
an op that needs it is computed, so a read after an update in the same call
sees the new value; every other op is computed once per call.

Variable values, optimizer slots and random generators belong to the session
(TF1's resources): two sessions on one graph do not share them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.compat.v1.graph import _DEFAULTS, Graph, Operation, Tensor, get_default_graph
from distnet.errors import DTypeError, InvalidArgumentError
from distnet.tensor import Tensor as EagerTensor, _to_array


class _Run:
    """One ``Session.run`` call: the values computed so far, by op."""

    __slots__ = ("session", "values", "fed", "shard", "snapshots", "rank_local")

    def __init__(self, session: "Session", fed: dict, shard: tuple | None = None, rank_local: bool = False):
        self.session = session
        # This run's summaries and metrics are this rank's own (a chief-only hook's run): no all-reduce.
        self.rank_local = rank_local
        self.values: dict = {}
        self.fed = fed
        self.shard = shard    # (offset, count, global count) when a fed batch came from distributed.shard
        # The variable reads of this call, by variable op: [(storage, version, value)] (variables.py)
        self.snapshots: dict = {}

    def evaluate(self, target: Operation) -> Any:
        """The value of ``target``, computing what it needs first (iteratively)."""
        values, fed = self.values, self.fed
        if target in values and not target._volatile:
            return values[target]
        stack = [(target, False)]
        while stack:
            op, expanded = stack.pop()
            if expanded:
                if op not in values or op._volatile:
                    values[op] = op._compute(self, [values[t.op] for t in op.inputs])
                continue
            if op in values and not op._volatile:
                continue
            if op in fed:
                values[op] = fed[op]
                continue
            stack.append((op, True))
            deps = list(op.control_inputs) + [t.op for t in op.inputs]
            for dep in reversed(deps):
                if dep not in values or dep._volatile:
                    stack.append((dep, False))
        return values[target]

    def value(self, t: Tensor) -> Any:
        return self.evaluate(t.op)

    def run_in_order(self, order: list) -> None:
        """Compute ``order`` (from :func:`evaluation_order` for this run's fed ops): what
        ``evaluate`` of its targets computes, without walking the graph again."""
        values, fed = self.values, self.fed
        for op in order:
            if op in fed:
                values[op] = fed[op]
            elif op not in values or op._volatile:    # an op may have evaluated others (a cond's branch)
                values[op] = op._compute(self, [values[t.op] for t in op.inputs])


def evaluation_order(targets: list, fed: Any) -> list:
    """The ops in the order ``_Run.evaluate`` visits and computes them for ``targets`` one after
    another with the ops in ``fed`` given -- for a graph run many times with the same ops fed (a
    recurrent step, a dataset's function).  A variable's read (``_volatile``) appears at each
    use, as it is computed again at each use."""
    done, order = set(), []
    for target in targets:
        if target in done and not target._volatile:
            continue
        stack = [(target, False)]
        while stack:
            op, expanded = stack.pop()
            if expanded:
                if op not in done or op._volatile:
                    done.add(op)
                    order.append(op)
                continue
            if op in done and not op._volatile:
                continue
            if op in fed:
                done.add(op)
                order.append(op)
                continue
            stack.append((op, True))
            deps = list(op.control_inputs) + [t.op for t in op.inputs]
            for dep in reversed(deps):
                if dep not in done or dep._volatile:
                    stack.append((dep, False))
    return order


class RunOptions:
    """TF1's ``tf.RunOptions(trace_level=...)``: accepted by ``Session.run(options=)``;
    there is no runtime to trace, so no option changes a run."""

    NO_TRACE, SOFTWARE_TRACE, HARDWARE_TRACE, FULL_TRACE = 0, 1, 2, 3

    def __init__(self, trace_level: int = 0, timeout_in_ms: int = 0, inter_op_thread_pool: int = 0,
                 output_partition_graphs: bool = False, report_tensor_allocations_upon_oom: bool = False,
                 **kwargs: Any):
        self.trace_level = trace_level
        self.timeout_in_ms = timeout_in_ms
        self.output_partition_graphs = output_partition_graphs


class _StepStats:
    """``RunMetadata.step_stats``: ``dev_stats`` stays empty (no per-device trace is recorded)."""

    def __init__(self) -> None:
        self.dev_stats: list = []


class RunMetadata:
    """TF1's ``tf.RunMetadata()``: filled by ``Session.run(run_metadata=)`` with an
    empty ``step_stats`` (no per-op trace is recorded) and no partition graphs."""

    def __init__(self) -> None:
        self.step_stats = _StepStats()
        self.partition_graphs: list = []
        self.cost_graph = None

    def HasField(self, name: str) -> bool:  # noqa: N802
        return False

    def ListFields(self) -> list:  # noqa: N802
        return []


class Session:
    """TF1's ``tf.Session(graph=None)``; a context manager that makes itself
    the default session.

    Example:
      >>> with tf.Session() as sess:
      ...     sess.run(tf.global_variables_initializer())
      ...     print(sess.run(loss, feed_dict={x: batch}))
    """

    def __init__(self, target: str = "", graph: Graph | None = None, config: Any = None):
        self.graph = graph if graph is not None else get_default_graph()
        self._closed = False
        self._resources: dict = {}
        self._default_depth = 0
        self._gradient_plans: dict = {}   # fetches -> the gradient ops to run first

    # -- resources (variable values, optimizer state, generators) ----------
    def resource(self, key: Any, make=None):
        """The session's object for ``key`` (created by ``make()`` on first use, if given)."""
        if key not in self._resources:
            if make is None:
                return None
            self._resources[key] = make()
        return self._resources[key]

    def set_resource(self, key: Any, value: Any) -> None:
        self._resources[key] = value

    # -- running --------------------------------------------------------------
    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        """Values of ``fetches`` (a tensor, an op, a name, or any nesting of
        lists, tuples, namedtuples and dicts of them): numpy arrays (numpy
        scalars for 0-d), ``None`` for ops."""
        return self._run(fetches, feed_dict, options, run_metadata)

    def _run(self, fetches, feed_dict=None, options=None, run_metadata=None, *, rank_local: bool = False):
        """:meth:`run`; ``rank_local``: the run's summaries and metrics keep this rank's
        values (``MonitoredSession`` running a chief-only hook's request on rank 0 alone)."""
        if self._closed:
            raise RuntimeError("Attempted to use a closed Session.")
        if options is not None and not isinstance(options, RunOptions):
            raise TypeError(f"Session.run: options: Expect: a tf.RunOptions Actual: {type(options).__name__}")
        if run_metadata is not None and not isinstance(run_metadata, RunMetadata):
            raise TypeError(f"Session.run: run_metadata: Expect: a tf.RunMetadata "
                            f"Actual: {type(run_metadata).__name__}")
        fed, shard = self._feeds(feed_dict)
        run = _Run(self, fed, shard, rank_local)
        graph = self.graph
        flat: list = []
        structure = _flatten_fetches(fetches, flat, graph)
        # TF1 computes every gradient of a call from the same forward values before
        # any update applies (a GAN's discriminator and generator steps fetched together):
        # with more than one gradient op to run, those run first.
        for op in self._gradient_ops(flat):
            run.evaluate(op)
        results = []
        for f in flat:
            value = run.evaluate(f.op if isinstance(f, Tensor) else f)
            results.append(_to_numpy(value) if isinstance(f, Tensor) else None)
        return _rebuild(structure, results)

    def _gradient_ops(self, flat: list) -> list:
        """The gradient ops the fetches need, when more than one (else none)."""
        key = tuple(id(f) for f in flat)
        found = self._gradient_plans.get(key)
        if found is None:
            found, seen = [], set()
            stack = [f.op if isinstance(f, Tensor) else f for f in reversed(flat)]
            while stack:
                op = stack.pop()
                if op in seen:
                    continue
                seen.add(op)
                if getattr(op, "_gradient", False):
                    found.append(op)
                stack.extend(reversed([t.op for t in op.inputs] + list(op.control_inputs)))
            found = found if len(found) > 1 else []
            self._gradient_plans[key] = found
        return found

    def _feeds(self, feed_dict) -> tuple:
        fed: dict = {}
        shard = None
        if not feed_dict:
            return fed, shard
        for key, value in feed_dict.items():
            if getattr(value, "shard_info", None) is not None:
                shard = value.shard_info
            t = self.graph.as_graph_element(key) if isinstance(key, str) else key
            if not isinstance(t, Tensor):
                raise DTypeError(f"feed_dict key: Expect: a Tensor (e.g. a placeholder) or its name "
                                 f"Actual: {type(key).__name__} {key!r:.60}")
            if t.graph is not self.graph:
                raise ValueError(f"Cannot feed {t.name}: it is not an element of this session's graph")
            if isinstance(value, Tensor):
                raise TypeError(f"The value of a feed cannot be a tf.Tensor object ({value.name}); "
                                "acceptable feed values are Python scalars, lists and numpy arrays")
            try:
                arr = _to_array(value.data if isinstance(value, EagerTensor) else value, t.dtype)
            except (DTypeError, ValueError, TypeError) as err:
                raise DTypeError(f"Cannot feed value for Tensor {t.name!r} of dtype "
                                 f"{t.dtype.name if t.dtype is not None else '?'}: {err}") from None
            shape = t.shape
            if shape.dims is not None and not shape.is_compatible_with(arr.shape):
                raise ValueError(f"Cannot feed value of shape {arr.shape} for Tensor {t.name!r}, "
                                 f"which has shape '{shape}'")
            fed[t.op] = EagerTensor._from_op(np.array(arr, copy=True), None, ())
        return fed, shard

    # -- context --------------------------------------------------------------
    def as_default(self):
        import contextlib

        @contextlib.contextmanager
        def ctx():
            _DEFAULTS.sessions.append(self)
            _DEFAULTS.graphs.append(self.graph)
            try:
                yield self
            finally:
                _DEFAULTS.graphs.pop()
                _DEFAULTS.sessions.pop()

        return ctx()

    def __enter__(self) -> "Session":
        self._ctx = self.as_default()
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)
        self.close()

    def close(self) -> None:
        self._closed = True
        self._resources.clear()

    @property
    def sess_str(self) -> str:
        return ""


class InteractiveSession(Session):
    """A session that makes itself the default when created (for ``t.eval()`` in a shell)."""

    def __init__(self, target: str = "", graph: Graph | None = None, config: Any = None):
        super().__init__(target, graph, config)
        _DEFAULTS.sessions.append(self)
        self._installed = True

    def close(self) -> None:
        if getattr(self, "_installed", False) and self in _DEFAULTS.sessions:
            _DEFAULTS.sessions.remove(self)
            self._installed = False
        super().close()


def _session_or_default(session: Session | None, what: str) -> Session:
    if session is not None:
        return session
    if _DEFAULTS.sessions:
        return _DEFAULTS.sessions[-1]
    raise ValueError(f"Cannot evaluate tensor using `{what}`: No default session is registered. "
                     "Use `with sess.as_default()` or pass an explicit session to `eval(session=sess)`")


def _flatten_fetches(fetches: Any, flat: list, graph: Graph):
    if isinstance(fetches, str):
        fetches = graph.as_graph_element(fetches)
    if isinstance(fetches, (Tensor, Operation)):
        if fetches.graph is not graph:
            raise ValueError(f"Fetch argument {fetches!r} cannot be interpreted as a Tensor: "
                             "it is not an element of this session's graph")
        flat.append(fetches)
        return ("leaf", len(flat) - 1)
    if isinstance(fetches, dict):
        return ("dict", type(fetches), {k: _flatten_fetches(v, flat, graph) for k, v in fetches.items()})
    if isinstance(fetches, tuple) and hasattr(fetches, "_fields"):
        return ("namedtuple", type(fetches), [_flatten_fetches(v, flat, graph) for v in fetches])
    if isinstance(fetches, (list, tuple)):
        return ("seq", type(fetches), [_flatten_fetches(v, flat, graph) for v in fetches])
    if fetches is None:
        raise TypeError("Fetch argument None has invalid type <class 'NoneType'>")
    raise TypeError(f"Fetch argument {fetches!r:.80} has invalid type {type(fetches).__name__}: "
                    "Expect: a Tensor, an Operation, their names, or lists/tuples/dicts of them")


def _rebuild(structure, results):
    kind = structure[0]
    if kind == "leaf":
        return results[structure[1]]
    if kind == "dict":
        return structure[1]({k: _rebuild(v, results) for k, v in structure[2].items()})
    if kind == "namedtuple":
        return structure[1](*[_rebuild(v, results) for v in structure[2]])
    items = [_rebuild(v, results) for v in structure[2]]
    return items if structure[1] is list else structure[1](items)


def _to_numpy(value: Any):
    if isinstance(value, EagerTensor):
        arr = np.array(value.data, copy=True)
        return arr[()] if arr.ndim == 0 else arr
    if value is None:
        return None
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.array(value, copy=True)
        return arr[()] if arr.ndim == 0 else arr
    from distnet.compat.v1.summary import Summary

    if isinstance(value, Summary):
        return value
    raise InvalidArgumentError(f"internal: a fetched op produced {type(value).__name__}, not a tensor value")
