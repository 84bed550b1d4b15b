"""Early stopping (Keras's name): end the run when a metric stops improving."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from distnet.errors import InvalidArgumentError
from distnet.training.hook import Hook
from distnet.training.hooks.monitor import Monitor


class EarlyStopping(Monitor, Hook):
    """Stop when ``monitor`` has not improved for ``patience`` evaluations.

    The evaluations are global (summed over every rank), so every rank decides
    the same and stops at the same step.  Each improvement is logged as a
    ``best`` record, the stop as an ``early_stopping`` record (``distnet plot``
    and TensorBoard mark them).  Choose on the validation split
    (``[data] validation``), never on the test set.

    Args:
        monitor: an evaluation metric, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        patience: evaluations without improvement before stopping.
        min_delta: a smaller change does not count as an improvement.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracies).
        restore_best_weights: put back the weights of the best evaluation when stopping (the
            trained weights and, with an EMA, its shadows); the run then evaluates them again,
            and its summary, ``end`` record and last checkpoint give their figures.
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
        self._best_ema: dict | None = None

    def on_evaluate(self, ctx, result: Mapping[str, Any]) -> None:
        if result.get("restored_step") is not None:   # the restored weights evaluated again: no new evidence
            return
        if self.improved(result):
            self.log_best(ctx)
            self.wait = 0
            if self.restore_best_weights:
                self._best_weights = {v.name: np.array(v.numpy(), copy=True) for v in ctx.all_variables}
                ema = getattr(ctx, "ema", None)
                self._best_ema = ema.state_dict() if ema is not None else None   # this rank's shadows
            return
        self.wait += 1
        if self.wait >= self.patience:
            ctx.stop_training = True
            self.stopped_step = int(result["step"])
            restored = self.restore_best_weights and self._best_weights is not None
            reason = (f"stopped early at step {self.stopped_step} (best at step {self.best_step}: "
                      f"{self.monitor} {self.best:.4f})"
                      + (f"; the weights of step {self.best_step} restored" if restored else ""))
            ctx.end_reason = reason
            log = getattr(ctx, "logger", None)
            if log is not None:
                log.log("early_stopping", step=self.stopped_step, metric=self.monitor, best=self.best,
                        best_step=self.best_step, restored=restored)
                log.message(f"distnet: stopping early at step {self.stopped_step}: {self.monitor} has not "
                            f"improved for {self.wait} evaluation(s) (best {self.best:.4f} at step "
                            f"{self.best_step})")
            if restored:
                # The trained weights and their moving averages as they were at the best
                # evaluation; the hooks after this one see them (the evaluation at the end
                # measures them again, the last checkpoint stores them).
                with ctx.strategy.writing_params():   # shared weights: every rank writes the same
                    for v in ctx.all_variables:
                        v.assign(self._best_weights[v.name])
                    if self._best_ema is not None:
                        ctx.ema.load_state_dict(self._best_ema)
                ctx.restored_step = self.best_step
