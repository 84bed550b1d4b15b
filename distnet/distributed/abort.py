"""End the whole job when one rank fails, instead of letting the others hang.

Without this, an MPI job whose rank raises hangs forever: the other ranks wait
in their next collective for a rank that is gone.  :func:`install_abort_hook`
makes an unhandled
exception, in the main thread or any other thread, print its traceback once,
prefixed with the rank, then ``MPI_Abort`` the world: the launcher ends every
rank and exits non-zero.
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import Callable

from distnet.runner import exit_status
from distnet.distributed.communicator import Communicator
from distnet.errors import DistributedError

#: The status of an aborted job: a failure (the table is :mod:`distnet.runner.exit_status`).
EXIT_CODE = exit_status.FAILED


class CollectiveError(DistributedError):
    """A failure every rank detects identically at the same point (ranks built
    different variables, parameters diverged, too many non-finite steps).

    Every rank raises it; the abort hook prints it on rank 0 only, and the
    other ranks wait ``COLLECTIVE_GRACE`` seconds for rank 0's abort before
    printing and aborting themselves, so the message appears once.
    """


COLLECTIVE_GRACE = 5.0


class AbortHook:
    """Handle returned by :func:`install_abort_hook`; :meth:`uninstall` restores
    the previous hooks."""

    def __init__(self, comm: Communicator, exit_code: int) -> None:
        self.comm = comm
        self.exit_code = exit_code
        self._lock = threading.Lock()
        self._previous: tuple[Callable, Callable] | None = None

    def _handle(self, exc_type, exc, tb, where: str) -> None:
        # One report per process, even if several threads fail at once.
        if not self._lock.acquire(blocking=False):
            time.sleep(60)   # the first report is aborting the job
            return
        comm = self.comm
        if isinstance(exc, CollectiveError) and comm.rank != 0 and comm.size > 1:
            # Rank 0 raised the same error and is aborting the job.
            time.sleep(COLLECTIVE_GRACE)
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        head = f"unhandled exception{where}; aborting the job ({comm.size} rank{'s' if comm.size > 1 else ''})\n"
        try:
            comm.abort(self.exit_code, head + text)
        finally:  # abort should not return; if it does, make sure we die
            import os
            os._exit(self.exit_code)

    def excepthook(self, exc_type, exc, tb) -> None:
        self._handle(exc_type, exc, tb, "")

    def threading_excepthook(self, args) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        self._handle(args.exc_type, args.exc_value, args.exc_traceback, f" in thread {name!r}")

    def uninstall(self) -> None:
        if self._previous is not None:
            sys.excepthook, threading.excepthook = self._previous
            self._previous = None


def install_abort_hook(comm: Communicator, exit_code: int = EXIT_CODE) -> AbortHook:
    """Make any unhandled exception end every rank of the job.

    Sets ``sys.excepthook`` and ``threading.excepthook``.  The failing rank's
    traceback is printed once, each line prefixed with ``[rank R]``, then
    ``comm.abort(exit_code)`` ends the world.  With a
    :class:`~distnet.distributed.single.SingleCommunicator` the process just exits
    with ``exit_code`` (a failing thread also ends the process).

    Args:
        comm: the job's communicator.
        exit_code: status passed to ``MPI_Abort`` (non-zero).
    Returns:
        an :class:`AbortHook`; ``hook.uninstall()`` restores the old hooks.
    Example:
        >>> comm = get_communicator("auto")
        >>> hook = install_abort_hook(comm)
    """
    hook = AbortHook(comm, int(exit_code) or EXIT_CODE)
    hook._previous = (sys.excepthook, threading.excepthook)
    sys.excepthook = hook.excepthook
    threading.excepthook = hook.threading_excepthook
    return hook
