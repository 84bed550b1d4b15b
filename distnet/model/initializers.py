"""Weight initializers: ``init(shape, dtype, rng) -> ndarray``.

Every random initializer draws from an explicit ``numpy.random.Generator``
(no global RNG), so a model is reproducible from its seed.  Defaults follow
TF1 (``random_normal`` and ``truncated_normal`` have stddev 1.0).

Fans: a kernel ``(in, out)`` has fan_in = in, fan_out = out; a conv kernel
``(kh, kw, in, out)`` multiplies both by ``kh * kw`` (the receptive field).

Example:
  >>> rng = np.random.default_rng(0)
  >>> glorot_uniform((784, 10), np.float32, rng).shape
  (784, 10)
"""
from __future__ import annotations

import math
from typing import Callable, Union

import numpy as np

from distnet import registry
from distnet.errors import DTypeError, InvalidArgumentError
from distnet.registry import FLOAT, Option, register

Initializer = Callable[[tuple, np.dtype, np.random.Generator], np.ndarray]


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"initializer: shape: Expect: a tuple of ints Actual: {shape!r}") from None
    if any(n < 0 for n in shape):
        raise InvalidArgumentError(f"initializer: shape: Expect: non-negative sizes Actual: {shape}")
    return shape


def _dtype(dtype) -> np.dtype:
    dt = np.dtype(np.float32 if dtype is None else dtype)
    if not np.issubdtype(dt, np.floating):
        raise DTypeError(f"initializer: Expect: a floating dtype Actual: {dt}")
    return dt


def _rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise InvalidArgumentError(
            f"initializer: rng: Expect: a numpy.random.Generator (e.g. np.random.default_rng(seed)) Actual: {type(rng).__name__}")
    return rng


def compute_fans(shape: tuple) -> tuple[float, float]:
    """``(fan_in, fan_out)`` of a weight shape (Keras' convention)."""
    shape = _shape(shape)
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    receptive = float(np.prod(shape[:-2])) if len(shape) > 2 else 1.0
    return shape[-2] * receptive, shape[-1] * receptive


class Zeros:
    """All zeros."""

    def __call__(self, shape, dtype=np.float32, rng=None) -> np.ndarray:
        return np.zeros(_shape(shape), dtype=_dtype(dtype))

    def __repr__(self) -> str:
        return "zeros"


class Ones:
    """All ones."""

    def __call__(self, shape, dtype=np.float32, rng=None) -> np.ndarray:
        return np.ones(_shape(shape), dtype=_dtype(dtype))

    def __repr__(self) -> str:
        return "ones"


class Constant:
    """Every element ``value`` (a scalar)."""

    def __init__(self, value: float = 0.0):
        if np.ndim(value) != 0 or not np.isfinite(value):
            raise InvalidArgumentError(f"constant initializer: value: Expect: a finite scalar Actual: {value!r}")
        self.value = float(value)

    def __call__(self, shape, dtype=np.float32, rng=None) -> np.ndarray:
        return np.full(_shape(shape), self.value, dtype=_dtype(dtype))

    def __repr__(self) -> str:
        return f"constant({self.value})"


def _check_normal(mean, stddev) -> tuple[float, float]:
    if not np.isfinite(mean):
        raise InvalidArgumentError(f"initializer: mean: Expect: a finite number Actual: {mean!r}")
    if not np.isfinite(stddev) or stddev <= 0:
        raise InvalidArgumentError(f"initializer: stddev: Expect: > 0 Actual: {stddev!r}")
    return float(mean), float(stddev)


class RandomNormal:
    """Normal(mean, stddev)."""

    def __init__(self, mean: float = 0.0, stddev: float = 1.0):
        self.mean, self.stddev = _check_normal(mean, stddev)

    def __call__(self, shape, dtype=np.float32, rng=None) -> np.ndarray:
        out = _rng(rng).normal(self.mean, self.stddev, size=_shape(shape))
        return out.astype(_dtype(dtype))

    def __repr__(self) -> str:
        return f"random_normal(mean={self.mean}, stddev={self.stddev})"


def _truncated_standard(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    # TF: values beyond 2 standard deviations are dropped and re-drawn.
    out = rng.standard_normal(size=shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out


class TruncatedNormal:
    """Normal(mean, stddev) with draws beyond 2 stddev re-drawn (TF's truncated_normal)."""

    def __init__(self, mean: float = 0.0, stddev: float = 1.0):
        self.mean, self.stddev = _check_normal(mean, stddev)

    def __call__(self, shape, dtype=np.float32, rng=None) -> np.ndarray:
        out = _truncated_standard(_shape(shape), _rng(rng)) * self.stddev + self.mean
        return out.astype(_dtype(dtype))

    def __repr__(self) -> str:
        return f"truncated_normal(mean={self.mean}, stddev={self.stddev})"


class GlorotUniform:
    """Uniform(-limit, limit), ``limit = sqrt(6 / (fan_in + fan_out))`` (Keras' default kernel init)."""

    def __call__(self, shape, dtype=np.float32, rng=None) -> np.ndarray:
        shape = _shape(shape)
        fan_in, fan_out = compute_fans(shape)
        limit = math.sqrt(6.0 / max(1.0, fan_in + fan_out))
        return _rng(rng).uniform(-limit, limit, size=shape).astype(_dtype(dtype))

    def __repr__(self) -> str:
        return "glorot_uniform"


# Standard deviation of a unit normal truncated to [-2, 2].
_TRUNC_STD = 0.87962566103423978


class HeNormal:
    """Truncated normal with standard deviation ``sqrt(2 / fan_in)``.

    Convention (Keras ``VarianceScaling(2.0, 'fan_in', 'truncated_normal')``):
    the draw's stddev is divided by 0.8796 so that the *truncated*
    distribution has standard deviation ``sqrt(2 / fan_in)``.
    """

    def __call__(self, shape, dtype=np.float32, rng=None) -> np.ndarray:
        shape = _shape(shape)
        fan_in, _ = compute_fans(shape)
        stddev = math.sqrt(2.0 / max(1.0, fan_in)) / _TRUNC_STD
        return (_truncated_standard(shape, _rng(rng)) * stddev).astype(_dtype(dtype))

    def __repr__(self) -> str:
        return "he_normal"


class RandomUniform:
    """Uniform(minval, maxval); Keras' defaults ±0.05 (its ``Embedding``'s ``"uniform"``)."""

    def __init__(self, minval: float = -0.05, maxval: float = 0.05):
        if not (np.isfinite(minval) and np.isfinite(maxval)) or not minval < maxval:
            raise InvalidArgumentError(f"random_uniform: Expect: finite minval < maxval Actual: {minval!r}, "
                                       f"{maxval!r}")
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, shape, dtype=np.float32, rng=None) -> np.ndarray:
        return _rng(rng).uniform(self.minval, self.maxval, size=_shape(shape)).astype(_dtype(dtype))

    def __repr__(self) -> str:
        return f"random_uniform(minval={self.minval}, maxval={self.maxval})"


class Orthogonal:
    """An orthogonal matrix (Keras' default ``recurrent_initializer``): the Q of a normal draw's QR
    decomposition, its columns' signs fixed by R's diagonal (so Q is uniformly distributed),
    times ``gain``.  A shape of rank > 2 is flattened to ``(prod(shape[:-1]), shape[-1])``."""

    def __init__(self, gain: float = 1.0):
        if not np.isfinite(gain):
            raise InvalidArgumentError(f"orthogonal: gain: Expect: a finite number Actual: {gain!r}")
        self.gain = float(gain)

    def __call__(self, shape, dtype=np.float32, rng=None) -> np.ndarray:
        shape = _shape(shape)
        if len(shape) < 2:
            raise InvalidArgumentError(f"orthogonal: Expect: a shape of rank >= 2 Actual: {shape}")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = _rng(rng).standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(_dtype(dtype))

    def __repr__(self) -> str:
        return f"orthogonal(gain={self.gain})"


zeros = register("initializer", "zeros", doc="all zeros")(Zeros())
ones = register("initializer", "ones", doc="all ones")(Ones())
glorot_uniform = register("initializer", "glorot_uniform",
                          doc="uniform in `±sqrt(6 / (fan_in + fan_out))` (Keras' default kernel)")(GlorotUniform())
he_normal = register("initializer", "he_normal",
                     doc="truncated normal with standard deviation `sqrt(2 / fan_in)`")(HeNormal())

_MEAN = Option("mean", FLOAT, 0.0, "the mean")
_STDDEV = Option("stddev", FLOAT, 1.0, "the standard deviation", low=0.0, low_open=True)


@register("initializer", "constant", Option("value", FLOAT, 0.0, "every element's value"),
          doc="every element `value`")
def constant(value: float = 0.0) -> Constant:
    """An initializer filling with ``value``.

    Example:
      >>> constant(0.1)((2,), np.float32, None)
      array([0.1, 0.1], dtype=float32)
    """
    return Constant(value)


@register("initializer", "random_normal", _MEAN, _STDDEV, doc="normal draws (TF1's defaults)")
def random_normal(mean: float = 0.0, stddev: float = 1.0) -> RandomNormal:
    """Normal(mean, stddev) initializer (TF1 defaults)."""
    return RandomNormal(mean, stddev)


@register("initializer", "truncated_normal", _MEAN, _STDDEV,
          doc="normal draws, those beyond 2 standard deviations drawn again (TF1's defaults)")
def truncated_normal(mean: float = 0.0, stddev: float = 1.0) -> TruncatedNormal:
    """Truncated normal initializer: draws beyond 2 stddev are re-drawn (TF1 defaults)."""
    return TruncatedNormal(mean, stddev)


@register("initializer", "random_uniform", Option("minval", FLOAT, -0.05, "the lower bound"),
          Option("maxval", FLOAT, 0.05, "the upper bound (> minval)"),
          aliases=("uniform",), doc="uniform draws in `[minval, maxval)` (Keras' defaults ±0.05)")
def random_uniform(minval: float = -0.05, maxval: float = 0.05) -> RandomUniform:
    """Uniform(minval, maxval) initializer (Keras' ``RandomUniform``; the Embedding's default)."""
    return RandomUniform(minval, maxval)


@register("initializer", "orthogonal", Option("gain", FLOAT, 1.0, "multiplies the orthogonal matrix"),
          doc="an orthogonal matrix times `gain` (Keras' default recurrent kernel)")
def orthogonal(gain: float = 1.0) -> Orthogonal:
    """Orthogonal initializer (Keras' ``Orthogonal``, the LSTM's and GRU's recurrent kernel)."""
    return Orthogonal(gain)


def get(identifier: Union[str, dict, Initializer]) -> Initializer:
    """An initializer from a callable, a name (``"zeros"``, ``"glorot_uniform"``, ...) or a
    job-file table (``{"type": "truncated_normal", "stddev": 0.1}``).

    Example:
      >>> get("he_normal") is he_normal
      True
      >>> get({"type": "constant", "value": 0.1})
      constant(0.1)
    """
    if callable(identifier):
        return identifier
    if isinstance(identifier, (str, dict)):
        return registry.make("initializer", identifier)
    raise InvalidArgumentError(
        f"unknown initializer {identifier!r}; expected a callable (shape, dtype, rng) -> ndarray, "
        f"one of {list(registry.names('initializer'))} or a table with a 'type' and its parameters")


__all__ = ["zeros", "ones", "constant", "random_normal", "truncated_normal", "glorot_uniform", "he_normal",
           "random_uniform", "orthogonal", "get", "compute_fans", "Zeros", "Ones", "Constant", "RandomNormal", "TruncatedNormal",
           "GlorotUniform", "HeNormal", "RandomUniform", "Orthogonal"]
