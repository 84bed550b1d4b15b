"""Canonical pieces: a global batch cut the same way for any number of ranks.

A GEMM's rounding depends on its shapes, so a rank that runs forward and
backward on a shard whose size depends on N gets gradients whose bits depend
on N.  Here the global batch of ``B`` samples (in the order of the epoch's
permutation) is cut into pieces of ``piece_size`` samples — the last one
shorter when ``piece_size`` does not divide ``B`` — which depends on ``B``
and ``piece_size`` alone.  Whole pieces are dealt to the ranks in contiguous
runs (:func:`~distnet.distributed.communicator.block_counts` of the pieces:
the first ``pieces % N`` ranks get one more; a rank gets none when there are
fewer pieces than ranks).  Each piece's forward and backward runs as one unit
with the same shapes wherever it runs, and the per-piece gradients are then
combined by :func:`~distnet.distributed.exact_sum.exact_allreduce` with
``count = num_pieces``, which does not depend on N either.

Convention: the sampler's default shards (``block_counts`` of the samples)
balance samples; pieces balance whole pieces, so ranks may differ by one
piece rather than one sample — the price of N-independent shapes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distnet.distributed.communicator import block_counts
from distnet.distributed.sampler import ShardSampler
from distnet.errors import InvalidArgumentError

#: With no piece size from the job, a global batch is cut into at most this many pieces ...
MAX_DEFAULT_PIECES = 16
#: ... of at least this many samples each (unless the batch is smaller): see :func:`default_piece_size`.
MIN_DEFAULT_PIECE = 32


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgumentError(f"{name}: Expect: an integer >= {minimum} Actual: {value!r}")
    return int(value)


def default_piece_size(global_batch_size: int) -> int:
    """The piece size for a job that names none: ``ceil(B / P)`` samples, ``P`` the largest
    power of two with ``P <= 16`` and ``P * 32 <= B`` (one piece below 64 samples).

    Derived from the job's global batch size only (never from N), so a
    resume on another number of ranks cuts the same pieces.  Why these
    numbers: every piece pays a whole gradient (its weight gradients are
    parameter-sized, however few its samples) and its share of the exact sum,
    so small pieces cost far more than their GEMMs (measured on the reference
    net at B = 100, 2 ranks: pieces of 7 samples 3-4x the default step, of 50
    about 1.1-1.2x, benchmarks/README.md); a power of two splits evenly over
    2, 4, 8 and 16 ranks.  More ranks than pieces leave ranks idle: such a
    job names a smaller ``piece_size``.

    Example:
        >>> default_piece_size(64), default_piece_size(10), default_piece_size(100), default_piece_size(1000)
        (32, 10, 50, 63)
    """
    b = _check_int("global_batch_size", global_batch_size, 1)
    pieces = 1
    while pieces * 2 <= MAX_DEFAULT_PIECES and pieces * 2 * MIN_DEFAULT_PIECE <= b:
        pieces *= 2
    return -(-b // pieces)


@dataclass(frozen=True)
class PiecePlan:
    """How one global batch of ``global_count`` samples is cut and dealt.

    Attributes:
        global_count: samples of the global batch (``B``, or fewer for a last partial batch).
        piece_size: samples per piece (the last piece may be shorter).
        size: number of ranks.
    Example:
        >>> plan = PiecePlan(10, 4, 2)
        >>> plan.num_pieces, plan.piece_bounds(2), plan.pieces_of(0), plan.pieces_of(1)
        (3, (8, 10), range(0, 2), range(2, 3))
    """

    global_count: int
    piece_size: int
    size: int

    def __post_init__(self) -> None:
        _check_int("global_count", self.global_count, 1)
        _check_int("piece_size", self.piece_size, 1)
        _check_int("size", self.size, 1)

    @property
    def num_pieces(self) -> int:
        """Pieces of the global batch: the exact sum's ``count``, independent of ``size``."""
        return -(-self.global_count // self.piece_size)

    def piece_bounds(self, piece: int) -> tuple[int, int]:
        """``(lo, hi)``: the samples of ``piece`` as positions in the global batch."""
        if not 0 <= piece < self.num_pieces:
            raise InvalidArgumentError(f"piece: Expect: 0 <= piece < {self.num_pieces} Actual: {piece}")
        lo = piece * self.piece_size
        return lo, min(self.global_count, lo + self.piece_size)

    def pieces_of(self, rank: int) -> range:
        """The pieces ``rank`` computes (a contiguous run, possibly empty)."""
        if not 0 <= rank < self.size:
            raise InvalidArgumentError(f"rank: Expect: 0 <= rank < {self.size} Actual: {rank}")
        counts = block_counts(self.num_pieces, self.size)
        lo = sum(counts[:rank])
        return range(lo, lo + counts[rank])

    def sample_counts(self) -> tuple:
        """Samples of every rank, in rank order."""
        out = []
        for r in range(self.size):
            p = self.pieces_of(r)
            out.append(0 if not p else self.piece_bounds(p[-1])[1] - self.piece_bounds(p[0])[0])
        return tuple(out)


@dataclass(frozen=True)
class PieceShard:
    """This rank's pieces of one global batch.

    Attributes:
        epoch, step, start: as in :class:`~distnet.distributed.sampler.ShardBatch`.
        plan: the :class:`PiecePlan` of the batch.
        rank: this rank.
        pieces: global piece numbers this rank computes.
        indices: the global sample indices of each of those pieces (int64 arrays).
    """

    epoch: int
    step: int
    start: int
    plan: PiecePlan
    rank: int
    pieces: range
    indices: tuple

    @property
    def global_batch_size(self) -> int:
        return self.plan.global_count

    @property
    def num_pieces(self) -> int:
        return self.plan.num_pieces


def piece_shard_of(sampler: ShardSampler, epoch: int, start: int, global_count: int, piece_size: int,
                   step: int = 0) -> PieceShard:
    """The pieces of ``sampler.rank`` for the global batch of ``global_count`` samples at ``start`` (no state change)."""
    plan = PiecePlan(global_count, piece_size, sampler.size)
    perm = sampler.permutation(epoch)
    mine = plan.pieces_of(sampler.rank)
    indices = tuple(perm[start + lo: start + hi].astype(np.int64, copy=True)
                    for lo, hi in (plan.piece_bounds(p) for p in mine))
    return PieceShard(epoch=epoch, step=step, start=start, plan=plan, rank=sampler.rank, pieces=mine,
                      indices=indices)


def next_pieces(sampler: ShardSampler, piece_size: int) -> PieceShard:
    """This rank's pieces of the sampler's next global batch; moves the sampler
    on exactly as :meth:`ShardSampler.next` does (so its checkpointed position
    means the same samples in either mode)."""
    epoch, start, step = sampler.epoch, sampler.position, sampler.step
    global_count = sampler.next().global_batch_size
    return piece_shard_of(sampler, epoch, start, global_count, piece_size, step)
