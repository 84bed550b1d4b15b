"""Evaluation: mean loss and the task's metric of a model on a dataset — the one function the
Trainer's evaluations and ``distnet eval`` use; ``distnet predict`` and the training step count the
right answers with its :func:`correct`.

The metric follows the task, decided here alone (:func:`metric_for`): ``accuracy`` for classes
(argmax of the outputs; for one output unit, the output against the loss's threshold: 0 on
logits, 0.5 on probabilities) and ``mae`` (mean absolute error) for float targets, a regression.

With a communicator, each rank takes its contiguous share of the samples and
the sums are all-reduced (a collective): every rank gets the global numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def correct(outputs: np.ndarray, labels, threshold: float = 0.0) -> int:
    """How many samples the outputs (logits or probabilities) classify right: ``argmax == label``;
    with one output unit (binary), ``(output > threshold) == label``; one-hot (or probability)
    labels count by their argmax."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape == outputs.shape and outputs.shape[-1] > 1:
        labels = labels.argmax(axis=-1)
    if outputs.ndim == 2 and outputs.shape[-1] == 1 and labels.ndim == 1:
        return int(np.count_nonzero((outputs[:, 0] > threshold) == (labels > 0.5)))
    return int(np.count_nonzero(outputs.argmax(axis=-1) == labels))


def absolute_error(outputs: np.ndarray, targets) -> float:
    """The sum over samples of each sample's mean absolute error (a regression's metric)."""
    targets = np.asarray(targets, dtype=np.float64)
    err = np.abs(np.asarray(outputs, np.float64).reshape(len(outputs), -1) - targets.reshape(len(targets), -1))
    return float(err.mean(axis=1).sum()) if len(err) else 0.0


@dataclass(frozen=True)
class Metric:
    """The task's metric: its record name and ``total(outputs, labels)`` (a sum over the samples)."""

    name: str
    threshold: float = 0.0

    def total(self, outputs: np.ndarray, labels) -> float:
        if self.name == "mae":
            return absolute_error(outputs, labels)
        return correct(outputs, labels, self.threshold)


def metric_for(loss, target: str = "classes") -> Metric:
    """The metric of a run: ``mae`` for float targets (``target == "values"``) of a regression loss
    (or an unregistered callable), else ``accuracy`` — also for float labels of a classification
    loss (one-hot, or 0./1. for a sigmoid) — thresholded, for one output unit, at 0.5
    when ``loss`` is a registered loss on probabilities and at 0 on logits."""
    from distnet import registry

    found = None
    if isinstance(loss, str):
        found = registry.lookup("loss", loss)
    else:
        found = next((c for c in registry.components("loss") if c.obj is loss
                      or getattr(loss, "__name__", None) == c.name), None)
    outputs = found.info.get("outputs") if found is not None else None
    # Float targets are a regression's, unless a classification loss takes them (Keras's one-hot
    # labels, or 0./1. floats for a sigmoid).
    if target == "values" and outputs in (None, "values"):
        return Metric("mae")
    return Metric("accuracy", 0.5 if outputs == "probabilities" else 0.0)


def evaluate(model, data, loss_fn, *, comm=None, batch_size: int = 1000, metric: Metric | None = None) -> dict:
    """``{"loss", "accuracy" (or "mae"), "samples"}`` of ``model`` (inference mode) on ``data``.

    Args:
        model: called as ``model(x, training=False)`` -> logits.
        data: a dataset with ``len()`` and ``read(indices) -> (x, labels)``.
        loss_fn: ``fn(labels, logits, reduction="sum") -> Tensor`` (see :func:`distnet.model.losses.get`).
        comm: share the samples over its ranks and sum (None: this process alone).
        batch_size: samples per forward pass.
        metric: the task's metric (default: :func:`metric_for` the loss and the data's ``target``).
    """
    if metric is None:
        metric = metric_for(loss_fn, getattr(data, "target", "classes"))
    n = len(data)
    rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
    lo, hi = n * rank // size, n * (rank + 1) // size
    loss_sum = 0.0
    right = 0
    for start in range(lo, hi, batch_size):
        x, y = data.read(np.arange(start, min(start + batch_size, hi)))
        logits = model(x, training=False)
        loss_sum += float(loss_fn(y, logits, reduction="sum").numpy())
        right += metric.total(logits.numpy(), y)
    totals = np.array([loss_sum, right, hi - lo], dtype=np.float64)
    if comm is not None:
        totals = comm.allreduce_(totals)
    return {"loss": float(totals[0] / max(totals[2], 1)), metric.name: float(totals[1] / max(totals[2], 1)),
            "samples": int(totals[2])}
