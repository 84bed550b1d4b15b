"""The communicator interface every rank talks through, and ``get_communicator``.

A communicator moves numpy arrays between the ranks of a job.  Arrays go
through the buffer interface, in place, with no pickling; only small Python
objects (metrics, consistency checks) go through ``*_object`` calls.

Two implementations: :class:`~distnet.distributed.single.SingleCommunicator` (a world
of size 1, never imports mpi4py) and :class:`~distnet.distributed.mpi.MPICommunicator`
(mpi4py's buffer API).  ``get_communicator("auto")`` picks MPI only when the
process was launched by an MPI launcher with more than one rank, read from the
environment first so a plain ``python`` run never pays for importing MPI.
"""
from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from distnet.errors import DistributedError, DTypeError, InvalidArgumentError

REDUCE_OPS = ("sum", "max", "min")

# Environment variables set by MPI launchers for every rank, with the world
# size: MPICH/hydra and Intel MPI (PMI_SIZE), Open MPI (OMPI_COMM_WORLD_SIZE),
# MVAPICH (MV2_COMM_WORLD_SIZE), Slurm's PMI2/PMIx (PMIX_SIZE is not set by
# every version, so PMIX_RANK alone marks a launch of unknown size).
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")
_RANK_ONLY_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "HYDRA_CONTROL_FD")


class CallState:
    """What a communicator is doing now: the collective it is waiting in, if any.

    Read by :class:`~distnet.distributed.watchdog.Watchdog` from its own thread to
    tell a rank that waits for its peers from a rank that computes.
    """

    __slots__ = ("name", "since", "observer")

    def __init__(self) -> None:
        self.name: str | None = None
        self.since: float = 0.0
        #: Called as ``observer(name, since, until)`` when a collective ends
        #: (:class:`distnet.training.trace.Tracer` records them); None: nobody listens.
        self.observer = None

    def enter(self, name: str) -> None:
        self.since = time.monotonic()
        self.name = name

    def leave(self) -> None:
        if self.observer is not None:
            self.observer(self.name, self.since, time.monotonic())
        self.name = None


class Request:
    """A started non-blocking operation: :meth:`test` progresses it and says
    whether it is complete, :meth:`wait` blocks until it is, :meth:`cancel`
    withdraws a receive that will never be matched.  This base class is a
    completed request."""

    __slots__ = ()

    def test(self) -> bool:
        """Progress the operation; True once it is complete."""
        return True

    def wait(self) -> None:
        """Block until the operation is complete."""

    def cancel(self) -> None:
        """Withdraw the operation (then :meth:`wait` returns at once)."""


class SharedArrays:
    """Arrays in memory that every rank of one machine maps (an MPI-3 shared window).

    Made by :meth:`Communicator.shared_arrays`.  ``arrays[q]`` is rank q's
    segment (or ``arrays[0]`` the one array all ranks share).  Loads and
    stores of different ranks are ordered only by :meth:`sync` on both sides
    of a barrier; :meth:`free` is a collective.
    """

    arrays: list

    def sync(self) -> None:
        """Make this rank's stores visible and order its later loads (around a barrier)."""

    def free(self) -> None:
        """Release the memory (a collective); ``arrays`` must not be used after."""
        self.arrays = []


class Communicator(ABC):
    """A group of ranks that run the same program on their own data.

    Attributes:
        rank: this process's index in ``0 .. size - 1``.
        size: number of ranks.
        calls: a :class:`CallState`, the collective this rank waits in.

    Every collective must be called by every rank in the same order.
    """

    rank: int
    size: int

    def __init__(self) -> None:
        self.calls = CallState()

    # -- arrays (buffer API, in place) -----------------------------------
    @abstractmethod
    def allreduce_(self, arr: np.ndarray, op: str = "sum") -> np.ndarray:
        """Reduce ``arr`` element-wise over all ranks, in place.

        Args:
            arr: a C-contiguous, writable numpy array, same shape and dtype
                on every rank.
            op: ``"sum"``, ``"max"`` or ``"min"``.
        Returns:
            ``arr``, now holding the reduction.
        Example:
            >>> g = np.ones(3, np.float32); comm.allreduce_(g)  # g == size
        """

    def iallreduce_(self, arr: np.ndarray, op: str = "sum") -> "Request":
        """Start reducing ``arr`` over all ranks in place; returns a :class:`Request`.

        ``arr`` must not be read or written until the request completes.
        Every rank starts its non-blocking reductions in the same order (they
        never match a blocking :meth:`allreduce_`).  This default reduces at
        once and returns a completed request; MPI starts an ``Iallreduce``.
        Example:
            >>> req = comm.iallreduce_(bucket); ...; req.wait()
        """
        self.allreduce_(arr, op=op)
        return Request()

    @abstractmethod
    def bcast_(self, arr: np.ndarray, root: int = 0) -> np.ndarray:
        """Overwrite ``arr`` on every rank with root's ``arr``; returns ``arr``."""

    @abstractmethod
    def reduce_scatter(self, arr: np.ndarray, counts: Sequence[int] | None = None,
                       op: str = "sum") -> np.ndarray:
        """Reduce a flat array over ranks and return this rank's block of it.

        Args:
            arr: 1-d contiguous array, same length on every rank.
            counts: block length of each rank (sum = ``arr.size``); default
                :func:`block_counts` (the first ``arr.size % size`` ranks get
                one more element).
        Returns:
            a new array: this rank's block of the reduction.
        """

    @abstractmethod
    def allgather(self, block: np.ndarray, counts: Sequence[int] | None = None) -> np.ndarray:
        """Concatenate every rank's 1-d ``block`` in rank order (the inverse of
        :meth:`reduce_scatter`); ``counts`` as there, default from the blocks."""

    def reduce_scatter_block_(self, send: np.ndarray, recv: np.ndarray) -> np.ndarray:
        """Sum ``send`` (``size`` equal blocks) over ranks; ``recv`` gets this rank's block.

        Args:
            send: 1-d contiguous, ``size * recv.size`` elements on every rank.
            recv: this rank's block of the sum, written in place.
        Returns:
            ``recv``.
        """
        check_buffer(recv, "reduce_scatter_block_")
        if send.size != recv.size * self.size:
            raise InvalidArgumentError(f"reduce_scatter_block_: Expect: {self.size} x {recv.size} elements "
                                       f"Actual: {send.size}")
        np.copyto(recv, self.reduce_scatter(send, [recv.size] * self.size))
        return recv

    def allgather_(self, flat: np.ndarray) -> np.ndarray:
        """Fill ``flat`` (``size`` equal blocks) in place from every rank's own block of it."""
        check_blocks(flat, self.size, "allgather_")
        b = flat.size // self.size
        np.copyto(flat, self.allgather(np.ascontiguousarray(flat[self.rank * b: (self.rank + 1) * b]),
                                       [b] * self.size))
        return flat

    def alltoall_(self, send: np.ndarray, recv: np.ndarray) -> np.ndarray:
        """Block ``q`` of ``send`` goes to rank ``q``; block ``p`` of ``recv`` comes from rank ``p``."""
        check_buffer(recv, "alltoall_")
        if self.size != 1:
            raise DistributedError(f"alltoall_: Expect: an MPI communicator Actual: {type(self).__name__}")
        np.copyto(recv, send)
        return recv

    @abstractmethod
    def barrier(self) -> None:
        """Wait until every rank has called ``barrier``."""

    # -- the machine ------------------------------------------------------
    def split_local(self) -> "Communicator":
        """The ranks of this communicator that share this machine's memory (a
        collective).  :meth:`free` it when done."""
        return self

    def split(self, color: int, key: int = 0) -> "Communicator":
        """The ranks that pass the same ``color``, ordered by ``key`` (a collective).
        :meth:`free` it when done."""
        return self

    def shared_arrays(self, count: int, dtype, single: bool = False) -> SharedArrays:
        """``size`` arrays of ``count`` elements in memory every rank maps, or
        one (``single``) held by rank 0 (a collective; every rank on one machine)."""
        raise DistributedError(f"shared memory: Expect: an MPI communicator of ranks on one machine "
                               f"Actual: {type(self).__name__} of size {self.size}")

    def free(self) -> None:
        """Release a communicator made by :meth:`split_local` or :meth:`dup`."""

    # -- point to point (the watchdog's heartbeats) -----------------------
    def dup(self) -> "Communicator":
        """A communicator of the same ranks whose messages never mix with this one's."""
        return self

    def require_threads(self, what: str) -> None:
        """Raise a clear error unless another thread may use :meth:`dup`'s
        communicator while this one computes (``what`` needs it)."""

    def isend_(self, arr: np.ndarray, dest: int, tag: int = 0) -> Request:
        """Start sending ``arr`` to rank ``dest``; ``arr`` stays untouched until the request completes."""
        raise DistributedError(f"isend_: Expect: a communicator of 2 or more ranks Actual: size {self.size}")

    def irecv_(self, arr: np.ndarray, source: int, tag: int = 0) -> Request:
        """Start receiving into ``arr`` from rank ``source``."""
        raise DistributedError(f"irecv_: Expect: a communicator of 2 or more ranks Actual: size {self.size}")

    # -- small Python objects (pickled) ----------------------------------
    @abstractmethod
    def allgather_object(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order.  For small objects only."""

    @abstractmethod
    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """Root's ``obj`` on every rank.  For small objects only."""

    # -- ending the job ---------------------------------------------------
    @abstractmethod
    def abort(self, code: int = 1, message: str = "") -> None:
        """Print ``message`` (prefixed with the rank) and end every rank now."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} rank={self.rank} size={self.size}>"


# -- validation shared by the implementations ------------------------------
_MPI_DTYPES = frozenset(np.dtype(t) for t in (
    np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
    np.uint8, np.uint16, np.uint32, np.uint64,
))


def check_buffer(arr: Any, what: str, writable: bool = True) -> np.ndarray:
    """Raise a clear error unless ``arr`` can be sent in place by MPI."""
    if not isinstance(arr, np.ndarray):
        raise InvalidArgumentError(f"{what}: Expect: a numpy array Actual: {type(arr).__name__}")
    if arr.dtype not in _MPI_DTYPES:
        raise DTypeError(
            f"{what}: Expect: a float32/float64/integer array Actual: dtype {arr.dtype}")
    if not arr.flags.c_contiguous:
        raise InvalidArgumentError(
            f"{what}: Expect: a C-contiguous array (use np.ascontiguousarray) "
            f"Actual: a non-contiguous array of shape {arr.shape}")
    if writable and not arr.flags.writeable:
        raise InvalidArgumentError(f"{what}: Expect: a writable array Actual: a read-only array")
    return arr


def check_blocks(flat: Any, size: int, what: str) -> np.ndarray:
    """Raise a clear error unless ``flat`` is a writable 1-d buffer of ``size`` equal blocks."""
    check_buffer(flat, what)
    if flat.ndim != 1 or flat.size % size:
        raise InvalidArgumentError(f"{what}: Expect: a 1-d array of {size} equal blocks Actual: shape {flat.shape}")
    return flat


def check_op(op: str) -> str:
    if op not in REDUCE_OPS:
        raise InvalidArgumentError(f"reduce op: Expect: one of {REDUCE_OPS} Actual: {op!r}")
    return op


def check_root(root: Any, size: int) -> int:
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < size:
        raise InvalidArgumentError(f"root: Expect: a rank in 0..{size - 1} Actual: {root!r}")
    return int(root)


def block_counts(total: int, size: int) -> list[int]:
    """Split ``total`` elements into ``size`` blocks whose lengths differ by at
    most one, the first ``total % size`` blocks being one longer.

    Example:
        >>> block_counts(10, 3)
        [4, 3, 3]
    """
    base, extra = divmod(int(total), int(size))
    return [base + (1 if r < extra else 0) for r in range(size)]


def check_counts(counts: Sequence[int] | None, total: int | None, size: int, what: str) -> list[int]:
    if counts is None:
        if total is None:
            raise InvalidArgumentError(f"{what}: counts are needed")
        return block_counts(total, size)
    counts = [int(c) for c in counts]
    if len(counts) != size or any(c < 0 for c in counts):
        raise InvalidArgumentError(
            f"{what}: Expect: {size} non-negative counts, one per rank Actual: {counts}")
    if total is not None and sum(counts) != total:
        raise InvalidArgumentError(
            f"{what}: Expect: counts summing to the array length {total} Actual: {counts} (sum {sum(counts)})")
    return counts


# -- choosing a communicator -----------------------------------------------
def launched_world_size(environ: dict | None = None) -> int | None:
    """The world size an MPI launcher announced in the environment.

    Returns:
        the size (an int), ``-1`` when a launcher is detected but did not say
        the size, or ``None`` when the process was not started by a launcher.
    """
    env = os.environ if environ is None else environ
    for var in _SIZE_VARS:
        value = env.get(var)
        if value:
            try:
                return int(value)
            except ValueError:
                raise DistributedError(f"environment variable {var}: Expect: an integer Actual: {value!r}") from None
    if any(env.get(var) for var in _RANK_ONLY_VARS):
        return -1
    return None


def get_communicator(kind: str = "auto") -> Communicator:
    """Return the communicator for this process.

    Args:
        kind: ``"single"`` (a world of size 1, no MPI), ``"mpi"`` (mpi4py's
            ``COMM_WORLD``; fails clearly without mpi4py) or ``"auto"``: MPI
            when launched by ``mpiexec``/``mpirun``/``srun`` with more than one
            rank, single otherwise.  ``auto`` reads the launcher's environment
            (``PMI_SIZE``, ``OMPI_COMM_WORLD_SIZE``, ...) so a single-process
            run never imports mpi4py.
    Returns:
        a :class:`Communicator`.
    Example:
        >>> comm = get_communicator("auto")
        >>> comm.rank, comm.size
        (0, 1)
    """
    if kind not in ("auto", "single", "mpi"):
        raise InvalidArgumentError(f"communicator: Expect: 'auto', 'single' or 'mpi' Actual: {kind!r}")
    if kind == "auto":
        size = launched_world_size()
        # A launcher that does not announce the size (-1): ask MPI itself.
        kind = "mpi" if size is not None and (size > 1 or size == -1) else "single"
        if kind == "mpi" and size == -1:
            comm = _mpi_communicator()
            if comm.size > 1:
                return comm
            from distnet.distributed.single import SingleCommunicator
            return SingleCommunicator()
    if kind == "single":
        from distnet.distributed.single import SingleCommunicator
        return SingleCommunicator()
    return _mpi_communicator()


def _mpi_communicator() -> Communicator:
    try:
        from distnet.distributed.mpi import MPICommunicator
        return MPICommunicator()
    except ImportError as exc:
        raise DistributedError(
            "communicator 'mpi' needs mpi4py and an MPI library: Expect: `pip install mpi4py mpich` "
            f"Actual: import failed ({exc})") from exc
