"""Max pooling over 2-D windows, NHWC (TF's ``tf.nn.max_pool``).

Vectorised by looping over the ``kh*kw`` window offsets only: each offset is
one strided slice of the padded input covering every output pixel at once.

Ties and padding follow TF1's CPU kernel (``SpatialMaxPoolWithArgMaxHelper``,
which scans a window's pixels in row-major order and replaces the running
maximum only when ``max < value``): the gradient goes to the *first* maximum
of the window in row-major order, and padding pixels ('SAME') never take
part — a window of ``-inf`` values still routes its gradient to its first
real pixel, and a NaN is ignored unless it is the window's first pixel.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.autodiff import Op
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.nn._spatial import Axis, axis_geometry, check_padding, pad_hw, spatial_pair, window_slice
from distnet.tensor import Tensor, as_tensor


def _valid(axis: Axis, size: int, offset: int, stride: int) -> np.ndarray | None:
    """Which output positions read a real (non-padding) pixel at ``offset``; None if all do."""
    pos = offset + stride * np.arange(axis.out) - axis.before
    ok = (pos >= 0) & (pos < size)
    return None if ok.all() else ok


class MaxPool(Op):
    """``max_pool`` on arrays; geometry is resolved by :func:`max_pool`."""

    __slots__ = ("ksize", "strides", "rows", "cols_axis", "x_shape", "argmax")

    def __init__(self, ksize: tuple[int, int], strides: tuple[int, int], rows: Axis, cols_axis: Axis):
        self.ksize, self.strides = ksize, strides
        self.rows, self.cols_axis = rows, cols_axis

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x_shape = x.shape
        n, h, w, c = x.shape
        (kh, kw), (sh, sw) = self.ksize, self.strides
        rows, cols = self.rows, self.cols_axis
        # TF: SAME pads with -inf; the padded pixels are also masked out below.
        xp = pad_hw(x, rows, cols, fill=-np.inf)
        out = np.full((n, rows.out, cols.out, c), -np.inf, dtype=x.dtype)
        # Index of the winning offset in the window, -1 while no real pixel was seen.
        arg = np.full(out.shape, -1, dtype=np.int16 if kh * kw < 2 ** 15 else np.int32)
        for i in range(kh):
            vi = _valid(rows, h, i, sh)
            for j in range(kw):
                vj = _valid(cols, w, j, sw)
                v = xp[:, window_slice(i, 1, sh, rows.out), window_slice(j, 1, sw, cols.out), :]
                take = v > out
                if i == 0 and j == 0 and vi is None and vj is None:
                    take[...] = True
                else:
                    first = arg < 0
                    if vi is not None or vj is not None:
                        ok = np.ones((rows.out, cols.out), dtype=bool)
                        if vi is not None:
                            ok &= vi[:, None]
                        if vj is not None:
                            ok &= vj[None, :]
                        first &= ok[None, :, :, None]
                    take |= first
                np.copyto(out, v, where=take)
                arg[take] = i * kw + j
        self.argmax = arg
        return out

    def backward(self, g: np.ndarray, needs) -> tuple:
        n, h, w, c = self.x_shape
        (kh, kw), (sh, sw) = self.ksize, self.strides
        rows, cols = self.rows, self.cols_axis
        hp, wp = h + rows.before + rows.after, w + cols.before + cols.after
        dxp = np.zeros((n, hp, wp, c), dtype=g.dtype)
        zero = np.zeros((), dtype=g.dtype)
        for i in range(kh):
            ri = window_slice(i, 1, sh, rows.out)
            for j in range(kw):
                dxp[:, ri, window_slice(j, 1, sw, cols.out), :] += np.where(self.argmax == i * kw + j, g, zero)
        if hp == h and wp == w:
            return (dxp,)
        return (dxp[:, rows.before:rows.before + h, cols.before:cols.before + w, :],)


def max_pool(value: Any, ksize: Any, strides: Any, padding: str, data_format: str = "NHWC",
             name: str | None = None) -> Tensor:
    """Maximum over sliding 2-D windows (TF's ``tf.nn.max_pool``).

    Args:
      value: ``[batch, height, width, channels]`` floating tensor (NHWC).
      ksize: window size: an int, a pair ``(kh, kw)`` or ``[1, kh, kw, 1]``.
      strides: an int, a pair ``(sh, sw)`` or ``[1, sh, sw, 1]``.
      padding: ``'SAME'`` (output ``ceil(in / s)``, padding never wins) or
        ``'VALID'`` (output ``ceil((in - k + 1) / s)``).
      data_format: only ``'NHWC'``.
      name: ignored (TF compatibility).

    Returns:
      ``[batch, out_height, out_width, channels]`` tensor of the input's dtype.
      Its gradient goes to the first maximum of each window (row-major), as TF1.

    Example:
      >>> x = distnet.constant(np.arange(16.0).reshape(1, 4, 4, 1))
      >>> distnet.nn.max_pool(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME").numpy()[0, :, :, 0]
      array([[ 5.,  7.],
             [13., 15.]])
    """
    op_name = "max_pool"
    x = as_tensor(value)
    if not np.issubdtype(x.dtype, np.floating):
        raise DTypeError(f"{op_name}: expected a floating dtype (float32 or float64), got {x.dtype.name}")
    if x.ndim != 4:
        raise ShapeError(
            f"{op_name}: value must have rank 4 [batch, height, width, channels] (NHWC). "
            f"Expect: rank 4 Actual: rank {x.ndim}, shape {x.shape}"
        )
    if x.size == 0:
        raise ShapeError(f"{op_name}: empty input of shape {x.shape}")
    if data_format != "NHWC":
        raise InvalidArgumentError(f"{op_name}: only data_format 'NHWC' is supported. Actual: {data_format!r}")
    padding = check_padding(padding, op_name)
    kh, kw = spatial_pair(ksize, "ksize", op_name)
    sh, sw = spatial_pair(strides, "strides", op_name)
    rows = axis_geometry(x.shape[1], kh, sh, 1, padding, "height", op_name)
    cols = axis_geometry(x.shape[2], kw, sw, 1, padding, "width", op_name)
    return MaxPool.apply(x, ksize=(kh, kw), strides=(sh, sw), rows=rows, cols_axis=cols)
