"""Batch normalization through the Trainer on real ranks (mpiexec): synchronized statistics make
N ranks train the 1-rank model under every strategy, with micro-batches and uneven shards (a rank
with an empty micro-batch, and on 3 ranks an empty shard, joins through a stand-in); the per-rank
switch gives each rank its own shard's statistics; a stop by a real signal and a resume is bitwise;
the checkpoint's moving statistics read with plain h5py.

The job: tests/mpi_scripts/train_batch_norm.py (52 samples, batches of 10: the last batch of each
epoch has 2 samples, so steps 6 and 12 leave rank 2 of 3 without any).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest

from mpi_util import SCRIPTS, run_script

pytestmark = pytest.mark.mpi
SCRIPT = "train_batch_norm.py"
# As tests/test_dist_equivalence.py (1e-5 in float32), relative for the moving statistics (values ~2).
TOL = 1e-5
MOVING = ("batch_normalization/moving_mean", "batch_normalization/moving_variance",
          "batch_normalization_1/moving_mean", "batch_normalization_1/moving_variance")


def _job():
    spec = importlib.util.spec_from_file_location("train_batch_norm", SCRIPTS / SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _arrays(res) -> dict:
    return {k: res[k] for k in res if k.startswith(("param:", "ema:"))}


def _max_rel_diff(a, b) -> float:
    wa, wb = _arrays(a), _arrays(b)
    assert sorted(wa) == sorted(wb) and len(wa) == 20   # 12 params (4 moving statistics), 8 EMA shadows
    return max(float(np.max(np.abs(wa[k] - wb[k]) / np.maximum(1.0, np.abs(wa[k])))) for k in wa)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    where = tmp_path_factory.mktemp("single")
    return {micro: run_script(SCRIPT, where, f"micro{micro}", "--micro", micro) for micro in (1, 3)}


@pytest.mark.parametrize("strategy", ["replicated", "zero1", "hierarchical"])
@pytest.mark.parametrize("nranks,micro", [(2, 1), (3, 1), (2, 3), (3, 3)])
def test_n_ranks_equal_one(single, tmp_path, nranks, micro, strategy):
    res = run_script(SCRIPT, tmp_path, "run", "--micro", micro, "--strategy", strategy, nprocs=nranks)
    diff = _max_rel_diff(single[micro], res)
    print(f"{strategy}, {nranks} ranks, {micro} micro-batches: max relative difference vs 1 rank = {diff:.3g}")
    assert diff < TOL
    np.testing.assert_allclose(res["losses"], single[micro]["losses"], rtol=1e-5)
    # The statistics moved (the comparison is not of initial values) ...
    assert not np.allclose(res["param:batch_normalization/moving_mean"], 0.0)
    # ... and they are those of the micro-batches asked for: 3 micro-batches train another model.
    assert _max_rel_diff(single[1], single[3]) > 100 * TOL


def test_overlap_with_micro_batches_equals_one(single, tmp_path):
    """Overlap starts bucket all-reduces inside the last backward, between the layers' own."""
    res = run_script(SCRIPT, tmp_path, "overlap", "--micro", 3, "--overlap", 1, nprocs=3)
    assert _max_rel_diff(single[3], res) < TOL



@pytest.mark.parametrize("strategy", ["replicated", "zero1"])
def test_float16_compression_stays_close(single, tmp_path, strategy):
    """The gradients sent as float16 (the statistics stay float64): as close to 1 rank as
    tests/test_dist_compression.py asks of a net without batch norm."""
    res = run_script(SCRIPT, tmp_path, "f16", "--micro", 3, "--strategy", strategy, "--compression", "float16",
                     nprocs=3)
    assert 0 < _max_rel_diff(single[3], res) < 5e-3

def _fresh_statistics(job, indices: np.ndarray) -> dict:
    """The moving statistics after one training call of the untrained model on ``indices`` alone
    (momentum 0: the batch's statistics themselves)."""
    from distnet.nn.dropout import per_sample_keys

    model = job.model(0.0)
    x, _ = job.dataset().read(indices)
    model(x, training=True, dropout_keys=per_sample_keys(11, 0, indices))
    return {v.name: v.numpy() for v in model.variables if not v.trainable}


def _rel(a, b) -> float:
    """The largest difference relative to ``b``."""
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-6)))


def _shards(res, rank: int) -> list:
    """The sample indices of ``rank``'s shard at each step (the script ends each with -1)."""
    flat, out, start = res[f"rank{rank}:shards"], [], 0
    for end in np.flatnonzero(flat == -1):
        out.append(flat[start:end])
        start = end + 1
    return out


def test_per_rank_statistics_are_each_shards_own(tmp_path):
    job = _job()
    one_step = ("--steps", 1, "--momentum", 0.0, "--per-rank")
    own = run_script(SCRIPT, tmp_path, "own", *one_step, "--sync", 0, nprocs=2)
    synced = run_script(SCRIPT, tmp_path, "synced", *one_step, nprocs=2)
    shards = [_shards(own, r)[0] for r in (0, 1)]
    assert [s.size for s in shards] == [5, 5] and np.array_equal(np.sort(np.concatenate(shards)),
                                                                  np.sort(np.concatenate([_shards(synced, r)[0]
                                                                                          for r in (0, 1)])))
    whole = _fresh_statistics(job, np.concatenate(shards))
    for r in (0, 1):
        expect = _fresh_statistics(job, shards[r])
        for name in MOVING:
            # Each rank's moving statistics are its own shard's ...
            np.testing.assert_allclose(own[f"rank{r}:{name}"], expect[name], rtol=1e-6, atol=1e-7, err_msg=name)
            # ... while synchronized ones are the global batch's, on every rank.
            np.testing.assert_allclose(synced[f"rank{r}:{name}"], whole[name], rtol=1e-5, atol=1e-6, err_msg=name)
            assert _rel(own[f"rank{r}:{name}"], whole[name]) > 1e-2, name   # 1000 times the tolerance
    for name in MOVING:
        assert _rel(own[f"rank0:{name}"], own[f"rank1:{name}"]) > 1e-2, name
        assert np.array_equal(synced[f"rank0:{name}"], synced[f"rank1:{name}"]), name
        # The checkpoint's state holds rank 0's.
        assert np.array_equal(own[f"param:{name}"], own[f"rank0:{name}"]), name


def test_per_rank_statistics_train_another_model(single, tmp_path):
    """12 steps with per-rank statistics on 3 ranks: the parameter check (every step) passes with
    moving statistics that differ between ranks, and the trained weights are not the 1-rank ones."""
    res = run_script(SCRIPT, tmp_path, "own3", "--sync", 0, "--per-rank", nprocs=3)
    assert int(res["steps"]) == 12
    for name in MOVING:
        assert _rel(res[f"rank0:{name}"], res[f"rank2:{name}"]) > 1e-3, name
    assert _max_rel_diff(single[1], res) > 100 * TOL


def test_stop_by_signal_and_resume_is_bitwise(tmp_path):
    """Rank 0 gets a real SIGTERM during step 5; every rank stops after it with a checkpoint; the
    resumed run crosses the partial batches where rank 2 has no samples (zero1, 3 micro-batches)."""
    common = ("--micro", 3, "--strategy", "zero1")
    full = run_script(SCRIPT, tmp_path, "full", *common, "--per-rank", nprocs=3)
    # Steps 6 and 12 gave rank 2 no sample: it joined every collective through stand-ins.
    assert [i for i, shard in enumerate(_shards(full, 2)) if shard.size == 0] == [5, 11]
    ckpt = tmp_path / "ckpt"
    first = run_script(SCRIPT, tmp_path, "first", *common, "--ckpt", ckpt, "--signal-at", 5, nprocs=3)
    assert int(first["stopped"]) == 5 and int(first["steps"]) == 5
    files = sorted(Path(ckpt).glob("*.h5"))
    assert [f.name for f in files] == ["ckpt-00000005.h5"]
    resumed = run_script(SCRIPT, tmp_path, "resumed", *common, "--ckpt", ckpt, "--resume", nprocs=3)
    assert int(resumed["steps"]) == 12 and int(resumed["stopped"]) == -1
    wf, wr = _arrays(full), _arrays(resumed)
    assert sorted(wf) == sorted(wr)
    for k in wf:
        assert np.array_equal(wf[k], wr[k]), f"{k} differs after stop and resume"
    # The moving statistics are in the checkpoint as plain HDF5 datasets: what the stopped run held.
    with h5py.File(files[0], "r") as f:
        for name in MOVING:
            stored = f["params"][name][()]
            assert stored.dtype == np.float32 and stored.shape == (3 if name.startswith("batch_normalization/")
                                                                   else 8,)
            assert np.array_equal(stored, first[f"param:{name}"]), name
            assert name not in f["ema"], name   # not trained: no EMA shadow


def test_resume_on_more_ranks_equals_one(single, tmp_path):
    """A checkpoint of 2 ranks resumed on 3 (3 micro-batches) continues the 1-rank run: the
    micro-batches and so the statistics do not depend on the number of ranks."""
    ckpt = tmp_path / "ckpt"
    run_script(SCRIPT, tmp_path, "first", "--micro", 3, "--ckpt", ckpt, "--stop-at", 5, nprocs=2)
    resumed = run_script(SCRIPT, tmp_path, "resumed", "--micro", 3, "--ckpt", ckpt, "--resume", nprocs=3)
    assert int(resumed["steps"]) == 12
    assert _max_rel_diff(single[3], resumed) < TOL


# -- in one process ----------------------------------------------------------------------------

def _trainer(**options):
    from distnet.optimizers import Adam
    from distnet.training.trainer import Trainer

    job = _job()
    return Trainer(job.model(0.9), "sparse_softmax_cross_entropy", Adam(0.01), job.dataset(), global_batch_size=10,
                   seed=11, log_every=1000, **{"steps": 2, **options})


def test_job_key_reaches_the_trainer():
    from distnet.jobs.config import load_job
    from distnet.jobs.job import trainer_keywords

    assert trainer_keywords(load_job(None))["sync_batch_norm"] is True
    cfg = load_job(None, ["dist.sync_batch_norm=false"])
    assert trainer_keywords(cfg)["sync_batch_norm"] is False
    assert _trainer(sync_batch_norm=False).config.sync_batch_norm is False


def test_bad_switch_is_refused_and_deterministic_takes_no_reducer():
    from distnet.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="sync_batch_norm: Expect: True or False Actual: 'no'"):
        _trainer(sync_batch_norm="no")
    for sync in (True, False):   # deterministic: per-piece statistics, sync_batch_norm has no effect
        trainer = _trainer(deterministic=True, sync_batch_norm=sync)
        assert trainer.deterministic and trainer._bn_layers == [] and not trainer._bn_global


def test_micro_batches_are_the_global_batch_positions_m_apart():
    """On one rank with 3 micro-batches the first layer's statistics are those of samples 0, 3, 6, 9 then
    1, 4, 7 then 2, 5, 8 of the step's batch (momentum 0.9: the moving mean after one step says so)."""
    from distnet.nn.dropout import per_sample_keys

    job = _job()
    t = _trainer(micro_batches=3, steps=1)
    batch = t.sampler.shard_of(0, 0, 10)
    t.fit(verbose=0)
    expect = job.model(0.9)
    x, _ = job.dataset().read(batch.indices)
    for k in range(3):
        part = batch.indices[k::3]
        expect(x[k::3], training=True, dropout_keys=per_sample_keys(11, 0, part))
    got = {v.name: v.numpy() for v in t.model.variables}
    want = {v.name: v.numpy() for v in expect.variables}
    for name in MOVING:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
