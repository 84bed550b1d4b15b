"""TF1's candidate samplers and the sampled losses: ``log_uniform_candidate_sampler``,
``uniform_candidate_sampler``, ``nce_loss`` and ``sampled_softmax_loss``.

A sampler op draws ``num_sampled`` classes per ``Session.run`` (fresh each
run) from a generator the session owns, seeded by TF1's graph/op seed rule;
it returns ``(sampled_candidates, true_expected_count,
sampled_expected_count)``.  The draws are this package's own, not
TensorFlow's (the distribution is TF1's); pass ``sampled_values=`` to the
losses for numbers comparable with TensorFlow.  Every rank of a data-parallel
run draws the same classes (same seed), and the draw is shared by the whole
batch, so N ranks compute what one process computes on the global batch.

Log-uniform (Zipfian) over ``[0, range_max)``:
``P(k) = log((k + 2) / (k + 1)) / log(range_max + 1)``, drawn as
``floor(exp(u * log(range_max + 1))) - 1``.  With ``unique=True`` the draw
is repeated until ``num_sampled`` distinct classes came, and a class's
expected count is ``-expm1(tries * log1p(-P))`` (``P * num_sampled`` when no
draw was repeated, or without ``unique``).

Both losses compute TF1's sampled logits: ``inputs @ w[c] + b[c]`` for the
true and the sampled classes, ``log(expected count)`` subtracted, and (if
``remove_accidental_hits``) a sampled class equal to a row's true class
masked with ``-FLT_MAX``; ``nce_loss`` is the sigmoid cross-entropy summed over
the true (label ``1 / num_true``) and sampled (label 0) logits,
``sampled_softmax_loss`` the softmax cross-entropy.  The gradient does not
flow into the sampled values.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import distnet
import distnet.nn as dnn
from distnet.compat.v1.array_ops import get_seed, seeded_rng
from distnet.compat.v1.embedding import lookup
from distnet.compat.v1.graph import TensorShape, convert_to_tensor, leaf, probes_for
from distnet.compat.v1.multi_output import run_outputs
from distnet.errors import InvalidArgumentError
from distnet.tensor import Tensor as EagerTensor

#: What TF1 adds to an accidental hit's logit (float32's lowest value).
_MASK = -np.finfo(np.float32).max


def _log_uniform_probability(k: np.ndarray, range_max: int) -> np.ndarray:
    return np.log((k + 2.0) / (k + 1.0)) / np.log(range_max + 1.0)


def _log_uniform_draw(rng: np.random.Generator, n: int, range_max: int) -> np.ndarray:
    return (np.floor(np.exp(rng.random(n) * np.log(range_max + 1.0))) - 1).astype(np.int64).clip(0, range_max - 1)


def _uniform_draw(rng: np.random.Generator, n: int, range_max: int) -> np.ndarray:
    return rng.integers(0, range_max, size=n).astype(np.int64)


def _expected(p: np.ndarray, num_sampled: int, tries: int, unique: bool) -> np.ndarray:
    if not unique or tries == num_sampled:
        return p * num_sampled
    return -np.expm1(tries * np.log1p(-p))


def _sampler(op_type: str, draw, probability, true_classes: Any, num_true: int, num_sampled: int, unique: bool,
             range_max: int, seed: Any, name: str | None) -> tuple:
    num_sampled, range_max, num_true = int(num_sampled), int(range_max), int(num_true)
    if unique and num_sampled > range_max:
        raise InvalidArgumentError(f"{op_type}: Expect: num_sampled <= range_max when unique=True "
                                   f"Actual: num_sampled={num_sampled}, range_max={range_max}")
    if num_sampled < 1 or range_max < 1:
        raise ValueError(f"{op_type}: num_sampled and range_max: Expect: >= 1 Actual: {num_sampled} and {range_max}")
    true_classes = convert_to_tensor(true_classes)
    seeds = get_seed(seed)
    holder: list = []

    def compute(run, values):
        labels = np.asarray(values[0].data).astype(np.int64)
        if labels.ndim != 2 or labels.shape[1] != num_true:
            raise InvalidArgumentError(f"{op_type}: Expect: true_classes of shape [batch, {num_true}] (num_true) "
                                       f"Actual: {list(labels.shape)}")
        if run is None:
            rng = np.random.default_rng(0)
        else:
            rng = run.session.resource(("rng", holder[0]), lambda: seeded_rng(seeds))
        if unique:
            picked: dict = {}
            tries = 0
            while len(picked) < num_sampled:
                for k in draw(rng, num_sampled - len(picked), range_max):
                    tries += 1
                    picked.setdefault(int(k), None)
                    if len(picked) == num_sampled:
                        break
            sampled = np.fromiter(picked, np.int64, num_sampled)
        else:
            sampled, tries = draw(rng, num_sampled, range_max), num_sampled
        true_count = _expected(probability(labels, range_max), num_sampled, tries, unique).astype(np.float32)
        sampled_count = _expected(probability(sampled, range_max), num_sampled, tries, unique).astype(np.float32)
        return [EagerTensor._from_op(a, None, ()) for a in (sampled, true_count, sampled_count)]

    out = run_outputs(op_type, compute, [true_classes], name=name or op_type)
    holder.append(out[0].op.inputs[0].op)
    return tuple(out)


def log_uniform_candidate_sampler(true_classes: Any, num_true: int, num_sampled: int, unique: bool, range_max: int,
                                  seed: Any = None, name: str | None = None) -> tuple:
    """``(sampled_candidates, true_expected_count, sampled_expected_count)`` from the log-uniform distribution."""
    return _sampler("LogUniformCandidateSampler", _log_uniform_draw, _log_uniform_probability, true_classes,
                    num_true, num_sampled, unique, range_max, seed, name)


def uniform_candidate_sampler(true_classes: Any, num_true: int, num_sampled: int, unique: bool, range_max: int,
                              seed: Any = None, name: str | None = None) -> tuple:
    """``(sampled_candidates, true_expected_count, sampled_expected_count)``, each class with ``1 / range_max``."""
    return _sampler("UniformCandidateSampler", _uniform_draw,
                    lambda k, r: np.full(np.shape(k), 1.0 / r), true_classes, num_true, num_sampled, unique,
                    range_max, seed, name)


def sampled_logits(weights: list, biases: EagerTensor, labels: Any, inputs: EagerTensor, sampled: Any,
                   true_count: Any, sampled_count: Any, num_true: int, remove_accidental_hits: bool,
                   strategy: str) -> tuple:
    """``(logits, labels)`` of TF1's ``_compute_sampled_logits`` (``subtract_log_q``), on distnet tensors."""
    lab = np.asarray(labels.data if isinstance(labels, EagerTensor) else labels).astype(np.int64)
    lab = lab.reshape(-1, num_true)
    samp = np.asarray(sampled.data if isinstance(sampled, EagerTensor) else sampled).astype(np.int64).reshape(-1)
    tc = np.asarray(true_count.data if isinstance(true_count, EagerTensor) else true_count)
    sc = np.asarray(sampled_count.data if isinstance(sampled_count, EagerTensor) else sampled_count)
    batch, dim = inputs.shape[0], inputs.shape[1]
    if lab.shape[0] != batch:
        raise InvalidArgumentError(f"sampled loss: Expect: labels of shape [{batch}, {num_true}] (one row per input) "
                                   f"Actual: {lab.shape[0]} rows")
    true_w = distnet.reshape(lookup(weights, lab.reshape(-1), strategy), (batch, num_true, dim))
    true_b = distnet.reshape(lookup([biases], lab.reshape(-1), "mod"), (batch, num_true))
    samp_w = lookup(weights, samp, strategy)
    samp_b = lookup([biases], samp, "mod")
    dt = inputs.dtype
    true_logits = distnet.reduce_sum(distnet.expand_dims(inputs, 1) * true_w, 2) + true_b
    samp_logits = distnet.matmul(inputs, samp_w, False, True) + samp_b
    if remove_accidental_hits:
        hits = (lab[:, :, None] == samp[None, None, :]).any(axis=1)
        samp_logits = samp_logits + distnet.constant(np.where(hits, _MASK, 0.0).astype(dt))
    true_logits = true_logits - distnet.constant(np.log(tc).reshape(batch, num_true).astype(dt))
    samp_logits = samp_logits - distnet.constant(np.log(sc).reshape(1, -1).astype(dt))
    logits = distnet.concat([true_logits, samp_logits], 1)
    targets = np.concatenate([np.full((batch, num_true), 1.0 / num_true), np.zeros((batch, samp.size))], 1)
    return logits, distnet.constant(targets.astype(dt))


def _sampled_op(op_type: str, loss_fn, weights, biases, labels, inputs, num_sampled, num_classes, num_true,
                sampled_values, remove_accidental_hits, partition_strategy, seed, name):
    parts = [convert_to_tensor(w) for w in (weights if isinstance(weights, (list, tuple)) else [weights])]
    labels = convert_to_tensor(labels)
    if sampled_values is None:
        sampled_values = log_uniform_candidate_sampler(
            labels if labels.shape.ndims == 2 else _as_rows(labels, num_true), num_true, num_sampled, True,
            num_classes, seed)
    if len(sampled_values) != 3:
        raise ValueError("sampled_values: Expect: (sampled_candidates, true_expected_count, sampled_expected_count)")

    biases, inputs = convert_to_tensor(biases), convert_to_tensor(inputs)
    sampled_values = [convert_to_tensor(v) for v in sampled_values]
    if inputs.shape.ndims not in (None, 2):
        raise ValueError(f"{op_type}: Expect: inputs of shape [batch, dim] Actual: {inputs.shape}")
    n = len(parts)

    def compute(run, values):
        if run is None:
            # A probe: its stand-in batch need not match a fixed batch of labels; the value is zeros of [batch].
            return distnet.zeros((values[n + 2].shape[0],), values[n + 2].dtype)
        ws, (b, lab, x, s, tc, sc) = values[:n], values[n:]
        logits, targets = sampled_logits(ws, b, lab, x, s, tc, sc, int(num_true), remove_accidental_hits,
                                         partition_strategy)
        return loss_fn(logits, targets)

    dims = [inputs.shape[0].value] if inputs.shape.ndims == 2 else None
    shape = TensorShape(dims)
    return leaf(op_type, compute, inputs.dtype, shape, probes_for(shape, inputs.dtype), name=name,
                inputs=parts + [biases, labels, inputs, *sampled_values])


def _as_rows(labels, num_true):
    from distnet.compat.v1.array_ops import reshape

    return reshape(labels, [-1, int(num_true)])


def _sigmoid_xent_rows(logits, z):
    x = logits
    per = distnet.maximum(x, 0.0) - x * z + distnet.log(1.0 + distnet.exp(-distnet.abs(x)))
    return distnet.reduce_sum(per, 1)


def nce_loss(weights: Any, biases: Any, labels: Any, inputs: Any, num_sampled: int, num_classes: int,
             num_true: int = 1, sampled_values: Any = None, remove_accidental_hits: bool = False,
             partition_strategy: str = "mod", name: str = "nce_loss"):
    """TF1's noise-contrastive loss per example (``[batch]``; average it yourself, as TF1 programs do).

    ``weights``: ``[num_classes, dim]`` (or a list of its parts), ``biases``:
    ``[num_classes]``, ``labels``: ``[batch, num_true]`` ints, ``inputs``: ``[batch, dim]``.
    """
    return _sampled_op("NceLoss", _sigmoid_xent_rows, weights, biases, labels, inputs, num_sampled, num_classes,
                       num_true, sampled_values, remove_accidental_hits, partition_strategy, None, name)


def sampled_softmax_loss(weights: Any, biases: Any, labels: Any, inputs: Any, num_sampled: int, num_classes: int,
                         num_true: int = 1, sampled_values: Any = None, remove_accidental_hits: bool = True,
                         partition_strategy: str = "mod", name: str = "sampled_softmax_loss", seed: Any = None):
    """TF1's sampled softmax cross-entropy per example (``[batch]``); same arguments as :func:`nce_loss`."""
    def xent(logits, targets):
        return dnn.softmax_cross_entropy_with_logits(labels=targets, logits=logits, axis=-1)

    return _sampled_op("SampledSoftmaxLoss", xent, weights, biases, labels, inputs, num_sampled, num_classes,
                       num_true, sampled_values, remove_accidental_hits, partition_strategy, seed, name)
