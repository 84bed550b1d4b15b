"""``lstm_step``: the element-wise part of one LSTM step, fused into one op.

Given the gate pre-activations ``z = [x, h] @ kernel + bias`` (``[batch, 4
units]``, TF1's gate order ``i, j, f, o``) and the previous cell ``c``::

    c' = c * sigmoid(f + forget_bias) + sigmoid(i) * tanh(j)
    h' = tanh(c') * sigmoid(o)

and returns ``[c', h']`` side by side (``[batch, 2 units]``).  Composed from
single ops this is fourteen nodes of the autodiff graph per step (four
slices, three sigmoids, two tanhs, the products and sums); one node computes
the same values and its backward the same gradients, which is what an RNN
unrolled over many steps spends its time on.  The sigmoid and tanh are
distnet's (:mod:`distnet.nn.activations`), so the values are bitwise those
of the composed form.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.autodiff import Op
from distnet.errors import DTypeError, ShapeError
from distnet.nn.activations import Sigmoid
from distnet.tensor import Tensor, binary_operands


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return Sigmoid().forward(x)


class LSTMStep(Op):
    __slots__ = ("forget_bias", "saved")

    def __init__(self, forget_bias: float):
        self.forget_bias = forget_bias

    def forward(self, z, c):
        n = c.shape[1]
        i = _sigmoid(z[:, :n])
        j = np.tanh(z[:, n:2 * n])
        f = _sigmoid(z[:, 2 * n:3 * n] + np.asarray(self.forget_bias, z.dtype))
        o = _sigmoid(z[:, 3 * n:])
        new_c = c * f + i * j
        tc = np.tanh(new_c)
        self.saved = (c, i, j, f, o, tc)
        return np.concatenate([new_c, tc * o], axis=1)

    def backward(self, g, needs):
        c, i, j, f, o, tc = self.saved
        n = c.shape[1]
        gc, gh = g[:, :n], g[:, n:]
        dc = gc + gh * o * (1 - tc * tc)
        dz = None
        if needs[0]:
            dz = np.concatenate([dc * j * i * (1 - i), dc * i * (1 - j * j), dc * c * f * (1 - f),
                                 gh * tc * o * (1 - o)], axis=1)
        return dz, (dc * f if needs[1] else None)


def lstm_step(z: Any, c: Any, forget_bias: float = 1.0) -> Tensor:
    """``[c', h']`` of one LSTM step from the gate pre-activations (see the module doc).

    Args:
      z: ``[batch, 4 units]``, the gates ``i, j, f, o`` side by side (TF1's order).
      c: ``[batch, units]``, the previous cell state.
      forget_bias: added to ``f`` before its sigmoid (TF1's default 1.0).

    Returns:
      ``[batch, 2 units]``: the new cell state, then the new output.

    Example:
      >>> distnet.nn.lstm_step(np.zeros((1, 4), np.float32), np.ones((1, 1), np.float32)).numpy()
      array([[0.7310586 , 0.31185627]], dtype=float32)
    """
    z, c = binary_operands(z, c, "lstm_step")
    if z.dtype.kind != "f":
        raise DTypeError(f"lstm_step: Expect: floating tensors Actual: {z.dtype.name}")
    if c.ndim != 2 or z.ndim != 2 or z.shape != (c.shape[0], 4 * c.shape[1]):
        raise ShapeError(f"lstm_step: Expect: z of shape [batch, 4 * units] and c of shape [batch, units] "
                         f"Actual: z {list(z.shape)}, c {list(c.shape)}")
    return LSTMStep.apply(z, c, forget_bias=float(forget_bias))
