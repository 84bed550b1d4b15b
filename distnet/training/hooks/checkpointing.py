"""Checkpoints every N steps, at the end, and at an agreed stop; resuming from the newest one."""
from __future__ import annotations

import warnings

from distnet.training.hook import Hook


class Checkpointing(Hook):
    """Writes the run's state to ``directory`` from rank 0 (a collective: every rank assembles it).

    Args:
        directory: where ``ckpt-<step>.h5`` files go.
        every: steps between checkpoints (None: only at the end and at a stop).
        max_to_keep: finished checkpoints kept.
    Attributes:
        last: the file of the newest checkpoint this hook wrote (rank 0), or None.
    """

    def __init__(self, directory: str, every: int | None = None, max_to_keep: int = 5) -> None:
        self.directory = directory
        self.every = every
        self.max_to_keep = max_to_keep
        self.manager = None
        self.last: str | None = None
        self._saved: tuple | None = None

    def _manager(self, ctx):
        if self.manager is None:
            from distnet.checkpoint import CheckpointManager

            self.manager = CheckpointManager(self.directory, max_to_keep=self.max_to_keep,
                                             is_writer=ctx.comm.rank == 0)
        return self.manager

    def save(self, ctx) -> str | None:
        """Write a checkpoint from rank 0 (after the step's synchronisation); a collective."""
        manager = self._manager(ctx)
        path = None
        state = ctx.state()   # a collective
        if ctx.comm.rank == 0:
            path = manager.save(state)
        ctx.comm.barrier()
        self.last = path
        self._saved = (ctx.step, len(ctx.history))   # what the file holds: this step, these records
        return path

    def _due(self, ctx) -> bool:
        """A periodic checkpoint is due at this step and not written yet."""
        return bool(self.every) and ctx.step % self.every == 0 and (self._saved is None or
                                                                    self._saved[0] != ctx.step)

    def _save_due(self, ctx) -> None:
        with ctx.tracer.span("checkpoint"):
            self.save(ctx)

    def on_fit_begin(self, ctx) -> None:
        manager = self._manager(ctx)
        if ctx.resume:
            resume(ctx, manager)

    def on_evaluate(self, ctx, result: dict) -> None:
        # An evaluation at a step due for a checkpoint: write it now, with the evaluation's
        # numbers, before the hooks after this one act on them (early stopping, keep_best, a
        # user's hook): if one of them fails, the step's checkpoint is on disk all the same.
        if self._due(ctx) and result.get("step") == ctx.step:
            self._save_due(ctx)

    def on_step_end(self, ctx, record: dict) -> None:
        if self._due(ctx):
            self._save_due(ctx)

    def on_stop(self, ctx, stop) -> None:
        with ctx.tracer.span("checkpoint"):
            stop.checkpoint = self.save(ctx)   # every rank is here, at the same step

    def on_fit_end(self, ctx) -> None:
        # Again at a step saved already when the weights or the figures changed since
        # (restore_best_weights, and the evaluation of the restored weights).
        if not self.every or ctx.step % self.every or self._saved != (ctx.step, len(ctx.history)):
            self.save(ctx)


def resume(ctx, manager) -> bool:
    """Continue from ``manager``'s newest good checkpoint (None: checkpoints are off); says whether one was found."""
    from distnet.checkpoint import training_state   # h5py: imported only by runs that use checkpoints

    path, state = training_state.read_latest(ctx.comm, manager, ctx.all_variables)
    if state is None:
        where = manager.directory if manager is not None else "(checkpoints are off)"
        dropped = ctx.logger.drop_after(0) if ctx.logger is not None else 0   # an attempt without checkpoint
        ctx.message(f"distnet: no checkpoint in {where}: starting from step 0"
                    + (f"; {dropped} records an earlier attempt logged removed from the metrics log"
                       if dropped else ""))
        return False
    training_state.restore(state, variables=ctx.all_variables, optimizer=ctx.optimizer, strategy=ctx.strategy,
                           ema=ctx.ema, sampler=ctx.sampler)
    ctx.trainer.resume_conv_plan(state)
    other_data = _other_training_data(ctx, state)
    # What an earlier attempt logged after this checkpoint is trained again: its records go,
    # so that metrics.jsonl holds each step once.
    dropped = ctx.logger.drop_after(state.step) if ctx.logger is not None else 0
    if path is not None:
        # "epoch" as in every record: that of the step; where the data goes on: resumes_at_epoch, position.
        last_epoch = state.epoch - 1 if state.position == 0 and state.epoch > 0 and state.step > 0 else state.epoch
        ctx.log("resume", checkpoint=path, step=state.step, epoch=last_epoch, resumes_at_epoch=state.epoch,
                position=state.position, world_size_then=state.world_size, dropped_records=dropped,
                other_training_data=other_data)
        ctx.message(f"distnet: resuming from {path}: step {state.step}, epoch {state.epoch} "
                    f"(sample {state.position} of it), written by {state.world_size} rank(s)"
                    + (f"; {dropped} records an earlier attempt logged after step {state.step} removed "
                       f"from the metrics log" if dropped else ""))
    return True


def _other_training_data(ctx, state) -> bool:
    """Whether the checkpoint's run trained on other samples than this run's training data; warns
    (rank 0) if so: the same job file can mean other data on another machine (the installed
    dataset or the embedded subset), and the steps from here would silently read it."""
    from distnet.data.identity import DataMismatchWarning, describe, same_data

    then = (state.data or {}).get("train")
    if not then:   # a checkpoint that does not record its data (format 1)
        return False
    now = ctx.trainer.data_identity()["train"]
    if same_data(then, now) is not False:
        return False
    if ctx.comm.rank == 0:
        warnings.warn(f"resuming on other training data than the checkpoint's run trained on: it "
                      f"trained on {describe(then)}; this run's training data is {describe(now)}. Resume with "
                      f"the run's own data to continue it as it was, or start a new run directory",
                      DataMismatchWarning, stacklevel=2)
    return True
