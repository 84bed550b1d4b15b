"""ZeRO stage 1: each rank updates 1/N of the weights, with 1/N of the optimizer slots and EMA shadows.

The trainable variables live, in sorted-name order, in one flat parameter
buffer (:class:`~distnet.distributed.layout.FlatLayout` with N equal blocks,
zero padding at the end; a block may cut through a variable); the
variables' ``data`` become views into it.  Each step:

1. backward writes the gradients into a flat buffer laid out the same way,
   which is *reduce-scattered*: rank r receives the sum of its block;
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

Options:

* ``shared_memory``: ``"auto"``: when every rank runs on one machine (and
  there is no compression), both collectives go through memory the ranks
  share (:mod:`distnet.distributed.shared_memory`): the parameter buffer
  exists once per machine, each rank's gradient buffer is its segment of a
  shared window, rank r sums block r of every segment itself after a
  barrier, and a barrier replaces the all-gather.  Same results (for two
  ranks the same bits: a + b either way round).  True: that, or an error
  saying why not; False (the default): MPI collectives always.  The weights
  are then *shared*: code that writes them outside the step writes them for
  every rank of the machine, so write them inside :meth:`Zero1.writing_params`
  with the same absolute values on every rank.
* ``compression``: ``"float16"``: the reduce-scatter sends float16 and sums
  in float32 (the block stays float32); the weights go as float32.

Checkpoints hold the full state: :meth:`Zero1.full_state` gathers slot and
shadow blocks into full arrays keyed by variable name, and
:meth:`Zero1.local_state` cuts a full state into this rank's pieces, so a
checkpoint written by one strategy loads in the other, on any world size
(ZeRO/DeepSpeed and PyTorch's ZeroRedundancyOptimizer also consolidate on save).
Clipping (:meth:`Strategy.clip`) takes the norms of the whole gradient: each
rank's per-variable sums of squares of its block, summed in one small all-reduce.
"""
from __future__ import annotations

import contextlib
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from distnet.distributed.communicator import Communicator
from distnet.distributed.compression import COMPRESSION, check_compression, make_compressor
from distnet.distributed.shared_memory import synced_barrier
from distnet.distributed.strategies.base import Strategy, SyncResult
from distnet.distributed.sum_finite import sum_finite
from distnet.errors import DTypeError, InvalidArgumentError
from distnet.registry import BOOL_OR_AUTO, Option
from distnet.tensor import Variable

#: Elements per chunk of the shared-memory reduction (256 KiB of float32: sum
#: and finite check of a chunk while it is in the core's cache).
SHARED_CHUNK = 1 << 16


class Zero1(Strategy):
    """Reduce-scatter the gradients, update this rank's block, all-gather the weights.

    Example:
        >>> s = Zero1(comm, variables, scalar_names=("loss_sum",))
        >>> opt.build(s.updated); ema.build(s.updated)
        >>> res = s.reduce(n_local, global_count=n_global, regularization_grads=reg)   # after the sinks
        >>> if res.is_finite: s.update(res, opt, ema)
    """

    name = "zero1"
    options = (
        Option("shared_memory", BOOL_OR_AUTO, False, "when every worker runs on one machine: the weights exist "
               "once in memory the workers share, and each worker sums its 1/N of the gradients straight from "
               "the others' shared buffers, so the reduce-scatter and all-gather send no messages. Same results "
               "(bitwise on 2 workers). It needs room in `/dev/shm` for the weights and every worker's gradients "
               "(3 x 25.7 MB for the reference net on 2 workers; a container gets 64 MB there unless given more: "
               "`docker run --shm-size`, `shm_size` in compose); where there is not enough, `\"auto\"` says so "
               "in a warning and uses MPI messages. `\"auto\"`: on wherever it can be (one machine, no "
               "`compression`, room in `/dev/shm`); `true` makes it an error when it cannot be; `false` uses "
               "MPI messages"),
        COMPRESSION,
    )
    # A job's code never writes the weights outside the Trainer, so a job may share them.
    job_defaults = MappingProxyType({"shared_memory": "auto"})

    def __init__(self, comm: Communicator, variables: Sequence, scalar_names: Sequence[str] = (),
                 shared_memory: bool | str = False, compression: str = "none") -> None:
        Zero1.check_options({"shared_memory": shared_memory, "compression": compression}, comm)
        #: The ranks that share the weights in blocks (all of them here).
        self.group = self._shard_group(comm)
        # Equal blocks: MPI's Reduce_scatter_block and in-place Allgather
        # (equal counts) beat their v-variants (benchmarks/README.md).
        super().__init__(comm, variables, scalar_names, ranks=self.group.size)
        self.compression = compression
        self.compressor = make_compressor(compression, self.group, None)
        dtypes = sorted({np.dtype(v.dtype).name for v in self.variables})
        if len(dtypes) != 1 or not np.issubdtype(np.dtype(dtypes[0]), np.floating):
            raise DTypeError(f"strategy 'zero1': Expect: trainable variables of one floating dtype "
                             f"Actual: dtypes {dtypes}")
        self.param_dtype = np.dtype(dtypes[0])
        self.padded, self.block_size, self.total = self.layout.padded, self.layout.block_size, self.layout.total
        self.block_range = self.layout.block_range(self.group.rank)
        n_scalars = 1 + len(self.scalar_names)
        self.shared = self._choose_shared_memory(shared_memory, n_scalars)
        self._segments: list[np.ndarray] = []
        self._windows: list = []   # kept alive: the arrays below view their memory
        # The gradient buffer: [gradients, padding, count, scalars...] (the
        # gradients at the aligned start of the allocation).
        if self.shared:
            grads = self.group.shared_arrays(self.padded + n_scalars, self.dtype)
            self._windows.append(grads)
            self.buffer = grads.arrays[self.group.rank]
            self.buffer[:] = 0
            self._segments = [seg[:self.padded] for seg in grads.arrays]
        else:
            self.buffer = np.zeros(self.padded + n_scalars, dtype=self.dtype)
        self._grad_part = self.buffer[:self.padded]
        self._scalars = self.buffer[self.padded:]
        self._views = self.layout.views(self._grad_part)

        # The flat parameter buffer, laid out like the gradients; the variables' data become views into it.
        if self.shared:
            # One copy per machine: rank 0 fills it (the variables are equal on every
            # rank by now), then every rank's variables view it.
            window = self.group.shared_arrays(self.padded, self.param_dtype, single=True)
            self._windows.append(window)
            self.params = window.arrays[0]
            if self.group.rank == 0:
                self.params[:] = 0
                self.layout.pack([v.data for v in self.variables], self.params)
            self._shared_barrier()
        else:
            self.params = self.layout.pack([v.data for v in self.variables],
                                           np.zeros(self.padded, dtype=self.param_dtype))
        self.grad_block = np.zeros(self.block_size, dtype=self.dtype)
        self.pieces_info = self.layout.pieces(self.group.rank)
        # A piece is a 1-d Variable named like its variable, its data a view of the block.
        self.pieces: list[Variable] = [Variable(np.zeros(0, dtype=self.param_dtype), name=p.name)
                                       for p in self.pieces_info]
        self.updated = self.pieces
        self._bind_params(self.params)
        self._grad_pieces = [self.grad_block[p.lo: p.lo + p.size] for p in self.pieces_info]
        # [count, scalars..., non-finite flag], summed over ranks.
        self._small = np.zeros(2 + len(self.scalar_names), dtype=np.float64)

    # -- options ------------------------------------------------------------
    @classmethod
    def check_options(cls, options: Mapping[str, Any], comm: Communicator, optimizer=None) -> dict:
        opts = super().check_options(options, comm, optimizer)
        sm = opts["shared_memory"]
        if not (isinstance(sm, (bool, np.bool_)) or sm == "auto"):
            raise InvalidArgumentError(f"shared_memory: Expect: 'auto', True or False Actual: {sm!r}")
        opts["compression"] = check_compression(opts["compression"], "compression")
        if sm is not False and sm != "auto" and bool(sm) and opts["compression"] != "none":
            raise InvalidArgumentError(
                "shared_memory=True with compression: Expect: one of them (shared memory moves no messages "
                "to compress)")
        return opts

    @classmethod
    def preference(cls, comm: Communicator, optimizer, options: Mapping[str, Any]) -> int | None:
        # Several ranks share the update and the EMA; one rank has nothing to share.
        return 1 if comm.size > 1 else None

    def _shard_group(self, comm: Communicator) -> Communicator:
        """The ranks among which the blocks are spread."""
        return comm

    def _across_groups(self, block: np.ndarray) -> None:
        """Sum the reduced block over the groups that hold the same block (none here)."""

    def _choose_shared_memory(self, shared_memory, n_scalars: int) -> bool:
        auto = shared_memory == "auto" and not isinstance(shared_memory, (bool, np.bool_))
        if not auto and not shared_memory:
            return False
        from distnet.distributed.shared_memory import check_room, one_machine, segment_bytes

        possible = one_machine(self.group)   # a collective: called on every rank alike
        if not auto and not possible:   # True: possible, or an error saying why not
            raise InvalidArgumentError(
                "shared_memory=True: Expect: an MPI job of 2 or more ranks on one machine Actual: "
                + (f"{self.group.size} rank(s)" if self.group.size == 1 else "ranks on several machines"))
        if not possible or self.compression != "none":
            return False
        need = (self.group.size * segment_bytes(self.padded + n_scalars, self.dtype)
                + segment_bytes(self.padded, self.param_dtype))
        return check_room(self.group, need, purpose="the weights and every rank's gradients", forced=not auto,
                          fallback="the ZeRO-1 strategy uses MPI messages (slower)", warn=self.comm.rank == 0,
                          stacklevel=4)

    def _bind_params(self, params: np.ndarray) -> None:
        """Make ``params`` the flat parameter buffer that the variables, this
        rank's block and its pieces view."""
        self.params = params
        for v, view in zip(self.variables, self.layout.views(params)):
            v.data = view
        lo, hi = self.block_range
        self.block = params[lo:hi]
        for piece, p in zip(self.pieces, self.pieces_info):
            piece.data = self.block[p.lo: p.lo + p.size]

    def _shared_barrier(self) -> None:
        """A barrier with ``MPI_Win_sync`` on both sides (stores before it seen by loads after it)."""
        synced_barrier(self.group, self._windows)

    def grad_views(self) -> list:
        return self._views

    # -- collectives on preallocated buffers ------------------------------
    def _reduce_scatter_shared(self) -> bool:
        """This rank's block summed over every rank's segment; returns whether it is all finite.

        After a barrier: every rank has written its gradients and has stopped
        reading the parameters (the update that follows writes them).
        """
        self._shared_barrier()
        lo = self.group.rank * self.block_size
        first, *rest = self._segments
        gb = self.grad_block
        if len(rest) == 1:   # the sum and its check in one pass
            return sum_finite(gb, first[lo: lo + self.block_size], rest[0][lo: lo + self.block_size])
        squares = 0.0
        with np.errstate(over="ignore", invalid="ignore"):
            for a in range(0, self.block_size, SHARED_CHUNK):
                b = min(a + SHARED_CHUNK, self.block_size)
                out = gb[a:b]
                np.add(first[lo + a: lo + b], rest[0][lo + a: lo + b], out=out)
                for seg in rest[1:]:
                    out += seg[lo + a: lo + b]
                squares += float(np.dot(out, out))
            return bool(np.isfinite(squares) or np.isfinite(gb).all())

    def _reduce_scatter(self) -> None:
        if self.compressor is not None:
            self.compressor.reduce_scatter_block(self._grad_part, self.grad_block)
        elif self.group.size == 1:
            np.copyto(self.grad_block, self._grad_part)
        else:
            self.group.reduce_scatter_block_(self._grad_part, self.grad_block)

    # -- the step ---------------------------------------------------------
    def reduce(self, local_count: int, scalars: Mapping[str, float] | None = None,
               regularization_grads=None, global_count: int | None = None) -> SyncResult:
        """As :meth:`Strategy.reduce`, but each rank gets only its block: the
        result's ``grads``/``variables`` are this rank's pieces; ``is_finite``
        is global (any non-finite element on any rank's block)."""
        self._check_open()
        try:
            local_count, global_count = self._check_counts(local_count, global_count)
            scalars = self._check_scalars(scalars)
            self._take_written(local_count)
        finally:
            self._written = False
        finite = self._reduce_scatter_shared() if self.shared else None
        if not self.shared:
            self._reduce_scatter()
        gb = self.grad_block
        if self.group is not self.comm:
            self._across_groups(gb)
            finite = None
        small = self._small
        small[0] = local_count
        for k, name in enumerate(self.scalar_names, start=1):
            small[k] = float(scalars.get(name, 0.0))
        # Each rank checks its reduced block (1/N of the buffer; through shared memory
        # while summing it); the flags ride in the small all-reduce, so every rank decides the same.
        if finite is None:
            with np.errstate(over="ignore", invalid="ignore"):
                finite = bool(np.isfinite(np.dot(gb, gb)) or np.isfinite(gb).all())
        small[-1] = 0.0 if finite else 1.0
        if self.comm.size > 1:
            self.comm.allreduce_(small)
        finite = small[-1] == 0.0 and bool(np.isfinite(small[:-1]).all())
        total = self._global_total(small[0], global_count)
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

    def _owners(self) -> list:
        return [p.index for p in self.pieces_info]

    def _sum_partial_squares(self, squares: np.ndarray) -> None:
        # The ranks of the group hold the blocks; every group holds the same sums (hierarchical).
        if self.group.size > 1:
            self.group.allreduce_(squares)

    def full_gradients(self, result: SyncResult) -> list:
        """Every rank's reduced block all-gathered (a collective): the whole gradient."""
        flat = np.zeros(self.padded, dtype=self.dtype)
        lo = self.group.rank * self.block_size
        flat[lo: lo + self.block_size] = self.grad_block
        if self.group.size > 1:
            self.group.allgather_(flat)
        return [view.copy() for view in self.layout.views(flat)]

    def update(self, result: SyncResult, optimizer, ema=None, num_updates: bool = True) -> None:
        super().update(result, optimizer, ema, num_updates)
        self.gather_params()

    def gather_params(self) -> None:
        """All-gather every rank's updated block into the variables (in place).

        Through shared memory, a barrier: every rank's block is written.
        """
        self._check_open()
        if self.shared:
            self._shared_barrier()
        elif self.group.size > 1:
            self.group.allgather_(self.params)

    @contextlib.contextmanager
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

    @contextlib.contextmanager
    def ema_weights(self, ema) -> Iterator[None]:
        shadows = self.full_state(ema.state_dict())
        saved = self.params.copy()
        try:
            with self.writing_params():   # shared by the ranks of a machine: fenced
                for v in self.variables:
                    np.copyto(v.data, shadows[v.name])
            yield
        finally:
            with self.writing_params():
                np.copyto(self.params, saved)

    def close(self) -> None:
        """Free the shared windows, if any (a collective); the strategy trains no more.

        The variables keep their values in private arrays of their own, so the
        model can still be evaluated, saved or trained by another trainer.
        """
        if self._closed:
            return
        self._closed = True
        if not self.shared:
            return
        self._shared_barrier()   # every rank done with the shared arrays
        self._bind_params(np.array(self.params))   # private copies
        # Nothing may point into a freed window; a closed strategy reduces no more.
        self.buffer = np.zeros(0, dtype=self.dtype)
        self._grad_part = self._scalars = self.buffer
        self._views, self._segments = [], []
        self.group.barrier()   # every rank has its private copy before the memory goes
        for w in self._windows:
            w.free()
        self._windows = []
        self.shared = False

    # -- full state <-> pieces --------------------------------------------
    def full_state(self, table: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Full arrays ``{var name: array of the variable's shape}`` from every
        rank's pieces ``table`` (``{var name: 1-d piece}``, e.g. a slot or the
        EMA shadows).  A collective: every rank calls it and gets the result."""
        missing = sorted(p.name for p in self.pieces_info if p.name not in table)
        if missing:
            raise InvalidArgumentError(f"full_state: Expect: a piece for each of {missing} Actual: none")
        flat = np.zeros(self.params.size, dtype=self.param_dtype)
        lo, _ = self.block_range
        for p in self.pieces_info:
            np.copyto(flat[lo + p.lo: lo + p.lo + p.size], np.asarray(table[p.name]).reshape(-1), casting="unsafe")
        if self.group.size > 1:
            self.group.allgather_(flat)
        out = {v.name: view.copy() for v, view in zip(self.variables, self.layout.views(flat))}
        return {n: out[n] for n in sorted(out)}

    def local_state(self, full: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """This rank's pieces ``{var name: 1-d array}`` of full arrays keyed by name."""
        out = {}
        for p in self.pieces_info:
            if p.name not in full:
                raise InvalidArgumentError(f"local_state: Expect: an array for variable {p.name!r} Actual: none")
            arr = np.asarray(full[p.name])
            if arr.size != self.layout.sizes[p.index]:
                raise InvalidArgumentError(
                    f"local_state: variable {p.name!r}: Expect: {self.layout.sizes[p.index]} elements "
                    f"Actual: {arr.size}")
            out[p.name] = np.array(arr.reshape(-1)[p.start: p.stop], dtype=self.param_dtype)
        return out
