"""``LSTM``: long short-term memory over ``[batch, time, features]`` (Keras ``LSTM``).

Per step, with Keras' gate order ``i, f, c, o`` along the weights' last axis::

    z = x_t @ kernel + h @ recurrent_kernel + bias
    i, f, o = recurrent_activation(z_i), recurrent_activation(z_f), recurrent_activation(z_o)
    c = f * c + i * activation(z_c)
    h = o * activation(c)

``unit_forget_bias`` (Keras' default) starts the forget gate's bias at 1.
With the default activations the layer runs :func:`distnet.nn.lstm` (the
sequence as one op); with others it unrolls the loop over native ops.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from distnet.layers.base import NAME
from distnet.layers.recurrent import RECURRENT, Recurrent
from distnet.registry import BOOL, Option, register
from distnet.tensor import Tensor


class _UnitForgetBias:
    """Keras' ``unit_forget_bias``: ``[init(units), ones(units), init(2 * units)]``."""

    def __init__(self, init, units: int):
        self.init, self.units = init, units

    def __call__(self, shape, dtype=np.float32, rng=None):
        u = self.units
        return np.concatenate([np.asarray(self.init((u,), dtype, rng)), np.ones(u, dtype),
                               np.asarray(self.init((2 * u,), dtype, rng))]).astype(dtype)

    def __repr__(self) -> str:
        return f"unit_forget_bias({self.init!r})"


@register("layer", "lstm", *RECURRENT,
          Option("unit_forget_bias", BOOL, True, "start the forget gate's bias at 1 (Keras)"), NAME,
          doc="long short-term memory on `[batch, time, features]` (Keras' gate order i, f, c, o); "
              "`[batch, units]`, or `[batch, time, units]` with `return_sequences`",
          flat_output=True, sequence_input=True)
class LSTM(Recurrent):
    """An LSTM layer (Keras semantics; weights ``<name>/kernel``, ``<name>/recurrent_kernel``, ``<name>/bias``).

    Args:
      units: the state's size, > 0.
      activation: of the candidate and the output (default tanh).
      recurrent_activation: of the gates (default sigmoid).
      use_bias, kernel_initializer, recurrent_initializer (default orthogonal),
      bias_initializer, kernel_regularizer, recurrent_regularizer,
      bias_regularizer: as Keras.
      unit_forget_bias: the forget gate's bias starts at 1 (default on).
      return_sequences: output every step's state, not only the last.
      name: layer name (default ``lstm``, ``lstm_1``, ...).

    Example:
      >>> Sequential([Reshape((28, 28)), LSTM(64), Dense(10)], input_shape=(28, 28, 1))
    """

    base_name = "lstm"
    gates = 4

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias: bool = True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, return_sequences: bool = False, name: Optional[str] = None):
        super().__init__(units, activation, recurrent_activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
                         bias_regularizer, return_sequences, name)
        self.unit_forget_bias = bool(unit_forget_bias)

    def bias_initializer_for(self):
        if self.unit_forget_bias:
            return _UnitForgetBias(self.bias_initializer, self.units)
        return self.bias_initializer

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:
        from distnet import nn
        from distnet.nn import bias_add
        from distnet.ops import matmul

        if self.activation is nn.tanh and self.recurrent_activation is nn.sigmoid:
            # Keras' defaults: the fused sequence op (the same recurrence, one op, its BPTT written out).
            hs = nn.lstm(x, self.kernel, self.recurrent_kernel, self.bias if self.use_bias else None)
            return hs if self.return_sequences else hs[:, -1]

        u = self.units
        h = c = self.zero_state(x.shape[0])
        outputs = []
        for t in range(x.shape[1]):
            z = matmul(x[:, t, :], self.kernel) + matmul(h, self.recurrent_kernel)
            if self.use_bias:
                z = bias_add(z, self.bias)
            i, f = self.gate(z[:, :u]), self.gate(z[:, u:2 * u])
            candidate, o = self.act(z[:, 2 * u:3 * u]), self.gate(z[:, 3 * u:])
            c = f * c + i * candidate
            h = o * self.act(c)
            outputs.append(h)
        return self.finish(outputs)
