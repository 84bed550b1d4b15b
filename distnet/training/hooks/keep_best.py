"""Keep the checkpoint of the best evaluation (Keras's ``save_best_only``), apart from the newest ones."""
from __future__ import annotations

from typing import Any, Mapping

from distnet.training.hook import Hook
from distnet.training.hooks.monitor import Monitor


class KeepBest(Monitor, Hook):
    """Keep the checkpoint of the best evaluation of ``monitor`` in ``directory``.

    A collective when it saves (every rank decides the same: the metrics are global).

    Args:
        directory: where the best checkpoint goes (one file, replaced when beaten).
        monitor, mode, min_delta: as for :class:`~distnet.training.hooks.early_stopping.EarlyStopping`.
    """

    def __init__(self, directory: str, monitor: str = "val_loss", mode: str = "auto", min_delta: float = 0.0) -> None:
        super().__init__(monitor, mode, min_delta)
        self.directory = directory
        self._manager = None
        self.path: str | None = None

    def on_evaluate(self, ctx, result: Mapping[str, Any]) -> None:
        if result.get("restored_step") is not None or not self.improved(result):   # restored: seen already
            return
        if self._manager is None:
            from distnet.checkpoint import CheckpointManager

            self._manager = CheckpointManager(self.directory, max_to_keep=1, is_writer=ctx.comm.rank == 0)
        state = ctx.state()   # a collective
        if ctx.comm.rank == 0:
            self.path = self._manager.save(state)
        ctx.comm.barrier()
        self.log_best(ctx, checkpoint=self.path)
