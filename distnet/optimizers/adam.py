"""Adam (TF1's AdamOptimizer).

TF1 convention ("epsilon hat"): the bias correction is folded into the
step size, ``lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)``, and epsilon
is added to ``sqrt(v)`` *uncorrected*: ``var -= lr_t * m / (sqrt(v) + eps)``.
PyTorch adds epsilon to ``sqrt(v_hat)``; the two differ by a factor
``sqrt(1 - beta2^t)`` on epsilon.  ``t`` is the 1-based step number.
"""
from __future__ import annotations

import math

import numpy as np

from distnet import jit
from distnet.optimizers.base import CLIP_NORM, Optimizer, check_hyper
from distnet.registry import FLOAT, Option, register
from distnet.model.schedules import LearningRate
#: Adam's job-file keys (AdamW takes them too).
ADAM_OPTIONS = (
    Option("beta1", FLOAT, 0.9, "decay of the first moment", low=0.0, high=1.0, high_open=True),
    Option("beta2", FLOAT, 0.999, "decay of the second moment", low=0.0, high=1.0, high_open=True),
    Option("epsilon", FLOAT, 1e-8, "TF1's \"epsilon hat\", added to `sqrt(v)` uncorrected",
           low=0.0, low_open=True),
)


@register("optimizer", "adam", *ADAM_OPTIONS, CLIP_NORM,
          doc="TF1's formula: `var -= lr_t * m / (sqrt(v) + epsilon)`, "
              "`lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`")
class Adam(Optimizer):
    """Adam with TF1's defaults and formula; slots ``"m"`` and ``"v"`` (zeros).

    Args:
      learning_rate: float > 0 or a schedule (default 0.001).
      beta1, beta2: decay rates in [0, 1).
      epsilon: > 0 (TF1's epsilon hat).

    Example:
      >>> opt = Adam(1e-4)
    """

    slot_names = ("m", "v")

    def __init__(self, learning_rate: LearningRate = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta1 = check_hyper("beta1", beta1, low=0.0, high=1.0, high_open=True)
        self.beta2 = check_hyper("beta2", beta2, low=0.0, high=1.0, high_open=True)
        self.epsilon = check_hyper("epsilon", epsilon, low=0.0, low_open=True)

    def _lr_t(self, lr: float, t: int) -> float:
        return lr * math.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)

    def _adam_step(self, p, grad, m, v, lr, t, tmp):
        b1, b2 = self.beta1, self.beta2
        lr_t = self._lr_t(lr, t)
        # m = b1 * m + (1 - b1) * g
        m *= b1
        np.multiply(grad, 1.0 - b1, out=tmp, casting="unsafe")
        m += tmp
        # v = b2 * v + (1 - b2) * g * g
        v *= b2
        np.multiply(grad, grad, out=tmp, casting="unsafe")
        tmp *= 1.0 - b2
        v += tmp
        # var -= lr_t * m / (sqrt(v) + eps)
        np.sqrt(v, out=tmp)
        tmp += self.epsilon
        np.divide(m, tmp, out=tmp)
        tmp *= lr_t
        p -= tmp

    def _update_chunk(self, name, p, g, slots, lr, t, tmp):
        m, v = slots
        self._adam_step(p, g, m, v, lr, t, tmp)

    def _update_compiled(self, name, p, g, slots, lr, t):
        if _adam_kernel is None:   # pragma: no cover - without numba
            return False
        m, v = slots
        dt = p.dtype.type   # each constant as numpy's weak-scalar rule casts it in _adam_step
        _adam_kernel(p, g, m, v, dt(self.beta1), dt(1.0 - self.beta1), dt(self.beta2), dt(1.0 - self.beta2),
                     dt(self.epsilon), dt(self._lr_t(lr, t)))
        return True


@jit.kernel
def _adam_kernel(p, g, m, v, b1, c1, b2, c2, eps, lr_t):
    """``_adam_step`` in one pass: its operations, in its order, per element."""
    for i in range(p.size):
        mi = m[i] * b1 + g[i] * c1
        m[i] = mi
        vi = v[i] * b2 + (g[i] * g[i]) * c2
        v[i] = vi
        p[i] -= (mi / (np.sqrt(vi) + eps)) * lr_t
