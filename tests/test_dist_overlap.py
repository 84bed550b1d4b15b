"""Backward / all-reduce overlap (the replicated strategy's ``overlap``) and
ZeRO-1, with gradients written straight into the strategy's buffer: N-rank
training equals single-process training, for real under ``mpiexec``.

The job is tests/mpi_scripts/train_equivalence.py (L1/L2 kernel regularizers
plus weight decay, dropout, Adam with a decaying rate, an EMA; 53 samples in
batches of 10: uneven shards on 3 ranks, a partial last batch).  Small buckets
(256 bytes) cut the 2 KB of gradients into several, so the overlapped path
really starts buckets during backward.

What is bitwise and what is not:
* overlap on/off: the same arithmetic (a bucket's sum of 2 ranks' terms is
  commutative), so bitwise on 1 and 2 ranks;
* N ranks against one process: the ranks' partial sums are rounded apart,
  so the weights agree to 1e-5 after 20 Adam steps, the tolerance of every
  equivalence test.
"""
from __future__ import annotations

import numpy as np
import pytest

# The job, its runners and the weight comparison are test_dist_equivalence's.
from test_dist_equivalence import SCRIPT, TOL, _mpi, _single, _weights  # noqa: F401
from test_dist_equivalence import _max_diff as _any_max_diff

pytestmark = pytest.mark.mpi
SMALL_BUCKETS = ("--bucket", "256")


def _max_diff(a, b) -> float:
    assert len(_weights(a)) == 12   # 6 parameters and their EMA shadows
    return _any_max_diff(a, b)


def _bitwise(a, b) -> bool:
    wa, wb = _weights(a), _weights(b)
    return sorted(wa) == sorted(wb) and all(np.array_equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("overlap")
    return {
        "plain": _single(tmp, "plain"),
        "overlap": _single(tmp, "overlap", "--overlap", 1, *SMALL_BUCKETS),
    }


def test_one_process_overlap_is_bitwise_the_blocking_reduce(runs):
    assert _bitwise(runs["plain"], runs["overlap"])
    np.testing.assert_array_equal(runs["overlap"]["losses"], runs["plain"]["losses"])


def test_two_ranks_overlap_on_off_equal_one_process(runs, tmp_path):
    on = _mpi(tmp_path, 2, "on", "--overlap", 1, *SMALL_BUCKETS)
    off = _mpi(tmp_path, 2, "off", "--overlap", 0, *SMALL_BUCKETS)
    plain = _mpi(tmp_path, 2, "plain")
    assert _bitwise(on, off)
    for name, res in (("overlap", on), ("plain", plain)):
        diff = _max_diff(runs["plain"], res)
        print(f"2 ranks {name} vs 1 process: max |difference| = {diff:.3g}")
        assert diff < TOL
        np.testing.assert_allclose(res["losses"], runs["plain"]["losses"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res["regs"], runs["plain"]["regs"], rtol=1e-5, atol=1e-6)


def test_three_ranks_uneven_shards_micro_batches_overlap(runs, tmp_path):
    res = _mpi(tmp_path, 3, "three", "--overlap", 1, "--micro", 2, *SMALL_BUCKETS)
    diff = _max_diff(runs["plain"], res)
    print(f"3 ranks, 2 micro-batches, overlap vs 1 process: max |difference| = {diff:.3g}")
    assert diff < TOL
    np.testing.assert_allclose(res["losses"], runs["plain"]["losses"], rtol=1e-5, atol=1e-6)


def test_zero1_takes_the_gradients_in_its_own_buffer(runs, tmp_path):
    # ZeRO-1 gets backward's writes in its padded buffer's views (overlap is
    # refused there: tests/test_trainer.py).
    res = _mpi(tmp_path, 2, "zero1", "--shard", 1)
    assert _max_diff(runs["plain"], res) < TOL


@pytest.mark.parametrize("mode", [("--overlap", 1, *SMALL_BUCKETS), ("--overlap", 0)])
def test_one_nan_on_one_rank_skips_the_step_on_every_rank(runs, tmp_path, mode):
    """Rank 0's NaN rides in a bucket (overlapped: started during backward);
    every rank sees the reduced NaN and skips the same step, then trains on."""
    res = _mpi(tmp_path, 2, "nan", *mode, "--nan-at", 3)
    finite = res["finite"]
    assert finite.size == 21 and int((~finite).sum()) == 1 and not finite[3]
    assert int(res["steps"]) == 20
    assert all(np.isfinite(v).all() for v in _weights(res).values())
    assert _max_diff(runs["plain"], res) > 100 * TOL    # the skipped step's batch was not trained on


@pytest.mark.parametrize("mode", [("--overlap", 1, *SMALL_BUCKETS), ("--shard", 1), ("--micro", 3)])
def test_a_rank_with_no_samples_in_the_last_batch(tmp_path, mode):
    # Batches of 3 over 53 samples: the last batch has 2, so one of 3 ranks has
    # none at that step and must still join every (non-blocking) collective.
    single = _single(tmp_path, "single", "--batch", 3, "--steps", 20)
    res = _mpi(tmp_path, 3, "empty_rank", *mode, "--batch", 3, "--steps", 20)
    diff = _max_diff(single, res)
    print(f"3 ranks, batch 3, {' '.join(map(str, mode))} vs 1 process: max |difference| = {diff:.3g}")
    assert diff < TOL
    np.testing.assert_allclose(res["losses"], single["losses"], rtol=1e-5, atol=1e-6)
