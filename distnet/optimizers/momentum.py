"""Momentum (TF1's MomentumOptimizer).

TF1 convention: the velocity accumulates raw gradients and the learning rate
is applied after it (``accum = mu * accum + g; var -= lr * accum``), unlike
the formulation that folds ``lr`` into the velocity.  Nesterov:
``var -= lr * g + lr * mu * accum`` with the already-updated ``accum``.
"""
from __future__ import annotations

import numpy as np

from distnet import jit
from distnet.optimizers.base import CLIP_NORM, Optimizer, check_hyper
from distnet.registry import BOOL, FLOAT, Option, register
from distnet.model.schedules import LearningRate


@register("optimizer", "momentum", Option("momentum", FLOAT, 0.9, "`mu`", low=0.0),
          Option("use_nesterov", BOOL, False, "Nesterov's look-ahead form"), CLIP_NORM,
          doc="`accum = mu * accum + g; var -= lr * accum` (TF1 applies `lr` after the velocity)")
class Momentum(Optimizer):
    """SGD with momentum; slot ``"momentum"`` (starts at zeros).

    Args:
      learning_rate: float > 0 or a schedule.
      momentum: ``mu`` >= 0.
      use_nesterov: Nesterov's look-ahead form.

    Example:
      >>> opt = Momentum(0.1, momentum=0.9)
    """

    slot_names = ("momentum",)

    def __init__(self, learning_rate: LearningRate, momentum: float = 0.9, use_nesterov: bool = False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = check_hyper("momentum", momentum, low=0.0)
        self.use_nesterov = bool(use_nesterov)

    def _update_chunk(self, name, p, grad, slots, lr, t, tmp):
        (accum,) = slots
        accum *= self.momentum
        accum += grad
        if self.use_nesterov:
            # var -= lr * g + lr * mu * accum
            np.multiply(accum, lr * self.momentum, out=tmp)
            p -= tmp
            np.multiply(grad, lr, out=tmp, casting="unsafe")
            p -= tmp
        else:
            np.multiply(accum, lr, out=tmp)
            p -= tmp

    def _update_compiled(self, name, p, g, slots, lr, t):
        if _momentum_kernel is None:   # pragma: no cover - without numba
            return False
        (accum,) = slots
        dt = p.dtype.type   # each constant as numpy's weak-scalar rule casts it in _update_chunk
        _momentum_kernel(p, g, accum, dt(self.momentum), dt(lr), dt(lr * self.momentum), self.use_nesterov)
        return True


@jit.kernel
def _momentum_kernel(p, g, accum, mu, lr, lr_mu, nesterov):
    """``_update_chunk`` in one pass: its operations, in its order, per element."""
    for i in range(p.size):
        a = accum[i] * mu + g[i]
        accum[i] = a
        if nesterov:
            p[i] = (p[i] - a * lr_mu) - g[i] * lr
        else:
            p[i] -= a * lr
