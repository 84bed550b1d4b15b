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
terms (the layers' regularizers; :func:`distnet.model.regularizers.weight_decay_loss`
is the other way); ``total_loss = base_loss + regularization_loss``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.registry import register
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
        raise InvalidArgumentError(f"{name}: reduction: Expect: one of {REDUCTIONS} Actual: {reduction!r}")


def _float_tensor(x: Any, name: str, what: str, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        t = x
    elif like is not None:
        t = Tensor(np.asarray(x), dtype=like.dtype)
    else:
        t = as_tensor(x)
    if t.dtype.kind != "f":
        raise DTypeError(f"{name}: {what}: Expect: a floating dtype Actual: dtype {t.dtype}")
    if t.ndim < 1:
        raise ShapeError(f"{name}: {what}: Expect: a batch axis (rank >= 1) Actual: a scalar")
    return t


def _pair(labels: Any, predictions: Any, name: str, pred_name: str) -> tuple[Tensor, Tensor]:
    pred = _float_tensor(predictions, name, pred_name)
    lab = _float_tensor(labels, name, "labels", like=pred)
    if lab.ndim == pred.ndim - 1 and pred.shape[-1] == 1 and lab.shape == pred.shape[:-1]:
        # Keras: one target per sample against a (batch, 1) output is the same target.
        from distnet.ops import expand_dims

        lab = expand_dims(lab, -1)
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


@register("loss", "mean_squared_error", aliases=("mse",), outputs="values", labels="values",
          doc="`mean((labels - outputs)**2)`: the outputs are the predictions (regression)")
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


@register("loss", "mean_absolute_error", aliases=("mae",), outputs="values", labels="values",
          doc="`mean(|labels - outputs|)`: the outputs are the predictions (regression)")
def mean_absolute_error(labels: Any, predictions: Any, reduction: str = "mean") -> Tensor:
    """Mean absolute error, ``mean(|labels - predictions|)`` (TF1's ``tf.losses.absolute_difference``).

    Example:
      >>> mean_absolute_error([[1.0], [3.0]], distnet.constant([[2.0], [1.0]])).numpy()
      array(1.5, dtype=float32)
    """
    from distnet.ops import abs as absolute

    _check_reduction(reduction, "mean_absolute_error")
    lab, pred = _pair(labels, predictions, "mean_absolute_error", "predictions")
    return _reduce(_per_sample_mean(absolute(lab - pred)), reduction, "mean_absolute_error")


@register("loss", "huber", aliases=("huber_loss",), outputs="values", labels="values",
          doc="`0.5 * e**2` where `|e| <= 1`, else `|e| - 0.5` (e = labels - outputs, delta 1; regression)")
def huber(labels: Any, predictions: Any, delta: float = 1.0, reduction: str = "mean") -> Tensor:
    """Huber loss (TF1's ``tf.losses.huber_loss``, Keras's ``huber``): with ``e = labels - predictions``,
    ``0.5 * e**2`` where ``|e| <= delta`` and ``delta * (|e| - 0.5 * delta)`` elsewhere.

    Written as TF1 does, ``0.5 * q**2 + delta * (|e| - q)`` with ``q = minimum(|e|, delta)``.

    Example:
      >>> huber([[0.0], [0.0]], distnet.constant([[0.5], [3.0]])).numpy()
      array(1.3125, dtype=float32)
    """
    from distnet.ops import abs as absolute, minimum

    name = "huber"
    _check_reduction(reduction, name)
    if not delta > 0:
        raise InvalidArgumentError(f"{name}: delta: Expect: > 0 Actual: {delta!r}")
    lab, pred = _pair(labels, predictions, name, "predictions")
    err = absolute(lab - pred)
    quad = minimum(err, delta)
    return _reduce(_per_sample_mean(0.5 * quad * quad + delta * (err - quad)), reduction, name)


@register("loss", "sigmoid_cross_entropy", outputs="logits", labels="values",
          doc="`max(x, 0) - x * y + log(1 + exp(-|x|))` per element on logits x, labels y in {0, 1} "
              "(binary classification: one output unit)")
def sigmoid_cross_entropy(labels: Any, logits: Any, reduction: str = "mean") -> Tensor:
    """Sigmoid cross-entropy on logits (TF1's ``tf.losses.sigmoid_cross_entropy``; Keras's
    ``binary_crossentropy(from_logits=True)``), in TF's overflow-free form
    ``max(x, 0) - x * y + log(1 + exp(-|x|))``; the mean runs over a sample's elements, then the batch.

    Args:
      labels: 0/1 (or probabilities), the logits' shape, or ``[batch]`` for ``[batch, 1]`` logits.
      logits: floating ``[batch, ...]``.

    Example:
      >>> sigmoid_cross_entropy([[1.0, 0.0]], distnet.constant([[0.0, 0.0]])).numpy()
      array(0.6931472, dtype=float32)
    """
    from distnet.ops import abs as absolute, exp, log, maximum, stop_gradient

    name = "sigmoid_cross_entropy"
    _check_reduction(reduction, name)
    lab, x = _pair(labels, logits, name, "logits")
    lab = stop_gradient(lab)   # TF1 does not differentiate the labels
    per = maximum(x, 0.0) - x * lab + log(1.0 + exp(-absolute(x)))
    return _reduce(_per_sample_mean(per), reduction, name)


def _class_logits(logits: Any, name: str) -> Tensor:
    lg = _float_tensor(logits, name, "logits")
    if lg.ndim != 2:
        raise ShapeError(f"{name}: logits: Expect: [batch, num_classes] Actual: shape {lg.shape}")
    return lg


@register("loss", "softmax_cross_entropy", aliases=("categorical_crossentropy",), outputs="logits",
          labels="onehot",
          doc="`-sum(onehot * log_softmax(logits))` per sample; integer class labels are one-hot encoded "
              "first (the same value as the sparse form)")
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


@register("loss", "sparse_softmax_cross_entropy", aliases=("sparse_categorical_crossentropy",),
          outputs="logits", labels="classes",
          doc="`-log_softmax(logits)[label]` per sample, integer class labels")
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
    from distnet.nn.cross_entropy import SparseSoftmaxCrossEntropy, labels_out_of_range

    name = "sparse_softmax_cross_entropy"
    _check_reduction(reduction, name)
    lg = _class_logits(logits, name)
    lab = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise DTypeError(f"{name}: labels: Expect: integer class indices Actual: dtype {lab.dtype}")
    if lab.shape != lg.shape[:1]:
        raise ShapeError(f"{name}: labels: one class index per row of logits: "
                         f"Expect: {lg.shape[:1]} Actual: {lab.shape}")
    if labels_out_of_range(lab, lg.shape[1]):
        bad = lab[(lab < 0) | (lab >= lg.shape[1])]
        raise InvalidArgumentError(f"{name}: labels: Expect: in [0, {lg.shape[1]}) Actual: {bad[:5].tolist()}")
    # The op itself: the checks of nn.sparse_softmax_cross_entropy_with_logits are the ones above.
    per = SparseSoftmaxCrossEntropy.apply(lg, labels=lab)
    return _reduce(per, reduction, name)


def _check_probabilities(p: Tensor, name: str) -> None:
    if p.size and (np.nanmin(p.data) < 0 or np.nanmax(p.data) > 1):
        raise InvalidArgumentError(f"{name}: predictions: Expect: probabilities in [0, 1] "
                                   f"Actual: values in [{np.nanmin(p.data):g}, {np.nanmax(p.data):g}]")


@register("loss", "cross_entropy", outputs="probabilities", labels="onehot",
          doc="`-mean(onehot * log(clip(p, 1e-12, 1)))` on probabilities (a model ending in a softmax)")
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


@register("loss", "binary_crossentropy", outputs="probabilities", labels="values",
          doc="`-mean(y * log(p) + (1 - y) * log(1 - p))`, clipped, on probabilities (a sigmoid output)")
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
    from distnet.model.regularizers import add_n

    terms = getattr(model, "regularization_losses", None)
    if terms is None:
        raise InvalidArgumentError(
            f"get_regularization_loss: Expect: a model with regularization_losses Actual: {type(model).__name__}")
    return add_n(terms, dtype=getattr(model, "dtype", np.float32))


def get(identifier, class_labels: bool = False):
    """A loss ``(labels, outputs, reduction=...) -> Tensor`` by its registered name (or alias), or a callable as is.

    Args:
        identifier: a name of ``registry.names("loss")`` (``docs/jobs.md``), or a callable.
        class_labels: the labels will be integer class indices (a job's, a
            dataset's): a loss that takes one-hot labels gets them one-hot
            encoded from the outputs' width first (``softmax_cross_entropy``).
    Raises:
        InvalidArgumentError: an unknown name.
    """
    if callable(identifier):
        return identifier
    from distnet import registry

    found = registry.lookup("loss", identifier) if isinstance(identifier, str) else None
    if found is None:
        raise InvalidArgumentError(f"unknown loss {identifier!r}; expected a callable or one of "
                                   f"{list(registry.names('loss'))}")
    if class_labels and found.info.get("labels") == "onehot":
        return _on_class_labels(found.obj)
    return found.obj


def _on_class_labels(loss):
    """``loss`` (one-hot labels) taking integer class labels: they are one-hot encoded from the outputs' width."""
    def on_class_labels(labels, logits, reduction="mean"):
        labels = np.asarray(labels)
        if labels.dtype.kind in "iu" and labels.ndim == len(logits.shape) - 1:
            labels = np.eye(logits.shape[-1], dtype=logits.dtype)[labels]
        return loss(labels, logits, reduction=reduction)

    on_class_labels.__name__ = loss.__name__
    return on_class_labels


def job_losses() -> tuple[str, ...]:
    """The losses a job file may choose: those on what a job's model gives, the logits of its last
    Dense layer, or that layer's outputs as predictions (regression)."""
    from distnet import registry

    return tuple(c.name for c in registry.components("loss") if c.info.get("outputs") in ("logits", "values"))


__all__ = ["mean_squared_error", "mean_absolute_error", "huber", "sigmoid_cross_entropy", "softmax_cross_entropy",
           "sparse_softmax_cross_entropy", "cross_entropy", "binary_crossentropy", "get_regularization_loss", "get", "job_losses", "REDUCTIONS"]
