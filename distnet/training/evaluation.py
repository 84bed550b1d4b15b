"""Evaluation: mean loss and accuracy of a model on a dataset — the one function the Trainer's
evaluations and ``distnet eval`` use; ``distnet predict`` and the training step count the
right answers with its :func:`correct`.

With a communicator, each rank takes its contiguous share of the samples and
the sums are all-reduced (a collective): every rank gets the global numbers.
"""
from __future__ import annotations

import numpy as np


def correct(outputs: np.ndarray, labels) -> int:
    """How many samples the outputs (logits or probabilities) classify right: ``argmax == label``."""
    return int(np.sum(np.argmax(outputs, axis=-1) == labels))


def evaluate(model, data, loss_fn, *, comm=None, batch_size: int = 1000) -> dict:
    """``{"loss", "accuracy", "samples"}`` of ``model`` (inference mode) on ``data``.

    Args:
        model: called as ``model(x, training=False)`` -> logits.
        data: a dataset with ``len()`` and ``read(indices) -> (x, labels)``.
        loss_fn: ``fn(labels, logits, reduction="sum") -> Tensor`` (see :func:`distnet.losses.get`).
        comm: share the samples over its ranks and sum (None: this process alone).
        batch_size: samples per forward pass.
    """
    n = len(data)
    rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
    lo, hi = n * rank // size, n * (rank + 1) // size
    loss_sum = 0.0
    right = 0
    for start in range(lo, hi, batch_size):
        x, y = data.read(np.arange(start, min(start + batch_size, hi)))
        logits = model(x, training=False)
        loss_sum += float(loss_fn(y, logits, reduction="sum").numpy())
        right += correct(logits.numpy(), y)
    totals = np.array([loss_sum, right, hi - lo], dtype=np.float64)
    if comm is not None:
        totals = comm.allreduce_(totals)
    return {"loss": float(totals[0] / max(totals[2], 1)), "accuracy": float(totals[1] / max(totals[2], 1)),
            "samples": int(totals[2])}
