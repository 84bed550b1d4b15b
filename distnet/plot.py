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

__all__ = ["plot_run", "plot_runs", "make_figure", "curves", "smoothed"]


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
    fig = make_figure(run_dirs, labels, title)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def make_figure(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str] | None = None,
                title: str | None = None):
    """The matplotlib ``Figure`` :func:`plot_runs` draws (Agg canvas, nothing shown).

    One run: loss and accuracy panels with a colour per kind of curve
    (train, test, EMA test) and legends below the panels.  Several runs: a
    colour per run on every curve, the kind of curve in the line style (test
    curves heavy with markers, training curves light), one legend outside
    the panels.  A learning-rate panel only when some run's rate changes; a
    constant rate is a note at the bottom.
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
        from matplotlib.lines import Line2D
    except ImportError:  # a dependency, but an environment may lack it
        raise InvalidArgumentError("plotting needs matplotlib: pip install matplotlib") from None

    single = len(runs) == 1
    # A learning rate that never changes is a number, not a curve: it goes in
    # a note under the title, and the panel is left out.
    constant = {name: _constant(c.get("lr")) for c, name in zip(runs, names)}
    lr_panel = any(v is None and "lr" in c for v, c in zip(constant.values(), runs))
    fig = Figure(figsize=(15 if lr_panel else 11, 4.8 if single else 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3 if lr_panel else 2)
    ax_loss, ax_acc = axes[0], axes[1]
    ax_lr = axes[2] if lr_panel else None
    for i, (c, name) in enumerate(zip(runs, names)):
        if single:
            _single_run(ax_loss, ax_acc, ax_lr, c)
        else:
            _compared_run(ax_loss, ax_acc, ax_lr, c, f"C{i % 10}")
    panels = [(ax_loss, "loss"), (ax_acc, "accuracy")] + ([(ax_lr, "learning rate")] if lr_panel else [])
    for ax, ylabel in panels:
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel)
        ax.grid(True, alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, f"no {ylabel} recorded", ha="center", va="center",
                    transform=ax.transAxes, color="0.5")
        elif single:  # below the panel, never over the curves
            ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
                      frameon=False)
    if _positive(ax_loss):
        from matplotlib.ticker import FuncFormatter

        ax_loss.set_yscale("log")
        plain = FuncFormatter(lambda v, _pos: f"{v:g}")   # 0.4, not 4 x 10^-1
        ax_loss.yaxis.set_major_formatter(plain)
        low, high = ax_loss.get_ylim()
        # Within a decade every minor tick is labelled; over several, 2 and 5 of each.
        wanted = (1, 2, 3, 4, 5, 6, 7, 8, 9) if high / low < 10 else (2, 5)
        ax_loss.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _pos: f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in wanted else ""))
    if ax_lr is not None:
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if not single:
        # One legend for the figure, outside the panels: a colour per run, a
        # line style per kind of curve (the same in every panel).
        handles = [Line2D([], [], color=f"C{i % 10}", linewidth=3, label=name) for i, name in enumerate(names)]
        drawn = {"train": any("base_loss" in c or "train_accuracy" in c for c in runs),
                 "test": any("test_loss" in c or "test_accuracy" in c for c in runs),
                 "ema": any("ema_test_loss" in c or "ema_test_accuracy" in c for c in runs)}
        handles += [Line2D([], [], color="0.35", **_STYLE[k], label=label) for k, label in (
            ("train", "train (smoothed)"), ("test", "test"), ("ema", "test, EMA weights")) if drawn[k]]
        fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)
    fig.suptitle(title or (names[0] if single else f"{len(runs)} runs"))
    notes = _lr_note(constant, single)
    if notes:
        fig.text(0.5, 0.005, notes, ha="center", va="bottom", fontsize="small", color="0.3")
        fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    return fig


# Line styles by kind of curve: in a comparison the colour is the run's, and the
# test curves (what the runs are compared on) are drawn heavier than the
# noisy training curves.
_STYLE = {"train": {"linestyle": "-", "linewidth": 1.0, "alpha": 0.45},
          "test": {"linestyle": "-", "linewidth": 2.4, "marker": "o", "markersize": 5},
          "ema": {"linestyle": "--", "linewidth": 1.8, "marker": "s", "markersize": 4}}


def _single_run(ax_loss, ax_acc, ax_lr, c: dict) -> None:
    """One run: a colour per kind of curve."""
    # Test losses have no regularization term, so the train curve to compare
    # them with is the data term; total and regularization are drawn when there is any.
    has_reg = any(v != 0 for v in c.get("reg_loss", ((), ()))[1])
    _line(ax_loss, c, "base_loss", "train loss" + (" (without reg.)" if has_reg else ""), "C0", "-",
          smooth=True)
    if has_reg:
        _line(ax_loss, c, "loss", "train total loss", "C4", "--", smooth=True)
        _line(ax_loss, c, "reg_loss", "regularization loss", "C3", ":")
    _line(ax_loss, c, "test_loss", "test loss", "C1", "-", marker="o", linewidth=2.2)
    _line(ax_loss, c, "ema_test_loss", "EMA test loss", "C2", "--", marker="s", linewidth=1.8)
    _line(ax_acc, c, "train_accuracy", "train accuracy", "C0", "-", alpha=0.6, smooth=True)
    _line(ax_acc, c, "test_accuracy", "test accuracy", "C1", "-", marker="o", linewidth=2.2)
    _line(ax_acc, c, "ema_test_accuracy", "EMA test accuracy", "C2", "--", marker="s", linewidth=1.8)
    if ax_lr is not None:
        _line(ax_lr, c, "lr", "learning rate", "C0", "-")


def _compared_run(ax_loss, ax_acc, ax_lr, c: dict, color: str) -> None:
    """One of several runs: the run's colour on every curve, the kind in the line style."""
    for ax, train, test, ema in ((ax_loss, "base_loss", "test_loss", "ema_test_loss"),
                                 (ax_acc, "train_accuracy", "test_accuracy", "ema_test_accuracy")):
        if train in c:
            steps, values = c[train]
            ax.plot(steps, smoothed(values) if len(steps) > 50 else values, color=color, **_STYLE["train"])
        for key, kind in ((test, "test"), (ema, "ema")):
            if key in c:
                steps, values = c[key]
                style = dict(_STYLE[kind])
                if len(steps) > 50:
                    style.pop("marker")
                ax.plot(steps, values, color=color, **style)
    if ax_lr is not None and "lr" in c:
        ax_lr.plot(*c["lr"], color=color, linewidth=1.5)


def _constant(curve) -> float | None:
    """The value of a curve that never changes (None: it changes, or there is none)."""
    if not curve or not curve[1]:
        return None
    values = curve[1]
    first = values[0]
    return first if all(v == first for v in values) else None


def _lr_note(constant: dict, single: bool) -> str:
    fixed = {name: v for name, v in constant.items() if v is not None}
    if not fixed:
        return ""
    if single:
        return f"learning rate: constant {_fmt(next(iter(fixed.values())))}"
    values = set(fixed.values())
    if len(values) == 1 and len(fixed) == len(constant):
        return f"learning rate: constant {_fmt(values.pop())} in every run"
    return "constant learning rate: " + ", ".join(f"{name} {_fmt(v)}" for name, v in fixed.items())


def _fmt(value: float) -> str:
    return f"{value:.3g}"


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
          alpha: float = 1.0, smooth: bool = False, linewidth: float = 1.5) -> None:
    if name not in c:
        return
    steps, values = c[name]
    if smooth and len(steps) > 50:
        # Per-step values are noisy: the raw curve faint, a smoothed one on top.
        ax.plot(steps, values, style, color=color, alpha=0.2, linewidth=0.8)
        ax.plot(steps, smoothed(values), style, color=color, label=f"{label} (smoothed)",
                linewidth=linewidth, alpha=alpha)
        return
    ax.plot(steps, values, style, color=color, label=label, alpha=alpha, linewidth=linewidth,
            marker=marker if len(steps) <= 50 else None, markersize=5)


def _positive(ax) -> bool:
    values = [y for line in ax.lines for y in line.get_ydata()]
    return bool(values) and all(math.isfinite(v) and v > 0 for v in values)
