"""Batch normalization in deterministic mode: per-piece statistics, the moving statistics moved once
per step from the pieces' exact sum, and the same bits on any number of workers.

tests/mpi_scripts/deterministic_strategies.py ``--bn``: the conv net of
tests/test_deterministic_strategies.py with two BatchNorm layers (after the conv and after the first
dense layer), global batch 14 in 5 pieces of 3 (the last of 2; uneven on 2 and 3 workers), a partial
last batch, dropout, Adam with clipping, an EMA and periodic evaluation (by the moving statistics).
"""
from __future__ import annotations

import numpy as np
import pytest
from mpi_util import differ_from_replicated as _differ, run_script

SCRIPT = "deterministic_strategies.py"
# one machine: zero1shm is ZeRO-1 through shared memory, hierarchical its cross-machine step (a no-op)
STRATEGIES = "replicated,zero1,zero1shm,hierarchical"
RESUMED = "replicated,zero1"   # also what one process runs (zero1shm needs 2 ranks)
MOVING = ("param/batch_normalization/moving_mean", "param/batch_normalization/moving_variance",
          "param/batch_normalization_1/moving_mean", "param/batch_normalization_1/moving_variance")


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    got = run_script(SCRIPT, tmp_path_factory.mktemp("detbn"), "one", "--bn", "--strategies", RESUMED,
                     timeout=300)
    assert len(got["replicated:losses"]) == 10 and np.all(np.isfinite(got["replicated:losses"]))
    # 14 parameters: 4 moving statistics, 10 trainable: 2 Adam slots and an EMA shadow each
    assert sum(k.startswith("replicated:param/") for k in got) == 14
    assert sum(k.startswith("replicated:slot/") for k in got) == 20
    assert sum(k.startswith("replicated:ema/") for k in got) == 10
    for k in MOVING:   # moved by 10 steps (from zeros and ones)
        init = 0.0 if k.endswith("mean") else 1.0
        assert np.all(np.isfinite(got[f"replicated:{k}"])) and np.all(got[f"replicated:{k}"] != init), k
    assert got["replicated:evals"].shape == (12,) and np.all(np.isfinite(got["replicated:evals"]))
    # the other strategies on one worker: the same bits as replicated (elementwise update)
    assert not _differ(got, {k: v for k, v in got.items() if not k.startswith("replicated:")})
    return got


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 3])
def test_batch_norm_on_2_and_3_workers_equals_1_worker_bitwise(one, tmp_path, n):
    got = run_script(SCRIPT, tmp_path, f"n{n}", "--bn", "--strategies", STRATEGIES, nprocs=n, timeout=300)
    assert len(got) == 4 * (14 + 20 + 10 + 4), sorted(got)   # + losses, skipped, evals, final_eval
    differ = _differ(one, got)
    assert not differ, f"{n} workers with batch norm: differ from 1 worker: {differ}"


@pytest.mark.mpi
def test_batch_norm_comparison_sees_the_default_mode_differ(one, tmp_path):
    # The default mode (statistics of the global batch) on 2 workers is another computation: the
    # check above can fail, on the moving statistics too.
    got = run_script(SCRIPT, tmp_path, "default2", "--bn", "--strategies", "replicated", "--default",
                     nprocs=2, timeout=300)
    differ = _differ(one, got)
    assert any(k.split(":", 1)[1] in MOVING for k in differ) and "replicated:losses" in differ, differ


@pytest.mark.mpi
def test_batch_norm_stopped_on_2_resumed_on_3_equals_1_uninterrupted(one, tmp_path):
    ckpt = tmp_path / "ckpt"
    run_script(SCRIPT, tmp_path, "first", "--bn", "--strategies", RESUMED, "--ckpt", ckpt, "--steps", 5,
               nprocs=2, timeout=300)
    got = run_script(SCRIPT, tmp_path, "rest", "--bn", "--strategies", RESUMED, "--ckpt", ckpt, "--resume",
                     nprocs=3, timeout=300)
    for s in RESUMED.split(","):
        assert got[f"{s}:losses"].tobytes() == one["replicated:losses"][5:].tobytes(), s
        assert got[f"{s}:evals"].tobytes() == one["replicated:evals"][4:].tobytes(), s
        keys = [k for k in got if k.startswith(f"{s}:") and k.split(":", 1)[1] not in ("losses", "evals", "skipped")]
        assert len(keys) == 14 + 20 + 10 + 1   # + final_eval
        differ = _differ(one, got, keys)
        assert not differ, f"2 -> 3 workers with batch norm: differ from 1 uninterrupted worker: {differ}"


def test_each_piece_is_normalized_by_its_own_statistics():
    # One step of a [BatchNorm, Dense] model on 8 samples in pieces of 3, 3, 2: the logged loss is
    # that of each piece normalized by its own mean and variance, not by the batch's; the moving
    # statistics move once, toward the sample-weighted mean of the pieces' statistics.
    import distnet
    from distnet import layers
    from distnet.data import ArrayDataset
    from distnet.training.trainer import Trainer

    rng = np.random.default_rng(4)
    x = (rng.standard_normal((8, 3)) * [1.0, 3.0, 0.5] + [0.0, 2.0, -1.0]).astype(np.float32)
    y = rng.integers(0, 2, 8)
    reads = []

    class Recorded(ArrayDataset):
        def read(self, indices):
            reads.append(np.array(indices))
            return super().read(indices)

    model = distnet.Sequential([layers.BatchNorm(momentum=0.75, epsilon=1e-3), layers.Dense(2)],
                               input_shape=(3,), seed=2)
    bias, kernel = (v.data.astype(np.float64).copy() for v in sorted(model.trainable_variables, key=lambda v: v.name)
                    if v.name.startswith("dense/"))
    trainer = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1),
                      Recorded(x, y, num_classes=2), global_batch_size=8, steps=1, log_every=1000,
                      deterministic=True, piece_size=3)
    trainer.fit(verbose=0)
    assert [len(r) for r in reads] == [3, 3, 2] and sorted(np.concatenate(reads)) == list(range(8))

    def loss_sum(xs, ys, mean, var):
        z = (xs - mean) / np.sqrt(var + 1e-3) @ kernel + bias
        z = z - z.max(axis=1, keepdims=True)
        return float(np.sum(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(ys)), ys]))

    xd = x.astype(np.float64)
    per_piece = sum(loss_sum(xd[r], y[r], xd[r].mean(0), xd[r].var(0)) for r in reads) / 8
    global_stats = loss_sum(xd, y, xd.mean(0), xd.var(0)) / 8
    logged = trainer.history[-1]["loss"]
    assert abs(logged - per_piece) < 1e-5 * abs(per_piece), (logged, per_piece)
    assert abs(logged - global_stats) > 1e-3, (logged, global_stats)   # the check can tell them apart
    w = np.array([len(r) / 8 for r in reads])
    mean = sum(wi * xd[r].mean(0) for wi, r in zip(w, reads))
    var = sum(wi * xd[r].var(0, ddof=1) for wi, r in zip(w, reads))
    got = {v.name.split("/")[-1]: v.data for v in model.variables if "moving" in v.name}
    np.testing.assert_allclose(got["moving_mean"], 0.25 * mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["moving_variance"], 0.75 + 0.25 * var, rtol=1e-5)
    trainer.close()


def test_piece_statistics_leave_moving_statistics_and_reducer_alone():
    # Within piece_statistics a training call records (mean, unbiased variance), moves nothing and
    # calls no reducer (a reducer that raises would fail the call).
    import distnet
    from distnet import layers
    from distnet.layers.batch_norm import apply_moving_statistics, piece_statistics

    model = distnet.Sequential([layers.BatchNorm(momentum=0.5)], input_shape=(2,), seed=0)
    bn = model.layers[0]

    def refuse(v):
        raise AssertionError("the reducer was called")

    bn.set_reducer(refuse)
    x = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]], np.float32)
    with piece_statistics([bn]) as records:
        y = model(x, training=True).numpy()
    assert bn._recorded is None and len(records) == 1 and len(records[0]) == 1
    mean, var = records[0][0]
    np.testing.assert_array_equal(mean, x.astype(np.float64).mean(0))
    np.testing.assert_allclose(var, x.astype(np.float64).var(0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3), rtol=1e-5, atol=1e-6)
    assert bn.moving_mean.data.tolist() == [0.0, 0.0] and bn.moving_variance.data.tolist() == [1.0, 1.0]
    apply_moving_statistics(bn, mean.astype(np.float32), var.astype(np.float32))
    np.testing.assert_allclose(bn.moving_mean.data, 0.5 * mean, rtol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.data, 0.5 + 0.5 * var, rtol=1e-6)
