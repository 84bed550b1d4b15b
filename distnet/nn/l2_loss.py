"""``l2_loss``: half the sum of squares (TF's ``tf.nn.l2_loss``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.autodiff import Op
from distnet.nn.activations import floating_tensor
from distnet.tensor import Tensor


class L2Loss(Op):
    __slots__ = ("x",)

    def forward(self, x):
        self.x = x
        flat = x.reshape(-1)
        # One BLAS dot product, in the input's dtype.
        return np.asarray(np.dot(flat, flat) / 2, dtype=x.dtype)

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
