"""Arrays in memory shared by the ranks of one machine (MPI-3 shared windows).

When every rank of a job runs on one machine, the ZeRO-1 strategy
(:mod:`distnet.distributed.strategies.zero1`) needs no messages for its two
big collectives:

* the **parameters** live once, in one shared array that every rank's
  variables view; each rank writes its own block in the update, and a
  barrier replaces the all-gather;
* each rank's **gradients** are written by backward into its own segment of a
  shared window; after a barrier, rank r sums block r of every segment
  itself (in cache-sized chunks), which replaces the reduce-scatter.

One copy of the parameters per machine also leaves more of the cache to the
matrix products (figures in ``benchmarks/README.md``).

MPICH backs the windows with files in ``/dev/shm``; a write beyond that
file system's size kills the process (SIGBUS), and containers get 64 MB
there by default.  :func:`room_for` checks the space first, on every rank.
Each segment is rounded up to whole pages, so every rank's segment starts
on its own page (no cache line shared by two ranks' data).  Every window
stays in a passive-target epoch (``Lock_all``) for its life, and
:meth:`~distnet.distributed.communicator.SharedArrays.sync` (``MPI_Win_sync``)
is called on both sides of each barrier, the portable way to order loads and
stores on shared windows.  Freeing a window is a collective
(:meth:`~distnet.distributed.communicator.SharedArrays.free`, called by
``Trainer.close()``); a garbage collector cannot make that call.

MPICH's own segment, ``/dev/shm/mpich_shm_<id>_<n>``, is created at
``MPI_Init`` and unlinked only by ``MPI_Finalize``: a rank that is killed
(a SIGKILL, hydra ending the job after a failure, a killed launcher) leaves
it behind, held in memory until reboot.  Every local rank has it mapped
when ``MPI_Init`` returns, so :func:`unlink_segment_files` (called by
:func:`distnet.distributed.init`) removes its name at once, as programs do
with a POSIX shared segment once every user has attached: the memory stays
until the last rank ends, however it ends, and no file is left.  (The
windows' files, ``mpich_shar_tmp*``, are unlinked by MPICH itself.)
"""
from __future__ import annotations

import os
import re
import warnings

import numpy as np

from distnet.distributed.communicator import Communicator
from distnet.errors import InvalidArgumentError

#: Where MPICH puts the files behind shared windows.
SHM_DIR = "/dev/shm"
#: MPICH's per-job segment, created by MPI_Init (``/mpich_shm_%x_%d``).
SEGMENT_FILE = re.compile(r"^mpich_shm_[0-9a-f]+_\d+$")
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: The end of a "no room" message: where a too small ``SHM_DIR`` usually comes from.
CONTAINER_HINT = " (a container gets 64 MB there by default: docker run --shm-size, compose shm_size)"


def one_machine(comm: Communicator) -> bool:
    """True if ``comm`` has several ranks and all of them share one machine's memory.

    A collective (every rank must call it); False for one rank.
    """
    if comm.size == 1:
        return False
    local = comm.split_local()
    try:
        return local.size == comm.size
    finally:
        local.free()


def free_bytes(path: str = SHM_DIR) -> int | None:
    """Bytes free for an unprivileged writer in the file system at ``path``; None if there is none."""
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def room_for(comm: Communicator, nbytes: int) -> tuple[bool, int | None]:
    """Whether ``SHM_DIR`` has ``nbytes`` (+ 1 MiB) free on every rank (a collective; all agree).

    Returns:
        ``(enough, least free bytes seen by a rank or None)``.
    """
    seen = comm.allgather_object(free_bytes())
    if any(f is None for f in seen):
        return False, None
    least = min(seen)
    return least >= nbytes + (1 << 20), least


def check_room(comm: Communicator, nbytes: int, *, purpose: str, forced: bool, fallback: str, warn: bool,
               stacklevel: int = 2) -> bool:
    """Whether ``nbytes`` for ``purpose`` fit in ``SHM_DIR`` on every rank (a collective: all agree).

    Where they do not: with ``forced`` (``shared_memory=True``) an error saying so; else (``"auto"``)
    False, and where ``warn``, a warning that the strategy takes its ``fallback`` instead.
    """
    enough, free = room_for(comm, nbytes)
    if enough:
        return True
    why = (f"{nbytes / 1e6:.1f} MB free in {SHM_DIR} for {purpose} Actual: "
           + (f"{free / 1e6:.1f} MB free" if free is not None else f"no {SHM_DIR}") + CONTAINER_HINT)
    if forced:
        raise InvalidArgumentError(f"shared_memory=True: Expect: {why}")
    if warn:
        from distnet.distributed.threads import PerformanceWarning

        warnings.warn(f"shared_memory: {fallback}: Expect: {why}", PerformanceWarning, stacklevel=stacklevel + 1)
    return False


def synced_barrier(comm: Communicator, windows) -> None:
    """A barrier of ``comm`` with ``MPI_Win_sync`` on every window on both sides: each rank's stores
    to the segments before it are seen by every rank's loads after it."""
    for w in windows:
        w.sync()
    comm.barrier()
    for w in windows:
        w.sync()


def segment_bytes(count: int, dtype) -> int:
    """Bytes of a segment of ``count`` elements, rounded up to whole pages."""
    return -(-count * np.dtype(dtype).itemsize // PAGE) * PAGE


def mapped_segment_files(maps: str = "/proc/self/maps", directory: str = SHM_DIR) -> list[str]:
    """Names of MPICH segment files in ``directory`` this process maps and that still have a name."""
    prefix = directory.rstrip("/") + "/"
    names = set()
    try:
        with open(maps, encoding="utf-8", errors="replace") as f:
            for line in f:
                at = line.find(prefix)
                if at < 0 or line.rstrip().endswith("(deleted)"):
                    continue
                name = line[at + len(prefix):].strip()
                if SEGMENT_FILE.match(name):
                    names.add(name)
    except OSError:   # no /proc (not Linux): nothing known, nothing removed
        return []
    return sorted(names)


def unlink_segment_files(comm: Communicator, directory: str = SHM_DIR) -> list[str]:
    """Remove the names of MPICH's segment files this job's ranks share (a collective).

    The barrier makes sure every rank of the job is past ``MPI_Init``, so
    every rank on this machine has the segment mapped; the memory then lives
    as long as the last rank that maps it, and nothing is left in ``directory``
    when the ranks end, however they end.

    Returns:
        The names this rank removed (another local rank may have been first).
    """
    if comm.size == 1:
        return []
    comm.barrier()
    return unlink_mapped_segment_files(directory)


def unlink_mapped_segment_files(directory: str = SHM_DIR) -> list[str]:
    """Remove the names of the MPICH segment files this process maps, now, without asking the other ranks.

    For a rank that ends during start-up (a signal before :func:`unlink_segment_files`
    could run): the job ends with it, so no rank still needs to find the file.

    Returns:
        The names this process removed.
    """
    removed = []
    for name in mapped_segment_files(directory=directory):
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            continue   # another rank of this machine removed it first, or not ours to remove
        removed.append(name)
    return removed
