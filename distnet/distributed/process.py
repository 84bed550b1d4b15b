"""Setting up a training process, once, before building a Trainer: :func:`init`.

These settings change the whole process, so no object makes them as a side
effect of its construction: ``distnet train`` calls :func:`init`, and a
script that trains from Python calls it first (``torchrun`` and Horovod ask
the same of their users: ``init_process_group()``, ``hvd.init()``).
"""
from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass

from distnet.distributed.communicator import Communicator, get_communicator


@dataclass
class Process:
    """What :func:`init` did.

    Attributes:
        comm: the job's communicator.
        blas_threads: the BLAS threads set for this rank, or None if left alone.
        malloc_tuned: whether the allocator setting was applied.
        abort_hook: the installed hook (``uninstall()`` restores the previous
            ones), or None.
    """

    comm: Communicator
    blas_threads: int | None
    malloc_tuned: bool
    abort_hook: object | None


def tune_malloc() -> bool:
    """Keep freed large blocks in the C heap for reuse (glibc only).

    Every step allocates and frees activations and gradients of up to tens
    of MB.  By default glibc serves each with a fresh ``mmap`` and unmaps it
    when freed, so every page is faulted in and zeroed again at every step
    (the cost is in benchmarks/README.md).  This raises the mmap threshold to
    glibc's maximum (32 MB) and the heap trim threshold to 1 GB for the whole
    process, as ``MALLOC_MMAP_THRESHOLD_=33554432
    MALLOC_TRIM_THRESHOLD_=1073741824`` in the environment would: the peak
    heap stays allocated instead of being returned to the system.

    Returns:
        True when applied, False where ``mallopt`` is not glibc's (no change).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):   # glibc, whose mallopt takes these parameters
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    m_trim_threshold, m_mmap_threshold = -1, -3   # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


def init(comm: Communicator | None = None, *, blas_threads: int | str | None = "auto",
         malloc_tuning: bool = True, abort_on_exception: bool | None = None) -> Process:
    """Prepare this process to train; call it once, on every rank, before building a Trainer.

    Args:
        comm: the communicator (default: ``get_communicator("auto")``).
        blas_threads: this rank's BLAS threads: ``"auto"`` shares the
            machine's cores among the ranks on it unless the environment
            chose (:func:`~distnet.distributed.threads.limit_blas_threads`;
            a collective), an int, or None to leave them.
        malloc_tuning: apply :func:`tune_malloc`.
        abort_on_exception: end every rank when one raises an unhandled
            exception, instead of leaving the others in a collective
            (:func:`~distnet.distributed.abort.install_abort_hook`); default:
            with more than one rank.
    On rank 0 it warns (:class:`~distnet.distributed.threads.PerformanceWarning`)
    about an ``OPENBLAS_CORETYPE`` older than the CPU and about several BLAS
    threads that spin long when idle (distnet/runner/blas_spin.py).
    With several ranks it also removes the name of MPICH's segment file in
    ``/dev/shm`` once every rank has it mapped
    (:func:`~distnet.distributed.shared_memory.unlink_segment_files`), so a
    killed job leaves no file there.

    Returns:
        a :class:`Process`; ``.comm`` is the communicator to give the Trainer.
    Example:
        >>> proc = distnet.distributed.init()
        >>> trainer = Trainer(model, "sparse_softmax_cross_entropy", opt, train, comm=proc.comm, steps=100)
    """
    from distnet.distributed.abort import install_abort_hook
    from distnet.distributed.shared_memory import unlink_segment_files
    from distnet.distributed.threads import limit_blas_threads, warn_blas_kernel, warn_blas_spin

    comm = comm if comm is not None else get_communicator("auto")
    unlink_segment_files(comm)   # a killed rank then leaves no file in /dev/shm
    threads = limit_blas_threads(comm, blas_threads)
    if comm.rank == 0:
        warn_blas_kernel()   # an OPENBLAS_CORETYPE older than the CPU
        warn_blas_spin()     # several BLAS threads that spin long when idle
    tuned = tune_malloc() if malloc_tuning else False
    if abort_on_exception is None:
        abort_on_exception = comm.size > 1
    hook = install_abort_hook(comm) if abort_on_exception else None
    return Process(comm=comm, blas_threads=threads, malloc_tuned=tuned, abort_hook=hook)
