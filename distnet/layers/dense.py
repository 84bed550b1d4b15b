"""``Dense``: ``activation(x @ kernel + bias)``."""
from __future__ import annotations

from typing import Optional

from distnet.errors import InvalidArgumentError, ShapeError
from distnet.layers.base import NAME, WEIGHTED, WeightedLayer
from distnet.registry import INT, Option, register
from distnet.tensor import Tensor


@register("layer", "dense", Option("units", INT, doc="output size", low=0, low_open=True), *WEIGHTED, NAME,
          aliases=("fc",), doc="fully connected: `activation(x @ kernel + bias)` on `[batch, features]`",
          flat_output=True, gives_logits=True)
class Dense(WeightedLayer):
    """Fully-connected layer on ``[batch, features]`` inputs.

    Args:
      units: output size, > 0.
      activation: None | 'relu' | 'sigmoid' | 'tanh' | 'softmax' | callable.
      use_bias: add a bias vector ``<name>/bias``.
      kernel_initializer, bias_initializer: name or ``init(shape, dtype, rng)``
        (defaults ``glorot_uniform`` and ``zeros``, as Keras).
      kernel_regularizer, bias_regularizer: ``w -> scalar Tensor`` or None.
      name: layer name (default ``dense``, ``dense_1``, ... within a model).

    Example:
      >>> model = distnet.Sequential([Dense(64, activation="relu"), Dense(10)], input_shape=(784,))
    """

    base_name = "dense"

    def __init__(self, units: int, activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 name: Optional[str] = None):
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise InvalidArgumentError(f"Dense: units: Expect: a positive int Actual: {units!r}")
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, name)
        self.units = units

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ShapeError(f"Dense {self.name!r}: expects inputs [batch, features]; Actual: per-sample shape "
                             f"{tuple(input_shape)} — put a Flatten layer before it")
        return (self.units,)

    def build_weights(self, input_shape, rng):
        self._make_weights((input_shape[0], self.units), self.units, rng)

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:
        from distnet.ops import matmul

        return self._finish(matmul(x, self.kernel))
