"""Thread control: one rank's BLAS threads, so ranks sharing a machine never
oversubscribe its cores.

numpy's BLAS (OpenBLAS, MKL) starts one thread per core in every process.
Two ranks on a 2-core machine then run four compute threads on two cores and
each waits for the other (the cost is in benchmarks/README.md).
``distnet train -n N`` sets ``OMP_NUM_THREADS`` and friends before the ranks
start (distnet/runner/launcher.py); a job started with a bare ``mpiexec -n N python
script.py`` gets the same from :func:`limit_blas_threads`, which
:func:`distnet.distributed.init` calls — as ``torchrun`` sets
``OMP_NUM_THREADS=1`` for its workers.

The limit is applied at run time with threadpoolctl (the BLAS library is
already loaded by numpy by then); a thread count the user chose in the
environment is left alone.

With several threads in one rank, how long OpenBLAS's idle threads spin
matters too: by default they hold a core for the whole step, and the rank's
own threads (element-wise passes, the FFT convolution's frequencies) gain
nothing (distnet/runner/blas_spin.py).  The ``distnet`` command shortens the
spin before numpy loads; :func:`blas_spin_advice` notices a process that runs
several BLAS threads without it, and :func:`distnet.distributed.init` warns.

The kernels matter as much as the threads: OpenBLAS picks them from the CPU
unless ``OPENBLAS_CORETYPE`` names a core, and a core older than the CPU
runs every matrix product at that core's speed (benchmarks/README.md).
:func:`blas_kernel_advice` notices that case; :func:`distnet.distributed.init`
warns (:class:`PerformanceWarning`).  The variable is read when numpy loads
OpenBLAS, so only the user can change it, before Python starts.
"""
from __future__ import annotations

import contextlib
import functools
import os

from distnet.distributed.communicator import Communicator
from distnet.errors import InvalidArgumentError

#: Environment variables that choose BLAS/OpenMP thread counts; when any is
#: set, ``"auto"`` leaves the threads as the user (or the launcher) chose.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class PerformanceWarning(UserWarning):
    """A setting of the environment makes training slower than it could be."""


#: OpenBLAS core names by the widest vector instructions their kernels use
#: (``openblas_get_corename``, as threadpoolctl reports it; lower case).
_AVX512_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})
_AVX2_CORES = frozenset({"haswell", "zen"})
_LEVELS = {"avx512": 2, "avx2": 1, "older": 0}


def cpu_vector_level(cpuinfo: str | None = None) -> str | None:
    """``"avx512"``, ``"avx2"`` or ``"older"`` from the CPU flags; None when unknown (not Linux x86)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            if "avx512f" in flags:
                return "avx512"
            return "avx2" if {"avx2", "fma"} <= flags else "older"
    return None


def kernel_vector_level(core: str) -> str:
    """The vector level of an OpenBLAS core name (``"Haswell"`` -> ``"avx2"``)."""
    core = core.lower()
    return "avx512" if core in _AVX512_CORES else "avx2" if core in _AVX2_CORES else "older"


def openblas_cores() -> list[str]:
    """The kernel families (core names) of the OpenBLAS libraries loaded in this process."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [str(p["architecture"]) for p in threadpool_info()
            if p.get("internal_api") == "openblas" and p.get("architecture")]


def blas_kernel_advice(environ=None, cores: list[str] | None = None, cpu_level: str | None = None) -> str | None:
    """A sentence for the user when ``OPENBLAS_CORETYPE`` holds OpenBLAS below the CPU, else None.

    Args:
        environ: the environment (default ``os.environ``).
        cores: the OpenBLAS core names in use (default: threadpoolctl's report).
        cpu_level: the CPU's level (default: :func:`cpu_vector_level`).
    Example:
        >>> blas_kernel_advice({"OPENBLAS_CORETYPE": "Haswell"}, ["Haswell"], "avx512")[:48]
        "numpy's OpenBLAS runs its Haswell kernels (OPENB"
    """
    environ = os.environ if environ is None else environ
    pinned = environ.get("OPENBLAS_CORETYPE")
    if not pinned:
        return None
    cores = openblas_cores() if cores is None else cores
    cpu_level = cpu_vector_level() if cpu_level is None else cpu_level
    if not cores or cpu_level is None:
        return None
    slowest = min(cores, key=lambda c: _LEVELS[kernel_vector_level(c)])
    if _LEVELS[kernel_vector_level(slowest)] >= _LEVELS[cpu_level]:
        return None
    wide = {"avx512": "AVX-512", "avx2": "AVX2 and FMA"}[cpu_level]
    return (f"numpy's OpenBLAS runs its {slowest} kernels (OPENBLAS_CORETYPE={pinned} is set) on a CPU "
            f"with {wide}: matrix products run slower than with OpenBLAS's own choice (1.6x on the reference "
            f"net's dense layer on one such machine). Unset OPENBLAS_CORETYPE before starting Python.")


def _warn(advice: str | None) -> str | None:
    """Warn ``advice`` (:class:`PerformanceWarning`) at the caller of ``init``, if any; returns it."""
    if advice:
        import warnings

        warnings.warn(advice, PerformanceWarning, stacklevel=4)
    return advice


def warn_blas_kernel() -> str | None:
    """Warn (:class:`PerformanceWarning`) if :func:`blas_kernel_advice` has advice; returns it."""
    return _warn(blas_kernel_advice())


def blas_spin_advice(environ=None, threads: list[int] | None = None) -> str | None:
    """A sentence for the user when OpenBLAS runs several threads that spin long when idle, else None.

    Args:
        environ: the environment (default ``os.environ``).
        threads: the thread counts of the OpenBLAS libraries loaded (default: threadpoolctl's report).
    Example:
        >>> blas_spin_advice({}, [2])[:40]
        "OpenBLAS's idle threads spin for about a"
        >>> blas_spin_advice({"OPENBLAS_THREAD_TIMEOUT": "20"}, [2]) is None
        True
    """
    from distnet.runner.blas_spin import BRIEF, SPIN, VARIABLE, spins_briefly

    if threads is None:
        try:
            from threadpoolctl import threadpool_info
        except ImportError:
            return None
        threads = [int(p.get("num_threads") or 1) for p in threadpool_info() if p.get("internal_api") == "openblas"]
    if not any(n > 1 for n in threads) or spins_briefly(environ):
        return None
    return (f"OpenBLAS's idle threads spin for about a tenth of a second after each matrix product "
            f"({VARIABLE} unset or above {BRIEF}) and hold a core this rank's other threads need: a step on "
            f"several threads per process runs slower than it could. Set {VARIABLE}={SPIN} before "
            f"starting Python, as the distnet command does.")


def warn_blas_spin() -> str | None:
    """Warn (:class:`PerformanceWarning`) if :func:`blas_spin_advice` has advice; returns it."""
    return _warn(blas_spin_advice())


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def ranks_on_this_host(comm: Communicator) -> int:
    """How many ranks of ``comm`` share this machine (a collective)."""
    if comm.size == 1:
        return 1
    local = comm.split_local()
    try:
        return local.size
    finally:
        local.free()


@functools.lru_cache(maxsize=1)
def _blas_libraries() -> tuple:
    """threadpoolctl's controllers of the BLAS libraries loaded in this process (found once: a few
    hundred microseconds; the libraries numpy loaded stay)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return ()
    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


@contextlib.contextmanager
def one_blas_thread():
    """BLAS on one thread inside the block, its thread counts as before after it.

    For a block whose own threads call BLAS side by side (``nn._rows.over_parts_one_blas_thread``).
    The count is the process's: a product another thread starts meanwhile runs on one thread too.
    """
    libraries = _blas_libraries()
    before = [lib.num_threads for lib in libraries]
    for lib in libraries:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, count in zip(libraries, before):
            lib.set_num_threads(count)


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
