"""MPI through mpi4py's buffer API: numpy arrays are reduced and broadcast in
place (``MPI.IN_PLACE``), never pickled.  Importing this module initialises
MPI (mpi4py asks for ``MPI_THREAD_MULTIPLE``, which the watchdog needs).

This is the one module of the package that imports mpi4py: every collective,
shared-memory window and message goes through :class:`MPICommunicator`,
which records each blocking call in ``calls`` for the watchdog.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Sequence

import numpy as np
from mpi4py import MPI

from distnet.distributed.communicator import (
    CallState,
    Communicator,
    Request,
    SharedArrays,
    check_blocks,
    check_buffer,
    check_counts,
    check_op,
    check_root,
)
from distnet.errors import DistributedError, InvalidArgumentError

# Seconds between writing the abort message and MPI_Abort.
ABORT_FLUSH_DELAY = 0.5

_OPS = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}


class MPIRequest(Request):
    """An mpi4py request; waiting in it shows as a collective to the watchdog."""

    __slots__ = ("_calls", "_done", "_req")

    def __init__(self, req: "MPI.Request", calls: CallState | None) -> None:
        self._req, self._calls, self._done = req, calls, False

    def test(self) -> bool:
        if not self._done:
            self._done = bool(self._req.Test())
        return self._done

    def wait(self) -> None:
        if self._done:
            return
        if self._calls is None:   # a message, not a collective
            self._req.Wait()
        else:
            self._calls.enter("iallreduce")
            try:
                self._req.Wait()
            finally:
                self._calls.leave()
        self._done = True

    def cancel(self) -> None:
        if not self._done:
            self._req.Cancel()


class MPISharedArrays(SharedArrays):
    """An MPI-3 shared window (``MPI_Win_allocate_shared``) seen as numpy arrays.

    MPICH backs it with a file in ``/dev/shm``.  Each segment is rounded up to
    whole pages by the caller, so every rank's segment starts on its own page.
    The window stays in a passive-target epoch (``Lock_all``) for its life;
    :meth:`sync` is ``MPI_Win_sync``, the portable way to order loads and
    stores on shared windows around a barrier.
    """

    def __init__(self, comm: "MPI.Intracomm", rank: int, size: int, nbytes: int, count: int,
                 dtype: np.dtype, single: bool) -> None:
        mine = nbytes if (not single or rank == 0) else 0
        # At least one byte-page: some MPIs return no address for an empty segment.
        self.window = MPI.Win.Allocate_shared(max(mine, 4096), dtype.itemsize, comm=comm)
        self.window.Lock_all(MPI.MODE_NOCHECK)
        self.arrays = []
        for q in ([0] if single else range(size)):
            buf, _ = self.window.Shared_query(q)
            self.arrays.append(np.frombuffer(buf, dtype=dtype, count=count))

    def sync(self) -> None:
        self.window.Sync()

    def free(self) -> None:
        self.arrays = []
        self.window.Unlock_all()
        self.window.Free()


class MPICommunicator(Communicator):
    """A communicator over an mpi4py intracommunicator (``COMM_WORLD`` by default).

    Args:
        comm: an ``mpi4py.MPI.Intracomm``; default ``MPI.COMM_WORLD``.
    Example:
        $ mpiexec -n 2 python -c "from distnet.distributed import get_communicator as g; \\
              import numpy as np; c = g('mpi'); a = np.ones(2); c.allreduce_(a); print(a)"
        [2. 2.]
        [2. 2.]
    """

    def __init__(self, comm: "MPI.Intracomm | None" = None) -> None:
        super().__init__()
        self.mpi_comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.mpi_comm.Get_rank()
        self.size = self.mpi_comm.Get_size()

    # Every collective records itself in ``self.calls`` for the watchdog.
    def allreduce_(self, arr: np.ndarray, op: str = "sum") -> np.ndarray:
        check_buffer(arr, "allreduce_")
        mpi_op = _OPS[check_op(op)]
        self.calls.enter("allreduce")
        try:
            self.mpi_comm.Allreduce(MPI.IN_PLACE, arr, op=mpi_op)
        finally:
            self.calls.leave()
        return arr

    def iallreduce_(self, arr: np.ndarray, op: str = "sum") -> "MPIRequest":
        """``MPI_Iallreduce`` in place; the request's ``test``/``wait`` progress it.

        Without an asynchronous progress thread, MPI moves the data only
        inside MPI calls: call ``test()`` now and then while computing.
        """
        check_buffer(arr, "iallreduce_")
        mpi_op = _OPS[check_op(op)]
        return MPIRequest(self.mpi_comm.Iallreduce(MPI.IN_PLACE, arr, op=mpi_op), self.calls)

    def bcast_(self, arr: np.ndarray, root: int = 0) -> np.ndarray:
        check_buffer(arr, "bcast_")
        root = check_root(root, self.size)
        self.calls.enter("bcast")
        try:
            self.mpi_comm.Bcast(arr, root=root)
        finally:
            self.calls.leave()
        return arr

    def reduce_scatter(self, arr: np.ndarray, counts: Sequence[int] | None = None,
                       op: str = "sum") -> np.ndarray:
        check_buffer(arr, "reduce_scatter", writable=False)
        if arr.ndim != 1:
            raise InvalidArgumentError(f"reduce_scatter: Expect: a 1-d array Actual: shape {arr.shape}")
        counts = check_counts(counts, arr.size, self.size, "reduce_scatter")
        mpi_op = _OPS[check_op(op)]
        out = np.empty(counts[self.rank], dtype=arr.dtype)
        self.calls.enter("reduce_scatter")
        try:
            self.mpi_comm.Reduce_scatter(arr, out, counts, op=mpi_op)
        finally:
            self.calls.leave()
        return out

    def allgather(self, block: np.ndarray, counts: Sequence[int] | None = None) -> np.ndarray:
        check_buffer(block, "allgather", writable=False)
        if block.ndim != 1:
            raise InvalidArgumentError(f"allgather: Expect: a 1-d array Actual: shape {block.shape}")
        if counts is None:
            sizes = np.empty(self.size, dtype=np.int64)
            self.calls.enter("allgather")
            try:
                self.mpi_comm.Allgather(np.array([block.size], dtype=np.int64), sizes)
            finally:
                self.calls.leave()
            counts = sizes.tolist()
        counts = check_counts(counts, None, self.size, "allgather")
        if counts[self.rank] != block.size:
            raise InvalidArgumentError(
                f"allgather: rank {self.rank}'s block: Expect: {counts[self.rank]} elements "
                f"(counts {counts}) Actual: {block.size}")
        out = np.empty(sum(counts), dtype=block.dtype)
        self.calls.enter("allgather")
        try:
            self.mpi_comm.Allgatherv(block, (out, counts))
        finally:
            self.calls.leave()
        return out

    def reduce_scatter_block_(self, send: np.ndarray, recv: np.ndarray) -> np.ndarray:
        check_buffer(send, "reduce_scatter_block_", writable=False)
        check_buffer(recv, "reduce_scatter_block_")
        if send.size != recv.size * self.size:
            raise InvalidArgumentError(f"reduce_scatter_block_: Expect: {self.size} x {recv.size} elements "
                                       f"Actual: {send.size}")
        self.calls.enter("reduce_scatter")
        try:
            self.mpi_comm.Reduce_scatter_block(send, recv)
        finally:
            self.calls.leave()
        return recv

    def allgather_(self, flat: np.ndarray) -> np.ndarray:
        check_blocks(flat, self.size, "allgather_")
        self.calls.enter("allgather")
        try:
            self.mpi_comm.Allgather(MPI.IN_PLACE, flat)
        finally:
            self.calls.leave()
        return flat

    def alltoall_(self, send: np.ndarray, recv: np.ndarray) -> np.ndarray:
        check_buffer(send, "alltoall_", writable=False)
        check_buffer(recv, "alltoall_")
        self.calls.enter("alltoall")
        try:
            self.mpi_comm.Alltoall(send, recv)
        finally:
            self.calls.leave()
        return recv

    def split_local(self) -> "MPICommunicator":
        self.calls.enter("split_local")
        try:
            return MPICommunicator(self.mpi_comm.Split_type(MPI.COMM_TYPE_SHARED))
        finally:
            self.calls.leave()

    def split(self, color: int, key: int = 0) -> "MPICommunicator":
        self.calls.enter("split")
        try:
            return MPICommunicator(self.mpi_comm.Split(int(color), int(key)))
        finally:
            self.calls.leave()

    def shared_arrays(self, count: int, dtype, single: bool = False) -> MPISharedArrays:
        from distnet.distributed.shared_memory import segment_bytes

        dtype = np.dtype(dtype)
        self.calls.enter("shared_window")
        try:
            return MPISharedArrays(self.mpi_comm, self.rank, self.size, segment_bytes(count, dtype), count,
                                   dtype, single)
        finally:
            self.calls.leave()

    def free(self) -> None:
        if self.mpi_comm not in (MPI.COMM_WORLD, MPI.COMM_SELF):
            self.mpi_comm.Free()

    def dup(self) -> "MPICommunicator":
        return MPICommunicator(self.mpi_comm.Dup())

    def require_threads(self, what: str) -> None:
        if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
            raise DistributedError(
                f"{what} needs MPI_THREAD_MULTIPLE: Expect: mpi4py.rc.thread_level = 'multiple' (the default) "
                f"before importing mpi4py.MPI Actual: thread level {MPI.Query_thread()}")

    def isend_(self, arr: np.ndarray, dest: int, tag: int = 0) -> MPIRequest:
        return MPIRequest(self.mpi_comm.Isend(check_buffer(arr, "isend_", writable=False), dest=dest, tag=tag),
                          None)

    def irecv_(self, arr: np.ndarray, source: int, tag: int = 0) -> MPIRequest:
        return MPIRequest(self.mpi_comm.Irecv(check_buffer(arr, "irecv_"), source=source, tag=tag), None)

    def barrier(self) -> None:
        self.calls.enter("barrier")
        try:
            self.mpi_comm.Barrier()
        finally:
            self.calls.leave()

    def allgather_object(self, obj: Any) -> list:
        self.calls.enter("allgather_object")
        try:
            return self.mpi_comm.allgather(obj)
        finally:
            self.calls.leave()

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        root = check_root(root, self.size)
        self.calls.enter("bcast_object")
        try:
            return self.mpi_comm.bcast(obj, root=root)
        finally:
            self.calls.leave()

    def abort(self, code: int = 1, message: str = "") -> None:
        """Print ``message`` prefixed with the rank, then ``MPI_Abort`` the
        whole world: the launcher ends every rank with a non-zero status."""
        if message:
            sys.stderr.write("".join(f"[rank {self.rank}] {line}\n" for line in message.rstrip("\n").split("\n")))
        sys.stderr.flush()
        sys.stdout.flush()
        # MPI_Abort makes hydra kill every process, its proxies included; a
        # proxy killed before forwarding our output loses it.  Give it time.
        time.sleep(ABORT_FLUSH_DELAY)
        MPI.COMM_WORLD.Abort(int(code) if code else 1)
        # MPI_Abort can return when the launcher is unreachable (a cut link):
        # this rank must still end, not linger in a collective forever.
        os._exit(int(code) if code else 1)
