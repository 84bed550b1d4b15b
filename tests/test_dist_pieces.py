"""Canonical pieces: the same cut for any number of ranks, every piece computed once."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from distnet.distributed.pieces import (
    PiecePlan,
    default_piece_size,
    next_pieces,
    piece_shard_of,
)
from distnet.distributed.sampler import ShardSampler
from distnet.errors import InvalidArgumentError


@pytest.mark.parametrize("global_count, piece_size", [(12, 4), (10, 4), (7, 1), (5, 8), (23, 3), (64, 4)])
def test_every_piece_once_for_1_to_6_ranks(global_count, piece_size):
    one = PiecePlan(global_count, piece_size, 1)
    bounds = [one.piece_bounds(p) for p in range(one.num_pieces)]
    # pieces tile the batch in order, each of piece_size but the last
    assert bounds[0][0] == 0 and bounds[-1][1] == global_count
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert all(hi - lo == piece_size for lo, hi in bounds[:-1])
    for size in range(1, 7):
        plan = PiecePlan(global_count, piece_size, size)
        assert plan.num_pieces == one.num_pieces                      # the exact sum's count: N-independent
        assert [plan.piece_bounds(p) for p in range(plan.num_pieces)] == bounds
        dealt = [p for r in range(size) for p in plan.pieces_of(r)]
        assert dealt == list(range(plan.num_pieces))                 # each once, in rank order
        per_rank = [len(plan.pieces_of(r)) for r in range(size)]
        assert max(per_rank) - min(per_rank) <= 1
        assert sum(plan.sample_counts()) == global_count


def test_shards_are_the_same_pieces_of_the_same_samples_on_any_n():
    n, batch, piece = 37, 10, 3           # a partial last batch (7) and uneven pieces
    ref = ShardSampler(n, batch, seed=5, rank=0, size=1)
    want = []
    while ref.epoch == 0:
        s = next_pieces(ref, piece)
        want.append([x.tolist() for x in s.indices])
    for size in range(1, 7):
        samplers = [ShardSampler(n, batch, seed=5, rank=r, size=size) for r in range(size)]
        got = []
        while samplers[0].epoch == 0:
            shards = [next_pieces(s, piece) for s in samplers]
            assert len({(s.step, s.start, s.num_pieces) for s in shards}) == 1
            got.append([x.tolist() for s in shards for x in s.indices])
        assert got == want, size
        assert all(s.position == ref.position and s.epoch == ref.epoch for s in samplers)


def test_resume_mid_epoch_on_another_n():
    full = ShardSampler(50, 8, seed=1, rank=0, size=1)
    whole = [next_pieces(full, 3).indices for _ in range(5)]
    resumed = [ShardSampler(50, 8, seed=1, rank=r, size=4, position=16) for r in range(4)]
    for step in range(2, 5):
        got = [x for s in resumed for x in next_pieces(s, 3).indices]
        assert [x.tolist() for x in got] == [x.tolist() for x in whole[step]]


def test_piece_shard_of_leaves_the_sampler_alone():
    s = ShardSampler(20, 8, seed=0, rank=1, size=2)
    shard = piece_shard_of(s, 0, 8, 8, 2)
    assert s.position == 0 and shard.pieces == range(2, 4)
    assert np.array_equal(np.concatenate(shard.indices), s.permutation(0)[12:16])


def test_default_piece_size_depends_on_the_batch_only():
    assert [default_piece_size(b) for b in (1, 16, 63, 64, 100, 128, 256, 512, 1000, 4096)] == \
        [1, 16, 63, 32, 50, 32, 32, 32, 63, 256]


@pytest.mark.parametrize("bad, words", [
    (lambda: PiecePlan(0, 4, 1), "global_count"), (lambda: PiecePlan(8, 0, 1), "piece_size"),
    (lambda: PiecePlan(8, 2, 0), "size"), (lambda: PiecePlan(8, 2, 2).pieces_of(2), "rank"),
    (lambda: PiecePlan(8, 2, 2).piece_bounds(4), "piece"), (lambda: default_piece_size(0), "global_batch_size"),
])
def test_bad_input_is_refused(bad, words):
    with pytest.raises(InvalidArgumentError, match=words):
        bad()
