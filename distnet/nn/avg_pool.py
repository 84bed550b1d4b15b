"""Average pooling over 2-D windows, NHWC (TF's ``tf.nn.avg_pool``).

As max pooling, vectorised over the ``kh*kw`` window offsets: each offset is
one strided slice of the zero-padded input covering every output pixel.
With ``'SAME'`` padding a window is averaged over its real pixels only (TF's
CPU kernel divides by the number of input pixels the window covers, never by
``kh*kw`` at the border); the backward spreads each output's gradient over
the same pixels with the same divisor.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.autodiff import Op
from distnet.nn._spatial import Axis, pad_hw, pool_geometry, window_slice
from distnet.tensor import Tensor


def _counts(rows: Axis, h: int, kh: int, sh: int) -> np.ndarray:
    """How many real (unpadded) pixels each output row's window covers along one axis."""
    start = sh * np.arange(rows.out) - rows.before
    return (np.minimum(start + kh, h) - np.maximum(start, 0)).astype(np.int64)


class AvgPool(Op):
    """``avg_pool`` on arrays; geometry is resolved by :func:`avg_pool`."""

    __slots__ = ("ksize", "strides", "rows", "cols_axis", "x_shape", "inv_count")

    def __init__(self, ksize: tuple[int, int], strides: tuple[int, int], rows: Axis, cols_axis: Axis):
        self.ksize, self.strides = ksize, strides
        self.rows, self.cols_axis = rows, cols_axis

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x_shape = x.shape
        n, h, w, c = x.shape
        (kh, kw), (sh, sw) = self.ksize, self.strides
        rows, cols = self.rows, self.cols_axis
        count = np.outer(_counts(rows, h, kh, sh), _counts(cols, w, kw, sw))
        self.inv_count = (1.0 / count).astype(x.dtype)[None, :, :, None]
        xp = pad_hw(x, rows, cols)
        out = np.zeros((n, rows.out, cols.out, c), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                out += xp[:, window_slice(i, 1, sh, rows.out), window_slice(j, 1, sw, cols.out), :]
        out *= self.inv_count
        return out

    def backward(self, g: np.ndarray, needs) -> tuple:
        n, h, w, c = self.x_shape
        (kh, kw), (sh, sw) = self.ksize, self.strides
        rows, cols = self.rows, self.cols_axis
        share = g * self.inv_count
        dxp = np.zeros((n, h + rows.before + rows.after, w + cols.before + cols.after, c), dtype=g.dtype)
        for i in range(kh):
            for j in range(kw):
                dxp[:, window_slice(i, 1, sh, rows.out), window_slice(j, 1, sw, cols.out), :] += share
        return (dxp[:, rows.before:rows.before + h, cols.before:cols.before + w, :],)


def avg_pool(value: Any, ksize: Any, strides: Any, padding: str, data_format: str = "NHWC",
             name: str | None = None) -> Tensor:
    """Mean over sliding 2-D windows (TF's ``tf.nn.avg_pool``).

    Args:
      value: ``[batch, height, width, channels]`` floating tensor (NHWC).
      ksize: window size: an int, a pair ``(kh, kw)`` or ``[1, kh, kw, 1]``.
      strides: an int, a pair ``(sh, sw)`` or ``[1, sh, sw, 1]``.
      padding: ``'SAME'`` (output ``ceil(in / s)``; a border window is the
        mean of its real pixels) or ``'VALID'``.
      data_format: only ``'NHWC'``.
      name: ignored (TF compatibility).

    Example:
      >>> x = distnet.constant(np.arange(9.0).reshape(1, 3, 3, 1))
      >>> distnet.nn.avg_pool(x, 2, 2, "SAME").numpy()[0, :, :, 0]
      array([[2. , 3.5],
             [6.5, 8. ]])
    """
    x, ksize, strides, rows, cols = pool_geometry(value, ksize, strides, padding, data_format, "avg_pool")
    return AvgPool.apply(x, ksize=ksize, strides=strides, rows=rows, cols_axis=cols)
