"""The life of a training process, and of the launcher that runs its workers, as one state machine.

A worker (:class:`distnet.training.stop.StopSignals`) and the launcher
(:class:`distnet.runner.launcher.Supervisor`) both turn SIGINT / SIGTERM into the
same decisions; this module is where those decisions are taken.  It only
decides: it installs no handler, starts no thread and ends no process.  The
caller acts on the returned :class:`Decision` (announce a stop, start the
grace timer, raise, ``MPI_Abort``, pass the signal on to mpiexec).

Phases (:class:`Phase`):

* ``STARTING``: before the first step.  There is nothing to save, so the
  first signal ends the process at once.
* ``RUNNING``: training (a worker), or the job runs (the launcher, which
  starts here: its workers have their own start-up).
* ``STOPPING``: a stop was asked (a signal, or :meth:`Lifecycle.request`
  from code); the step that carries it is the last, then one checkpoint.
* ``ABORTING``: ending at once, without a checkpoint (a start-up signal, a
  second signal, or a stop that outlasted its grace period).  Final.

Events and transitions, every one taken under one lock ("stays": no change
of phase; an action in capitals is the :class:`Decision` returned):

* ``STARTING``: a signal -> ``ABORTING``, ``ABORT`` (start-up);
  :meth:`~Lifecycle.request` -> stays (the signal is recorded);
  :meth:`~Lifecycle.begin` -> ``RUNNING``, or ``STOPPING`` and ``STOP`` after a
  request; grace over -> ``ABORTING``, ``ABORT``.
* ``RUNNING``: a signal -> ``STOPPING``, ``STOP``; request -> ``STOPPING``;
  begin -> stays; grace over -> ``ABORTING``, ``ABORT``.
* ``STOPPING``: the first counted signal (after a request) -> stays, ``STOP``;
  a repeat within the window -> stays, ``REPEAT``; a later signal ->
  ``ABORTING``, ``ABORT`` ("again"); request -> stays; begin -> stays,
  ``STOP``; grace over -> ``ABORTING``, ``ABORT``.
* ``ABORTING``: a repeat within the window -> ``REPEAT``; a later signal ->
  ``ABORT`` ("again"); after the grace period any signal -> ``ABORT`` (the
  grace period); request -> stays; begin -> ``ABORT`` after a start-up abort,
  else nothing; grace over -> ``ABORT``.

"First signal" is the first one *counted*: :meth:`Lifecycle.request` only
records which signal the stop carries (a callback, a time limit, or the
signal handler of a worker whose signals a thread counts).  A repeat within
:data:`DUPLICATE_WINDOW` seconds of the first counted signal is the same
request delivered twice (a scheduler that signals every process of a job,
and mpiexec passing it on); a later one is a second request: abort.  After
the grace period every signal aborts with the grace period as the reason.
The signal a stop carries is the strongest received: a SIGTERM (a
preemption) outranks a SIGINT.  A start-up abort that was decided but
could not be acted on (see :meth:`distnet.training.stop.StopSignals.end_startup`) is
acted on at :meth:`Lifecycle.begin`, before a first step can run.

How signals reach the decisions is the caller's :class:`Delivery`: the
Python handler acts itself (one process, the launcher), or it only records
the request and a thread reading a wakeup pipe counts the signals and acts
(several ranks: it must act even while the main thread waits in a
collective).

Example:
    >>> life = Lifecycle(grace=30.0)
    >>> life.begin() is None and life.phase is Phase.RUNNING
    True
    >>> life.signal(2, now=10.0).action is Action.STOP
    True
    >>> life.signal(2, now=10.5).action is Action.REPEAT
    True
    >>> life.signal(2, now=12.0).why
    'SIGINT again'
"""
from __future__ import annotations

import enum
import signal as _signal
import threading
import time

from distnet.runner import exit_status

#: Seconds within which a repeated signal is the first one delivered twice.
DUPLICATE_WINDOW = 1.0


class Phase(enum.Enum):
    """Where a process is in its life (module docstring)."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    ABORTING = "aborting"


class Action(enum.Enum):
    """What the caller does with a signal."""

    STOP = "stop"       # stop after the agreed step: announce it, start the grace timer (launcher: hold it)
    REPEAT = "repeat"   # the same request delivered twice: nothing more
    ABORT = "abort"     # end now, without a checkpoint (launcher: pass the signal on at once)


class Delivery(enum.Enum):
    """Who acts on a signal."""

    HANDLER = "handler"   # the Python handler, in the main thread (one process; the launcher)
    THREAD = "thread"     # a thread reading a wakeup pipe; the handler only records (several ranks)


class Decision:
    """A decision: the action, the signal it is about, and why (for an abort).

    A plain class, not a dataclass: :mod:`distnet.training.stop` imports this module
    before its handlers are installed, and ``dataclasses`` (with ``inspect``)
    would lengthen the start-up that a signal can interrupt.
    """

    __slots__ = ("action", "signum", "why")

    def __init__(self, action: Action, signum: int, why: str = "") -> None:
        self.action, self.signum, self.why = action, signum, why

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decision) and (self.action, self.signum, self.why) == \
            (other.action, other.signum, other.why)

    __hash__ = None

    def __repr__(self) -> str:
        return f"Decision({self.action}, {self.signum}, {self.why!r})"


class Lifecycle:
    """The phases and transitions of one process (module docstring).

    Args:
        grace: seconds a stop may take (only named in messages: the caller runs the timer).
        phase: where to start: ``STARTING`` (a worker) or ``RUNNING`` (the launcher).
        window: seconds within which a repeated signal is the same request.
    Attributes:
        phase: the current :class:`Phase`.
        signum: the signal the stop carries (the strongest received or requested), or None.
        first: the first signal counted, or None.
        first_at: when it came (``time.monotonic()``), or None.
        received: how many signals were counted.
    """

    def __init__(self, grace: float, phase: Phase = Phase.STARTING, window: float = DUPLICATE_WINDOW) -> None:
        self.grace = float(grace)
        self.window = float(window)
        self.phase = phase
        self.signum: int | None = None
        self.first: int | None = None
        self.first_at: float | None = None
        self.received = 0
        self._cause: str | None = None   # why ABORTING: "start-up", "again" or "grace"
        self._ended = False
        # Re-entrant: with Delivery.HANDLER the handler runs in the main thread,
        # possibly while that thread is inside a transition (begin()).
        self._lock = threading.RLock()

    @property
    def aborted_at_startup(self) -> bool:
        """A signal during ``STARTING`` decided to end the process."""
        return self.phase is Phase.ABORTING and self._cause == "start-up"

    def _carry(self, signum: int) -> None:
        if self.signum is None or signum == _signal.SIGTERM:
            self.signum = signum   # a preemption outranks a Ctrl-C

    def signal(self, signum: int, now: float | None = None) -> Decision:
        """A SIGINT / SIGTERM arrived (``now``: its ``time.monotonic()``)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._cause == "grace":
                carried = self.signum or signum
                return Decision(Action.ABORT, carried, self._grace_why(carried))
            self._carry(signum)
            self.received += 1
            if self.first_at is not None:
                if now - self.first_at < self.window:
                    return Decision(Action.REPEAT, signum)
                return self._abort("again", signum, f"{exit_status.signal_name(signum)} again")
            self.first, self.first_at = signum, now
            if self.phase is Phase.STARTING:
                return self._abort("start-up", signum, startup_why(signum))
            self.phase = Phase.STOPPING
            return Decision(Action.STOP, signum)

    def request(self, signum: int = _signal.SIGINT) -> None:
        """Ask to stop after the current step, as ``signum`` would, from code (not counted)."""
        with self._lock:
            self._carry(signum)
            if self.phase is Phase.RUNNING:
                self.phase = Phase.STOPPING

    def begin(self) -> Decision | None:
        """Training begins: leave ``STARTING``.  Returns ``ABORT`` when a start-up
        signal decided to end the process, ``STOP`` when a stop is already asked
        (start the grace timer), else None."""
        with self._lock:
            if self.aborted_at_startup:
                return Decision(Action.ABORT, self.signum, startup_why(self.signum))
            if self.phase is Phase.STARTING:
                self.phase = Phase.RUNNING if self.signum is None else Phase.STOPPING
            if self.signum is not None and self.phase is not Phase.ABORTING:
                return Decision(Action.STOP, self.signum)
            return None

    def grace_over(self) -> Decision:
        """The stop did not finish within the grace period: abort."""
        with self._lock:
            carried = self.signum or _signal.SIGINT
            return self._abort("grace", carried, self._grace_why(carried))

    def claim_end(self) -> bool:
        """True for the first caller only: the one that ends the process (an abort runs once)."""
        with self._lock:
            first, self._ended = not self._ended, True
            return first

    def _abort(self, cause: str, signum: int, why: str) -> Decision:
        if self.phase is not Phase.ABORTING or cause == "grace":
            self.phase, self._cause = Phase.ABORTING, cause
        return Decision(Action.ABORT, signum, why)

    def _grace_why(self, signum: int) -> str:
        return f"the stop did not finish within {self.grace:g} s of {exit_status.signal_name(signum)}"


def startup_why(signum: int) -> str:
    """Why a signal during start-up ends the process."""
    return f"{exit_status.signal_name(signum)} during start-up (before the first step: nothing to save)"
