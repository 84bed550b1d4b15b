"""``GRU``: gated recurrent unit over ``[batch, time, features]`` (Keras ``GRU``).

Keras' gate order ``z`` (update), ``r`` (reset), ``h`` (candidate) along the
weights' last axis.  With ``reset_after`` (Keras' default, cuDNN's form) the
bias is ``[2, 3 * units]`` — an input bias and a recurrent bias — and the
reset gate multiplies the recurrent term after the matrix product::

    xz, xr, xh = split(x_t @ kernel + bias[0])
    hz, hr, hh = split(h @ recurrent_kernel + bias[1])
    z, r = recurrent_activation(xz + hz), recurrent_activation(xr + hr)
    h = z * h + (1 - z) * activation(xh + r * hh)

With ``reset_after = false`` the bias is ``[3 * units]`` and the candidate is
``activation(xh + (r * h) @ recurrent_kernel[:, 2u:])``.  With Keras' defaults
(``reset_after``, tanh, sigmoid) the layer runs :func:`distnet.nn.gru` (the
sequence as one op); otherwise it unrolls the loop over native ops.
"""
from __future__ import annotations

from typing import Optional

from distnet.layers.base import NAME
from distnet.layers.recurrent import RECURRENT, Recurrent
from distnet.registry import BOOL, Option, register
from distnet.tensor import Tensor


@register("layer", "gru", *RECURRENT,
          Option("reset_after", BOOL, True, "apply the reset gate after the recurrent product, with a "
                 "separate recurrent bias (Keras' default)"), NAME,
          doc="gated recurrent unit on `[batch, time, features]` (Keras' gate order z, r, h); `[batch, units]`, "
              "or `[batch, time, units]` with `return_sequences`",
          flat_output=True, sequence_input=True)
class GRU(Recurrent):
    """A GRU layer (Keras semantics; weights ``<name>/kernel``, ``<name>/recurrent_kernel``, ``<name>/bias``).

    Args:
      units, activation, recurrent_activation, use_bias, kernel_initializer,
      recurrent_initializer, bias_initializer, kernel_regularizer,
      recurrent_regularizer, bias_regularizer, return_sequences, name: as :class:`LSTM`.
      reset_after: Keras' default True (bias ``[2, 3 * units]``); False: the
        original form (bias ``[3 * units]``).

    Example:
      >>> Sequential([Reshape((28, 28)), GRU(64), Dense(10)], input_shape=(28, 28, 1))
    """

    base_name = "gru"
    gates = 3

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 return_sequences: bool = False, reset_after: bool = True, name: Optional[str] = None):
        super().__init__(units, activation, recurrent_activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
                         bias_regularizer, return_sequences, name)
        self.reset_after = bool(reset_after)

    def bias_shape(self) -> tuple:
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:
        from distnet import nn
        from distnet.ops import matmul

        if self.reset_after and self.activation is nn.tanh and self.recurrent_activation is nn.sigmoid:
            # Keras' defaults: the fused sequence op (the same recurrence, one op, its BPTT written out).
            hs = nn.gru(x, self.kernel, self.recurrent_kernel, self.bias if self.use_bias else None)
            return hs if self.return_sequences else hs[:, -1]

        u = self.units
        h = self.zero_state(x.shape[0])
        outputs = []
        for t in range(x.shape[1]):
            xs = matmul(x[:, t, :], self.kernel)
            if self.use_bias:
                xs = xs + (self.bias[0] if self.reset_after else self.bias)
            if self.reset_after:
                hs = matmul(h, self.recurrent_kernel)
                if self.use_bias:
                    hs = hs + self.bias[1]
                z = self.gate(xs[:, :u] + hs[:, :u])
                r = self.gate(xs[:, u:2 * u] + hs[:, u:2 * u])
                candidate = self.act(xs[:, 2 * u:] + r * hs[:, 2 * u:])
            else:
                hs = matmul(h, self.recurrent_kernel[:, :2 * u])
                z = self.gate(xs[:, :u] + hs[:, :u])
                r = self.gate(xs[:, u:2 * u] + hs[:, u:])
                candidate = self.act(xs[:, 2 * u:] + matmul(r * h, self.recurrent_kernel[:, 2 * u:]))
            h = z * h + (1.0 - z) * candidate
            outputs.append(h)
        return self.finish(outputs)
