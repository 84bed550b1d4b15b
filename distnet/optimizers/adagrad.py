"""Adagrad (TF1's AdagradOptimizer): ``accum += g^2; var -= lr * g / sqrt(accum)``.

TF1 convention: the accumulator starts at ``initial_accumulator_value``
(default 0.1, must be > 0) and there is no epsilon.
"""
from __future__ import annotations

import numpy as np

from distnet import jit
from distnet.optimizers.base import CLIP_NORM, Optimizer, check_hyper
from distnet.registry import FLOAT, Option, register
from distnet.model.schedules import LearningRate


@register("optimizer", "adagrad",
          Option("initial_accumulator_value", FLOAT, 0.1, "the accumulator's starting value",
                 low=0.0, low_open=True), CLIP_NORM,
          doc="`accum += g^2; var -= lr * g / sqrt(accum)` (TF1: no epsilon)")
class Adagrad(Optimizer):
    """Adagrad; slot ``"accumulator"``.

    Args:
      learning_rate: float > 0 or a schedule.
      initial_accumulator_value: > 0.

    Example:
      >>> opt = Adagrad(0.1)
    """

    slot_names = ("accumulator",)

    def __init__(self, learning_rate: LearningRate, initial_accumulator_value: float = 0.1, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = check_hyper("initial_accumulator_value", initial_accumulator_value,
                                                     low=0.0, low_open=True)

    def _init_slot(self, slot, var):
        return np.full(var.shape, self.initial_accumulator_value, dtype=var.dtype)

    def _update_chunk(self, name, p, grad, slots, lr, t, tmp):
        (acc,) = slots
        np.multiply(grad, grad, out=tmp, casting="unsafe")
        acc += tmp
        np.sqrt(acc, out=tmp)
        np.divide(grad, tmp, out=tmp, casting="unsafe")
        tmp *= lr
        p -= tmp

    def _update_compiled(self, name, p, g, slots, lr, t):
        if _adagrad_kernel is None:   # pragma: no cover - without numba
            return False
        (acc,) = slots
        _adagrad_kernel(p, g, acc, p.dtype.type(lr))   # lr as numpy's weak-scalar rule casts it
        return True


@jit.kernel
def _adagrad_kernel(p, g, acc, lr):
    """``_update_chunk`` in one pass: its operations, in its order, per element."""
    for i in range(p.size):
        a = acc[i] + g[i] * g[i]
        acc[i] = a
        p[i] -= (g[i] / np.sqrt(a)) * lr
