"""``DistributedOptimizer(opt, deterministic=True)``: the same bits on any number of ranks.

The TF1 side of docs/determinism.md.  The global batch of a step (all
ranks' fed batches, in rank order) is cut into canonical pieces
(:mod:`distnet.distributed.pieces`: ``piece_size`` samples, default
:func:`~distnet.distributed.pieces.default_piece_size` of the global batch),
and :func:`distnet.compat.v1.distributed.shard` deals whole pieces to the
ranks.  Each step, every rank:

1. checks that the ranks' fed batches are those whole pieces (one small
   all-gather of the counts; a clear error otherwise, on every rank);
2. evaluates the loss's data terms once per piece, with each fed batch
   placeholder fed the piece's rows (the same shapes wherever the piece runs;
   dropout keyed by global sample index, its per-run counter as in the
   step's own forward) and differentiates it with weight ``n_piece / B``
   (``loss_reduction="mean"``) or 1 (``"sum"``), reading the variables'
   values of the step's own forward;
3. sums every piece's gradients and loss by
   :func:`~distnet.distributed.exact_sum.exact_allreduce` (``count`` = pieces,
   never N), then adds the weights-only terms' gradient once.

The optimizer's update is then elementwise on identical values.
:meth:`DistributedOptimizer.global_loss` is the step's global loss from the
same exact sum (the fetched ``loss`` stays each rank's own).

Not covered (refused with a message): a strategy other than replicated or its
options, ``sample_count``, batch normalization in the loss, data read from
tf.data iterators or queues or from constants made of a shard (feed the
batch through placeholders), gradients with respect to tensors that are not
variables.  Random ops other than ``tf.nn.dropout`` inside the loss are not
detected and would draw differently per piece: keep them out of the loss.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.compat.v1.graph import upstream_ops
from distnet.compat.v1.session import _Run
from distnet.compat.v1.train import eager_sum
from distnet.compat.v1.variables import Variable
from distnet.distributed.exact_sum import exact_allreduce
from distnet.distributed.pieces import PiecePlan, default_piece_size
from distnet.errors import InvalidArgumentError
from distnet.tensor import Tensor as EagerTensor, check_not_stale

_WHAT = "DistributedOptimizer(deterministic=True)"


def check_piece_size(piece_size: Any) -> int | None:
    if piece_size is None:
        return None
    if isinstance(piece_size, bool) or not isinstance(piece_size, (int, np.integer)) or piece_size < 1:
        raise InvalidArgumentError(f"{_WHAT}: piece_size: Expect: an integer >= 1 or None Actual: {piece_size!r}")
    return int(piece_size)


def plan_of(global_count: int, piece_size: int | None, size: int) -> PiecePlan:
    """The pieces of a global batch of ``global_count`` samples over ``size`` ranks."""
    return PiecePlan(global_count, piece_size or default_piece_size(global_count), size)


def shard_bounds(global_count: int, piece_size: int | None, rank: int, size: int) -> tuple[int, int]:
    """``(start, count)``: the rows of a global batch that ``rank`` feeds (its whole pieces)."""
    plan = plan_of(global_count, piece_size, size)
    counts = plan.sample_counts()
    return sum(counts[:rank]), counts[rank]


def check_loss(data_terms: list, var_list: list) -> None:
    """Refuse, when the graph is built, what the per-piece evaluation cannot slice or repeat."""
    for v in var_list:
        if not isinstance(v, Variable):
            raise InvalidArgumentError(f"{_WHAT}: Expect: gradients with respect to tf.Variables Actual: "
                                       f"{getattr(v, 'name', type(v).__name__)}")
    for op in upstream_ops([t for _, t in data_terms]):
        if "BatchNorm" in op.type:
            raise InvalidArgumentError(
                f"{_WHAT}: Expect: a loss without batch normalization (its statistics span the fed batch, "
                f"not a piece) Actual: {op.type} {op.name!r}; train it without deterministic=True")
        if getattr(op, "_placeholder", False) and op.type not in ("Placeholder", "PlaceholderWithDefault"):
            raise InvalidArgumentError(
                f"{_WHAT}: Expect: the batch fed through placeholders (feed_dict) Actual: {op.type} {op.name!r} "
                "(a tf.data/queue batch or a constant made of a shard cannot be cut into pieces)")


def _batch_feeds(run, n_local: int) -> list:
    """The fed ops holding this rank's batch: placeholders of first size None fed ``n_local`` rows."""
    out = []
    for op, value in run.fed.items():
        if (op.outputs and op.outputs[0].shape.ndims and op.outputs[0].shape.dims[0].value is None
                and getattr(value.data, "ndim", 0) and value.data.shape[0] == n_local):
            out.append(op)
    return out


def _fed_count(run) -> int:
    sizes = set()
    for op, value in run.fed.items():
        if op.outputs and op.outputs[0].shape.ndims and op.outputs[0].shape.dims[0].value is None:
            sizes.add(int(value.data.shape[0]))
    if len(sizes) != 1:
        raise InvalidArgumentError(
            f"{_WHAT}: Expect: a feed_dict with placeholders of first size None holding one batch "
            f"Actual: batch sizes {sorted(sizes)}")
    return sizes.pop()


def _dropout_states(run, data_terms: list) -> list:
    """``(state, calls)`` of the dropout ops in the loss, ``calls`` the counter the step's own
    forward used (each piece draws the masks that forward drew for its samples)."""
    out = []
    for op in upstream_ops([t for _, t in data_terms]):
        if op.type == "Dropout":
            state = run.session.resource(("dropout", op))
            if state is not None:
                out.append((state, state.calls - 1))
    return out


def piece_gradients(comm, run, data_terms: list, x_vals: list, reg: list | None, reduction: str,
                    piece_size: int | None) -> tuple:
    """The global gradients (float32, one per variable), the global data loss and whether
    they are finite: per-piece forward and backward, one exact sum (a collective)."""
    import distnet

    n_local = _fed_count(run)
    counts = [int(c) for c in comm.allgather_object(n_local)]
    total = sum(counts)
    if total <= 0:
        raise InvalidArgumentError(f"{_WHAT}: Expect: a fed batch with at least one row on some rank Actual: none")
    plan = plan_of(total, piece_size, comm.size)
    if tuple(counts) != plan.sample_counts():
        raise InvalidArgumentError(
            f"{_WHAT}: Expect: each rank fed its whole pieces of the global batch of {total} (pieces of "
            f"{plan.piece_size} samples: rows per rank {list(plan.sample_counts())}; tf.distributed.shard "
            f"deals them) Actual: rows per rank {counts}")
    start = sum(counts[:comm.rank])
    sizes = [int(np.prod(x.shape)) for x in x_vals]
    offsets = np.cumsum([0] + sizes)
    n = int(offsets[-1])
    mine = plan.pieces_of(comm.rank)
    vectors = np.zeros((len(mine), n + 1), np.float32)
    feeds = _batch_feeds(run, n_local)
    dropouts = _dropout_states(run, data_terms)
    after = [state.calls for state, _ in dropouts]
    signs = [s for s, _ in data_terms]
    for k, p in enumerate(mine):
        lo, hi = plan.piece_bounds(p)
        fed = dict(run.fed)
        for op in feeds:
            fed[op] = EagerTensor._from_op(np.ascontiguousarray(run.fed[op].data[lo - start: hi - start]), None, ())
        sub = _Run(run.session, fed, (lo, hi - lo, total), run.rank_local)
        # the step's own variable reads: the piece differentiates with respect to the same values
        sub.snapshots = {op: list(taken) for op, taken in run.snapshots.items()}
        for state, calls in dropouts:
            state.calls = calls
        dl = eager_sum([sub.value(t) for _, t in data_terms], signs)
        check_not_stale(dl)
        share = (hi - lo) / total if reduction == "mean" else 1.0
        grads = distnet.gradients(dl, list(x_vals), grad_ys=share, unconnected_gradients="zero")
        for g, a, b in zip(grads, offsets[:-1], offsets[1:]):
            vectors[k, a:b] = np.asarray(g.data if hasattr(g, "data") else g, np.float32).reshape(-1)
        # the piece's loss sum, rounded to float32 once per piece wherever it runs
        value = float(np.asarray(dl.data))
        vectors[k, n] = np.float32(value * (hi - lo) if reduction == "mean" else value)
    for (state, _), calls in zip(dropouts, after):
        state.calls = calls
    seg = [int(o) for o in offsets[:-1] if o < n] + [n]
    seg = sorted(set(seg))
    total_vec = exact_allreduce(comm, vectors, count=plan.num_pieces, size=n + 1, starts=seg)
    out = []
    for i, x in enumerate(x_vals):
        g = total_vec[offsets[i]:offsets[i + 1]].reshape(x.shape)
        if reg is not None and reg[i] is not None:
            g = g + np.asarray(reg[i].data if hasattr(reg[i], "data") else reg[i], np.float32)
        out.append(g)
    finite = all(np.isfinite(g).all() for g in out)
    loss = float(total_vec[n]) / total if reduction == "mean" else float(total_vec[n])
    return out, loss, finite

