"""``l2_loss``: half the sum of squares (TF's ``tf.nn.l2_loss``)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from distnet.autodiff import Op
from distnet.nn.activations import floating_tensor
from distnet.tensor import Tensor


# Elements per BLAS dot product; the partial sums are added in float64.
CHUNK = 65536


def sum_of_squares(x: np.ndarray) -> float:
    """``sum(x ** 2)`` of a float array, as a Python float.

    One BLAS dot product accumulates in the array's precision: over the 6.4 M
    weights of a dense kernel in float32 that is off by ~4e-5 relative.  Dot
    products of ``CHUNK`` elements added in float64 are within ~1e-7 (like
    numpy's pairwise ``sum``) at the same speed.
    """
    flat = x.reshape(-1)
    if flat.size <= CHUNK:
        return float(np.dot(flat, flat))
    return math.fsum(float(np.dot(flat[i:i + CHUNK], flat[i:i + CHUNK])) for i in range(0, flat.size, CHUNK))


class L2Loss(Op):
    __slots__ = ("x",)

    def forward(self, x):
        self.x = x
        return np.asarray(sum_of_squares(x) / 2, dtype=x.dtype)

    def backward(self, g, needs):
        return (g * self.x,)


def l2_loss(t: Any, name: str | None = None) -> Tensor:
    """``sum(t ** 2) / 2`` over all elements (TF1: no square root, halved).

    Args:
      t: a floating tensor of any shape.
      name: ignored (TF compatibility).

    Returns:
      A scalar tensor of ``t``'s dtype.

    Example:
      >>> distnet.nn.l2_loss([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).numpy()
      array(45.5, dtype=float32)
    """
    return L2Loss.apply(floating_tensor(t, "l2_loss"))
