"""The package's own exceptions.

Every error distnet raises on bad input derives from :class:`DistnetError`,
so callers can catch one type.  Messages say what was expected and what came
(``Expect: ... Actual: ...`` in the Chainer style).
"""
from __future__ import annotations


class DistnetError(Exception):
    """Base class of every error raised by distnet."""


class ShapeError(DistnetError, ValueError):
    """Operands have shapes an op cannot accept."""


class DTypeError(DistnetError, TypeError):
    """Operands have dtypes an op cannot accept."""


class InvalidArgumentError(DistnetError, ValueError):
    """An argument has an impossible value (negative rate, bad padding, ...)."""


class DataError(DistnetError, ValueError):
    """A dataset file or array is malformed (bad header, label out of range, ...)."""


class CheckpointError(DistnetError):
    """A checkpoint is missing, corrupt, truncated or does not match the model."""


class DistributedError(DistnetError, RuntimeError):
    """Ranks disagree, a rank failed, or the job stalled."""


class ConfigError(DistnetError, ValueError):
    """A job file has an unknown key, a wrong type or an impossible value."""


class TrainingStopped(SystemExit):
    """Training stopped by a signal (SIGINT: ``code`` 130, SIGTERM: 143).

    A :class:`SystemExit`: left unhandled it ends a script with that status
    and no traceback, on every rank (the ranks raise it at the same step).

    Attributes:
        code: the exit status (:mod:`distnet.runner.exit_status`).
        signal: the signal number.
        step: the step every rank stopped after (None if aborted).
        checkpoint: the checkpoint written at that step, or None.
        aborted: True when the job ended at once (a second signal, the grace
            period, start-up) without a checkpoint.
        reason: why, in words.
    """

    def __init__(self, code: int, *, signal: int, step: int | None = None, checkpoint: str | None = None,
                 aborted: bool = False, reason: str = "") -> None:
        super().__init__(code)
        self.signal = signal
        self.step = step
        self.checkpoint = checkpoint
        self.aborted = aborted
        self.reason = reason
