"""One training step that gives the same bits on any number of ranks.

The Trainer's ``deterministic=True`` step (replicated strategy only, for now):

1. the global batch is cut into canonical pieces
   (:mod:`distnet.distributed.pieces`, ``piece_size`` from the job or
   :func:`~distnet.distributed.pieces.default_piece_size` of the batch), each
   rank running whole pieces, each piece's forward and backward as one unit
   (the same shapes wherever it runs; dropout keyed by global sample index);
2. each piece gives one float32 vector: its gradients (of its loss sum
   divided by the global count, as the default step prescales), in the flat
   layout's sorted-name order, then its loss sum, correct count and the stop
   code — one scale segment per variable and one per scalar;
3. the vectors of all pieces on all ranks are summed by
   :func:`~distnet.distributed.exact_sum.exact_allreduce` with ``count`` = the
   pieces of the global batch (never N), so the reduced gradient and the
   logged loss have the same bits for any N;
4. the regularization gradient is added once, after the sum, on every rank
   (same weights, same bits), then the strategy's ``clip`` and ``update``
   run as in the default step (replicated: elementwise on whole arrays).

What is not deterministic yet: ZeRO-1 and hierarchical, compression,
overlap, and ``evaluate`` (its float64 sums follow the N-dependent shards).
"""
from __future__ import annotations

import numpy as np

from distnet.autodiff import gradients
from distnet.nn.dropout import per_sample_keys
from distnet.distributed.exact_sum import exact_allreduce
from distnet.distributed.pieces import piece_shard_of
from distnet.distributed.strategies.base import SyncResult, all_finite

SCALARS = ("loss_sum", "correct", "stop")


def deterministic_reduce(trainer, batch, piece_size: int, step: int, stop: float) -> SyncResult:
    """Forward/backward of this rank's pieces of ``batch``'s global batch and their exact sum
    (a collective); the gradients land in ``trainer.strategy.grad_views()``."""
    strategy, span = trainer.strategy, trainer.ctx.tracer.span
    layout = strategy.layout
    n = layout.total
    shard = piece_shard_of(trainer.sampler, batch.epoch, batch.start, batch.global_batch_size, piece_size,
                           batch.step)
    denom = float(batch.global_batch_size)
    vectors = []
    for k, idx in enumerate(shard.indices):
        with span("forward", micro_batch=k):
            x, y = trainer.train_data.read(idx)
            logits = trainer.model(x, training=True, dropout_keys=_keys(trainer.config.seed, step, idx))
            loss = trainer.loss_fn(y, logits, reduction="sum") / denom
        with span("backward", micro_batch=k):
            vec = np.zeros(n + 2, np.float32)
            layout.pack(gradients(loss, trainer.variables), vec[:n])
            # the loss sum of the piece, rounded to float32 once per piece wherever it runs
            vec[n] = np.float32(float(loss.numpy()) * denom)
            vec[n + 1] = trainer.metric.total(logits.numpy(), y)
            vectors.append(vec)
    starts = [layout.offsets[i] for i in layout.order()] + [n, n + 1]
    with span("reduce", bytes=8 * (n + len(SCALARS))):
        # count: the pieces of the global batch, never N (a rank with none adds nothing)
        total = exact_allreduce(trainer.comm, vectors, count=shard.num_pieces, size=n + 2, starts=starts)
        # The stop code: the largest of the ranks' (decode() reads a sum and a max alike:
        # every code is 0, 1 or TERM_WEIGHT); integers, so the order cannot matter.
        stops = trainer.comm.allreduce_(np.array([stop], np.float64), op="max")
    for view, g in zip(strategy.grad_views(), layout.views(total[:n])):
        np.copyto(view, g)
    return SyncResult(grads=list(strategy.grad_views()), variables=list(strategy.variables),
                      scalars={"loss_sum": float(total[n]), "correct": float(total[n + 1]),
                               "stop": float(stops[0])},
                      global_count=batch.global_batch_size, is_finite=all_finite(total[:n]))


def _keys(seed: int, step: int, indices: np.ndarray) -> np.ndarray:
    return per_sample_keys(seed, step, indices)
