"""Inverted dropout whose randomness is always explicit.

``dropout(x, rate, rng=generator)`` draws the mask from a seeded numpy
``Generator``.  ``dropout(x, rate, sample_keys=keys)`` instead derives each
sample's mask from that sample's ``uint64`` key alone, with a counter-based
generator.  With ``m = mix64(k)`` for the sample's key ``k``, split into its
32-bit halves ``lo`` and ``hi``, element ``j`` of the sample (row-major
index within the sample, from 0) is kept when

    h = hash32(hash32(j ^ lo) ^ hi)  >=  ceil(rate * 2**32)

where ``mix64`` is the SplitMix64 finaliser (a bijection of 64-bit words)
and ``hash32`` the "lowbias32" integer hash (a bijection of 32-bit words),
all arithmetic wrapping.  The per-element work is 32-bit, which numpy runs
in SIMD.  No state is carried between calls, so a sample gets the same mask
in a batch of 1 or at any position of a batch of any size — which is how a
run on N ranks reproduces a run on one.  Make the keys with
:func:`dropout_sample_keys` from ``(seed, step, layer_index,
global_sample_indices)``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from distnet.autodiff import Op
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.nn.activations import floating_tensor
from distnet.tensor import Tensor

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_H1 = np.uint32(0x7FEB352D)
_H2 = np.uint32(0x846CA68B)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (modifies and returns ``z``)."""
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def _mix64_int(z: int) -> int:
    """:func:`_mix64` of one 64-bit word as a Python int: the same wrapping arithmetic, for the
    per-call part of the keys (numpy's one-element arrays cost a microsecond per operation)."""
    z ^= z >> 30
    z = (z * int(_M1)) & _MASK64
    z ^= z >> 27
    z = (z * int(_M2)) & _MASK64
    return z ^ (z >> 31)


_MASK64 = (1 << 64) - 1


def _hash32(x: np.ndarray) -> np.ndarray:
    """lowbias32 integer hash on a uint32 array (modifies and returns ``x``)."""
    x ^= x >> np.uint32(16)
    x *= _H1
    x ^= x >> np.uint32(15)
    x *= _H2
    x ^= x >> np.uint32(16)
    return x


def _uint64_scalar(value: Any, what: str) -> np.uint64:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(f"dropout_sample_keys: {what}: Expect: a non-negative int Actual: {value!r}")
    if not 0 <= int(value) < 2 ** 64:
        raise InvalidArgumentError(f"dropout_sample_keys: {what}: Expect: in [0, 2**64) Actual: {value}")
    return np.uint64(int(value))


def dropout_sample_keys(seed: int, step: int, layer_index: int, sample_indices: Any) -> np.ndarray:
    """Per-sample dropout keys for ``dropout(..., sample_keys=...)``.

    ``key = mix64(mix64(mix64(mix64(seed + G) ^ step) ^ layer_index) ^ index)``
    with ``G = 0x9E3779B97F4A7C15`` and ``mix64`` the SplitMix64 finaliser:
    a bijection at each stage, so two samples (or two steps, or two layers)
    never share a key for the same seed.  Use the sample's *global* index in
    the dataset (or in the global batch), never its position on a rank.

    Args:
      seed: the job's seed, an int in ``[0, 2**64)``.
      step: the global training step.
      layer_index: which dropout layer of the model (0, 1, ...).
      sample_indices: 1-D non-negative integers, one per sample of the batch
        (any integer dtype; ``uint64`` keys are accepted too, which derives
        per-layer keys from per-sample keys).

    Returns:
      A ``uint64`` array of ``sample_indices``' length.

    Example:
      >>> keys = distnet.nn.dropout_sample_keys(seed=0, step=12, layer_index=0, sample_indices=[5, 9])
      >>> y = distnet.nn.dropout(x, rate=0.5, sample_keys=keys)   # x has 2 samples
    """
    h = (int(_uint64_scalar(seed, "seed")) + int(_GOLDEN)) & _MASK64
    for value, what in ((step, "step"), (layer_index, "layer_index")):
        h = _mix64_int(h) ^ int(_uint64_scalar(value, what))
    h = np.uint64(_mix64_int(h))
    idx = np.asarray(sample_indices)
    if idx.ndim != 1:
        raise ShapeError(f"dropout_sample_keys: sample_indices: Expect: 1-D Actual: shape {idx.shape}")
    if idx.size and idx.dtype.kind not in "iu":
        raise DTypeError(f"dropout_sample_keys: sample_indices: Expect: integers Actual: {idx.dtype.name}")
    if idx.size and idx.dtype.kind == "i" and idx.min() < 0:
        raise InvalidArgumentError(
            f"dropout_sample_keys: sample_indices: Expect: >= 0 Actual: {int(idx.min())}"
        )
    keys = idx.astype(np.uint64) ^ h
    return _mix64(keys)


# The name the trainer uses; the same function.
make_sample_keys = dropout_sample_keys


def per_sample_keys(seed: int, step: int, indices: Any) -> np.ndarray:
    """uint64 keys of the samples ``indices`` (global indices) at ``step``: the keys the
    Trainer gives a model (each dropout layer derives its own from them) and augmentation.

    A sample's key depends only on (seed, step, its global index), never on
    the rank or on where the sample sits in the local batch.
    """
    return dropout_sample_keys(seed, step, 0, np.asarray(indices, dtype=np.int64))


def keyed_bits32(sample_keys: np.ndarray, sample_shape: tuple) -> np.ndarray:
    """32 random bits per element, ``[len(keys), *sample_shape]`` uint32, each row from its key alone."""
    n_elem = int(np.prod(sample_shape, dtype=np.int64))
    if n_elem >= 2 ** 32:
        raise ShapeError(f"dropout: a sample has {n_elem} elements; sample_keys support fewer than 2**32")
    m = _mix64(sample_keys.astype(np.uint64, copy=True))
    lo = (m & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hi = (m >> np.uint64(32)).astype(np.uint32)
    bits = np.arange(n_elem, dtype=np.uint32)[None, :] ^ lo[:, None]
    _hash32(bits)
    bits ^= hi[:, None]
    _hash32(bits)
    return bits.reshape((len(sample_keys),) + tuple(sample_shape))


class Dropout(Op):
    """Multiply by a fixed (already scaled) mask."""

    __slots__ = ("mask",)

    def __init__(self, mask: np.ndarray):
        self.mask = mask

    def forward(self, x):
        return x * self.mask

    def backward(self, g, needs):
        return (g * self.mask,)


def _rate(rate: Any, keep_prob: Any) -> float:
    if (rate is None) == (keep_prob is None):
        raise InvalidArgumentError(
            "dropout: give exactly one of rate (fraction dropped, TF2) and keep_prob (fraction kept, TF1); "
            f"got rate={rate!r}, keep_prob={keep_prob!r}"
        )
    name, value = ("rate", rate) if rate is not None else ("keep_prob", keep_prob)
    if isinstance(value, Tensor):
        value = value.data
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"dropout: {name}: Expect: a number Actual: {value!r}") from None
    if rate is not None:
        if not 0.0 <= v < 1.0:
            raise InvalidArgumentError(f"dropout: rate: Expect: 0 <= rate < 1 Actual: {v}")
        return v
    if not 0.0 < v <= 1.0:
        raise InvalidArgumentError(
            f"dropout: keep_prob: Expect: 0 < keep_prob <= 1 Actual: {v}"
        )
    return 1.0 - v


def _noise_shape(noise_shape: Any, shape: tuple) -> tuple:
    if noise_shape is None:
        return shape
    given = list(noise_shape) if isinstance(noise_shape, (list, tuple)) else list(np.asarray(noise_shape).reshape(-1))
    # Keras: a None entry stands for x's size on that axis.
    ok = len(given) == len(shape) and all(
        n is None or (isinstance(n, (int, np.integer)) and not isinstance(n, bool)) for n in given)
    ns = tuple(s if n is None else int(n) for n, s in zip(given, shape)) if ok else tuple(given)
    ok = ok and all(n == s or n == 1 for n, s in zip(ns, shape))
    if not ok:
        raise ShapeError(
            f"dropout: noise_shape must have x's rank with each entry equal to x's or 1. "
            f"Expect: broadcastable to {shape} Actual: {ns}"
        )
    return ns


def dropout(x: Any, rate: float | None = None, *, keep_prob: float | None = None,
            rng: np.random.Generator | None = None, sample_keys: np.ndarray | None = None,
            noise_shape: Any = None, name: str | None = None) -> Tensor:
    """Zero each element with probability ``rate``, scale the rest by ``1/(1-rate)``.

    Inverted dropout as TF (``tf.nn.dropout``): the expected value of every
    element is unchanged, so nothing is rescaled at evaluation time (simply do
    not call dropout then).  An element is kept when its uniform draw ``u``
    satisfies ``u >= rate`` (TF2).  Note: the second positional argument is
    TF2's ``rate``; TF1's ``keep_prob`` must be given by keyword.

    Args:
      x: a floating tensor.
      rate: fraction dropped, ``0 <= rate < 1`` (``0`` returns ``x``).
      keep_prob: TF1's alternative, fraction kept, ``0 < keep_prob <= 1``.
      rng: a seeded ``numpy.random.Generator`` to draw the mask from.
      sample_keys: instead of ``rng``, one ``uint64`` key per sample (first
        axis of ``x``): each sample's mask depends on its key alone (see the
        module doc and :func:`dropout_sample_keys`).
      noise_shape: optional shape broadcastable to ``x`` (entries equal to
        x's or 1): the mask is drawn at that shape and broadcast, as TF.
        With ``sample_keys`` its first entry must be x's batch size.
      name: ignored.

    Returns:
      A tensor of ``x``'s shape and dtype.

    Example:
      >>> rng = np.random.default_rng(0)
      >>> y = distnet.nn.dropout(distnet.constant(np.ones((4, 8), np.float32)), rate=0.5, rng=rng)
      >>> sorted(set(y.numpy().ravel().tolist()))
      [0.0, 2.0]
    """
    xt = floating_tensor(x, "dropout")
    r = _rate(rate, keep_prob)
    if (rng is None) == (sample_keys is None):
        raise InvalidArgumentError(
            "dropout: give exactly one source of randomness: rng=numpy.random.Generator (seeded) or "
            "sample_keys=uint64 array (one key per sample); there is no global random state. "
            f"Actual: rng={'given' if rng is not None else None}, "
            f"sample_keys={'given' if sample_keys is not None else None}"
        )
    ns = _noise_shape(noise_shape, xt.shape)
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise DTypeError(
                f"dropout: rng: Expect: a numpy.random.Generator (np.random.default_rng(seed)) "
                f"Actual: {type(rng).__name__}"
            )
        if r == 0.0:
            return xt
        keep = rng.random(ns) >= r
    else:
        keys = np.asarray(sample_keys)
        if keys.dtype != np.uint64:
            raise DTypeError(f"dropout: sample_keys: Expect: a uint64 array Actual: {keys.dtype.name}")
        if xt.ndim < 1 or keys.shape != (xt.shape[0],):
            raise ShapeError(
                "dropout: sample_keys: one key per sample (x's first axis): "
                f"Expect: shape ({xt.shape[0] if xt.ndim else '?'},) Actual: {keys.shape} (x shape {xt.shape})"
            )
        if ns[0] != xt.shape[0]:
            raise ShapeError(
                f"dropout: with sample_keys, noise_shape[0]: Expect: the batch size {xt.shape[0]} "
                f"Actual: {ns[0]}"
            )
        if r == 0.0:
            return xt
        threshold = math.ceil(r * 2.0 ** 32)  # exact: a power-of-2 scale
        bits = keyed_bits32(keys, ns[1:])
        keep = bits >= np.uint32(threshold) if threshold < 2 ** 32 else np.zeros(bits.shape, dtype=bool)
    # Inverted scaling: kept values are multiplied by 1 / (1 - rate).
    mask = keep.astype(xt.dtype)
    mask *= xt.dtype.type(1.0 / (1.0 - r))
    return Dropout.apply(xt, mask=mask)
