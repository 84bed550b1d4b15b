"""Data parallelism for TF1 programs with one line, as Horovod does.

::

    opt = tf.train.AdamOptimizer(1e-4)
    opt = tf.DistributedOptimizer(opt)          # the one line
    ...
    xs_part, ys_part = tf.distributed.shard(batch_xs, batch_ys)   # this rank's part of the global batch

and ``mpiexec -n N python prog.py``.  Then:

* variables take rank 0's values when their initializer runs;
* each step, every rank differentiates its own part of the batch, and the
  gradients are summed over ranks in one all-reduce, weighted by each
  rank's sample count, so N ranks take the step one process takes on the
  whole batch (up to float rounding).  The loss is split at its top-level
  sums: a term that depends on no placeholder (a regularization term, any
  function of the weights only) is differentiated on every rank and enters
  the update exactly once;
* data are what a rank feeds through placeholders, builds into a
  ``tf.constant`` from what :func:`shard` returned, or reads from a
  ``tf.data`` iterator (``dataset.shard(size(), rank())``, see
  :mod:`distnet.compat.v1.data`);
* ``control_dependencies([train_step, ema_op])`` averages after the
  synchronized step; ``Saver`` writes on rank 0 only;
* :func:`allreduce` makes a printed metric global.

With ``loss_reduction="mean"`` (default) the data terms are means over the
rank's samples (``reduce_mean``, ``tf.losses.*``); with ``"sum"`` they are
sums (``reduce_sum`` over the batch).  A rank's sample count is the first
size of the batch it was fed (placeholders whose first size is ``None``)
or read from a batched ``tf.data`` iterator, or ``sample_count=``.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

import distnet
from distnet.compat.v1.graph import Tensor, get_default_graph, no_output, reads_fed_data, upstream_ops
from distnet.compat.v1.train import Optimizer, _grads_node, eager_sum
from distnet.compat.v1.variables import Variable, global_variables
from distnet.errors import InvalidArgumentError
from distnet.tensor import check_not_stale


def _communicator(graph=None):
    """The graph's communicator (created on first use).  On more than one rank,
    an unhandled exception on any rank then ends every rank at once (the
    abort hook), instead of leaving the others waiting in a collective."""
    g = graph if graph is not None else get_default_graph()
    if g._comm is None:
        from distnet.distributed import get_communicator
        from distnet.distributed.abort import AbortHook, install_abort_hook

        g._comm = get_communicator("auto")
        if g._comm.size > 1 and not isinstance(getattr(sys.excepthook, "__self__", None), AbortHook):
            install_abort_hook(g._comm)
    return g._comm


def rank() -> int:
    """This process's rank (0 on one process)."""
    return _communicator().rank


def size() -> int:
    """The number of ranks (1 on one process)."""
    return _communicator().size


def shard(*arrays: Any):
    """This rank's part of a global batch: the same rows of each array.

    Rows are split in rank order, the first ``n % size`` ranks taking one
    more; every sample goes to exactly one rank.  Under
    ``DistributedOptimizer(deterministic=True)`` (built before) each rank gets
    its whole canonical pieces instead (:mod:`distnet.compat.v1.deterministic`).  Also tells dropout where
    this rank's samples sit in the global batch, so their masks are those of
    a one-process run.

    Returns:
      One array per argument (just the array when given one).
    """
    if not arrays:
        raise InvalidArgumentError("shard: Expect: one or more arrays (the global batch) Actual: none")
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    for i, a in enumerate(arrays):
        if len(a) != n:
            raise InvalidArgumentError(f"shard: every array must have the global batch's rows; "
                                       f"Expect: {n} rows Actual: {len(a)} in argument {i}")
    comm = _communicator()
    pieces = getattr(get_default_graph(), "_deterministic_pieces", None)
    if pieces is not None:   # DistributedOptimizer(deterministic=True): whole canonical pieces per rank
        from distnet.compat.v1.deterministic import shard_bounds

        start, count = shard_bounds(n, pieces[0], comm.rank, comm.size) if n else (0, 0)
    else:
        base, extra = divmod(n, comm.size)
        start = comm.rank * base + min(comm.rank, extra)
        count = base + (1 if comm.rank < extra else 0)
    parts = []
    for a in arrays:
        part = a[start:start + count].view(ShardArray)
        part.shard_info = (start, count, n)
        parts.append(part)
    return parts[0] if len(parts) == 1 else tuple(parts)


class ShardArray(np.ndarray):
    """A rank's part of a global batch (what :func:`shard` returns): a numpy
    array that remembers where it sits in the global batch, so that a feed or
    a ``tf.constant`` of it tells the optimizer and dropout."""

    def __array_finalize__(self, obj) -> None:
        self.shard_info = getattr(obj, "shard_info", None)


def allreduce(value: Any, average: bool = True, weight: float | None = None) -> Any:
    """A metric over all ranks: the (``weight``-weighted) mean, or the sum.

    Example:
      >>> acc = tf.distributed.allreduce(sess.run(accuracy, feed), weight=len(part))
    """
    comm = _communicator()
    arr = np.array(value, dtype=np.float64, copy=True).reshape(-1)
    w = 1.0 if weight is None else float(weight)
    buf = np.concatenate([arr * (w if average else 1.0), [w]])
    comm.allreduce_(buf)
    out = buf[:-1] / buf[-1] if average else buf[:-1]
    shape = np.shape(value)
    return float(out[0]) if shape == () else out.reshape(shape)


def broadcast_global_variables(root_rank: int = 0):
    """An op that sets every global variable to rank ``root_rank``'s value (Horovod's)."""
    g = get_default_graph()
    comm = _communicator(g)
    variables = list(global_variables())

    def compute(run, values):
        for v in sorted(variables, key=lambda v: v.op.name):
            st = v._storage(run.session)
            if st is not None:
                st.mark_written()
                comm.bcast_(st.data, root=root_rank)

    return no_output("BroadcastGlobalVariables", compute, name="broadcast_global_variables")


def _terms(loss: Tensor) -> list:
    """``[(sign, tensor)]`` whose sum is ``loss``: its top-level additions taken apart."""
    out, stack = [], [(1.0, loss)]
    while stack:
        sign, t = stack.pop()
        op = t.op
        if op.type in ("Add", "AddN") and all(i.shape.ndims == 0 for i in op.inputs) and t.shape.ndims == 0:
            stack.extend((sign, i) for i in reversed(op.inputs))
        elif op.type == "Sub" and len(op.inputs) == 2 and all(i.shape.ndims == 0 for i in op.inputs):
            stack.append((-sign, op.inputs[1]))
            stack.append((sign, op.inputs[0]))
        elif op.type == "Identity" and op.inputs:
            stack.append((sign, op.inputs[0]))
        else:
            out.append((sign, t))
    return out


def _end_iterators_together(loss: Tensor, comm) -> None:
    """Make the tf.data iterators and queue batches ``loss`` reads raise OutOfRangeError
    on every rank as soon as one rank's input ends (see compat/v1/data.py), instead of
    leaving the ranks that still have data waiting in the all-reduce."""
    for op in upstream_ops([loss]):
        if getattr(op, "iterator", False):
            op.end_together = comm


class DistributedOptimizer(Optimizer):
    """Wraps a ``tf.train`` optimizer so that its gradients are those of the
    global batch (see the module doc); variables are broadcast from rank 0.

    The gradients go through one of the package's strategies
    (:mod:`distnet.distributed.strategies`), as the native ``Trainer``'s do:
    backward lands each rank's share of the global mean in the strategy's
    buffer, the strategy sums it over ranks and adds the weights-only terms'
    gradient once.  ``compute_gradients`` returns the global (summed)
    gradients, so a ``tf.clip_by_global_norm`` between it and
    ``apply_gradients`` clips the global gradient, as with Horovod.  A step
    whose summed gradient is not finite is skipped on every rank (no update,
    ``global_step`` unchanged), and ``max_bad_steps`` such steps in a row
    stop the job.

    Args:
      optimizer: a ``tf.train.*Optimizer``.
      loss_reduction: ``"mean"`` (the data terms are means over a rank's
        samples) or ``"sum"``.
      sample_count: this rank's number of samples, an int or a tensor;
        default the first size of the fed batch.
      sync_batch_norm: batch normalization in training mode takes the
        statistics of the global batch (default); False keeps each rank's
        own, as TensorFlow and Horovod do (see
        :mod:`distnet.compat.v1.normalization`).
      strategy: ``"replicated"`` (default: every rank updates every weight)
        or ``"zero1"`` (each rank updates 1/N of the weights and keeps 1/N
        of the optimizer's slots; the weights are all-gathered after the
        update); ``sharded=True`` is ``"zero1"``.
      max_bad_steps: consecutive non-finite steps tolerated before the job stops.
      deterministic: the same training bit for bit on any number of ranks
        (:mod:`distnet.compat.v1.deterministic`, docs/tf1.md): the global
        batch cut into canonical pieces of ``piece_size`` samples (default
        from the global batch), each piece's gradient computed alone, the
        pieces summed exactly; replicated strategy only.
      piece_size: samples per piece with ``deterministic=True``.
      **strategy_options: the strategy's own: ``overlap``, ``bucket_bytes``,
        ``compression="float16"`` (replicated); ``compression`` (zero1).
    """

    def __init__(self, optimizer: Optimizer, loss_reduction: str = "mean", sample_count: Any = None,
                 name: str | None = None, sync_batch_norm: bool = True, *, strategy: str | None = None,
                 sharded: bool = False, max_bad_steps: int = 5, deterministic: bool = False,
                 piece_size: int | None = None, **strategy_options):
        if not isinstance(optimizer, Optimizer) or isinstance(optimizer, DistributedOptimizer):
            raise InvalidArgumentError(f"DistributedOptimizer: Expect: a tf.train optimizer "
                                       f"(e.g. tf.train.AdamOptimizer(1e-4)) Actual: {type(optimizer).__name__}")
        if optimizer._applier is not None:
            raise InvalidArgumentError(f"DistributedOptimizer: Expect: an optimizer wrapped once Actual: "
                                       f"{optimizer.get_name()} is already wrapped by {optimizer._applier.get_name()}")
        if loss_reduction not in ("mean", "sum"):
            raise InvalidArgumentError(f"DistributedOptimizer: loss_reduction: Expect: 'mean' or 'sum' "
                                       f"Actual: {loss_reduction!r}")
        if sharded and strategy not in (None, "zero1"):
            raise InvalidArgumentError(f"DistributedOptimizer: sharded=True is strategy='zero1'; Expect: one of "
                                       f"them Actual: strategy={strategy!r}")
        from distnet.distributed import NonFiniteGuard
        from distnet.distributed.strategies import all_strategies

        self._strategy_name = strategy or ("zero1" if sharded else "replicated")
        known = all_strategies()
        if self._strategy_name not in known:
            raise InvalidArgumentError(f"DistributedOptimizer: strategy: Expect: one of {sorted(known)} "
                                       f"Actual: {self._strategy_name!r}")
        if strategy_options.get("shared_memory", False) is not False:
            raise InvalidArgumentError(
                "DistributedOptimizer: shared_memory: Expect: False (a TF1 session writes its variables "
                f"outside the step, which weights shared by the ranks of a machine cannot take) Actual: "
                f"{strategy_options['shared_memory']!r}")
        if not isinstance(deterministic, bool):
            raise InvalidArgumentError(f"DistributedOptimizer: deterministic: Expect: True or False "
                                       f"Actual: {deterministic!r}")
        if deterministic and (self._strategy_name != "replicated" or strategy_options or sample_count is not None):
            raise InvalidArgumentError(
                "DistributedOptimizer(deterministic=True): Expect: strategy 'replicated' without options and "
                f"no sample_count (the fed batch is cut into pieces) Actual: strategy={self._strategy_name!r}, "
                f"options {sorted(strategy_options)}, sample_count={sample_count!r}")
        if piece_size is not None and not deterministic:
            raise InvalidArgumentError(f"DistributedOptimizer: piece_size: Expect: None without deterministic=True "
                                       f"Actual: {piece_size!r}")
        from distnet.compat.v1.deterministic import check_piece_size

        self._deterministic = deterministic
        self._piece_size = check_piece_size(piece_size)
        self._last_grads: list | None = None
        self._comm = _communicator()
        self._strategy_cls = known[self._strategy_name]
        self._strategy_options = self._strategy_cls.check_options(strategy_options, self._comm)
        self._inner = optimizer
        self._reduction = loss_reduction
        self._sample_count = sample_count
        self._name = name or f"Distributed{optimizer.get_name()}"
        self._guard = NonFiniteGuard(max_bad_steps, rank=self._comm.rank)
        # Read by the graph's batch normalization ops when they run (normalization._reducer);
        # raises, before the optimizer is marked wrapped, when another DistributedOptimizer disagrees.
        get_default_graph().set_batch_norm_sync(sync_batch_norm, loss_reduction)
        if deterministic:   # read by shard(): whole pieces per rank
            get_default_graph()._deterministic_pieces = (self._piece_size,)
        optimizer._applier = self

    def get_name(self) -> str:
        return self._name

    def global_loss(self) -> Tensor:
        """With ``deterministic=True``: the step's loss over the global batch (the data terms'
        exact sum over the pieces, plus the weights-only terms), the same bits on any number
        of ranks; fetch it in the run of the training op (after ``minimize``)."""
        from distnet.compat.v1.graph import TensorShape, leaf, probes_for

        if not self._deterministic or not self._last_grads:
            raise InvalidArgumentError("DistributedOptimizer.global_loss: Expect: deterministic=True and "
                                       "minimize/compute_gradients called first Actual: "
                                       f"deterministic={self._deterministic}, gradients built: {bool(self._last_grads)}")
        opt = self

        def compute(run, values):
            return distnet.constant(np.float32(run.session.resource(("global-loss", opt))))

        shape = TensorShape([])
        return leaf("GlobalLoss", compute, np.float32, shape, probes_for(shape, np.float32),
                    name=f"{self._name}/global_loss", inputs=[self._last_grads[0]])

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        return self._inner.apply_gradients(grads_and_vars, global_step=global_step, name=name)

    def get_slot(self, var, name):
        """The slot ``name`` of ``var``; under ZeRO-1 gathered from every rank's piece
        (a collective: every rank fetches it in the same ``Session.run``)."""
        if self._strategy_name == "replicated":
            return self._inner.get_slot(var, name)
        from distnet.compat.v1.graph import leaf

        opt = self

        def compute(run, values):
            native = opt._inner._native(run.session)
            full = opt._full_optimizer_state(run.session, native.state_dict())
            return distnet.constant(full["slots"][name][var.op.name])

        return leaf("Slot", compute, var.dtype, var.shape, var._probes, name=f"{var.op.name}/{name}")

    def get_slot_names(self):
        return self._inner.get_slot_names()

    # -- the strategy of a session ------------------------------------------------------
    def _strategy(self, session, storages: list):
        """The session's strategy over these variables (built on the first step)."""
        key = ("strategy", self, tuple(id(st) for st in storages))

        def make():
            if self._strategy_name != "replicated" and session.resource(("strategy-of", self)) is not None:
                raise InvalidArgumentError(
                    f"DistributedOptimizer(strategy={self._strategy_name!r}): Expect: one list of variables per "
                    "optimizer (its weights live in the strategy's buffer) Actual: a second var_list; wrap "
                    "one optimizer per list")
            built = self._strategy_cls.build(self._comm, storages, (), **self._strategy_options)
            session.set_resource(("strategy-of", self), built)
            return built

        return session.resource(key, make)

    def _apply(self, run, native, pairs: list, pending) -> bool:
        """Apply one update of the wrapped optimizer (called by its ``apply_gradients`` op):
        skipped on every rank when this step's summed gradient is not finite; under ZeRO-1,
        this rank's pieces only, then the weights all-gathered.  Returns whether it applied."""
        from distnet.distributed.strategies import SyncResult

        session = run.session
        last = session.resource(("last-reduce", self))
        finite = last[1] if last is not None and last[0] is run else True
        step = int(native.iterations) + 1
        if not self._guard.check(bool(finite), step):
            return False
        strategy = session.resource(("strategy-of", self))
        if strategy is None or self._strategy_name == "replicated":
            if pending is not None:
                native.build([st for _, st in pairs])
                native.load_state_dict(pending)
            native.apply_gradients(pairs)
            return True
        by_var = {id(st): g for g, st in pairs}
        missing = [v.name for v in strategy.variables if id(v) not in by_var]
        if missing:
            raise InvalidArgumentError(f"DistributedOptimizer(strategy={self._strategy_name!r}).apply_gradients: "
                                       f"Expect: a gradient (or None) for every variable of compute_gradients "
                                       f"Actual: none for {missing}")
        if pending is not None:
            native.build(strategy.updated)
            native.load_state_dict({"iterations": pending["iterations"],
                                    "slots": {s: strategy.local_state(t) for s, t in pending["slots"].items()}})
        grads = []
        for p in strategy.pieces_info:
            g = by_var[id(strategy.variables[p.index])]
            grads.append(None if g is None else np.asarray(g).reshape(-1)[p.start: p.stop])
        strategy.update(SyncResult(grads=grads, variables=list(strategy.updated)), native)
        return True

    def _full_optimizer_state(self, session, state: dict) -> dict:
        """The wrapped optimizer's state with full slot arrays (a collective under ZeRO-1)."""
        strategy = session.resource(("strategy-of", self))
        if strategy is None or self._strategy_name == "replicated":
            return state
        return {**state, "slots": {s: strategy.full_state(t) for s, t in state["slots"].items()}}

    # -- the gradients ----------------------------------------------------------------
    def _gradients(self, loss: Tensor, var_list: list, grad_loss: Any) -> list:
        if grad_loss is not None:
            raise InvalidArgumentError("DistributedOptimizer: grad_loss is not supported")
        terms = _terms(loss)
        data = [(s, t) for s, t in terms if reads_fed_data(t)]
        _end_iterators_together(loss, self._comm)
        weights_only = [(s, t) for s, t in terms if not reads_fed_data(t)]
        if self._deterministic:
            from distnet.compat.v1.deterministic import check_loss

            check_loss(data, var_list)
        count_t = self._sample_count if isinstance(self._sample_count, Tensor) else None
        comm, reduction, fixed = self._comm, self._reduction, self._sample_count
        nd, nw = len(data), len(weights_only)
        extra = [count_t] if count_t is not None else []

        def compute(run, y_vals, x_vals, weights):
            d_vals, w_vals, rest = y_vals[:nd], y_vals[nd:nd + nw], y_vals[nd + nw:]
            dtypes = [x.data.dtype for x in x_vals]
            reg = None
            if nw:
                wl = eager_sum(w_vals, [s for s, _ in weights_only])
                check_not_stale(wl)
                reg = distnet.gradients(wl, list(x_vals), unconnected_gradients="none")
            if not nd:
                # No term reads data: every rank computes the same gradient, nothing to sum.
                if self._deterministic:
                    run.session.set_resource(("global-loss", self), float(np.asarray(wl.data)) if nw else 0.0)
                return [np.zeros(x.shape, dt if dt.kind == "f" else np.float32) if g is None
                        else np.asarray(g, dtype=dt if dt.kind == "f" else np.float32) for g, x, dt in
                        zip(reg, x_vals, dtypes)]
            if self._deterministic:
                from distnet.compat.v1.deterministic import piece_gradients

                grads, loss, finite = piece_gradients(comm, run, data, list(x_vals), reg, reduction,
                                                      self._piece_size)
                if nw:
                    loss += float(np.asarray(wl.data))
                run.session.set_resource(("global-loss", self), loss)
                run.session.set_resource(("last-reduce", self), (run, finite))
                return [np.asarray(g, dtype=dt if dt.kind == "f" else np.float32) for g, dt in zip(grads, dtypes)]
            n_local = _count(run, fixed, rest[0] if rest else None)
            counts = np.array([float(n_local)])
            if comm.size > 1:
                comm.allreduce_(counts)
            total = int(counts[0])
            if total <= 0:
                raise InvalidArgumentError("DistributedOptimizer: no rank had samples in this step "
                                           "(Expect: a fed batch with at least one row)")
            strategy = self._strategy(run.session, _storages(run, var_list, x_vals))
            if n_local > 0:   # a rank without samples writes nothing: the strategy adds zeros
                dl = eager_sum(d_vals, [s for s, _ in data])
                check_not_stale(dl)
                # This rank's share of the global gradient: of its mean times n_r / N, or of its sum.
                share = n_local / total if reduction == "mean" else 1.0
                sink = strategy.gradient_sink(False, n_local, {})
                distnet.gradients(dl, list(x_vals), grad_ys=share, on_leaf=sink, out=sink.out)
            res = strategy.reduce(n_local, regularization_grads=reg, global_count=total)
            run.session.set_resource(("last-reduce", self), (run, res.is_finite))
            return [np.asarray(g, dtype=dt if dt.kind == "f" else np.float32)
                    for g, dt in zip(strategy.full_gradients(res), dtypes)]

        ys = [t for _, t in data] + [t for _, t in weights_only] + extra
        grads = _grads_node("DistributedGradients", ys, var_list, None, compute)
        self._last_grads = [g for g in grads if g is not None]
        return grads


def _storages(run, var_list: list, x_vals: list) -> list:
    """The session's variables behind ``var_list``: the strategy lays out (and ``apply_gradients``
    names) the variables themselves, while ``x_vals`` are the copies this run read (see
    ``variables.snapshot``)."""
    if len(x_vals) != len(var_list):
        raise InvalidArgumentError(
            "DistributedOptimizer: Expect: each variable read once before the gradients of a run "
            f"Actual: {len(x_vals)} reads of {len(var_list)} variables (an update ran before this "
            "optimizer's gradients in the same run); fetch the other update in its own run")
    return [v._storage(run.session) if isinstance(v, Variable) else x for v, x in zip(var_list, x_vals)]


def _count(run, fixed: Any, count_value: Any) -> int:
    """This rank's sample count: given, or the first size of the fed batch."""
    if count_value is not None:
        return int(np.asarray(count_value.data))
    if fixed is not None:
        return int(fixed)
    sizes = set()
    for op, value in run.fed.items():
        if op.outputs and op.outputs[0].shape.ndims and op.outputs[0].shape.dims[0].value is None:
            sizes.add(int(value.shape[0]))
    for op, value in run.values.items():
        # A tf.data iterator's batched output is this rank's batch (see compat/v1/data.py).
        if getattr(op, "_data_batch", False) and getattr(value, "ndim", 0):
            sizes.add(int(value.shape[0]))
    if len(sizes) == 1:
        return sizes.pop()
    info = run.shard if run.shard is not None else run.session.graph._shard
    if info is not None:
        return int(info[1])
    raise InvalidArgumentError(
        "DistributedOptimizer: cannot tell how many samples this rank has; Expect: a feed_dict with placeholders "
        f"of first size None holding one batch (found batch sizes {sorted(sizes)}), or "
        "DistributedOptimizer(opt, sample_count=n)")
