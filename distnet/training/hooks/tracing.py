"""The run's timeline (:mod:`distnet.training.trace`) as a hook: it opens the tracer, writes and closes it."""
from __future__ import annotations

from distnet.training.hook import Hook


class Tracing(Hook):
    """Records every rank's spans in ``directory`` (``rank-<r>.json``); the loop's spans go to ``ctx.tracer``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.tracer = None

    def on_fit_begin(self, ctx) -> None:
        from distnet.training.trace import Tracer

        if self.tracer is None:
            self.tracer = Tracer(self.directory, ctx.comm)   # a collective (aligns the clocks)
        ctx.tracer = self.tracer

    def on_step_begin(self, ctx) -> None:
        self.tracer.set_step(ctx.step + 1)

    def on_close(self, ctx, status: str) -> None:
        from distnet.training.trace import OFF

        if self.tracer is not None:
            self.tracer.close()
            self.tracer = None
        ctx.tracer = OFF
