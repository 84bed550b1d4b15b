"""The training loop: one code path for one process and for N MPI ranks.

A single process is simply a world of size 1.  Each synchronized step:

1. every rank reads its own contiguous shard of the global batch (one
   permutation per epoch from the shared seed, see ``ShardSampler``);
2. forward and backward on the shard, in ``micro_batches`` pieces whose
   gradients are accumulated; the base loss of the shard is the *sum* of its
   per-sample losses divided by the *global* batch size, so that summing the
   ranks' gradients gives exactly the gradient of the global mean loss;
3. one all-reduce (sum) of the packed gradients and of the step's metrics
   (``direct_grads``, the default: backward writes them straight into the
   synchroniser's buffer, already divided by the global batch size, so there
   is nothing to pack or scale; ``overlap=True``: each bucket's non-blocking
   all-reduce starts as soon as backward has finished its variables);
4. the regularization gradient — a function of the weights alone, identical
   on every rank — is added once, after the reduce (not N times, not 1/N);
5. a non-finite reduced gradient is seen by every rank, so every rank skips
   the same step; after ``max_bad_steps`` consecutive ones the job stops;
6. the identical optimizer step on every rank, then the EMA shadow update;
7. periodic evaluation (global, all-reduced), checkpoints from rank 0, and a
   cross-rank parameter check every ``check_every`` steps.

Dropout masks are keyed by (seed, step, global sample index), so a run on N
ranks draws exactly the masks of the same run on one rank.

``shard_optimizer=True`` (ZeRO stage 1, :mod:`distnet.distributed.sharded`;
``None`` turns it on when there is more than one rank, the optimizer does not
clip and ``bucket_bytes`` is not given) replaces
steps 3-6 by: reduce-scatter of the gradients, the regularization gradient
added for this rank's block, the optimizer and EMA update of the block only
(slots and shadows for 1/N of the weights), then an all-gather of the
weights.  The results equal the replicated path's (bitwise on 2 ranks), and
:meth:`Trainer.state` gathers the full slots and shadows, so checkpoints are
the same either way.  With it, ``optimizer.get_slot`` returns this rank's
1-d pieces; global-norm clipping and ``bucket_bytes`` are refused.

``shared_memory="auto"`` (with the sharded optimizer; the default of job
files, while the Trainer's own default is False): when every rank runs on
one machine, the two big collectives move no messages -- the weights exist
once per machine in shared memory and each rank sums its block of the
gradients from the other ranks' shared buffers
(:mod:`distnet.distributed.shared_memory`).  The weights are then *shared*: code
that writes them outside the step (a callback, code between or after
``fit()``) writes them for every rank of the machine, so an in-place change
made on every rank (``v.assign(v * 0.9)``) is applied once per rank.  Write
them inside ``with trainer.sync.writing_params():``, with the same absolute
values on every rank, or leave ``shared_memory`` off.  The cross-rank
parameter check (``check_every``) then compares the one shared copy with
itself.  ``Trainer.close()`` (a collective; also ``with Trainer(...) as
t:``) frees the shared memory and gives the variables private copies.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from distnet.autodiff import gradients
from distnet.errors import InvalidArgumentError
from distnet.tensor import Tensor, Variable

LossFn = Callable[..., Tensor]

# Bucket size of the replicated all-reduce when bucket_bytes is not given
# (several ranks, or overlap).  Measured on the reference net, 2 ranks x 1
# thread, batch 100, steps interleaved in the same processes
# (benchmarks/scaling.py --variants direct,direct:4,direct:8,direct:16
# --interleave): 8 MB buckets 0.980x the step of one 25.7 MB buffer
# (4 MB 0.983x, 16 MB 0.985x).
DEFAULT_BUCKET_BYTES = 8 << 20
OVERLAP_BUCKET_BYTES = DEFAULT_BUCKET_BYTES


@dataclass
class StepResult:
    """What one synchronized step reports (global, all-reduced values)."""

    step: int
    epoch: int
    loss: float
    reg_loss: float
    accuracy: float
    lr: float
    samples: int
    finite: bool
    seconds: float = 0.0


def _resolve_loss(loss: str | LossFn) -> LossFn:
    """A loss given by name or as ``fn(labels, logits, reduction=...)``."""
    if callable(loss):
        return loss
    from distnet import losses

    fn = getattr(losses, str(loss), None)
    if fn is None or not callable(fn):
        raise InvalidArgumentError(
            f"unknown loss {loss!r}; expected one of sparse_softmax_cross_entropy, "
            "softmax_cross_entropy, mean_squared_error, or a callable"
        )
    return fn


def tune_malloc() -> bool:
    """Keep freed large blocks in the C heap for reuse (glibc only).

    Every step allocates and frees activations and gradients of up to tens
    of MB.  By default glibc serves each with a fresh ``mmap`` and unmaps it
    when freed, so every page is faulted in and zeroed again at every step
    (~6000 minor page faults per step for the reference conv net, 14% of a
    1-rank step and more with 2 ranks competing for memory).  This raises the
    mmap threshold to glibc's maximum (32 MB) and the heap trim threshold to
    1 GB for the whole process, as ``MALLOC_MMAP_THRESHOLD_=33554432
    MALLOC_TRIM_THRESHOLD_=1073741824`` in the environment would: the peak
    heap stays allocated instead of being returned to the system.

    Returns:
        True when applied, False where ``mallopt`` is not glibc's (no change).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version   # glibc, whose mallopt takes these parameters
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    m_trim_threshold, m_mmap_threshold = -1, -3   # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


def per_sample_keys(seed: int, step: int, indices: np.ndarray) -> np.ndarray:
    """uint64 dropout keys of the samples ``indices`` (global indices) at ``step``.

    A sample's key depends only on (seed, step, its global index), never on
    the rank or on where the sample sits in the local batch.
    """
    from distnet.nn.dropout import make_sample_keys

    return make_sample_keys(seed, step, 0, np.asarray(indices, dtype=np.int64))


class Trainer:
    """Train a model with data parallelism over a communicator.

    See the module docstring for the step; ``docs/DESIGN.md`` for the
    arguments.  Works unchanged with ``comm`` of size 1 (single process).

    Example:
      >>> trainer = Trainer(model, "sparse_softmax_cross_entropy", optimizer,
      ...                   train_data, eval_data=test, global_batch_size=100, steps=200)
      >>> history = trainer.fit()
    """

    def __init__(
        self,
        model,
        loss: str | LossFn,
        optimizer,
        train_data,
        *,
        eval_data=None,
        global_batch_size: int = 100,
        epochs: int | None = None,
        steps: int | None = None,
        ema=None,
        ema_num_updates: bool = True,
        weight_decay: float = 0.0,
        weight_decay_exclude_bias: bool = False,
        micro_batches: int = 1,
        seed: int = 0,
        comm=None,
        eval_every: int | None = None,
        eval_batch_size: int = 1000,
        log_every: int = 100,
        checkpoint_dir: str | None = None,
        checkpoint_every: int | None = None,
        max_to_keep: int = 5,
        config_text: str = "",
        logger=None,
        max_bad_steps: int = 5,
        check_every: int | None = 100,
        stall_timeout: float | None = None,
        bucket_bytes: int | None = None,
        shard_optimizer: bool | None = False,
        # Measured on 2 ranks x 1 thread, reference net, batch 100 (benchmarks/scaling.py
        # --interleave): direct_grads 1.5% faster than plain and 17 MB less peak memory;
        # overlap within 1% of direct (no gain without an MPI progress thread): off.
        direct_grads: bool = True,
        overlap: bool = False,
        malloc_tuning: bool = True,
        blas_threads: int | str | None = "auto",
        callbacks: Sequence[Callable[["Trainer", dict], None]] = (),
        compression: str = "none",
        shared_memory: bool | str = False,
    ):
        from distnet.distributed import get_communicator

        self.comm = comm if comm is not None else get_communicator("auto")
        if (epochs is None) == (steps is None):
            raise InvalidArgumentError(
                f"give exactly one of epochs and steps, got epochs={epochs!r}, steps={steps!r}"
            )
        for name, value in (("epochs", epochs), ("steps", steps)):
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(global_batch_size, (int, np.integer)) or global_batch_size < 1:
            raise InvalidArgumentError(f"global_batch_size must be a positive integer, got {global_batch_size!r}")
        if global_batch_size < self.comm.size:
            raise InvalidArgumentError(
                f"global_batch_size ({global_batch_size}) is smaller than the number of ranks "
                f"({self.comm.size}): every rank needs at least one sample per step"
            )
        if not isinstance(micro_batches, (int, np.integer)) or micro_batches < 1:
            raise InvalidArgumentError(f"micro_batches must be a positive integer, got {micro_batches!r}")
        if weight_decay < 0:
            raise InvalidArgumentError(f"weight_decay must be >= 0, got {weight_decay}")
        if len(train_data) == 0:
            raise InvalidArgumentError("the training dataset is empty")
        if shard_optimizer is not None and not isinstance(shard_optimizer, (bool, np.bool_)):
            raise InvalidArgumentError(f"shard_optimizer must be True, False or None (auto), got {shard_optimizer!r}")
        for name, value in (("direct_grads", direct_grads), ("overlap", overlap)):
            if not isinstance(value, (bool, np.bool_)):
                raise InvalidArgumentError(f"{name} must be True or False, got {value!r}")
        if overlap and not direct_grads:
            raise InvalidArgumentError(
                "overlap=True: Expect: direct_grads=True (backward must write its gradients into the "
                "synchroniser's buffer to start their all-reduce) Actual: direct_grads=False")
        if overlap and shard_optimizer:
            raise InvalidArgumentError(
                "overlap=True applies to the replicated all-reduce; Expect: shard_optimizer=False or None "
                "Actual: shard_optimizer=True (the sharded path reduce-scatters the whole buffer in one call)")
        clipping = (getattr(optimizer, "clipnorm", None) is not None
                    or getattr(optimizer, "global_clipnorm", None) is not None)
        if shard_optimizer is None:
            # Auto: sharded wherever it can be (measured faster on 2 ranks: the
            # update and the EMA cost 1/N), replicated on one rank (nothing to
            # share) and where the user chose what only the replicated path does.
            # Not the default: with it, optimizer.get_slot / ema.state_dict()
            # hold this rank's pieces only (Trainer.state() gathers them).
            shard_optimizer = self.comm.size > 1 and not clipping and bucket_bytes is None and not overlap
        if isinstance(shared_memory, (bool, np.bool_)) and shared_memory and not shard_optimizer:
            raise InvalidArgumentError(
                "shared_memory=True applies to the sharded optimizer; Expect: shard_optimizer=True or None "
                f"(auto) Actual: shard_optimizer={shard_optimizer!r}")
        if shard_optimizer and bucket_bytes is not None:
            raise InvalidArgumentError(
                f"bucket_bytes={bucket_bytes!r} applies to the replicated all-reduce; Expect: bucket_bytes=None "
                "with shard_optimizer=True (the sharded path reduce-scatters the whole buffer in one call)")
        if shard_optimizer and clipping:
            raise InvalidArgumentError(
                "shard_optimizer=True: Expect: an optimizer without clipnorm/global_clipnorm (a norm over the "
                "whole gradient is not available on a rank that holds 1/N of it) Actual: "
                f"clipnorm={optimizer.clipnorm!r}, global_clipnorm={optimizer.global_clipnorm!r}")

        from distnet.distributed.compression import check_compression

        compression = check_compression(compression, "compression")   # see distnet.distributed.compression
        if overlap and compression != "none":
            raise InvalidArgumentError(
                f"overlap=True with compression={compression!r}: Expect: one of them (the float16 reduction "
                "is made of its own blocking collectives, it cannot run as non-blocking buckets)")
        # A process-wide allocator setting (see tune_malloc), made here because
        # the training loop is what allocates and frees the large arrays.
        self.malloc_tuned = tune_malloc() if malloc_tuning else False
        # One BLAS pool per rank sized to its share of the machine's cores,
        # unless the environment chose (see distnet.distributed.threads); collective.
        from distnet.distributed.threads import limit_blas_threads, warn_blas_kernel_once

        self.blas_threads = limit_blas_threads(self.comm, blas_threads)
        if self.comm.rank == 0:
            warn_blas_kernel_once()   # an OPENBLAS_CORETYPE older than the CPU
        self.model = model
        self.loss_fn = _resolve_loss(loss)
        self.optimizer = optimizer
        self.train_data = train_data
        self.eval_data = eval_data
        self.global_batch_size = int(global_batch_size)
        self.micro_batches = int(micro_batches)
        self.ema = ema
        self.ema_num_updates = ema_num_updates
        self.weight_decay = float(weight_decay)
        self.weight_decay_exclude_bias = weight_decay_exclude_bias
        self.seed = int(seed)
        self.eval_every = eval_every
        self.eval_batch_size = int(eval_batch_size)
        self.log_every = log_every
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.max_to_keep = max_to_keep
        self.config_text = config_text
        self.logger = logger
        self.direct_grads = bool(direct_grads)
        self.overlap = bool(overlap)
        self.max_bad_steps = int(max_bad_steps)
        self.check_every = check_every
        self.stall_timeout = stall_timeout
        self.history: list[dict] = []
        self.callbacks = list(callbacks)
        self._last_eval_step: int | None = None

        self.steps_per_epoch = math.ceil(len(train_data) / self.global_batch_size)
        self.total_steps = int(steps) if steps is not None else int(epochs) * self.steps_per_epoch

        if not getattr(model, "built", True):
            model.build((None,) + tuple(train_data.image_shape))
        self.variables: list[Variable] = sorted(model.trainable_variables, key=lambda v: v.name)
        self.all_variables: list[Variable] = sorted(model.variables, key=lambda v: v.name)
        self._check_and_broadcast_variables()

        from distnet.distributed import GradientSynchronizer, NonFiniteGuard, ShardSampler
        from distnet.distributed.sharded import ShardedSynchronizer

        self.shard_optimizer = bool(shard_optimizer)
        if self.shard_optimizer:
            # ZeRO-1: the optimizer and the EMA see only this rank's pieces of
            # the variables (1-d Variables with the variables' names).
            self.sync = ShardedSynchronizer(self.comm, self.variables, scalar_names=("loss_sum", "correct"),
                                            compression=compression, shared_memory=shared_memory)
            self._updated = self.sync.pieces
        else:
            if bucket_bytes is None and (overlap or (self.comm.size > 1 and compression == "none")):
                bucket_bytes = DEFAULT_BUCKET_BYTES
            self.sync = GradientSynchronizer(self.comm, self.variables, bucket_bytes=bucket_bytes,
                                             scalar_names=("loss_sum", "correct"), overlap=self.overlap,
                                             compression=compression)
            self._updated = self.variables
        # direct_grads: backward writes into the synchroniser's buffer (no
        # gradient arrays of its own, no packing pass).
        self._grad_views = self.sync.grad_views() if self.direct_grads else None
        self._closed = False
        self.optimizer.build(self._updated)
        if self.ema is not None:
            # TF1: the shadows start at the variables' initial values (before step 1).
            self.ema.build(self._updated)

        self.sampler = ShardSampler(len(train_data), self.global_batch_size, self.seed,
                                    self.comm.rank, self.comm.size)
        self._guard = NonFiniteGuard(self.max_bad_steps, rank=self.comm.rank)
        self._manager = None
        if checkpoint_dir is not None:
            from distnet.checkpoint import CheckpointManager

            self._manager = CheckpointManager(checkpoint_dir, max_to_keep=max_to_keep,
                                              is_writer=self.comm.rank == 0)

    # ------------------------------------------------------------------
    @property
    def step(self) -> int:
        """The global step: the optimizer's iteration counter."""
        return int(self.optimizer.iterations)

    def _check_and_broadcast_variables(self) -> None:
        from distnet.distributed import broadcast_variables, check_same_variables

        if self.comm.size > 1:
            check_same_variables(self.comm, self.all_variables)
            broadcast_variables(self.comm, self.all_variables)

    def regularization_loss(self) -> Tensor | None:
        """Way (b) — the layers' collected terms — plus way (a), weight decay."""
        from distnet.ops import add

        total = None
        for term in self.model.regularization_losses:
            total = term if total is None else add(total, term)
        if self.weight_decay > 0:
            from distnet.regularizers import weight_decay_loss

            wd = weight_decay_loss(self.variables, self.weight_decay,
                                   exclude_bias=self.weight_decay_exclude_bias)
            total = wd if total is None else add(total, wd)
        return total

    def current_lr(self) -> float:
        lr = self.optimizer.learning_rate
        return float(lr(self.step)) if callable(lr) else float(lr)

    # ------------------------------------------------------------------
    def close(self) -> None:
        """End the trainer (a collective: every rank calls it, at the same point; on one
        rank alone its barriers would meet the others' next step): free the shared memory
        of ``shared_memory`` and give the variables private copies of their values.

        The model stays usable (evaluate, save, another Trainer); this trainer trains no more.
        """
        if self._closed:
            return
        self._closed = True
        close = getattr(self.sync, "close", None)
        if close is not None:
            close()
        self._grad_views = None   # they viewed the synchroniser's (maybe freed) buffer

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Not after an exception: it may have happened on this rank only, and close()
        # is a collective the other ranks would never join.
        if exc_type is None:
            self.close()

    def train_step(self, batch) -> StepResult:
        """One synchronized step on this rank's shard (a ``ShardBatch``)."""
        if self._closed:
            raise InvalidArgumentError("train_step: Expect: an open Trainer Actual: close() was called "
                                       "(build a new Trainer to train again)")
        t0 = time.perf_counter()
        step = self.step
        indices = batch.indices
        local = int(indices.size)
        grads = None
        loss_sum = 0.0
        correct = 0
        if local:
            x, y = self.train_data.read(indices)
            keys = per_sample_keys(self.seed, step, indices)
            parts = np.array_split(np.arange(local), min(self.micro_batches, local))
            # Plain: the loss of the shard is its sum over the LOCAL count and
            # the synchroniser weights each rank's mean by n_r / N.  Direct:
            # the sum over the GLOBAL count, whose gradient is this rank's
            # share already (prescaled), written straight into the buffer.
            # Same value; the rounding differs by an ulp or so.
            direct = self._grad_views is not None
            denom = float(batch.global_batch_size) if direct else float(local)
            for k, part in enumerate(parts):
                logits = self.model(x[part], training=True, dropout_keys=keys[part])
                loss = self.loss_fn(y[part], logits, reduction="sum") / denom
                loss_sum += float(loss.numpy()) * denom
                correct += int(np.sum(np.argmax(logits.numpy(), axis=-1) == y[part]))
                if direct:
                    hooks = {}
                    if self.overlap and k == len(parts) - 1:
                        # The last backward of the step: each bucket's all-reduce
                        # starts as soon as its gradients are final.
                        self.sync.begin(local, {"loss_sum": loss_sum, "correct": correct})
                        hooks = {"on_final": self.sync.grad_ready, "progress": self.sync.progress}
                    grads = gradients(loss, self.variables, out=self._grad_views, accumulate=k > 0, **hooks)
                    continue
                g = gradients(loss, self.variables)
                if grads is None:
                    grads = g
                else:
                    for acc, gi in zip(grads, g):
                        acc += gi
        reg = self.regularization_loss()
        reg_value, reg_grads = 0.0, None
        if reg is not None:
            reg_value = float(reg.numpy())
            # A function of the weights alone, identical on every rank: added once, after the reduce.
            # Variables it does not touch get None (no parameter-sized zeros per step).
            reg_grads = gradients(reg, self.variables, unconnected_gradients="none",
                                  progress=self.sync.progress if self.overlap and local else None)
        res = self.sync.sync(grads, local, scalars={"loss_sum": loss_sum, "correct": correct},
                             regularization_grads=reg_grads, global_count=batch.global_batch_size,
                             prescaled=self._grad_views is not None)
        count = res.global_count
        lr = self.current_lr()
        # The regularization value is the same on every rank (same weights): an
        # inf there (its gradient added after the reduce may be too) skips the step everywhere.
        if self._guard.check(res.is_finite and math.isfinite(reg_value), step):
            # Sharded: pieces of this rank's block; replicated: the variables.
            self.optimizer.apply_gradients(res.grads_and_vars())
            if self.ema is not None:
                self.ema.apply(self._updated, num_updates=self.step if self.ema_num_updates else None)
            if self.shard_optimizer:
                self.sync.gather_params()
        return StepResult(step=self.step, epoch=batch.epoch, loss=res.scalars["loss_sum"] / count + reg_value,
                          reg_loss=reg_value, accuracy=res.scalars["correct"] / count, lr=lr,
                          samples=count, finite=res.is_finite, seconds=time.perf_counter() - t0)

    # ------------------------------------------------------------------
    def evaluate(self, data=None, use_ema: bool = False) -> dict:
        """Global loss (base, without regularization) and accuracy on ``data``."""
        data = self.eval_data if data is None else data
        if data is None:
            raise InvalidArgumentError("no evaluation data")
        n = len(data)
        lo = n * self.comm.rank // self.comm.size
        hi = n * (self.comm.rank + 1) // self.comm.size

        def run() -> np.ndarray:
            loss_sum = 0.0
            correct = 0
            for start in range(lo, hi, self.eval_batch_size):
                idx = np.arange(start, min(start + self.eval_batch_size, hi))
                x, y = data.read(idx)
                logits = self.model(x, training=False)
                loss_sum += float(self.loss_fn(y, logits, reduction="sum").numpy())
                correct += int(np.sum(np.argmax(logits.numpy(), axis=-1) == y))
            return np.array([loss_sum, correct, hi - lo], dtype=np.float64)

        if use_ema:
            if self.ema is None:
                raise InvalidArgumentError("evaluate(use_ema=True) needs an ExponentialMovingAverage")
            if self.shard_optimizer:
                shadows = self.sync.gather_pieces(self.ema.state_dict())
                saved = self.sync.params.copy()
                try:
                    with self.sync.writing_params():   # shared by the ranks of a machine: fenced
                        for v in self.variables:
                            np.copyto(v.data, shadows[v.name])
                    totals = run()
                finally:
                    with self.sync.writing_params():
                        np.copyto(self.sync.params, saved)
            else:
                with self.ema.swapped(self.variables):
                    totals = run()
        else:
            totals = run()
        self.comm.allreduce_(totals)
        return {"loss": float(totals[0] / max(totals[2], 1)), "accuracy": float(totals[1] / max(totals[2], 1)),
                "samples": int(totals[2])}

    # ------------------------------------------------------------------
    def state(self):
        """The full training state as a CheckpointState (same on every rank).

        With ``shard_optimizer`` this is a collective (every rank calls it):
        the slot and shadow pieces are gathered into full arrays, so the state
        is the same as the replicated path's.
        """
        from distnet.checkpoint import CheckpointState

        opt_state = self.optimizer.state_dict()
        slots = opt_state["slots"]
        ema = self.ema.state_dict() if self.ema is not None else {}
        if self.shard_optimizer:
            slots = {s: self.sync.gather_pieces(table) for s, table in slots.items()}
            ema = self.sync.gather_pieces(ema) if self.ema is not None else {}
        return CheckpointState(
            params={v.name: v.numpy() for v in self.all_variables},
            ema=ema,
            optimizer={"name": type(self.optimizer).__name__, "iterations": int(opt_state["iterations"]),
                       "slots": slots, "hyper": {}},
            step=self.step,
            epoch=self.sampler.epoch,
            position=self.sampler.position,
            rng={"seed": self.seed},
            world_size=self.comm.size,
            config_text=self.config_text,
            metrics={k: float(v) for k, v in (self.history[-1] if self.history else {}).items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)},
        )

    def save_checkpoint(self) -> str | None:
        """Write a checkpoint from rank 0 (after the step's synchronisation)."""
        if self._manager is None:
            return None
        path = None
        state = self.state() if self.shard_optimizer else None   # sharded: a collective gather
        if self.comm.rank == 0:
            path = self._manager.save(state if state is not None else self.state())
        self.comm.barrier()
        return path

    def restore(self, state) -> None:
        """Load ``state`` (already identical on every rank) into the job."""
        by_name = {v.name: v for v in self.all_variables}
        with self.sync.writing_params() if self.shard_optimizer else contextlib.nullcontext():
            for name, arr in state.params.items():
                by_name[name].assign(arr)
        slots, ema = state.optimizer["slots"], state.ema
        if self.shard_optimizer:
            # Full arrays keyed by name (whatever world size wrote them) -> this rank's pieces.
            slots = {s: self.sync.local_pieces(table) for s, table in slots.items()}
            ema = self.sync.local_pieces(ema) if ema else ema
        self.optimizer.load_state_dict({"iterations": state.optimizer["iterations"], "slots": slots})
        if self.ema is not None and ema:
            self.ema.load_state_dict(ema)
        self.sampler.set_position(int(state.epoch), int(state.position))

    def _restore_latest(self) -> bool:
        """Rank 0 reads the newest good checkpoint and broadcasts it."""
        state = None
        if self.comm.rank == 0 and self._manager is not None:
            expected = {v.name: (v.shape, v.dtype) for v in self.all_variables}
            state = self._manager.restore_latest(expected)
        state = broadcast_state(self.comm, state)
        if state is None:
            return False
        self.restore(state)
        return True

    # ------------------------------------------------------------------
    def fit(self, resume: bool = False) -> list[dict]:
        """Train until ``steps`` / ``epochs`` are done; returns the history."""
        if resume:
            self._restore_latest()
        watchdog = None
        if self.stall_timeout and self.comm.size > 1:
            from distnet.distributed import Watchdog

            watchdog = Watchdog(self.comm, self.stall_timeout)
            watchdog.start()
        log = self.logger
        interrupted = False
        try:
            while self.step < self.total_steps:
                batch = self.sampler.next()
                if watchdog is not None:
                    watchdog.beat(self.step)
                result = self.train_step(batch)
                record = {"step": self.step, "epoch": batch.epoch, "loss": result.loss,
                          "reg_loss": result.reg_loss, "accuracy": result.accuracy, "lr": result.lr,
                          "samples_per_sec": result.samples / max(result.seconds, 1e-9),
                          "finite": result.finite}
                self.history.append(record)
                if log is not None:
                    log.log_step(record)
                if self.check_every and self.comm.size > 1 and self.step % self.check_every == 0:
                    from distnet.distributed import check_parameters_agree

                    check_parameters_agree(self.comm, self.all_variables, step=self.step)
                if self.eval_every and self.eval_data is not None and self.step % self.eval_every == 0:
                    self._log_eval()
                if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                    self.save_checkpoint()
                for callback in self.callbacks:
                    callback(self, record)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            if watchdog is not None:
                watchdog.stop()
            if interrupted and self._manager is not None:
                try:
                    self.save_checkpoint()
                except Exception:  # noqa: BLE001 - never mask the interrupt
                    pass
        if self.eval_data is not None and self._last_eval_step != self.step:
            self._log_eval()
        if self._manager is not None and (not self.checkpoint_every or self.step % self.checkpoint_every):
            self.save_checkpoint()
        if log is not None:
            log.close()
        return self.history

    def _log_eval(self) -> dict:
        self._last_eval_step = self.step
        result = {"step": self.step, **{f"test_{k}": v for k, v in self.evaluate().items()}}
        if self.ema is not None:
            result.update({f"test_ema_{k}": v for k, v in self.evaluate(use_ema=True).items()})
        self.history.append(result)
        if self.logger is not None:
            self.logger.log_eval(result)
        return result


def broadcast_state(comm, state):
    """Give every rank rank 0's CheckpointState (or None): metadata as a small
    object, arrays through the buffer broadcast (one buffer per dtype)."""
    if comm.size == 1:
        return state
    from distnet.checkpoint import CheckpointState
    from distnet.distributed import broadcast_arrays

    def arrays_of(st) -> dict:
        out = {f"params/{k}": v for k, v in st.params.items()}
        out.update({f"ema/{k}": v for k, v in st.ema.items()})
        for slot, table in st.optimizer["slots"].items():
            out.update({f"slots/{slot}/{k}": v for k, v in table.items()})
        return out

    meta = None
    if comm.rank == 0 and state is not None:
        meta = {"specs": {k: (v.shape, v.dtype.str) for k, v in arrays_of(state).items()},
                "optimizer": {k: v for k, v in state.optimizer.items() if k != "slots"},
                "slot_names": sorted(state.optimizer["slots"]),
                "scalars": {k: getattr(state, k) for k in ("step", "epoch", "position", "rng", "world_size",
                                                            "config_text", "metrics")}}
    meta = comm.bcast_object(meta, root=0)
    if meta is None:
        return None
    if comm.rank == 0:
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays_of(state).items()}
    else:
        arrays = {k: np.empty(shape, dtype=np.dtype(dt)) for k, (shape, dt) in meta["specs"].items()}
    broadcast_arrays(comm, arrays, root=0)
    params = {k[len("params/"):]: v for k, v in arrays.items() if k.startswith("params/")}
    ema = {k[len("ema/"):]: v for k, v in arrays.items() if k.startswith("ema/")}
    slots = {slot: {k[len(f"slots/{slot}/"):]: v for k, v in arrays.items() if k.startswith(f"slots/{slot}/")}
             for slot in meta["slot_names"]}
    return CheckpointState(params=params, ema=ema, optimizer={**meta["optimizer"], "slots": slots},
                           **meta["scalars"])
