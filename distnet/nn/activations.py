"""Activations: linear, relu, leaky_relu, sigmoid, tanh, softmax, log_softmax.

All are numerically stable: sigmoid evaluates ``exp`` of a non-positive
number only, softmax and log_softmax subtract the maximum along ``axis``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet import jit
from distnet.autodiff import Op
from distnet.nn._rows import over_rows
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.ops.reduction import normalize_axis
from distnet.registry import register
from distnet.tensor import Tensor, as_tensor


def floating_tensor(x: Any, op_name: str) -> Tensor:
    """``x`` as a Tensor of a floating dtype, or a :class:`DTypeError`."""
    t = as_tensor(x)
    if t.dtype.kind != "f":
        raise DTypeError(
            f"{op_name}: Expect: a floating tensor (float32 or float64) Actual: {t.dtype.name}; "
            "use distnet.cast to convert"
        )
    return t


def class_axis(axis: Any, ndim: int, op_name: str) -> int:
    """A single validated axis (``-1`` is the last) as a non-negative int."""
    if ndim == 0:
        raise ShapeError(f"{op_name}: Expect: a tensor of rank >= 1 Actual: a scalar")
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise InvalidArgumentError(f"{op_name}: axis: Expect: one int Actual: {axis!r}")
    return normalize_axis(int(axis), ndim, op_name)[0]


def _log_sum_exp_parts(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``(z, lse)`` with ``z = x - max(x)`` and ``lse = log(sum(exp(z)))`` (keepdims)."""
    # The ufuncs' reductions, which np.max and np.sum call (without their Python layer).
    z = x - np.maximum.reduce(x, axis=axis, keepdims=True)
    lse = np.log(np.add.reduce(np.exp(z), axis=axis, keepdims=True))
    return z, lse


def times_mask(g: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``g * mask`` (``mask`` boolean, of ``g``'s shape), bitwise: the mask cast to ``g``'s dtype, then
    a product of one dtype, where numpy's mixed bool-by-float product runs a buffered cast
    (benchmarks/README.md has the figures)."""
    g = np.asarray(g)
    out = np.empty(g.shape, dtype=np.result_type(g.dtype, np.bool_))
    np.copyto(out, mask)
    out *= g
    return out


def _compiled(kernel, *arrays: np.ndarray) -> bool:
    """True where ``kernel`` (one of the compiled kernels below) applies: numba, C-contiguous float32/64
    arrays of one shape and dtype, large enough or the kernel loaded already (:func:`distnet.jit.worth`);
    anything else takes the numpy path, with numpy's casting rules."""
    a = arrays[0]
    return (kernel is not None and jit.worth(a.size, kernel) and jit.compiles(*arrays)
            and all(b.shape == a.shape and b.flags.c_contiguous for b in arrays))


def positive_part(x: np.ndarray) -> np.ndarray:
    """``np.maximum(x, 0)`` in ``x``'s dtype (relu's forward), compiled where :func:`_compiled`
    says so, over runs of elements on the rank's threads (:mod:`distnet.nn._rows`)."""
    if not _compiled(_positive_part, x):
        return np.maximum(x, 0).astype(x.dtype, copy=False)
    y, xf, zero = np.empty(x.shape, dtype=x.dtype), x.reshape(-1), x.dtype.type(0)
    yf = y.reshape(-1)
    over_rows(xf.size, 2 * x.nbytes, lambda lo, hi: _positive_part(xf[lo:hi], zero, yf[lo:hi]))
    return y


def times_positive(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``times_mask(g, y > 0)`` (relu's backward from its output: ``y > 0`` exactly where the input
    was), compiled in one pass where :func:`_compiled` says so, on the rank's threads."""
    if not _compiled(_times_positive, g, y):
        return times_mask(g, y > 0)
    out, gf, yf, dt = np.empty(g.shape, dtype=g.dtype), g.reshape(-1), y.reshape(-1), g.dtype.type
    of = out.reshape(-1)
    over_rows(gf.size, 3 * g.nbytes, lambda lo, hi: _times_positive(gf[lo:hi], yf[lo:hi], dt(0), dt(1), of[lo:hi]))
    return out


@jit.kernel
def _positive_part(x, zero, y):
    """``np.maximum(x, 0)``: ``x`` where ``x > 0`` or ``x`` is NaN, else ``+0`` (also for ``x = -0``)."""
    for i in range(x.size):
        xi = x[i]
        y[i] = xi if (xi > zero or xi != xi) else zero


@jit.kernel
def _times_positive(g, y, zero, one, out):
    """:func:`times_mask`'s product, the mask ``y > 0``: ``1 * g`` or ``0 * g`` (``-0`` for a
    negative ``g``, NaN for an infinite one), as its cast mask times ``g`` gives it."""
    for i in range(g.size):
        out[i] = (one if y[i] > zero else zero) * g[i]


class Relu(Op):
    __slots__ = ("out",)

    def forward(self, x):
        # The mask ``x > 0`` is ``out > 0``: backward takes it from the output (which the graph
        # holds anyway) and an evaluation's forward makes none.
        self.out = positive_part(x)
        return self.out

    def backward(self, g, needs):
        # TF: the gradient at exactly 0 is 0.
        return (times_positive(g, self.out),)


class Sigmoid(Op):
    __slots__ = ("y",)

    def forward(self, x):
        # Stable: e = exp(-|x|) <= 1, sigmoid = 1/(1+e) for x >= 0 and e/(1+e) for x < 0.
        e = np.exp(-np.abs(x))
        self.y = np.where(x >= 0, np.ones((), x.dtype), e) / (1 + e)
        return self.y

    def backward(self, g, needs):
        return (g * self.y * (1 - self.y),)


class Tanh(Op):
    __slots__ = ("y",)

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, g, needs):
        return (g * (1 - self.y * self.y),)


class Softmax(Op):
    __slots__ = ("axis", "y")

    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, x):
        z, lse = _log_sum_exp_parts(x, self.axis)
        self.y = np.exp(z - lse)
        return self.y

    def backward(self, g, needs):
        gy = g * self.y
        return (gy - self.y * np.sum(gy, axis=self.axis, keepdims=True),)


class LogSoftmax(Op):
    __slots__ = ("axis", "y")

    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, x):
        z, lse = _log_sum_exp_parts(x, self.axis)
        self.y = z - lse
        return self.y

    def backward(self, g, needs):
        return (g - np.exp(self.y) * np.sum(g, axis=self.axis, keepdims=True),)


@register("activation", "linear", aliases=("none",), doc="the identity (no activation)",
          identity=True)
def linear(x: Any, name: str | None = None) -> Tensor:
    """The identity (Keras' ``linear``): ``x`` as a tensor.

    A layer given ``"linear"`` applies nothing at all (``identity`` in its
    registration), so its graph has no extra node.

    Example:
      >>> distnet.nn.activations.linear([-1.0]).numpy()
      array([-1.], dtype=float32)
    """
    return as_tensor(x)


@register("activation", "relu", doc="`max(x, 0)`")
def relu(features: Any, name: str | None = None) -> Tensor:
    """``max(features, 0)`` element-wise (TF's ``tf.nn.relu``); gradient 0 at 0.

    Args:
      features: a numeric tensor (or array / Python value).
      name: ignored (TF compatibility).

    Returns:
      A tensor of the same shape and dtype.

    Example:
      >>> distnet.nn.relu([-1.0, 0.0, 2.0]).numpy()
      array([0., 0., 2.], dtype=float32)
    """
    return Relu.apply(as_tensor(features))


@register("activation", "sigmoid", doc="`1 / (1 + exp(-x))`")
def sigmoid(x: Any, name: str | None = None) -> Tensor:
    """``1 / (1 + exp(-x))``, finite for any ``|x|`` (TF's ``tf.sigmoid``).

    Args:
      x: a floating tensor.
      name: ignored.

    Returns:
      A tensor of the same shape and dtype, in ``[0, 1]``.

    Example:
      >>> distnet.nn.sigmoid([0.0]).numpy()
      array([0.5], dtype=float32)
    """
    return Sigmoid.apply(floating_tensor(x, "sigmoid"))


@register("activation", "tanh", doc="`tanh(x)`")
def tanh(x: Any, name: str | None = None) -> Tensor:
    """Hyperbolic tangent element-wise (TF's ``tf.tanh``).

    Args:
      x: a floating tensor.
      name: ignored.

    Returns:
      A tensor of the same shape and dtype, in ``[-1, 1]``.

    Example:
      >>> distnet.nn.tanh([0.0]).numpy()
      array([0.], dtype=float32)
    """
    return Tanh.apply(floating_tensor(x, "tanh"))


@register("activation", "softmax", doc="`exp(x) / sum(exp(x))` over the last axis")
def softmax(logits: Any, axis: int = -1, name: str | None = None) -> Tensor:
    """``exp(logits) / sum(exp(logits), axis)``, max-subtracted (TF's ``tf.nn.softmax``).

    Args:
      logits: a floating tensor of rank >= 1.
      axis: the class axis (default the last).
      name: ignored.

    Returns:
      A tensor of the same shape and dtype whose slices along ``axis`` sum to 1.

    Example:
      >>> distnet.nn.softmax([[1e4, 0.0]]).numpy()
      array([[1., 0.]], dtype=float32)
    """
    x = floating_tensor(logits, "softmax")
    return Softmax.apply(x, axis=class_axis(axis, x.ndim, "softmax"))


def log_softmax(logits: Any, axis: int = -1, name: str | None = None) -> Tensor:
    """``logits - log(sum(exp(logits), axis))``, max-subtracted (TF's ``tf.nn.log_softmax``).

    Args:
      logits: a floating tensor of rank >= 1.
      axis: the class axis (default the last).
      name: ignored.

    Returns:
      A tensor of the same shape and dtype, finite for finite logits of any size.

    Example:
      >>> distnet.nn.log_softmax([[1e4, 0.0]]).numpy()
      array([[     0., -10000.]], dtype=float32)
    """
    x = floating_tensor(logits, "log_softmax")
    return LogSoftmax.apply(x, axis=class_axis(axis, x.ndim, "log_softmax"))


class LeakyRelu(Op):
    __slots__ = ("mask", "alpha")

    def __init__(self, alpha):
        self.alpha = alpha

    def forward(self, x):
        self.mask = x > 0
        return np.where(self.mask, x, x * np.asarray(self.alpha, dtype=x.dtype))

    def backward(self, g, needs):
        # TF: the gradient at exactly 0 is alpha.
        return (np.where(self.mask, g, g * np.asarray(self.alpha, dtype=g.dtype)),)


@register("activation", "leaky_relu", doc="`x` where `x > 0`, else `0.2 * x`")
def leaky_relu(features: Any, alpha: float = 0.2, name: str | None = None) -> Tensor:
    """``features`` where positive, else ``alpha * features`` (TF's ``tf.nn.leaky_relu``,
    ``alpha=0.2`` by default); gradient ``alpha`` at 0, as TF.

    Example:
      >>> distnet.nn.leaky_relu([-1.0, 0.0, 2.0]).numpy()
      array([-0.2,  0. ,  2. ], dtype=float32)
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise InvalidArgumentError(f"leaky_relu: Expect: alpha a number Actual: {alpha!r}")
    return LeakyRelu.apply(floating_tensor(features, "leaky_relu"), alpha=float(alpha))
