"""Matrix multiplication: ``matmul`` for 2-D and batched tensors.

TF1 conventions: both operands have rank >= 2; the last two axes are the
matrices and the leading (batch) axes broadcast as numpy broadcasts them;
``transpose_a`` / ``transpose_b`` transpose the matrices before multiplying.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.autodiff import Op, unbroadcast
from distnet.errors import ShapeError
from distnet.tensor import Tensor, binary_operands


def _mT(a: np.ndarray) -> np.ndarray:
    """The matrices of ``a`` transposed (a view)."""
    return a.T if a.ndim == 2 else np.swapaxes(a, -1, -2)


class MatMul(Op):
    __slots__ = ("a", "b", "ta", "tb")

    def __init__(self, transpose_a: bool = False, transpose_b: bool = False):
        self.ta, self.tb = transpose_a, transpose_b

    def forward(self, a, b):
        self.a, self.b = a, b
        return np.matmul(_mT(a) if self.ta else a, _mT(b) if self.tb else b)

    def backward(self, g, needs):
        a, b, ta, tb = self.a, self.b, self.ta, self.tb
        ga = gb = None
        # With C = op(A) @ op(B): dA = g @ op(B)^T (transposed back if ta),
        # dB = op(A)^T @ g (transposed back if tb).
        if needs[0]:
            if ta:
                ga = np.matmul(_mT(b) if tb else b, _mT(g))
            else:
                ga = np.matmul(g, b if tb else _mT(b))
            ga = unbroadcast(ga, a.shape)
        if needs[1]:
            if tb:
                gb = np.matmul(_mT(g), _mT(a) if ta else a)
            else:
                gb = np.matmul(a if ta else _mT(a), g)
            gb = unbroadcast(gb, b.shape)
        return ga, gb

    def backward_out(self, g, needs, outs):
        """As :meth:`backward`, producing a gradient straight into ``outs[i]``
        where one is given and no broadcasting is undone (``np.matmul(out=)``:
        the same BLAS call, so the same bits, without a temporary)."""
        a, b, ta, tb = self.a, self.b, self.ta, self.tb
        ga = gb = None
        if needs[0]:
            lhs, rhs = ((_mT(b) if tb else b), _mT(g)) if ta else (g, (b if tb else _mT(b)))
            ga = self._product(lhs, rhs, a.shape, outs[0])
        if needs[1]:
            lhs, rhs = (_mT(g), (_mT(a) if ta else a)) if tb else ((a if ta else _mT(a)), g)
            gb = self._product(lhs, rhs, b.shape, outs[1])
        return ga, gb

    @staticmethod
    def _product(lhs, rhs, shape, out):
        if out is not None and lhs.ndim == rhs.ndim == 2 and (lhs.shape[0], rhs.shape[1]) == shape \
                and out.dtype == np.result_type(lhs, rhs):
            return np.matmul(lhs, rhs, out=out)
        return unbroadcast(np.matmul(lhs, rhs), shape)


def matmul(a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False) -> Tensor:
    """Matrix product ``op(a) @ op(b)``, 2-D or batched (TF's ``tf.matmul``).

    Args:
      a: tensor of shape ``[..., M, K]`` (``[..., K, M]`` with ``transpose_a``).
      b: tensor of shape ``[..., K, N]`` (``[..., N, K]`` with ``transpose_b``).
      transpose_a, transpose_b: transpose the last two axes first.

    Returns:
      A tensor of shape ``[..., M, N]``; batch axes broadcast as in numpy.

    Raises:
      ShapeError: a rank below 2, inner dimensions that differ, or batch
        dimensions that do not broadcast; the message names both shapes.

    Example:
      >>> distnet.matmul(distnet.constant([[1.0, 2.0]]), distnet.constant([[3.0], [4.0]])).numpy()
      array([[11.]], dtype=float32)
    """
    a, b = binary_operands(a, b, "matmul")
    sa, sb = a.data.shape, b.data.shape
    if len(sa) < 2 or len(sb) < 2:
        raise ShapeError(
            f"matmul: Expect: both operands of rank >= 2 Actual: shapes {sa} and {sb}; "
            "use reshape or expand_dims to make a vector a matrix"
        )
    k_a = sa[-2] if transpose_a else sa[-1]
    k_b = sb[-1] if transpose_b else sb[-2]
    if k_a != k_b:
        raise ShapeError(
            f"matmul: incompatible shapes {sa} and {sb} "
            f"(transpose_a={bool(transpose_a)}, transpose_b={bool(transpose_b)}); "
            f"Expect: equal inner dimensions Actual: {k_a} and {k_b}"
        )
    if len(sa) > 2 or len(sb) > 2:
        try:
            np.broadcast_shapes(sa[:-2], sb[:-2])
        except ValueError:
            raise ShapeError(
                f"matmul: incompatible shapes {sa} and {sb}; "
                f"Expect: batch dimensions that broadcast Actual: {sa[:-2]} and {sb[:-2]}"
            ) from None
    return MatMul.apply(a, b, transpose_a=bool(transpose_a), transpose_b=bool(transpose_b))
