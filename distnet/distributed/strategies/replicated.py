"""Replicated data parallelism: every rank holds all the weights and all-reduces all the gradients.

The gradients live in one preallocated float32 buffer,
``[count, scalars..., gradients in sorted-name order]``; backward writes
into it (:meth:`Strategy.gradient_sink`), it is all-reduced in place (in one
call, or in consecutive bucket slices that may cut through a variable), and
the optimizer and the EMA update every variable on every rank identically.
The scalars ride in the same buffer, so metrics cost no extra round trip.

Options:

* ``bucket_bytes``: the size of each slice reduced in turn; None chooses
  :data:`DEFAULT_BUCKET_BYTES` with several ranks (or overlap), one call
  for the whole buffer otherwise.
* ``overlap``: each bucket's non-blocking all-reduce starts as soon as
  backward has finished every variable in it, from the last bucket to the
  first, every rank in the same order (the order backward finishes a
  Sequential model's layers when names sort like the layers).  MPI moves
  data only inside MPI calls when it has no progress thread, so every
  finished variable also tests the started buckets.
* ``compression``: ``"float16"`` sends the gradients as float16 (the count
  and scalars stay float32, reduced apart; :mod:`distnet.distributed.compression`).
  Not with ``overlap``: its reduction is made of blocking collectives.
* ``shared_memory``: with 2 ranks on one machine, the buffer is each rank's
  segment of a shared window (:mod:`distnet.distributed.shared_memory`);
  after a barrier each rank sums its half of the buffer with the other
  rank's half in place and checks it is finite in the same pass, and after a
  second barrier copies the other half from the other segment.  No MPI
  message moves the gradients: inside a step MPI's all-reduce of a small
  buffer costs well above the same call in a hot loop (its cells and the
  other rank's data are out of the caches), and its finite check is a second
  pass.  The same bits as the all-reduce (two summands add the same in either
  order).  Not with ``overlap`` or ``compression`` (``bucket_bytes`` is
  the all-reduce's: no effect on the shared sum).  ``"auto"`` (a job's
  default, as ZeRO-1's): on where it applies, the all-reduce elsewhere (3 or
  more ranks, several machines, ``overlap``, ``compression``, too little
  room in ``/dev/shm``: then a warning).  ``False`` (the ``Trainer``'s and
  this class's default, as ZeRO-1's): the all-reduce; the window is freed
  by ``close()`` only (a collective), which a job always calls.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from distnet.distributed.communicator import Communicator
from distnet.distributed.compression import COMPRESSION, check_compression, make_compressor
from distnet.distributed.shared_memory import synced_barrier
from distnet.distributed.strategies.base import (
    GradientSink,
    Strategy,
    SyncResult,
    all_finite,
)
from distnet.distributed.sum_finite import sum_finite
from distnet.errors import InvalidArgumentError
from distnet.registry import BOOL, BOOL_OR_AUTO, INT, Option

_TWO_RANKS = "shared_memory=True: Expect: an MPI job of 2 ranks on one machine Actual: "

#: Bucket size when several ranks reduce and the user gave none (the step
#: time against the bucket size is in benchmarks/README.md).
DEFAULT_BUCKET_BYTES = 8 << 20


class Replicated(Strategy):
    """All-reduce of the whole gradient buffer; every rank updates every weight.

    Example:
        >>> s = Replicated(comm, model.trainable_variables, scalar_names=("loss_sum",))
        >>> gradients(loss_sum / n_global, variables, on_leaf=s.gradient_sink(False, len(idx), scalars))
        >>> res = s.reduce(len(idx), scalars, regularization_grads=reg_grads, global_count=n_global)
        >>> if res.is_finite: s.clip(res, optimizer); s.update(res, optimizer)
    """

    name = "replicated"
    options = (
        Option("bucket_bytes", INT, None, "size of the slices of the gradient buffer all-reduced one after the "
               "other (the step time against the size is in `benchmarks/README.md`); unset: 8 MB with several "
               "workers or `overlap`, one buffer with `compression`", low=0, low_open=True),
        Option("overlap", BOOL, False, "start each bucket's all-reduce (non-blocking) as soon as backward has "
               "produced its gradients, while backward goes on; the same results (bitwise on 2 workers; on 3 or "
               "more MPI may add the terms in another order). On workers sharing a machine's cores it gains "
               "nothing; it can help where the network, not the CPU, is the bottleneck. Not with `compression`"),
        COMPRESSION,
        Option("shared_memory", BOOL_OR_AUTO, False, "with 2 workers on one machine: sum the gradients in memory "
               "both map (each sums half, the finite check in the same pass) instead of an MPI all-reduce; the "
               "same bits, a faster step (`benchmarks/README.md`). `\"auto\"`: where it applies (2 workers, one "
               "machine, no `overlap` or `compression`, room in `/dev/shm` for 2 copies of the gradients), else "
               "the MPI all-reduce (with a warning when `/dev/shm` lacks room); `true` makes it an error when it "
               "cannot be; `false` always uses MPI. `bucket_bytes` has no effect on the shared sum"),
    )
    # As ZeRO-1's: a job runs the fastest path that gives the same bits, and always closes its trainer
    # (the collective that frees the window).
    job_defaults = MappingProxyType({"shared_memory": "auto"})

    def __init__(self, comm: Communicator, variables: Sequence, scalar_names: Sequence[str] = (),
                 bucket_bytes: int | None = None, overlap: bool = False, compression: str = "none",
                 shared_memory: bool | str = False) -> None:
        super().__init__(comm, variables, scalar_names)
        self.check_options({"bucket_bytes": bucket_bytes, "overlap": overlap, "compression": compression,
                            "shared_memory": shared_memory}, comm)
        self.overlap = bool(overlap)
        self.compression = compression
        self.bucket_bytes = bucket_bytes   # None: one all-reduce of the whole buffer
        n_scalars = 1 + len(self.scalar_names)
        size = n_scalars + self.layout.total
        self._window = None
        if self._choose_shared_memory(shared_memory, size):
            # Each rank's segment: the buffer, then its half's finite flag.
            self._window = comm.shared_arrays(size + 1, self.dtype)
            self._segments = self._window.arrays
            self.buffer = self._segments[comm.rank][:size]
            self.buffer[:] = 0
            half = -(-size // 2)
            self._halves = [slice(0, half), slice(half, size)]
        else:
            self.buffer = np.zeros(size, dtype=self.dtype)
        self._scalars = self.buffer[:n_scalars]
        self._grad_part = self.buffer[n_scalars:]
        self._views = self.layout.views(self._grad_part)
        step = self.buffer.size if bucket_bytes is None else max(1, bucket_bytes // self.dtype.itemsize)
        self.buckets: list = [self.buffer[lo: lo + step] for lo in range(0, self.buffer.size, step)]
        # For overlap: the buckets each variable's elements fall in, and how
        # many variables each bucket waits for.
        self._var_buckets: list = [()] * len(self.variables)
        self._bucket_waits: list = [0] * len(self.buckets)
        for i, (off, size) in enumerate(zip(self.layout.offsets, self.layout.sizes)):
            if size:
                first, last = (n_scalars + off) // step, (n_scalars + off + size - 1) // step
                self._var_buckets[i] = tuple(range(first, min(last, len(self.buckets) - 1) + 1))
                for k in self._var_buckets[i]:
                    self._bucket_waits[k] += 1
        self._step: tuple | None = None       # (local_count, scalars) of an overlapped step in flight
        self._remaining: list = []
        self._requests: list = []
        self._next = -1
        self.compressor = make_compressor(compression, comm, bucket_bytes)

    @classmethod
    def check_options(cls, options: Mapping[str, Any], comm: Communicator, optimizer=None) -> dict:
        opts = super().check_options(options, comm, optimizer)
        bucket_bytes, overlap = opts["bucket_bytes"], opts["overlap"]
        if bucket_bytes is not None and (isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, int)
                                         or bucket_bytes <= 0):
            raise InvalidArgumentError(f"bucket_bytes: Expect: None or an int > 0 Actual: {bucket_bytes!r}")
        if not isinstance(overlap, (bool, np.bool_)):
            raise InvalidArgumentError(f"overlap: Expect: True or False Actual: {overlap!r}")
        opts["compression"] = check_compression(opts["compression"], "compression")
        if overlap and opts["compression"] != "none":
            raise InvalidArgumentError(
                f"overlap=True with compression={opts['compression']!r}: Expect: one of them (the float16 "
                "reduction is made of its own blocking collectives, it cannot run as non-blocking buckets)")
        shared = opts["shared_memory"]
        if not (isinstance(shared, (bool, np.bool_)) or shared == "auto"):
            raise InvalidArgumentError(f"shared_memory: Expect: 'auto', True or False Actual: {shared!r}")
        forced_on = isinstance(shared, (bool, np.bool_)) and shared
        if forced_on and (overlap or opts["compression"] != "none"):
            raise InvalidArgumentError(
                f"shared_memory=True with overlap={bool(overlap)}, compression={opts['compression']!r}: Expect: "
                "neither (the shared sum replaces the all-reduce they change)")
        if forced_on and comm.size != 2:   # here, so a job's check sees it
            raise InvalidArgumentError(_TWO_RANKS + f"{comm.size} rank(s)")
        return opts

    def _choose_shared_memory(self, shared_memory, size: int) -> bool:
        """Whether this strategy sums through a shared window (a collective where it may:
        every rank gets the same answer)."""
        forced = not isinstance(shared_memory, str)   # True or False; else "auto"
        if (forced and not shared_memory) or self.overlap or self.compression != "none":
            return False
        from distnet.distributed.shared_memory import check_room, one_machine, segment_bytes

        possible = self.comm.size == 2 and one_machine(self.comm)
        if not possible:
            if forced:   # 2 ranks (check_options)
                raise InvalidArgumentError(_TWO_RANKS + "ranks on two machines")
            return False
        return check_room(self.comm, 2 * segment_bytes(size + 1, self.dtype), purpose="both ranks' gradients",
                          forced=forced, fallback="the replicated strategy all-reduces with MPI (slower)",
                          warn=self.comm.rank == 0, stacklevel=3)

    @property
    def shared(self) -> bool:
        """True when the gradients are summed through a shared window (``shared_memory``)."""
        return self._window is not None

    @classmethod
    def preference(cls, comm: Communicator, optimizer, options: Mapping[str, Any]) -> int | None:
        return 0   # runs everywhere: the fallback

    @classmethod
    def build(cls, comm: Communicator, variables: Sequence, scalar_names: Sequence[str], **options) -> "Replicated":
        """The strategy with the Trainer's defaults: buckets of :data:`DEFAULT_BUCKET_BYTES`
        when several ranks reduce float32 (or with overlap) and no size was given."""
        if options.get("bucket_bytes") is None and (options.get("overlap") or (
                comm.size > 1 and options.get("compression", "none") == "none")):
            options = {**options, "bucket_bytes": DEFAULT_BUCKET_BYTES}
        return cls(comm, variables, scalar_names, **options)

    def grad_views(self) -> list:
        """Views into the buffer, one per variable (overwritten by every reduce)."""
        return self._views

    # -- overlap ------------------------------------------------------------
    def gradient_sink(self, accumulate: bool, local_count: int, scalars: Mapping[str, float],
                      last: bool = True) -> GradientSink:
        if not (self.overlap and last):
            return super().gradient_sink(accumulate, local_count, scalars, last)
        # The step's last backward: each bucket starts as soon as its gradients are final.
        self._check_open()
        self._written = True
        if self._step is not None:
            raise InvalidArgumentError("gradient_sink: Expect: reduce() of the previous step first "
                                       "Actual: an overlapped step already begun")
        scalars = self._check_scalars(scalars)
        self._write_scalars(int(local_count), scalars)
        self._step = (int(local_count), scalars)
        self._remaining = list(self._bucket_waits)
        self._requests = [None] * len(self.buckets)
        self._next = len(self.buckets) - 1
        self._launch()
        return GradientSink(self._views, accumulate, on_final=self._grad_ready)

    def _grad_ready(self, i: int) -> None:
        for k in self._var_buckets[i]:
            self._remaining[k] -= 1
        self._launch()
        # Let MPI move the started buckets along (one test progresses the whole engine).
        for k in range(len(self.buckets) - 1, self._next, -1):
            if not self._requests[k].test():
                break

    def _launch(self) -> None:
        while self._next >= 0 and self._remaining[self._next] <= 0:
            self._requests[self._next] = self.comm.iallreduce_(self.buckets[self._next])
            self._next -= 1

    def _reduce(self) -> bool | None:
        """All-reduce every bucket: blocking in order, or (overlap) start what
        is not started yet, last bucket first, and wait for all; with
        compression, the count and scalars exactly, then the float16 gradients;
        or the shared sum, which returns whether the sum is finite (else None: not checked)."""
        if self._window is not None:
            return self._sum_in_shared_memory()
        if self.compressor is not None:
            self.comm.allreduce_(self._scalars)
            self.compressor.allreduce_(self._grad_part)
            return
        if not self.overlap:
            for bucket in self.buckets:
                self.comm.allreduce_(bucket)
            return
        if self._step is None:
            self._requests = [None] * len(self.buckets)
            self._next = len(self.buckets) - 1
        self._remaining = [0] * len(self.buckets)
        self._launch()
        for k in range(len(self.buckets) - 1, -1, -1):
            self._requests[k].wait()
        self._requests = []

    def _shared_barrier(self) -> None:
        """A barrier with ``MPI_Win_sync`` on both sides (stores before it seen by loads after it)."""
        synced_barrier(self.comm, (self._window,))

    def _sum_in_shared_memory(self) -> bool:
        """Sum the two ranks' segments into each (see the module docstring); returns
        whether every summed element is finite.  Three barriers: both segments
        written; both halves summed (and flagged); the other rank done reading
        this segment, which the step writes next (regularization, clipping,
        the next backward)."""
        rank, size = self.comm.rank, self.buffer.size
        mine, other = self._segments[rank], self._segments[1 - rank]
        own, theirs = self._halves[rank], self._halves[1 - rank]
        self._shared_barrier()
        mine[size] = 0.0 if sum_finite(mine[own], mine[own], other[own]) else 1.0
        self._shared_barrier()
        mine[theirs] = other[theirs]
        finite = mine[size] == 0.0 and other[size] == 0.0
        self._shared_barrier()
        return bool(finite)

    def _write_scalars(self, local_count: int, scalars: dict) -> None:
        self._scalars[0] = local_count
        for k, name in enumerate(self.scalar_names, start=1):
            self._scalars[k] = float(scalars.get(name, 0.0))

    # -- the step ---------------------------------------------------------
    def reduce(self, local_count: int, scalars: Mapping[str, float] | None = None,
               regularization_grads=None, global_count: int | None = None) -> SyncResult:
        self._check_open()
        try:
            local_count, global_count = self._check_counts(local_count, global_count)
            scalars = self._check_scalars(scalars)
            if self._step is not None:
                # An overlapped step: the gradients are in the views (some in
                # flight) and the scalars in the buffer; check, never rewrite.
                if (local_count, scalars) != self._step:
                    raise InvalidArgumentError(
                        f"reduce after an overlapped backward: Expect: local_count and scalars as given to "
                        f"gradient_sink() {self._step} Actual: {(local_count, scalars)}")
                self._written = False
            else:
                self._take_written(local_count)
                self._write_scalars(local_count, scalars)
            summed_finite = self._reduce()
        finally:
            self._step = None
            self._written = False

        total = self._global_total(self._scalars[0], global_count)
        if regularization_grads is not None:
            summed_finite = None   # checked after the regularization is added
            for i, g in enumerate(self._aligned(regularization_grads, "regularization_grads")):
                if g is not None:
                    np.add(self._views[i], self._check_grad(i, g, "regularization gradient"),
                           out=self._views[i], casting="same_kind")
        return SyncResult(
            grads=list(self._views), variables=list(self.variables),
            scalars={name: float(self._scalars[k]) for k, name in enumerate(self.scalar_names, start=1)},
            global_count=total, is_finite=all_finite(self.buffer) if summed_finite is None else summed_finite,
        )

    def close(self) -> None:
        """Free the shared window, if any (a collective); the strategy trains no more."""
        if self._closed:
            return
        super().close()
        if self._window is None:
            return
        # Nothing may point into a freed window; a closed strategy reduces no more.
        self.buffer = np.zeros(0, dtype=self.dtype)
        self._scalars = self._grad_part = self.buffer
        self._views, self._segments, self.buckets = [], [], []
        self.comm.barrier()   # every rank done with the segments
        self._window.free()
        self._window = None
