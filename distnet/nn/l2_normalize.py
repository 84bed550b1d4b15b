"""``l2_normalize``: ``x / sqrt(max(sum(x**2, axis), epsilon))`` (TF's ``tf.nn.l2_normalize``)."""
from __future__ import annotations

from typing import Any

from distnet import ops
from distnet.nn.activations import floating_tensor


def l2_normalize(x: Any, axis: Any = None, epsilon: float = 1e-12, name: str | None = None) -> Any:
    """``x`` scaled to unit L2 norm along ``axis`` (all axes when None); composed.

    TF1's form: ``x * rsqrt(max(sum(x**2, axis, keepdims=True), epsilon))``,
    so a zero vector stays zero.

    Example:
      >>> distnet.nn.l2_normalize([3.0, 4.0]).numpy()
      array([0.6, 0.8], dtype=float32)
    """
    x = floating_tensor(x, "l2_normalize")
    square_sum = ops.reduce_sum(ops.square(x), axis=axis, keepdims=True)
    return ops.divide(x, ops.sqrt(ops.maximum(square_sum, epsilon)))
