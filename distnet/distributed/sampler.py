"""Which samples each rank reads at each step.

Every rank builds the same permutation of the dataset for an epoch from
``(seed, epoch)``; the permutation is cut into global batches of ``B``
samples, and each global batch into ``size`` contiguous shards whose lengths
differ by at most one (the first ``B % size`` ranks get one more sample).
Every sample of an epoch is read by exactly one rank.  The last, partial
global batch is split the same way, so a rank can get **0 samples** at that
step: it must still take part in the gradient all-reduce (with a count of 0,
contributing zeros).

Positions are counted in samples of the epoch already consumed, not in steps,
so a job can resume with a different number of ranks (or batch size).

Convention: PyTorch's ``DistributedSampler`` deals samples round-robin
(``perm[rank::size]``) and pads the epoch with duplicates so every rank gets
the same count; we cut each global batch into contiguous shards and never
pad, so the global batch of step ``s`` is the same set of samples whatever
the number of ranks (N-rank training equals 1-rank training), and no sample
is counted twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from distnet.distributed.communicator import block_counts
from distnet.errors import InvalidArgumentError


@dataclass(frozen=True)
class ShardBatch:
    """This rank's share of one global batch.

    Attributes:
        epoch: epoch number (0-based).
        step: step within the epoch (0-based).
        indices: global sample indices of this rank's shard (int64, may be empty).
        global_batch_size: samples in the whole global batch (smaller than
            ``B`` for the last, partial batch).
        counts: samples of every rank in this global batch, in rank order.
        start: position in the epoch of the first sample of the global batch.
        rank: this rank.
    """

    epoch: int
    step: int
    indices: np.ndarray
    global_batch_size: int
    counts: tuple
    start: int
    rank: int

    @property
    def count(self) -> int:
        """Samples of this rank in this step."""
        return int(self.indices.size)

    @property
    def offset(self) -> int:
        """Index of this rank's first sample within the global batch."""
        return int(sum(self.counts[: self.rank]))


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgumentError(f"{name}: Expect: an integer >= {minimum} Actual: {value!r}")
    return int(value)


class ShardSampler:
    """Global permutation per epoch, split into per-rank contiguous shards.

    Args:
        num_samples: dataset length.
        global_batch_size: samples per step summed over all ranks (``B``).
        seed: the job's data seed (same on every rank).
        rank, size: this rank and the number of ranks.
        drop_last: drop the last global batch of an epoch when it is partial.
        epoch, position: where to start (resume): ``position`` is the number
            of samples of ``epoch`` already consumed, whatever world size
            consumed them.
    Example:
        >>> s = ShardSampler(10, 4, seed=0, rank=1, size=2)
        >>> b = s.next()
        >>> b.epoch, b.step, b.count, b.counts, b.global_batch_size
        (0, 0, 2, (2, 2), 4)
    """

    def __init__(self, num_samples: int, global_batch_size: int, seed: int, rank: int, size: int,
                 drop_last: bool = False, epoch: int = 0, position: int = 0) -> None:
        self.num_samples = _check_int("num_samples", num_samples, 1)
        self.global_batch_size = _check_int("global_batch_size", global_batch_size, 1)
        self.seed = _check_int("seed", seed, 0)
        self.size = _check_int("size", size, 1)
        self.rank = _check_int("rank", rank, 0)
        if self.rank >= self.size:
            raise InvalidArgumentError(f"rank: Expect: 0 <= rank < size={self.size} Actual: {rank}")
        self.drop_last = bool(drop_last)
        if self.drop_last and self.global_batch_size > self.num_samples:
            raise InvalidArgumentError(
                f"global_batch_size with drop_last: Expect: <= num_samples={self.num_samples} "
                f"Actual: {self.global_batch_size} (every batch would be dropped)")
        self._perm_epoch: int | None = None
        self._perm: np.ndarray | None = None
        self.set_position(epoch, position)

    # -- geometry ---------------------------------------------------------
    @property
    def samples_per_epoch(self) -> int:
        """Samples consumed per epoch (fewer than ``num_samples`` with drop_last)."""
        if self.drop_last:
            return (self.num_samples // self.global_batch_size) * self.global_batch_size
        return self.num_samples

    @property
    def steps_per_epoch(self) -> int:
        """Steps in an epoch started at position 0."""
        b = self.global_batch_size
        return self.num_samples // b if self.drop_last else -(-self.num_samples // b)

    # -- position (for checkpoints) ---------------------------------------
    def set_position(self, epoch: int, position: int) -> None:
        """Continue from sample ``position`` of ``epoch``; a position at the end
        of the epoch moves to the start of the next one."""
        self.epoch = _check_int("epoch", epoch, 0)
        position = _check_int("position", position, 0)
        if position > self.num_samples:
            raise InvalidArgumentError(
                f"position: Expect: 0 <= position <= num_samples={self.num_samples} Actual: {position}")
        self.position = position
        self.step = -(-position // self.global_batch_size)
        self._roll_over()

    def state_dict(self) -> dict:
        """``{"epoch": int, "position": int}``: what a checkpoint stores."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.set_position(state["epoch"], state["position"])

    def _roll_over(self) -> None:
        remaining = self.samples_per_epoch - self.position
        if remaining <= 0 or (self.drop_last and remaining < self.global_batch_size):
            self.epoch += 1
            self.position = 0
            self.step = 0

    # -- the permutation ---------------------------------------------------
    def permutation(self, epoch: int) -> np.ndarray:
        """The order of the samples in ``epoch`` (the same on every rank)."""
        epoch = _check_int("epoch", epoch, 0)
        if self._perm_epoch != epoch:
            # Seeded by (seed, epoch) only: independent of rank, world size and history.
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            self._perm_epoch = epoch
        return self._perm

    def shard_of(self, epoch: int, start: int, global_count: int, step: int = 0) -> ShardBatch:
        """This rank's shard of the global batch of ``global_count`` samples
        starting at ``start`` in ``epoch`` (no state change)."""
        counts = tuple(block_counts(global_count, self.size))
        lo = start + sum(counts[: self.rank])
        indices = self.permutation(epoch)[lo: lo + counts[self.rank]].astype(np.int64, copy=True)
        return ShardBatch(epoch=epoch, step=step, indices=indices, global_batch_size=global_count,
                          counts=counts, start=start, rank=self.rank)

    # -- iteration ---------------------------------------------------------
    def next(self) -> ShardBatch:
        """This rank's shard of the next global batch; moves on to the next
        epoch after the last batch of this one."""
        global_count = min(self.global_batch_size, self.samples_per_epoch - self.position)
        batch = self.shard_of(self.epoch, self.position, global_count, self.step)
        self.position += global_count
        self.step += 1
        self._roll_over()
        return batch

    def __iter__(self) -> Iterator[ShardBatch]:
        """The remaining batches of the current epoch."""
        epoch = self.epoch
        while self.epoch == epoch:
            yield self.next()

    def __repr__(self) -> str:
        return (f"ShardSampler(num_samples={self.num_samples}, global_batch_size={self.global_batch_size}, "
                f"seed={self.seed}, rank={self.rank}, size={self.size}, drop_last={self.drop_last}, "
                f"epoch={self.epoch}, position={self.position})")
