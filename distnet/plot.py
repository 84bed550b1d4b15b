"""Plot a run's ``metrics.jsonl``: loss, accuracy and learning-rate curves.

Uses matplotlib's object API with the Agg canvas (no display, no global
backend switch), so it works on a headless machine and inside tests.
Several runs can be drawn on the same axes to compare them (e.g. the
no-regularization / L2 / dropout variants of ``examples/jobs/seed003_*.toml``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

from distnet.errors import DataError, InvalidArgumentError
from distnet.metrics import read_metrics

__all__ = ["plot_run", "plot_runs", "curves", "smoothed"]


def curves(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """Turn metrics records into ``{name: (steps, values)}`` curves.

    A step logged twice (a run resumed from an earlier checkpoint) keeps
    its latest value.  Curves: ``loss`` (total), ``base_loss`` (total minus
    regularization), ``reg_loss``, ``lr``,
    ``train_accuracy`` (when steps carry ``accuracy``), ``test_loss``,
    ``test_accuracy``, ``ema_test_loss``, ``ema_test_accuracy``.
    """
    fields = {"step": {"loss": "loss", "reg_loss": "reg_loss", "lr": "lr",
                       "accuracy": "train_accuracy"},
              "eval": {"test_loss": "test_loss", "test_accuracy": "test_accuracy",
                       "ema_test_loss": "ema_test_loss", "ema_test_accuracy": "ema_test_accuracy"}}
    by_name: dict[str, dict[int, float]] = {}
    for rec in records:
        names = fields.get(rec.get("kind"))
        if names is None or "step" not in rec:
            continue
        for key, name in names.items():
            value = rec.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                by_name.setdefault(name, {})[int(rec["step"])] = float(value)
    out = {name: (sorted(points), [points[s] for s in sorted(points)])
           for name, points in by_name.items()}
    if "loss" in out:
        # The data term alone (what the test loss measures): total minus regularization.
        reg = by_name.get("reg_loss", {})
        steps, values = out["loss"]
        out["base_loss"] = (steps, [v - reg.get(s, 0.0) for s, v in zip(steps, values)])
    return out


def plot_runs(run_dirs: Sequence[str | os.PathLike], out_png: str | os.PathLike,
              labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Draw the curves of one or more runs into one PNG.

    Args:
        run_dirs: run directories (each holding ``metrics.jsonl``) or metrics files.
        out_png: the image to write.
        labels: one legend label per run (default: the directories' names).
        title: figure title (default: the run's name, or "N runs").

    Returns:
        The path written.

    Example:
        >>> plot_runs(["runs/baseline", "runs/l2", "runs/dropout"], "seed003.png")  # doctest: +SKIP
    """
    if not run_dirs:
        raise InvalidArgumentError("plot_runs needs at least one run directory")
    if labels is not None and len(labels) != len(run_dirs):
        raise InvalidArgumentError(f"expected one label per run ({len(run_dirs)}), got {len(labels)}")
    names = list(labels) if labels is not None else [
        (Path(d).name if Path(d).is_dir() else Path(d).parent.name) or str(d) for d in run_dirs]
    runs = []
    for d in run_dirs:
        c = curves(read_metrics(d))
        if "loss" not in c and "test_loss" not in c:
            raise DataError(f"{d}: the metrics hold no step or eval records to plot")
        runs.append(c)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # a dependency, but an environment may lack it
        raise InvalidArgumentError("plotting needs matplotlib: pip install matplotlib") from None

    fig = Figure(figsize=(15, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    colors = [f"C{i % 10}" for i in range(len(runs))]
    single = len(runs) == 1
    for c, name, color in zip(runs, names, colors):
        tag = "" if single else f"{name}: "
        # Loss: train data term (solid), total and regularization (single run, when there is
        # regularization), test (dashed, markers), EMA (dash-dot).  Test losses have no
        # regularization term, so the train curve to compare them with is the data term.
        has_reg = any(v != 0 for v in c.get("reg_loss", ((), ()))[1])
        _line(ax_loss, c, "base_loss", f"{tag}train loss" + (" (without reg.)" if has_reg else ""),
              color, "-", alpha=0.8, smooth=True)
        if single and has_reg:
            _line(ax_loss, c, "loss", "train total loss", "C4", "--", smooth=True)
            _line(ax_loss, c, "reg_loss", "regularization loss", "C3", ":")
        _line(ax_loss, c, "test_loss", f"{tag}test loss", color if not single else "C1", "--", marker="o")
        _line(ax_loss, c, "ema_test_loss", f"{tag}EMA test loss", color if not single else "C2", "-.",
              marker="s")
        _line(ax_acc, c, "train_accuracy", f"{tag}train accuracy", color, "-", alpha=0.5, smooth=True)
        _line(ax_acc, c, "test_accuracy", f"{tag}test accuracy", color if not single else "C1", "--",
              marker="o")
        _line(ax_acc, c, "ema_test_accuracy", f"{tag}EMA test accuracy", color if not single else "C2",
              "-.", marker="s")
        _line(ax_lr, c, "lr", f"{tag}learning rate" if not single else "learning rate", color, "-")
    for ax, ylabel in ((ax_loss, "loss"), (ax_acc, "accuracy"), (ax_lr, "learning rate")):
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, f"no {ylabel} recorded", ha="center", va="center",
                    transform=ax.transAxes, color="0.5")
    if _positive(ax_loss):
        ax_loss.set_yscale("log")
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    ax_lr.set_title("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    fig.suptitle(title or (names[0] if single else f"{len(runs)} runs"))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def plot_run(run_dir: str | os.PathLike, out_png: str | os.PathLike | None = None) -> Path:
    """Plot one run's loss, accuracy (train/test, EMA) and learning-rate curves.

    Args:
        run_dir: the run directory holding ``metrics.jsonl``.
        out_png: the image to write (default ``RUN_DIR/metrics.png``).

    Returns:
        The path written.

    Example:
        >>> plot_run("runs/default")  # doctest: +SKIP
        PosixPath('runs/default/metrics.png')
    """
    if out_png is None:
        base = Path(run_dir)
        out_png = (base if base.is_dir() else base.parent) / "metrics.png"
    return plot_runs([run_dir], out_png)


def smoothed(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out


def _line(ax, c: dict, name: str, label: str, color: str, style: str, marker: str | None = None,
          alpha: float = 1.0, smooth: bool = False) -> None:
    if name not in c:
        return
    steps, values = c[name]
    if smooth and len(steps) > 50:
        # Per-step values are noisy: the raw curve faint, a smoothed one on top.
        ax.plot(steps, values, style, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(steps, smoothed(values), style, color=color, label=f"{label} (smoothed)")
        return
    ax.plot(steps, values, style, color=color, label=label, alpha=alpha,
            marker=marker if len(steps) <= 50 else None, markersize=4)


def _positive(ax) -> bool:
    values = [y for line in ax.lines for y in line.get_ydata()]
    return bool(values) and all(math.isfinite(v) and v > 0 for v in values)
