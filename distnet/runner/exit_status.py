"""The exit statuses of ``distnet``: one table (README.md, docs/jobs.md and docs/stopping.md copy it).

=====  =====================================================================
0      done: every step ran (``train``), or the command succeeded
1      training failed: an exception, a rank that died or was killed, too many
       non-finite steps, ranks that disagree, a restart budget used up
2      bad input: job file, dataset, checkpoint, run directory or arguments
3      stalled: the watchdog found a rank that stopped answering
130    stopped by SIGINT (Ctrl-C): every rank finished its step, one
       checkpoint was written at it (when checkpoints are on)
143    stopped by SIGTERM (a scheduler's preemption, ``docker stop``): as 130
=====  =====================================================================

A second signal, or a stop that outlasts its grace period, ends the job at
once with the same 130 / 143 and no checkpoint.  Under ``mpiexec`` the job's
status is what the ranks exit with; the launcher maps the other statuses
hydra reports (a rank killed by a signal: 9, 15, ...) onto 1
(:func:`from_mpiexec`).
"""
from __future__ import annotations

import signal

OK = 0
FAILED = 1
BAD_INPUT = 2
STALLED = 3
SIGINT = 128 + signal.SIGINT     # 130
SIGTERM = 128 + signal.SIGTERM   # 143

#: The job ended as asked: every step ran, or a signal stopped it.
DONE_OR_STOPPED = (OK, SIGINT, SIGTERM)
#: Statuses that end a job for good (a restart would not change them): done,
#: bad input, stopped by a signal (:mod:`distnet.runner.restart`).
FINAL = (OK, BAD_INPUT, SIGINT, SIGTERM)

MEANING = {
    OK: "done",
    FAILED: "training failed",
    BAD_INPUT: "bad input",
    STALLED: "stalled (a rank stopped answering)",
    SIGINT: "stopped by SIGINT",
    SIGTERM: "stopped by SIGTERM",
}


def for_signal(signum: int) -> int:
    """The status of a job stopped by ``signum`` (SIGINT -> 130, SIGTERM -> 143)."""
    return SIGTERM if signum == signal.SIGTERM else SIGINT


def from_mpiexec(code: int) -> int:
    """Map mpiexec's status onto the table: a status of the table stays, any
    other (hydra's 9 for a rank killed by SIGKILL, 15, 139, ...) is a failure."""
    return code if code in MEANING else FAILED


def signal_name(number: int) -> str:
    """``"SIGKILL"`` for 9, ``"signal 77"`` for a number with no name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
