"""Softmax cross-entropy on logits, dense and sparse labels (``tf.nn``).

Both are fused: the loss is computed from a max-subtracted log-softmax,
``loss = log(sum(exp(z))) - <labels, z>`` with ``z = logits - max(logits)``,
so it stays finite for logits of any finite magnitude, and the gradient with
respect to the logits is the closed form ``softmax - labels`` (scaled by the
upstream gradient of each example) -- TF1's kernel.  That is the exact
derivative when each example's labels sum to 1 (one-hot rows, probability
distributions); for labels that do not, it is what TF1 computes, not the
exact derivative ``softmax * sum(labels) - labels``.  Both return one loss per example, the
class axis removed, as TensorFlow does; reduce it yourself (``reduce_mean``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.autodiff import Op
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.nn.activations import _log_sum_exp_parts, class_axis
from distnet.tensor import Tensor, as_tensor, binary_operands


class SoftmaxCrossEntropy(Op):
    """Dense labels: inputs ``(labels, logits)``, both differentiable."""

    __slots__ = ("axis", "labels", "log_p")

    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, labels, logits):
        z, lse = _log_sum_exp_parts(logits, self.axis)
        self.labels = labels
        self.log_p = z - lse
        return -np.sum(labels * self.log_p, axis=self.axis)

    def backward(self, g, needs):
        gk = np.expand_dims(g, self.axis)
        d_labels = -gk * self.log_p if needs[0] else None
        d_logits = None
        if needs[1]:
            # TF1's kernel: softmax - labels (the exact derivative is
            # softmax * sum(labels) - labels; they agree when labels sum to 1).
            d_logits = gk * (np.exp(self.log_p) - self.labels)
        return d_labels, d_logits


class SparseSoftmaxCrossEntropy(Op):
    """Integer labels (an attribute, not differentiable); input ``logits``."""

    __slots__ = ("labels", "softmax")

    def __init__(self, labels: np.ndarray):
        self.labels = labels

    def forward(self, logits):
        z, lse = _log_sum_exp_parts(logits, -1)
        rows, at = _label_entries(z, self.labels)
        loss = lse[..., 0] - rows[at].reshape(self.labels.shape)
        self.softmax = np.exp(z - lse)
        return loss

    def backward(self, g, needs):
        grad = self.softmax.copy()
        rows, at = _label_entries(grad, self.labels)   # a view: grad is C-contiguous
        rows[at] -= 1
        grad *= g[..., None]
        return (grad,)


def labels_out_of_range(labels: np.ndarray, num_classes: int) -> bool:
    """Whether any integer label lies outside ``[0, num_classes)``: two reductions, no mask (the
    mask is built only for the error message), run on every training step."""
    return bool(labels.size) and bool(np.minimum.reduce(labels, axis=None) < 0
                                      or np.maximum.reduce(labels, axis=None) >= num_classes)


def _label_entries(a: np.ndarray, labels: np.ndarray) -> tuple:
    """``(a as [examples, classes], the index of each example's label entry)``: a plain gather
    where ``np.take_along_axis`` builds its index arrays in Python every call; the same elements."""
    return a.reshape(labels.size, a.shape[-1]), (np.arange(labels.size), labels.reshape(-1))


def softmax_cross_entropy_with_logits(*, labels: Any, logits: Any, axis: int = -1,
                                      name: str | None = None) -> Tensor:
    """Cross-entropy between ``labels`` and ``softmax(logits)``, per example.

    TF2 semantics (``tf.nn.softmax_cross_entropy_with_logits``; TF1's ``_v2``):
    the gradient flows into the labels too.  Arguments are keyword-only, as
    TF1 enforces with its ``_sentinel``.

    Args:
      labels: a probability distribution along ``axis`` for each example
        (e.g. one-hot rows), the shape of ``logits``; a non-Tensor takes the
        logits' dtype.
      logits: unscaled log-probabilities, a floating tensor of rank >= 1.
      axis: the class axis (default the last).
      name: ignored.

    Returns:
      The loss ``-sum(labels * log_softmax(logits), axis)``, shape of
      ``logits`` without ``axis`` (``[batch]`` for ``[batch, classes]``).

    Example:
      >>> distnet.nn.softmax_cross_entropy_with_logits(labels=[[0.0, 1.0]], logits=[[0.0, 0.0]]).numpy()
      array([0.6931472], dtype=float32)
    """
    op_name = "softmax_cross_entropy_with_logits"
    lab, lg = binary_operands(labels, logits, op_name)
    if lg.dtype.kind != "f":
        raise DTypeError(f"{op_name}: logits: Expect: floating (float32 or float64) Actual: {lg.dtype.name}")
    if lab.shape != lg.shape:
        raise ShapeError(
            f"{op_name}: labels and logits must have the same shape. "
            f"Expect: labels of shape {lg.shape} Actual: {lab.shape}"
        )
    ax = class_axis(axis, lg.ndim, op_name)
    return SoftmaxCrossEntropy.apply(lab, lg, axis=ax)


def sparse_softmax_cross_entropy_with_logits(*, labels: Any, logits: Any, name: str | None = None) -> Tensor:
    """Cross-entropy of integer class ``labels`` under ``softmax(logits)``, per example.

    TF's ``tf.nn.sparse_softmax_cross_entropy_with_logits``: ``labels`` holds
    class indices, one per example, over the last axis of ``logits``.

    Args:
      labels: integer tensor of shape ``logits.shape[:-1]`` with values in
        ``[0, num_classes)``; not differentiable.
      logits: floating tensor ``[..., num_classes]``.
      name: ignored.

    Returns:
      The loss ``logsumexp(logits) - logits[label]``, shape ``logits.shape[:-1]``.

    Raises:
      DTypeError: labels are not integers.
      InvalidArgumentError: a label lies outside ``[0, num_classes)``.
      ShapeError: labels' shape is not the logits' without the last axis.

    Example:
      >>> distnet.nn.sparse_softmax_cross_entropy_with_logits(labels=[1], logits=[[0.0, 0.0]]).numpy()
      array([0.6931472], dtype=float32)
    """
    op_name = "sparse_softmax_cross_entropy_with_logits"
    lg = as_tensor(logits)
    if lg.dtype.kind != "f":
        raise DTypeError(f"{op_name}: logits: Expect: floating (float32 or float64) Actual: {lg.dtype.name}")
    if lg.ndim < 1:
        raise ShapeError(f"{op_name}: logits must have rank >= 1 [..., num_classes]. Actual: a scalar")
    lab = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise DTypeError(
            f"{op_name}: labels: Expect: integer class indices (int32 or int64) Actual: {lab.dtype.name}; "
            "for one-hot or probability labels use softmax_cross_entropy_with_logits"
        )
    if lab.shape != lg.shape[:-1]:
        raise ShapeError(
            f"{op_name}: labels must have the shape of logits without the class axis. "
            f"Expect: {lg.shape[:-1]} (logits {lg.shape}) Actual: {lab.shape}"
        )
    num_classes = lg.shape[-1]
    if labels_out_of_range(lab, num_classes):
        bad = (lab < 0) | (lab >= num_classes)
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        value = int(lab[where])
        raise InvalidArgumentError(
            f"{op_name}: received a label value of {value} (at index {where}) which is outside the valid "
            f"range of [0, {num_classes}); {int(bad.sum())} label(s) out of range in all"
        )
    return SparseSoftmaxCrossEntropy.apply(lg, labels=lab)
