"""Early stopping, the best checkpoint and the validation split (distnet/training/callbacks.py, distnet/data/split.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import distnet
from distnet.training.callbacks import EarlyStopping
from distnet.data import ArrayDataset, validation_split
from distnet.errors import InvalidArgumentError

REPO = Path(__file__).resolve().parent.parent


def _trainer(weight=0.0):
    v = distnet.Variable(np.array([weight], np.float32), name="w")
    strategy = types.SimpleNamespace(writing_params=lambda: __import__("contextlib").nullcontext())
    return types.SimpleNamespace(stop_training=False, all_variables=[v], strategy=strategy, logger=None)


def test_early_stopping_waits_patience_evaluations_without_improvement():
    t = _trainer()
    es = EarlyStopping("val_loss", patience=2, min_delta=0.01)
    for step, loss in ((10, 1.0), (20, 0.8), (30, 0.795), (40, 0.7), (50, 0.71)):
        es.on_evaluate(t, {"step": step, "val_loss": loss})
        assert not t.stop_training, step       # 0.795 is within min_delta: no improvement, wait 1
    es.on_evaluate(t, {"step": 60, "val_loss": 0.72})
    assert t.stop_training and es.stopped_step == 60 and es.best == 0.7 and es.best_step == 40


def test_accuracy_is_maximised_and_the_best_weights_come_back():
    t = _trainer(1.0)
    es = EarlyStopping("val_accuracy", patience=1, restore_best_weights=True)
    es.on_evaluate(t, {"step": 1, "val_accuracy": 0.5})
    t.all_variables[0].assign(np.array([2.0], np.float32))
    es.on_evaluate(t, {"step": 2, "val_accuracy": 0.4})
    assert t.stop_training and t.all_variables[0].numpy()[0] == 1.0


def test_a_missing_metric_and_bad_arguments_are_named():
    with pytest.raises(InvalidArgumentError, match=r"Expect: metric 'val_loss' in the evaluation Actual: "
                                                   r"\['test_loss'\] \(a val_\* metric needs validation data: "
                                                   r"validation_data=\.\.\., \[data\] validation in a job\)"):
        EarlyStopping().on_evaluate(_trainer(), {"step": 1, "test_loss": 0.3})
    # The cause named: an EMA metric needs the EMA (not blamed on the validation split).
    with pytest.raises(InvalidArgumentError, match=r"\(an ema_\* metric needs an EMA: Trainer\(ema=\.\.\.\), \[ema\] "
                                                   r"in a job\)$"):
        EarlyStopping("ema_val_loss").on_evaluate(_trainer(), {"step": 1, "val_loss": 0.3})
    with pytest.raises(InvalidArgumentError, match="patience: Expect: an integer >= 0"):
        EarlyStopping(patience=-1)
    with pytest.raises(InvalidArgumentError, match="mode: Expect: 'auto', 'min' or 'max'"):
        EarlyStopping(mode="up")


def test_the_validation_split_is_disjoint_seeded_and_reads_the_right_rows():
    x = (np.arange(50, dtype=np.float32) / 64).reshape(50, 1, 1, 1)   # row r holds r / 64, exactly
    data = ArrayDataset(x, np.arange(50) % 3, num_classes=3)
    train, val = validation_split(data, 0.2, seed=4)
    assert len(train) == 40 and len(val) == 10
    seen = np.concatenate([train.read(np.arange(40))[0].ravel(), val.read(np.arange(10))[0].ravel()]) * 64
    assert sorted(seen.tolist()) == list(range(50))
    again_train, again_val = validation_split(data, 10, seed=4)
    assert np.array_equal(again_val.indices, val.indices)
    assert not np.array_equal(validation_split(data, 10, seed=5)[1].indices, val.indices)
    xs, ys = val.read([3, 0, 3])                               # any order, repeats: as asked
    assert (xs.ravel() * 64).tolist() == [val.indices[3], val.indices[0], val.indices[3]]
    for bad in (0, 1.5, 50, -0.1):
        with pytest.raises(InvalidArgumentError, match="validation: Expect"):
            validation_split(data, bad)


@pytest.mark.mpi
def test_two_workers_stop_early_at_the_same_step_and_keep_the_best(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "distnet", "train", str(REPO / "examples" / "jobs" / "mlp.toml"), "-n", "2",
           "--run-dir", str(run), "--progress", "plain", "--set", "train.steps=2000", "--set", "train.eval_every=10",
           "--set", "data.validation=0.1", "--set", "data.train_samples=2000",
           "--set", 'train.early_stopping={metric="val_loss", patience=1}', "--set", "checkpoint.keep_best=val_loss"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    stop = [r for r in rows if r["kind"] == "early_stopping"]
    assert len(stop) == 1, done.stdout
    last_step = max(r["step"] for r in rows if r["kind"] == "step")
    assert last_step == stop[0]["step"] < 2000                      # every worker left the loop there
    evals = [r for r in rows if r["kind"] == "eval"]
    best = min(evals, key=lambda r: r["val_loss"])
    assert stop[0]["best_step"] == best["step"]
    # Each improvement is one "best" record per callback (rank 0 writes; no rank's copy), at the
    # evaluations where val_loss improved; keep_best's last one names the checkpoint it kept.
    improved, low = [], float("inf")
    for r in evals:
        if r["val_loss"] < low:
            improved.append(r["step"])
            low = r["val_loss"]
    for by in ("EarlyStopping", "KeepBest"):
        bests = [r for r in rows if r["kind"] == "best" and r["by"] == by]
        assert [r["step"] for r in bests] == improved, by
        assert all(r["metric"] == "val_loss" for r in bests) and bests[-1]["value"] == best["val_loss"]
    keep = [r for r in rows if r["kind"] == "best" and r["by"] == "KeepBest"]
    assert keep[-1]["checkpoint"].endswith(f"{best['step']:08d}.h5")
    assert "stopping early at step" in done.stdout + done.stderr
    from distnet.checkpoint import load

    kept = sorted((run / "checkpoints" / "best").glob("*.h5"))
    assert len(kept) == 1 and load(kept[0]).step == best["step"]
    assert load(sorted((run / "checkpoints").glob("*.h5"))[-1]).step == last_step
