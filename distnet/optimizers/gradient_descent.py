"""Plain gradient descent: ``var -= lr * grad`` (TF1's GradientDescentOptimizer)."""
from __future__ import annotations

import numpy as np

from distnet import jit
from distnet.optimizers.base import CLIP_NORM, Optimizer
from distnet.registry import register
from distnet.model.schedules import LearningRate


@register("optimizer", "sgd", CLIP_NORM, aliases=("gradient_descent", "gradientdescent"),
          doc="`var -= lr * grad`")
class GradientDescent(Optimizer):
    """``var -= learning_rate * grad``.

    Args:
      learning_rate: float > 0 or a schedule.

    Example:
      >>> opt = GradientDescent(0.5)
      >>> opt.minimize(loss, model.trainable_variables)
    """

    slot_names = ()

    def __init__(self, learning_rate: LearningRate, **kwargs):
        super().__init__(learning_rate, **kwargs)

    def _update_chunk(self, name, p, grad, slots, lr, t, tmp):
        np.multiply(grad, lr, out=tmp, casting="unsafe")
        p -= tmp

    def _update_compiled(self, name, p, g, slots, lr, t):
        if _sgd_kernel is None:   # pragma: no cover - without numba
            return False
        _sgd_kernel(p, g, p.dtype.type(lr))   # lr as numpy's weak-scalar rule casts it
        return True


@jit.kernel
def _sgd_kernel(p, g, lr):
    """``_update_chunk`` in one pass: its operations, in its order, per element."""
    for i in range(p.size):
        p[i] -= g[i] * lr
