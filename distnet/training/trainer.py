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
5. the strategy runs the optimizer and the EMA on what this rank holds.

Everything around the steps — the metrics log, evaluation and checkpoints
every N steps, the watchdog, the tracer, the cross-rank parameter check,
early stopping, keep-best, the progress display — is a hook
(:mod:`distnet.training.hook`: the events and the context they see).

SIGINT or SIGTERM during :meth:`Trainer.fit` (to any rank, or all) asks to
stop: the request rides in the step's reduction as one more scalar, so every
rank finishes the same step, the hooks hear ``on_stop`` (the checkpointing
hook writes one checkpoint there; its data position is the next unseen
sample) and :class:`~distnet.errors.TrainingStopped` is raised with status
130 / 143 (:mod:`distnet.training.stop`).

How gradients are summed and who updates what is the strategy's business
(:mod:`distnet.distributed.strategies`): ``"replicated"`` all-reduces them
and every rank updates every weight; ``"zero1"`` gives each rank 1/N of the
update, the optimizer slots and the EMA shadows; ``"auto"`` (the default)
takes ZeRO-1 on several ranks where it can run.  Results and checkpoints are
the same whichever runs.

Dropout masks are keyed by (seed, step, global sample index), so a run on N
ranks draws exactly the masks of the same run on one rank.

Batch normalization is synchronized by default (``sync_batch_norm``): each
layer's statistics are those of the step's global batch — with
``micro_batches = M``, of each global micro-batch, the global batch's samples
at positions k, k + M, ... — summed over the ranks in one small all-reduce
per layer call (and one in backward), so N ranks train the 1-rank model.
Each call is a collective: every rank runs every micro-batch, on a stand-in
sample that adds nothing where its shard has none.  ``sync_batch_norm=False``
keeps each rank's own statistics (TensorFlow's and Horovod's default).

``deterministic=True`` replaces steps 2-3 (and the evaluations) with canonical
pieces of the global batch and an exact sum, so that a run on any N has the
bits of the run on one rank (:mod:`distnet.training.deterministic`,
docs/determinism.md); there batch normalization takes each piece's own
statistics (``sync_batch_norm`` has no effect) and moves the moving
statistics once per step from the pieces' exact sum.

Set the process up once with :func:`distnet.distributed.init` first (BLAS
threads per rank, the allocator, aborting every rank when one fails).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from distnet.autodiff import gradients
from distnet.errors import InvalidArgumentError
from distnet.data.augment import random_crop_flip
from distnet.nn.dropout import per_sample_keys
from distnet.training.stop import decode as decode_stop
from distnet.tensor import Tensor, Variable
from distnet.training.evaluation import metric_for
from distnet.training.history import History
from distnet.training.hook import Context, StopEvent, as_hook
from distnet.training.settings import TrainConfig

LossFn = Callable[..., Tensor]


@dataclass
class StepResult:
    """What one synchronized step reports (global, all-reduced values)."""

    step: int
    epoch: int
    loss: float
    reg_loss: float
    accuracy: float   # the run's metric (Trainer.metric: accuracy, or a regression's mae)
    lr: float
    samples: int
    finite: bool
    seconds: float = 0.0
    stop: int | None = None   # the signal every rank agreed to stop on after this step


def _micro_batch_slices(n: int, m: int) -> list:
    """``m`` consecutive slices of ``range(n)``, the sizes of ``np.array_split(range(n), m)``:
    a micro-batch is a view of the shard's arrays, not a copy made by an index array."""
    q, r = divmod(n, m)
    edges = [k * q + min(k, r) for k in range(m + 1)]
    return [slice(edges[k], edges[k + 1]) for k in range(m)]


class Trainer:
    """Train a model with data parallelism over a communicator: the loop, plus hooks.

    Works unchanged with ``comm`` of size 1 (single process).

    Args:
        model, loss, optimizer, train_data: what Keras's ``compile`` + ``fit`` take;
            ``loss`` a name of :func:`distnet.model.losses.get` or ``fn(labels, logits, reduction)``.
        config: a :class:`~distnet.training.settings.TrainConfig` (the loop's settings).
        hooks: :class:`~distnet.training.hook.Hook` objects (or ``fn(trainer, record)`` callables),
            run in order after the services' hooks.
        ema: an :class:`~distnet.ExponentialMovingAverage` updated with every step, or None.
        comm: the communicator (default ``get_communicator("auto")``).
        eval_data, validation_data: the evaluation splits.
        **options: Keras-style keywords instead of ``config`` (``global_batch_size``, ``steps``, ...),
            the services' keywords (``eval_every``, ``checkpoint_dir``, ``checkpoint_every``,
            ``max_to_keep``, ``logger``, ``log_every``, ``check_every``, ``stall_timeout``,
            ``trace``, ``callbacks``; :mod:`distnet.training.options`) and the strategy's own
            (``bucket_bytes``, ``overlap``, ``compression``, ``shared_memory``, checked by it).

    Example:
      >>> trainer = Trainer(model, "sparse_softmax_cross_entropy", optimizer,
      ...                   train_data, eval_data=test, global_batch_size=100, steps=200)
      >>> history = trainer.fit()
    """

    def __init__(self, model, loss: str | LossFn, optimizer, train_data, config: TrainConfig | None = None, *,
                 hooks: Sequence = (), ema=None, comm=None, eval_data=None, validation_data=None, **options):
        from distnet import optimizers
        from distnet.model import losses
        from distnet.data.datasets import as_dataset
        from distnet.distributed import NonFiniteGuard, ShardSampler, get_communicator
        from distnet.distributed.strategies import strategy_class
        from distnet.training.options import split_options

        self.config, services, self.hooks = split_options(config, options, hooks)
        cfg = self.config
        # Keras habits: (x, y) arrays for a dataset, an optimizer by name.
        train_data = as_dataset(train_data, "train_data")
        eval_data, validation_data = as_dataset(eval_data, "eval_data"), as_dataset(validation_data, "validation_data")
        if isinstance(optimizer, str):
            optimizer = optimizers.get(optimizer)
        self.comm = comm if comm is not None else get_communicator("auto")
        if cfg.global_batch_size < self.comm.size:
            raise InvalidArgumentError(
                f"global_batch_size ({cfg.global_batch_size}) is smaller than the number of ranks "
                f"({self.comm.size}): every rank needs at least one sample per step")
        if len(train_data) == 0:
            raise InvalidArgumentError("the training dataset is empty")
        strategy_cls, strategy_options = strategy_class(cfg.strategy, self.comm, optimizer, cfg.strategy_options)
        self.loss_fn = losses.get(loss, class_labels=True)
        # What the step and the evaluations measure besides the loss (accuracy, or a regression's mae).
        self.metric = metric_for(loss, getattr(train_data, "target", "classes"))
        if cfg.global_batch_size > len(train_data):
            raise InvalidArgumentError(
                f"global_batch_size: Expect: at most the {len(train_data)} training samples "
                f"Actual: {cfg.global_batch_size} (every step would be the whole dataset)")
        self.model, self.optimizer, self.ema = model, optimizer, ema
        self.train_data, self.eval_data, self.validation_data = train_data, eval_data, validation_data
        self.log_every = services["log_every"]   # the progress display of fit(verbose=...)
        self.history = History()
        self._data_id: dict | None = None
        self._signals = None   # the StopSignals of a running fit()
        self.steps_per_epoch = math.ceil(len(train_data) / cfg.global_batch_size)
        self.total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * self.steps_per_epoch

        if not getattr(model, "built", True):
            model.build((None,) + tuple(train_data.image_shape))
        self.variables: list[Variable] = sorted(model.trainable_variables, key=lambda v: v.name)
        self.all_variables: list[Variable] = sorted(model.variables, key=lambda v: v.name)
        self._check_and_broadcast_variables()
        from distnet.nn.conv_choice import check_mode, choose_conv_algorithms, fixed_plan

        # Per rank and micro-batch: the batch one forward pass sees.
        local = -(-cfg.global_batch_size // self.comm.size)
        # "stop": the stop request (distnet.training.stop) rides with the step's metrics.
        self.strategy = strategy_cls.build(self.comm, self.variables, ("loss_sum", "correct", "stop"),
                                           **strategy_options)
        from distnet.training.deterministic import check_settings

        self.deterministic, self.piece_size = check_settings(self, cfg.deterministic, cfg.piece_size)
        # None (unset): "auto", but no timing in the deterministic step (its bits may depend on no
        # measurement, nor on N): there the fixed plan (distnet/nn/conv_choice.py).
        self._conv_mode = check_mode(cfg.conv_algorithm)
        if self._conv_mode is None and self.deterministic:
            self.conv_algorithms = fixed_plan(model)
        else:
            # Deterministic mode: every forward pass is one piece, whatever N.
            self.conv_algorithms = choose_conv_algorithms(
                model, self.piece_size if self.deterministic else -(-local // cfg.micro_batches), self.comm,
                self._conv_mode or "auto")
        # Deterministic mode: per-piece statistics, moved once per step from their exact sum, the
        # same on every rank (distnet/training/deterministic.py): no reducer, no per-rank statistics.
        self._bn_layers, self._bn_global, bn_own = self._synchronize_batch_norm(
            cfg.sync_batch_norm and not self.deterministic)
        if self.deterministic:
            bn_own = []
        # What every rank holds the same values of (the parameter check): all but per-rank statistics.
        own = {id(v) for layer in bn_own for v in layer.variables if not v.trainable}
        self.agreed_variables: list[Variable] = [v for v in self.all_variables if id(v) not in own]
        self._augment = bool(cfg.augment_padding or cfg.augment_flip)
        if self._augment and len(getattr(train_data, "image_shape", ()) or ()) not in (2, 3):
            raise InvalidArgumentError(
                "augment_padding/augment_flip: Expect: image data ([N, H, W] or [N, H, W, C]) "
                f"Actual: samples of shape {getattr(train_data, 'image_shape', None)}")
        self._closed = False
        # What this rank updates: the variables, or (ZeRO-1) its pieces of them.
        self.optimizer.build(self.strategy.updated)
        if self.ema is not None:
            # TF1: the shadows start at the variables' initial values (before step 1).
            self.ema.build(self.strategy.updated)
        for v in {id(v): v for v in [*self.all_variables, *self.strategy.updated]}.values():
            v.forget_initial_value()   # built from them already: no copy of the weights per variable
        self.sampler = ShardSampler(len(train_data), cfg.global_batch_size, cfg.seed, self.comm.rank, self.comm.size)
        self._guard = NonFiniteGuard(cfg.max_bad_steps, rank=self.comm.rank)
        self.ctx = Context(self)

    # ------------------------------------------------------------------
    @property
    def step(self) -> int:
        """The global step: the optimizer's iteration counter."""
        return int(self.optimizer.iterations)

    @property
    def ema_num_updates(self) -> bool:
        """Whether the EMA's decay follows the step (``TrainConfig.ema_num_updates``)."""
        return self.config.ema_num_updates

    @property
    def stop_training(self) -> bool:
        """Set by a hook or callback (e.g. EarlyStopping) to end the run after the current step."""
        return self.ctx.stop_training

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        self.ctx.stop_training = bool(value)

    def _synchronize_batch_norm(self, sync: bool) -> tuple[list, bool, list]:
        """``(layers given the communicator's all-reduce, whether micro-batches are global,
        layers whose moving statistics differ between ranks)``.

        Synchronized (the default), each batch-norm layer's statistics are
        those of the step's global (micro-)batch; its training calls become
        collectives, so :meth:`_global_micro_batches` runs the step.  Otherwise
        each rank normalizes by its own shard.
        """
        from distnet.layers.batch_norm import batch_norm_layers

        found = batch_norm_layers(self.model)
        synced = [layer for layer in found if sync and layer.synchronized]
        own = [layer for layer in found if layer not in synced] if self.comm.size > 1 else []
        for layer in found:
            layer.set_reducer(None)
        if self.comm.size > 1:
            comm = self.comm
            for layer in synced:
                # "sum": each rank's loss is its share sum / global batch and the gradients are summed.
                layer.set_reducer(lambda v: comm.allreduce_(v), combine="sum")
        return (synced if self.comm.size > 1 else []), bool(synced), own

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
        if self.config.weight_decay > 0:
            from distnet.model.regularizers import weight_decay_loss

            wd = weight_decay_loss(self.variables, self.config.weight_decay,
                                   exclude_bias=self.config.weight_decay_exclude_bias)
            total = wd if total is None else add(total, wd)
        return total

    def current_lr(self) -> float:
        """The learning rate of the next step (:func:`distnet.model.schedules.resolve`: validated)."""
        from distnet.model.schedules import resolve

        return resolve(self.optimizer.learning_rate, self.step)

    def add_hook(self, hook) -> None:
        """Run ``hook`` (a Hook, or a callable ``fn(trainer, record)``) after the others from the next fit on."""
        self.hooks.append(as_hook(hook))

    def hook(self, kind: type):
        """The first hook of class ``kind``, or None."""
        return next((h for h in self.hooks if isinstance(h, kind)), None)

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
        for layer in self._bn_layers:   # the model's training calls are no longer collectives
            layer.set_reducer(None)
        self.strategy.close()

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Not after an exception: it may have happened on this rank only, and close()
        # is a collective the other ranks would never join.
        if exc_type is None:
            self.close()

    # -- the step -------------------------------------------------------
    def train_step(self, batch) -> StepResult:
        """One synchronized step on this rank's shard (a ``ShardBatch``)."""
        if self._closed:
            raise InvalidArgumentError("train_step: Expect: an open Trainer Actual: close() was called "
                                       "(build a new Trainer to train again)")
        t0 = time.perf_counter()
        step = self.step
        strategy, span = self.strategy, self.ctx.tracer.span
        indices = batch.indices
        local = int(indices.size)
        denom = float(batch.global_batch_size)
        loss_sum = 0.0
        correct = 0
        # Read once: the sinks and the reduce must carry the same value.
        stop = self._signals.code if self._signals is not None else 0.0
        if self.deterministic:
            return self._deterministic_step(batch, t0, stop)
        if self._bn_global:
            loss_sum, correct = self._global_micro_batches(batch, stop)
        elif local:
            x, y, keys = self._read(step, indices)
            parts = _micro_batch_slices(local, min(self.config.micro_batches, local))
            for k, part in enumerate(parts):
                with span("forward", micro_batch=k):
                    logits = self.model(x[part], training=True, dropout_keys=keys[part])
                    loss = self.loss_fn(y[part], logits, reduction="sum") / denom
                    loss_sum += float(loss.numpy()) * denom
                    correct += self.metric.total(logits.numpy(), y[part])
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

    def _global_micro_batches(self, batch, stop: float) -> tuple[float, int]:
        """Forward and backward of a step whose batch normalization is synchronized;
        ``(loss sum, correct)`` of this rank.

        Micro-batch k is the global batch's samples at positions k, k + M,
        k + 2M, ... (M = ``micro_batches``, at most the global batch), the same
        samples whatever the number of ranks, so its statistics are too; each
        rank holds about 1/M of its shard in each.  Every rank runs all M —
        on a stand-in sample (the dataset's first, adding nothing, getting zero
        gradients) where its shard has none — because each batch-norm call is
        a collective.
        """
        from distnet.layers.batch_norm import stand_in_calls

        strategy, span = self.strategy, self.ctx.tracer.span
        indices, step = batch.indices, self.step
        local = int(indices.size)
        denom = float(batch.global_batch_size)
        m = min(self.config.micro_batches, batch.global_batch_size)
        loss_sum, correct = 0.0, 0
        if local:
            x, y, keys = self._read(step, indices)
        position = (batch.offset + np.arange(local)) % m
        for k in range(m):
            part = np.flatnonzero(position == k)
            with span("forward", micro_batch=k):
                if part.size:
                    logits = self.model(x[part], training=True, dropout_keys=keys[part])
                    loss = self.loss_fn(y[part], logits, reduction="sum") / denom
                    loss_sum += float(loss.numpy()) * denom
                    correct += self.metric.total(logits.numpy(), y[part])
                else:
                    first = np.zeros(1, dtype=np.int64)
                    x0, y0 = self.train_data.read(first)
                    with stand_in_calls(self._bn_layers):
                        logits = self.model(x0, training=True,
                                            dropout_keys=per_sample_keys(self.config.seed, step, first))
                    loss = self.loss_fn(y0, logits, reduction="sum") * 0.0
            with span("backward", micro_batch=k):
                sink = strategy.gradient_sink(accumulate=k > 0, local_count=local, last=k == m - 1,
                                              scalars={"loss_sum": loss_sum, "correct": correct, "stop": stop})
                gradients(loss, self.variables, on_leaf=sink, out=sink.out)
        return loss_sum, correct

    def _read(self, step: int, indices: np.ndarray) -> tuple:
        """This rank's samples of the step, augmented, and their per-sample keys (dropout and
        augmentation are keyed by global sample index, so N ranks draw as one)."""
        keys = per_sample_keys(self.config.seed, step, indices)
        with self.ctx.tracer.span("data", samples=int(indices.size)):
            x, y = self.train_data.read(indices)
            if self._augment:
                x = random_crop_flip(x, keys, self.config.augment_padding, self.config.augment_flip)
        return x, y, keys

    def _deterministic_step(self, batch, t0: float, stop: float) -> StepResult:
        """:meth:`train_step` from canonical pieces and an exact sum: the same bits on any N
        (distnet/training/deterministic.py)."""
        from distnet.training.deterministic import deterministic_step

        return deterministic_step(self, batch, t0, stop)

    # -- evaluation and state ------------------------------------------
    def evaluate(self, data=None, use_ema: bool = False) -> dict:
        """Global loss (base, without regularization) and accuracy on ``data`` (a collective)."""
        from distnet.training.evaluation import evaluate

        from distnet.data.datasets import as_dataset

        data = self.eval_data if data is None else as_dataset(data, "evaluate")
        if data is None:
            raise InvalidArgumentError("no evaluation data")
        if use_ema and self.ema is None:
            raise InvalidArgumentError("evaluate(use_ema=True) needs an ExponentialMovingAverage")
        with self.strategy.ema_weights(self.ema) if use_ema else contextlib.nullcontext():
            if self.deterministic:   # the same bits on any N (distnet/training/deterministic.py)
                from distnet.training.deterministic import evaluate_pieces

                return evaluate_pieces(self.model, data, self.loss_fn, comm=self.comm,
                                       batch_size=self.config.eval_batch_size, metric=self.metric)
            return evaluate(self.model, data, self.loss_fn, comm=self.comm, batch_size=self.config.eval_batch_size,
                            metric=self.metric)

    def data_identity(self) -> dict:
        """Which data the run trains and evaluates on (:func:`distnet.data.identity.data_identity`),
        computed once: one pass over the data."""
        if self._data_id is None:
            from distnet.data.identity import data_identity

            self._data_id = data_identity(self.train_data, self.eval_data)
        return self._data_id

    def state(self):
        """The full training state as a CheckpointState (same on every rank; a collective)."""
        from distnet.checkpoint.training_state import assemble

        last = self.history[-1] if self.history else {}
        return assemble(variables=self.all_variables, optimizer=self.optimizer, strategy=self.strategy,
                        ema=self.ema, sampler=self.sampler, seed=self.config.seed, world_size=self.comm.size,
                        config_text=self.config.config_text, data=self.data_identity(),
                        conv_algorithms=self.conv_algorithms,
                        metrics={k: float(v) for k, v in last.items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool)})

    def resume_conv_plan(self, state) -> None:
        """On resume from ``state`` (same on every rank): the convolution layers run the checkpoint's
        plan, unless an algorithm was forced (:mod:`distnet.nn.conv_choice`)."""
        if self._conv_mode not in (None, "auto"):
            return
        from distnet.nn.conv_choice import apply_plan

        # A file from before plans were stored (format < 3) ran "gemm" unless forced: apply_plan's default.
        self.conv_algorithms = apply_plan(self.model, state.conv_algorithms)

    # -- the loop -------------------------------------------------------
    def fit(self, resume: bool = False, verbose: int | str = "auto", *, signals=None,
            stop_grace: float | None = None) -> History:
        """Train until ``steps`` / ``epochs`` are done; returns the :class:`~distnet.training.history.History`:
        ``h.history["loss"]`` one entry per step, ``h.history["val_loss"]`` one per evaluation,
        ``h.records`` the raw records (the History is also their list).

        A resume whose checkpoint is at or past the last step trains nothing and says so
        (the log's status ``nothing_to_train``).

        SIGINT / SIGTERM stop it after a step every rank agrees on (module
        docstring), by raising :class:`~distnet.errors.TrainingStopped`
        (status 130 / 143).  A second signal, or ``stop_grace`` seconds, end the job at once.

        Args:
            resume: continue from the newest good checkpoint (the checkpointing hook's directory).
            verbose: without a metrics-log hook, what rank 0 shows, as Keras's ``fit``: 0
                nothing, 1 a progress bar on a terminal (lines every ``log_every`` steps
                otherwise), 2 lines; ``"auto"`` is 1.
            signals: a :class:`distnet.training.stop.StopSignals` already installed (``distnet train``
                installs one before start-up); default: one installed for the duration of ``fit``.
            stop_grace: seconds a stop may take (default :data:`distnet.training.stop.DEFAULT_GRACE`).
        Raises:
            TrainingStopped: a signal stopped training.
        """
        from distnet.runner import exit_status
        from distnet.errors import TrainingStopped
        from distnet.training.stop import DEFAULT_GRACE, StopSignals
        from distnet.training.hooks.checkpointing import Checkpointing, resume as resume_from
        from distnet.training.hooks.metrics_log import MetricsLog
        from distnet.training.hooks.progress import Progress

        if verbose not in (0, 1, 2, "auto"):
            raise InvalidArgumentError(f"verbose: Expect: 0, 1, 2 or 'auto' Actual: {verbose!r}")
        hooks = list(self.hooks)
        if verbose and self.hook(MetricsLog) is None:
            hooks.insert(0, Progress(verbose, self.log_every or 100, is_main=self.comm.rank == 0))
        ctx, status = self.ctx, "failed"
        ctx.resume, ctx.stop_training = bool(resume), False
        ctx.restored_step = ctx.end_reason = None
        ctx._emit = lambda event, *args: [getattr(h, event)(ctx, *args) for h in hooks]
        own_signals = signals is None
        if own_signals:
            signals = StopSignals(self.comm, grace=stop_grace or DEFAULT_GRACE).install()
        try:
            ctx._emit("on_fit_begin")
            if resume and self.hook(Checkpointing) is None:
                resume_from(ctx, None)   # says that checkpoints are off
            if resume and self.step >= self.total_steps:   # said, not evaluated again as if trained
                target = "train.steps" if self.config.steps is not None else "train.epochs"
                ctx.end_reason = (f"nothing to train: the checkpoint is at step {self.step}, the target is "
                                  f"{self.total_steps}; raise {target} to train more")
                status = "nothing_to_train"
                return self.history
            signals.begin_training()
            stop = self._loop(signals)
            if stop is not None:   # every rank agreed: the hooks save (the checkpoint) and log it
                ctx._emit("on_stop", stop)
                raise TrainingStopped(exit_status.for_signal(stop.signal), signal=stop.signal, step=stop.step,
                                      checkpoint=stop.checkpoint, reason=f"{stop.name} after step {stop.step}")
            ctx._emit("on_fit_end")
            status = "completed"
            return self.history
        except (KeyboardInterrupt, TrainingStopped):
            status = "interrupted"
            raise
        finally:
            try:
                for h in reversed(hooks):
                    h.on_close(ctx, status)
            finally:
                ctx._emit = None
                if own_signals:
                    signals.uninstall()

    def _loop(self, signals) -> StopEvent | None:
        """The steps; returns the stop every rank agreed on, or None when done."""
        from distnet.runner import exit_status

        ctx = self.ctx
        self._signals = signals
        try:
            while self.step < self.total_steps:
                batch = self.sampler.next()
                ctx._emit("on_step_begin")
                with ctx.tracer.span("step"):
                    result = self.train_step(batch)
                record = {"step": self.step, "epoch": batch.epoch, "loss": result.loss,
                          "reg_loss": result.reg_loss, self.metric.name: result.accuracy, "lr": result.lr,
                          "samples_per_sec": result.samples / max(result.seconds, 1e-9),
                          "finite": result.finite}
                self.history.append(record)
                if result.stop is not None:   # the same step on every rank: it came from the reduce
                    return StopEvent(result.stop, exit_status.signal_name(result.stop), self.step,
                                     batch.epoch, record)   # the epoch of the step, as its record says
                ctx._emit("on_step_end", record)
                if ctx.stop_training:   # decided from global values: the same step on every rank
                    break
            return None
        finally:
            self._signals = None

    def request_stop(self, signum: int | None = None) -> None:
        """Stop after the next step as a signal would (e.g. from a hook); only during :meth:`fit`.

        Args:
            signum: ``signal.SIGINT`` (the default, status 130) or ``signal.SIGTERM`` (143).
        """
        import signal

        if self._signals is None:
            raise InvalidArgumentError("request_stop: Expect: a running fit() Actual: no training under way")
        self._signals.request(signal.SIGINT if signum is None else signum)
