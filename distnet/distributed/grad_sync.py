"""Sample-weighted gradient averaging over ranks, in one preallocated flat buffer.

Each rank computes the gradient of its *mean* loss over its own ``n_r``
samples.  The synchroniser packs ``n_r / N * grad`` of every variable (``N``
the global batch, when known; else ``n_r * grad`` and a division by the
all-reduced ``N`` afterwards) into one contiguous float32 buffer, all-reduces
it in place (in one call, or in consecutive bucket slices) and returns views
of it: the mean over the whole global batch, exact however unevenly the
samples are spread (a rank with 0 samples contributes zeros).  This is the
gradient a single process computes on the same global batch.

Buffer layout: ``[count, scalars..., gradients in sorted-name order]``.  A
caller can compute its gradients straight into :meth:`GradientSynchronizer.grad_views`
(no packing copy) and, with ``prescaled=True``, already scaled by ``n_r / N``
(no scaling pass either); what is left is the all-reduce and one pass for
the non-finite check.

Overlap (``overlap=True``): the buckets are reduced with non-blocking
``Iallreduce`` calls, each started as soon as the gradients of every variable
in it are final: the caller opens the step with :meth:`GradientSynchronizer.begin`
(count and scalars), writes the gradients into :meth:`grad_views` already
scaled, reports each final one with :meth:`grad_ready` (autodiff's
``on_final``) and calls :meth:`progress` between backward ops (autodiff's
``progress``: MPI moves data only inside MPI calls when it has no progress
thread); :meth:`sync` then starts what is left and waits.  Buckets are started
from the last to the first, every rank in the same order (the order backward
finishes a Sequential model's layers when names sort like the layers).

Scalars that must be global (loss sum, correct count) ride in the same
buffer, so metrics cost no extra round trip; they are summed, not averaged.

Regularization: a term that depends only on the weights (L1/L2, weight
decay) has the same gradient on every rank, because the weights are
identical.  It must enter the update exactly once.  Compute it on every rank
from the weights and pass it as ``regularization_grads``: it is added
*after* the averaging, once, identically on every rank (Horovod and DDP
average whatever the loss holds; we keep the weight term out of the
all-reduce, so it is not rounded through the sample weighting, costs no
bandwidth, and the data term alone carries the sample counts).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from distnet.distributed.abort import CollectiveError
from distnet.distributed.communicator import Communicator, Request
from distnet.distributed.compression import check_compression, make_compressor
from distnet.errors import DistributedError, InvalidArgumentError, ShapeError


@dataclass
class SyncResult:
    """What :meth:`GradientSynchronizer.sync` returns.

    Attributes:
        grads: the averaged gradients, aligned with the synchroniser's
            ``variables``; views into its buffer, valid until the next ``sync``.
        variables: the variables, in the order given to the synchroniser.
        scalars: every named scalar summed over ranks.
        global_count: samples in the global batch (sum of ``local_count``).
        is_finite: False when any averaged gradient or scalar is NaN or inf.
            Every rank sees the same reduced values, hence the same flag.
    """

    grads: list
    variables: list
    scalars: dict = field(default_factory=dict)
    global_count: int = 0
    is_finite: bool = True

    def grads_and_vars(self) -> list:
        """``[(grad, variable), ...]`` for ``optimizer.apply_gradients``."""
        return list(zip(self.grads, self.variables))


class GradientSynchronizer:
    """All-reduce gradients as a sample-weighted mean over ranks.

    Args:
        comm: the job's communicator.
        variables: the trainable variables (unique names); packed in sorted
            name order, so every rank lays out the buffer the same way.
        bucket_bytes: None to all-reduce the buffer in one call, else the
            size of each consecutive slice reduced in turn (the last is
            shorter; a slice may cut through a variable).
        scalar_names: names of the scalars summed with the gradients, e.g.
            ``("loss_sum", "correct")``.  Held in float32: exact for integer
            counts up to 2**24.
        overlap: reduce the buckets with non-blocking all-reduces, started by
            :meth:`grad_ready` while backward goes on (see the module
            docstring); every rank must use the same setting.
        compression: ``"none"`` or ``"float16"``: the gradients go on the
            wire as float16, the count and scalars stay float32, apart
            (:mod:`distnet.distributed.compression`; a no-op on one rank).  Not
            with ``overlap``.
    Example:
        >>> sync = GradientSynchronizer(comm, model.trainable_variables, scalar_names=("loss_sum",))
        >>> res = sync.sync(grads, local_count=len(idx), scalars={"loss_sum": loss * len(idx)},
        ...                 regularization_grads=reg_grads)
        >>> if res.is_finite: opt.apply_gradients(res.grads_and_vars())
    """

    dtype = np.dtype(np.float32)

    def __init__(self, comm: Communicator, variables: Sequence, bucket_bytes: int | None = None,
                 scalar_names: Sequence[str] = (), overlap: bool = False,
                 compression: str = "none") -> None:
        self.comm = comm
        if not isinstance(overlap, (bool, np.bool_)):
            raise InvalidArgumentError(f"overlap: Expect: True or False Actual: {overlap!r}")
        self.overlap = bool(overlap)
        self.variables = list(variables)
        if not self.variables:
            raise InvalidArgumentError("GradientSynchronizer: Expect: at least one variable Actual: none")
        names = [getattr(v, "name", None) for v in self.variables]
        if any(not isinstance(n, str) for n in names):
            raise InvalidArgumentError("GradientSynchronizer: every variable needs a string name")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidArgumentError(f"Variable names must be unique. Found duplicates: {dupes}")
        if bucket_bytes is not None and (isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, int)
                                         or bucket_bytes <= 0):
            raise InvalidArgumentError(f"bucket_bytes: Expect: None or an int > 0 Actual: {bucket_bytes!r}")
        self.scalar_names = tuple(scalar_names)
        if len(set(self.scalar_names)) != len(self.scalar_names) or "count" in self.scalar_names:
            raise InvalidArgumentError(
                f"scalar_names: Expect: unique names other than 'count' Actual: {self.scalar_names}")
        self.names = names
        self._index = {n: i for i, n in enumerate(names)}
        self.bucket_bytes = bucket_bytes   # None: one all-reduce of the whole buffer
        self._layout(bucket_bytes)
        self.compression = check_compression(compression)
        if self.overlap and self.compression != "none":
            raise InvalidArgumentError(
                f"compression={compression!r} with overlap=True: Expect: one of them (the float16 "
                "reduction is made of its own blocking collectives, it cannot run as non-blocking buckets)")
        self.compressor = make_compressor(compression, comm, bucket_bytes)

    def _layout(self, bucket_bytes: int | None) -> None:
        # One flat buffer: [count, scalars..., gradients in sorted-name order].
        # Buckets are consecutive slices of it, reduced one after the other;
        # a bucket boundary may fall inside a variable.
        order = sorted(range(len(self.variables)), key=lambda i: self.names[i])
        n_scalars = 1 + len(self.scalar_names)
        sizes = {i: int(np.prod(self.variables[i].shape, dtype=np.int64)) for i in order}
        self.buffer = np.zeros(n_scalars + sum(sizes.values()), dtype=self.dtype)
        self._views: list = [None] * len(self.variables)
        offset = n_scalars
        for i in order:
            self._views[i] = self.buffer[offset: offset + sizes[i]].reshape(self.variables[i].shape)
            offset += sizes[i]
        self._scalars = self.buffer[:n_scalars]
        self._grad_part = self.buffer[n_scalars:]
        step = self.buffer.size if bucket_bytes is None else max(1, bucket_bytes // self.dtype.itemsize)
        self.buckets: list = [self.buffer[lo: lo + step] for lo in range(0, self.buffer.size, step)]
        # For overlap: the buckets each variable's elements fall in, and how
        # many variables each bucket waits for.
        self._var_buckets: list = [None] * len(self.variables)
        self._bucket_waits: list = [0] * len(self.buckets)
        offset = n_scalars
        for i in order:
            first, last = offset // step, (offset + max(sizes[i], 1) - 1) // step
            self._var_buckets[i] = tuple(range(first, min(last, len(self.buckets) - 1) + 1)) if sizes[i] else ()
            for k in self._var_buckets[i]:
                self._bucket_waits[k] += 1
            offset += sizes[i]
        self._step: tuple | None = None       # (local_count, scalars) between begin() and sync()
        self._remaining: list = []
        self._requests: list = []
        self._next = -1

    def grad_views(self) -> list:
        """Views into the buffer, one per variable (aligned with ``variables``).

        A caller that writes its gradients straight into them (``out=``,
        ``np.copyto``) and passes them back to :meth:`sync` saves the packing
        copy.  They are overwritten by every ``sync``.
        """
        return list(self._views)

    # -- overlap ------------------------------------------------------------
    def begin(self, local_count: int, scalars: Mapping[str, float] | None = None) -> None:
        """Open an overlapped step (``overlap=True``): write the sample count
        and the scalars, so buckets can start as gradients become final.

        The gradients of the step must be written into :meth:`grad_views`
        already scaled (``prescaled``), each reported once to
        :meth:`grad_ready` when final; then :meth:`sync` with the views,
        the same ``local_count`` and scalars, and ``prescaled=True``.
        A rank with no sample skips ``begin`` (``sync`` zero-fills its part).
        """
        if not self.overlap:
            raise InvalidArgumentError("begin: Expect: a synchroniser made with overlap=True Actual: overlap=False")
        if self._step is not None:
            raise InvalidArgumentError("begin: Expect: sync() of the previous step first Actual: a step already begun")
        if isinstance(local_count, bool) or not isinstance(local_count, (int, np.integer)) or local_count < 1:
            raise InvalidArgumentError(f"begin: local_count: Expect: an integer >= 1 Actual: {local_count!r}")
        scalars = self._check_scalars(scalars)
        self._write_scalars(int(local_count), scalars)
        self._step = (int(local_count), scalars)
        self._remaining = list(self._bucket_waits)
        self._requests = [None] * len(self.buckets)
        self._next = len(self.buckets) - 1
        self._launch()

    def grad_ready(self, i: int) -> None:
        """Variable ``i``'s gradient is final in its view: start every bucket
        that is now complete (in order, the last bucket first)."""
        if self._step is None:
            raise InvalidArgumentError("grad_ready: Expect: begin() first Actual: no step begun")
        for k in self._var_buckets[i]:
            self._remaining[k] -= 1
        self._launch()

    def progress(self) -> None:
        """Let MPI move the started buckets along (cheap; call between ops).
        Does nothing outside an overlapped step."""
        if self._step is None:
            return
        for k in range(len(self.buckets) - 1, self._next, -1):
            if not self._requests[k].test():
                break       # one test progresses the whole engine

    def _launch(self) -> None:
        while self._next >= 0 and self._remaining[self._next] <= 0:
            self._requests[self._next] = self.comm.iallreduce_(self.buckets[self._next])
            self._next -= 1

    def _reduce(self) -> None:
        """All-reduce every bucket: blocking in order, or (overlap) start what
        is not started yet, last bucket first, and wait for all; with
        compression, the count and scalars exactly, then the float16 gradients."""
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

    @property
    def nbytes(self) -> int:
        """Bytes all-reduced per :meth:`sync`."""
        return self.buffer.nbytes

    def _aligned(self, grads, what: str) -> list:
        if grads is None:   # e.g. a rank with no samples this step
            return [None] * len(self.variables)
        if isinstance(grads, Mapping):
            unknown = sorted(set(grads) - set(self._index))
            if unknown:
                raise InvalidArgumentError(f"{what}: gradients for unknown variables {unknown}; "
                                           f"Expect: names among {sorted(self._index)}")
            return [grads.get(n) for n in self.names]
        grads = list(grads)
        if len(grads) != len(self.variables):
            raise InvalidArgumentError(
                f"{what}: Expect: {len(self.variables)} gradients, one per variable Actual: {len(grads)}")
        return grads

    def _check_grad(self, i: int, g, what: str) -> np.ndarray:
        g = np.asarray(getattr(g, "data", g))
        if g.shape != self._views[i].shape:
            raise ShapeError(f"{what} of {self.names[i]!r}: Expect: shape {self._views[i].shape} "
                             f"Actual: shape {g.shape}")
        return g

    def _pack(self, grads, local_count, scalars, global_count, prescaled) -> tuple:
        """Validate the arguments and write this rank's weighted gradients into
        the buffer's gradient part; returns ``(local_count, global_count, scalars)``."""
        if isinstance(local_count, bool) or not isinstance(local_count, (int, np.integer)) or local_count < 0:
            raise InvalidArgumentError(f"local_count: Expect: an integer >= 0 Actual: {local_count!r}")
        local_count = int(local_count)
        if global_count is not None:
            if isinstance(global_count, bool) or not isinstance(global_count, (int, np.integer)) \
                    or global_count < max(local_count, 1):
                raise InvalidArgumentError(
                    f"global_count: Expect: an integer >= max(local_count, 1) = {max(local_count, 1)} "
                    f"Actual: {global_count!r}")
            global_count = int(global_count)
        scalars = self._check_scalars(scalars)
        grads = self._aligned(grads, "grads")
        if self._step is not None:
            # An overlapped step: the gradients are in the views (some already
            # in flight) and the scalars in the buffer; check, never rewrite.
            if not prescaled:
                raise InvalidArgumentError("sync after begin(): Expect: prescaled=True Actual: prescaled=False")
            if (local_count, scalars) != self._step:
                raise InvalidArgumentError(
                    f"sync after begin(): Expect: local_count and scalars as given to begin() {self._step} "
                    f"Actual: {(local_count, scalars)}")
            for i, g in enumerate(grads):
                if g is not self._views[i]:
                    raise InvalidArgumentError(
                        f"sync after begin(): gradient of {self.names[i]!r}: Expect: its grad_views() array "
                        f"Actual: {type(g).__name__}")
            return local_count, global_count, scalars

        # Pack n_r * grad (n_r / N * grad when N is known, grad when prescaled) in one pass.
        if prescaled:
            weight = 1.0
        elif global_count is not None:
            weight = local_count / global_count
        else:
            weight = float(local_count)
        for i, g in enumerate(grads):
            view = self._views[i]
            if g is None or local_count == 0:
                view.fill(0.0)
            elif g is view:
                if weight != 1.0:
                    np.multiply(view, weight, out=view)
            elif weight == 1.0:
                np.copyto(view, self._check_grad(i, g, "gradient"), casting="same_kind")
            else:
                np.multiply(self._check_grad(i, g, "gradient"), weight, out=view, casting="same_kind")
        self._write_scalars(local_count, scalars)
        return local_count, global_count, scalars

    def _check_scalars(self, scalars) -> dict:
        scalars = dict(scalars or {})
        unknown = sorted(set(scalars) - set(self.scalar_names))
        if unknown:
            raise InvalidArgumentError(f"scalars: Expect: names among {self.scalar_names} Actual: {unknown}")
        return scalars

    def _write_scalars(self, local_count: int, scalars: dict) -> None:
        self._scalars[0] = local_count
        for k, name in enumerate(self.scalar_names, start=1):
            self._scalars[k] = float(scalars.get(name, 0.0))

    def sync(self, grads, local_count: int, scalars: Mapping[str, float] | None = None,
             regularization_grads=None, global_count: int | None = None,
             prescaled: bool = False) -> SyncResult:
        """Average the gradients over ranks, weighted by sample counts.

        Args:
            grads: this rank's gradients of its mean loss, a sequence aligned
                with ``variables`` or a mapping ``name -> array``; ``None``
                (for all, for one, or a missing name) is a zero gradient.  Ignored when
                ``local_count`` is 0.  Arrays from :meth:`grad_views` are
                scaled in place instead of copied.
            local_count: samples this rank used (0 allowed).
            scalars: values of ``scalar_names`` on this rank, summed over ranks.
            regularization_grads: gradients that depend only on the weights
                (identical on all ranks), added once after the averaging.
            global_count: the global batch size if known (the sampler knows
                it): saves one pass over the buffer and is checked.
            prescaled: the gradients are already this rank's share of the
                global mean (gradients of ``local loss sum / global_count``):
                they are summed as they are, with no scaling pass.  Required
                after :meth:`begin`.
        Returns:
            a :class:`SyncResult` (its ``grads`` are views into the buffer).
        """
        try:
            local_count, global_count, scalars = self._pack(grads, local_count, scalars, global_count, prescaled)
            self._reduce()
        finally:
            self._step = None

        total = int(round(float(self._scalars[0])))
        if total == 0:
            raise CollectiveError("gradient sync: the global batch is empty (every rank passed local_count=0)")
        if global_count is None:
            if not prescaled:
                np.divide(self._grad_part, total, out=self._grad_part)   # scalars stay sums
        elif total != global_count:
            raise DistributedError(
                f"gradient sync: global_count: Expect: the sum of every rank's local_count = {total} "
                f"Actual: {global_count} on rank {self.comm.rank}")

        if regularization_grads is not None:
            for i, g in enumerate(self._aligned(regularization_grads, "regularization_grads")):
                if g is not None:
                    np.add(self._views[i], self._check_grad(i, g, "regularization gradient"),
                           out=self._views[i], casting="same_kind")

        return SyncResult(
            grads=list(self._views), variables=list(self.variables),
            scalars={name: float(self._scalars[k]) for k, name in enumerate(self.scalar_names, start=1)},
            global_count=total, is_finite=self._all_finite(),
        )

    def _all_finite(self) -> bool:
        buf = self.buffer
        with np.errstate(over="ignore", invalid="ignore"):
            # sum(x*x) is finite only if every element is (one fast BLAS pass);
            # an overflow of finite values is told apart by the exact check.
            return bool(np.isfinite(np.dot(buf, buf)) or np.isfinite(buf).all())
