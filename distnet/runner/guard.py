"""A watch on the launcher: if it dies, the job still ends and leaves no file in /dev/shm.

When the launcher is killed (SIGKILL, an out-of-memory kill), mpiexec gets a
SIGTERM (``PR_SET_PDEATHSIG``) and passes it on: training ranks stop after
their step and save.  But a rank still inside ``MPI_Init`` cannot act on a
signal, and hydra, told to stop, may wait for it forever: the job would stay,
spinning.  The :class:`~distnet.runner.launcher.Supervisor` therefore starts
this small process beside mpiexec (``python -m distnet.runner.guard LAUNCHER
MPIEXEC GRACE``).  It reads its stdin: first the names of MPICH's files in
``/dev/shm`` before the job, then, when the job is over, ``done`` from the
launcher.  End of input without ``done`` means the launcher died: the guard
gives mpiexec ``GRACE`` seconds to end, then SIGKILLs mpiexec and every
process under it, and removes the files the job left in ``/dev/shm``
(:func:`distnet.runner.launcher.remove_leftover_shm`).  Linux only (``/proc``).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time


def _children(pid: int) -> list[int]:
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        pass
    return found


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (children first found, deepest last)."""
    found, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def watch(mpiexec: int, grace: float, before: set[str], stdin) -> bool:
    """Wait for the launcher's word; after its death, end the job and clean up.

    Returns:
        True when the launcher died (and the guard acted), False after ``done``.
    """
    if stdin.read().startswith(b"done"):
        return False
    deadline = time.monotonic() + grace
    while alive(mpiexec) and time.monotonic() < deadline:
        time.sleep(0.1)
    job = [*descendants(mpiexec), mpiexec] if alive(mpiexec) else []
    for pid in job:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10.0
    while any(alive(p) for p in job) and time.monotonic() < deadline:
        time.sleep(0.05)
    from distnet.runner.launcher import remove_leftover_shm

    remove_leftover_shm(before)
    return True


def main(argv: list[str]) -> int:
    mpiexec, grace = int(argv[1]), float(argv[2])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):   # the launcher's terminal and group
        signal.signal(sig, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    before = set(json.loads(stdin.readline() or b"[]"))
    watch(mpiexec, grace, before, stdin)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
