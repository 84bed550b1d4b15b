"""Thread control: one rank's BLAS threads, so ranks sharing a machine never
oversubscribe its cores.

numpy's BLAS (OpenBLAS, MKL) starts one thread per core in every process.
Two ranks on a 2-core machine then run four compute threads on two cores and
each waits for the other: measured on the reference conv net, 2 ranks, global
batch 100, 86 ms per step against 40 ms with one thread per rank.
``distnet train -n N`` sets ``OMP_NUM_THREADS`` and friends before the ranks
start (distnet/launcher.py); a job started with a bare ``mpiexec -n N python
script.py`` gets the same from :func:`limit_blas_threads`, which the
:class:`~distnet.trainer.Trainer` calls (``Trainer(blas_threads="auto")``,
the default) — as ``torchrun`` sets ``OMP_NUM_THREADS=1`` for its workers.

The limit is applied at run time with threadpoolctl (the BLAS library is
already loaded by numpy by then); a thread count the user chose in the
environment is left alone.
"""
from __future__ import annotations

import os

from distnet.dist.communicator import Communicator
from distnet.errors import InvalidArgumentError

#: Environment variables that choose BLAS/OpenMP thread counts; when any is
#: set, ``"auto"`` leaves the threads as the user (or the launcher) chose.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def ranks_on_this_host(comm: Communicator) -> int:
    """How many ranks of ``comm`` share this machine (a collective under MPI)."""
    mpi_comm = getattr(comm, "mpi_comm", None)
    if comm.size == 1 or mpi_comm is None:
        return 1
    from mpi4py import MPI

    local = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return local.Get_size()
    finally:
        local.Free()


def limit_blas_threads(comm: Communicator, threads: int | str | None = "auto") -> int | None:
    """Set this rank's BLAS threads; returns the count set, or None if untouched.

    Args:
        comm: the job's communicator.  With ``"auto"`` this is a collective
            (every rank of ``comm`` must call it).
        threads: ``"auto"``: with more than one rank and none of
            :data:`THREAD_VARIABLES` set, ``max(1, cores // ranks on this
            machine)``; otherwise untouched.  An int > 0: exactly that many.
            None: untouched.
    Example:
        >>> limit_blas_threads(comm)   # 2 ranks on a 2-core machine
        1
    """
    if threads is None:
        return None
    if threads == "auto":
        local = ranks_on_this_host(comm)   # first: collective whatever this rank's environment says
        if local == 1 or any(os.environ.get(v) for v in THREAD_VARIABLES):
            return None
        threads = max(1, usable_cores() // local)
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidArgumentError(f"blas_threads: Expect: 'auto', None or an int > 0 Actual: {threads!r}")
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
    return threads
