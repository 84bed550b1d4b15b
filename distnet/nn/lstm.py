"""``lstm``: a whole LSTM sequence as one op, forward and backpropagation through time side by side.

Keras' LSTM with its default activations (sigmoid gates, tanh candidate and
output), gates ``i, f, c, o`` along the weights' last axis, state starting at
zeros::

    z_t = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias
    c_t = sigmoid(z_f) * c_{t-1} + sigmoid(z_i) * tanh(z_c)
    h_t = sigmoid(z_o) * tanh(c_t)

One op for the sequence instead of ~15 per step: the input products of all
steps are one matrix product, and the backward is written out (figures:
benchmarks/recurrent_layers.py).  :class:`~distnet.layers.LSTM` uses it for
its default activations and unrolls native ops otherwise.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.autodiff import Op
from distnet.errors import DTypeError, ShapeError
from distnet.tensor import Tensor, as_tensor


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # As distnet.nn.sigmoid: exp of a non-positive number only.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, np.ones((), z.dtype), e) / (1 + e)


class LSTMSequence(Op):
    __slots__ = ("x", "kernel", "recurrent", "saved", "has_bias")

    def __init__(self, has_bias: bool):
        self.has_bias = has_bias

    def forward(self, x, kernel, recurrent, bias=None):
        b, steps, _ = x.shape
        u = recurrent.shape[0]
        self.x, self.kernel, self.recurrent = x, kernel, recurrent
        xz = (x.reshape(b * steps, -1) @ kernel).reshape(b, steps, 4 * u)
        if bias is not None:
            xz += bias
        h = c = np.zeros((b, u), x.dtype)
        hs = np.empty((b, steps, u), x.dtype)
        self.saved = []
        for t in range(steps):
            z = xz[:, t] + h @ recurrent
            i, f, o = _sigmoid(z[:, :u]), _sigmoid(z[:, u:2 * u]), _sigmoid(z[:, 3 * u:])
            g = np.tanh(z[:, 2 * u:3 * u])
            c_prev, h_prev = c, h
            c = f * c + i * g
            tc = np.tanh(c)
            h = o * tc
            hs[:, t] = h
            self.saved.append((i, f, g, o, c_prev, h_prev, tc))
        return hs

    def backward(self, grad, needs):
        x, kernel, recurrent = self.x, self.kernel, self.recurrent
        b, steps, _ = x.shape
        u = recurrent.shape[0]
        dz_all = np.empty((b, steps, 4 * u), grad.dtype)
        drec = np.zeros_like(recurrent) if needs[2] else None
        dh_next = np.zeros((b, u), grad.dtype)
        dc = np.zeros((b, u), grad.dtype)
        for t in reversed(range(steps)):
            i, f, g, o, c_prev, h_prev, tc = self.saved[t]
            dh = grad[:, t] + dh_next
            dc = dc + dh * o * (1 - tc * tc)
            dz = dz_all[:, t]
            dz[:, :u] = dc * g * i * (1 - i)
            dz[:, u:2 * u] = dc * c_prev * f * (1 - f)
            dz[:, 2 * u:3 * u] = dc * i * (1 - g * g)
            dz[:, 3 * u:] = dh * tc * o * (1 - o)
            dc = dc * f
            if drec is not None:
                drec += h_prev.T @ dz
            dh_next = dz @ recurrent.T
        dz2 = dz_all.reshape(b * steps, 4 * u)
        dx = (dz2 @ kernel.T).reshape(x.shape) if needs[0] else None
        dk = x.reshape(b * steps, -1).T @ dz2 if needs[1] else None
        out = [dx, dk, drec]
        if self.has_bias:
            out.append(dz2.sum(axis=0) if needs[3] else None)
        return tuple(out)


def lstm(x: Any, kernel: Any, recurrent_kernel: Any, bias: Any = None) -> Tensor:
    """Every step's state ``h`` of a Keras LSTM (sigmoid gates, tanh) over ``x``.

    Args:
      x: ``[batch, time, features]`` floating tensor.
      kernel: ``[features, 4 * units]``, gates ``i, f, c, o``.
      recurrent_kernel: ``[units, 4 * units]``.
      bias: ``[4 * units]`` or None.

    Returns:
      ``[batch, time, units]``: ``h_t`` for every ``t`` (the last is ``[:, -1]``).

    Example:
      >>> distnet.nn.lstm(np.zeros((2, 3, 4), np.float32), np.zeros((4, 8), np.float32),
      ...                 np.zeros((2, 8), np.float32)).shape
      (2, 3, 2)
    """
    tensors, u = check_sequence_args("lstm", 4, x, kernel, recurrent_kernel, bias)
    if bias is not None and tensors[3].shape != (4 * u,):
        raise ShapeError(f"lstm: bias: Expect: ({4 * u},) Actual: {tensors[3].shape}")
    if tensors[0].shape[1] == 0:
        raise ShapeError(f"lstm: Expect: at least one time step Actual: x of shape {tensors[0].shape}")
    return LSTMSequence.apply(*tensors, has_bias=bias is not None)


def check_sequence_args(op: str, gates: int, x, kernel, recurrent_kernel, bias, min_time: int = 0) -> tuple:
    """The tensors of a fused recurrent op's arguments and its units, checked at the boundary.

    ``gates`` is how many blocks of ``units`` columns the kernels hold (LSTM 4, GRU 3).
    """
    tensors = [as_tensor(v) for v in (x, kernel, recurrent_kernel) + (() if bias is None else (bias,))]
    xt, k, r = tensors[:3]
    if xt.dtype.kind != "f" or any(t.dtype != xt.dtype for t in tensors):
        raise DTypeError(f"{op}: Expect: one floating dtype for x and the weights Actual: "
                         f"{[t.dtype.name for t in tensors]}")
    if r.ndim != 2 or r.shape[1] != gates * r.shape[0]:
        raise ShapeError(f"{op}: recurrent_kernel: Expect: [units, {gates} * units] Actual: {r.shape}")
    u = r.shape[0]
    time = "time >= 1" if min_time else "time"
    if xt.ndim != 3 or k.shape != (xt.shape[-1], gates * u) or xt.shape[1] < min_time:
        raise ShapeError(f"{op}: Expect: x [batch, {time}, features] and kernel [features, {gates * u}] Actual: "
                         f"{xt.shape} and {k.shape}")
    return tensors, u
