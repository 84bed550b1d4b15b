"""The metrics log (``metrics.jsonl``, TensorBoard's scalars and the progress display) as a hook.

The hook owns its :class:`~distnet.training.metrics.MetricsLogger`: it starts it when
the run begins and closes it — once, with the run's status — when it ends.
"""
from __future__ import annotations

from distnet.training.hook import Hook


class MetricsLog(Hook):
    """Logs every step and evaluation, the resume, the stop and the end.

    Args:
        logger: the :class:`~distnet.training.metrics.MetricsLogger` this hook owns (closed by it).
        **start_info: extra fields of the ``start`` record (``world_size``, ``job``, ...).
    """

    def __init__(self, logger, **start_info) -> None:
        self.logger = logger
        self.start_info = start_info
        self._stop = None

    def on_fit_begin(self, ctx) -> None:
        self._stop = None
        ctx.logger = self.logger
        self.logger.start(total_steps=ctx.total_steps, **self.start_info)

    def on_step_end(self, ctx, record: dict) -> None:
        self.logger.log_step(record)

    def on_evaluate(self, ctx, result: dict) -> None:
        self.logger.log_eval({**result, "epoch": ctx.last_epoch})   # the epoch of the step evaluated

    def on_stop(self, ctx, stop) -> None:
        self.logger.log_step(stop.record)
        self._stop = stop   # the stop's record waits for its checkpoint (saved by a later hook)

    def on_close(self, ctx, status: str) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            self.logger.log("stop", step=stop.step, epoch=stop.epoch, signal=stop.name, checkpoint=stop.checkpoint)
            self.logger.message(f"distnet: stopped by {stop.name} after step {stop.step}"
                                + (f"; checkpoint {stop.checkpoint}" if stop.checkpoint else
                                   " (checkpoints are off)"))
            self.logger.close("interrupted", signal=stop.name)
        else:
            self.logger.close(status, **({"reason": ctx.end_reason} if ctx.end_reason else {}))
        if ctx.logger is self.logger:
            ctx.logger = None
