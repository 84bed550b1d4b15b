"""2-D convolution of 3x3 kernels by Winograd's minimal filtering F(2x2, 3x3)
(``conv2d(..., algorithm="winograd")``; Lavin and Gray 2016).

Stride 1, no dilation, NHWC input and HWIO filters, as :mod:`distnet.nn.conv`.
The output is cut into 2x2 tiles; tile ``(t, u)`` reads the 4x4 input tile
``d`` at padded position ``(2t, 2u)``, and

    y_tile = At (U * V) A,    V = Bt d B,    U = G g Gt

elementwise over the 16 points of the transformed tile, summed over the
input channels: at each of the 16 points one ``[N*T, C] @ [C, O]`` GEMM
(``T`` tiles per image) — 16 multiplications per 4 outputs instead of 36,
2.25x less arithmetic than im2col + GEMM.  The matrices (cross-correlation,
as TensorFlow's)::

    Bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G  = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    At = [[1, 1, 1, 0], [0, 1, -1, -1]]

``Bt`` and ``At`` hold only 0 and +-1: the data transforms are additions of
strided views of the padded input (no tile is gathered), first along the
height, then along the width.  The kernel's transform ``G g Gt`` is one small
GEMM.  The backward pass is the adjoint of the chain (the same sums with the
matrices transposed, scatter-added where tiles overlap); the filter gradient
is ``V^T @ dM`` per point mapped back through ``G``.

Accuracy: F(2x2, 3x3)'s coefficients are 0, +-1/2 and +-1, so the rounding
stays that of a few additions — float32 results are within a few units in
the last place of the output's scale of the direct sum (the tests bound it by
``1e-5``, tests/test_nn_conv_algorithms.py).
"""
from __future__ import annotations

import numpy as np

from distnet.autodiff import Op
from distnet.nn._spatial import Axis

_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)
for _m in (_BT, _G, _AT):
    _m.setflags(write=False)   # constants
del _m


def _combine(coef: np.ndarray, srcs, outs, accumulate: bool = False) -> None:
    """``outs[r] (+)= sum_a coef[r, a] * srcs[a]`` for coefficients in {-1, 0, 1}."""
    for r, out in enumerate(outs):
        first = not accumulate
        for a, src in enumerate(srcs):
            c = coef[r, a]
            if c == 0:
                continue
            if first:
                if c > 0:
                    np.copyto(out, src)
                else:
                    np.negative(src, out=out)
                first = False
            elif c > 0:
                np.add(out, src, out=out)
            else:
                np.subtract(out, src, out=out)


class Conv2DWinograd(Op):
    """``conv2d`` of a 3x3 kernel by F(2x2, 3x3); geometry resolved by :func:`distnet.nn.conv2d`."""

    __slots__ = ("rows", "cols_axis", "x_shape", "v", "u", "tiles")

    def __init__(self, rows: Axis, cols_axis: Axis):
        self.rows, self.cols_axis = rows, cols_axis

    def forward(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        dtype = np.result_type(x, w)
        n, h, wd, c = self.x_shape = x.shape
        o = w.shape[3]
        rows, cols = self.rows, self.cols_axis
        th, tw = -(-rows.out // 2), -(-cols.out // 2)
        self.tiles = (th, tw)
        # The padded input, grown to whole tiles (2 t + 2 rows); the extra outputs are cut off below.
        xq = np.zeros((n, 2 * th + 2, 2 * tw + 2, c), dtype=dtype)
        xq[:, rows.before:rows.before + h, cols.before:cols.before + wd] = x
        # V = Bt d B: along the height into 4 row sums, then along the width into the 16 points.
        hsum = np.empty((4, n, th, 2 * tw + 2, c), dtype=dtype)
        _combine(_BT, [xq[:, i:i + 2 * th:2] for i in range(4)], hsum)
        v = self.v = np.empty((4, 4, n, th, tw, c), dtype=dtype)
        for a in range(4):
            _combine(_BT, [hsum[a][:, :, j:j + 2 * tw:2] for j in range(4)], v[a])
        # U = G g Gt for every (in, out) channel pair: [16, C, O].
        gg = np.kron(_G, _G).astype(dtype)
        self.u = (gg @ w.astype(dtype, copy=False).reshape(9, c * o)).reshape(16, c, o)
        m = np.matmul(v.reshape(16, n * th * tw, c), self.u).reshape(4, 4, n, th, tw, o)
        # y = At M A: along the first point axis, then the second, into the 2x2 tiles.
        part = np.empty((2, 4, n, th, tw, o), dtype=dtype)
        _combine(_AT, list(m), part)
        y = np.empty((n, th, 2, tw, 2, o), dtype=dtype)
        for r in range(2):
            _combine(_AT, list(part[r]), [y[:, :, r, :, s] for s in range(2)])
        y = y.reshape(n, 2 * th, 2 * tw, o)
        if (2 * th, 2 * tw) != (rows.out, cols.out):
            y = np.ascontiguousarray(y[:, :rows.out, :cols.out])
        return y

    def backward(self, g: np.ndarray, needs) -> tuple:
        n, h, wd, c = self.x_shape
        th, tw = self.tiles
        rows, cols = self.rows, self.cols_axis
        dtype = self.v.dtype
        o = self.u.shape[2]
        # Adjoint of the output transform: dM = A-transposed sums of the tiles' gradients.
        gq = np.zeros((n, th, 2, tw, 2, o), dtype=dtype)
        gq.reshape(n, 2 * th, 2 * tw, o)[:, :rows.out, :cols.out] = g
        dpart = np.empty((2, 4, n, th, tw, o), dtype=dtype)
        for r in range(2):
            _combine(_AT.T, [gq[:, :, r, :, s] for s in range(2)], dpart[r])
        dm = np.empty((4, 4, n, th, tw, o), dtype=dtype)
        _combine(_AT.T, list(dpart), list(dm))
        dm = dm.reshape(16, n * th * tw, o)
        dw = dx = None
        if needs[1]:
            du = np.matmul(self.v.reshape(16, n * th * tw, c).transpose(0, 2, 1), dm)   # [16, C, O]
            dw = (np.kron(_G, _G).astype(dtype).T @ du.reshape(16, c * o)).reshape(3, 3, c, o)
        if needs[0]:
            dv = np.matmul(dm, self.u.transpose(0, 2, 1)).reshape(4, 4, n, th, tw, c)
            # Adjoint of V = Bt d B: along the width (scatter-added: neighbouring tiles overlap),
            # then along the height.
            dh = np.zeros((4, n, th, 2 * tw + 2, c), dtype=dtype)
            for a in range(4):
                _combine(_BT.T, list(dv[a]), [dh[a][:, :, j:j + 2 * tw:2] for j in range(4)], accumulate=True)
            dxq = np.zeros((n, 2 * th + 2, 2 * tw + 2, c), dtype=dtype)
            _combine(_BT.T, list(dh), [dxq[:, i:i + 2 * th:2] for i in range(4)], accumulate=True)
            dx = np.ascontiguousarray(dxq[:, rows.before:rows.before + h, cols.before:cols.before + wd])
        return dx, dw
