"""Weight histograms in TensorBoard every N steps (``[train] histograms_every``)."""
from __future__ import annotations

from distnet.training.hook import Hook


class Histograms(Hook):
    """At step 0 and every ``every`` steps, the weights' histograms go to the run's log (its TensorBoard files)."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_fit_begin(self, ctx) -> None:
        # The initial weights (step 0, before the first update): a resumed run's come from its first attempt.
        if ctx.step == 0 and ctx.logger is not None:
            ctx.logger.log_histograms(0, {v.name: v.numpy() for v in ctx.all_variables})

    def on_step_end(self, ctx, record: dict) -> None:
        if record["step"] % self.every == 0 and ctx.logger is not None:
            ctx.logger.log_histograms(record["step"], {v.name: v.numpy() for v in ctx.all_variables})
