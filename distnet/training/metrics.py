"""Watching a run: ``metrics.jsonl``, a progress display and a closing summary.

Only rank 0 logs (``is_main=True``); on the other ranks every method does
nothing, so their output never interleaves with rank 0's.

``metrics.jsonl`` in the run directory holds one JSON object per line,
written and flushed as it happens (a killed run keeps what it logged):

* ``{"kind": "start", "time", "total_steps", ...}``
* ``{"kind": "step", "step", "epoch", "loss", "reg_loss", "lr", "samples_per_sec", "time", ...}``
* ``{"kind": "eval", "step", "epoch", "test_loss", "test_accuracy",
  "ema_test_loss", "ema_test_accuracy", "time", ...}`` (the EMA keys when an EMA is kept)
* ``{"kind": "end", "time", "step", "status", ...}``

``time`` is seconds since the Unix epoch.  Extra keyword arguments are
stored as given (e.g. ``accuracy`` for the training batch's accuracy).

On a terminal the progress is a tqdm bar (step, epoch, samples/s, loss,
lr, ETA); otherwise a plain line every ``print_every`` steps.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, Mapping

from distnet.errors import DataError, InvalidArgumentError
from distnet.training.tensorboard import RECORD_KINDS

__all__ = ["MetricsLogger", "read_metrics", "last_step", "METRICS_FILE", "metric_name"]

METRICS_FILE = "metrics.jsonl"
# The records of training progress, at a step: a resume from an earlier step logs them again.
_SUPERSEDED = frozenset({"step", "eval", "best", "early_stopping"})
# The trainer's records say test_ema_*; metrics.jsonl (and so plots,
# TensorBoard and inspect) say ema_test_*, one name per quantity.
_RENAMED = {"test_ema_loss": "ema_test_loss", "test_ema_accuracy": "ema_test_accuracy",
            "test_ema_samples": "ema_test_samples"}


def metric_name(key: str) -> str:
    """The name a metric has in ``metrics.jsonl`` (``test_ema_accuracy`` -> ``ema_test_accuracy``).

    Example:
        >>> metric_name("test_ema_loss"), metric_name("test_loss")
        ('ema_test_loss', 'test_loss')
    """
    return _RENAMED.get(key, key)


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python numbers, NaN/inf to strings JSON can hold."""
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": strict JSON has no NaN
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class MetricsLogger:
    """Writes ``metrics.jsonl`` and shows progress, on the main rank only.

    Args:
        run_dir: directory of the run (created if needed); ``None`` logs
            to the display only.
        is_main: ``True`` on rank 0; on other ranks the logger does nothing.
        stream: where progress goes (default ``sys.stdout``).
        progress: ``"auto"`` (a bar on a terminal, plain lines otherwise),
            ``"bar"``, ``"plain"`` or ``"none"``.
        print_every: plain mode prints a line every this many steps.
        checkpoint_dir: the run's checkpoint directory: the summary says how
            many files it holds and their size; ``""`` when checkpoints are
            off (the summary says so); ``None``: not reported.

    Example:
        >>> log = MetricsLogger("runs/demo", is_main=True, progress="none")
        >>> log.start(total_steps=2)
        >>> log.log_step(step=1, epoch=0, loss=2.3, reg_loss=0.0, lr=1e-3, samples_per_sec=900.0)
        >>> log.log_eval(step=1, epoch=0, test_loss=2.2, test_accuracy=0.2)
        >>> log.close()
    """

    def __init__(self, run_dir: str | os.PathLike | None, is_main: bool = True, *,
                 stream: IO[str] | None = None, progress: str = "auto", print_every: int = 100,
                 checkpoint_dir: str | os.PathLike | None = None, tensorboard: bool | None = None):
        if progress not in ("auto", "bar", "plain", "none"):
            raise InvalidArgumentError(f"progress: Expect: 'auto', 'bar', 'plain' or 'none' Actual: {progress!r}")
        if print_every <= 0:
            raise InvalidArgumentError(f"print_every: Expect: > 0 Actual: {print_every}")
        self.is_main = bool(is_main)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.path = self.run_dir / METRICS_FILE if self.run_dir is not None else None
        self.stream = stream
        self.print_every = int(print_every)
        self._mode = progress
        self._file: IO[str] | None = None
        self._bar = None
        self._total: int | None = None
        self._t0: float | None = None
        self._last_step: dict | None = None
        self._first_step: int | None = None
        self._evals: list[dict] = []
        self._best: dict[str, dict] = {}   # per monitored metric: its last "best" record's value and step
        self._early_stop: dict | None = None
        self._rates: list[float] = []
        self._closed = False
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        # TensorBoard event files beside metrics.jsonl (distnet/training/tensorboard.py): None writes them
        # when tensorboardX is installed; opened on the first record, on the main rank only.
        if tensorboard is None:
            import importlib.util

            tensorboard = importlib.util.find_spec("tensorboardX") is not None
        self.tensorboard = bool(tensorboard) and self.is_main and self.run_dir is not None
        self._tb = None
        self._resuming = False
        self._job_text: str | None = None

    # -- set-up ---------------------------------------------------------------
    def _out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stdout

    def _open(self) -> None:
        if self._file is None and self.path is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # Line-buffered append: a resumed run continues the same file.
            self._file = open(self.path, "a", encoding="utf-8", buffering=1)

    def _write(self, record: dict) -> None:
        self._open()
        if self._file is not None:
            self._file.write(json.dumps(_clean(record), separators=(",", ":")) + "\n")
            self._file.flush()
        if self.tensorboard and not self._closed and record.get("kind") in RECORD_KINDS and "step" in record:
            self._tensorboard(record["step"]).add_record(record)

    def _tensorboard(self, step: int):
        """The event file's writer, opened at the first event (``step``: that event's step)."""
        if self._tb is None:
            from distnet.training.tensorboard import TensorBoardWriter

            # A resumed run replaces what the earlier one wrote after its checkpoint.
            self._tb = TensorBoardWriter(self.run_dir, purge_step=int(step) if self._resuming else None)
            if self._job_text is not None:
                self._tb.add_code("job/config", self._job_text)
        return self._tb

    def describe_job(self, toml_text: str) -> None:
        """Show the job file in TensorBoard's text tab (main rank, with TensorBoard on)."""
        self._job_text = toml_text
        if self._tb is not None:
            self._tb.add_code("job/config", toml_text)

    def log_histograms(self, step: int, arrays: Mapping[str, Any], prefix: str = "weights") -> None:
        """Histograms of ``arrays`` (e.g. the weights) at ``step`` in TensorBoard (main rank, with
        TensorBoard on); may be the first event, e.g. the initial weights at step 0."""
        if self.tensorboard and not self._closed:
            self._tensorboard(step).add_histograms(arrays, step, prefix=prefix)

    def _use_bar(self) -> bool:
        if self._mode == "bar":
            return True
        if self._mode != "auto":
            return False
        isatty = getattr(self._out(), "isatty", None)
        return bool(isatty and isatty())

    def start(self, total_steps: int | None = None, start_step: int | None = None, **info: Any) -> None:
        """Begin a run (or its resumption at ``start_step``) of ``total_steps`` steps in all.

        Extra keyword arguments (``world_size``, ``global_batch_size``,
        ``job``, ...) go into the ``start`` record.
        """
        if not self.is_main:
            return
        self._total = total_steps
        self._t0 = time.time()
        self._resuming = bool(info.get("resume")) or start_step is not None
        record = {"kind": "start", "time": self._t0, "total_steps": total_steps, **info}
        if start_step is not None:  # else the first logged step tells
            record["start_step"] = int(start_step)
        self._write(record)

    def _open_bar(self, initial: int) -> None:
        """The tqdm bar, opened at the first step (a resumed run starts part-way)."""
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional: fall back to plain lines
            self._mode = "plain"
            return
        try:  # a pseudo-terminal may report a 0 x 0 size: tqdm would then draw nothing
            size = os.get_terminal_size(self._out().fileno())
        except (AttributeError, OSError, ValueError):
            size = os.terminal_size((0, 0))
        sizing = {"dynamic_ncols": True} if min(size) > 0 else {"ncols": 120, "nrows": 40}
        self._bar = tqdm(total=self._total, initial=initial, file=self._out(), unit="step",
                         smoothing=0.1, **sizing)

    # -- records ----------------------------------------------------------------
    def log_step(self, record: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        """Record one training step, given as a dict or as keywords.

        Keys: ``step`` (the global step after this update: 1 after the first),
        ``epoch`` (0-based), ``loss`` (global total loss: base +
        regularization), ``reg_loss`` (its regularization part), ``lr`` (the
        rate the step used), ``samples_per_sec`` (global throughput); any other
        key (``accuracy``, ``finite``, ...) is stored as given.

        Example:
            >>> log.log_step(step=1, epoch=0, loss=2.3, reg_loss=0.0, lr=1e-3, samples_per_sec=900.0)
        """
        if not self.is_main:
            return
        r = {**(record or {}), **fields}
        missing = [k for k in ("step", "loss") if k not in r]
        if missing:
            raise InvalidArgumentError(f"log_step: record: Expect: at least the keys step and loss "
                                       f"Actual: keys {sorted(r)} (missing {missing})")
        if self._t0 is None:
            self.start()
        rec = {"kind": "step", "step": int(r.pop("step")), "epoch": r.pop("epoch", 0),
               "loss": _float(r.pop("loss")), "reg_loss": _float(r.pop("reg_loss", 0.0)),
               "lr": _float(r.pop("lr", float("nan"))),
               "samples_per_sec": _float(r.pop("samples_per_sec", float("nan"))), "time": time.time()}
        rec.update(r)
        self._write(rec)
        self._last_step = rec
        if self._first_step is None:
            self._first_step = rec["step"]
        rate = rec["samples_per_sec"]
        if math.isfinite(rate) and rate > 0:
            self._rates.append(rate)
        step = rec["step"]
        if self._mode in ("bar", "auto") and self._bar is None and self._use_bar() and self._total:
            self._open_bar(initial=max(step - 1, 0))
        if self._bar is not None:
            self._bar.set_postfix_str(
                f"epoch {_fmt_epoch(rec['epoch'])} | {rate:.0f} samples/s | "
                f"loss {rec['loss']:.4f} | lr {rec['lr']:.3g}", refresh=False)
            self._bar.update(step - self._bar.n)  # tqdm's rate and ETA follow the steps
        elif self._mode != "none" and (step % self.print_every == 0 or step == self._total):
            self._print(self._step_line(rec))

    def log_eval(self, record: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        """Record an evaluation on the test split, with trained and (if kept) EMA weights.

        Keys: ``step``, ``epoch``, ``test_loss``, ``test_accuracy`` (``test_mae`` for a regression) and, with
        an EMA, ``ema_test_loss``, ``ema_test_accuracy`` (the spellings
        ``test_ema_loss`` / ``test_ema_accuracy`` are accepted too); others
        are stored as given.

        Example:
            >>> log.log_eval(step=100, epoch=0, test_loss=0.52, test_accuracy=0.81)
        """
        if not self.is_main:
            return
        r = {**(record or {}), **fields}
        for old, new in _RENAMED.items():
            if old in r:
                r.setdefault(new, r.pop(old))
        split = "test" if "test_loss" in r else "val"
        # The split's metric: accuracy (classes) or mae (a regression), as the evaluation gives it.
        metric = "mae" if f"{split}_mae" in r and f"{split}_accuracy" not in r else "accuracy"
        missing = [k for k in ("step", f"{split}_loss", f"{split}_{metric}") if k not in r]
        if missing:
            raise InvalidArgumentError(f"log_eval: Expect: the keys {missing} too Actual: keys {sorted(r)}")
        if self._t0 is None:
            self.start()
        rec: dict[str, Any] = {"kind": "eval", "step": int(r.pop("step")), "epoch": r.pop("epoch", None)}
        if rec["epoch"] is None:
            rec["epoch"] = self._last_step["epoch"] if self._last_step else 0
        for key in ("test_loss", f"test_{metric}", "ema_test_loss", f"ema_test_{metric}",
                    "val_loss", f"val_{metric}", "ema_val_loss", f"ema_val_{metric}"):
            if r.get(key) is not None:
                rec[key] = _float(r.pop(key))
        rec["time"] = time.time()
        rec.update(r)
        self._write(rec)
        self._evals.append(rec)
        if self._mode != "none":
            parts = []
            for split, label in (("val", "validation"), ("test", "test")):
                if f"{split}_loss" in rec:
                    part = (f"{label} loss {rec[f'{split}_loss']:.4f}, "
                            f"{metric} {rec.get(f'{split}_{metric}', float('nan')):.4f}")
                    if f"ema_{split}_{metric}" in rec:
                        part += (f" (EMA {rec.get(f'ema_{split}_loss', float('nan')):.4f}, "
                                 f"{rec[f'ema_{split}_{metric}']:.4f})")
                    parts.append(part)
            restored = rec.get("restored_step")
            self._print(f"eval  step {rec['step']}"
                        + (f" (the weights of step {restored}, restored)" if restored is not None else "")
                        + ": " + " | ".join(parts))

    def log(self, kind: str, **fields: Any) -> None:
        """Record anything else (``kind`` names it: ``"checkpoint"``, ``"warning"``, ...)."""
        if not self.is_main:
            return
        if kind == "best" and fields.get("metric") and fields.get("step") is not None:
            self._best[str(fields["metric"])] = {"value": fields.get("value"), "step": fields["step"]}
        elif kind == "early_stopping":
            self._early_stop = {k: fields.get(k) for k in ("step", "best_step", "metric", "restored")}
        self._write({"kind": kind, "time": time.time(), **fields})

    def drop_after(self, step: int) -> int:
        """Remove from ``metrics.jsonl`` what an earlier attempt logged after ``step`` (a resume
        from the checkpoint of ``step`` trains those steps again): its ``step``, ``eval``,
        ``best`` and ``early_stopping`` records, and a last line cut short by a kill.  The
        run's other records (``start``, ``end``, ``restart``, ...) stay.  The file is rewritten
        beside itself and renamed over it: a kill meanwhile leaves the old one or the new one.

        Returns:
            The number of records removed (0 on the other ranks).
        """
        if not self.is_main or self.path is None or not self.path.exists():
            return 0
        from distnet.tempfiles import create_beside, fill_and_replace

        if self._file is not None:
            self._file.close()
            self._file = None   # reopened, for appending, at the next record
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept, dropped = [], 0
        for i, line in enumerate(lines):
            try:
                rec = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                if i == len(lines) - 1:   # cut short by a kill: nothing to keep
                    continue
                raise DataError(f"{self.path}:{i + 1}: not a JSON line") from None
            superseded = (isinstance(rec, dict) and rec.get("kind") in _SUPERSEDED
                          and isinstance(rec.get("step"), int) and rec["step"] > step)
            if superseded:
                dropped += 1
            elif line.strip():
                kept.append(line)
        if dropped or len(kept) != len(lines):
            def fill(tmp: str) -> None:
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write("".join(line + "\n" for line in kept))

            fill_and_replace(create_beside(self.path), self.path, fill)
        return dropped

    def message(self, text: str) -> None:
        """Print a line on the main rank without breaking the progress bar."""
        if self.is_main and self._mode != "none":
            self._print(text)

    # -- end --------------------------------------------------------------------
    def close(self, status: str = "completed", **fields: Any) -> None:
        """End the run: an ``end`` record, the bar closed and the summary table printed.

        Args:
            status: ``"completed"``, ``"interrupted"`` (stopped by a signal), ``"failed"`` or
                ``"nothing_to_train"`` (resumed at or past the last step).
            **fields: stored in the ``end`` record too (``signal="SIGTERM"``); a ``reason``
                (why the run ended before its last step) is also printed, with
                ``progress="none"`` too: it is how the run ended, not progress.
        """
        if not self.is_main or self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        summary = self.summary()
        self._write({"kind": "end", "time": time.time(), "status": status, **summary, **fields})
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if fields.get("reason"):
            self._print(f"distnet: {fields['reason']}")
        if self._mode != "none":
            self._print(self.summary_table(summary, status))

    def __enter__(self) -> "MetricsLogger":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status = ("completed" if exc_type is None else
                  "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed")
        self.close(status)

    def _checkpoint_usage(self) -> dict:
        """What the run leaves on disk in checkpoints (the summary's last rows)."""
        if self.checkpoint_dir is None:
            return {}
        if self.checkpoint_dir == "":
            return {"checkpoints": "off"}
        from distnet.checkpoint import CheckpointManager

        files = CheckpointManager(self.checkpoint_dir, is_writer=False).checkpoints()
        size = 0
        for f in files:
            try:
                size += os.path.getsize(f)
            except OSError:  # removed meanwhile
                pass
        return {"checkpoint_files": len(files), "checkpoint_bytes": size}

    def summary(self) -> dict:
        """The run's figures so far: steps, time, throughput, last loss, best accuracy."""
        out: dict[str, Any] = self._checkpoint_usage()
        last = self._last_step
        if last is not None:
            out.update(step=last["step"], epoch=last["epoch"], final_loss=last["loss"],
                       final_reg_loss=last["reg_loss"], final_lr=last["lr"])
            out["steps_run"] = last["step"] - (self._first_step or 1) + 1
        if self._t0 is not None:
            out["elapsed_sec"] = time.time() - self._t0
        if self._rates:
            rates = sorted(self._rates)
            out["median_samples_per_sec"] = rates[len(rates) // 2]
        if self._evals:
            e = self._evals[-1]
            # The step whose weights the figures below are of: the last evaluation's, or the
            # best step's when early stopping restored its weights.
            out["eval_step"] = e["step"] if e.get("restored_step") is None else e["restored_step"]
            if e.get("restored_step") is not None:
                out["eval_restored"] = True
            for key in ("test_loss", "test_accuracy", "test_mae", "ema_test_loss", "ema_test_accuracy",
                        "ema_test_mae", "val_loss", "val_accuracy", "val_mae"):
                if key in e:
                    out[key] = e[key]
            # "Best" is chosen on the validation split only: the test set measures, it never chooses.
            # The metric early stopping or keep_best watched, else the validation accuracy.
            scored = [r for r in self._evals if "val_accuracy" in r and r.get("restored_step") is None]
            if self._best:
                out["best"] = {metric: dict(b) for metric, b in sorted(self._best.items())}
            elif scored:
                best = max(scored, key=lambda r: r["val_accuracy"])
                out["best_val_accuracy"], out["best_val_step"] = best["val_accuracy"], best["step"]
        if self._early_stop is not None:
            out["stopped_early"] = dict(self._early_stop)
        return out

    @staticmethod
    def summary_table(summary: dict, status: str = "completed") -> str:
        """Format :meth:`summary` as a short two-column table."""
        stop = summary.get("stopped_early")
        shown = status.replace("_", " ")
        if stop and status == "completed":
            shown = f"stopped early at step {stop.get('step')} (best {stop.get('best_step')})"
        rows = [("status", shown)]
        last = summary.get("step")
        if summary.get("eval_restored"):
            rows.append(("evaluated", f"the weights of step {summary.get('eval_step')} (best, restored)"))
        elif summary.get("eval_step") is not None and summary.get("eval_step") != last:
            rows.append(("evaluated at step", str(summary["eval_step"])))
        labels = [("step", "steps", "{}"), ("epoch", "epoch", None),
                  ("elapsed_sec", "wall time", "{:.1f} s"),
                  ("median_samples_per_sec", "samples/s (median)", "{:.0f}"),
                  ("final_loss", "final train loss", "{:.4f}"),
                  ("final_reg_loss", "  of which regularization", "{:.4f}"),
                  ("final_lr", "final learning rate", "{:.3g}"),
                  ("val_loss", "validation loss", "{:.4f}"),
                  ("val_accuracy", "validation accuracy", "{:.4f}"),
                  ("val_mae", "validation mae", "{:.4f}"),
                  ("best_val_accuracy", "best validation accuracy", "{:.4f}"),
                  ("best_val_step", "  at step", "{}"),
                  ("test_loss", "test loss", "{:.4f}"),
                  ("test_accuracy", "test accuracy", "{:.4f}"),
                  ("test_mae", "test mae", "{:.4f}"),
                  ("ema_test_loss", "EMA test loss", "{:.4f}"),
                  ("ema_test_accuracy", "EMA test accuracy", "{:.4f}"),
                  ("ema_test_mae", "EMA test mae", "{:.4f}")]
        for key, label, fmt in labels:
            if key == "best_val_accuracy":   # after the validation figures: the watched metrics' best
                for metric, b in (summary.get("best") or {}).items():
                    value = b.get("value")
                    text = f"{value:.4f}" if isinstance(value, (int, float)) else str(value)
                    rows.append((f"best {metric}", f"{text} at step {b.get('step')}"))
            if summary.get(key) is None:
                continue
            value = summary[key]
            rows.append((label, _fmt_epoch(value) if fmt is None else fmt.format(value)))
        if summary.get("checkpoints") == "off":
            rows.append(("checkpoints", "off"))
        elif summary.get("checkpoint_files") is not None:
            n, size = summary["checkpoint_files"], summary.get("checkpoint_bytes", 0)
            rows.append(("checkpoints kept", f"{n} file{'' if n == 1 else 's'}, {size / 1e6:.1f} MB"))
        width = max(len(r[0]) for r in rows)
        vwidth = max(len(r[1]) for r in rows)
        rule = "-" * (width + vwidth + 3)
        body = "\n".join(f"{k:<{width}}   {v:>{vwidth}}" for k, v in rows)
        return f"{rule}\n{body}\n{rule}"

    # -- display ------------------------------------------------------------------
    def _step_line(self, r: dict) -> str:
        total = f"/{self._total}" if self._total else ""
        eta = ""
        first = self._first_step or r["step"]
        if self._total and self._t0 is not None and r["step"] >= first:
            done = r["step"] - first + 1
            left = (time.time() - self._t0) / done * (self._total - r["step"])
            eta = f" | ETA {_fmt_duration(left)}"
        return (f"step {r['step']}{total} | epoch {_fmt_epoch(r['epoch'])} | "
                f"{r['samples_per_sec']:.0f} samples/s | loss {r['loss']:.4f} "
                f"(reg {r['reg_loss']:.4f}) | lr {r['lr']:.3g}{eta}")

    def _print(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self._out())
        else:
            out = self._out()
            out.write(line + "\n")
            out.flush()


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"Expect: a number Actual: {value!r}") from None


def _fmt_epoch(epoch: Any) -> str:
    if isinstance(epoch, float) and not epoch.is_integer():
        return f"{epoch:.2f}"
    return str(int(epoch)) if isinstance(epoch, (int, float)) else str(epoch)


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Read a ``metrics.jsonl`` (or the run directory holding one).

    A last line cut short by a killed writer is skipped; any other bad line
    raises :class:`~distnet.errors.DataError` naming the file and line.

    Returns:
        The records, in order.
    """
    p = Path(path)
    if p.is_dir():
        p = p / METRICS_FILE
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{p}: no metrics file; give a run directory holding {METRICS_FILE} or that file") from None
    records = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines):
                break  # a line cut short by a killed run
            raise DataError(f"{p}:{i}: not a JSON line ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{p}:{i}: Expect: a JSON object Actual: {type(rec).__name__}")
        for key, value in rec.items():  # the strings _clean wrote for non-finite numbers
            if value in ("nan", "inf", "-inf"):
                rec[key] = float(value)
        records.append(rec)
    return records


def last_step(run_dir: str | os.PathLike) -> int | None:
    """The highest step of the ``step`` records in ``run_dir``'s ``metrics.jsonl``.

    0 when the run logged no step (or has no metrics file); None when the file
    cannot be read or holds a bad line, for callers that must decide without it
    (a restart between attempts, the check of a run directory).
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return 0
    try:
        records = read_metrics(path)
    except (OSError, DataError):
        return None
    steps = [r["step"] for r in records if r.get("kind") == "step" and isinstance(r.get("step"), int)]
    return max(steps, default=0)
