"""The first thing a ``distnet`` process does: SIGINT / SIGTERM end it at once, cleanly.

Until the command installs its own handling (:class:`distnet.training.stop.StopSignals`,
first thing in :func:`distnet.jobs.cli.main`), a process of ``distnet`` is only
importing its own modules: it has written nothing and started nothing, so a signal
then ends it with ``os._exit`` and the documented status (130 / 143) and one line
(rank 0 only).  Python's own handling would print a ``KeyboardInterrupt``
traceback, and an exception raised into an import leaves the module half loaded.

Used by ``python -m distnet`` and the ``distnet`` command (:mod:`distnet.__main__`)
and by the command the launcher starts its workers with
(:data:`distnet.runner.launcher.WORKER_ENTRY`).  Imports nothing heavy: it runs
before the slow imports it protects.
"""
from __future__ import annotations

import os
import signal

from distnet.runner import exit_status

#: The environment variables that give a process its MPI rank, for each MPI library.
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")


def is_main_rank() -> bool:
    """True unless this process is a rank > 0 of an MPI job (only rank 0 prints)."""
    return all(os.environ.get(var, "0") in ("0", "") for var in RANK_VARIABLES)


def end_at_once_on_signals() -> None:
    """From now until a later handler replaces it, SIGINT / SIGTERM end the process
    at once with 130 / 143 and one line on stderr (main thread only)."""
    # The lines are made now: the handler imports and allocates as little as it can.
    lines = {}
    if is_main_rank():
        for sig in (signal.SIGINT, signal.SIGTERM):
            lines[sig] = (f"distnet: {exit_status.signal_name(sig)} during start-up (before the first step: "
                          f"nothing to save): stopped at once (no checkpoint)\n").encode()

    def end(signum, frame) -> None:
        line = lines.get(signum)
        if line:
            try:
                os.write(2, line)
            except (OSError, ValueError):
                pass
        os._exit(exit_status.for_signal(signum))

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, end)
