"""The stall watchdog (:class:`distnet.distributed.Watchdog`) as a hook: it runs while the steps do."""
from __future__ import annotations

from distnet.training.hook import Hook


class StallWatchdog(Hook):
    """Aborts the job when a rank stalls for ``stall_timeout`` seconds (several ranks only).

    Started before the first step (its constructor is a collective), stopped when
    the loop is left — normally, at a stop, or by an error — before any
    collective the other ranks may not join.
    """

    def __init__(self, stall_timeout: float) -> None:
        self.stall_timeout = stall_timeout
        self.watchdog = None

    def on_step_begin(self, ctx) -> None:
        if self.watchdog is None:
            if ctx.comm.size == 1:
                return
            from distnet.distributed import Watchdog

            self.watchdog = Watchdog(ctx.comm, self.stall_timeout)
            self.watchdog.start()
        self.watchdog.beat(ctx.step)

    def _stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None

    def on_stop(self, ctx, stop) -> None:
        self._stop()

    def on_fit_end(self, ctx) -> None:
        self._stop()

    def on_close(self, ctx, status: str) -> None:
        self._stop()
