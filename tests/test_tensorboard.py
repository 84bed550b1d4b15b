"""distnet.training.tensorboard: event files written with tensorboardX, read back with
TensorBoard's own reader (EventAccumulator)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from distnet.errors import InvalidArgumentError
from distnet.training.metrics import MetricsLogger, read_metrics
from distnet.training.tensorboard import TensorBoardWriter, record_scalars

pytest.importorskip("tensorboardX", reason="the tensorboard extra: pip install -e '.[test]'")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read_events(run_dir):
    acc = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={"scalars": 0, "tensors": 0, "histograms": 0})
    acc.Reload()
    return acc


def write_run(run_dir, steps=30, eval_every=10):
    """A metrics.jsonl as the trainer writes it: step and eval records, EMA included."""
    log = MetricsLogger(run_dir, progress="none", tensorboard=False)   # the tests write the events themselves
    log.start(total_steps=steps)
    for s in range(1, steps + 1):
        log.log_step(step=s, epoch=s // 20, loss=2.3 * math.exp(-s / 9) + 0.1, reg_loss=0.01 * s,
                     lr=1e-3 * 0.9 ** s, samples_per_sec=400.0 + s, accuracy=s / (s + 3.0), finite=True)
        if s % eval_every == 0:
            log.log_eval(step=s, test_loss=1.0 / s, test_accuracy=1 - 1.0 / s,
                         ema_test_loss=1.5 / s, ema_test_accuracy=1 - 1.5 / s)
    log.close()
    return read_metrics(run_dir)


def test_every_metrics_record_reads_back_with_the_same_values(tmp_path):
    records = write_run(tmp_path)
    with TensorBoardWriter(tmp_path) as tb:
        for rec in records:
            tb.add_record(rec)
    acc = read_events(tmp_path)
    tags = set(acc.Tags()["scalars"])
    assert tags == {"train/loss", "train/reg_loss", "train/lr", "train/accuracy", "train/samples_per_sec",
                    "eval/test_loss", "eval/test_accuracy", "eval/ema_test_loss", "eval/ema_test_accuracy"}
    expected: dict[str, list[tuple[int, float, float]]] = {}
    for rec in records:
        for tag, value in record_scalars(rec).items():
            expected.setdefault(tag, []).append((rec["step"], value, rec["time"]))
    for tag, points in expected.items():
        got = acc.Scalars(tag)
        assert [e.step for e in got] == [p[0] for p in points], tag
        # Event files hold float32 values; metrics.jsonl holds float64.
        np.testing.assert_allclose([e.value for e in got], [p[1] for p in points], rtol=1e-6, err_msg=tag)
        np.testing.assert_allclose([e.wall_time for e in got], [p[2] for p in points], rtol=0, atol=1e-3)
    assert len(acc.Scalars("train/loss")) == 30 and len(acc.Scalars("eval/test_accuracy")) == 3
    assert acc.Scalars("eval/ema_test_accuracy")[-1].value == pytest.approx(0.95)


def test_text_and_histograms_read_back(tmp_path):
    toml = 'name = "default"\n\n[train]\nsteps = 500\n'
    rng = np.random.default_rng(0)
    kernel = rng.normal(0.0, 0.1, size=(64, 10))
    with TensorBoardWriter(tmp_path / "run") as tb:
        tb.add_code("job/config", toml)
        tb.add_text("job/note", "plain *markdown*", step=3)
        tb.add_histograms({"dense/kernel": kernel, "dense/bias": np.arange(10.0)}, step=7)
        tb.add_histogram("gradients/dense/kernel", np.array([np.nan, 1.0, 2.0]), step=7)
    acc = read_events(tmp_path / "run")
    texts = acc.Tags()["tensors"]
    assert set(texts) == {"job/config/text_summary", "job/note/text_summary"}
    (config,) = acc.Tensors("job/config/text_summary")
    assert config.tensor_proto.string_val[0].decode() == "```\n" + toml.rstrip("\n") + "\n```"
    (note,) = acc.Tensors("job/note/text_summary")
    assert note.step == 3 and note.tensor_proto.string_val[0].decode() == "plain *markdown*"
    assert set(acc.Tags()["histograms"]) == {"weights/dense/kernel", "weights/dense/bias",
                                             "gradients/dense/kernel"}
    (hist,) = acc.Histograms("weights/dense/kernel")
    h = hist.histogram_value
    assert hist.step == 7 and h.num == kernel.size
    assert h.min == pytest.approx(kernel.min()) and h.max == pytest.approx(kernel.max())
    assert h.sum == pytest.approx(kernel.sum()) and h.sum_squares == pytest.approx((kernel ** 2).sum())
    (grad,) = acc.Histograms("gradients/dense/kernel")
    assert grad.histogram_value.num == 2  # the NaN left out


def test_a_writer_touches_no_file_until_its_first_write(tmp_path):
    tb = TensorBoardWriter(tmp_path / "run")
    assert not (tmp_path / "run").exists()
    tb.close()
    assert not (tmp_path / "run").exists()
    with pytest.raises(InvalidArgumentError, match="closed"):
        tb.add_scalar("train/loss", 1.0, 1)


def test_sample_counts_are_not_scalars():
    rec = {"kind": "eval", "step": 10, "test_loss": 0.5, "test_samples": 200, "val_accuracy": 0.75,
           "val_samples": 100, "ema_val_samples": 100}
    assert record_scalars(rec) == {"eval/test_loss": 0.5, "eval/val_accuracy": 0.75}
    # Throughput is a curve, not a count.
    assert record_scalars({"kind": "step", "step": 1, "loss": 1.0, "samples_per_sec": 900.0}) == {
        "train/loss": 1.0, "train/samples_per_sec": 900.0}


def test_best_steps_and_an_early_stop_read_back(tmp_path):
    records = [
        {"kind": "eval", "step": 10, "time": 1.0, "val_loss": 0.7, "val_samples": 100},
        {"kind": "best", "step": 10, "time": 1.0, "metric": "val_loss", "value": 0.7, "by": "EarlyStopping"},
        {"kind": "best", "step": 10, "time": 1.0, "metric": "val_loss", "value": 0.7, "by": "KeepBest"},
        {"kind": "eval", "step": 20, "time": 2.0, "val_loss": 0.5, "val_samples": 100},
        {"kind": "best", "step": 20, "time": 2.0, "metric": "val_loss", "value": 0.5, "by": "EarlyStopping"},
        {"kind": "eval", "step": 30, "time": 3.0, "val_loss": 0.6, "val_samples": 100},
        {"kind": "early_stopping", "step": 30, "time": 3.0, "metric": "val_loss", "best": 0.5, "best_step": 20},
    ]
    with TensorBoardWriter(tmp_path) as tb:
        for rec in records:
            tb.add_record(rec)
    acc = read_events(tmp_path)
    assert set(acc.Tags()["scalars"]) == {"eval/val_loss", "best/val_loss"}
    # One point per best step (two callbacks watching one metric write it once); the last is the best.
    assert [(e.step, pytest.approx(e.value)) for e in acc.Scalars("best/val_loss")] == [(10, 0.7), (20, 0.5)]
    (text,) = acc.Tensors("early_stopping/text_summary")
    assert text.step == 30
    assert text.tensor_proto.string_val[0].decode() == \
        "stopped early at step 30: val_loss had not improved (best 0.5 at step 20)"


def test_a_metrics_logger_writes_histograms_before_any_step(tmp_path):
    """The initial weights at step 0: the logger opens the event file for a histogram too."""
    log = MetricsLogger(tmp_path, progress="none", tensorboard=True)
    log.start(total_steps=2)
    log.log_histograms(0, {"dense/kernel": np.arange(6.0).reshape(2, 3)})
    log.log_step(step=1, loss=1.0)
    log.log_histograms(1, {"dense/kernel": np.ones((2, 3))})
    log.close()
    acc = read_events(tmp_path)
    assert [(e.step, e.histogram_value.sum) for e in acc.Histograms("weights/dense/kernel")] == [(0, 15.0), (1, 6.0)]
    assert [e.step for e in acc.Scalars("train/loss")] == [1]


def test_record_scalars_leaves_out_positions_flags_and_non_finite_values():
    rec = {"kind": "step", "step": 5, "epoch": 0, "time": 1.0, "finite": True, "loss": 0.5,
           "lr": float("nan"), "note": "text"}
    assert record_scalars(rec) == {"train/loss": 0.5}
    assert record_scalars({"kind": "start", "time": 1.0, "total_steps": 10}) == {}
    assert record_scalars({"kind": "end", "step": 10, "test_accuracy": 0.9}) == {}


@pytest.mark.parametrize("call, message", [
    (lambda tb: tb.add_scalar("", 1.0, 1), "tag: Expect: a non-empty str"),
    (lambda tb: tb.add_scalar("train/loss", 1.0, -1), r"step: Expect: an int >= 0 Actual: -1"),
    (lambda tb: tb.add_text("t", b"bytes"), "text: Expect: a str Actual: bytes"),
    (lambda tb: tb.add_record({"kind": "step", "loss": 1.0}), "Expect: a record with a 'step'"),
])
def test_bad_arguments_say_what_was_expected(tmp_path, call, message):
    with TensorBoardWriter(tmp_path) as tb, pytest.raises(InvalidArgumentError, match=message):
        call(tb)


def test_bad_constructor_arguments(tmp_path):
    with pytest.raises(InvalidArgumentError, match="purge_step"):
        TensorBoardWriter(tmp_path, purge_step=-1)
    with pytest.raises(InvalidArgumentError, match="flush_secs"):
        TensorBoardWriter(tmp_path, flush_secs=0)


def test_purge_step_hides_what_an_interrupted_run_wrote_after_it(tmp_path):
    with TensorBoardWriter(tmp_path) as tb:
        for s in range(1, 11):
            tb.add_scalar("train/loss", float(s), s)
    # Resumed from a checkpoint at step 6: steps 6..10 are written again.
    with TensorBoardWriter(tmp_path, purge_step=6) as tb:
        for s in range(6, 11):
            tb.add_scalar("train/loss", 100.0 + s, s)
    points = read_events(tmp_path).Scalars("train/loss")
    assert [(p.step, p.value) for p in points] == [(s, float(s)) for s in range(1, 6)] + \
        [(s, 100.0 + s) for s in range(6, 11)]


def test_distnet_train_writes_every_metric_the_job_and_histograms(tmp_path):
    """A real run: rank 0's event file holds every number of metrics.jsonl
    (steps and evaluations, EMA included), the job file as text and weight
    histograms every K steps; --set train.tensorboard=false writes none."""
    import subprocess
    import sys
    from pathlib import Path

    job = Path(__file__).resolve().parent.parent / "examples" / "jobs" / "mlp.toml"
    run = tmp_path / "run"
    # Early stopping with min_delta 100: the first evaluation is the best, the second stops the run (step 12).
    cmd = [sys.executable, "-m", "distnet", "train", str(job), "--progress", "none", "--set", "train.steps=18",
           "--set", "train.eval_every=6", "--set", "train.log_every=1", "--set", "train.histograms_every=6",
           "--set", "data.train_samples=600", "--set", "data.test_samples=200", "--set", "data.validation=100",
           "--set", 'train.early_stopping={metric="val_loss", patience=0, min_delta=100}',
           "--set", "checkpoint.keep_best=val_accuracy"]
    done = subprocess.run([*cmd, "--run-dir", str(run)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    acc = read_events(run)
    records = read_metrics(run)
    steps = [r for r in records if r["kind"] == "step"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(steps) == 12 and len(evals) == 2 and "ema_test_accuracy" in evals[0]
    for kind, rows in (("train", steps), ("eval", evals)):
        for key in ("loss", "lr", "accuracy") if kind == "train" else ("test_loss", "ema_test_accuracy"):
            got = [(e.step, e.value) for e in acc.Scalars(f"{kind}/{key}")]
            want = [(r["step"], r[key]) for r in rows]
            assert [s for s, _ in got] == [s for s, _ in want], key
            np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-6, err_msg=key)
    assert any("job/config" in tag for tag in acc.Tags()["tensors"])
    hist = [t for t in acc.Tags()["histograms"] if t.startswith("weights/")]
    # Step 0: the initial weights, before the first update.
    assert len(hist) == 6 and [e.step for e in acc.Histograms(hist[0])] == [0, 6, 12]
    assert not [t for t in acc.Tags()["scalars"] if t.endswith("_samples")]
    assert "eval/val_loss" in acc.Tags()["scalars"]
    # The best step of each monitored metric and the early stop.
    (stop,) = [r for r in records if r["kind"] == "early_stopping"]
    assert stop["step"] == 12 and stop["best_step"] == 6
    assert [(e.step, pytest.approx(e.value)) for e in acc.Scalars("best/val_loss")] == [(6, stop["best"])]
    bests = [r for r in records if r["kind"] == "best" and r["metric"] == "val_accuracy"]
    assert bests and [e.step for e in acc.Scalars("best/val_accuracy")] == [r["step"] for r in bests]
    (text,) = acc.Tensors("early_stopping/text_summary")
    assert text.step == 12 and text.tensor_proto.string_val[0].decode().startswith(
        "stopped early at step 12: val_loss had not improved")
    quiet = tmp_path / "quiet"
    done = subprocess.run([*cmd, "--run-dir", str(quiet), "--set", "train.tensorboard=false"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not list(quiet.glob("events.out.tfevents.*"))


def test_the_evaluation_of_restored_weights_writes_no_scalars():
    from distnet.training.tensorboard import record_scalars

    assert record_scalars({"kind": "eval", "step": 20, "val_loss": 0.5, "restored_step": 10}) == {}
    assert record_scalars({"kind": "eval", "step": 20, "val_loss": 0.5}) == {"eval/val_loss": 0.5}
