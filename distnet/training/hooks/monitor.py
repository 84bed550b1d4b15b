"""The best value of one evaluation metric (what early stopping and keep-best decide from)."""
from __future__ import annotations

import math
from typing import Any, Mapping

from distnet.errors import InvalidArgumentError


def _mode(mode: str, monitor: str) -> str:
    """``"min"`` or ``"max"`` for ``mode`` ``"min"``, ``"max"`` or ``"auto"`` (max for accuracies)."""
    if mode == "auto":
        mode = "max" if monitor.endswith(("accuracy", "acc")) else "min"
    if mode not in ("min", "max"):
        raise InvalidArgumentError(f"mode: Expect: 'auto', 'min' or 'max' Actual: {mode!r}")
    return mode


def _needs(monitor: str, given: list[str]) -> str:
    """What the evaluation lacks to give ``monitor``: the cause named, not a guess."""
    needs = []
    if monitor.startswith("ema_") and not any(k.startswith("ema_") for k in given):
        needs.append("an ema_* metric needs an EMA: Trainer(ema=...), [ema] in a job")
    split = monitor[4:] if monitor.startswith("ema_") else monitor
    if split.startswith("val_") and not any(k.startswith("val_") for k in given):
        needs.append("a val_* metric needs validation data: validation_data=..., [data] validation in a job")
    elif split.startswith("test_") and not any(k.startswith("test_") for k in given):
        needs.append("a test_* metric needs eval_data")
    return "; ".join(needs) or "the evaluation's metrics are [ema_]{val,test}_{loss,accuracy or mae}"


class Monitor:
    """Tracks the best value of one evaluation metric."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise InvalidArgumentError(f"monitor: Expect: a metric name such as 'val_loss' Actual: {monitor!r}")
        if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or min_delta < 0:
            raise InvalidArgumentError(f"min_delta: Expect: a number >= 0 Actual: {min_delta!r}")
        self.monitor = monitor
        self.mode = _mode(mode, monitor)
        self.min_delta = float(min_delta)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_step: int | None = None

    def log_best(self, ctx, **fields: Any) -> None:
        """A ``best`` record in ``metrics.jsonl`` (plots and TensorBoard mark the best step from it)."""
        log = getattr(ctx, "logger", None)
        if log is not None:
            log.log("best", step=self.best_step, metric=self.monitor, value=self.best,
                    by=type(self).__name__, **fields)

    def improved(self, result: Mapping[str, Any]) -> bool:
        if self.monitor not in result:
            names = sorted(k for k in result if k not in ("step", "epoch"))
            raise InvalidArgumentError(f"{type(self).__name__}: Expect: metric {self.monitor!r} in the evaluation "
                                       f"Actual: {names} ({_needs(self.monitor, names)})")
        value = float(result[self.monitor])
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if better:
            self.best, self.best_step = value, int(result["step"])
        return better
