"""Evaluation every N steps and at the end, on the validation and test splits, with trained and EMA weights."""
from __future__ import annotations

from distnet.training.hook import Hook


class PeriodicEvaluation(Hook):
    """Evaluates ``ctx.validation_data`` and ``ctx.eval_data`` (those given) every ``every`` steps and once
    at the end (unless the last step was just evaluated); a collective.

    The result (``val_loss``, ``test_accuracy``, ``ema_val_loss``, ... and ``step``) goes to
    every hook's ``on_evaluate`` and to the history.

    Args:
        every: steps between evaluations (None: only at the end).
    """

    def __init__(self, every: int | None = None) -> None:
        self.every = every
        self.last_step: int | None = None
        self._restored: int | None = None

    @staticmethod
    def _splits(ctx) -> list:
        return [(split, data) for split, data in (("val", ctx.validation_data), ("test", ctx.eval_data))
                if data is not None]

    def evaluate(self, ctx) -> dict:
        """Evaluate now, tell every hook; returns the result (with ``restored_step`` when a hook
        put earlier weights back: the figures are of that step's weights)."""
        self.last_step, self._restored = ctx.step, ctx.restored_step
        result = {"step": ctx.step}
        if ctx.restored_step is not None:
            result["restored_step"] = ctx.restored_step
        splits = self._splits(ctx)
        for split, data in splits:
            result.update({f"{split}_{k}": v for k, v in ctx.evaluate(data).items()})
        if ctx.ema is not None:
            with ctx.strategy.ema_weights(ctx.ema):   # one swap (ZeRO-1: one gather) for every split
                for split, data in splits:
                    result.update({f"ema_{split}_{k}": v for k, v in ctx.evaluate(data).items()})
        ctx.evaluated(result)
        return result

    def on_step_end(self, ctx, record: dict) -> None:
        if self.every and self._splits(ctx) and ctx.step % self.every == 0:
            with ctx.tracer.span("evaluate"):
                self.evaluate(ctx)

    def on_fit_end(self, ctx) -> None:
        # Once more at the end unless these weights were just evaluated (restored ones are new).
        if self._splits(ctx) and (self.last_step, self._restored) != (ctx.step, ctx.restored_step):
            self.evaluate(ctx)
