"""Sharded optimizer and EMA (ZeRO stage 1): each rank updates 1/N of the weights.

The trainable variables are laid out, in sorted-name order, in one flat
parameter buffer; the variables' ``data`` become views into it.  The buffer
is cut into N consecutive blocks of ``ceil(n / N)`` elements (zero padding
at the end; a block may cut through a variable).  Each step:

1. the gradients are packed as for the replicated path
   (:class:`~distnet.distributed.grad_sync.GradientSynchronizer`) and
   *reduce-scattered*: rank r receives the sample-weighted mean of its block;
2. one small all-reduce carries the sample count, the metrics and a
   non-finite flag of every block, so every rank takes the same decision;
3. the regularization gradient is added for the rank's block only (once);
4. the optimizer and the EMA update only the *pieces* of the variables that
   fall in the block: a piece is a 1-d :class:`Variable` with the variable's
   name whose ``data`` is a view into the block, so slots and shadows exist
   only for 1/N of the weights (keyed by variable name, as everywhere);
5. the blocks are all-gathered in place into the flat buffer, hence into
   every rank's variables.

Reduce-scatter + all-gather move the same bytes as one all-reduce (that is
how ring all-reduce works), and the element-wise update and the EMA cost 1/N.

When every rank runs on one machine and ``shared_memory`` is ``"auto"`` (the
default of job files; the Trainer's is False) or True, both collectives go through memory the ranks share instead
(:mod:`distnet.distributed.shared_memory`): the flat parameter buffer exists once
per machine, the gradient buffer is each rank's segment of a shared window,
rank r sums block r of every segment itself (1 after a barrier), and a
barrier replaces the all-gather (5).  Same results (for two ranks the same
bits: a + b either way round); 3.66 -> 1.02 ms per step for the reference
net's 25.7 MB on 2 ranks here.  Every write to the shared parameters outside
the step (restoring a checkpoint, evaluating with the EMA weights) is fenced
by :meth:`ShardedSynchronizer.writing_params`.

Checkpoints hold the full state: :meth:`ShardedSynchronizer.gather_pieces`
gathers slot and shadow blocks into full arrays keyed by variable name, and
:meth:`ShardedSynchronizer.local_pieces` cuts a full state into this rank's
pieces, so a checkpoint written sharded loads replicated, on any world size,
and vice versa.  (ZeRO/DeepSpeed and PyTorch's ZeroRedundancyOptimizer do the
same: consolidate to full tensors on save.)
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np

from distnet.distributed.abort import CollectiveError
from distnet.distributed.communicator import Communicator
from distnet.distributed.grad_sync import GradientSynchronizer, SyncResult
from distnet.errors import DTypeError, DistributedError, InvalidArgumentError
from distnet.tensor import Variable

#: Elements per chunk of the shared-memory reduction (256 KiB of float32: sum
#: and finite check of a chunk while it is in the core's cache).
SHARED_CHUNK = 1 << 16


@dataclass(frozen=True)
class Piece:
    """The part of variable ``index`` held by this rank.

    Attributes:
        index: the variable's position in the synchroniser's ``variables``.
        name: the variable's name.
        start, stop: element range within the flattened variable.
        lo: offset of the piece in this rank's block.
    """

    index: int
    name: str
    start: int
    stop: int
    lo: int

    @property
    def size(self) -> int:
        return self.stop - self.start


class ShardedSynchronizer(GradientSynchronizer):
    """Reduce-scatter gradients and all-gather parameters (ZeRO stage 1).

    Args:
        comm: the job's communicator.
        variables: the trainable variables (unique names, one floating
            dtype); their ``data`` is moved into a flat buffer (views), so
            keep using the same :class:`Variable` objects.
        scalar_names, compression: as for :class:`GradientSynchronizer`.
        shared_memory: ``"auto"`` (default): through shared memory when
            every rank is on one machine and there is no compression; True:
            that, or an error saying why not; False: MPI collectives always.
            The same on every rank (a collective choice).
    Example:
        >>> sync = ShardedSynchronizer(comm, variables, scalar_names=("loss_sum",))
        >>> opt.build(sync.pieces); ema.build(sync.pieces)
        >>> res = sync.sync(grads, n_local, global_count=n_global, regularization_grads=reg)
        >>> if res.is_finite:
        ...     opt.apply_gradients(res.grads_and_vars()); ema.apply(sync.pieces)
        ...     sync.gather_params()
    """

    def __init__(self, comm: Communicator, variables: Sequence, scalar_names: Sequence[str] = (),
                 compression: str = "none", shared_memory: bool | str = "auto") -> None:
        # compression="float16": the reduce-scatter sends float16 gradients and
        # sums them in float32 (the block stays float32); parameters go as float32.
        super().__init__(comm, variables, bucket_bytes=None, scalar_names=scalar_names, compression=compression)
        dtypes = sorted({np.dtype(v.dtype).name for v in self.variables})
        if len(dtypes) != 1 or not np.issubdtype(np.dtype(dtypes[0]), np.floating):
            raise DTypeError(f"shard_optimizer: Expect: trainable variables of one floating dtype "
                             f"Actual: dtypes {dtypes}")
        self.param_dtype = np.dtype(dtypes[0])
        total = self._grad_part.size
        # Equal blocks of ceil(total / N) elements, the buffers zero-padded at
        # the end: MPI's Reduce_scatter_block and in-place Allgather (equal
        # counts) ran 2-9x faster here than their v-variants for 13-26 MB.
        size = comm.size
        # Blocks are a multiple of 16 elements (64 bytes), so every rank's block
        # starts on a cache line.
        block = -(-total // (size * 16)) * 16
        self.padded = block * size
        self.block_size = block
        lo = min(total, comm.rank * block)
        hi = min(total, lo + block)
        self.block_range = (lo, hi)           # real (unpadded) elements of this rank
        self.total = total

        # Re-lay the sync buffer with the padding: [gradients, zeros, count, scalars...]
        # (the gradients at the aligned start of the allocation).
        itemsize = self.dtype.itemsize
        base = self._grad_part.__array_interface__["data"][0]
        self._offsets: list = [int((self._views[i].__array_interface__["data"][0] - base) // itemsize)
                               for i in range(len(self.variables))]
        n_scalars = self._scalars.size
        self._closed = False
        self.shared = self._choose_shared_memory(shared_memory)
        self._segments: list[np.ndarray] = []
        self._windows: list = []   # kept alive: the arrays below view their memory
        if self.shared:
            from distnet.distributed.shared_memory import SharedSegments

            grads = SharedSegments(comm, self.padded + n_scalars, self.dtype)
            self._windows.append(grads)
            self.buffer = grads.arrays[comm.rank]
            self.buffer[:] = 0
            self._segments = [seg[:self.padded] for seg in grads.arrays]
        else:
            self.buffer = np.zeros(self.padded + n_scalars, dtype=self.dtype)
        self._grad_part = self.buffer[:self.padded]
        self._scalars = self.buffer[self.padded:]
        self.buckets = [self.buffer]
        self._views = [self._grad_part[off: off + v.data.size].reshape(v.shape)
                       for off, v in zip(self._offsets, self.variables)]

        # The flat parameter buffer, laid out like the gradient part of the
        # sync buffer; the variables' data become views into it.
        if self.shared:
            # One copy per machine: rank 0 fills it (the variables are equal on every
            # rank by now), then every rank's variables view it.
            from distnet.distributed.shared_memory import SharedSegments

            window = SharedSegments(comm, self.padded, self.param_dtype, single=True)
            self._windows.append(window)
            self.params = window.arrays[0]
            if comm.rank == 0:
                self.params[:] = 0
                for off, v in zip(self._offsets, self.variables):
                    np.copyto(self.params[off: off + v.data.size].reshape(v.shape), v.data)
            self._shared_barrier()
        else:
            self.params = np.zeros(self.padded, dtype=self.param_dtype)
            for off, v in zip(self._offsets, self.variables):
                np.copyto(self.params[off: off + v.data.size].reshape(v.shape), v.data)
        self.grad_block = np.zeros(block, dtype=self.dtype)
        self.pieces_info: list[Piece] = []
        for i in sorted(range(len(self.variables)), key=lambda k: self._offsets[k]):
            a = max(lo, self._offsets[i])
            b = min(hi, self._offsets[i] + self.variables[i].data.size)
            if a < b:
                self.pieces_info.append(Piece(i, self.names[i], a - self._offsets[i], b - self._offsets[i], a - lo))
        # A piece is a 1-d Variable named like its variable, its data a view of the block.
        self.pieces: list[Variable] = [Variable(np.zeros(0, dtype=self.param_dtype), name=p.name)
                                       for p in self.pieces_info]
        self._bind_params(self.params)
        self._grad_pieces = [self.grad_block[p.lo: p.lo + p.size] for p in self.pieces_info]
        # [count, scalars..., non-finite flag], summed over ranks.
        self._small = np.zeros(2 + len(self.scalar_names), dtype=np.float64)

    def _choose_shared_memory(self, shared_memory) -> bool:
        auto = isinstance(shared_memory, str) and shared_memory == "auto"
        if not (auto or isinstance(shared_memory, (bool, np.bool_))):
            raise InvalidArgumentError(f"shared_memory: Expect: 'auto', True or False Actual: {shared_memory!r}")
        if not auto and not shared_memory:
            return False
        from distnet.distributed.shared_memory import one_machine

        possible = one_machine(self.comm)   # a collective: called on every rank alike
        if not auto:   # True: possible, or an error saying why not
            if not possible:
                raise InvalidArgumentError(
                    "shared_memory=True: Expect: an MPI job of 2 or more ranks on one machine Actual: "
                    + (f"{self.comm.size} rank(s)" if self.comm.size == 1 or getattr(self.comm, "mpi_comm", None)
                       is None else "ranks on several machines"))
            if self.compression != "none":
                raise InvalidArgumentError(
                    "shared_memory=True with compression: Expect: one of them (shared memory moves no messages "
                    "to compress)")
        if not possible or self.compression != "none":
            return False
        from distnet.distributed.shared_memory import SHM_DIR, room_for, segment_bytes

        need = (self.comm.size * segment_bytes(self.padded + self._scalars.size, self.dtype)
                + segment_bytes(self.padded, self.param_dtype))
        enough, free = room_for(self.comm, need)   # a collective; every rank gets the same answer
        if enough:
            return True
        why = (f"{need / 1e6:.1f} MB free in {SHM_DIR} for the weights and every rank's gradients Actual: "
               + (f"{free / 1e6:.1f} MB free" if free is not None else f"no {SHM_DIR}")
               + " (a container gets 64 MB there by default: docker run --shm-size, compose shm_size)")
        if not auto:
            raise InvalidArgumentError(f"shared_memory=True: Expect: {why}")
        if self.comm.rank == 0:
            import warnings

            from distnet.distributed.threads import PerformanceWarning

            warnings.warn(f"shared_memory: the sharded optimizer uses MPI messages (slower): Expect: {why}",
                          PerformanceWarning, stacklevel=4)
        return False

    def _bind_params(self, params: np.ndarray) -> None:
        """Make ``params`` the flat parameter buffer that the variables, this
        rank's block and its pieces view."""
        self.params = params
        for off, v in zip(self._offsets, self.variables):
            v.data = params[off: off + v.data.size].reshape(v.shape)
        lo, hi = self.block_range
        self.block = params[lo:hi]
        for piece, p in zip(self.pieces, self.pieces_info):
            piece.data = self.block[p.lo: p.lo + p.size]

    def _shared_barrier(self) -> None:
        """A barrier with ``MPI_Win_sync`` on both sides (stores before it seen by loads after it)."""
        for w in self._windows:
            w.sync()
        self.comm.barrier()
        for w in self._windows:
            w.sync()

    def _check_open(self) -> None:
        if self._closed:
            raise DistributedError("the sharded synchroniser is closed (Trainer.close()): it trains no more")

    # -- collectives on preallocated buffers ------------------------------
    def _reduce_scatter_shared(self) -> float:
        """This rank's block summed over every rank's segment; returns its sum of squares.

        After a barrier: every rank has written its gradients and has stopped
        reading the parameters (the update that follows writes them).
        """
        self._shared_barrier()
        lo = self.comm.rank * self.block_size
        first, *rest = self._segments
        gb = self.grad_block
        squares = 0.0
        with np.errstate(over="ignore", invalid="ignore"):
            for a in range(0, self.block_size, SHARED_CHUNK):
                b = min(a + SHARED_CHUNK, self.block_size)
                out = gb[a:b]
                np.add(first[lo + a: lo + b], rest[0][lo + a: lo + b], out=out)
                for seg in rest[1:]:
                    out += seg[lo + a: lo + b]
                squares += float(np.dot(out, out))
        return squares

    def _reduce_scatter(self) -> None:
        mpi_comm = getattr(self.comm, "mpi_comm", None)
        if self.compressor is not None:
            self.compressor.reduce_scatter_block(self._grad_part, self.grad_block)
        elif self.comm.size == 1:
            np.copyto(self.grad_block, self._grad_part)
        elif mpi_comm is not None:
            self.comm.calls.enter("reduce_scatter")
            try:
                mpi_comm.Reduce_scatter_block(self._grad_part, self.grad_block)
            finally:
                self.comm.calls.leave()
        else:
            counts = [self.block_size] * self.comm.size
            np.copyto(self.grad_block, self.comm.reduce_scatter(self._grad_part, counts))

    def _allgather(self, flat: np.ndarray) -> np.ndarray:
        """Fill ``flat`` (padded length) from every rank's block of it, in place."""
        if self.comm.size == 1:
            return flat
        mpi_comm = getattr(self.comm, "mpi_comm", None)
        if mpi_comm is not None:
            from mpi4py import MPI

            self.comm.calls.enter("allgather")
            try:
                mpi_comm.Allgather(MPI.IN_PLACE, flat)
            finally:
                self.comm.calls.leave()
        else:
            b, r = self.block_size, self.comm.rank
            np.copyto(flat, self.comm.allgather(np.ascontiguousarray(flat[r * b: (r + 1) * b]),
                                                [b] * self.comm.size))
        return flat

    # -- the step ---------------------------------------------------------
    def sync(self, grads, local_count: int, scalars: Mapping[str, float] | None = None,
             regularization_grads=None, global_count: int | None = None,
             prescaled: bool = False) -> SyncResult:
        """Like :meth:`GradientSynchronizer.sync`, but each rank gets only its block.

        Returns:
            a :class:`SyncResult` whose ``grads``/``variables`` are this rank's
            pieces (views, valid until the next ``sync``); ``is_finite`` is
            global (any non-finite element on any rank's block).
        """
        self._check_open()
        local_count, global_count, scalars = self._pack(grads, local_count, scalars, global_count, prescaled)
        squares = self._reduce_scatter_shared() if self.shared else None
        if not self.shared:
            self._reduce_scatter()
        gb = self.grad_block
        small = self._small
        small[0] = local_count
        for k, name in enumerate(self.scalar_names, start=1):
            small[k] = float(scalars.get(name, 0.0))
        with np.errstate(over="ignore", invalid="ignore"):
            # Each rank checks its reduced block (1/N of the buffer): sum(x*x)
            # is finite only if every element is (one BLAS pass); an overflow
            # of finite values is told apart by the exact check.  The flags
            # ride in the small all-reduce, so every rank decides the same.
            # (The shared-memory reduction computed the sum of squares chunk by chunk.)
            finite = bool(np.isfinite(np.dot(gb, gb) if squares is None else squares) or np.isfinite(gb).all())
        small[-1] = 0.0 if finite else 1.0
        if self.comm.size > 1:
            self.comm.allreduce_(small)
        finite = small[-1] == 0.0 and bool(np.isfinite(small[:-1]).all())
        total = int(round(float(small[0])))
        if total == 0:
            raise CollectiveError("gradient sync: the global batch is empty (every rank passed local_count=0)")
        if global_count is None:
            if not prescaled:
                np.divide(gb, total, out=gb)
        elif total != global_count:
            raise DistributedError(
                f"gradient sync: global_count: Expect: the sum of every rank's local_count = {total} "
                f"Actual: {global_count} on rank {self.comm.rank}")
        if regularization_grads is not None:
            reg = self._aligned(regularization_grads, "regularization_grads")
            for p, gp in zip(self.pieces_info, self._grad_pieces):
                g = reg[p.index]
                if g is not None:
                    g = self._check_grad(p.index, g, "regularization gradient")
                    np.add(gp, g.reshape(-1)[p.start: p.stop], out=gp, casting="same_kind")
        return SyncResult(
            grads=list(self._grad_pieces), variables=list(self.pieces),
            scalars={name: float(small[k]) for k, name in enumerate(self.scalar_names, start=1)},
            global_count=total, is_finite=finite,
        )

    def gather_params(self) -> None:
        """All-gather every rank's updated block into the variables (in place).

        Through shared memory, a barrier: every rank's block is written.
        """
        self._check_open()
        if self.shared:
            self._shared_barrier()
        else:
            self._allgather(self.params)

    @contextmanager
    def writing_params(self) -> Iterator[None]:
        """Fence a write of the variables outside the step (a collective).

        Through shared memory the parameters exist once per machine: every
        rank waits until all have stopped reading them, writes (the same
        values on every rank, so the concurrent writes agree), and waits
        until all have written.  Otherwise nothing to wait for.
        """
        if not self.shared:
            yield
            return
        self._shared_barrier()
        try:
            yield
        finally:   # also when the write fails on some ranks: every rank reaches this barrier
            self._shared_barrier()

    def close(self) -> None:
        """Free the shared windows, if any (a collective); the synchroniser trains no more.

        The variables keep their values in private arrays of their own, so the
        model can still be evaluated, saved or trained by another trainer.
        """
        if self._closed:
            return
        if not self.shared:
            self._closed = True
            return
        self._shared_barrier()   # every rank done with the shared arrays
        self._bind_params(np.array(self.params))   # private copies
        # Nothing may point into a freed window; a closed synchroniser syncs no more.
        self.buffer = np.zeros(0, dtype=self.dtype)
        self._grad_part = self._scalars = self.buffer
        self.buckets, self._views, self._segments = [], [], []
        self.comm.barrier()   # every rank has its private copy before the memory goes
        for w in self._windows:
            w.free()
        self._windows = []
        self.shared = False
        self._closed = True

    # -- full state <-> pieces --------------------------------------------
    def gather_pieces(self, table: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Full arrays ``{var name: array of the variable's shape}`` from every
        rank's pieces ``table`` (``{var name: 1-d piece}``, e.g. a slot or the
        EMA shadows).  A collective: every rank calls it and gets the result."""
        missing = sorted(p.name for p in self.pieces_info if p.name not in table)
        if missing:
            raise InvalidArgumentError(f"gather_pieces: Expect: a piece for each of {missing} Actual: none")
        flat = np.zeros(self.params.size, dtype=self.param_dtype)
        lo, _ = self.block_range
        for p in self.pieces_info:
            np.copyto(flat[lo + p.lo: lo + p.lo + p.size], np.asarray(table[p.name]).reshape(-1), casting="unsafe")
        self._allgather(flat)
        out = {}
        for i, v in enumerate(self.variables):
            off = self._offsets[i]
            out[v.name] = flat[off: off + v.data.size].reshape(v.shape).copy()
        return {n: out[n] for n in sorted(out)}

    def local_pieces(self, full: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """This rank's pieces ``{var name: 1-d array}`` of full arrays keyed by name."""
        out = {}
        for p in self.pieces_info:
            if p.name not in full:
                raise InvalidArgumentError(f"local_pieces: Expect: an array for variable {p.name!r} Actual: none")
            arr = np.asarray(full[p.name])
            if arr.size != self.variables[p.index].data.size:
                raise InvalidArgumentError(
                    f"local_pieces: variable {p.name!r}: Expect: {self.variables[p.index].data.size} elements "
                    f"Actual: {arr.size}")
            out[p.name] = np.array(arr.reshape(-1)[p.start: p.stop], dtype=self.param_dtype)
        return out
