"""Stopping training on SIGINT / SIGTERM at one step every rank agrees on.

A signal reaches the ranks of a job at different moments, or only one of
them (``kill -TERM`` of one rank, a scheduler signalling one host): a rank
that stopped on its own would leave the others waiting in the next
collective.  So a signal only *asks* to stop, and the ranks agree where:

* the training loop reads :attr:`StopSignals.code` at the start of each
  step and sends it as one more scalar (``stop``) of the step's reduction,
  summed with the gradients (no extra round trip): 0 for nothing, 1 for
  SIGINT, :data:`TERM_WEIGHT` for SIGTERM;
* after the reduction every rank holds the same sum, so every rank finishes
  the same step and stops after it (:func:`decode`: SIGTERM when any rank
  got one), writes one checkpoint there and exits with 130 / 143
  (:mod:`distnet.runner.exit_status`).

A signal that arrives during a step is carried by the next one.  A second
signal, or a stop that takes longer than ``grace`` seconds, ends the job at
once (no checkpoint).  A repeat within :data:`DUPLICATE_WINDOW` seconds of
the first is the same request delivered twice (a scheduler that signals
every process of a job step, and mpiexec forwarding it), not a second one.
Before training begins (phase ``STARTING``) the first signal ends the
process at once with the same status: there is nothing to save.  These
phases and transitions are :mod:`distnet.runner.lifecycle`'s, which the
launcher follows too; this module delivers a worker's signals to it.

A start-up signal never raises into an import: an exception that leaves an
import half done breaks the module for good (a C extension such as numpy's
cannot be loaded twice; numpy turns it into an ``ImportError``).  While the main
thread is inside the import system the handler holds the end back and a thread
delivers the signal again (:func:`_thread.interrupt_main`) until the import is
over; :meth:`StopSignals.begin_training` and :meth:`StopSignals.end_startup`
end the process in any case.

With several ranks the signals are read by a thread from a wakeup pipe
(:func:`signal.set_wakeup_fd`), so a second Ctrl-C acts even while the main
thread waits in a collective for a rank that will never come; the abort is
``MPI_Abort``, which ends every rank.
"""
from __future__ import annotations

import _thread
import os
import signal
import sys
import threading

from distnet.runner import exit_status
from distnet.errors import TrainingStopped
from distnet.runner.lifecycle import DUPLICATE_WINDOW, Action, Delivery, Lifecycle, Phase, startup_why  # noqa: F401

#: What one rank's SIGTERM adds to the ``stop`` scalar (a SIGINT adds 1):
#: more than any number of ranks' SIGINTs, and 4095 ranks' sum stays an
#: exact float32 integer (< 2**24).
TERM_WEIGHT = 4096.0
#: Seconds a stop may take (finish the step, write the checkpoint) before it is aborted.
DEFAULT_GRACE = 30.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Seconds between deliveries of a start-up signal held back while an import runs.
REDELIVER_EVERY = 0.01
#: Where the frames of Python's import system come from.
_IMPORT_SYSTEM = frozenset({"<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>"})


def encode(signum: int | None) -> float:
    """This rank's contribution to the ``stop`` scalar."""
    if signum is None:
        return 0.0
    return TERM_WEIGHT if signum == signal.SIGTERM else 1.0


def decode(total: float) -> int | None:
    """The agreed signal from the summed ``stop`` scalar, or None to go on."""
    total = round(float(total))
    if total <= 0:
        return None
    return signal.SIGTERM if total >= TERM_WEIGHT else signal.SIGINT


class StopSignals:
    """Turn SIGINT / SIGTERM into a request to stop after the current step.

    :meth:`install` (main thread only; elsewhere it does nothing) replaces
    the two signals' handlers until :meth:`uninstall`, which restores them.
    ``Trainer.fit`` installs one for its own duration when given none;
    ``distnet train`` installs one before anything else, so a signal during
    start-up ends the process cleanly too.  The decisions are those of
    :class:`distnet.runner.lifecycle.Lifecycle`; this class delivers the
    signals to it and acts on what it decides.

    Args:
        comm: the job's communicator (may be given later with :meth:`attach`).
        grace: seconds from the first signal until the stop is aborted.
        say: where one-line notices go (default: stderr).
    Attributes:
        signum: the signal the stop carries (None until one arrives).
        phase: a :class:`~distnet.runner.lifecycle.Phase`: ``STARTING`` until
            :meth:`begin_training`.
        delivery: who acts on a signal (:class:`~distnet.runner.lifecycle.Delivery`):
            the handler, or a thread once :meth:`attach` gave several ranks.
    Example:
        >>> with StopSignals(comm) as signals:
        ...     signals.begin_training()
        ...     while not stopped: ... signals.code ...
    """

    def __init__(self, comm=None, grace: float = DEFAULT_GRACE, say=None) -> None:
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace > 0:
            from distnet.errors import InvalidArgumentError

            raise InvalidArgumentError(f"stop grace: Expect: seconds > 0 Actual: {grace!r}")
        self.comm = comm
        self._life = Lifecycle(grace)
        self._say = say
        self._previous: dict = {}
        self._previous_unraisable = None
        self._installed = False
        self._pipe: tuple[int, int] | None = None
        self._old_wakeup = -1
        self._reader: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        # A start-up end held back while an import runs: (signal, why), and the
        # thread that delivers it again; ``_ended``: its exception is raised (or
        # left to begin_training / end_startup), so deliveries do nothing more.
        self._held: tuple[int, str] | None = None
        self._redeliver: threading.Event | None = None
        self._redeliver_lock = threading.Lock()
        self._ended = False

    # -- state (the lifecycle's) ---------------------------------------------
    @property
    def grace(self) -> float:
        return self._life.grace

    @grace.setter
    def grace(self, seconds: float) -> None:
        self._life.grace = float(seconds)

    @property
    def signum(self) -> int | None:
        return self._life.signum

    @property
    def phase(self) -> Phase:
        return self._life.phase

    @property
    def delivery(self) -> Delivery:
        return Delivery.THREAD if self._pipe is not None else Delivery.HANDLER

    # -- life -------------------------------------------------------------
    @property
    def installed(self) -> bool:
        return self._installed

    def install(self) -> "StopSignals":
        """Catch SIGINT and SIGTERM (main thread only; a no-op elsewhere)."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            return self
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        self._previous_unraisable, sys.unraisablehook = sys.unraisablehook, self._unraisable
        self._installed = True
        if self.comm is not None:
            self.attach(self.comm)
        return self

    def attach(self, comm) -> None:
        """Give the communicator once it exists; with several ranks a thread
        reads the signals from then on (call it from the main thread)."""
        self.comm = comm
        if not self._installed or self._pipe is not None or getattr(comm, "size", 1) < 2:
            return
        r, w = os.pipe()
        os.set_blocking(w, False)
        self._pipe = (r, w)
        self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self._reader = threading.Thread(target=self._read, args=(r,), name="distnet-signals", daemon=True)
        self._reader.start()

    def uninstall(self) -> None:
        """Restore the previous handlers and stop the thread and the grace timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stop_redelivery()
        if not self._installed:
            return
        self._installed = False
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        if sys.unraisablehook == self._unraisable:
            sys.unraisablehook = self._previous_unraisable
        self._previous_unraisable = None
        if self._pipe is not None:
            self._close_pipe()

    def _close_pipe(self) -> None:
        signal.set_wakeup_fd(self._old_wakeup)
        r, w = self._pipe
        self._pipe = None
        os.close(w)          # the reader sees end of file
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        os.close(r)

    def __enter__(self) -> "StopSignals":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()

    def begin_training(self) -> None:
        """From now on a signal asks to stop after the step instead of ending the process.

        A signal that came during start-up and whose exception was lost (see
        :meth:`end_startup`), or whose abort the reading thread has begun,
        ends the process here instead of a first step.
        """
        decision = self._life.begin()   # under the lifecycle's lock: against the reading thread
        if decision is None:
            return
        if decision.action is Action.ABORT:
            self._stop_redelivery()
            raise _stopped_at_once(decision.signum, decision.why)
        self._start_timer()

    def end_startup(self) -> None:
        """Hand the signals over to code that catches them itself (the launcher):
        uninstall, then end the process if a signal came during start-up.

        The handler's exception can be lost: Python may run the handler inside
        a finalizer or a weakref callback (the import system's, while numpy
        loads), where an exception is only printed.  The signal stays recorded.
        """
        self.uninstall()
        if self._life.aborted_at_startup:
            raise _stopped_at_once(self.signum, startup_why(self.signum))

    def _unraisable(self, unraisable) -> None:
        """``sys.unraisablehook`` while installed: the handler's TrainingStopped, raised
        where Python can only print it, is not shown (the signal stays recorded and is
        acted on); anything else goes to the previous hook."""
        if isinstance(unraisable.exc_value, TrainingStopped) and self.signum is not None:
            return
        (self._previous_unraisable or sys.__unraisablehook__)(unraisable)

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask to stop after the current step, as the signal ``signum`` would
        (for code: a callback, a time limit)."""
        self._life.request(signum)

    @property
    def code(self) -> float:
        """This rank's ``stop`` scalar for the next step (see :func:`encode`)."""
        return encode(self.signum)

    # -- signals ------------------------------------------------------------
    def _handle(self, signum, frame) -> None:
        """The Python-level handler (main thread): acts alone in one process.
        With the reading thread it only records the request (at once, so the
        next step carries it); the thread counts signals and aborts."""
        if self.delivery is Delivery.THREAD:
            self.request(signum)
            return
        if self._ended:
            return   # its exception is on its way
        # A delivery while an end is held back (again, or the thread's) is that end.
        action = self._held or self._note(signum)
        if action is None:
            return
        if _in_import(frame):
            self._hold(action)
            return
        self._held = action
        self._stop_redelivery()
        raise _stopped_at_once(*action)

    def _hold(self, action: tuple[int, str]) -> None:
        """Keep the end until the import in progress is over: deliver the signal
        again every :data:`REDELIVER_EVERY` s (the handler runs in the main thread
        at its next Python instruction, inside the import or after it)."""
        self._held = action
        if self._redeliver is not None:
            return
        stop = self._redeliver = threading.Event()
        signum = action[0]

        def redeliver() -> None:
            while not stop.wait(REDELIVER_EVERY):
                with self._redeliver_lock:   # never after _stop_redelivery
                    if not stop.is_set():
                        _thread.interrupt_main(signum)

        threading.Thread(target=redeliver, name="distnet-signals-held", daemon=True).start()

    def _stop_redelivery(self) -> None:
        """The held end is the caller's to raise now (the handler's, or
        begin_training's / end_startup's): later deliveries do nothing."""
        if self._held is not None:
            self._ended = True
        stop, self._redeliver = self._redeliver, None
        if stop is not None:
            with self._redeliver_lock:
                stop.set()

    def _read(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum not in SIGNALS:
                    continue
                action = self._note(signum)
                if action is not None:
                    self._abort(*action)

    def _note(self, signum: int) -> tuple[int, str] | None:
        """Count a signal; returns ``(signal, why)`` when the job must end at once."""
        decision = self._life.signal(signum)
        if decision.action is Action.ABORT:
            return decision.signum, decision.why
        if decision.action is Action.STOP:
            self._notice(f"distnet: {exit_status.signal_name(signum)}: stopping after the current step and "
                         f"saving a checkpoint (again to abort at once; aborted after {self.grace:g} s)")
            self._start_timer()
        return None

    def _start_timer(self) -> None:
        if self._timer is not None:
            return
        self._timer = threading.Timer(self.grace, self._grace_expired)
        self._timer.daemon = True
        self._timer.start()

    def _grace_expired(self) -> None:
        decision = self._life.grace_over()
        if self.delivery is Delivery.THREAD:
            self._abort(decision.signum, decision.why)
        else:
            # The main thread raises it from the handler (it may be inside
            # native code until then: a step's matrix product).
            _thread.interrupt_main(decision.signum)

    def _abort(self, signum: int, why: str) -> None:
        """End every rank now (from the reading thread or the timer)."""
        if not self._life.claim_end():
            return
        code = exit_status.for_signal(signum)
        message = f"distnet: {why}: aborting the job at once (no checkpoint)"
        comm = self.comm
        if comm is not None and getattr(comm, "size", 1) > 1:
            comm.abort(code, message)
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        os._exit(code)

    def _notice(self, text: str) -> None:
        rank = getattr(self.comm, "rank", 0)
        if rank != 0:
            return
        if self._say is not None:
            self._say(text)
            return
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _in_import(frame) -> bool:
    """Is the frame (the main thread's, where a handler runs) inside an import?"""
    while frame is not None:
        if frame.f_code.co_filename in _IMPORT_SYSTEM:
            return True
        frame = frame.f_back
    return False


def _stopped_at_once(signum: int, why: str) -> TrainingStopped:
    """The end of a process stopped without a checkpoint, for ``signum``."""
    return TrainingStopped(exit_status.for_signal(signum), signal=signum, aborted=True, reason=why)
