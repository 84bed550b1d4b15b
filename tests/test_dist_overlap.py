"""Gradients written straight into the sync buffer (``direct_grads``) and
backward / all-reduce overlap (``overlap``): N-rank training with each on and
off equals single-process training, for real under ``mpiexec``.

The job is tests/mpi_scripts/train_equivalence.py (L1/L2 kernel regularizers
plus weight decay, dropout, Adam with a decaying rate, an EMA; 53 samples in
batches of 10: uneven shards on 3 ranks, a partial last batch).  Small buckets
(256 bytes) cut the 2 KB of gradients into several, so the overlapped path
really starts buckets during backward.

What is bitwise and what is not:
* overlap on/off with direct writes: the same arithmetic (a bucket's sum of 2
  ranks' terms is commutative), so bitwise on 1 and 2 ranks;
* direct writes against the plain path: the loss is divided by the global
  instead of the local count and the n_r/N weighting disappears, so the
  gradients differ by float32 rounding (an ulp); after 20 Adam steps the
  weights agree to 1e-5, the tolerance of every equivalence test.
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
        "plain": _single(tmp, "plain", "--direct", 0),
        "direct": _single(tmp, "direct", "--direct", 1),
        "overlap": _single(tmp, "overlap", "--overlap", 1, *SMALL_BUCKETS),
    }


def test_one_process_direct_and_overlap(runs):
    # Overlap in one process: the same arithmetic as direct writes, bitwise.
    assert _bitwise(runs["direct"], runs["overlap"])
    # Direct writes against the plain path: rounding only (see the module docstring).
    diff = _max_diff(runs["plain"], runs["direct"])
    print(f"direct vs plain, 1 process: max |difference| = {diff:.3g}")
    assert diff < TOL
    np.testing.assert_allclose(runs["direct"]["losses"], runs["plain"]["losses"], rtol=1e-5, atol=1e-6)


def test_two_ranks_overlap_on_off_direct_on_off_equal_one_process(runs, tmp_path):
    on = _mpi(tmp_path, 2, "on", "--overlap", 1, *SMALL_BUCKETS)
    off = _mpi(tmp_path, 2, "off", "--overlap", 0, "--direct", 1, *SMALL_BUCKETS)
    plain = _mpi(tmp_path, 2, "plain", "--direct", 0)
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


def test_sharded_optimizer_with_direct_writes_on_and_off(runs, tmp_path):
    # ZeRO-1 takes the direct writes into its own buffer's views (overlap is
    # refused there: tests/test_trainer.py).
    direct = _mpi(tmp_path, 2, "zero1_direct", "--direct", 1, "--shard", 1)
    plain = _mpi(tmp_path, 2, "zero1_plain", "--direct", 0, "--shard", 1)
    for res in (direct, plain):
        assert _max_diff(runs["plain"], res) < TOL


@pytest.mark.parametrize("mode", [("--overlap", 1, *SMALL_BUCKETS), ("--direct", 0)])
def test_one_nan_on_one_rank_skips_the_step_on_every_rank(runs, tmp_path, mode):
    """Rank 0's NaN rides in a bucket (overlapped: started during backward);
    every rank sees the reduced NaN and skips the same step, then trains on."""
    res = _mpi(tmp_path, 2, "nan", *mode, "--nan-at", 3)
    finite = res["finite"]
    assert finite.size == 21 and int((~finite).sum()) == 1 and not finite[3]
    assert int(res["steps"]) == 20
    assert all(np.isfinite(v).all() for v in _weights(res).values())
    assert _max_diff(runs["plain"], res) > 100 * TOL    # the skipped step's batch was not trained on


@pytest.mark.parametrize("mode", [("--overlap", 1, *SMALL_BUCKETS), ("--direct", 1, "--shard", 1),
                                  ("--direct", 1, "--micro", 3)])
def test_a_rank_with_no_samples_in_the_last_batch(tmp_path, mode):
    # Batches of 3 over 53 samples: the last batch has 2, so one of 3 ranks has
    # none at that step and must still join every (non-blocking) collective.
    single = _single(tmp_path, "single", "--direct", 0, "--batch", 3, "--steps", 20)
    res = _mpi(tmp_path, 3, "empty_rank", *mode, "--batch", 3, "--steps", 20)
    diff = _max_diff(single, res)
    print(f"3 ranks, batch 3, {' '.join(map(str, mode))} vs 1 process: max |difference| = {diff:.3g}")
    assert diff < TOL
    np.testing.assert_allclose(res["losses"], single["losses"], rtol=1e-5, atol=1e-6)
