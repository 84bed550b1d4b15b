"""RMSProp (TF1's RMSPropOptimizer).

TF1 details kept: the mean-square slot ``"rms"`` starts at ONES (not zeros),
epsilon sits inside the square root, and the learning rate is applied inside
the momentum accumulator::

    rms = decay * rms + (1 - decay) * g^2
    mom = momentum * mom + lr * g / sqrt(rms + eps)          # uncentered
    mom = momentum * mom + lr * g / sqrt(rms - mg^2 + eps)   # centered, mg = decay*mg + (1-decay)*g
    var -= mom
"""
from __future__ import annotations

import numpy as np

from distnet import jit
from distnet.optimizers.base import CLIP_NORM, Optimizer, check_hyper
from distnet.registry import BOOL, FLOAT, Option, register
from distnet.model.schedules import LearningRate


@register("optimizer", "rmsprop",
          Option("decay", FLOAT, 0.9, "decay of the mean square", low=0.0, high=1.0, high_open=True),
          Option("momentum", FLOAT, 0.0, "momentum of the update", low=0.0),
          Option("epsilon", FLOAT, 1e-10, "added inside the square root", low=0.0, low_open=True),
          Option("centered", BOOL, False, "divide by the estimated variance instead"), CLIP_NORM,
          doc="TF1's formula: `rms = decay * rms + (1 - decay) * g^2` (starting at ones), "
              "`mom = momentum * mom + lr * g / sqrt(rms + epsilon)`, `var -= mom`")
class RMSProp(Optimizer):
    """RMSProp with TF1's formula; slots ``"rms"`` (ones), ``"momentum"`` (zeros)
    and, when ``centered``, ``"mg"`` (zeros).

    Args:
      learning_rate: float > 0 or a schedule.
      decay: discounting factor in [0, 1].
      momentum: >= 0.
      epsilon: > 0, added inside the square root.
      centered: normalise by the estimated variance instead of the raw second moment.

    Example:
      >>> opt = RMSProp(0.01, decay=0.9)
    """

    def __init__(self, learning_rate: LearningRate, decay: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-10, centered: bool = False, **kwargs):
        self.slot_names = ("rms", "momentum", "mg") if centered else ("rms", "momentum")
        super().__init__(learning_rate, **kwargs)
        self.decay = check_hyper("decay", decay, low=0.0, high=1.0)
        self.momentum = check_hyper("momentum", momentum, low=0.0)
        self.epsilon = check_hyper("epsilon", epsilon, low=0.0, low_open=True)
        self.centered = bool(centered)

    def _init_slot(self, slot, var):
        if slot == "rms":
            return np.ones(var.shape, dtype=var.dtype)  # TF1: ms starts at ones
        return np.zeros(var.shape, dtype=var.dtype)

    def _update_chunk(self, name, p, grad, slots, lr, t, tmp):
        rms, mom = slots[0], slots[1]
        d = self.decay
        rms *= d
        np.multiply(grad, grad, out=tmp, casting="unsafe")
        tmp *= 1.0 - d
        rms += tmp
        if self.centered:
            mg = slots[2]
            mg *= d
            np.multiply(grad, 1.0 - d, out=tmp, casting="unsafe")
            mg += tmp
            np.multiply(mg, mg, out=tmp)
            np.subtract(rms, tmp, out=tmp)
        else:
            np.copyto(tmp, rms)
        tmp += self.epsilon
        np.sqrt(tmp, out=tmp)
        np.divide(grad, tmp, out=tmp, casting="unsafe")
        tmp *= lr
        mom *= self.momentum
        mom += tmp
        p -= mom

    def _update_compiled(self, name, p, g, slots, lr, t):
        if _rmsprop_kernel is None:   # pragma: no cover - without numba
            return False
        rms, mom = slots[0], slots[1]
        mg = slots[2] if self.centered else rms   # not read when not centered
        dt = p.dtype.type   # each constant as numpy's weak-scalar rule casts it in _update_chunk
        _rmsprop_kernel(p, g, rms, mom, mg, dt(self.decay), dt(1.0 - self.decay), dt(self.epsilon), dt(lr),
                        dt(self.momentum), self.centered)
        return True


@jit.kernel
def _rmsprop_kernel(p, g, rms, mom, mg, d, c, eps, lr, mu, centered):
    """``_update_chunk`` in one pass: its operations, in its order, per element."""
    for i in range(p.size):
        r = rms[i] * d + (g[i] * g[i]) * c
        rms[i] = r
        if centered:
            m = mg[i] * d + g[i] * c
            mg[i] = m
            r = r - m * m
        u = mom[i] * mu + (g[i] / np.sqrt(r + eps)) * lr
        mom[i] = u
        p[i] -= u
