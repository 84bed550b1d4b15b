"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter).

Convention (PyTorch / Keras ``AdamW``): the decay is scaled by the current
learning rate, ``var -= lr * weight_decay * var``, applied to the weights
before the Adam step (which does not read the weights, so the order does not
change the result).  TF1's contrib ``AdamWOptimizer`` instead subtracted
``weight_decay * var`` unscaled; with a schedule the two differ.  The decay
is not part of the loss and not of the gradient.
"""
from __future__ import annotations

from typing import Callable

from distnet.optimizers.adam import ADAM_OPTIONS, Adam
from distnet.optimizers.base import CLIP_NORM, check_hyper
from distnet.registry import FLOAT, Option, register
from distnet.model.schedules import LearningRate


@register("optimizer", "adamw", *ADAM_OPTIONS,
          Option("weight_decay", FLOAT, 0.01, "decoupled decay, `var -= lr * weight_decay * var` "
                 "before each Adam step", low=0.0), CLIP_NORM,
          doc="Adam with decoupled weight decay (PyTorch's and Keras' convention)")
class AdamW(Adam):
    """Adam (TF1 formula) plus decoupled weight decay ``var -= lr * wd * var``.

    Args:
      learning_rate: float > 0 or a schedule (default 0.001).
      weight_decay: >= 0 (default 0.01, as PyTorch).
      beta1, beta2, epsilon: as :class:`Adam`.
      decay_filter: optional ``name -> bool``; variables for which it returns
        False are not decayed (e.g. ``lambda n: not n.endswith("/bias")``).

    Example:
      >>> opt = AdamW(1e-3, weight_decay=1e-2)
    """

    def __init__(self, learning_rate: LearningRate = 0.001, weight_decay: float = 0.01, beta1: float = 0.9,
                 beta2: float = 0.999, epsilon: float = 1e-8, decay_filter: Callable[[str], bool] | None = None,
                 **kwargs):
        super().__init__(learning_rate, beta1, beta2, epsilon, **kwargs)
        self.weight_decay = check_hyper("weight_decay", weight_decay, low=0.0)
        self.decay_filter = decay_filter

    def _update_chunk(self, name, p, g, slots, lr, t, tmp):
        if self.weight_decay and (self.decay_filter is None or self.decay_filter(name)):
            p *= 1.0 - lr * self.weight_decay
        m, v = slots
        self._adam_step(p, g, m, v, lr, t, tmp)

    def _update_compiled(self, name, p, g, slots, lr, t):
        if self.weight_decay and (self.decay_filter is None or self.decay_filter(name)):
            p *= 1.0 - lr * self.weight_decay
        return super()._update_compiled(name, p, g, slots, lr, t)
