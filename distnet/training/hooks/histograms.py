"""Weight histograms in TensorBoard every N steps (``[train] histograms_every``)."""
from __future__ import annotations

from distnet.training.hook import Hook


class Histograms(Hook):
    """Every ``every`` steps, the weights' histograms go to the run's log (its TensorBoard files)."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_step_end(self, ctx, record: dict) -> None:
        if record["step"] % self.every == 0 and ctx.logger is not None:
            ctx.logger.log_histograms(record["step"], {v.name: v.numpy() for v in ctx.all_variables})
