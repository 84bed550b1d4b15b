"""``gru``: a whole GRU sequence as one op, forward and backpropagation through time side by side.

Keras' GRU with its defaults (sigmoid gates, tanh candidate, ``reset_after``),
gates ``z, r, h`` along the weights' last axis, state starting at zeros::

    xz, xr, xh = split(x_t @ kernel + bias[0])
    hz, hr, hh = split(h_{t-1} @ recurrent_kernel + bias[1])
    z, r = sigmoid(xz + hz), sigmoid(xr + hr)
    h_t = z * h_{t-1} + (1 - z) * tanh(xh + r * hh)

One op for the sequence, as :func:`distnet.nn.lstm`: the input products of
all steps are one matrix product and the backward is written out.
:class:`~distnet.layers.GRU` uses it for its defaults and unrolls native ops
otherwise.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.autodiff import Op
from distnet.errors import ShapeError
from distnet.nn.lstm import _sigmoid, check_sequence_args
from distnet.tensor import Tensor


class GRUSequence(Op):
    __slots__ = ("x", "kernel", "recurrent", "saved", "has_bias")

    def __init__(self, has_bias: bool):
        self.has_bias = has_bias

    def forward(self, x, kernel, recurrent, bias=None):
        b, steps, _ = x.shape
        u = recurrent.shape[0]
        self.x, self.kernel, self.recurrent = x, kernel, recurrent
        xs = (x.reshape(b * steps, -1) @ kernel).reshape(b, steps, 3 * u)
        if bias is not None:
            xs += bias[0]
        h = np.zeros((b, u), x.dtype)
        out = np.empty((b, steps, u), x.dtype)
        self.saved = []
        for t in range(steps):
            hs = h @ recurrent
            if bias is not None:
                hs += bias[1]
            z = _sigmoid(xs[:, t, :u] + hs[:, :u])
            r = _sigmoid(xs[:, t, u:2 * u] + hs[:, u:2 * u])
            n = np.tanh(xs[:, t, 2 * u:] + r * hs[:, 2 * u:])
            self.saved.append((z, r, n, hs[:, 2 * u:], h))
            h = z * h + (1 - z) * n
            out[:, t] = h
        return out

    def backward(self, grad, needs):
        x, kernel, recurrent = self.x, self.kernel, self.recurrent
        b, steps, _ = x.shape
        u = recurrent.shape[0]
        dxs_all = np.empty((b, steps, 3 * u), grad.dtype)
        drec = np.zeros_like(recurrent)
        dbias_h = np.zeros(3 * u, grad.dtype)
        dhs = np.empty((b, 3 * u), grad.dtype)
        dh_next = np.zeros((b, u), grad.dtype)
        for t in reversed(range(steps)):
            z, r, n, hh, h_prev = self.saved[t]
            dh = grad[:, t] + dh_next
            dxs = dxs_all[:, t]
            dxs[:, :u] = dh * (h_prev - n) * z * (1 - z)
            dn = dh * (1 - z) * (1 - n * n)
            dxs[:, 2 * u:] = dn
            dxs[:, u:2 * u] = dn * hh * r * (1 - r)
            dhs[:, :2 * u] = dxs[:, :2 * u]
            dhs[:, 2 * u:] = dn * r
            drec += h_prev.T @ dhs
            dbias_h += dhs.sum(axis=0)
            dh_next = dh * z + dhs @ recurrent.T
        dxs2 = dxs_all.reshape(b * steps, 3 * u)
        dx = (dxs2 @ kernel.T).reshape(x.shape) if needs[0] else None
        dk = x.reshape(b * steps, -1).T @ dxs2 if needs[1] else None
        out = [dx, dk, drec if needs[2] else None]
        if self.has_bias:
            out.append(np.stack([dxs2.sum(axis=0), dbias_h]) if needs[3] else None)
        return tuple(out)


def gru(x: Any, kernel: Any, recurrent_kernel: Any, bias: Any = None) -> Tensor:
    """Every step's state of a Keras GRU (sigmoid gates, tanh, ``reset_after``) over ``x``.

    Args:
      x: ``[batch, time, features]`` floating tensor.
      kernel: ``[features, 3 * units]``, gates ``z, r, h``.
      recurrent_kernel: ``[units, 3 * units]``.
      bias: ``[2, 3 * units]`` (input bias, recurrent bias) or None.

    Returns:
      ``[batch, time, units]``.

    Example:
      >>> distnet.nn.gru(np.zeros((2, 3, 4), np.float32), np.zeros((4, 6), np.float32),
      ...                np.zeros((2, 6), np.float32)).shape
      (2, 3, 2)
    """
    tensors, u = check_sequence_args("gru", 3, x, kernel, recurrent_kernel, bias, min_time=1)
    if bias is not None and tensors[3].shape != (2, 3 * u):
        raise ShapeError(f"gru: bias: Expect: (2, {3 * u}) (input and recurrent bias) Actual: {tensors[3].shape}")
    return GRUSequence.apply(*tensors, has_bias=bias is not None)
