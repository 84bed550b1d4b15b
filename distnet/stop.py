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
  (:mod:`distnet.exit_status`).

A signal that arrives during a step is carried by the next one.  A second
signal, or a stop that takes longer than ``grace`` seconds, ends the job at
once (no checkpoint).  A repeat within :data:`DUPLICATE_WINDOW` seconds of
the first is the same request delivered twice (a scheduler that signals
every process of a job step, and mpiexec forwarding it), not a second one.
Before training begins (``phase == "startup"``) the first signal ends the
process at once with the same status: there is nothing to save.

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
import time

from distnet import exit_status
from distnet.errors import TrainingStopped

#: Seconds within which a repeated signal is the first one delivered twice.
DUPLICATE_WINDOW = 1.0
#: What one rank's SIGTERM adds to the ``stop`` scalar (a SIGINT adds 1):
#: more than any number of ranks' SIGINTs, and 4095 ranks' sum stays an
#: exact float32 integer (< 2**24).
TERM_WEIGHT = 4096.0
#: Seconds a stop may take (finish the step, write the checkpoint) before it is aborted.
DEFAULT_GRACE = 30.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
    start-up ends the process cleanly too.

    Args:
        comm: the job's communicator (may be given later with :meth:`attach`).
        grace: seconds from the first signal until the stop is aborted.
        say: where one-line notices go (default: stderr).
    Attributes:
        signum: the first signal received (None until one arrives).
        phase: ``"startup"`` until :meth:`begin_training`, then ``"training"``.
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
        self.grace = float(grace)
        self.signum: int | None = None
        self.phase = "startup"
        self._say = say
        self._first = 0.0
        self._count = 0   # signals counted by whoever acts on them (the handler, or the reading thread)
        self._previous: dict = {}
        self._previous_unraisable = None
        self._installed = False
        self._lock = threading.Lock()
        self._pipe: tuple[int, int] | None = None
        self._old_wakeup = -1
        self._reader: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._grace_over = False
        self._aborting: int | None = None
        self._startup_abort = False   # a signal during start-up ends the process (decided under the lock)

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
        with self._lock:   # against the reading thread deciding on a start-up signal just now
            self.phase = "training"
            startup_abort = self._startup_abort
        if startup_abort:
            raise self._startup_stop()
        if self.signum is not None and self._timer is None:
            self._start_timer()

    def end_startup(self) -> None:
        """Hand the signals over to code that catches them itself (the launcher):
        uninstall, then end the process if a signal came during start-up.

        The handler's exception can be lost: Python may run the handler inside
        a finalizer or a weakref callback (the import system's, while numpy
        loads), where an exception is only printed.  The signal stays recorded.
        """
        self.uninstall()
        if self._startup_abort:
            raise self._startup_stop()

    def _startup_stop(self) -> TrainingStopped:
        return _stopped_at_once(self.signum, _startup_why(self.signum))

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
        with self._lock:
            if self.signum is None or signum == signal.SIGTERM:
                self.signum = signum

    @property
    def code(self) -> float:
        """This rank's ``stop`` scalar for the next step (see :func:`encode`)."""
        return encode(self.signum)

    # -- signals ------------------------------------------------------------
    def _mpi(self) -> bool:
        return self._pipe is not None

    def _handle(self, signum, frame) -> None:
        """The Python-level handler (main thread): acts alone in one process.
        With the reading thread it only records the request (at once, so the
        next step carries it); the thread counts signals and aborts."""
        if self._mpi():
            self.request(signum)
            return
        action = self._note(signum)
        if action is not None:
            raise _stopped_at_once(*action)

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
        now = time.monotonic()
        name = exit_status.signal_name(signum)
        with self._lock:
            if self._grace_over:
                return self.signum or signum, (f"the stop did not finish within {self.grace:g} s of "
                                               f"{exit_status.signal_name(self.signum or signum)}")
            first = self._count == 0
            if self.signum is None or signum == signal.SIGTERM:
                self.signum = signum   # a preemption outranks a Ctrl-C
            if first:
                self._count, self._first = 1, now
            elif now - self._first < DUPLICATE_WINDOW:
                return None
            startup = first and self.phase == "startup"
            if startup:
                self._startup_abort = True
        if not first:
            return signum, f"{name} again"
        if startup:
            return signum, _startup_why(signum)
        self._notice(f"distnet: {name}: stopping after the current step and saving a checkpoint "
                     f"(again to abort at once; aborted after {self.grace:g} s)")
        self._start_timer()
        return None

    def _start_timer(self) -> None:
        if self._timer is not None:
            return
        self._timer = threading.Timer(self.grace, self._grace_expired)
        self._timer.daemon = True
        self._timer.start()

    def _grace_expired(self) -> None:
        with self._lock:
            self._grace_over = True
        signum = self.signum or signal.SIGINT
        why = f"the stop did not finish within {self.grace:g} s of {exit_status.signal_name(signum)}"
        if self._mpi():
            self._abort(signum, why)
        else:
            # The main thread raises it from the handler (it may be inside
            # native code until then: a step's matrix product).
            _thread.interrupt_main(signum)

    def _abort(self, signum: int, why: str) -> None:
        """End every rank now (from the reading thread or the timer)."""
        code = exit_status.for_signal(signum)
        with self._lock:
            if self._aborting is not None:
                return
            self._aborting = code
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


def _startup_why(signum: int) -> str:
    return f"{exit_status.signal_name(signum)} during start-up (before the first step: nothing to save)"


def _stopped_at_once(signum: int, why: str) -> TrainingStopped:
    """The end of a process stopped without a checkpoint, for ``signum``."""
    return TrainingStopped(exit_status.for_signal(signum), signal=signum, aborted=True, reason=why)
