"""The hook protocol: the fixed events a training run raises, and the context hooks see.

Everything around the loop — the metrics log, checkpoints, evaluation,
the watchdog, the tracer, the cross-rank parameter check, early stopping,
keep-best, histograms, the progress display — is a :class:`Hook`; a user's
hook is written the same way.  Events, in the order a run raises them::

    on_fit_begin(ctx)            once, before the first step (resume happens here)
    on_step_begin(ctx)           before each step (ctx.step: the steps done so far)
    on_step_end(ctx, record)     after each step every rank finished (a global record)
    on_evaluate(ctx, result)     after each evaluation (raised through ctx.evaluated)
    on_stop(ctx, stop)           every rank agreed to stop after this step (a signal or
                                 ctx.request_stop()); instead of on_step_end for that step
    on_fit_end(ctx)              the steps are done (or ctx.stop_training was set)
    on_close(ctx, status)        always, last, in reverse order: release what you opened;
                                 status "completed", "interrupted", "failed" or
                                 "nothing_to_train" (resumed at or past the last step)

Every event is called on every rank with the same global values at the same
step, so a hook that decides from them decides the same everywhere; a hook
that runs a collective (a checkpoint, an evaluation) runs it on every rank.
Hooks run in list order (``on_close`` in reverse).

A plain callable ``fn(trainer, record)`` (the earlier callback form) is
wrapped by :func:`as_hook`: it runs at ``on_step_end``, and its
``on_evaluate(trainer, result)`` method, if any, at ``on_evaluate``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from distnet.errors import InvalidArgumentError

EVENTS = ("on_fit_begin", "on_step_begin", "on_step_end", "on_evaluate", "on_stop", "on_fit_end", "on_close")


class Hook:
    """A service of the training loop; override the events it needs (all are no-ops here)."""

    def on_fit_begin(self, ctx: "Context") -> None:
        pass

    def on_step_begin(self, ctx: "Context") -> None:
        pass

    def on_step_end(self, ctx: "Context", record: dict) -> None:
        pass

    def on_evaluate(self, ctx: "Context", result: dict) -> None:
        pass

    def on_stop(self, ctx: "Context", stop: "StopEvent") -> None:
        pass

    def on_fit_end(self, ctx: "Context") -> None:
        pass

    def on_close(self, ctx: "Context", status: str) -> None:
        pass


@dataclass
class StopEvent:
    """The stop every rank agreed on: after ``step``, for ``signal`` (its ``name``).

    ``checkpoint`` is filled in by the hook that saves the stop's checkpoint.
    """

    signal: int
    name: str
    step: int
    epoch: int
    record: dict
    checkpoint: str | None = None


class Context:
    """What a hook sees of the run: the job's parts, the step, and a way to stop.

    Attributes:
        comm, strategy, model, optimizer, ema, sampler: the job's parts.
        variables / all_variables: the trainable / all variables, sorted by name.
        eval_data, validation_data: the evaluation splits (or None).
        history: the run's records (steps and evaluations).
        logger: the run's :class:`~distnet.training.metrics.MetricsLogger` while a
            metrics-log hook holds one (else None).
        tracer: the run's tracer (:data:`distnet.training.trace.OFF` when off).
        stop_training: set it to end the run after the current step (Keras).
        resume: whether this fit continues from the newest checkpoint.
        restored_step: the step whose weights the model holds when a hook put earlier
            ones back (``restore_best_weights``); None: the current step's.  An
            evaluation of restored weights carries it as ``restored_step``.
        end_reason: why the run ended before its last step, in a sentence (early
            stopping, nothing to train); the ``end`` record and the summary show it.
    """

    def __init__(self, trainer) -> None:
        from distnet.training import trace

        self.trainer = trainer   # for fn(trainer, record) callables only (as_hook)
        self.comm = trainer.comm
        self.strategy = trainer.strategy
        self.model = trainer.model
        self.optimizer = trainer.optimizer
        self.ema = trainer.ema
        self.sampler = trainer.sampler
        self.variables = trainer.variables
        self.all_variables = trainer.all_variables
        self.eval_data = trainer.eval_data
        self.validation_data = trainer.validation_data
        self.history = trainer.history
        self.total_steps = trainer.total_steps
        self.logger = None
        self.tracer = trace.OFF
        self.stop_training = False
        self.resume = False
        self.restored_step: int | None = None
        self.end_reason: str | None = None
        self._emit: Callable[..., None] | None = None

    @property
    def step(self) -> int:
        """The global step: the optimizer's iteration counter."""
        return int(self.optimizer.iterations)

    @property
    def epoch(self) -> int:
        """The epoch the next step reads from."""
        return self.sampler.epoch

    @property
    def last_epoch(self) -> int:
        """The epoch of the last step (0-based; 0 before the first), as its step record says."""
        epoch, position = self.sampler.epoch, self.sampler.position
        return epoch - 1 if position == 0 and epoch > 0 and self.step > 0 else epoch

    def request_stop(self, signum: int | None = None) -> None:
        """Stop after the next step as a signal would (checkpoint, TrainingStopped)."""
        self.trainer.request_stop(signum)

    def state(self):
        """The full training state as a CheckpointState (a collective)."""
        return self.trainer.state()

    def evaluate(self, data, use_ema: bool = False) -> dict:
        """Global loss and accuracy on ``data`` (a collective)."""
        return self.trainer.evaluate(data, use_ema=use_ema)

    def evaluated(self, result: dict) -> None:
        """Put an evaluation's ``result`` in the history and raise ``on_evaluate`` on every hook."""
        self.history.append(result)
        if self._emit is not None:
            self._emit("on_evaluate", result)

    def log(self, kind: str, **fields: Any) -> None:
        """A record in the run's log (if a metrics-log hook keeps one)."""
        if self.logger is not None:
            self.logger.log(kind, **fields)

    def message(self, text: str) -> None:
        """A line shown on rank 0 (if a metrics-log hook shows them)."""
        if self.logger is not None:
            self.logger.message(text)


class FunctionHook(Hook):
    """A callable ``fn(trainer, record)`` run after every step; its ``on_evaluate(trainer, result)``
    method, if it has one, after every evaluation (the earlier callback form)."""

    def __init__(self, fn: Callable[[Any, dict], Any]) -> None:
        self.fn = fn

    def on_step_end(self, ctx: Context, record: dict) -> None:
        self.fn(ctx.trainer, record)

    def on_evaluate(self, ctx: Context, result: dict) -> None:
        on_evaluate = getattr(self.fn, "on_evaluate", None)
        if on_evaluate is not None:
            on_evaluate(ctx.trainer, result)


def as_hook(obj) -> Hook:
    """A :class:`Hook` as is, a callable ``fn(trainer, record)`` wrapped; anything else refused."""
    if isinstance(obj, Hook):
        return obj
    if callable(obj):
        return FunctionHook(obj)
    raise InvalidArgumentError(f"hooks: Expect: a distnet.training.hook.Hook (on_step_end(ctx, record), ...) "
                               f"or a callable fn(trainer, record) Actual: {type(obj).__name__}")
