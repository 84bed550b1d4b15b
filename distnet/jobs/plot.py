"""Plot a run's ``metrics.jsonl``: loss, accuracy and learning-rate curves, with
the validation and test evaluations, the best step of a monitored metric and an early stop.

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
from distnet.training.metrics import read_metrics

__all__ = ["plot_run", "plot_runs", "make_figure", "curves", "marks", "smoothed"]


# Evaluation curves by kind: a name for each split, and the keys of its loss and accuracy.
_EVAL_KINDS = ("val", "test", "ema_val", "ema_test")


def curves(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """Turn metrics records into ``{name: (steps, values)}`` curves.

    A step logged twice (a run resumed from an earlier checkpoint) keeps
    its latest value; the evaluation of weights restored by early stopping
    (``restored_step``) is left out: it repeats the points of that step.  Curves: ``loss`` (total), ``base_loss`` (total minus
    regularization), ``reg_loss``, ``lr``,
    ``train_accuracy`` (when steps carry ``accuracy``) and, from eval
    records, ``<split>_loss`` and ``<split>_accuracy`` for the splits
    ``val``, ``test``, ``ema_val`` and ``ema_test`` that were logged.
    """
    eval_fields = {f"{kind}_{m}": f"{kind}_{m}" for kind in _EVAL_KINDS for m in ("loss", "accuracy")}
    fields = {"step": {"loss": "loss", "reg_loss": "reg_loss", "lr": "lr",
                       "accuracy": "train_accuracy"},
              "eval": eval_fields}
    by_name: dict[str, dict[int, float]] = {}
    for rec in records:
        names = fields.get(rec.get("kind"))
        if names is None or "step" not in rec or rec.get("restored_step") is not None:
            continue   # restored weights evaluated again repeat their own step's points
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


def marks(records: list[dict]) -> dict:
    """The best step of each monitored metric and the early stop, from metrics records.

    Returns:
        ``{"best": {metric: (step, value)}, "stop": {"step", "metric", "best", "best_step"} or None}``.
        A metric's best is its last ``best`` record (early stopping and
        ``keep_best`` write one at each improvement; the last is what
        ``keep_best`` holds), else the ``best`` / ``best_step`` of an
        ``early_stopping`` record.
    """
    best: dict[str, tuple[int, float]] = {}
    stop = None
    for rec in records:
        kind = rec.get("kind")
        if kind == "best" and _number(rec.get("value")) and _number(rec.get("step")) and rec.get("metric"):
            best[str(rec["metric"])] = (int(rec["step"]), float(rec["value"]))
        elif kind == "early_stopping" and _number(rec.get("step")):
            stop = {k: rec.get(k) for k in ("step", "metric", "best", "best_step")}
            stop["step"] = int(stop["step"])
    if stop is not None and stop["metric"] and stop["metric"] not in best \
            and _number(stop["best"]) and _number(stop["best_step"]):
        best[str(stop["metric"])] = (int(stop["best_step"]), float(stop["best"]))
    return {"best": best, "stop": stop}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
    (train, validation, test and their EMA-weight variants, as logged) and
    legends below the panels.  Several runs: a colour per run on every
    curve, one legend outside the panels.  Either way the kind of curve is
    in the line style (train solid, validation dashed, test dash-dot, EMA
    weights hollow markers), a star marks each monitored metric's best step
    (``best`` records: early stopping, ``keep_best``) and a vertical dashed
    line an early stop.  A learning-rate panel only when some run's rate
    changes; a constant rate is a note at the bottom.
    """
    if not run_dirs:
        raise InvalidArgumentError("plot_runs needs at least one run directory")
    if labels is not None and len(labels) != len(run_dirs):
        raise InvalidArgumentError(f"expected one label per run ({len(run_dirs)}), got {len(labels)}")
    names = list(labels) if labels is not None else [
        (Path(d).name if Path(d).is_dir() else Path(d).parent.name) or str(d) for d in run_dirs]
    runs, run_marks = [], []
    for d in run_dirs:
        records = read_metrics(d)
        c = curves(records)
        if "loss" not in c and not any(f"{kind}_loss" in c for kind in _EVAL_KINDS):
            raise DataError(f"{d}: the metrics hold no step or eval records to plot")
        runs.append(c)
        run_marks.append(marks(records))
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
    for i, (c, m) in enumerate(zip(runs, run_marks)):
        if single:
            _single_run(ax_loss, ax_acc, ax_lr, c)
        else:
            _compared_run(ax_loss, ax_acc, ax_lr, c, f"C{i % 10}")
        _marks(ax_loss, ax_acc, m, None if single else f"C{i % 10}")
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
        drawn = {"train": any("base_loss" in c or "train_accuracy" in c for c in runs)}
        drawn.update({k: any(f"{k}_loss" in c or f"{k}_accuracy" in c for c in runs) for k in _EVAL_KINDS})
        handles += [Line2D([], [], color="0.35", **_STYLE[k], label=_KIND_LABEL[k]) for k in _STYLE if drawn[k]]
        monitored = sorted({metric for m in run_marks for metric in m["best"]})
        if monitored:
            handles.append(Line2D([], [], color="0.35", **_BEST, label="best " + ", ".join(monitored)))
        if any(m["stop"] for m in run_marks):
            handles.append(Line2D([], [], color="0.35", **_STOP, label="stopped early"))
        fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)
    fig.suptitle(title or (names[0] if single else f"{len(runs)} runs"))
    notes = _lr_note(constant, single)
    if notes:
        fig.text(0.5, 0.005, notes, ha="center", va="bottom", fontsize="small", color="0.3")
        fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    return fig


# Line styles by kind of curve, the same in every plot: train, validation and
# test are told apart by the line style (solid, dashed, dash-dot), EMA weights
# by hollow markers; the colour is the run's (several runs) or the curve's (one run).
_STYLE = {"train": {"linestyle": "-", "linewidth": 1.3},
          "val": {"linestyle": "--", "linewidth": 2.2, "marker": "s", "markersize": 5},
          "test": {"linestyle": "-.", "linewidth": 2.2, "marker": "o", "markersize": 5},
          "ema_val": {"linestyle": "--", "linewidth": 1.5, "marker": "s", "markersize": 5,
                      "markerfacecolor": "white"},
          "ema_test": {"linestyle": "-.", "linewidth": 1.5, "marker": "o", "markersize": 5,
                       "markerfacecolor": "white"}}
_KIND_LABEL = {"train": "train (smoothed)", "val": "validation", "test": "test",
               "ema_val": "validation, EMA weights", "ema_test": "test, EMA weights"}
# One run: a colour per kind of curve.
_COLOUR = {"train": "C0", "val": "C3", "test": "C1", "ema_val": "C6", "ema_test": "C2"}
# The best step of a monitored metric (a star on its curve) and an early stop (a vertical line).
_BEST = {"linestyle": "none", "marker": "*", "markersize": 16, "markeredgecolor": "black",
         "markeredgewidth": 0.8}
_STOP = {"linestyle": (0, (5, 2)), "linewidth": 1.4}


def _single_run(ax_loss, ax_acc, ax_lr, c: dict) -> None:
    """One run: a colour per kind of curve, the kind in the line style too."""
    # Evaluation losses have no regularization term, so the train curve to compare
    # them with is the data term; total and regularization are drawn when there is any.
    has_reg = any(v != 0 for v in c.get("reg_loss", ((), ()))[1])
    _line(ax_loss, c, "base_loss", "train loss" + (" (without reg.)" if has_reg else ""), "C0", "-",
          smooth=True, linewidth=_STYLE["train"]["linewidth"])
    if has_reg:
        _line(ax_loss, c, "loss", "train total loss", "C4", "-", smooth=True, linewidth=1.0)
        _line(ax_loss, c, "reg_loss", "regularization loss", "C7", ":")
    _line(ax_acc, c, "train_accuracy", "train accuracy", "C0", "-", smooth=True,
          linewidth=_STYLE["train"]["linewidth"])
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for kind in _EVAL_KINDS:
            _eval_line(ax, c, f"{kind}_{metric}", _COLOUR[kind], kind,
                       label=f"{_KIND_LABEL[kind].replace(', EMA weights', '')} {metric}"
                       + (", EMA weights" if kind.startswith("ema_") else ""))
    if ax_lr is not None:
        _line(ax_lr, c, "lr", "learning rate", "C0", "-")


def _compared_run(ax_loss, ax_acc, ax_lr, c: dict, color: str) -> None:
    """One of several runs: the run's colour on every curve, the kind in the line style."""
    for ax, metric, train in ((ax_loss, "loss", "base_loss"), (ax_acc, "accuracy", "train_accuracy")):
        if train in c:
            steps, values = c[train]
            ax.plot(steps, smoothed(values) if len(steps) > 50 else values, color=color, **_STYLE["train"])
        for kind in _EVAL_KINDS:
            _eval_line(ax, c, f"{kind}_{metric}", color, kind)
    if ax_lr is not None and "lr" in c:
        ax_lr.plot(*c["lr"], color=color, linewidth=1.5)


def _eval_line(ax, c: dict, name: str, color: str, kind: str, label: str | None = None) -> None:
    if name not in c:
        return
    steps, values = c[name]
    style = dict(_STYLE[kind])
    if len(steps) > 50:   # markers only where they can be told apart
        for key in ("marker", "markersize", "markerfacecolor"):
            style.pop(key, None)
    ax.plot(steps, values, color=color, label=label, **style)


def _marks(ax_loss, ax_acc, m: dict, color: str | None) -> None:
    """A star at each monitored metric's best step, a vertical line at an early stop.

    ``color``: the run's (several runs); None gives each star its curve's colour and
    the stop line grey, with labels for the panels' legends (one run).
    """
    for metric, (step, value) in sorted(m["best"].items()):
        ax = ax_acc if "accuracy" in metric else ax_loss
        kind = metric.rsplit("_", 1)[0]
        face = color or _COLOUR.get(kind, "gold")
        ax.plot([step], [value], color=face, zorder=5, gid=f"best:{metric}",
                label=None if color else f"best {metric}: {value:.4g} at step {step}", **_BEST)
    stop = m["stop"]
    if stop is not None:
        for ax in (ax_loss, ax_acc):
            ax.axvline(stop["step"], color=color or "0.4", gid="early_stop", zorder=1,
                       label=None if color else f"stopped early at step {stop['step']}", **_STOP)


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
    # The early-stop line's y runs over the axes (0 to 1), not over the data.
    values = [y for line in ax.lines if line.get_gid() != "early_stop" for y in line.get_ydata()]
    return bool(values) and all(math.isfinite(v) and v > 0 for v in values)
