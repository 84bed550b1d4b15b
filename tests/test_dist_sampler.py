"""ShardSampler: every sample of an epoch is seen by exactly one rank, shards
are contiguous and balanced, and a job resumes from a position with any world
size.  Pure logic in process (all ranks simulated), then real MPI runs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distnet.distributed import ShardSampler
from distnet.errors import InvalidArgumentError
from mpi_util import run_mpi


def world(n, batch, seed, size, **kw):
    return [ShardSampler(n, batch, seed, r, size, **kw) for r in range(size)]


def run_epoch(samplers):
    """One epoch on every simulated rank: list of steps, each a list of shards."""
    steps = []
    epoch = samplers[0].epoch
    while samplers[0].epoch == epoch:
        steps.append([s.next() for s in samplers])
    return steps


def check_step(shards, batch, size):
    counts = shards[0].counts
    assert all(s.counts == counts for s in shards)
    assert [s.count for s in shards] == list(counts)
    assert max(counts) - min(counts) <= 1
    # The first (B % size) ranks get the extra sample.
    assert list(counts) == sorted(counts, reverse=True)
    assert sum(counts) == shards[0].global_batch_size <= batch
    assert len({(s.epoch, s.step, s.start) for s in shards}) == 1


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), batch=st.integers(1, 25), size=st.integers(1, 5), seed=st.integers(0, 2**32))
def test_every_sample_exactly_once_per_epoch(n, batch, size, seed):
    samplers = world(n, batch, seed, size)
    for epoch in range(2):
        steps = run_epoch(samplers)
        assert len(steps) == -(-n // batch) == samplers[0].steps_per_epoch
        seen = []
        for shards in steps:
            check_step(shards, batch, size)
            assert all(s.epoch == epoch for s in shards)
            together = np.concatenate([s.indices for s in shards])
            # Shards are contiguous slices of the permutation, in rank order.
            start = shards[0].start
            np.testing.assert_array_equal(together, samplers[0].permutation(epoch)[start: start + together.size])
            seen.extend(together.tolist())
        assert sorted(seen) == list(range(n))


def test_divisible_and_not_divisible_batches():
    (b0, b1), = run_epoch(world(8, 8, 0, 2))[:1]
    assert b0.counts == (4, 4) and b0.global_batch_size == 8
    steps = run_epoch(world(10, 7, 0, 3))
    assert [s.counts for s in (steps[0][0], steps[1][0])] == [(3, 2, 2), (1, 1, 1)]


def test_last_partial_batch_can_leave_a_rank_empty():
    steps = run_epoch(world(9, 4, 3, 3))
    last = steps[-1]
    assert last[0].counts == (1, 0, 0)
    assert last[1].count == 0 and last[1].indices.dtype == np.int64
    assert last[0].global_batch_size == 1


def test_drop_last_drops_only_the_partial_batch():
    samplers = world(10, 4, 1, 2, drop_last=True)
    steps = run_epoch(samplers)
    assert len(steps) == 2 == samplers[0].steps_per_epoch
    seen = np.concatenate([s.indices for shards in steps for s in shards])
    assert len(set(seen.tolist())) == 8
    assert samplers[0].epoch == 1 and samplers[0].position == 0


def test_permutation_depends_on_seed_and_epoch_only():
    a = ShardSampler(50, 5, 7, 0, 1)
    b = ShardSampler(50, 10, 7, 2, 4)
    np.testing.assert_array_equal(a.permutation(3), b.permutation(3))
    assert not np.array_equal(a.permutation(0), a.permutation(1))
    assert not np.array_equal(a.permutation(0), ShardSampler(50, 5, 8, 0, 1).permutation(0))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 50), batch=st.integers(1, 12), size_a=st.integers(1, 4), size_b=st.integers(1, 4),
       consumed_steps=st.integers(0, 6), seed=st.integers(0, 1000))
def test_resume_from_a_position_with_another_world_size(n, batch, size_a, size_b, consumed_steps, seed):
    before = world(n, batch, seed, size_a)
    seen = []
    for _ in range(min(consumed_steps, before[0].steps_per_epoch - 1)):
        seen.extend(np.concatenate([s.next().indices for s in before]).tolist())
    state = before[0].state_dict()
    assert state == {"epoch": 0, "position": len(seen)}
    after = world(n, batch, seed, size_b)
    for s in after:
        s.load_state_dict(state)
    for shards in run_epoch(after):
        check_step(shards, batch, size_b)
        seen.extend(np.concatenate([s.indices for s in shards]).tolist())
    assert sorted(seen) == list(range(n))


def test_a_position_at_the_end_of_an_epoch_starts_the_next():
    s = ShardSampler(10, 4, 0, 0, 2, epoch=2, position=10)
    assert (s.epoch, s.position, s.step) == (3, 0, 0)
    assert s.next().epoch == 3


def test_step_counts_from_the_position():
    s = ShardSampler(20, 4, 0, 0, 2, position=8)
    b = s.next()
    assert (b.step, b.start) == (2, 8)


@pytest.mark.parametrize("kwargs, words", [
    (dict(num_samples=0), "num_samples"),
    (dict(global_batch_size=0), "global_batch_size"),
    (dict(rank=2, size=2), "rank < size"),
    (dict(size=0), "size"),
    (dict(seed=-1), "seed"),
    (dict(position=11), "position"),
    (dict(global_batch_size=11, drop_last=True), "every batch would be dropped"),
    (dict(seed=1.5), "seed"),
])
def test_bad_arguments_are_refused(kwargs, words):
    args = dict(num_samples=10, global_batch_size=4, seed=0, rank=0, size=1)
    args.update(kwargs)
    with pytest.raises(InvalidArgumentError, match=words):
        ShardSampler(**args)


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs, n, batch, position, epochs", [
    (2, 20, 4, 0, 2),     # B divisible by N, no partial batch
    (3, 23, 10, 7, 2),    # B not divisible by N, partial last batch, resume mid-epoch
])
def test_mpi_ranks_see_every_sample_once(nprocs, n, batch, position, epochs):
    run = run_mpi("sampler_shards.py", nprocs, n, batch, 5, epochs, position, timeout=60)
    assert run.returncode == 0, run.describe()
    assert sorted(run.values("DONE")) == [str(r) for r in range(nprocs)], run.describe()
    assert len(run.values("EPOCH")) == epochs, run.describe()
