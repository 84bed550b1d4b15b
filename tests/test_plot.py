"""plot.py: curves from metrics records and a PNG from a synthetic metrics file."""
from __future__ import annotations

import importlib.util
import math
import struct

import pytest

from distnet.errors import DataError, InvalidArgumentError
from distnet.metrics import MetricsLogger
from distnet.plot import curves, plot_run, plot_runs

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


def synthetic_run(run_dir, steps=120, eval_every=30, ema=True, reg=0.01):
    log = MetricsLogger(run_dir, progress="none")
    log.start(total_steps=steps)
    for s in range(1, steps + 1):
        log.log_step(step=s, epoch=s // 60, loss=2.3 * math.exp(-s / 40) + 0.2 + reg, reg_loss=reg,
                     lr=1e-3 * 0.5 ** (s / 60), samples_per_sec=500.0, accuracy=1 - 0.9 * math.exp(-s / 30))
        if s % eval_every == 0:
            extra = dict(ema_test_loss=2.2 * math.exp(-s / 50) + 0.3,
                         ema_test_accuracy=0.85 - 0.7 * math.exp(-s / 50)) if ema else {}
            log.log_eval(step=s, epoch=s // 60, test_loss=2.3 * math.exp(-s / 45) + 0.3,
                         test_accuracy=0.85 - 0.75 * math.exp(-s / 40), **extra)
    log.close()
    return run_dir


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_curves_keep_the_latest_value_of_a_repeated_step():
    recs = [
        {"kind": "start", "time": 0.0},
        {"kind": "step", "step": 1, "loss": 3.0, "reg_loss": 0.5, "lr": 0.1},
        {"kind": "step", "step": 2, "loss": 2.0, "reg_loss": 0.0, "lr": 0.1, "accuracy": 0.5},
        {"kind": "step", "step": 2, "loss": 1.5, "reg_loss": 0.0, "lr": 0.05},  # resumed from step 1
        {"kind": "eval", "step": 2, "test_loss": 1.75, "test_accuracy": 0.25, "ema_test_accuracy": 0.375},
        {"kind": "end", "step": 2},
    ]
    c = curves(recs)
    assert c["loss"] == ([1, 2], [3.0, 1.5])
    assert c["base_loss"] == ([1, 2], [2.5, 1.5])
    assert c["reg_loss"] == ([1, 2], [0.5, 0.0])
    assert c["lr"] == ([1, 2], [0.1, 0.05])
    assert c["train_accuracy"] == ([2], [0.5])
    assert c["test_loss"] == ([2], [1.75])
    assert c["ema_test_accuracy"] == ([2], [0.375])
    assert "ema_test_loss" not in c


def test_plot_run_writes_a_png(tmp_path):
    run = synthetic_run(tmp_path / "run")
    if not HAVE_MPL:  # an environment without matplotlib gets a clear error
        with pytest.raises(InvalidArgumentError, match="matplotlib"):
            plot_run(run)
        return
    out = plot_run(run)
    assert out == run / "metrics.png"
    assert png_size(out) == (1500, 450)
    # The image has content: many distinct colours (curves, legend, text), not a blank canvas.
    from matplotlib.image import imread

    img = imread(out)
    colours = {tuple(px) for px in img[::7, ::7, :3].reshape(-1, 3).round(2).tolist()}
    assert len(colours) > 20


def test_plot_runs_compares_several_runs(tmp_path):
    runs = [synthetic_run(tmp_path / name, reg=reg, ema=False) for name, reg in (("a", 0.0), ("b", 0.05))]
    if not HAVE_MPL:
        with pytest.raises(InvalidArgumentError, match="matplotlib"):
            plot_runs(runs, tmp_path / "both.png")
        return
    out = plot_runs(runs, tmp_path / "sub" / "both.png", labels=["none", "l2"])
    assert png_size(out) == (1500, 450)


def test_plot_errors(tmp_path):
    with pytest.raises(DataError, match="no metrics file"):
        plot_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"kind": "start", "time": 1.0}\n')
    with pytest.raises(DataError, match="no step or eval records"):
        plot_run(tmp_path)
    run = synthetic_run(tmp_path / "run", steps=4, eval_every=2)
    with pytest.raises(InvalidArgumentError, match="one label per run"):
        plot_runs([run], tmp_path / "x.png", labels=["a", "b"])
    with pytest.raises(InvalidArgumentError, match="at least one run"):
        plot_runs([], tmp_path / "x.png")


def test_smoothing_is_a_debiased_moving_average():
    from distnet.plot import smoothed

    # weight 0.5: avg = 0.5, 0.25 -> debiased by 1 - 0.5**i: 1.0, 1/3
    assert smoothed([1.0, 0.0], weight=0.5) == pytest.approx([1.0, 1 / 3])
    assert smoothed([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
