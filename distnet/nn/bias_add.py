"""``bias_add``: add a 1-D bias along the channel axis (TF's ``tf.nn.bias_add``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.autodiff import Op
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.tensor import Tensor, binary_operands


#: From this many rows on, the bias gradient of a channels-last tensor is a gemv (see backward).
_GEMV_ROWS = 256
_BLAS_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class BiasAdd(Op):
    __slots__ = ("channel_axis", "ndim")

    def __init__(self, channel_axis: int):
        self.channel_axis = channel_axis

    def forward(self, value, bias):
        self.ndim = value.ndim
        if self.channel_axis == value.ndim - 1:
            return value + bias
        return value + bias.reshape((-1,) + (1,) * (value.ndim - 2))

    def backward(self, g, needs):
        db = None
        if needs[1]:
            if self.channel_axis == self.ndim - 1 and g.flags.c_contiguous:
                g2d = g.reshape(-1, g.shape[-1])
                if g2d.dtype in _BLAS_DTYPES and g2d.shape[0] >= _GEMV_ROWS:
                    # A matrix-vector product with ones (BLAS gemv) instead of sum(axis=0),
                    # which numpy reduces one row at a time on these tall, narrow arrays
                    # (figures: benchmarks/README.md).  Same sum, another order: equal within
                    # float rounding, not bitwise.
                    db = np.ones(g2d.shape[0], dtype=g2d.dtype) @ g2d
                else:
                    db = np.add.reduce(g2d, axis=0)   # sum(axis=0) without its Python layer
            else:
                db = g.sum(axis=tuple(i for i in range(self.ndim) if i != self.channel_axis))
        return (g if needs[0] else None), db


def bias_add(value: Any, bias: Any, data_format: str | None = None, name: str | None = None) -> Tensor:
    """``value + bias`` with ``bias`` 1-D along the channel axis.

    Args:
      value: a tensor of rank >= 2 (TF requires at least 2-D).
      bias: 1-D, its length the size of the channel axis; a non-Tensor takes
        ``value``'s dtype.
      data_format: ``None`` or ``'NHWC'`` (channels last, the default) or
        ``'NCHW'`` (channels on axis 1), as TF.
      name: ignored.

    Returns:
      A tensor of ``value``'s shape and dtype.

    Example:
      >>> distnet.nn.bias_add(np.zeros((2, 3), np.float32), [1.0, 2.0, 3.0]).numpy()
      array([[1., 2., 3.],
             [1., 2., 3.]], dtype=float32)
    """
    op_name = "bias_add"
    v, b = binary_operands(value, bias, op_name)
    if v.dtype.kind not in "fiu":
        raise DTypeError(f"{op_name}: Expect: a numeric tensor Actual: {v.dtype.name}")
    if v.ndim < 2:
        raise ShapeError(f"{op_name}: value: at least 2-D: Expect: rank >= 2 Actual: shape {v.shape}")
    if b.ndim != 1:
        raise ShapeError(f"{op_name}: bias: 1-D: Expect: rank 1 Actual: shape {b.shape}")
    if data_format in (None, "NHWC", "NWC", "NDHWC", "N...C"):
        axis = v.ndim - 1
    elif data_format in ("NCHW", "NCW", "NCDHW", "NC..."):
        axis = 1
    else:
        raise InvalidArgumentError(
            f"{op_name}: data_format: Expect: None, 'NHWC' (channels last) or 'NCHW' (channels first) "
            f"Actual: {data_format!r}"
        )
    if b.shape[0] != v.shape[axis]:
        raise ShapeError(
            f"{op_name}: bias length must equal the size of value's channel axis {axis} "
            f"(value shape {v.shape}). Expect: {v.shape[axis]} Actual: {b.shape[0]}"
        )
    return BiasAdd.apply(v, b, channel_axis=axis)
