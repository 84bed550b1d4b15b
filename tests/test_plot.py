"""plot.py: curves from metrics records and a PNG from a synthetic metrics file."""
from __future__ import annotations

import importlib.util
import math
import struct

import pytest

from distnet.errors import DataError, InvalidArgumentError
from distnet.training.metrics import MetricsLogger
from distnet.jobs.plot import curves, plot_run, plot_runs

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


def synthetic_run(run_dir, steps=120, eval_every=30, ema=True, reg=0.01, lr=None, val=False, stop_at=None):
    """A metrics.jsonl as the trainer writes it; ``val``: validation evaluations, with
    ``best`` records for val_loss; ``stop_at``: an early stop there (the run ends at it)."""
    log = MetricsLogger(run_dir, progress="none", tensorboard=False)
    best = math.inf
    log.start(total_steps=steps)
    for s in range(1, steps + 1):
        log.log_step(step=s, epoch=s // 60, loss=2.3 * math.exp(-s / 40) + 0.2 + reg, reg_loss=reg,
                     lr=1e-3 * 0.5 ** (s / 60) if lr is None else lr, samples_per_sec=500.0, accuracy=1 - 0.9 * math.exp(-s / 30))
        if s % eval_every == 0:
            extra = dict(ema_test_loss=2.2 * math.exp(-s / 50) + 0.3,
                         ema_test_accuracy=0.85 - 0.7 * math.exp(-s / 50)) if ema else {}
            if val:   # a validation loss that is best at step 60 of 120
                extra.update(val_loss=0.5 + ((s - 60) / 60) ** 2, val_accuracy=0.8 - ((s - 60) / 120) ** 2,
                             ema_val_loss=0.45 + ((s - 60) / 60) ** 2, ema_val_accuracy=0.82 - ((s - 60) / 120) ** 2,
                             val_samples=100, test_samples=200)
            log.log_eval(step=s, epoch=s // 60, test_loss=2.3 * math.exp(-s / 45) + 0.3,
                         test_accuracy=0.85 - 0.75 * math.exp(-s / 40), **extra)
            if val and extra["val_loss"] < best:
                best = extra["val_loss"]
                log.log("best", step=s, metric="val_loss", value=best, by="EarlyStopping")
            if s == stop_at:
                log.log("early_stopping", step=s, metric="val_loss", best=best, best_step=60)
                break
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
    assert png_size(out) == (1500, 480)
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


def _texts(fig):
    return [t.get_text() for t in fig.texts]


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_a_constant_learning_rate_is_a_note_not_a_panel(tmp_path):
    from distnet.jobs.plot import make_figure

    fig = make_figure([synthetic_run(tmp_path / "const", lr=1e-4)])
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert "learning rate: constant 0.0001" in _texts(fig)
    fig = make_figure([synthetic_run(tmp_path / "decay")])
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "learning rate"]
    assert not any("learning rate" in t for t in _texts(fig))
    # Several runs: one note naming each run's constant rate.
    runs = [synthetic_run(tmp_path / n, lr=v) for n, v in (("a", 1e-3), ("b", 1e-2))]
    fig = make_figure(runs)
    assert len(fig.axes) == 2 and "constant learning rate: a 0.001, b 0.01" in _texts(fig)
    fig = make_figure([runs[0], tmp_path / "const"])
    assert "constant learning rate: a 0.001, const 0.0001" in _texts(fig)
    fig = make_figure([tmp_path / "const", synthetic_run(tmp_path / "c2", lr=1e-4)])
    assert "learning rate: constant 0.0001 in every run" in _texts(fig)


def test_compared_runs_colour_runs_tell_kinds_by_line_style_and_keep_legends_off_the_data(tmp_path):
    from matplotlib.colors import to_hex

    from distnet.jobs.plot import make_figure

    runs = [synthetic_run(tmp_path / n, reg=r, lr=1e-4, ema=e) for n, r, e in (
        ("none", 0.0, True), ("l2", 0.05, True), ("dropout", 0.0, False))]
    fig = make_figure(runs)
    loss, acc = fig.axes
    for ax in (loss, acc):
        assert ax.get_legend() is None  # nothing drawn over the curves
        by_colour: dict[str, list] = {}
        for line in ax.lines:
            by_colour.setdefault(to_hex(line.get_color()), []).append(line)
        assert sorted(by_colour) == sorted(to_hex(f"C{i}") for i in range(3))
        for lines in by_colour.values():
            # per run: a light train curve (120 points), a heavy test and an EMA test curve (4 points)
            train = [l for l in lines if len(l.get_xdata()) == 120]
            tests = [l for l in lines if len(l.get_xdata()) == 4]
            assert len(train) == 1 and len(tests) == (1 if lines[0].get_color() == "C2" else 2)
            assert all(t.get_linewidth() > train[0].get_linewidth() for t in tests)
            assert all(t.get_marker() not in (None, "None", "") for t in tests)
            # Train and test are told apart by the line style, not by fading the train curve.
            assert train[0].get_alpha() in (None, 1) and train[0].get_linestyle() == "-"
            assert all(t.get_linestyle() == "-." for t in tests)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["none", "l2", "dropout", "train (smoothed)", "test", "test, EMA weights"]
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert not any(_overlaps(box, ax.get_window_extent()) for ax in fig.axes)
    # Only the kinds of curve drawn are in the legend.
    fig = make_figure([tmp_path / "dropout", synthetic_run(tmp_path / "d2", ema=False)])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["dropout", "d2", "train (smoothed)", "test"]


def test_one_run_s_legends_sit_below_its_panels(tmp_path):
    from distnet.jobs.plot import make_figure

    fig = make_figure([synthetic_run(tmp_path / "run")])
    fig.canvas.draw()
    for ax in fig.axes:
        legend = ax.get_legend()
        assert legend is not None
        assert legend.get_window_extent().y1 <= ax.get_window_extent().y0
    # Test curves are the heavy ones here too.
    loss = fig.axes[0]
    widths = {l.get_label(): l.get_linewidth() for l in loss.lines}
    assert widths["test loss"] > widths["train loss (without reg.) (smoothed)"]


def test_smoothing_is_a_debiased_moving_average():
    from distnet.jobs.plot import smoothed

    # weight 0.5: avg = 0.5, 0.25 -> debiased by 1 - 0.5**i: 1.0, 1/3
    assert smoothed([1.0, 0.0], weight=0.5) == pytest.approx([1.0, 1 / 3])
    assert smoothed([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])


def test_curves_include_validation_and_ema_validation():
    recs = [{"kind": "eval", "step": 10, "val_loss": 0.5, "val_accuracy": 0.8, "ema_val_loss": 0.4,
             "ema_val_accuracy": 0.85, "val_samples": 100, "test_loss": 0.6, "test_accuracy": 0.75},
            {"kind": "eval", "step": 20, "val_loss": 0.3, "val_accuracy": 0.9}]
    c = curves(recs)
    assert c["val_loss"] == ([10, 20], [0.5, 0.3])
    assert c["val_accuracy"] == ([10, 20], [0.8, 0.9])
    assert c["ema_val_loss"] == ([10], [0.4]) and c["ema_val_accuracy"] == ([10], [0.85])
    assert c["test_loss"] == ([10], [0.6])
    assert not any("samples" in name for name in c)


def test_marks_find_the_best_step_and_the_early_stop():
    from distnet.jobs.plot import marks

    recs = [{"kind": "best", "step": 30, "metric": "val_loss", "value": 0.7, "by": "EarlyStopping"},
            {"kind": "best", "step": 30, "metric": "val_accuracy", "value": 0.6, "by": "KeepBest"},
            {"kind": "best", "step": 60, "metric": "val_loss", "value": 0.5, "by": "EarlyStopping"},
            {"kind": "early_stopping", "step": 120, "metric": "val_loss", "best": 0.5, "best_step": 60}]
    m = marks(recs)
    assert m["best"] == {"val_loss": (60, 0.5), "val_accuracy": (30, 0.6)}
    assert m["stop"] == {"step": 120, "metric": "val_loss", "best": 0.5, "best_step": 60}
    # A run without best records (written before they existed): the early stop names its best.
    m = marks([recs[-1]])
    assert m["best"] == {"val_loss": (60, 0.5)}
    assert marks([{"kind": "step", "step": 1, "loss": 1.0}]) == {"best": {}, "stop": None}


def test_one_run_draws_validation_curves_the_best_step_and_the_early_stop(tmp_path):
    from distnet.jobs.plot import make_figure

    run = synthetic_run(tmp_path / "run", val=True, stop_at=120)
    fig = make_figure([run])
    loss, acc, _lr = fig.axes
    labels = {l.get_label(): l for l in loss.lines}
    for name in ("validation loss", "test loss", "validation loss, EMA weights", "test loss, EMA weights"):
        assert name in labels, sorted(labels)
    assert list(labels["validation loss"].get_xdata()) == [30, 60, 90, 120]
    # Each kind its own line style: train solid, validation dashed, test dash-dot.
    assert labels["validation loss"].get_linestyle() == "--" and labels["test loss"].get_linestyle() == "-."
    assert labels["train loss (without reg.) (smoothed)"].get_linestyle() == "-"
    assert {l.get_label() for l in acc.lines} >= {"validation accuracy", "validation accuracy, EMA weights"}
    # The best val_loss: a star on the loss panel at its step and value, named in the legend.
    (star,) = [l for l in loss.lines if l.get_gid() == "best:val_loss"]
    assert star.get_marker() == "*" and list(star.get_xdata()) == [60] and list(star.get_ydata()) == [0.5]
    assert star.get_label() == "best val_loss: 0.5 at step 60"
    assert not any(l.get_gid() == "best:val_loss" for l in acc.lines)
    # The early stop: a vertical line at its step in the loss and accuracy panels.
    for ax in (loss, acc):
        (stop,) = [l for l in ax.lines if l.get_gid() == "early_stop"]
        assert list(stop.get_xdata()) == [120, 120]
        assert "stopped early at step 120" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert loss.get_yscale() == "log"   # the stop line's axes-fraction y does not count as data
    assert "best val_loss: 0.5 at step 60" in [t.get_text() for t in loss.get_legend().get_texts()]


def test_compared_runs_mark_each_run_s_best_and_stop_in_its_colour(tmp_path):
    from matplotlib.colors import to_hex

    from distnet.jobs.plot import make_figure

    runs = [synthetic_run(tmp_path / "stopped", val=True, stop_at=90),
            synthetic_run(tmp_path / "full", val=True, ema=False)]
    fig = make_figure(runs)
    loss, acc, _lr = fig.axes
    stars = {to_hex(l.get_color()): (list(l.get_xdata()), list(l.get_ydata()))
             for l in loss.lines if l.get_marker() == "*"}
    assert stars == {to_hex("C0"): ([60], [0.5]), to_hex("C1"): ([60], [0.5])}
    stops = [l for l in acc.lines if l.get_gid() == "early_stop"]
    assert [(to_hex(l.get_color()), list(l.get_xdata())) for l in stops] == [(to_hex("C0"), [90, 90])]
    for colour in ("C0", "C1"):
        styles = {l.get_linestyle() for l in loss.lines if to_hex(l.get_color()) == to_hex(colour)
                  and l.get_gid() is None}
        assert styles == {"-", "--", "-."}   # train, validation, test
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["stopped", "full", "train (smoothed)", "validation", "test", "validation, EMA weights",
                      "test, EMA weights", "best val_loss", "stopped early"]


def test_the_evaluation_of_restored_weights_is_no_point_of_the_curves():
    from distnet.jobs.plot import curves

    c = curves([{"kind": "eval", "step": 10, "val_loss": 0.5}, {"kind": "eval", "step": 20, "val_loss": 0.9},
                {"kind": "eval", "step": 20, "val_loss": 0.5, "restored_step": 10}])
    assert c["val_loss"] == ([10, 20], [0.5, 0.9])
