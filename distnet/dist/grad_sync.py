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

from distnet.dist.abort import CollectiveError
from distnet.dist.communicator import Communicator
from distnet.dist.compression import check_compression, make_compressor
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
        compression: ``"none"`` or ``"float16"``: the gradients go on the
            wire as float16, the count and scalars stay float32, apart
            (:mod:`distnet.dist.compression`; a no-op on one rank).
    Example:
        >>> sync = GradientSynchronizer(comm, model.trainable_variables, scalar_names=("loss_sum",))
        >>> res = sync.sync(grads, local_count=len(idx), scalars={"loss_sum": loss * len(idx)},
        ...                 regularization_grads=reg_grads)
        >>> if res.is_finite: opt.apply_gradients(res.grads_and_vars())
    """

    dtype = np.dtype(np.float32)

    def __init__(self, comm: Communicator, variables: Sequence, bucket_bytes: int | None = None,
                 scalar_names: Sequence[str] = (), compression: str = "none") -> None:
        self.comm = comm
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
        self._layout(bucket_bytes)
        self.compression = check_compression(compression)
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

    def grad_views(self) -> list:
        """Views into the buffer, one per variable (aligned with ``variables``).

        A caller that writes its gradients straight into them (``out=``,
        ``np.copyto``) and passes them back to :meth:`sync` saves the packing
        copy.  They are overwritten by every ``sync``.
        """
        return list(self._views)

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
        scalars = dict(scalars or {})
        unknown = sorted(set(scalars) - set(self.scalar_names))
        if unknown:
            raise InvalidArgumentError(f"scalars: Expect: names among {self.scalar_names} Actual: {unknown}")
        grads = self._aligned(grads, "grads")

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
        return local_count, global_count, scalars

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
                they are summed as they are, with no scaling pass.
        Returns:
            a :class:`SyncResult` (its ``grads`` are views into the buffer).
        """
        local_count, global_count, scalars = self._pack(grads, local_count, scalars, global_count, prescaled)
        self._scalars[0] = local_count
        for k, name in enumerate(self.scalar_names, start=1):
            self._scalars[k] = float(scalars.get(name, 0.0))

        if self.compressor is not None:   # float16 gradients; count and scalars exact, apart
            self.comm.allreduce_(self._scalars)
            self.compressor.allreduce_(self._grad_part)
        else:
            for bucket in self.buckets:
                self.comm.allreduce_(bucket)

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
