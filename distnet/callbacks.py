"""Callbacks that watch evaluations: early stopping and keeping the best checkpoint (Keras's names).

A callback given to :class:`~distnet.trainer.Trainer` (``callbacks=[...]``)
is called as ``callback(trainer, step_record)`` after every step; one with an
``on_evaluate(trainer, result)`` method also hears each evaluation (keys
``val_loss``, ``val_accuracy``, ``test_loss``, ``ema_val_accuracy``, ... —
the names of ``metrics.jsonl``).  Setting ``trainer.stop_training = True``
ends the run after the current step, as in Keras.  The evaluations are
global (summed over every rank), so a callback that decides from them
decides the same on every rank, and every rank stops at the same step.

Each improvement is logged as a ``best`` record (``step``, ``metric``,
``value``, ``by``: the callback's class), an early stop as an
``early_stopping`` record: ``distnet plot`` and TensorBoard mark them.

Choose on the validation split (``[data] validation``), never on the test
set: the test set then still measures the chosen model honestly.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from distnet.errors import InvalidArgumentError


def _better(mode: str, monitor: str):
    """``(is_better(new, best), start)`` for ``mode`` ``"min"``, ``"max"`` or ``"auto"``."""
    if mode == "auto":
        mode = "max" if monitor.endswith(("accuracy", "acc")) else "min"
    if mode not in ("min", "max"):
        raise InvalidArgumentError(f"mode: Expect: 'auto', 'min' or 'max' Actual: {mode!r}")
    return mode


class _Monitor:
    """Tracks the best value of one evaluation metric."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise InvalidArgumentError(f"monitor: Expect: a metric name such as 'val_loss' Actual: {monitor!r}")
        if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or min_delta < 0:
            raise InvalidArgumentError(f"min_delta: Expect: a number >= 0 Actual: {min_delta!r}")
        self.monitor = monitor
        self.mode = _better(mode, monitor)
        self.min_delta = float(min_delta)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_step: int | None = None

    def improved(self, result: Mapping[str, Any]) -> bool:
        if self.monitor not in result:
            names = sorted(k for k in result if k not in ("step", "epoch"))
            raise InvalidArgumentError(f"{type(self).__name__}: Expect: metric {self.monitor!r} in the evaluation "
                                       f"Actual: {names} (a val_* metric needs [data] validation)")
        value = float(result[self.monitor])
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if better:
            self.best, self.best_step = value, int(result["step"])
        return better

    def log_best(self, trainer, **fields: Any) -> None:
        """A ``best`` record in ``metrics.jsonl`` (plots and TensorBoard mark the best step from it)."""
        log = getattr(trainer, "logger", None)
        if log is not None:
            log.log("best", step=self.best_step, metric=self.monitor, value=self.best,
                    by=type(self).__name__, **fields)


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved for ``patience`` evaluations.

    Args:
        monitor: an evaluation metric, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        patience: evaluations without improvement before stopping.
        min_delta: a smaller change does not count as an improvement.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracies).
        restore_best_weights: put back the weights of the best evaluation when stopping.
    Attributes:
        stopped_step: the step the run stopped at, or None.
    Example:
        >>> Trainer(..., validation_data=val, eval_every=100,
        ...         callbacks=[EarlyStopping("val_loss", patience=3)])     # doctest: +SKIP
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0, mode: str = "auto",
                 restore_best_weights: bool = False) -> None:
        super().__init__(monitor, mode, min_delta)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise InvalidArgumentError(f"patience: Expect: an integer >= 0 Actual: {patience!r}")
        self.patience = patience
        self.restore_best_weights = bool(restore_best_weights)
        self.wait = 0
        self.stopped_step: int | None = None
        self._best_weights: dict | None = None

    def __call__(self, trainer, record: dict) -> None:
        pass

    def on_evaluate(self, trainer, result: Mapping[str, Any]) -> None:
        if self.improved(result):
            self.log_best(trainer)
            self.wait = 0
            if self.restore_best_weights:
                self._best_weights = {v.name: np.array(v.numpy(), copy=True) for v in trainer.all_variables}
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.stop_training = True
            self.stopped_step = int(result["step"])
            log = getattr(trainer, "logger", None)
            if log is not None:
                log.log("early_stopping", step=self.stopped_step, metric=self.monitor, best=self.best,
                        best_step=self.best_step)
                log.message(f"distnet: stopping early at step {self.stopped_step}: {self.monitor} has not "
                            f"improved for {self.wait} evaluation(s) (best {self.best:.4f} at step "
                            f"{self.best_step})")
            if self.restore_best_weights and self._best_weights is not None:
                with trainer.strategy.writing_params():   # shared weights: every rank writes the same
                    for v in trainer.all_variables:
                        v.assign(self._best_weights[v.name])


class KeepBest(_Monitor):
    """Keep the checkpoint of the best evaluation of ``monitor`` in ``directory``, apart from the newest ones.

    A collective when it saves (every rank decides the same: the metrics are global).

    Args:
        directory: where the best checkpoint goes (one file, replaced when beaten).
        monitor, mode, min_delta: as for :class:`EarlyStopping`.
    """

    def __init__(self, directory: str, monitor: str = "val_loss", mode: str = "auto", min_delta: float = 0.0) -> None:
        super().__init__(monitor, mode, min_delta)
        self.directory = directory
        self._manager = None
        self.path: str | None = None

    def __call__(self, trainer, record: dict) -> None:
        pass

    def on_evaluate(self, trainer, result: Mapping[str, Any]) -> None:
        if not self.improved(result):
            return
        if self._manager is None:
            from distnet.checkpoint import CheckpointManager

            self._manager = CheckpointManager(self.directory, max_to_keep=1, is_writer=trainer.comm.rank == 0)
        state = trainer.state()   # a collective
        if trainer.comm.rank == 0:
            self.path = self._manager.save(state)
        trainer.comm.barrier()
        self.log_best(trainer, checkpoint=self.path)
