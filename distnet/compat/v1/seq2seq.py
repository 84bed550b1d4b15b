"""``tf.contrib.seq2seq.sequence_loss`` and ``tf.contrib.legacy_seq2seq.sequence_loss(_by_example)``:
weighted cross-entropy over a batch of sequences.

TF1's definition: ``xent[b, t] = weights[b, t] *
sparse_softmax_cross_entropy(targets[b, t], logits[b, t])``, then summed
and divided by the summed weights (plus 1e-12) over the averaged axes:
both (a scalar), time only (``[batch]``) or batch only (``[time]``); the
``sum_over_*`` flags divide by the number of non-zero weights instead.
Composed from graph ops, so it needs no gradient of its own.
"""
from __future__ import annotations

from typing import Any

from distnet.compat.v1 import array_ops as _a
from distnet.compat.v1 import math_ops as _m
from distnet.compat.v1.graph import convert_to_tensor, get_default_graph


def sequence_loss(logits: Any, targets: Any, weights: Any, average_across_timesteps: bool = True,
                  average_across_batch: bool = True, sum_over_timesteps: bool = False, sum_over_batch: bool = False,
                  softmax_loss_function: Any = None, name: str | None = None):
    """``logits [batch, time, classes]``, ``targets [batch, time]`` ints, ``weights [batch, time]``."""
    logits, targets, weights = convert_to_tensor(logits), convert_to_tensor(targets), convert_to_tensor(weights)
    if logits.shape.ndims is not None and logits.shape.ndims != 3:
        raise ValueError(f"Logits must be a [batch_size x sequence_length x logits] tensor; Actual: {logits.shape}")
    if targets.shape.ndims is not None and targets.shape.ndims != 2:
        raise ValueError(f"Targets must be a [batch_size x sequence_length] tensor; Actual: {targets.shape}")
    if weights.shape.ndims is not None and weights.shape.ndims != 2:
        raise ValueError(f"Weights must be a [batch_size x sequence_length] tensor; Actual: {weights.shape}")
    if average_across_timesteps and sum_over_timesteps:
        raise ValueError("average_across_timesteps and sum_over_timesteps cannot be set to True at same time.")
    if average_across_batch and sum_over_batch:
        raise ValueError("average_across_batch and sum_over_batch cannot be set to True at same time.")
    with get_default_graph().name_scope(name or "sequence_loss"):
        classes = logits.shape[2].value if logits.shape.dims else None
        flat_logits = _a.reshape(logits, [-1, classes if classes is not None else _a.shape(logits)[2]])
        flat_targets = _a.reshape(targets, [-1])
        if softmax_loss_function is None:
            xent = _m.sparse_softmax_cross_entropy_with_logits(labels=flat_targets, logits=flat_logits)
        else:
            xent = softmax_loss_function(labels=flat_targets, logits=flat_logits)
        xent = xent * _a.reshape(weights, [-1])
        if average_across_timesteps and average_across_batch:
            return _m.reduce_sum(xent) / (_m.reduce_sum(weights) + 1e-12)
        if sum_over_timesteps and sum_over_batch:
            return _m.reduce_sum(xent) / (_nonzero(weights, None) + 1e-12)
        xent = _a.reshape(xent, _a.shape(logits)[0:2])
        if average_across_timesteps and not average_across_batch:
            return _m.reduce_sum(xent, axis=1) / (_m.reduce_sum(weights, axis=1) + 1e-12)
        if not average_across_timesteps and average_across_batch:
            return _m.reduce_sum(xent, axis=0) / (_m.reduce_sum(weights, axis=0) + 1e-12)
        if sum_over_timesteps and not sum_over_batch:
            return _m.reduce_sum(xent, axis=1) / (_nonzero(weights, 1) + 1e-12)
        if not sum_over_timesteps and sum_over_batch:
            return _m.reduce_sum(xent, axis=0) / (_nonzero(weights, 0) + 1e-12)
        return xent


def _nonzero(weights, axis):
    return _m.reduce_sum(_a.cast(_m.not_equal(weights, 0.0), weights.dtype), axis=axis)


def sequence_loss_by_example(logits: Any, targets: Any, weights: Any, average_across_timesteps: bool = True,
                             softmax_loss_function: Any = None, name: str | None = None):
    """``tf.contrib.legacy_seq2seq``'s: lists of per-step ``logits [batch, classes]``,
    ``targets [batch]`` and ``weights [batch]``; ``[batch]`` of the weighted
    cross-entropies summed over the steps (divided by the summed weights + 1e-12
    when ``average_across_timesteps``)."""
    logits, targets, weights = list(logits), list(targets), list(weights)
    if not (len(logits) == len(targets) == len(weights)):
        raise ValueError(f"Lengths of logits, weights, and targets must be the same {len(logits)}, {len(weights)}, "
                         f"{len(targets)}.")
    with get_default_graph().name_scope(name or "sequence_loss_by_example"):
        terms = []
        for lg, tg, w in zip(logits, targets, weights):
            if softmax_loss_function is None:
                xent = _m.sparse_softmax_cross_entropy_with_logits(labels=_a.reshape(tg, [-1]), logits=lg)
            else:
                xent = softmax_loss_function(labels=tg, logits=lg)
            terms.append(xent * w)
        log_perps = _m.add_n(terms)
        if average_across_timesteps:
            log_perps = log_perps / (_m.add_n(weights) + 1e-12)
    return log_perps


def legacy_sequence_loss(logits: Any, targets: Any, weights: Any, average_across_timesteps: bool = True,
                         average_across_batch: bool = True, softmax_loss_function: Any = None,
                         name: str | None = None):
    """``tf.contrib.legacy_seq2seq.sequence_loss``: the sum of :func:`sequence_loss_by_example`,
    divided by the batch size when ``average_across_batch``."""
    with get_default_graph().name_scope(name or "sequence_loss"):
        cost = _m.reduce_sum(sequence_loss_by_example(logits, targets, weights, average_across_timesteps,
                                                      softmax_loss_function))
        if average_across_batch:
            return cost / _a.cast(_a.shape(convert_to_tensor(targets[0]))[0], cost.dtype)
        return cost
