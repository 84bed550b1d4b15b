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
                                                   r"\['test_loss'\] \(a val_\* metric needs \[data\] validation\)"):
        EarlyStopping().on_evaluate(_trainer(), {"step": 1, "test_loss": 0.3})
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


ES_JOB = """\
name = "es"
seed = 2
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 32
activation = "relu"
[[model.layers]]
type = "dense"
units = 10
[optimizer]
name = "momentum"
learning_rate = 0.2
momentum = 0.9
[ema]
decay = 0.9
[data]
name = "fashion_mnist"
train_samples = 1000
test_samples = 300
validation = 200
[train]
batch_size = 50
steps = 200
eval_every = 4
log_every = 4
early_stopping = {metric = "val_loss", patience = 0, restore_best_weights = true}
[checkpoint]
every = 8
"""


@pytest.mark.parametrize("progress, workers", [("plain", 1), ("none", 1),
                                               pytest.param("plain", 2, marks=pytest.mark.mpi)])
def test_restored_best_weights_are_what_every_figure_reports(tmp_path, capsys, progress, workers):
    """After restore_best_weights the summary, the end record, the checkpoint's metrics and
    ``distnet eval`` of the last checkpoint agree: all are of the best step's weights (and
    their EMA shadows), on one process and on two workers (ZeRO-1's shadows in pieces)."""
    from distnet.checkpoint import load
    from distnet.jobs.cli import main
    from distnet.jobs.job import run_eval

    job = tmp_path / "job.toml"
    job.write_text(ES_JOB)
    run = tmp_path / "run"
    argv = ["train", str(job), "--run-dir", str(run), "--progress", progress]
    if workers == 1:
        assert main(argv) == 0
        out = capsys.readouterr().out
    else:
        done = subprocess.run([sys.executable, "-m", "distnet", *argv, "-n", str(workers)], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        out = done.stdout
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    stop = next(r for r in rows if r["kind"] == "early_stopping")
    assert stop["best_step"] < stop["step"] < 200, stop          # the job does stop early
    evals = [r for r in rows if r["kind"] == "eval"]
    best = next(r for r in evals if r["step"] == stop["best_step"])
    last = next(r for r in evals if r["step"] == stop["step"] and "restored_step" not in r)
    assert last["test_loss"] != best["test_loss"]                  # the discarded weights measure otherwise
    end = rows[-1]
    assert end["kind"] == "end" and end["status"] == "completed"
    keys = ("test_loss", "test_accuracy", "ema_test_loss", "ema_test_accuracy", "val_loss", "val_accuracy")
    assert {k: end[k] for k in keys} == {k: best[k] for k in keys}
    assert end["eval_step"] == stop["best_step"] and end["best"] == {
        "val_loss": {"value": best["val_loss"], "step": best["step"]}}
    assert end["reason"] == (f"stopped early at step {stop['step']} (best at step {best['step']}: val_loss "
                             f"{best['val_loss']:.4f}); the weights of step {best['step']} restored")
    ckpts = sorted((run / "checkpoints").glob("ckpt-*.h5"))
    state = load(ckpts[-1])
    assert state.step == stop["step"]
    assert {k: state.metrics[k] for k in ("test_loss", "test_accuracy", "val_loss")} == \
        {k: best[k] for k in ("test_loss", "test_accuracy", "val_loss")}
    for ema in (False, True):
        got = run_eval(run, use_ema=ema)   # one process: two workers' sums round otherwise
        prefix = "ema_" if ema else ""
        assert got["accuracy"] == best[f"{prefix}test_accuracy"]
        assert got["loss"] == (best[f"{prefix}test_loss"] if workers == 1 else
                               pytest.approx(best[f"{prefix}test_loss"], rel=1e-6))
    assert f"distnet: {end['reason']}" in out                     # also with --progress none
    if progress == "plain":
        assert f"stopped early at step {stop['step']} (best {best['step']})" in out
        assert "best val_loss" in out and "best validation accuracy" not in out
        assert f"the weights of step {best['step']} (best, restored)" in out
