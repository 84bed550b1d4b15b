"""Batch normalization (TF's ``tf.nn.moments``, ``tf.nn.batch_normalization``
and the training kernel behind ``tf.layers.batch_normalization``).

* :func:`moments` and :func:`batch_normalization` are composed from
  primitive ops (TF1's formulas), so they are differentiable with respect to
  every input and need no backward of their own.
* :func:`batch_norm_train` is one op: the statistics of the batch over every
  axis but the channel axis, then ``scale * (x - mean) / sqrt(var + eps) +
  offset`` with the biased variance (TF1 normalizes with it), and the fused
  backward.

Synchronized statistics.  :func:`batch_norm_train` reduces its statistics
through a ``reducer``: a callable that takes a float64 vector and returns its
sum over the workers (a communicator's all-reduce; None is one worker).  The
forward sums ``[count, sum(x), sum(x**2)]`` per channel (accumulated in
float64), so the mean and variance are those of the global batch; the
backward sums ``[sum(dy), sum(dy * xhat)]``, which the input gradient of
normalization by global statistics needs.  Both run on every worker in the
same order, once per call (a collective).

The backward also needs to know how the workers' gradients are combined
(``combine``).  distnet's rule (the Trainer and TF1's DistributedOptimizer):
each worker's loss is a mean over its own samples and the gradients are
averaged weighted by sample count (``"mean"``); the alternative is a plain
sum of per-worker gradients (``"sum"``, each worker's loss already a share
of the global one).  With ``w`` the worker's weight in that combination
(``n_local / n_global``, or 1), the upstream gradient ``dy`` a worker sees is
``1 / w`` times the global loss's, so the reduced sums are taken of
``w * dy`` and the input gradient is::

    dx = scale / sqrt(var + eps) * (dy - (G1 + xhat * G2) / (w * N))

``G1, G2`` the reduced sums and ``N`` the global count: with one worker this
is the textbook formula, with N workers the weighted sum of the workers'
parameter gradients equals the one-worker gradient of the global batch.

Stand-ins.  Every worker must make each call, also a worker with no
samples in a (micro-)batch.  Many ops refuse an empty batch, so such a
worker runs the model on a stand-in sample instead (``stand_in=True``): its
values enter neither the statistics nor the reduced gradient sums (it adds
zeros), it is normalized by the global statistics like the others, and its
gradients are zeros, so upstream layers receive nothing from it.

The one-pass variance ``E[x**2] - E[x]**2`` in float64 loses digits only
when ``|mean| / std`` exceeds about 1e4 (float32 inputs keep their 7 digits
below that).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from distnet.autodiff import Op
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.tensor import Tensor, as_tensor

Reducer = Callable[[np.ndarray], np.ndarray]

COMBINE = ("mean", "sum")


# -- composed: TF1's tf.nn.moments and tf.nn.batch_normalization ---------------------------

def moments(x: Any, axes: Any, keepdims: bool = False, name: str | None = None) -> tuple[Tensor, Tensor]:
    """Mean and (biased) variance of ``x`` over ``axes`` (TF's ``tf.nn.moments``).

    As TF1: ``mean = reduce_mean(x, axes)``, ``variance =
    reduce_mean(square(x - stop_gradient(mean)), axes)``; both differentiable.

    Example:
      >>> m, v = distnet.nn.moments(distnet.constant([[1.0, 2.0], [3.0, 6.0]]), axes=[0])
      >>> m.numpy(), v.numpy()
      (array([2., 4.], dtype=float32), array([1., 4.], dtype=float32))
    """
    from distnet.ops import reduce_mean, square, squeeze, stop_gradient, subtract

    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"moments: Expect: a floating tensor Actual: dtype {x.dtype.name}")
    axes = [axes] if isinstance(axes, (int, np.integer)) else list(axes)
    mean = reduce_mean(x, axis=axes, keepdims=True)
    variance = reduce_mean(square(subtract(x, stop_gradient(mean))), axis=axes, keepdims=True)
    if not keepdims:
        mean, variance = squeeze(mean, axis=axes), squeeze(variance, axis=axes)
    return mean, variance


def batch_normalization(x: Any, mean: Any, variance: Any, offset: Any, scale: Any, variance_epsilon: float,
                        name: str | None = None) -> Tensor:
    """``scale * (x - mean) / sqrt(variance + eps) + offset`` (TF's ``tf.nn.batch_normalization``).

    Computed as TF1 does: ``inv = scale / sqrt(variance + eps)``, ``x * inv +
    (offset - mean * inv)``; ``offset`` and ``scale`` may be None.  Composed
    from primitive ops, so every argument gets its gradient.
    """
    from distnet.ops import add, multiply, sqrt, subtract

    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"batch_normalization: Expect: a floating tensor Actual: dtype {x.dtype.name}")
    variance = as_tensor(variance, like=x)
    inv = 1.0 / sqrt(variance + float(variance_epsilon))
    if scale is not None:
        inv = multiply(inv, as_tensor(scale, like=x))
    shift = multiply(as_tensor(mean, like=x), inv)
    shift = (subtract(as_tensor(offset, like=x), shift) if offset is not None else -shift)
    return add(multiply(x, inv), shift)


# -- the training op -----------------------------------------------------------------------

class Statistics(NamedTuple):
    """What :func:`batch_norm_train` computed besides its output (plain arrays, no gradient).

    ``mean`` and ``variance`` (biased, the one used to normalize) are float64
    per channel, over the global batch; ``count`` is the number of values per
    channel on all workers, ``local_count`` on this one.
    """

    mean: np.ndarray
    variance: np.ndarray
    count: int
    local_count: int

    def unbiased_variance(self) -> np.ndarray:
        """``variance * n / (n - 1)`` (what TF's fused kernel feeds the moving variance)."""
        n = self.count
        return self.variance * (n / (n - 1)) if n > 1 else self.variance


def _channels_last(a: np.ndarray, axis: int) -> np.ndarray:
    """``a`` as ``[values, channels]`` (a view when ``axis`` is already last)."""
    if axis != a.ndim - 1:
        a = np.moveaxis(a, axis, -1)
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1])


def _back(a2d: np.ndarray, shape: tuple, axis: int) -> np.ndarray:
    """The inverse of :func:`_channels_last` for an array of ``shape``."""
    moved = list(shape)
    c = moved.pop(axis)
    out = a2d.reshape(moved + [c])
    return out if axis == len(shape) - 1 else np.moveaxis(out, -1, axis)


def _reduce(reducer: Optional[Reducer], vec: np.ndarray, what: str) -> np.ndarray:
    if reducer is None:
        return vec
    out = reducer(vec)
    out = vec if out is None else np.asarray(out, dtype=np.float64)
    if out.shape != vec.shape:
        raise ShapeError(f"batch_norm_train: the reducer returned the {what} with shape {out.shape}; "
                         f"Expect: {vec.shape} (the sum over workers of the vector it was given)")
    return out


class BatchNormTrain(Op):
    """Normalization by the batch's (optionally all workers') statistics; see the module doc."""

    __slots__ = ("axis", "epsilon", "reducer", "combine", "stand_in", "shape", "xhat", "inv_std", "scale",
                 "stats")

    def __init__(self, axis: int, epsilon: float, reducer: Optional[Reducer], combine: str,
                 stand_in: bool = False):
        self.axis, self.epsilon, self.reducer, self.combine = axis, epsilon, reducer, combine
        self.stand_in = stand_in

    def forward(self, x: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        x2d = _channels_last(x, self.axis)
        n, c = x2d.shape
        vec = np.zeros(2 * c + 1, dtype=np.float64)
        if self.stand_in:
            n = 0   # a stand-in for an empty batch: it adds nothing (module doc)
        else:
            vec[0] = n
            np.sum(x2d, axis=0, dtype=np.float64, out=vec[1:c + 1])
            np.einsum("ij,ij->j", x2d, x2d, dtype=np.float64, out=vec[c + 1:])
        vec = _reduce(self.reducer, vec, "statistics")
        total = int(round(vec[0]))
        if total < 1:
            raise InvalidArgumentError("batch_norm_train: the batch has no values to take statistics of "
                                       "(Expect: at least one sample on some worker)")
        mean = vec[1:c + 1] / total
        var = np.maximum(vec[c + 1:] / total - mean * mean, 0.0)
        inv_std = 1.0 / np.sqrt(var + self.epsilon)
        self.stats = Statistics(mean, var, total, n)
        # xhat in the input's dtype: what TF's float32 kernel holds too.
        self.xhat = ((x2d - mean.astype(x.dtype)) * inv_std.astype(x.dtype))
        self.inv_std = inv_std.astype(x.dtype)
        self.scale = scale
        return _back(self.xhat * scale + offset, self.shape, self.axis)

    def backward(self, g: np.ndarray, needs) -> tuple:
        if self.stand_in:
            return self._stand_in_backward(g, needs)
        g2d = _channels_last(g, self.axis)
        c = g2d.shape[1]
        s1 = np.sum(g2d, axis=0, dtype=np.float64)
        s2 = np.einsum("ij,ij->j", g2d, self.xhat, dtype=np.float64)
        dscale = s2.astype(self.scale.dtype) if needs[1] else None
        doffset = s1.astype(self.scale.dtype) if needs[2] else None
        dx = None
        if needs[0]:
            stats = self.stats
            w = stats.local_count / stats.count if self.combine == "mean" else 1.0
            both = _reduce(self.reducer, np.concatenate([s1, s2]) * w, "gradient sums")
            denom = max(w * stats.count, 1e-300)
            g1, g2 = (both[:c] / denom).astype(g.dtype), (both[c:] / denom).astype(g.dtype)
            dx2d = (g2d - g1 - self.xhat * g2) * (self.scale * self.inv_std)
            dx = _back(dx2d, self.shape, self.axis)
        return dx, dscale, doffset

    def _stand_in_backward(self, g: np.ndarray, needs) -> tuple:
        """Zeros for every gradient; the reduction joined with zeros (the others' collective)."""
        c = self.scale.shape[0]
        if needs[0]:
            _reduce(self.reducer, np.zeros(2 * c, dtype=np.float64), "gradient sums")
        zeros = (np.zeros_like(self.scale) if n else None for n in needs[1:])
        return (np.zeros(self.shape, dtype=g.dtype) if needs[0] else None, *zeros)


class BatchNormOutput(NamedTuple):
    """:func:`batch_norm_train`'s result: the normalized tensor and the statistics used."""

    output: Tensor
    statistics: Statistics


def batch_norm_train(x: Any, scale: Any = None, offset: Any = None, *, epsilon: float = 1e-3, axis: int = -1,
                     reducer: Optional[Reducer] = None, combine: str = "mean",
                     stand_in: bool = False) -> BatchNormOutput:
    """Normalize ``x`` by the statistics of its batch (all axes but ``axis``).

    Args:
      x: floating tensor, channels on ``axis`` (default the last, NHWC).
      scale: ``gamma`` ``[channels]`` or None (1).
      offset: ``beta`` ``[channels]`` or None (0).
      epsilon: added to the variance, > 0 (TF's layers: 1e-3).
      axis: the channel axis.
      reducer: ``float64 vector -> its sum over the workers`` (e.g.
        ``lambda v: comm.allreduce_(v)``); None: this worker's batch alone.
      combine: how the workers' gradients are combined, ``"mean"`` (weighted
        by sample count: distnet's Trainer and DistributedOptimizer) or
        ``"sum"`` (see the module doc); irrelevant without a reducer.
      stand_in: ``x`` stands for an empty batch on this worker (module doc):
        it joins the reductions with zeros and gets zero gradients.

    Returns:
      ``(output, statistics)``: ``output`` is ``scale * (x - mean) /
      sqrt(var + eps) + offset`` with the biased variance; ``statistics``
      (:class:`Statistics`) feed the moving averages.

    Example:
      >>> y, st = distnet.nn.batch_norm_train(distnet.constant([[1.0], [3.0]]), epsilon=1e-8)
      >>> y.numpy()[:, 0], st.mean, st.variance
      (array([-1.,  1.], dtype=float32), array([2.]), array([1.]))
    """
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"batch_norm_train: Expect: a floating tensor (float32 or float64) Actual: {x.dtype.name}")
    if x.ndim < 1:
        raise ShapeError("batch_norm_train: Expect: a tensor with a channel axis Actual: a scalar")
    if not -x.ndim <= int(axis) < x.ndim:
        raise InvalidArgumentError(f"batch_norm_train: axis out of range. Expect: -{x.ndim} <= axis < {x.ndim} "
                                   f"Actual: {axis}")
    axis = int(axis) % x.ndim
    if not float(epsilon) > 0.0:
        raise InvalidArgumentError(f"batch_norm_train: Expect: epsilon > 0 Actual: {epsilon!r}")
    if combine not in COMBINE:
        raise InvalidArgumentError(f"batch_norm_train: combine: Expect: one of {COMBINE} Actual: {combine!r}")
    c = x.shape[axis]
    params = []
    for value, fill, what in ((scale, 1.0, "scale"), (offset, 0.0, "offset")):
        t = Tensor(np.full(c, fill, dtype=x.dtype)) if value is None else as_tensor(value, like=x)
        if t.dtype != x.dtype:
            raise DTypeError(f"batch_norm_train: {what} has dtype {t.dtype.name}; Expect: {x.dtype.name} (as x)")
        if t.shape != (c,):
            raise ShapeError(f"batch_norm_train: {what} must hold one value per channel. Expect: shape ({c},) "
                             f"Actual: {t.shape}")
        params.append(t)
    if stand_in and reducer is None:
        raise InvalidArgumentError("batch_norm_train: stand_in=True: Expect: a reducer (a stand-in joins the "
                                   "other workers' statistics) Actual: reducer=None")
    op = BatchNormTrain(axis, float(epsilon), reducer, combine, bool(stand_in))
    out = Tensor._from_op(op.forward(x.data, params[0].data, params[1].data), op, (x, *params))
    return BatchNormOutput(out, op.stats)


def moving_average_update(moving: np.ndarray, value: np.ndarray, momentum: float) -> np.ndarray:
    """The moving statistic after one step, written into ``moving``.

    TF1's layers: ``moving -= (moving - value) * (1 - momentum)``, i.e.
    ``moving * momentum + value * (1 - momentum)``.
    """
    moving -= (moving - np.asarray(value, dtype=moving.dtype)) * moving.dtype.type(1.0 - momentum)
    return moving
