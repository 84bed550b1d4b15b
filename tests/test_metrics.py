"""metrics.jsonl content, progress output, rank-0-only logging and the summary."""
from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest

from distnet.errors import DataError, InvalidArgumentError
from distnet.training.metrics import METRICS_FILE, MetricsLogger, read_metrics


def lines_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_are_written_and_flushed_per_line(tmp_path):
    log = MetricsLogger(tmp_path, progress="none")
    log.start(total_steps=2, world_size=3)
    log.log_step(step=1, epoch=0, loss=2.5, reg_loss=0.25, lr=1e-3, samples_per_sec=800.0, accuracy=0.125)
    # Before close: a killed run keeps what it logged.
    recs = lines_of(tmp_path / METRICS_FILE)
    assert [r["kind"] for r in recs] == ["start", "step"]
    assert recs[0]["total_steps"] == 2 and recs[0]["world_size"] == 3
    step = recs[1]
    assert {k: step[k] for k in ("step", "epoch", "loss", "reg_loss", "lr", "samples_per_sec", "accuracy")} == {
        "step": 1, "epoch": 0, "loss": 2.5, "reg_loss": 0.25, "lr": 1e-3, "samples_per_sec": 800.0,
        "accuracy": 0.125}
    assert isinstance(step["time"], float) and step["time"] >= recs[0]["time"]
    log.log_eval(step=2, epoch=0, test_loss=1.5, test_accuracy=0.75, ema_test_loss=1.25,
                 ema_test_accuracy=0.875)
    log.close()
    recs = lines_of(tmp_path / METRICS_FILE)
    assert [r["kind"] for r in recs] == ["start", "step", "eval", "end"]
    ev = recs[2]
    assert (ev["step"], ev["test_loss"], ev["test_accuracy"], ev["ema_test_loss"], ev["ema_test_accuracy"]) == (
        2, 1.5, 0.75, 1.25, 0.875)
    end = recs[3]
    assert end["status"] == "completed" and end["final_loss"] == 2.5 and end["test_accuracy"] == 0.75


def test_trainer_dict_form_and_ema_spelling(tmp_path):
    log = MetricsLogger(tmp_path, progress="none")
    log.log_step({"step": 5, "epoch": 1, "loss": np.float32(0.5), "reg_loss": 0.0, "lr": 0.1,
                  "samples_per_sec": 10.0, "finite": True})
    log.log_eval({"step": 5, "test_loss": 0.25, "test_accuracy": 0.5, "test_samples": 20,
                  "test_ema_loss": 0.125, "test_ema_accuracy": 0.625})
    log.close()
    recs = read_metrics(tmp_path)
    assert recs[1]["loss"] == 0.5 and recs[1]["finite"] is True
    ev = recs[2]
    assert (ev["ema_test_loss"], ev["ema_test_accuracy"], ev["test_samples"], ev["epoch"]) == (0.125, 0.625, 20, 1)
    assert "test_ema_loss" not in ev


def test_missing_keys_are_an_error(tmp_path):
    log = MetricsLogger(tmp_path, progress="none")
    with pytest.raises(InvalidArgumentError, match="missing \\['loss'\\]"):
        log.log_step(step=1)
    with pytest.raises(InvalidArgumentError, match="test_accuracy"):
        log.log_eval(step=1, test_loss=1.0)
    with pytest.raises(InvalidArgumentError, match="progress"):
        MetricsLogger(tmp_path, progress="fancy")


def test_other_ranks_log_nothing(tmp_path):
    out = io.StringIO()
    log = MetricsLogger(tmp_path / "run", is_main=False, stream=out, progress="plain", print_every=1)
    log.start(total_steps=1)
    log.log_step(step=1, epoch=0, loss=1.0, reg_loss=0.0, lr=0.1, samples_per_sec=1.0)
    log.log_eval(step=1, epoch=0, test_loss=1.0, test_accuracy=0.5)
    log.message("hello")
    log.close()
    assert out.getvalue() == ""
    assert not (tmp_path / "run").exists()


def test_plain_lines_every_print_every_steps_and_summary(tmp_path):
    out = io.StringIO()
    log = MetricsLogger(tmp_path, stream=out, progress="auto", print_every=2)  # StringIO is no terminal
    log.start(total_steps=5)
    for s in range(1, 6):
        log.log_step(step=s, epoch=0, loss=1.0 / s, reg_loss=0.01, lr=0.1, samples_per_sec=100.0 * s)
    log.log_eval(step=5, epoch=0, test_loss=0.5, test_accuracy=0.8)
    log.close()
    text = out.getvalue()
    step_lines = [l for l in text.splitlines() if l.startswith("step ")]
    assert [l.split("|")[0].strip() for l in step_lines] == ["step 2/5", "step 4/5", "step 5/5"]
    assert "loss 0.2000 (reg 0.0100)" in step_lines[-1] and "ETA" in step_lines[-1]
    assert "eval  step 5: test loss 0.5000, accuracy 0.8000" in text
    assert "\r" not in text  # no bar when not on a terminal
    summary = text.split("eval  step 5")[1]
    for row in ("status", "completed", "test accuracy", "0.8000", "samples/s (median)", "300"):
        assert row in summary


def test_bar_mode_shows_step_loss_and_lr():
    import importlib.util

    out = io.StringIO()
    log = MetricsLogger(None, stream=out, progress="bar", print_every=2)
    log.start(total_steps=4)
    for s in range(1, 5):
        log.log_step(step=s, epoch=0, loss=0.125, reg_loss=0.0, lr=0.05, samples_per_sec=321.0)
    log.close()
    text = out.getvalue()
    assert "4/4" in text and "loss 0.1250" in text and "lr 0.05" in text and "321 samples/s" in text
    if importlib.util.find_spec("tqdm") is not None:
        assert "\r" in text and "100%" in text      # a tqdm bar
    else:
        assert "step 2/4" in text                   # tqdm is optional: plain lines instead


def test_interrupted_status_from_context_manager(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with MetricsLogger(tmp_path, progress="none") as log:
            log.log_step(step=1, epoch=0, loss=1.0, reg_loss=0.0, lr=0.1, samples_per_sec=1.0)
            raise KeyboardInterrupt
    assert read_metrics(tmp_path)[-1]["status"] == "interrupted"


def test_resume_appends_and_non_finite_values_survive(tmp_path):
    for first in (1, 3):
        log = MetricsLogger(tmp_path, progress="none")
        log.start(total_steps=4, start_step=first - 1)
        for s in (first, first + 1):
            log.log_step(step=s, epoch=0, loss=float("nan") if s == 2 else 1.0, reg_loss=0.0, lr=0.1,
                         samples_per_sec=1.0)
        log.close()
    recs = read_metrics(tmp_path)
    assert [r["step"] for r in recs if r["kind"] == "step"] == [1, 2, 3, 4]
    assert np.isnan([r["loss"] for r in recs if r["kind"] == "step"][1])
    assert [r["steps_run"] for r in recs if r["kind"] == "end"] == [2, 2]
    # Strict JSON on disk: no bare NaN token.
    assert "NaN" not in (tmp_path / METRICS_FILE).read_text()


def test_read_metrics_tolerates_only_a_cut_last_line(tmp_path):
    path = tmp_path / METRICS_FILE
    path.write_text('{"kind": "step", "step": 1, "loss": 1.0}\n{"kind": "step", "st')
    assert read_metrics(path) == [{"kind": "step", "step": 1, "loss": 1.0}]
    path.write_text('{"kind": "step"\n{"kind": "step", "step": 1, "loss": 1.0}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:1: not a JSON line"):
        read_metrics(path)
    with pytest.raises(DataError, match="no metrics file"):
        read_metrics(tmp_path / "elsewhere")


def test_summary_counts_the_checkpoints_a_run_leaves(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / "ckpt-00000010.h5").write_bytes(b"x" * 1_500_000)
    (ckpt / "ckpt-00000020.h5").write_bytes(b"x" * 2_600_000)
    (ckpt / ".ckpt-00000030.h5.tmp-77").write_bytes(b"x" * 9999)   # half-written: not counted
    log = MetricsLogger(tmp_path, progress="none", checkpoint_dir=ckpt)
    log.log_step(step=1, epoch=0, loss=1.0, reg_loss=0.0, lr=0.1, samples_per_sec=1.0)
    assert log.summary()["checkpoint_files"] == 2 and log.summary()["checkpoint_bytes"] == 4_100_000
    table = MetricsLogger.summary_table(log.summary())
    assert [line.split() for line in table.splitlines() if line.startswith("checkpoints")] == \
        [["checkpoints", "kept", "2", "files,", "4.1", "MB"]]
    off = MetricsLogger(None, progress="none", checkpoint_dir="")
    assert off.summary() == {"checkpoints": "off"}
    assert [line.split() for line in MetricsLogger.summary_table(off.summary()).splitlines()
            if line.startswith("checkpoints")] == [["checkpoints", "off"]]
    assert "checkpoint" not in str(MetricsLogger(None, progress="none").summary())


def test_last_step_reads_the_step_records_not_their_text(tmp_path):
    from distnet.training.metrics import last_step

    assert last_step(tmp_path) == 0                       # no metrics file: nothing logged
    lines = ['{"kind":"start","step":0}', '{"kind":"step","step":10,"loss":1.0}',
             '{"kind": "step", "step": 20, "loss": 0.5}',  # spaced JSON: a substring test missed it
             '{"kind":"eval","step":30}', '{"kind":"step","step":2']  # the last line cut by a kill
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    assert last_step(tmp_path) == 20
    (tmp_path / "metrics.jsonl").write_text('{"kind":"step","step":5}\nnot json\n{"kind":"step","step":6}\n')
    assert last_step(tmp_path) is None                    # a bad line inside: unreadable, said as None


def test_the_summary_says_of_which_step_its_figures_are(tmp_path):
    log = MetricsLogger(tmp_path, progress="none")
    for step in (1, 2, 3):
        log.log_step(step=step, epoch=0, loss=1.0, reg_loss=0.0, lr=0.1, samples_per_sec=1.0)
    log.log_eval(step=2, epoch=0, test_loss=0.5, test_accuracy=0.75)
    summary = log.summary()
    assert summary["eval_step"] == 2 and summary["step"] == 3
    table = MetricsLogger.summary_table(summary, "interrupted")
    assert [line.split() for line in table.splitlines() if line.startswith("evaluated")] == \
        [["evaluated", "at", "step", "2"]]                       # an interrupted run's test figures: step 2's
    log.log_eval(step=3, epoch=0, test_loss=0.25, test_accuracy=0.875)
    assert "evaluated" not in MetricsLogger.summary_table(log.summary())   # of the last step: nothing to say


def test_the_summary_names_the_watched_metric_and_the_early_stop(tmp_path):
    log = MetricsLogger(tmp_path, progress="none")
    log.log_step(step=4, epoch=0, loss=1.0, reg_loss=0.0, lr=0.1, samples_per_sec=1.0)
    log.log_eval(step=2, val_loss=0.5, val_accuracy=0.5)
    log.log("best", step=2, metric="val_loss", value=0.5, by="EarlyStopping")
    log.log_eval(step=4, val_loss=0.75, val_accuracy=0.625)
    log.log("early_stopping", step=4, metric="val_loss", best=0.5, best_step=2, restored=True)
    log.log_eval(step=4, val_loss=0.5, val_accuracy=0.5, restored_step=2)
    summary = log.summary()
    assert summary["best"] == {"val_loss": {"value": 0.5, "step": 2}} and "best_val_accuracy" not in summary
    table = MetricsLogger.summary_table(summary)
    rows = dict(re.split(r"\s{3,}", line.strip(), maxsplit=1) for line in table.splitlines()[1:-1])
    assert rows["status"] == "stopped early at step 4 (best 2)"
    assert rows["evaluated"] == "the weights of step 2 (best, restored)"
    assert rows["best val_loss"] == "0.5000 at step 2" and rows["validation accuracy"] == "0.5000"
