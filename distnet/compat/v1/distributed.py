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
from distnet.compat.v1.graph import Tensor, get_default_graph, no_output
from distnet.compat.v1.train import Optimizer, _grads_node, eager_sum
from distnet.compat.v1.variables import global_variables
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
    more; every sample goes to exactly one rank.  Also tells dropout where
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


def _reads_data(t: Tensor) -> bool:
    """Whether ``t`` depends on a placeholder (fed data) in the graph."""
    seen, stack = set(), [t.op]
    while stack:
        op = stack.pop()
        if getattr(op, "_placeholder", False):
            return True
        if op in seen:
            continue
        seen.add(op)
        stack.extend(i.op for i in op.inputs)
    return False


def _end_iterators_together(loss: Tensor, comm) -> None:
    """Make the tf.data iterators and queue batches ``loss`` reads raise OutOfRangeError
    on every rank as soon as one rank's input ends (see compat/v1/data.py), instead of
    leaving the ranks that still have data waiting in the all-reduce."""
    seen, stack = set(), [loss.op]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if getattr(op, "iterator", False):
            op.end_together = comm
        stack.extend(i.op for i in op.inputs)


class DistributedOptimizer(Optimizer):
    """Wraps a ``tf.train`` optimizer so that its gradients are those of the
    global batch (see the module doc); variables are broadcast from rank 0.

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
    """

    def __init__(self, optimizer: Optimizer, loss_reduction: str = "mean", sample_count: Any = None,
                 name: str | None = None, sync_batch_norm: bool = True):
        if not isinstance(optimizer, Optimizer) or isinstance(optimizer, DistributedOptimizer):
            raise InvalidArgumentError(f"DistributedOptimizer: Expect: a tf.train optimizer "
                                       f"(e.g. tf.train.AdamOptimizer(1e-4)) Actual: {type(optimizer).__name__}")
        if loss_reduction not in ("mean", "sum"):
            raise InvalidArgumentError(f"DistributedOptimizer: loss_reduction: Expect: 'mean' or 'sum' "
                                       f"Actual: {loss_reduction!r}")
        self._inner = optimizer
        self._reduction = loss_reduction
        self._sample_count = sample_count
        self._name = name or f"Distributed{optimizer.get_name()}"
        self._comm = _communicator()
        # Read by the graph's batch normalization ops when they run (normalization._reducer).
        graph = get_default_graph()
        graph._sync_batch_norm = bool(sync_batch_norm)
        graph._loss_reduction = loss_reduction

    def get_name(self) -> str:
        return self._name

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        return self._inner.apply_gradients(grads_and_vars, global_step=global_step, name=name)

    def get_slot(self, var, name):
        return self._inner.get_slot(var, name)

    def get_slot_names(self):
        return self._inner.get_slot_names()

    def _gradients(self, loss: Tensor, var_list: list, grad_loss: Any) -> list:
        if grad_loss is not None:
            raise InvalidArgumentError("DistributedOptimizer: grad_loss is not supported")
        terms = _terms(loss)
        data = [(s, t) for s, t in terms if _reads_data(t)]
        _end_iterators_together(loss, self._comm)
        weights_only = [(s, t) for s, t in terms if not _reads_data(t)]
        count_t = self._sample_count if isinstance(self._sample_count, Tensor) else None
        comm, reduction, fixed = self._comm, self._reduction, self._sample_count
        nd, nw = len(data), len(weights_only)
        extra = [count_t] if count_t is not None else []

        def compute(run, y_vals, x_vals, weights):
            d_vals, w_vals, rest = y_vals[:nd], y_vals[nd:nd + nw], y_vals[nd + nw:]
            dtypes = [x.data.dtype for x in x_vals]
            if not nd:
                # No term reads data: every rank computes the same gradient, nothing to sum.
                wl = eager_sum(w_vals, [s for s, _ in weights_only])
                check_not_stale(wl)
                return [np.asarray(g, dtype=dt if dt.kind == "f" else np.float32)
                        for g, dt in zip(distnet.gradients(wl, list(x_vals)), dtypes)]
            n_local = _count(run, fixed, rest[0] if rest else None)
            g_data = [np.zeros(x.shape, np.float64) for x in x_vals]
            if nd and n_local > 0:
                dl = eager_sum(d_vals, [s for s, _ in data])
                check_not_stale(dl)
                g_data = [np.asarray(g, np.float64) for g in distnet.gradients(dl, list(x_vals))]
            scale = float(n_local) if reduction == "mean" else 1.0
            # One buffer, one all-reduce: every gradient, then the sample count.
            buf = np.concatenate([g.reshape(-1) * scale for g in g_data] + [np.array([float(n_local)])])
            if comm.size > 1:
                comm.allreduce_(buf)
            total = buf[-1]
            if total <= 0:
                raise InvalidArgumentError("DistributedOptimizer: no rank had samples in this step "
                                           "(Expect: a fed batch with at least one row)")
            out, pos = [], 0
            for x in x_vals:
                k = x.data.size
                g = buf[pos:pos + k].reshape(x.shape)
                pos += k
                out.append(g / total if reduction == "mean" else g)
            if nw:
                wl = eager_sum(w_vals, [s for s, _ in weights_only])
                check_not_stale(wl)
                for i, g in enumerate(distnet.gradients(wl, list(x_vals))):
                    out[i] = out[i] + g
            return [np.asarray(g, dtype=dt if dt.kind == "f" else np.float32) for g, dt in zip(out, dtypes)]

        ys = [t for _, t in data] + [t for _, t in weights_only] + extra
        return _grads_node("DistributedGradients", ys, var_list, None, compute)


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
