"""``Dropout``: inverted dropout, active only when ``training=True``."""
from __future__ import annotations

from typing import Optional

import numpy as np

from distnet.errors import InvalidArgumentError
from distnet.layers.base import NAME, Layer
from distnet.registry import FLOAT, Option, register
from distnet.tensor import Tensor


@register("layer", "dropout",
          Option("rate", FLOAT, doc="the fraction of units dropped (TF1's `keep_prob` is `1 - rate`)",
                 low=0.0, high=1.0, high_open=True, note="(the fraction of units dropped)"), NAME,
          doc="while training, zeroes a fraction `rate` of its inputs and scales the rest by "
              "`1 / (1 - rate)`")
class Dropout(Layer):
    """Zero a fraction ``rate`` of the inputs during training, scale the rest by ``1/(1-rate)``.

    Randomness is explicit: in a model, either the model's own seeded
    Generator, or — when the model is called with ``dropout_keys`` (one
    ``uint64`` per sample) — per-sample keys derived from those keys and this
    layer's index in the model, so a sample's mask does not depend on how
    the batch is split across ranks.

    Args:
      rate: fraction dropped, in [0, 1) (TF2/Keras; TF1's keep_prob = 1 - rate).
      name: layer name (default ``dropout``, ``dropout_1``, ...).

    Example:
      >>> Dropout(0.5)   # examples/jobs/seed003_dropout.toml
    """

    base_name = "dropout"

    def __init__(self, rate: float, name: Optional[str] = None):
        super().__init__(name=name)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not 0.0 <= float(rate) < 1.0:
            raise InvalidArgumentError(f"Dropout: rate: Expect: a number in [0, 1) Actual: {rate!r}")
        self.rate = float(rate)

    def layer_keys(self, dropout_keys: np.ndarray) -> np.ndarray:
        """This layer's per-sample keys: a bijective mix of the sample keys and the layer index."""
        from distnet.nn import dropout_sample_keys

        return dropout_sample_keys(seed=0, step=0, layer_index=int(self.index), sample_indices=dropout_keys)

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:
        if not training or self.rate == 0.0:
            return x
        from distnet.nn import dropout

        if sample_keys is not None:
            return dropout(x, self.rate, sample_keys=self.layer_keys(sample_keys))
        if rng is None:
            raise InvalidArgumentError(
                f"Dropout {self.name!r}: training=True needs a random source: call it through a model "
                "(which owns a seeded Generator) or pass rng= or sample_keys=")
        return dropout(x, self.rate, rng=rng)
