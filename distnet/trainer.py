"""The training loop: one code path for one process and for N MPI ranks.

A single process is simply a world of size 1.  Each synchronized step:

1. every rank reads its own contiguous shard of the global batch (one
   permutation per epoch from the shared seed, see ``ShardSampler``);
2. forward and backward on the shard, in ``micro_batches`` pieces; the loss
   of a piece is the *sum* of its per-sample losses divided by the *global*
   batch size, so that summing the ranks' gradients gives exactly the
   gradient of the global mean loss, and backward writes the gradients
   straight into the strategy's buffer;
3. the strategy sums them over ranks with the step's metrics and adds the
   regularization gradient — a function of the weights alone — once;
4. a non-finite reduced gradient is seen by every rank, so every rank skips
   the same step; after ``max_bad_steps`` consecutive ones the job stops;
5. the strategy runs the optimizer and the EMA on what this rank holds;
6. periodic evaluation (global, all-reduced), checkpoints from rank 0, and a
   cross-rank parameter check every ``check_every`` steps.

SIGINT or SIGTERM during :meth:`Trainer.fit` (to any rank, or all) asks to
stop: the request rides in the step's reduction as one more scalar, so every
rank finishes the same step, one checkpoint is written there (its data
position is the next unseen sample) and :class:`~distnet.errors.TrainingStopped`
is raised with status 130 / 143 (:mod:`distnet.stop`).

How gradients are summed and who updates what is the strategy's business
(:mod:`distnet.distributed.strategies`): ``"replicated"`` all-reduces them
and every rank updates every weight; ``"zero1"`` gives each rank 1/N of the
update, the optimizer slots and the EMA shadows; ``"auto"`` (the default)
takes ZeRO-1 on several ranks where it can run.  Their options are passed as
keyword arguments (``Trainer(..., strategy="replicated", overlap=True)``).
Results and checkpoints are the same whichever runs.

Dropout masks are keyed by (seed, step, global sample index), so a run on N
ranks draws exactly the masks of the same run on one rank.

Set the process up once with :func:`distnet.distributed.init` first (BLAS
threads per rank, the allocator, aborting every rank when one fails).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from distnet.autodiff import gradients
from distnet.errors import InvalidArgumentError
from distnet.stop import decode as decode_stop
from distnet.tensor import Tensor, Variable

LossFn = Callable[..., Tensor]


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
    stop: int | None = None   # the signal every rank agreed to stop on after this step


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

    ``conv_algorithm``: the convolution layers' algorithm, ``"gemm"``
    (default), ``"auto"`` (measured per layer shape at start-up, rank 0's
    choice on every rank) or one forced (:mod:`distnet.nn.conv_choice`).

    Args (the strategy's):
        strategy: ``"auto"``, ``"replicated"``, ``"zero1"`` or any name of
            :func:`distnet.distributed.strategies.all_strategies`.
        **strategy_options: the strategy's own options (``bucket_bytes``,
            ``overlap``, ``compression``, ``shared_memory``), checked by it.
        deterministic: a prototype: every step the same bits on any number of
            ranks (canonical pieces of ``piece_size`` samples, default
            ``ceil(global_batch_size / 16)``, summed exactly: see
            ``distnet/training/deterministic.py``); replicated strategy only.

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
        validation_data=None,
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
        callbacks: Sequence[Callable[[Trainer, dict], None]] = (),
        trace: str | None = None,
        deterministic: bool = False,
        piece_size: int | None = None,
        strategy: str = "auto",
        conv_algorithm: str = "gemm",
        **strategy_options,
    ):
        from distnet.distributed import get_communicator
        from distnet.distributed.strategies import strategy_class

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
        strategy_cls, strategy_options = strategy_class(strategy, self.comm, optimizer, strategy_options)
        self.model = model
        self.loss_fn = _resolve_loss(loss)
        if global_batch_size > len(train_data):
            raise InvalidArgumentError(
                f"global_batch_size: Expect: at most the {len(train_data)} training samples "
                f"Actual: {global_batch_size} (every step would be the whole dataset)")
        self.optimizer = optimizer
        self.train_data = train_data
        self.eval_data = eval_data
        self.validation_data = validation_data
        #: Set by a callback (e.g. EarlyStopping) to end the run after the current step.
        self.stop_training = False
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
        self.max_bad_steps = int(max_bad_steps)
        self.check_every = check_every
        self.stall_timeout = stall_timeout
        self.history: list[dict] = []
        self.callbacks = list(callbacks)
        self._last_eval_step: int | None = None
        self._data_id: dict | None = None
        self._signals = None   # the StopSignals of a running fit()

        self.steps_per_epoch = math.ceil(len(train_data) / self.global_batch_size)
        self.total_steps = int(steps) if steps is not None else int(epochs) * self.steps_per_epoch

        if not getattr(model, "built", True):
            model.build((None,) + tuple(train_data.image_shape))
        self.variables: list[Variable] = sorted(model.trainable_variables, key=lambda v: v.name)
        self.all_variables: list[Variable] = sorted(model.variables, key=lambda v: v.name)
        self._check_and_broadcast_variables()
        from distnet.nn.conv_choice import check_mode, choose_conv_algorithms

        # Per rank and micro-batch: the batch one forward pass sees.
        local = -(-self.global_batch_size // self.comm.size)
        self.conv_algorithms = choose_conv_algorithms(model, -(-local // self.micro_batches), self.comm,
                                                      check_mode(conv_algorithm))

        from distnet.distributed import NonFiniteGuard, ShardSampler

        # "stop": the stop request (distnet.stop) rides with the step's metrics.
        self.strategy = strategy_cls.build(self.comm, self.variables, ("loss_sum", "correct", "stop"),
                                           **strategy_options)
        self.deterministic, self.piece_size = self._check_deterministic(deterministic, piece_size)
        self._closed = False
        # What this rank updates: the variables, or (ZeRO-1) its pieces of them.
        self.optimizer.build(self.strategy.updated)
        if self.ema is not None:
            # TF1: the shadows start at the variables' initial values (before step 1).
            self.ema.build(self.strategy.updated)
        for v in {id(v): v for v in [*self.all_variables, *self.strategy.updated]}.values():
            v.forget_initial_value()   # built from them already: no copy of the weights per variable

        self.sampler = ShardSampler(len(train_data), self.global_batch_size, self.seed,
                                    self.comm.rank, self.comm.size)
        from distnet import trace as tracing

        # A timeline of every rank's work (distnet/trace.py), written to ``trace`` (a directory).
        self.tracer = tracing.Tracer(trace, self.comm) if trace is not None else tracing.OFF
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
        """The layers' collected regularization terms plus weight decay, or None."""
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
        rank alone its barriers would meet the others' next step): the strategy frees
        what it holds (ZeRO-1's shared memory; the variables get private copies).

        The model stays usable (evaluate, save, another Trainer); this trainer trains no more.
        """
        if self._closed:
            return
        self._closed = True
        self.tracer.close()
        self.strategy.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Not after an exception: it may have happened on this rank only, and close()
        # is a collective the other ranks would never join.
        if exc_type is None:
            self.close()

    def _check_deterministic(self, deterministic, piece_size) -> tuple:
        """``(deterministic, piece size)``: the prototype runs under the replicated strategy only."""
        from distnet.distributed.pieces import default_piece_size
        from distnet.distributed.strategies.replicated import Replicated

        if not isinstance(deterministic, bool):
            raise InvalidArgumentError(f"deterministic: Expect: True or False Actual: {deterministic!r}")
        if not deterministic:
            return False, None
        s = self.strategy
        if (type(s) is not Replicated or getattr(s, "compressor", None) is not None or getattr(s, "overlap", False)
                or self.micro_batches != 1):
            raise InvalidArgumentError(
                "deterministic: Expect: strategy 'replicated' without compression or overlap, micro_batches 1 "
                f"(pieces replace micro-batches) Actual: {type(s).__name__}, micro_batches {self.micro_batches}")
        if piece_size is None:
            return True, default_piece_size(self.global_batch_size)
        if isinstance(piece_size, bool) or not isinstance(piece_size, (int, np.integer)) or piece_size < 1:
            raise InvalidArgumentError(f"piece_size: Expect: an integer >= 1 Actual: {piece_size!r}")
        return True, int(piece_size)

    def train_step(self, batch) -> StepResult:
        """One synchronized step on this rank's shard (a ``ShardBatch``)."""
        if self._closed:
            raise InvalidArgumentError("train_step: Expect: an open Trainer Actual: close() was called "
                                       "(build a new Trainer to train again)")
        t0 = time.perf_counter()
        step = self.step
        strategy, span = self.strategy, self.tracer.span
        indices = batch.indices
        local = int(indices.size)
        denom = float(batch.global_batch_size)
        loss_sum = 0.0
        correct = 0
        # Read once: the sinks and the reduce must carry the same value.
        stop = self._signals.code if self._signals is not None else 0.0
        if self.deterministic:
            return self._deterministic_step(batch, t0, stop)
        if local:
            with span("data", samples=local):
                x, y = self.train_data.read(indices)
            keys = per_sample_keys(self.seed, step, indices)
            parts = np.array_split(np.arange(local), min(self.micro_batches, local))
            for k, part in enumerate(parts):
                with span("forward", micro_batch=k):
                    logits = self.model(x[part], training=True, dropout_keys=keys[part])
                    loss = self.loss_fn(y[part], logits, reduction="sum") / denom
                    loss_sum += float(loss.numpy()) * denom
                    correct += int(np.sum(np.argmax(logits.numpy(), axis=-1) == y[part]))
                with span("backward", micro_batch=k):
                    sink = strategy.gradient_sink(accumulate=k > 0, local_count=local, last=k == len(parts) - 1,
                                                  scalars={"loss_sum": loss_sum, "correct": correct, "stop": stop})
                    gradients(loss, self.variables, on_leaf=sink, out=sink.out)
        with span("regularization"):
            reg = self.regularization_loss()
            reg_value, reg_grads = 0.0, None
            if reg is not None:
                reg_value = float(reg.numpy())
                # Variables it does not touch get None (no parameter-sized zeros per step).
                reg_grads = gradients(reg, self.variables, unconnected_gradients="none")
        with span("reduce", bytes=strategy.nbytes):
            res = strategy.reduce(local, {"loss_sum": loss_sum, "correct": correct, "stop": stop},
                                  regularization_grads=reg_grads, global_count=batch.global_batch_size)
        count = res.global_count
        lr = self.current_lr()
        # The regularization value is the same on every rank (same weights): an
        # inf there (its gradient added after the reduce may be too) skips the step everywhere.
        if self._guard.check(res.is_finite and math.isfinite(reg_value), step):
            with span("update"):   # clipping, the optimizer, the EMA, the weights made whole
                strategy.clip(res, self.optimizer)
                strategy.update(res, self.optimizer, self.ema, num_updates=self.ema_num_updates)
        return StepResult(step=self.step, epoch=batch.epoch, loss=res.scalars["loss_sum"] / count + reg_value,
                          reg_loss=reg_value, accuracy=res.scalars["correct"] / count, lr=lr,
                          samples=count, finite=res.is_finite, seconds=time.perf_counter() - t0,
                          stop=decode_stop(res.scalars["stop"]))

    def _deterministic_step(self, batch, t0: float, stop: float) -> StepResult:
        """:meth:`train_step` from canonical pieces and an exact sum: the same bits on any N
        (distnet/training/deterministic.py)."""
        from distnet.training.deterministic import deterministic_reduce

        step, strategy, span = self.step, self.strategy, self.tracer.span
        res = deterministic_reduce(self, batch, self.piece_size, step, stop)
        with span("regularization"):
            reg = self.regularization_loss()
            reg_value = 0.0
            if reg is not None:
                reg_value = float(reg.numpy())
                # Added once, after the sum, on every rank: the same weights give the same bits.
                for view, g in zip(res.grads, gradients(reg, self.variables, unconnected_gradients="none")):
                    if g is not None:
                        np.add(view, g, out=view, casting="same_kind")
                res.is_finite = res.is_finite and all(np.isfinite(v).all() for v in res.grads)
        count = res.global_count
        lr = self.current_lr()
        if self._guard.check(res.is_finite and math.isfinite(reg_value), step):
            with span("update"):
                strategy.clip(res, self.optimizer)
                strategy.update(res, self.optimizer, self.ema, num_updates=self.ema_num_updates)
        return StepResult(step=self.step, epoch=batch.epoch, loss=res.scalars["loss_sum"] / count + reg_value,
                          reg_loss=reg_value, accuracy=res.scalars["correct"] / count, lr=lr,
                          samples=count, finite=res.is_finite, seconds=time.perf_counter() - t0,
                          stop=decode_stop(res.scalars["stop"]))

    # ------------------------------------------------------------------
    def evaluate(self, data=None, use_ema: bool = False) -> dict:
        """Global loss (base, without regularization) and accuracy on ``data``."""
        data = self.eval_data if data is None else data
        if data is None:
            raise InvalidArgumentError("no evaluation data")
        if not use_ema:
            return self._evaluate(data)
        if self.ema is None:
            raise InvalidArgumentError("evaluate(use_ema=True) needs an ExponentialMovingAverage")
        with self.strategy.ema_weights(self.ema):
            return self._evaluate(data)

    def _evaluate(self, data) -> dict:
        """:meth:`evaluate` with the weights the variables hold now (a collective)."""
        n = len(data)
        lo = n * self.comm.rank // self.comm.size
        hi = n * (self.comm.rank + 1) // self.comm.size
        loss_sum = 0.0
        correct = 0
        for start in range(lo, hi, self.eval_batch_size):
            idx = np.arange(start, min(start + self.eval_batch_size, hi))
            x, y = data.read(idx)
            logits = self.model(x, training=False)
            loss_sum += float(self.loss_fn(y, logits, reduction="sum").numpy())
            correct += int(np.sum(np.argmax(logits.numpy(), axis=-1) == y))
        totals = self.comm.allreduce_(np.array([loss_sum, correct, hi - lo], dtype=np.float64))
        return {"loss": float(totals[0] / max(totals[2], 1)), "accuracy": float(totals[1] / max(totals[2], 1)),
                "samples": int(totals[2])}

    # ------------------------------------------------------------------
    def state(self):
        """The full training state as a CheckpointState (same on every rank).

        A collective (every rank calls it): the strategy gathers what each
        rank holds of the slots and shadows into full arrays, so the state is
        the same whichever strategy wrote it.
        """
        from distnet.checkpoint import CheckpointState

        opt_state = self.optimizer.state_dict()
        slots = {s: self.strategy.full_state(table) for s, table in opt_state["slots"].items()}
        ema = self.strategy.full_state(self.ema.state_dict()) if self.ema is not None else {}
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
            data=self._data_identity(),
            metrics={k: float(v) for k, v in (self.history[-1] if self.history else {}).items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)},
        )

    def _data_identity(self) -> dict:
        """Which data the run trains and evaluates on (files, samples, digest), computed once."""
        if self._data_id is None:
            from distnet.data.identity import data_identity

            self._data_id = data_identity(self.train_data, self.eval_data)
        return self._data_id

    def save_checkpoint(self) -> str | None:
        """Write a checkpoint from rank 0 (after the step's synchronisation)."""
        if self._manager is None:
            return None
        path = None
        state = self.state()   # a collective
        if self.comm.rank == 0:
            path = self._manager.save(state)
        self.comm.barrier()
        return path

    def restore(self, state) -> None:
        """Load ``state`` (already identical on every rank) into the job."""
        by_name = {v.name: v for v in self.all_variables}
        with self.strategy.writing_params():
            for name, arr in state.params.items():
                by_name[name].assign(arr)
        # Full arrays keyed by name (whatever world size wrote them) -> what this rank holds.
        slots = {s: self.strategy.local_state(table) for s, table in state.optimizer["slots"].items()}
        ema = self.strategy.local_state(state.ema) if state.ema else state.ema
        self.optimizer.load_state_dict({"iterations": state.optimizer["iterations"], "slots": slots})
        if self.ema is not None and ema:
            self.ema.load_state_dict(ema)
        self.sampler.set_position(int(state.epoch), int(state.position))

    def _restore_latest(self) -> bool:
        """Rank 0 reads the newest good checkpoint and broadcasts it; says which (step, epoch)."""
        from distnet.errors import CheckpointError

        found, error = None, None
        if self.comm.rank == 0 and self._manager is not None:
            expected = {v.name: (v.shape, v.dtype) for v in self.all_variables}
            try:
                found = self._manager.latest_good(expected)
            except CheckpointError as exc:
                error = str(exc)
        if self.comm.size > 1:
            # Rank 0's error is every rank's: the others must not wait for a state that never comes.
            error = self.comm.bcast_object(error, root=0)
        if error is not None:
            exc = CheckpointError(error)
            exc.agreed_by_all_ranks = True
            raise exc
        state = broadcast_state(self.comm, found[1] if found is not None else None)
        if state is None:
            if self.logger is not None:
                where = self._manager.directory if self._manager is not None else "(checkpoints are off)"
                self.logger.message(f"distnet: no checkpoint in {where}: starting from step 0")
            return False
        self.restore(state)
        if self.logger is not None and found is not None:
            self.logger.log("resume", checkpoint=found[0], step=state.step, epoch=state.epoch,
                            position=state.position, world_size_then=state.world_size)
            self.logger.message(f"distnet: resuming from {found[0]}: step {state.step}, epoch {state.epoch} "
                                f"(sample {state.position} of it), written by {state.world_size} rank(s)")
        return True

    # ------------------------------------------------------------------
    def fit(self, resume: bool = False, verbose: int | str = "auto", *, signals=None,
            stop_grace: float | None = None) -> list[dict]:
        """Train until ``steps`` / ``epochs`` are done; returns the history.

        SIGINT / SIGTERM stop it after a step every rank agrees on, with one
        checkpoint at that step (module docstring), by raising
        :class:`~distnet.errors.TrainingStopped` (status 130 / 143).  A
        second signal, or ``stop_grace`` seconds, end the job at once.

        Args:
            resume: continue from the newest good checkpoint in ``checkpoint_dir``.
            verbose: without a ``logger``, what rank 0 shows, as Keras's
                ``fit``: 0 nothing, 1 a progress bar on a terminal (lines
                every ``log_every`` steps otherwise), 2 lines; ``"auto"`` is 1.
                Evaluations are shown as they happen.  With a logger, the
                logger decides.
            signals: a :class:`distnet.stop.StopSignals` already installed
                (``distnet train`` installs one before start-up); default:
                one installed for the duration of ``fit`` (main thread only).
            stop_grace: seconds a stop may take (default
                :data:`distnet.stop.DEFAULT_GRACE`) when ``fit`` installs the handlers.
        Raises:
            TrainingStopped: a signal stopped training.
        """
        if verbose not in (0, 1, 2, "auto"):
            raise InvalidArgumentError(f"verbose: Expect: 0, 1, 2 or 'auto' Actual: {verbose!r}")
        from distnet.stop import DEFAULT_GRACE, StopSignals

        own_log = None
        if self.logger is None and verbose:
            from distnet.metrics import MetricsLogger

            own_log = self.logger = MetricsLogger(None, is_main=self.comm.rank == 0,
                                                  progress="plain" if verbose == 2 else "auto",
                                                  print_every=self.log_every or 100, tensorboard=False)
            own_log.start(total_steps=self.total_steps)
        own_signals = signals is None
        if own_signals:
            signals = StopSignals(self.comm, grace=stop_grace or DEFAULT_GRACE).install()
        try:
            return self._fit(resume, signals)
        finally:
            if own_signals:
                signals.uninstall()
            if own_log is not None:
                own_log.close()
                self.logger = None

    def request_stop(self, signum: int | None = None) -> None:
        """Stop after the next step as a signal would (e.g. from a callback); only during :meth:`fit`.

        Args:
            signum: ``signal.SIGINT`` (the default, status 130) or ``signal.SIGTERM`` (143).
        """
        import signal

        if self._signals is None:
            raise InvalidArgumentError("request_stop: Expect: a running fit() Actual: no training under way")
        self._signals.request(signal.SIGINT if signum is None else signum)

    def _fit(self, resume: bool, signals) -> list[dict]:
        if resume:
            self._restore_latest()
        signals.begin_training()
        stopped = self._loop(signals)
        if stopped is not None:
            self._stop(stopped)
        if self._evaluates and self._last_eval_step != self.step:
            self._log_eval()
        if self._manager is not None and (not self.checkpoint_every or self.step % self.checkpoint_every):
            self.save_checkpoint()
        self.tracer.write()
        if self.logger is not None:
            self.logger.close()
        return self.history

    def _loop(self, signals) -> int | None:
        """The steps; returns the signal every rank agreed to stop on, or None when done."""
        watchdog = None
        if self.stall_timeout and self.comm.size > 1:
            from distnet.distributed import Watchdog

            watchdog = Watchdog(self.comm, self.stall_timeout)
            watchdog.start()
        log = self.logger
        tracer = self.tracer
        self._signals = signals
        try:
            while self.step < self.total_steps:
                batch = self.sampler.next()
                if watchdog is not None:
                    watchdog.beat(self.step)
                tracer.set_step(self.step + 1)
                with tracer.span("step"):
                    result = self.train_step(batch)
                record = {"step": self.step, "epoch": batch.epoch, "loss": result.loss,
                          "reg_loss": result.reg_loss, "accuracy": result.accuracy, "lr": result.lr,
                          "samples_per_sec": result.samples / max(result.seconds, 1e-9),
                          "finite": result.finite}
                self.history.append(record)
                if log is not None:
                    log.log_step(record)
                if result.stop is not None:   # the same step on every rank: it came from the reduce
                    return result.stop
                if self.check_every and self.comm.size > 1 and self.step % self.check_every == 0:
                    from distnet.distributed import check_parameters_agree

                    check_parameters_agree(self.comm, self.all_variables, step=self.step)
                if self.eval_every and self._evaluates and self.step % self.eval_every == 0:
                    with tracer.span("evaluate"):
                        self._log_eval()
                if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                    with tracer.span("checkpoint"):
                        self.save_checkpoint()
                for callback in self.callbacks:
                    callback(self, record)
                if self.stop_training:   # decided from global values: the same step on every rank
                    break
            return None
        finally:
            self._signals = None
            if watchdog is not None:
                watchdog.stop()
            tracer.write()

    def _stop(self, signum: int) -> None:
        """Every rank agreed to stop after this step: one checkpoint here, then raise."""
        from distnet import exit_status
        from distnet.errors import TrainingStopped

        with self.tracer.span("checkpoint"):
            path = self.save_checkpoint()   # a collective: every rank is here, at the same step
        self.tracer.write()
        name = exit_status.signal_name(signum)
        if self.logger is not None:
            self.logger.log("stop", step=self.step, epoch=self.sampler.epoch, signal=name, checkpoint=path)
            self.logger.message(f"distnet: stopped by {name} after step {self.step}"
                                + (f"; checkpoint {path}" if path else " (checkpoints are off)"))
            self.logger.close("interrupted", signal=name)
        raise TrainingStopped(exit_status.for_signal(signum), signal=signum, step=self.step, checkpoint=path,
                              reason=f"{name} after step {self.step}")

    @property
    def _evaluates(self) -> bool:
        return self.eval_data is not None or self.validation_data is not None

    def _log_eval(self) -> dict:
        """Evaluate on the validation and test splits (trained and EMA weights), log, tell the callbacks."""
        self._last_eval_step = self.step
        result = {"step": self.step}
        splits = [(split, data) for split, data in (("val", self.validation_data), ("test", self.eval_data))
                  if data is not None]
        for split, data in splits:
            result.update({f"{split}_{k}": v for k, v in self._evaluate(data).items()})
        if self.ema is not None:
            with self.strategy.ema_weights(self.ema):   # one swap (ZeRO-1: one gather) for every split
                for split, data in splits:
                    result.update({f"ema_{split}_{k}": v for k, v in self._evaluate(data).items()})
        self.history.append(result)
        if self.logger is not None:
            self.logger.log_eval(result)
        for callback in self.callbacks:
            on_evaluate = getattr(callback, "on_evaluate", None)
            if on_evaluate is not None:
                on_evaluate(self, result)
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
                                                            "config_text", "metrics", "data")}}
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
