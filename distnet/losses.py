"""Losses (TF1's ``tf.losses`` and the usual hand-written TF1 formulas) with a ``reduction`` option.

Every loss first computes a *per-sample* loss (first axis = batch), then
reduces it:

* ``reduction='mean'`` (default): the mean over the batch, a scalar.  For
  element-wise losses (MSE, the clipped cross-entropies) the per-sample loss is
  the mean over the sample's elements, so this equals the mean over all
  elements — ``tf.reduce_mean(tf.square(y_ - y))`` and the clipped
  ``-tf.reduce_mean(y_ * tf.log(tf.clip_by_value(y, 1e-12, 1.0)))``.
* ``reduction='sum'``: the sum over the batch, a scalar.  The data-parallel
  engine sums these over ranks and divides by the global sample count, so
  unequal shards are weighted correctly.
* ``reduction='none'``: the per-sample vector ``[batch]``.

Regularization: :func:`get_regularization_loss` sums a model's collected
terms (the layers' regularizers; :func:`distnet.regularizers.weight_decay_loss`
is the other way); ``total_loss = base_loss + regularization_loss``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.tensor import Tensor, as_tensor

REDUCTIONS = ("mean", "sum", "none")


def _reduce(per_sample: Tensor, reduction: str, name: str) -> Tensor:
    from distnet.ops import reduce_mean, reduce_sum

    if reduction == "mean":
        return reduce_mean(per_sample)
    if reduction == "sum":
        return reduce_sum(per_sample)
    return per_sample


def _check_reduction(reduction: str, name: str) -> None:
    if reduction not in REDUCTIONS:
        raise InvalidArgumentError(f"{name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _float_tensor(x: Any, name: str, what: str, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        t = x
    elif like is not None:
        t = Tensor(np.asarray(x), dtype=like.dtype)
    else:
        t = as_tensor(x)
    if not np.issubdtype(t.dtype, np.floating):
        raise DTypeError(f"{name}: {what} must be floating, got dtype {t.dtype}")
    if t.ndim < 1:
        raise ShapeError(f"{name}: {what} must have a batch axis (rank >= 1), got a scalar")
    return t


def _pair(labels: Any, predictions: Any, name: str, pred_name: str) -> tuple[Tensor, Tensor]:
    pred = _float_tensor(predictions, name, pred_name)
    lab = _float_tensor(labels, name, "labels", like=pred)
    if lab.shape != pred.shape:
        raise ShapeError(f"{name}: labels and {pred_name} must have the same shape. "
                         f"Expect: {pred.shape} Actual: labels {lab.shape}")
    if lab.dtype != pred.dtype:
        raise DTypeError(f"{name}: labels and {pred_name} must have the same dtype. "
                         f"Expect: {pred.dtype} Actual: {lab.dtype}; use distnet.cast")
    return lab, pred


def _per_sample_mean(x: Tensor) -> Tensor:
    from distnet.ops import reduce_mean

    if x.ndim == 1:
        return x
    return reduce_mean(x, axis=tuple(range(1, x.ndim)))


def mean_squared_error(labels: Any, predictions: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error, ``mean((labels - predictions) ** 2)`` (TF1's ``tf.losses.mean_squared_error``).

    Args:
      labels: the targets, shape of ``predictions``.
      predictions: floating ``[batch, ...]``.
      reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (see the module doc).

    Returns:
      A scalar Tensor, or ``[batch]`` for ``'none'``.

    Example:
      >>> mean_squared_error([[1.0], [3.0]], distnet.constant([[2.0], [1.0]])).numpy()
      array(2.5, dtype=float32)
    """
    from distnet.ops import square

    _check_reduction(reduction, "mean_squared_error")
    lab, pred = _pair(labels, predictions, "mean_squared_error", "predictions")
    return _reduce(_per_sample_mean(square(lab - pred)), reduction, "mean_squared_error")


def _class_logits(logits: Any, name: str) -> Tensor:
    lg = _float_tensor(logits, name, "logits")
    if lg.ndim != 2:
        raise ShapeError(f"{name}: logits must be [batch, num_classes]. Actual: shape {lg.shape}")
    return lg


def softmax_cross_entropy(onehot_labels: Any, logits: Any, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy with one-hot (or probability) labels (TF1's ``tf.losses.softmax_cross_entropy``).

    Args:
      onehot_labels: ``[batch, num_classes]`` distributions.
      logits: ``[batch, num_classes]`` unscaled scores.
      reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Returns:
      A scalar Tensor, or ``[batch]`` for ``'none'``.

    Example:
      >>> softmax_cross_entropy([[0.0, 1.0]], distnet.constant([[0.0, 0.0]])).numpy()
      array(0.6931472, dtype=float32)
    """
    from distnet.nn import softmax_cross_entropy_with_logits
    from distnet.ops import stop_gradient

    name = "softmax_cross_entropy"
    _check_reduction(reduction, name)
    lg = _class_logits(logits, name)
    lab = _float_tensor(onehot_labels, name, "onehot_labels", like=lg)
    if lab.shape != lg.shape:
        raise ShapeError(f"{name}: onehot_labels must have the logits' shape. Expect: {lg.shape} Actual: {lab.shape}")
    # TF1's tf.losses.softmax_cross_entropy does not differentiate the labels.
    per = softmax_cross_entropy_with_logits(labels=stop_gradient(lab), logits=lg)
    return _reduce(per, reduction, name)


def sparse_softmax_cross_entropy(labels: Any, logits: Any, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy with integer class labels (TF1's ``tf.losses.sparse_softmax_cross_entropy``).

    Args:
      labels: integers ``[batch]`` in ``[0, num_classes)``.
      logits: ``[batch, num_classes]``.
      reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Returns:
      A scalar Tensor, or ``[batch]`` for ``'none'``.

    Raises:
      DTypeError: labels are not integers.  ShapeError: shapes disagree.
      InvalidArgumentError: a label is out of range (the message names it).

    Example:
      >>> sparse_softmax_cross_entropy([1], distnet.constant([[0.0, 0.0]])).numpy()
      array(0.6931472, dtype=float32)
    """
    from distnet.nn import sparse_softmax_cross_entropy_with_logits

    name = "sparse_softmax_cross_entropy"
    _check_reduction(reduction, name)
    lg = _class_logits(logits, name)
    lab = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raise DTypeError(f"{name}: labels must be integer class indices, got dtype {lab.dtype}")
    if lab.shape != lg.shape[:1]:
        raise ShapeError(f"{name}: labels must be [batch] with one class index per row of logits. "
                         f"Expect: {lg.shape[:1]} Actual: {lab.shape}")
    if lab.size and (lab.min() < 0 or lab.max() >= lg.shape[1]):
        bad = lab[(lab < 0) | (lab >= lg.shape[1])]
        raise InvalidArgumentError(f"{name}: labels must be in [0, {lg.shape[1]}), got {bad[:5].tolist()}")
    per = sparse_softmax_cross_entropy_with_logits(labels=lab, logits=lg)
    return _reduce(per, reduction, name)


def _check_probabilities(p: Tensor, name: str) -> None:
    if p.size and (np.nanmin(p.data) < 0 or np.nanmax(p.data) > 1):
        raise InvalidArgumentError(f"{name}: predictions must be probabilities in [0, 1]; "
                                   f"got values in [{np.nanmin(p.data):g}, {np.nanmax(p.data):g}]")


def cross_entropy(labels: Any, probabilities: Any, epsilon: float = 1e-12, reduction: str = "mean") -> Tensor:
    """Cross-entropy on probabilities with clipping, as TF1 code often wrote it:
    ``-reduce_mean(labels * log(clip_by_value(p, epsilon, 1.0)))``.

    The mean runs over *all* elements, as that ``tf.reduce_mean`` does (so
    ``'mean'`` gives its number exactly; multiply by ``num_classes`` for the
    per-example sum over classes).

    Example:
      >>> cross_entropy([[0.0, 1.0]], distnet.constant([[0.5, 0.5]])).numpy()
      array(0.3465736, dtype=float32)
    """
    from distnet.ops import clip_by_value, log

    name = "cross_entropy"
    _check_reduction(reduction, name)
    lab, p = _pair(labels, probabilities, name, "probabilities")
    _check_probabilities(p, name)
    return _reduce(_per_sample_mean(-(lab * log(clip_by_value(p, epsilon, 1.0)))), reduction, name)


def binary_crossentropy(labels: Any, probabilities: Any, epsilon: float = 1e-12, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy on probabilities, clipped as TF1 code usually does:
    ``-mean(y * log(clip(p, eps, 1)) + (1 - y) * log(clip(1 - p, eps, 1)))``.

    Each element is an independent Bernoulli; the mean runs over the
    sample's elements (Keras' ``binary_crossentropy``), then the batch.

    Example:
      >>> binary_crossentropy([[1.0, 0.0]], distnet.constant([[0.5, 0.5]])).numpy()
      array(0.6931472, dtype=float32)
    """
    from distnet.ops import clip_by_value, log

    name = "binary_crossentropy"
    _check_reduction(reduction, name)
    lab, p = _pair(labels, probabilities, name, "probabilities")
    _check_probabilities(p, name)
    pos = lab * log(clip_by_value(p, epsilon, 1.0))
    neg = (1.0 - lab) * log(clip_by_value(1.0 - p, epsilon, 1.0))
    return _reduce(_per_sample_mean(-(pos + neg)), reduction, name)


def get_regularization_loss(model) -> Tensor:
    """The layers' regularizer terms: the sum of ``model.regularization_losses`` (TF1's
    ``tf.losses.get_regularization_loss``); a scalar ``0.0`` when there are none.

    Example:
      >>> total = sparse_softmax_cross_entropy(y, model(x)) + get_regularization_loss(model)
    """
    from distnet.regularizers import add_n

    terms = getattr(model, "regularization_losses", None)
    if terms is None:
        raise InvalidArgumentError(
            f"get_regularization_loss: expected a model with regularization_losses, got {type(model).__name__}")
    return add_n(terms, dtype=getattr(model, "dtype", np.float32))


_BY_NAME = {
    "mean_squared_error": mean_squared_error, "mse": mean_squared_error,
    "softmax_cross_entropy": softmax_cross_entropy,
    "sparse_softmax_cross_entropy": sparse_softmax_cross_entropy,
    "cross_entropy": cross_entropy, "binary_crossentropy": binary_crossentropy,
}


def get(identifier):
    """A loss ``(labels, outputs, reduction=...) -> Tensor`` by name, or a callable as is."""
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]
    raise InvalidArgumentError(f"unknown loss {identifier!r}; expected a callable or one of {sorted(_BY_NAME)}")


__all__ = ["mean_squared_error", "softmax_cross_entropy", "sparse_softmax_cross_entropy", "cross_entropy",
           "binary_crossentropy", "get_regularization_loss", "get", "REDUCTIONS"]
