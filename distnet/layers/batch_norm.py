"""``BatchNorm``: batch normalization with moving statistics (Keras ``BatchNormalization``).

In training the layer normalizes by the batch's statistics and moves its
non-trainable ``moving_mean`` / ``moving_variance`` toward them (TF1's
momentum: ``moving = moving * momentum + batch * (1 - momentum)``); at
inference it normalizes by the moving statistics.  The moving variance is
fed the unbiased batch variance (``n / (n - 1)``), as TF's fused kernel
(what ``tf.layers.batch_normalization`` uses on images) and PyTorch do.

Synchronized statistics.  Given a reducer (:meth:`BatchNorm.set_reducer`,
a communicator's all-reduce) and ``synchronized`` left on, the statistics
are those of all workers' batches together, so N workers train the model
one worker trains on the global batch; ``synchronized = false`` keeps each
worker's own statistics (TensorFlow's and Horovod's default).  Each call in
training mode is one collective on every worker: a model called on
micro-batches takes statistics over each global micro-batch.

Per-piece statistics (deterministic mode, :func:`piece_statistics`).  Within
the block, a training call normalizes by its own input's statistics alone
(no reducer, whatever ``synchronized`` says), leaves the moving statistics
alone and records its batch mean and unbiased variance; the deterministic
step sums the pieces' records exactly and moves the statistics once per
step (:func:`apply_moving_statistics`), with the same bits on any N.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from distnet.model import initializers as _init
from distnet.errors import InvalidArgumentError, ShapeError
from distnet.layers.base import NAME, Layer
from distnet.registry import BOOL, FLOAT, INT, STR_OR_TABLE, Option, register
from distnet.tensor import Tensor


@register("layer", "batch_norm",
          Option("momentum", FLOAT, 0.99, "the moving statistics' decay per step", low=0.0, high=1.0),
          Option("epsilon", FLOAT, 1e-3, "added to the variance", low=0.0, low_open=True),
          Option("center", BOOL, True, "learn an offset `<name>/beta`"),
          Option("scale", BOOL, True, "learn a scale `<name>/gamma`"),
          Option("axis", INT, -1, "the channel axis (of `[batch, ...]`)"),
          Option("synchronized", BOOL, True, "statistics of the global batch (all workers: the Trainer "
                 "synchronizes them unless `[dist] sync_batch_norm = false`); false: always each worker's "
                 "own, as TensorFlow and Horovod. No effect with `[dist] deterministic` (each piece's own)"),
          Option("beta_initializer", STR_OR_TABLE, "zeros", "an initializer (table below)", ref="initializer"),
          Option("gamma_initializer", STR_OR_TABLE, "ones", "an initializer (table below)", ref="initializer"),
          NAME, aliases=("batch_normalization", "batchnorm"),
          doc="`gamma * (x - mean) / sqrt(var + epsilon) + beta` with the batch's statistics in training "
              "(moving `<name>/moving_mean`, `<name>/moving_variance` at inference)")
class BatchNorm(Layer):
    """Batch normalization over every axis but ``axis``.

    Args:
      momentum: decay of the moving statistics, in [0, 1] (Keras: 0.99).
      epsilon: added to the variance, > 0 (Keras: 1e-3).
      center, scale: learn ``beta`` / ``gamma``.
      axis: the channel axis of ``[batch, ...]`` inputs (default the last).
      synchronized: use the reducer given by :meth:`set_reducer` (default on).
      beta_initializer, gamma_initializer, moving_mean_initializer,
      moving_variance_initializer: initializers (zeros, ones, zeros, ones).
      name: layer name (default ``batch_normalization``, as Keras).

    Example:
      >>> Sequential([Conv2D(32, 3), BatchNorm(), Flatten(), Dense(10)], input_shape=(28, 28, 1))
    """

    base_name = "batch_normalization"

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 axis: int = -1, synchronized: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones", name: Optional[str] = None):
        super().__init__(name=name)
        if not 0.0 <= float(momentum) <= 1.0:
            raise InvalidArgumentError(f"BatchNorm: Expect: momentum in [0, 1] Actual: {momentum!r}")
        if not float(epsilon) > 0.0:
            raise InvalidArgumentError(f"BatchNorm: Expect: epsilon > 0 Actual: {epsilon!r}")
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or int(axis) == 0:
            raise InvalidArgumentError(f"BatchNorm: axis: Expect: an int that is not the batch axis 0 "
                                       f"Actual: {axis!r}")
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale, self.axis = bool(center), bool(scale), int(axis)
        self.synchronized = bool(synchronized)
        self.initializers = {k: _init.get(v) for k, v in (
            ("beta", beta_initializer), ("gamma", gamma_initializer), ("moving_mean", moving_mean_initializer),
            ("moving_variance", moving_variance_initializer))}
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None
        self._reducer: Optional[Callable[[np.ndarray], np.ndarray]] = None
        self._combine = "sum"
        self._stand_in = False   # set by stand_in_calls() around a stand-in forward
        self._recorded: Optional[list] = None   # set by piece_statistics() around a piece's forward

    @property
    def synchronizing(self) -> bool:
        """Whether a training call is a collective: a reducer is set and ``synchronized`` is on."""
        return self.synchronized and self._reducer is not None

    def set_reducer(self, reducer: Optional[Callable[[np.ndarray], np.ndarray]], combine: str = "sum") -> None:
        """Reduce the statistics over the workers with ``reducer`` (float64 vector -> its sum
        over the workers, e.g. ``comm.allreduce_``); None: this worker alone.

        ``combine`` says how the workers' gradients are combined afterwards:
        ``"sum"`` when each worker's loss is its share of the global loss
        (distnet's Trainer: ``sum / global_batch``), ``"mean"`` when it is the
        mean over its own samples and gradients are averaged weighted by sample
        count (TF1's DistributedOptimizer); see :mod:`distnet.nn.batch_norm`.
        """
        if combine not in ("sum", "mean"):
            raise InvalidArgumentError(f"BatchNorm.set_reducer: combine: Expect: 'sum' or 'mean' Actual: {combine!r}")
        self._reducer, self._combine = reducer, combine

    def _channel_axis(self, ndim: int) -> int:
        """The axis in a ``[batch, *per_sample]`` tensor of rank ``ndim``."""
        axis = self.axis % ndim if -ndim <= self.axis < ndim else None
        if axis is None or axis == 0:
            raise ShapeError(f"BatchNorm {self.name!r}: axis {self.axis} is not a channel axis of inputs of rank "
                             f"{ndim} (batch axis included)")
        return axis

    def build_weights(self, input_shape, rng):
        c = input_shape[self._channel_axis(len(input_shape) + 1) - 1]
        if self.scale:
            self.gamma = self.add_weight("gamma", (c,), self.initializers["gamma"], rng=rng)
        if self.center:
            self.beta = self.add_weight("beta", (c,), self.initializers["beta"], rng=rng)
        self.moving_mean = self.add_weight("moving_mean", (c,), self.initializers["moving_mean"], rng=rng,
                                           trainable=False)
        self.moving_variance = self.add_weight("moving_variance", (c,), self.initializers["moving_variance"],
                                               rng=rng, trainable=False)

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:
        from distnet.nn.batch_norm import batch_norm_train, batch_normalization, moving_average_update

        axis = self._channel_axis(x.ndim)
        if not training:
            shape = [1] * x.ndim
            shape[axis] = -1
            stats = [v.data.reshape(shape).copy() for v in (self.moving_mean, self.moving_variance)]
            params = [None if v is None else v.reshape(shape) for v in (self.beta, self.gamma)]
            return batch_normalization(x, stats[0], stats[1], params[0], params[1], self.epsilon)
        if self._recorded is not None:
            # One piece of a deterministic step: its own statistics, recorded; no collective, no move.
            y, st = batch_norm_train(x, self.gamma, self.beta, epsilon=self.epsilon, axis=axis)
            self._recorded.append((st.mean, st.unbiased_variance()))
            return y
        reducer = self._reducer if self.synchronized else None
        y, st = batch_norm_train(x, self.gamma, self.beta, epsilon=self.epsilon, axis=axis, reducer=reducer,
                                 combine=self._combine, stand_in=self._stand_in and reducer is not None)
        for var, value in ((self.moving_mean, st.mean), (self.moving_variance, st.unbiased_variance())):
            var.mark_written()
            moving_average_update(var.data, value, self.momentum)
        return y


BatchNormalization = BatchNorm


def batch_norm_layers(model) -> list:
    """The :class:`BatchNorm` layers of ``model``, in call order."""
    return [layer for layer in getattr(model, "layers", ()) if isinstance(layer, BatchNorm)]


@contextlib.contextmanager
def stand_in_calls(layers: Sequence[BatchNorm]) -> Iterator[None]:
    """Within the block, training calls of ``layers`` take their input as a stand-in for an
    empty batch (:func:`distnet.nn.batch_norm_train`'s ``stand_in``): a worker with no
    samples in a micro-batch runs the model on one sample of its data so that it joins
    every synchronizing layer's collectives, adding nothing and getting zero gradients."""
    for layer in layers:
        layer._stand_in = True
    try:
        yield
    finally:
        for layer in layers:
            layer._stand_in = False


@contextlib.contextmanager
def piece_statistics(layers: Sequence[BatchNorm]) -> Iterator[list]:
    """Within the block, training calls of ``layers`` use per-piece statistics (module doc).

    Yields a list with one list per layer (in ``layers``' order) that each
    training call of that layer extends with ``(mean, unbiased variance)``,
    float64 per channel; the moving statistics are not touched and no reducer is called.
    """
    records = [[] for _ in layers]
    for layer, rec in zip(layers, records):
        layer._recorded = rec
    try:
        yield records
    finally:
        for layer in layers:
            layer._recorded = None


def apply_moving_statistics(layer: BatchNorm, mean: np.ndarray, variance: np.ndarray) -> None:
    """Move ``layer``'s moving statistics once toward ``mean`` and ``variance`` (its momentum)."""
    from distnet.nn.batch_norm import moving_average_update

    for var, value in ((layer.moving_mean, mean), (layer.moving_variance, variance)):
        var.mark_written()
        moving_average_update(var.data, value, layer.momentum)


def synchronize_batch_norm(model, comm, combine: str = "sum") -> int:
    """Give every :class:`BatchNorm` of ``model`` the communicator's all-reduce; returns how many.

    What a trainer calls once after building the model on every worker
    (``combine`` as :meth:`BatchNorm.set_reducer`: ``"sum"`` for distnet's
    Trainer, whose workers' losses are shares ``sum / global batch``).  On one
    worker it leaves the layers alone.  Every worker must then run each
    training-mode forward and backward of the model, also with an empty shard,
    and the same number of micro-batches (each layer call is a collective).
    """
    layers = batch_norm_layers(model)
    if comm.size > 1:
        for layer in layers:
            layer.set_reducer(lambda v: comm.allreduce_(v), combine=combine)
    return len(layers)
