"""N-rank training equals single-process training, for real under mpiexec.

The job (tests/mpi_scripts/train_equivalence.py) has L2 and L1 kernel
regularizers, weight decay on every variable, dropout, Adam with exponential
decay and an EMA; 53 samples in batches of 10, so shards are uneven on 3
ranks and the last batch of each epoch is partial.
"""
from __future__ import annotations

import numpy as np
import pytest

from mpi_util import run_script

pytestmark = pytest.mark.mpi
SCRIPT = "train_equivalence.py"
TOL = 1e-5  # max abs difference allowed in float32


def _single(tmp_path, name, *args) -> dict:
    return run_script(SCRIPT, tmp_path, name, *args)


def _mpi(tmp_path, n, name, *args) -> dict:
    return run_script(SCRIPT, tmp_path, name, *args, nprocs=n)


def _weights(res) -> dict:
    return {k: res[k] for k in res if k.startswith(("param:", "ema:"))}


def _max_diff(a, b) -> float:
    wa, wb = _weights(a), _weights(b)
    assert sorted(wa) == sorted(wb)
    return max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wa)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return _single(tmp_path_factory.mktemp("single"), "single")


@pytest.mark.parametrize("nranks,micro", [(2, 1), (3, 1), (3, 2)])
def test_n_ranks_equal_one(single, tmp_path, nranks, micro):
    res = _mpi(tmp_path, nranks, f"n{nranks}", "--micro", micro)
    diff = _max_diff(single, res)
    print(f"{nranks} ranks, {micro} micro-batches: max |param/EMA difference| vs 1 rank = {diff:.3g}")
    assert diff < TOL
    # The logged loss is the global one, the same as the single process's.
    np.testing.assert_allclose(res["losses"], single["losses"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res["regs"], single["regs"], rtol=1e-5, atol=1e-6)
    assert _weights(res).keys() >= {"ema:conv2d/kernel", "param:dense_1/kernel"}


def test_regularization_counted_once(single, tmp_path):
    """The equivalence check would catch a regularization gradient counted N
    times on N ranks: counting it twice (the 2-rank mistake, made here in one
    process) moves the weights far beyond the tolerance, and the
    regularization is a sizeable part of the loss."""
    doubled = _single(tmp_path, "doubled", "--reg-mult", 2)
    assert _max_diff(single, doubled) > 100 * TOL
    assert single["regs"][0] > 0.1 * single["losses"][0]
    two = _mpi(tmp_path, 2, "two")
    assert _max_diff(single, two) < TOL


def test_micro_batches_in_one_process(single, tmp_path):
    res = _single(tmp_path, "micro3", "--micro", 3)
    assert _max_diff(single, res) < TOL


def test_resume_same_world_size_is_bitwise(tmp_path):
    full = _mpi(tmp_path, 2, "full")
    ckpt = tmp_path / "ckpt"
    _mpi(tmp_path, 2, "first", "--ckpt", ckpt, "--stop-at", 9)
    resumed = _mpi(tmp_path, 2, "resumed", "--ckpt", ckpt, "--resume")
    wf, wr = _weights(full), _weights(resumed)
    for k in wf:
        assert np.array_equal(wf[k], wr[k]), f"{k} differs after resume"


def test_resume_on_more_ranks_continues_the_epoch(single, tmp_path):
    ckpt = tmp_path / "ckpt"
    _mpi(tmp_path, 2, "first", "--ckpt", ckpt, "--stop-at", 9)   # step 9 is mid-epoch 1
    resumed = _mpi(tmp_path, 3, "resumed3", "--ckpt", ckpt, "--resume")
    diff = _max_diff(single, resumed)
    print(f"2 -> 3 ranks resume: max difference vs uninterrupted = {diff:.3g}")
    assert diff < TOL


@pytest.mark.parametrize("nranks", [2, 3])
def test_hierarchical_on_one_machine_equals_one_process(single, tmp_path, nranks):
    """One machine: the hierarchical strategy is ZeRO-1 through shared memory
    with nothing to reduce across machines (tests/test_multihost.py runs it
    across network-namespace hosts)."""
    res = _mpi(tmp_path, nranks, f"hier{nranks}", "--strategy", "hierarchical")
    assert _max_diff(single, res) < TOL
    np.testing.assert_allclose(res["losses"], single["losses"], rtol=1e-5, atol=1e-6)
    zero1 = _mpi(tmp_path, nranks, f"zero1_{nranks}", "--shard", 1)
    if nranks == 2:   # the same sums in the same order as ZeRO-1 through shared memory
        wz, wh = _weights(zero1), _weights(res)
        assert all(np.array_equal(wz[k], wh[k]) for k in wz)
