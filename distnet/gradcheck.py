"""Check an op's analytic gradient against central finite differences.

Use float64 inputs.  The output is reduced to a scalar by a fixed random
projection ``sum(f(x) * r)``, so every output element contributes with its
own weight and a gradient that is wrong for one element cannot cancel out.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from distnet.autodiff import gradients
from distnet.errors import DTypeError
from distnet.tensor import Tensor


class GradientCheckError(AssertionError):
    """The analytic and numerical gradients disagree."""


def numerical_gradient(scalar_fn: Callable[[list[np.ndarray]], float], arrays: list[np.ndarray],
                       index: int, eps: float) -> np.ndarray:
    """Central-difference gradient of ``scalar_fn`` w.r.t. ``arrays[index]``."""
    x = arrays[index]
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = scalar_fn(arrays)
        flat[i] = old - eps
        down = scalar_fn(arrays)
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def check_gradients(fn: Callable[..., Tensor], inputs: Sequence[np.ndarray], *, eps: float = 1e-6,
                    rtol: float = 1e-5, atol: float = 1e-7, wrt: Sequence[int] | None = None,
                    seed: int = 0) -> None:
    """Raise :class:`GradientCheckError` if ``fn``'s gradients are wrong.

    Args:
      fn: takes one Tensor per input, returns a Tensor of any shape.
      inputs: float64 arrays (copied; the originals are not touched).
      eps: finite-difference step.
      rtol, atol: tolerance of ``numpy.allclose`` between the two gradients.
      wrt: indices of the inputs to check (default: all).
      seed: seed of the random projection.
    """
    arrays = [np.array(a, dtype=np.float64, copy=True) for a in inputs]
    for i, a in enumerate(inputs):
        if np.asarray(a).dtype != np.float64:
            raise DTypeError(f"check_gradients: input {i}: Expect: float64 Actual: {np.asarray(a).dtype}")
    wrt = list(range(len(arrays))) if wrt is None else list(wrt)
    tensors = [Tensor(a) for a in arrays]
    out = fn(*tensors)
    r = np.random.default_rng(seed).standard_normal(out.shape)
    scalar = (out * Tensor(r)) if out.ndim else out * Tensor(np.float64(r))
    from distnet.ops import reduce_sum

    analytic = gradients(reduce_sum(scalar), [tensors[i] for i in wrt])

    def scalar_fn(arrs):
        return float(np.sum(fn(*[Tensor(a) for a in arrs]).data * r))

    for k, i in enumerate(wrt):
        numeric = numerical_gradient(scalar_fn, arrays, i, eps)
        if not np.allclose(analytic[k], numeric, rtol=rtol, atol=atol):
            err = np.max(np.abs(analytic[k] - numeric))
            raise GradientCheckError(
                f"gradient of input {i} (shape {arrays[i].shape}) differs from finite differences "
                f"by up to {err:.3g}\nanalytic:\n{analytic[k]}\nnumeric:\n{numeric}"
            )
