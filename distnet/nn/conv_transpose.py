"""Transposed 2-D convolution, NHWC (TF's ``tf.nn.conv2d_transpose``).

``conv2d_transpose(value, filters, output_shape, strides, padding)`` is the
gradient of ``conv2d(y, filters, strides, padding)`` with respect to its
input ``y`` of shape ``output_shape``, applied to ``value``: so its forward
is conv2d's input-gradient computation, its gradient with respect to
``value`` is a plain conv2d of the upstream gradient, and its filter
gradient is conv2d's filter gradient with the roles of input and upstream
gradient exchanged.  All three are :class:`~distnet.nn.conv.Conv2D`'s own
code, so the geometry (TF's padding split) is the same by construction.

Filters are ``[kh, kw, out_channels, in_channels]`` (TF's layout for this op).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.autodiff import Op
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.nn._spatial import Axis, axis_geometry, check_padding, spatial_pair
from distnet.nn.conv import Conv2D
from distnet.tensor import Tensor, binary_operands


class Conv2DTranspose(Op):
    """``conv2d_transpose`` on arrays; geometry is resolved by :func:`conv2d_transpose`."""

    __slots__ = ("strides", "rows", "cols_axis", "out_shape", "value", "w")

    def __init__(self, strides: tuple[int, int], rows: Axis, cols_axis: Axis, out_shape: tuple):
        self.strides, self.rows, self.cols_axis, self.out_shape = strides, rows, cols_axis, out_shape

    def _conv(self) -> Conv2D:
        return Conv2D(self.strides, (1, 1), self.rows, self.cols_axis)

    def forward(self, value: np.ndarray, w: np.ndarray) -> np.ndarray:
        self.value, self.w = value, w
        conv = self._conv()
        conv.x_shape, conv.w_shape = self.out_shape, w.shape
        kh, kw, c_out, c_in = w.shape
        conv.w2d = np.ascontiguousarray(w).reshape(kh * kw * c_out, c_in)
        return conv._input_grad(np.ascontiguousarray(value).reshape(-1, c_in))

    def backward(self, g: np.ndarray, needs) -> tuple:
        conv = self._conv()
        # conv2d(g, w) is the value gradient; with the same columns, conv2d's filter gradient
        # for the upstream `value` is this op's filter gradient.
        dvalue = conv.forward(np.ascontiguousarray(g), self.w)
        dw = conv.backward(self.value, (False, True))[1] if needs[1] else None
        return (dvalue if needs[0] else None), dw


def conv2d_transpose(value: Any, filters: Any, output_shape: Any, strides: Any, padding: str = "SAME",
                     data_format: str = "NHWC", dilations: Any = None, name: str | None = None) -> Tensor:
    """The transpose (gradient) of :func:`~distnet.nn.conv2d` (TF's ``tf.nn.conv2d_transpose``).

    Args:
      value: ``[batch, height, width, in_channels]`` floating tensor.
      filters: ``[kh, kw, out_channels, in_channels]``, same dtype.
      output_shape: ``[batch, out_height, out_width, out_channels]``: the
        shape whose conv2d with these strides and padding has ``value``'s shape.
      strides: an int, a pair or ``[1, sh, sw, 1]``.
      padding: ``'SAME'`` or ``'VALID'``.
      data_format: only ``'NHWC'``; dilations: only 1.

    Example:
      >>> x = distnet.constant(np.ones((1, 2, 2, 1), np.float32))
      >>> w = distnet.constant(np.ones((2, 2, 1, 1), np.float32))
      >>> distnet.nn.conv2d_transpose(x, w, [1, 4, 4, 1], 2, "SAME").shape
      (1, 4, 4, 1)
    """
    op_name = "conv2d_transpose"
    x, w = binary_operands(value, filters, op_name)
    if x.dtype.kind != "f":
        raise DTypeError(f"{op_name}: Expect: a floating dtype (float32 or float64) Actual: {x.dtype.name}")
    if x.ndim != 4 or w.ndim != 4:
        raise ShapeError(f"{op_name}: value [batch, height, width, channels] and filters [kh, kw, out, in] must "
                         f"have rank 4. Expect: rank 4 and 4 Actual: {x.shape} and {w.shape}")
    if data_format != "NHWC":
        raise InvalidArgumentError(f"{op_name}: only data_format 'NHWC' is supported. Actual: {data_format!r}")
    if dilations is not None and spatial_pair(dilations, "dilations", op_name) != (1, 1):
        raise InvalidArgumentError(f"{op_name}: only dilations 1 are supported. Actual: {dilations!r}")
    try:
        out = tuple(int(v) for v in np.asarray(output_shape).reshape(-1))
    except (TypeError, ValueError):
        out = ()
    if len(out) != 4 or min(out) < 1:
        raise ShapeError(f"{op_name}: output_shape: Expect: 4 positive ints [batch, height, width, channels] "
                         f"Actual: {output_shape!r}")
    if x.shape[3] != w.shape[3]:
        raise ShapeError(f"{op_name}: value has {x.shape[3]} channels but filters {w.shape} ([kh, kw, out, in]) "
                         f"expect {w.shape[3]}. Expect: value channels == {w.shape[3]} Actual: {x.shape[3]}")
    if out[3] != w.shape[2] or out[0] != x.shape[0]:
        raise ShapeError(f"{op_name}: output_shape {list(out)} must have value's batch ({x.shape[0]}) and the "
                         f"filters' out channels ({w.shape[2]}). Expect: [{x.shape[0]}, h, w, {w.shape[2]}] "
                         f"Actual: {list(out)}")
    padding = check_padding(padding, op_name)
    sh, sw = spatial_pair(strides, "strides", op_name)
    rows = axis_geometry(out[1], w.shape[0], sh, 1, padding, "height", op_name)
    cols = axis_geometry(out[2], w.shape[1], sw, 1, padding, "width", op_name)
    if (rows.out, cols.out) != x.shape[1:3]:
        raise ShapeError(f"{op_name}: a conv2d of output_shape {list(out)} with strides ({sh}, {sw}) and padding "
                         f"{padding} gives {rows.out}x{cols.out}, not value's {x.shape[1]}x{x.shape[2]}. Expect: "
                         f"an output_shape whose conv2d has value's size Actual: {list(out)}")
    return Conv2DTranspose.apply(x, w, strides=(sh, sw), rows=rows, cols_axis=cols, out_shape=out)
