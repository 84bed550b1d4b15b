"""``relu(bias_add(value, bias))`` as one op, for layers with a bias and a relu.

The same arithmetic as the two ops one after the other — ``max(value + bias,
0)``, the gradient ``g * (value + bias > 0)`` to ``value`` and its column
sums (:class:`~distnet.nn.bias_add.BiasAdd`'s backward) to ``bias`` — so the
results are bitwise those of ``relu(bias_add(...))``.  The forward pass is one
compiled pass (:mod:`distnet.jit`, on the rank's threads), or without numba runs
over cache-sized chunks of rows: each chunk's sum and maximum are computed
while it is in cache, and the sum is never a whole array of its own (two passes
over memory instead of four, one activation-sized array less).  The mask is
made only by backward, from the output (in the same pass as the product where
compiled).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet import jit
from distnet.autodiff import Op
from distnet.nn._rows import over_rows
from distnet.nn.bias_add import BiasAdd, bias_add
from distnet.nn.activations import relu, times_positive
from distnet.tensor import Tensor, binary_operands

#: Elements per chunk of the forward pass (a few hundred kB: stays in a core's cache).
CHUNK_ELEMENTS = 1 << 16


class BiasAddRelu(Op):
    __slots__ = ("out",)

    def forward(self, value: np.ndarray, bias: np.ndarray) -> np.ndarray:
        c = value.shape[-1]
        v2 = np.ascontiguousarray(value).reshape(-1, c)
        dtype = np.result_type(value, bias)
        y = np.empty(v2.shape, dtype=dtype)
        if _bias_add_relu is not None and jit.worth(y.size, _bias_add_relu) and jit.compiles(value, bias):
            # One compiled pass, over runs of rows on the rank's threads: the same operations.
            b, zero = np.ascontiguousarray(bias), dtype.type(0)
            over_rows(v2.shape[0], 2 * y.nbytes, lambda lo, hi: _bias_add_relu(v2[lo:hi], b, zero, y[lo:hi]))
            self.out = y.reshape(value.shape)
            return self.out
        rows = max(1, CHUNK_ELEMENTS // max(c, 1))
        for lo in range(0, v2.shape[0], rows):
            yc = y[lo:lo + rows]
            np.add(v2[lo:lo + rows], bias, out=yc)
            np.maximum(yc, 0, out=yc)
        # The relu's mask is ``y > 0``, taken in backward from the output (which the graph holds
        # anyway): a forward pass that is never differentiated, an evaluation's, makes no mask.
        self.out = y.reshape(value.shape)
        return self.out

    def backward(self, g: np.ndarray, needs) -> tuple:
        # TF: the relu's gradient at exactly 0 is 0; then bias_add's backward, unchanged.
        gx = times_positive(g, self.out)
        op = BiasAdd(gx.ndim - 1)
        op.ndim = gx.ndim
        return op.backward(gx, needs)


@jit.kernel
def _bias_add_relu(v, b, zero, y):
    """The forward's ``np.add`` then ``np.maximum(·, 0)`` per element, rows of ``v`` (2-D)."""
    for i in range(v.shape[0]):
        for ch in range(v.shape[1]):
            s = v[i, ch] + b[ch]
            y[i, ch] = s if (s > zero or s != s) else zero


def bias_add_relu(value: Any, bias: Any) -> Tensor:
    """``relu(bias_add(value, bias))`` (channels last), bitwise, in one op (module doc).

    Example:
      >>> distnet.nn.bias_add_relu(np.array([[-1.0, 1.0]], np.float32), [0.5, 0.5]).numpy()
      array([[0. , 1.5]], dtype=float32)
    """
    v, b = binary_operands(value, bias, "bias_add")
    if v.dtype.kind != "f" or v.ndim < 2 or b.ndim != 1 or b.shape[0] != v.shape[-1]:
        return relu(bias_add(v, b))   # the two ops give the errors (and integer arithmetic) their way
    return BiasAddRelu.apply(v, b)
