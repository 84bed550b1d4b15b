"""What every way of synchronising a data-parallel step provides: :class:`Strategy`.

One step, as :class:`~distnet.training.trainer.Trainer` runs it, whatever the strategy:

1. backward lands each micro-batch's gradients in the strategy's flat
   buffer through :meth:`Strategy.gradient_sink`, the ``on_leaf`` hook of
   :func:`distnet.autodiff.gradients` (already scaled: the loss is the
   shard's sum over the *global* batch size);
2. :meth:`Strategy.reduce` sums them over ranks with the sample count and the
   step's scalars (loss sum, correct count), adds the regularization gradient
   once (it depends on the weights alone, the same on every rank) and says
   whether every reduced value is finite (the same answer on every rank);
3. :meth:`Strategy.clip` clips the reduced gradient as the optimizer asks
   (``clipnorm`` / ``global_clipnorm``), with the norms of the whole gradient;
4. :meth:`Strategy.update` runs the optimizer's update rule and the EMA on
   what this rank holds (:attr:`Strategy.updated`) and makes every rank's
   weights whole again.

Checkpoints hold full arrays whatever the strategy: :meth:`Strategy.full_state`
and :meth:`Strategy.local_state` convert between them and what this rank
keeps.  A strategy is one module in this folder: it subclasses
:class:`Strategy`, sets ``name`` and ``options``, and is found by name
(:mod:`distnet.distributed.strategies`).

Regularization: a term that depends only on the weights (L1/L2, weight
decay) has the same gradient on every rank.  It is added *after* the sum,
once, identically on every rank (Horovod and DDP average whatever the loss
holds; keeping the weight term out of the reduction keeps it out of the
sample weighting and off the wire).
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import numpy as np

from distnet.distributed.abort import CollectiveError
from distnet.distributed.communicator import Communicator
from distnet.distributed.layout import FlatLayout
from distnet.errors import DistributedError, InvalidArgumentError, ShapeError
from distnet.registry import Option


@dataclass
class SyncResult:
    """What :meth:`Strategy.reduce` returns.

    Attributes:
        grads: the summed gradients of what this rank updates, aligned with
            ``variables``; views into the strategy's buffer, valid until the next reduce.
        variables: what this rank updates (the variables, or pieces of them).
        scalars: every named scalar summed over ranks.
        global_count: samples in the global batch (sum of ``local_count``).
        is_finite: False when any reduced gradient or scalar is NaN or inf;
            every rank sees the same flag.
    """

    grads: list
    variables: list
    scalars: dict = field(default_factory=dict)
    global_count: int = 0
    is_finite: bool = True

    def grads_and_vars(self) -> list:
        """``[(grad, variable), ...]`` for ``optimizer.apply_gradients``."""
        return list(zip(self.grads, self.variables))


class GradientSink:
    """Lands one micro-batch's gradients in a strategy's buffer: the
    ``on_leaf`` hook of :func:`distnet.autodiff.gradients`, with :attr:`out`
    its ``out=`` arrays.

    ``sink(i, g)`` receives variable ``i``'s complete gradient (None when the
    loss does not depend on it) and copies it into ``views[i]`` (zeros for
    None) unless backward built it there already (``g is views[i]``, through
    :attr:`out`), or adds it there when accumulating (micro-batches after
    the first; rounding as ``view += g``).

    Args:
        views: one array per variable, in the strategy's buffer.
        accumulate: add to what the views hold.
        on_final: called as ``on_final(i)`` once variable ``i`` is landed
            (e.g. to start reducing the buckets it completes).
    Example:
        >>> sink = strategy.gradient_sink(False, n, scalars)
        >>> gradients(loss, variables, on_leaf=sink, out=sink.out)
    """

    __slots__ = ("accumulate", "on_final", "views")

    def __init__(self, views: Sequence[np.ndarray], accumulate: bool,
                 on_final: Callable[[int], None] | None = None) -> None:
        self.views, self.accumulate, self.on_final = views, accumulate, on_final

    @property
    def out(self) -> Sequence[np.ndarray] | None:
        """The arrays backward may build the gradients in (``gradients(out=)``):
        the views, or None when accumulating (they hold earlier micro-batches)."""
        return None if self.accumulate else self.views

    def __call__(self, i: int, g: np.ndarray | None) -> None:
        dest = self.views[i]
        if g is not dest:
            if g is None:
                if not self.accumulate:
                    dest.fill(0)
            elif self.accumulate:
                np.add(dest, g, out=dest, casting="same_kind")
            else:
                np.copyto(dest, g, casting="same_kind")
        if self.on_final is not None:
            self.on_final(i)


class Strategy(ABC):
    """One way of synchronising a data-parallel step (see the module docstring).

    Args:
        comm: the job's communicator.
        variables: the trainable variables (unique names).
        scalar_names: names of the scalars summed with the gradients, e.g.
            ``("loss_sum", "correct")``; held in float32, exact for integer
            counts up to 2**24.
        **options: the strategy's own (:attr:`options`), checked by
            :meth:`check_options`.
    Attributes:
        updated: what the optimizer and the EMA update on this rank.
    """

    #: The name a job file or ``Trainer(strategy=...)`` uses.
    name: ClassVar[str] = ""
    #: The strategy's own options, declared once: the Trainer's keywords, the job file's
    #: ``[dist] strategy = {type = ..., key = value}`` and the table in docs/jobs.md.
    options: ClassVar[tuple[Option, ...]] = ()
    #: Defaults a job file gets where the Trainer's differ: a job's own code never
    #: holds the weights outside the Trainer (see Zero1's ``shared_memory``).
    job_defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    dtype = np.dtype(np.float32)

    def __init__(self, comm: Communicator, variables: Sequence, scalar_names: Sequence[str] = (),
                 ranks: int = 1) -> None:
        self.comm = comm
        # ``ranks`` equal blocks for a strategy that gives each rank one (ZeRO-1).
        self.layout = FlatLayout(variables, ranks=ranks)
        self.variables = self.layout.variables
        self.names = self.layout.names
        self._index = {n: i for i, n in enumerate(self.names)}
        self.scalar_names = tuple(scalar_names)
        if len(set(self.scalar_names)) != len(self.scalar_names) or "count" in self.scalar_names:
            raise InvalidArgumentError(
                f"scalar_names: Expect: unique names other than 'count' Actual: {self.scalar_names}")
        self.updated: list = list(self.variables)
        self._written = False     # a sink wrote this step's gradients into the views
        self._closed = False

    # -- options ------------------------------------------------------------
    @classmethod
    def check_options(cls, options: Mapping[str, Any], comm: Communicator, optimizer=None) -> dict:
        """The options with defaults filled in, or an error naming the one that does not apply.

        Subclasses check values and combinations after this (the "X applies
        only with Y" rules live in the strategy they concern).
        """
        unknown = sorted(set(options) - set(cls.option_names()))
        if unknown:
            raise InvalidArgumentError(
                f"strategy {cls.name!r}: option {unknown[0]!r}: Expect: one of "
                f"{sorted(cls.option_names()) or 'none'} Actual: {unknown[0]}={options[unknown[0]]!r}")
        return {**cls.defaults(), **options}

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(o.name for o in cls.options)

    @classmethod
    def defaults(cls) -> dict:
        """Option name -> the Trainer's default."""
        return {o.name: o.default for o in cls.options}

    @classmethod
    def build(cls, comm: Communicator, variables: Sequence, scalar_names: Sequence[str], **options) -> "Strategy":
        """The strategy as the Trainer makes it (a subclass may fill in defaults that depend on the job)."""
        return cls(comm, variables, scalar_names, **options)

    @classmethod
    def preference(cls, comm: Communicator, optimizer, options: Mapping[str, Any]) -> int | None:
        """How much ``strategy="auto"`` wants this strategy here (higher wins), or
        None when it cannot run it.  The same on every rank."""
        return None

    @property
    def nbytes(self) -> int:
        """Bytes of the buffer this rank's gradients are reduced from each step."""
        return self.buffer.nbytes

    # -- the step ---------------------------------------------------------
    @abstractmethod
    def grad_views(self) -> list:
        """One array per variable in the buffer the reduction reads."""

    def gradient_sink(self, accumulate: bool, local_count: int, scalars: Mapping[str, float],
                      last: bool = True) -> GradientSink:
        """The sink for one micro-batch's backward (see :class:`GradientSink`).

        Args:
            accumulate: False for the step's first micro-batch, True after.
            local_count, scalars: the step's sample count and scalars on this
                rank (final when ``last``).
            last: the step's last micro-batch.
        """
        self._check_open()
        self._written = True
        return GradientSink(self.grad_views(), accumulate)

    @abstractmethod
    def reduce(self, local_count: int, scalars: Mapping[str, float] | None = None,
               regularization_grads=None, global_count: int | None = None) -> SyncResult:
        """Sum over ranks the gradients the step's sinks wrote, with the sample count and the scalars.

        The gradients are what :meth:`gradient_sink` landed this step: this
        rank's share of the global mean (its loss sum over the *global*
        batch size); a rank that wrote none (no samples) adds zeros.  Arrays
        from elsewhere go through :func:`reduce_arrays`.

        Args:
            local_count: samples this rank used (0 allowed).
            scalars: values of ``scalar_names`` on this rank, summed over ranks.
            regularization_grads: gradients that depend on the weights alone
                (a sequence aligned with ``variables`` or a mapping name ->
                array; None entries for none), added once after the sum.
            global_count: the global batch size if known: checked against
                the sum of the ranks' ``local_count``.
        """

    def clip(self, result: SyncResult, optimizer) -> None:
        """Clip ``result.grads`` in place as ``optimizer``'s ``clipnorm`` /
        ``global_clipnorm`` ask: the step between :meth:`reduce` and
        :meth:`update`.  The norms are those of the whole reduced gradient,
        whatever part of it this rank holds (a strategy that spreads it over
        ranks sums their partial squares: one small all-reduce per norm)."""
        from distnet.optimizers.clipping import Clip

        transform = Clip.of(optimizer)
        if transform is not None:
            transform(result.grads, owners=self._owners(), variables=len(self.variables),
                      reduce=self._sum_partial_squares, in_place=True)

    def update(self, result: SyncResult, optimizer, ema=None, num_updates: bool = True) -> None:
        """Apply the optimizer's update rule (and the EMA) to what this rank
        holds, then make the weights whole.  Clipping is not part of it: it
        is :meth:`clip`, run before.

        Args:
            num_updates: give the EMA the optimizer's step count after this
                update (TF1's ``num_updates``), which caps its decay early on.
        """
        optimizer.apply_update(result.grads_and_vars())
        if ema is not None:
            ema.apply(self.updated, num_updates=int(optimizer.iterations) if num_updates else None)

    def full_gradients(self, result: SyncResult) -> list:
        """The whole reduced gradient, one new array per variable (aligned with
        :attr:`variables`), whatever part of it this rank holds (a collective
        for a strategy that spreads it over ranks): what Horovod's
        ``compute_gradients`` returns, for code that transforms it itself."""
        return [np.array(g) for g in result.grads]

    # -- full state <-> this rank's part ------------------------------------
    def full_state(self, table: Mapping[str, np.ndarray]) -> dict:
        """Full arrays keyed by variable name from this rank's ``table`` (a
        slot or the EMA shadows); a collective."""
        return dict(table)

    def local_state(self, full: Mapping[str, np.ndarray]) -> dict:
        """This rank's part of full arrays keyed by variable name."""
        return dict(full)

    @contextlib.contextmanager
    def ema_weights(self, ema) -> Iterator[None]:
        """Within the block the variables hold the EMA shadows (a collective)."""
        with ema.swapped(self.variables):
            yield

    @contextlib.contextmanager
    def writing_params(self) -> Iterator[None]:
        """Fence a write of the variables outside the step (a collective)."""
        yield

    def close(self) -> None:
        """Release what the strategy holds (a collective); it trains no more."""
        self._closed = True

    # -- shared by the implementations ------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise DistributedError("the strategy is closed (Trainer.close()): it trains no more")

    def _check_scalars(self, scalars) -> dict:
        scalars = dict(scalars or {})
        unknown = sorted(set(scalars) - set(self.scalar_names))
        if unknown:
            raise InvalidArgumentError(f"scalars: Expect: names among {self.scalar_names} Actual: {unknown}")
        return scalars

    def _aligned(self, grads, what: str) -> list:
        if grads is None:
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
        shape = tuple(self.variables[i].shape)
        if g.shape != shape:
            raise ShapeError(f"{what} of {self.names[i]!r}: Expect: shape {shape} Actual: shape {g.shape}")
        return g

    def _check_counts(self, local_count, global_count) -> tuple:
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
        return local_count, global_count

    def _take_written(self, local_count: int) -> None:
        """Close the step's writing: zeros in the views unless a sink wrote this rank's gradients."""
        written, self._written = self._written, False
        if not written or local_count == 0:
            for view in self.grad_views():
                view.fill(0.0)

    def _owners(self) -> list:
        """For each array of :attr:`SyncResult.grads`, the index of the variable it is (part of)."""
        return list(range(len(self.variables)))

    def _sum_partial_squares(self, squares: np.ndarray) -> None:
        """Sum per-variable partial sums of squares (float64) over the ranks
        that hold parts of the gradient, in place (none here: a rank holds all)."""

    def _global_total(self, count: float, global_count: int | None) -> int:
        """The reduced sample count, checked."""
        total = int(round(float(count)))
        if total == 0:
            raise CollectiveError("gradient sync: the global batch is empty (every rank passed local_count=0)")
        if global_count is not None and total != global_count:
            raise DistributedError(
                f"gradient sync: global_count: Expect: the sum of every rank's local_count = {total} "
                f"Actual: {global_count} on rank {self.comm.rank}")
        return total


def reduce_arrays(strategy: Strategy, grads, local_count: int, scalars: Mapping[str, float] | None = None,
                  regularization_grads=None, global_count: int | None = None,
                  prescaled: bool = False) -> SyncResult:
    """:meth:`Strategy.reduce` of gradients held in arrays (tests, benchmarks, tools).

    Lands ``grads`` in the strategy's buffer through its sink, weighted to
    this rank's share of the global mean, then reduces.

    Args:
        grads: this rank's gradients of its *mean* loss (aligned with the
            strategy's variables or a mapping name -> array; None entries
            for zero), or of its share of the global mean when ``prescaled``.
        local_count: samples this rank used (0 allowed).
        global_count: the global batch size; None: summed from the ranks'
            ``local_count`` first (one more small all-reduce).
        prescaled: the gradients are already this rank's share.
    Example:
        >>> res = reduce_arrays(strategy, [g_w, g_b], local_count=len(batch), global_count=n)
    """
    local_count, global_count = strategy._check_counts(local_count, global_count)
    scalars = strategy._check_scalars(scalars)
    grads = [None if g is None else strategy._check_grad(i, g, "gradient")
             for i, g in enumerate(strategy._aligned(grads, "grads"))]
    weight = 1.0
    if not prescaled:
        total = global_count
        if total is None:
            counts = np.array([float(local_count)])
            if strategy.comm.size > 1:
                strategy.comm.allreduce_(counts)
            total = int(counts[0])
        weight = local_count / total if total else 0.0
    sink = strategy.gradient_sink(False, local_count, scalars)
    for i, g in enumerate(grads):
        if g is None or local_count == 0:
            sink(i, None)
        else:
            sink(i, g if weight == 1.0 else np.multiply(g, weight))
    return strategy.reduce(local_count, scalars, regularization_grads, global_count)


def all_finite(flat: np.ndarray) -> bool:
    """Whether every element of ``flat`` is finite: sum(x*x) is finite only if
    every element is (one BLAS pass); an overflow of finite values is told
    apart by the exact check."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.dot(flat, flat)) or np.isfinite(flat).all())
