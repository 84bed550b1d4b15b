"""The cross-rank parameter check every N steps (:func:`distnet.distributed.check_parameters_agree`)."""
from __future__ import annotations

from distnet.training.hook import Hook


class ParameterCheck(Hook):
    """Every ``every`` steps, checks that every rank holds the same weights (several ranks only)."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_step_end(self, ctx, record: dict) -> None:
        if self.every and ctx.comm.size > 1 and ctx.step % self.every == 0:
            from distnet.distributed import check_parameters_agree

            check_parameters_agree(ctx.comm, ctx.agreed_variables, step=ctx.step)
