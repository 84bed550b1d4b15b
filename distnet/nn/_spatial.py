"""Shared arithmetic of 2-D sliding windows (conv2d, max_pool), NHWC.

* Window sizes, strides and dilations are given as an int, a pair
  ``(h, w)`` or TF's 4-list ``[1, h, w, 1]`` (batch and channel entries must
  be 1, as TensorFlow requires).
* Padding follows TensorFlow exactly, with ``k_eff = (k - 1) * d + 1``:

  - ``'VALID'``: ``out = ceil((in - k_eff + 1) / s)``, no padding;
  - ``'SAME'``: ``out = ceil(in / s)``,
    ``pad_total = max((out - 1) * s + k_eff - in, 0)``,
    ``pad_before = pad_total // 2`` and the odd one after.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from distnet.errors import DTypeError, InvalidArgumentError, ShapeError


def spatial_pair(value: Any, what: str, op_name: str) -> tuple[int, int]:
    """``value`` (int, pair or 4-list ``[1, h, w, 1]``) as two positive ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        items = [value]
    else:
        try:
            items = list(np.asarray(value).reshape(-1)) if not isinstance(value, (str, bytes)) else None
        except (TypeError, ValueError):
            items = None
        if items is None or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                    for v in items):
            raise InvalidArgumentError(
                f"{op_name}: {what}: Expect: an int, a pair of ints or a list [1, h, w, 1] of ints "
                f"Actual: {value!r}"
            )
    if len(items) == 1:
        h = w = int(items[0])
    elif len(items) == 2:
        h, w = int(items[0]), int(items[1])
    elif len(items) == 4:
        if int(items[0]) != 1 or int(items[3]) != 1:
            # TF: "Current implementation does not yet support strides in the batch and depth dimensions."
            raise InvalidArgumentError(
                f"{op_name}: {what}: 1 in the batch and channel dimensions: "
                f"Expect: [1, h, w, 1] Actual: {[int(v) for v in items]}"
            )
        h, w = int(items[1]), int(items[2])
    else:
        raise InvalidArgumentError(
            f"{op_name}: {what} must have 1, 2 or 4 entries (int, (h, w) or [1, h, w, 1]); "
            f"got {len(items)} entries: {value!r}"
        )
    if h < 1 or w < 1:
        raise InvalidArgumentError(f"{op_name}: {what}: Expect: positive Actual: ({h}, {w}) from {value!r}")
    return h, w


def check_padding(padding: Any, op_name: str) -> str:
    """``'SAME'`` or ``'VALID'`` (TF's spelling, upper case) or an error."""
    if padding not in ("SAME", "VALID"):
        raise InvalidArgumentError(
            f"{op_name}: padding: Expect: 'SAME' | 'VALID' Actual: {padding!r}"
        )
    return padding


class Axis(NamedTuple):
    """Geometry of one spatial axis: output size and padding before/after."""

    out: int
    before: int
    after: int


def axis_geometry(size: int, k: int, s: int, d: int, padding: str, what: str, op_name: str) -> Axis:
    """Output size and TF padding of one spatial axis (see the module doc)."""
    k_eff = (k - 1) * d + 1
    if padding == "VALID":
        out = -(-(size - k_eff + 1) // s)
        if out < 1:
            raise ShapeError(
                f"{op_name}: with padding 'VALID' the {what} window ({k_eff}) is larger than the input "
                f"{what} ({size}). Expect: input {what} >= {k_eff} Actual: {size}; use padding 'SAME' "
                "or a smaller window"
            )
        return Axis(out, 0, 0)
    out = -(-size // s)
    total = max((out - 1) * s + k_eff - size, 0)
    return Axis(out, total // 2, total - total // 2)


def pad_hw(x: np.ndarray, rows: Axis, cols: Axis, fill: float = 0.0) -> np.ndarray:
    """``x`` (NHWC) padded in H and W; ``x`` itself when no padding is needed."""
    if not (rows.before or rows.after or cols.before or cols.after):
        return x
    n, h, w, c = x.shape
    out = np.empty((n, h + rows.before + rows.after, w + cols.before + cols.after, c), dtype=x.dtype)
    if fill == 0.0:
        out.fill(0)
    else:
        out.fill(fill)
    out[:, rows.before:rows.before + h, cols.before:cols.before + w, :] = x
    return out


def window_slice(i: int, d: int, s: int, out: int) -> slice:
    """Rows (or columns) that kernel offset ``i`` touches, one per output position."""
    start = i * d
    return slice(start, start + (out - 1) * s + 1, s)


def pool_geometry(value: Any, ksize: Any, strides: Any, padding: Any, data_format: str, op_name: str) -> tuple:
    """The checked input of a 2-D pooling op and its geometry:
    ``(x, (kh, kw), (sh, sw), rows, cols)`` (an NHWC floating tensor, windows, strides, axes)."""
    from distnet.tensor import as_tensor

    x = as_tensor(value)
    if x.dtype.kind != "f":
        raise DTypeError(f"{op_name}: Expect: a floating dtype (float32 or float64) Actual: {x.dtype.name}")
    if x.ndim != 4:
        raise ShapeError(f"{op_name}: value must have rank 4 [batch, height, width, channels] (NHWC). "
                         f"Expect: rank 4 Actual: rank {x.ndim}, shape {x.shape}")
    if x.size == 0:
        raise ShapeError(f"{op_name}: empty input of shape {x.shape}")
    if data_format != "NHWC":
        raise InvalidArgumentError(f"{op_name}: only data_format 'NHWC' is supported. Actual: {data_format!r}")
    padding = check_padding(padding, op_name)
    kh, kw = spatial_pair(ksize, "ksize", op_name)
    sh, sw = spatial_pair(strides, "strides", op_name)
    rows = axis_geometry(x.shape[1], kh, sh, 1, padding, "height", op_name)
    cols = axis_geometry(x.shape[2], kw, sw, 1, padding, "width", op_name)
    return x, (kh, kw), (sh, sw), rows, cols
