"""Deterministic mode: training and evaluation that give the same bits on any number of ranks.

The Trainer's ``deterministic=True`` step, under every strategy (replicated,
ZeRO-1, hierarchical):

1. the global batch is cut into canonical pieces
   (:mod:`distnet.distributed.pieces`, ``piece_size`` from the job or
   :func:`~distnet.distributed.pieces.default_piece_size` of the batch), each
   rank running whole pieces, each piece's forward and backward as one unit
   (the same shapes wherever it runs; dropout and augmentation keyed by
   global sample index).
   Pieces replace micro-batches: ``micro_batches`` is accepted and has no
   effect (a piece is already a bounded forward pass);
2. each piece gives one float32 vector: its gradients (of its loss sum
   divided by the global count, as the default step prescales), in the flat
   layout's sorted-name order, then its loss sum and metric total — one scale
   segment per variable and one per scalar;
3. the vectors of all pieces on all ranks are summed by
   :func:`~distnet.distributed.exact_sum.exact_allreduce` with ``count`` = the
   pieces of the global batch (never N): every rank holds the same full
   reduced gradient, bit for bit, for any N;
   batch normalization (:func:`bn_segments`): each piece is normalized by its
   own statistics ("ghost batch normalization": a piece does not depend on
   N), no layer moves its moving statistics or calls a reducer during the
   pieces; each piece appends, per layer, its per-channel batch mean and
   unbiased variance weighted by its share of the global batch
   (``samples / global count``), one scale segment each, so the exact sum is
   the sample-weighted mean over the pieces; every rank then moves the moving
   statistics once, ``moving * momentum + mean * (1 - momentum)``;
4. on every rank alike, from that full gradient: the regularization gradient
   is added (a function of the weights, the same everywhere), the finite
   check and the clipping norms are computed over whole arrays in variable
   order — never from per-rank partial sums, whose grouping would follow N;
5. the strategy's ``update`` runs on what this rank holds: whole arrays
   (replicated) or its block's slices of the same full gradient (ZeRO-1,
   hierarchical).  The optimizers' rules and the EMA are elementwise, so a
   slice is updated with the bits the whole array gets on one rank.

Evaluation (:func:`evaluate_pieces`): the evaluation set is cut into pieces
of ``eval_batch_size`` samples from sample 0 (what one process's loop runs),
dealt whole to the ranks; each piece's float64 loss sum and metric total go
to every rank in a ``[pieces, 2]`` table (one all-reduce in which each entry
has a single nonzero contributor, hence exact) and are summed in piece order:
the numbers of one process's plain ``evaluate``, on any N.

Not covered (refused with an error naming the reason): compression and
overlap (a lossy or early sum), ``conv_algorithm="auto"`` (a timing-based choice).
"""
from __future__ import annotations

import math
import time

import numpy as np

from distnet.autodiff import gradients
from distnet.distributed.communicator import block_counts
from distnet.distributed.exact_sum import exact_allreduce
from distnet.distributed.pieces import default_piece_size, piece_shard_of
from distnet.distributed.strategies.base import SyncResult, all_finite
from distnet.errors import InvalidArgumentError
from distnet.layers.batch_norm import apply_moving_statistics, batch_norm_layers, piece_statistics

#: The scalars each piece's vector carries after its gradients.
SCALARS = ("loss_sum", "correct")


def check_settings(trainer, deterministic, piece_size) -> tuple:
    """``(deterministic, piece size)`` of ``trainer``'s settings, or an error naming what deterministic
    mode cannot cover.  Run after the strategy is built."""
    if not isinstance(deterministic, (bool, np.bool_)):
        raise InvalidArgumentError(f"deterministic: Expect: True or False Actual: {deterministic!r}")
    if not deterministic:
        return False, None
    s, cfg = trainer.strategy, trainer.config
    # Refused on one worker too (where they do nothing), so a job is accepted on any N or on none.
    lossy = [what for what, on in (("compression", getattr(s, "compression", "none") != "none"
                                    or getattr(s, "cross_compression", "none") != "none"),
                                   ("overlap", getattr(s, "overlap", False))) if on]
    if lossy:
        raise InvalidArgumentError(
            f"deterministic: Expect: a strategy without compression or overlap (the exact sum replaces the "
            f"float reduction) Actual: strategy {s.name!r} with {' and '.join(lossy)}")
    if cfg.conv_algorithm == "auto":
        raise InvalidArgumentError(
            "deterministic: Expect: conv_algorithm 'gemm', 'fft' or 'winograd' (one fixed arithmetic) "
            "Actual: 'auto' (measured at start-up: another run may choose another algorithm)")
    if piece_size is None:
        return True, default_piece_size(cfg.global_batch_size)
    if isinstance(piece_size, bool) or not isinstance(piece_size, (int, np.integer)) or piece_size < 1:
        raise InvalidArgumentError(f"piece_size: Expect: an integer >= 1 Actual: {piece_size!r}")
    return True, int(piece_size)


def bn_segments(layers) -> list[int]:
    """The lengths of the batch-norm segments of a piece's vector: per layer (in call order)
    its channels' means, then their variances."""
    return [int(layer.moving_mean.shape[0]) for layer in layers for _ in range(2)]


def _bn_record(layers, records, weight: float) -> np.ndarray:
    """A piece's batch-norm segments: each layer's (one call's) mean and unbiased variance
    times the piece's ``weight``, rounded to float32 once, wherever the piece runs."""
    parts = []
    for layer, calls in zip(layers, records):
        if len(calls) != 1:
            raise InvalidArgumentError(
                f"deterministic: BatchNorm {layer.name!r}: Expect: one training call per forward pass "
                f"(its per-piece statistics move the moving statistics once) Actual: {len(calls)} calls")
        parts += [(stat * weight).astype(np.float32) for stat in calls[0]]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def deterministic_reduce(trainer, batch, piece_size: int, step: int, stop: float) -> SyncResult:
    """Forward/backward of this rank's pieces of ``batch``'s global batch and their exact sum
    (a collective).  The result's ``grads`` are views of the full reduced gradient, one
    whole array per variable (aligned with ``strategy.variables``), the same on every rank."""
    strategy, span = trainer.strategy, trainer.ctx.tracer.span
    layout = strategy.layout
    n = layout.total
    shard = piece_shard_of(trainer.sampler, batch.epoch, batch.start, batch.global_batch_size, piece_size,
                           batch.step)
    denom = float(batch.global_batch_size)
    bn_layers = batch_norm_layers(trainer.model)
    m = n + len(SCALARS)   # where the batch-norm segments start
    size = m + sum(bn_segments(bn_layers))
    vectors = []
    for k, idx in enumerate(shard.indices):
        with span("forward", micro_batch=k), piece_statistics(bn_layers) as records:
            # augmented per sample from its key: the same image whichever rank reads it
            x, y, keys = trainer._read(step, idx)
            logits = trainer.model(x, training=True, dropout_keys=keys)
            loss = trainer.loss_fn(y, logits, reduction="sum") / denom
        with span("backward", micro_batch=k):
            vec = np.zeros(size, np.float32)
            layout.pack(gradients(loss, trainer.variables), vec[:n])
            # the loss sum of the piece, rounded to float32 once per piece wherever it runs
            vec[n] = np.float32(float(loss.numpy()) * denom)
            vec[n + 1] = trainer.metric.total(logits.numpy(), y)
            vec[m:] = _bn_record(bn_layers, records, len(idx) / denom)
            vectors.append(vec)
    starts = [layout.offsets[i] for i in layout.order()] + [n + k for k in range(len(SCALARS))]
    starts += [int(s) for s in m + np.cumsum([0] + bn_segments(bn_layers)[:-1])] if bn_layers else []
    with span("reduce", bytes=8 * size):
        # count: the pieces of the global batch, never N (a rank with none adds nothing)
        total = exact_allreduce(trainer.comm, vectors, count=shard.num_pieces, size=size, starts=starts)
        # The stop code: the largest of the ranks' (decode() reads a sum and a max alike:
        # every code is 0, 1 or TERM_WEIGHT); integers, so the order cannot matter.
        stops = trainer.comm.allreduce_(np.array([stop], np.float64), op="max")
    if bn_layers:
        # Once per step, on every rank alike from the same sums: the sample-weighted mean of the
        # pieces' statistics.  A skipped (non-finite) step moves them too, as the default step does.
        pos = m
        for layer in bn_layers:
            c = int(layer.moving_mean.shape[0])
            apply_moving_statistics(layer, total[pos:pos + c], total[pos + c:pos + 2 * c])
            pos += 2 * c
    return SyncResult(grads=layout.views(total[:n]), variables=list(strategy.variables),
                      scalars={"loss_sum": float(total[n]), "correct": float(total[n + 1]),
                               "stop": float(stops[0])},
                      global_count=batch.global_batch_size, is_finite=all_finite(total[:n]))


def held_part(strategy, result: SyncResult) -> SyncResult:
    """``result`` cut to what this rank updates: the full arrays (replicated), or this rank's
    pieces of its block as slices of them (ZeRO-1, hierarchical: ``strategy.pieces_info``)."""
    info = getattr(strategy, "pieces_info", None)
    if info is None:
        return result
    full = result.grads
    result.grads = [full[p.index].reshape(-1)[p.start: p.stop] for p in info]
    result.variables = list(strategy.pieces)
    return result


def deterministic_step(trainer, batch, t0: float, stop: float):
    """:meth:`Trainer.train_step` in deterministic mode (module docstring); returns its StepResult."""
    from distnet.optimizers.clipping import Clip
    from distnet.training.stop import decode as decode_stop
    from distnet.training.trainer import StepResult

    step, strategy, span = trainer.step, trainer.strategy, trainer.ctx.tracer.span
    res = deterministic_reduce(trainer, batch, trainer.piece_size, step, stop)
    with span("regularization"):
        reg = trainer.regularization_loss()
        reg_value = 0.0
        if reg is not None:
            reg_value = float(reg.numpy())
            # Added once, after the sum, on every rank: the same weights give the same bits.
            for view, g in zip(res.grads, gradients(reg, trainer.variables, unconnected_gradients="none")):
                if g is not None:
                    np.add(view, g, out=view, casting="same_kind")
            res.is_finite = res.is_finite and all(np.isfinite(v).all() for v in res.grads)
    count = res.global_count
    lr = trainer.current_lr()
    if trainer._guard.check(res.is_finite and math.isfinite(reg_value), step):
        with span("update"):
            clip = Clip.of(trainer.optimizer)
            if clip is not None:
                # On the full gradient, whole arrays in variable order, on every rank alike
                # (not the strategy's clip, whose partial squares are grouped by N).
                clip(res.grads, in_place=True)
            # Fenced: where the weights are shared by a machine's ranks (ZeRO-1's shared memory,
            # hierarchical), no rank writes its block while another still reads the weights
            # (the default step's reduce has that barrier; the exact sum does not).
            with strategy.writing_params():
                strategy.update(held_part(strategy, res), trainer.optimizer, trainer.ema,
                                num_updates=trainer.ema_num_updates)
    return StepResult(step=trainer.step, epoch=batch.epoch, loss=res.scalars["loss_sum"] / count + reg_value,
                      reg_loss=reg_value, accuracy=res.scalars["correct"] / count, lr=lr,
                      samples=count, finite=res.is_finite, seconds=time.perf_counter() - t0,
                      stop=decode_stop(res.scalars["stop"]))


def evaluate_pieces(model, data, loss_fn, *, comm, batch_size: int, metric) -> dict:
    """:func:`distnet.training.evaluation.evaluate` with the same bits on any number of ranks
    (a collective; module docstring): equal to one process's ``evaluate(comm=None)``."""
    n = len(data)
    rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
    pieces = -(-n // batch_size)
    counts = block_counts(pieces, size)
    first = sum(counts[:rank])
    table = np.zeros((pieces, 2), np.float64)
    for p in range(first, first + counts[rank]):
        x, y = data.read(np.arange(p * batch_size, min((p + 1) * batch_size, n)))
        logits = model(x, training=False)
        table[p, 0] = float(loss_fn(y, logits, reduction="sum").numpy())
        table[p, 1] = metric.total(logits.numpy(), y)
    if comm is not None and size > 1 and pieces:
        # One nonzero contributor per entry: x + 0 + ... + 0 is x in any order.
        comm.allreduce_(table)
    loss_sum, right = 0.0, 0.0
    for p in range(pieces):   # in piece order: one process's loop
        loss_sum += table[p, 0]
        right += table[p, 1]
    return {"loss": float(loss_sum / max(n, 1)), metric.name: float(right / max(n, 1)), "samples": int(n)}
