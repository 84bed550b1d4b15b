"""Adadelta (TF1's AdadeltaOptimizer)::

    accum = rho * accum + (1 - rho) * g^2
    update = sqrt(accum_update + epsilon) / sqrt(accum + epsilon) * g
    var -= lr * update
    accum_update = rho * accum_update + (1 - rho) * update^2

TF1 conventions: both slots start at zeros; the learning rate multiplies the
update (TF1's default 0.001, not the paper's 1.0); epsilon sits inside both
square roots (default 1e-8).
"""
from __future__ import annotations

import numpy as np

from distnet import jit
from distnet.optimizers.base import CLIP_NORM, Optimizer, check_hyper
from distnet.registry import FLOAT, Option, register
from distnet.model.schedules import LearningRate


@register("optimizer", "adadelta",
          Option("rho", FLOAT, 0.95, "decay of both running averages", low=0.0, high=1.0),
          Option("epsilon", FLOAT, 1e-8, "added inside both square roots", low=0.0, low_open=True), CLIP_NORM,
          doc="TF1's formula: `accum = rho * accum + (1 - rho) * g^2`, "
              "`update = sqrt(accum_update + epsilon) / sqrt(accum + epsilon) * g`, `var -= lr * update`, "
              "`accum_update = rho * accum_update + (1 - rho) * update^2`")
class Adadelta(Optimizer):
    """Adadelta with TF1's formula; slots ``"accum"`` and ``"accum_update"`` (zeros).

    Args:
      learning_rate: float > 0 or a schedule (TF1's default 0.001).
      rho: decay of the running averages, in [0, 1].
      epsilon: > 0.

    Example:
      >>> opt = Adadelta(1.0, rho=0.95)
    """

    slot_names = ("accum", "accum_update")

    def __init__(self, learning_rate: LearningRate = 0.001, rho: float = 0.95, epsilon: float = 1e-8, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = check_hyper("rho", rho, low=0.0, high=1.0)
        self.epsilon = check_hyper("epsilon", epsilon, low=0.0, low_open=True)

    def _update_chunk(self, name, p, grad, slots, lr, t, tmp):
        accum, accum_update = slots
        rho, eps = self.rho, self.epsilon
        accum *= rho
        np.multiply(grad, grad, out=tmp, casting="unsafe")
        tmp *= 1.0 - rho
        accum += tmp
        # update = sqrt(accum_update + eps) / sqrt(accum + eps) * g, in tmp
        np.add(accum_update, eps, out=tmp, casting="unsafe")
        np.sqrt(tmp, out=tmp)
        upd_den = np.sqrt(accum + eps)
        np.divide(tmp, upd_den, out=tmp, casting="unsafe")
        np.multiply(tmp, grad, out=tmp, casting="unsafe")
        accum_update *= rho
        accum_update += (1.0 - rho) * (tmp * tmp)
        tmp *= lr
        p -= tmp

    def _update_compiled(self, name, p, g, slots, lr, t):
        if _adadelta_kernel is None:   # pragma: no cover - without numba
            return False
        accum, accum_update = slots
        dt = p.dtype.type   # each constant as numpy's weak-scalar rule casts it in _update_chunk
        _adadelta_kernel(p, g, accum, accum_update, dt(self.rho), dt(1.0 - self.rho), dt(self.epsilon), dt(lr))
        return True


@jit.kernel
def _adadelta_kernel(p, g, accum, accum_update, rho, c, eps, lr):
    """``_update_chunk`` in one pass: its operations, in its order, per element."""
    for i in range(p.size):
        a = accum[i] * rho + (g[i] * g[i]) * c
        accum[i] = a
        u = (np.sqrt(accum_update[i] + eps) / np.sqrt(a + eps)) * g[i]
        accum_update[i] = accum_update[i] * rho + c * (u * u)
        p[i] -= u * lr
