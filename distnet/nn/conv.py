"""2-D convolution, NHWC input and HWIO filters (TF's ``tf.nn.conv2d``).

Forward: the padded input is viewed as windows with numpy stride tricks
(``[N, Ho, Wo, kh, kw, C]``, no copy), gathered once into a contiguous
``[N*Ho*Wo, kh*kw*C]`` matrix (im2col; each window row of ``kw*C`` values
is moved as one item) and multiplied by the filters seen as ``[kh*kw*C, O]``
in one BLAS call, whose ``[N*Ho*Wo, O]`` result already is the NHWC output.
Backward: the filter gradient is one matmul ``cols.T @ g``; the input
gradient is ``g @ W.T`` scattered back (col2im) by a loop over the
``kh*kw`` kernel offsets only — one matmul for a single input channel,
otherwise one small matmul per offset fused with its scatter-add (same
FLOPs, and each block is scattered while it is still in cache).  No Python loop runs over pixels, nor over samples
except in the chunks below.

Large im2col matrices (from ``CHUNK_MIN_BYTES`` on, e.g. the 2-conv net's
14x14x32 -> 64 layer at batch 50 and up) are never built whole: forward and
backward run over chunks of samples whose column matrix is about
``CHUNK_BYTES`` (cache-sized), so each chunk's gather, matmul and scatter stay
in cache; backward gathers a chunk's columns again from the saved padded
input instead of keeping the whole matrix (less memory, too).  In that mode
the input gradient of a stride-1, undilated convolution is itself a
convolution — the upstream gradient, padded, correlated with the kernel
flipped in space and transposed in channels — so it is one more im2col +
matmul per chunk, with no scatter (benchmarks/README.md has the figures of
both choices).  The chunked sums run in another order than the whole-matrix
ones: equal within float rounding, not bitwise.

Like TensorFlow this is a cross-correlation (the kernel is not flipped).

Other algorithms compute the same convolution with less arithmetic for some
shapes (``conv2d(..., algorithm=...)``): ``"fft"`` (:mod:`distnet.nn.conv_fft`,
stride 1) and ``"winograd"`` (:mod:`distnet.nn.conv_winograd`, 3x3 kernels,
stride 1).  They differ from this one by float rounding only;
:mod:`distnet.nn.conv_choice` picks one per layer shape by measuring.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from distnet import jit
from distnet.autodiff import Op
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.nn._rows import over_rows
from distnet.nn._spatial import Axis, axis_geometry, check_padding, pad_hw, spatial_pair, window_slice
from distnet.tensor import Tensor, binary_operands


#: im2col matrices of at least this many bytes are processed in sample chunks (see module doc).
CHUNK_MIN_BYTES = 16 << 20
#: Target size in bytes of one chunk's column matrix (at least one sample per chunk).
CHUNK_BYTES = 2 << 20


def _window_rows_loop(xp, cols, run_, c, sh, sw, dh, lo, hi):
    """im2col of samples ``lo:hi`` for short window rows (width dilation 1): ``cols[n, i, j, a, :]``
    (``[N, Ho, Wo, kh, kw*C]``) is the run of ``kw*C`` values of ``xp`` (``[N, Hp, Wp*C]``) at row
    ``i*sh + a*dh``, from column ``j*sw``.  The run's length is that of the tuple ``run_``: a
    compile-time constant (numba compiles one version per length), so the copy of a run is
    unrolled instead of being a loop of a few iterations."""
    _, ho, wo, kh, _ = cols.shape
    run = len(run_)
    for n in range(lo, hi):
        for i in range(ho):
            for j in range(wo):
                start = j * sw * c
                for a in range(kh):
                    r = i * sh + a * dh
                    for t in range(run):
                        cols[n, i, j, a, t] = xp[n, r, start + t]


#: Window rows of up to this many values (``kw * C``) are copied by the kernel above; longer ones
#: by numpy's copy of whole runs, as fast from about ten values on (benchmarks/README.md).
SHORT_RUN = 8

#: The column copy compiled (distnet/jit.py), or None: the numpy copy below (the same values).
_WINDOW_ROWS = jit.kernel(_window_rows_loop)


def _im2col(xp: np.ndarray, k: tuple[int, int], out: tuple[int, int], strides: tuple[int, int],
            dilations: tuple[int, int]) -> np.ndarray:
    """Contiguous ``[N*Ho*Wo, kh*kw*C]`` windows of the C-contiguous padded input ``xp``."""
    n, _, _, c = xp.shape
    (kh, kw), (ho, wo), (sh, sw), (dh, dw) = k, out, strides, dilations
    bn, bh, bw, bc = xp.strides
    if (dw == 1 and kw * c <= SHORT_RUN and _WINDOW_ROWS is not None and jit.worth(n * ho * wo * kh * kw * c)
            and jit.compiles(xp)):
        cols = np.empty((n, ho, wo, kh, kw * c), dtype=xp.dtype)
        flat, run_ = xp.reshape(n, xp.shape[1], -1), (0,) * (kw * c)
        over_rows(n, 2 * cols.nbytes, lambda lo, hi: _WINDOW_ROWS(flat, cols, run_, c, sh, sw, dh, lo, hi))
        return cols.reshape(n * ho * wo, kh * kw * c)
    if dw == 1:
        # A window row (kw pixels x C channels) is one contiguous run of kw*C values: view each
        # run as a single opaque item, so the copy moves kw*C values per step instead of C.
        run = np.dtype((np.void, kw * c * xp.itemsize))
        rows = np.ndarray(shape=(n, ho, wo, kh), dtype=run, buffer=xp,
                          strides=(bn, bh * sh, bw * sw, bh * dh))
        cols = np.empty((n, ho, wo, kh), dtype=run)
        np.copyto(cols, rows)
        return cols.view(xp.dtype).reshape(n * ho * wo, kh * kw * c)
    windows = as_strided(xp, shape=(n, ho, wo, kh, kw, c),
                         strides=(bn, bh * sh, bw * sw, bh * dh, bw * dw, bc), writeable=False)
    return windows.reshape(n * ho * wo, kh * kw * c)


class Conv2D(Op):
    """``conv2d`` on arrays; geometry is resolved by :func:`conv2d`."""

    __slots__ = ("strides", "dilations", "rows", "cols_axis", "x_shape", "w_shape", "cols", "w2d", "xp", "chunk")

    def __init__(self, strides: tuple[int, int], dilations: tuple[int, int], rows: Axis, cols_axis: Axis):
        self.strides, self.dilations = strides, dilations
        self.rows, self.cols_axis = rows, cols_axis
        self.cols = self.xp = None
        self.chunk = 0

    def forward(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        self.x_shape, self.w_shape = x.shape, w.shape
        n, c = x.shape[0], x.shape[3]
        kh, kw, _, o = w.shape
        ho, wo = self.rows.out, self.cols_axis.out
        xp = np.ascontiguousarray(pad_hw(x, self.rows, self.cols_axis))
        self.w2d = np.ascontiguousarray(w).reshape(kh * kw * c, o)
        sample_bytes = ho * wo * kh * kw * c * xp.itemsize
        if n * sample_bytes >= CHUNK_MIN_BYTES:
            # Chunks of samples, each chunk's columns gathered and multiplied while in cache.
            self.chunk, self.xp, self.cols = max(1, CHUNK_BYTES // sample_bytes), xp, None
            out = np.empty((n * ho * wo, o), dtype=np.result_type(xp, self.w2d))
            for lo, hi, cols in self._chunk_cols():
                np.matmul(cols, self.w2d, out=out[lo * ho * wo:hi * ho * wo])
            return out.reshape(n, ho, wo, o)
        # im2col: the one copy of the forward pass; rows are output pixels in NHWC order.
        self.cols = _im2col(xp, (kh, kw), (ho, wo), self.strides, self.dilations)
        return (self.cols @ self.w2d).reshape(n, ho, wo, o)

    def _chunk_cols(self):
        """``(lo, hi, cols)`` for each chunk of samples ``lo:hi``: its im2col matrix, from the saved input."""
        n = self.x_shape[0]
        k, out = self.w_shape[:2], (self.rows.out, self.cols_axis.out)
        for lo in range(0, n, self.chunk):
            hi = min(lo + self.chunk, n)
            yield lo, hi, _im2col(self.xp[lo:hi], k, out, self.strides, self.dilations)

    def backward(self, g: np.ndarray, needs) -> tuple:
        n, h, w, c = self.x_shape
        kh, kw, _, o = self.w_shape
        g2d = np.ascontiguousarray(g).reshape(-1, o)
        if self.chunk:
            return self._backward_chunked(g2d, needs)
        dw_ = (self.cols.T @ g2d).reshape(self.w_shape) if needs[1] else None
        dx = self._input_grad(g2d) if needs[0] else None
        return dx, dw_

    def _backward_chunked(self, g2d: np.ndarray, needs) -> tuple:
        """Backward over the forward's sample chunks (see the module doc)."""
        n, h, w, c = self.x_shape
        kh, kw, _, o = self.w_shape
        rows, cols_axis = self.rows, self.cols_axis
        per = rows.out * cols_axis.out
        dw_ = tmp = None
        if needs[1]:
            dw_ = np.empty((kh * kw * c, o), dtype=np.result_type(self.xp, g2d))   # as cols.T @ g2d
            tmp = np.empty_like(dw_)
            for lo, hi, cols in self._chunk_cols():
                np.matmul(cols.T, g2d[lo * per:hi * per], out=dw_ if lo == 0 else tmp)
                if lo:
                    dw_ += tmp
            dw_ = dw_.reshape(self.w_shape)
        if not needs[0]:
            return None, dw_
        if self.strides != (1, 1) or self.dilations != (1, 1):
            return self._input_grad(g2d), dw_
        # dx[y, x, ch] = sum over (i, j, oc) of g[y + before - i, x + before_w - j, oc] * W[i, j, ch, oc]:
        # a VALID correlation of g, padded by kh-1-before (top) and h-out+before (bottom), with
        # the kernel flipped in space and transposed in channels.
        top, left = kh - 1 - rows.before, kw - 1 - cols_axis.before
        gp = np.zeros((min(self.chunk, n), h + kh - 1, w + kw - 1, o), dtype=g2d.dtype)
        flipped = np.ascontiguousarray(self.w2d.reshape(kh, kw, c, o)[::-1, ::-1].transpose(0, 1, 3, 2))
        flipped = flipped.reshape(kh * kw * o, c)
        g4 = g2d.reshape(n, rows.out, cols_axis.out, o)
        dx = np.empty((n, h, w, c), dtype=g2d.dtype)   # as the scatter path's
        dx2d = dx.reshape(n * h * w, c)
        for lo in range(0, n, self.chunk):
            hi = min(lo + self.chunk, n)
            gp[:hi - lo, top:top + rows.out, left:left + cols_axis.out] = g4[lo:hi]
            gcols = _im2col(gp[:hi - lo], (kh, kw), (h, w), (1, 1), (1, 1))
            np.matmul(gcols, flipped, out=dx2d[lo * h * w:hi * h * w])
        return dx, dw_

    def _input_grad(self, g2d: np.ndarray) -> np.ndarray:
        n, h, w, c = self.x_shape
        kh, kw, _, _ = self.w_shape
        (sh, sw), (dh, dw) = self.strides, self.dilations
        rows, cols = self.rows, self.cols_axis
        hp, wp = h + rows.before + rows.after, w + cols.before + cols.after
        dxp = np.zeros((n, hp, wp, c), dtype=g2d.dtype)
        if c == 1:
            # One matmul for all offsets, computed transposed ([kh*kw, N*Ho*Wo]) so that each
            # offset's block is contiguous.
            dcols = (self.w2d @ g2d.T).reshape(kh, kw, n, rows.out, cols.out, c)
        else:
            # One matmul per offset, each fused with its scatter-add while the block is in cache:
            # the same FLOPs as one big matmul, without scattering from the strided slices of
            # one [N*Ho*Wo, kh*kw*C] matrix, which leave the cache between reads.
            w4 = self.w2d.reshape(kh, kw, c, -1)
            dcols = None
        # col2im: scatter-add each kernel offset's columns back to the pixels it read.
        for i in range(kh):
            ri = window_slice(i, dh, sh, rows.out)
            for j in range(kw):
                block = (dcols[i, j] if dcols is not None
                         else (g2d @ w4[i, j].T).reshape(n, rows.out, cols.out, c))
                dxp[:, ri, window_slice(j, dw, sw, cols.out), :] += block
        if hp == h and wp == w:
            return dxp
        return dxp[:, rows.before:rows.before + h, cols.before:cols.before + w, :]


#: The convolution algorithms of :func:`conv2d` (see the module doc).
ALGORITHMS = ("gemm", "fft", "winograd")


def algorithm_applies(algorithm: str, kernel: tuple[int, int], strides: tuple[int, int],
                      dilations: tuple[int, int]) -> bool:
    """Whether ``algorithm`` can compute a convolution of this geometry."""
    if algorithm == "gemm":
        return True
    if strides != (1, 1) or dilations != (1, 1):
        return False
    return algorithm == "fft" or tuple(kernel) == (3, 3)


def conv2d(input: Any, filters: Any, strides: Any, padding: str, data_format: str = "NHWC",
           dilations: Any = None, name: str | None = None, algorithm: str = "gemm") -> Tensor:
    """2-D cross-correlation of ``input`` with ``filters`` (TF's ``tf.nn.conv2d``).

    Args:
      input: ``[batch, height, width, in_channels]`` floating tensor (NHWC).
      filters: ``[kh, kw, in_channels, out_channels]`` (HWIO), same dtype.
      strides: an int, a pair ``(sh, sw)`` or TF's ``[1, sh, sw, 1]``.
      padding: ``'SAME'`` (output ``ceil(in / s)``; TF's padding split, the
        odd pixel after) or ``'VALID'`` (output ``ceil((in - k + 1) / s)``).
      data_format: only ``'NHWC'`` (as TF on CPU).
      dilations: optional, like ``strides``; default 1.
      name: ignored (TF compatibility).
      algorithm: ``'gemm'`` (im2col + matrix product, any geometry),
        ``'fft'`` (stride and dilation 1) or ``'winograd'`` (3x3 kernels,
        stride and dilation 1); equal up to float rounding (module doc).

    Returns:
      ``[batch, out_height, out_width, out_channels]`` tensor of the input's dtype.

    Example:
      >>> x = distnet.constant(np.ones((1, 28, 28, 1), np.float32))
      >>> w = distnet.constant(np.ones((5, 5, 1, 32), np.float32))
      >>> distnet.nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME").shape
      (1, 28, 28, 32)
    """
    op_name = "conv2d"
    x, w = binary_operands(input, filters, op_name)
    if x.dtype.kind != "f":
        raise DTypeError(f"{op_name}: Expect: a floating dtype (float32 or float64) Actual: {x.dtype.name}")
    if x.ndim != 4:
        raise ShapeError(
            f"{op_name}: input must have rank 4 [batch, height, width, channels] (NHWC). "
            f"Expect: rank 4 Actual: rank {x.ndim}, shape {x.shape}"
        )
    if w.ndim != 4:
        raise ShapeError(
            f"{op_name}: filters must have rank 4 [height, width, in_channels, out_channels] (HWIO). "
            f"Expect: rank 4 Actual: rank {w.ndim}, shape {w.shape}"
        )
    if x.shape[3] != w.shape[2]:
        raise ShapeError(
            f"{op_name}: input has {x.shape[3]} channels but filters expect {w.shape[2]} "
            f"(filters shape {w.shape} is [kh, kw, in, out]). "
            f"Expect: input channels == {w.shape[2]} Actual: {x.shape[3]}"
        )
    if min(w.shape) == 0 or x.shape[0] == 0:
        raise ShapeError(f"{op_name}: empty input {x.shape} or filters {w.shape}")
    if data_format != "NHWC":
        raise InvalidArgumentError(
            f"{op_name}: only data_format 'NHWC' is supported (as TensorFlow on CPU). Actual: {data_format!r}"
        )
    padding = check_padding(padding, op_name)
    sh, sw = spatial_pair(strides, "strides", op_name)
    dh, dw = (1, 1) if dilations is None else spatial_pair(dilations, "dilations", op_name)
    rows = axis_geometry(x.shape[1], w.shape[0], sh, dh, padding, "height", op_name)
    cols = axis_geometry(x.shape[2], w.shape[1], sw, dw, padding, "width", op_name)
    if algorithm not in ALGORITHMS:
        raise InvalidArgumentError(
            f"{op_name}: unknown algorithm. Expect: one of {', '.join(map(repr, ALGORITHMS))} Actual: {algorithm!r}"
        )
    if not algorithm_applies(algorithm, w.shape[:2], (sh, sw), (dh, dw)):
        need = "strides and dilations 1" + (" and a 3x3 kernel" if algorithm == "winograd" else "")
        raise InvalidArgumentError(
            f"{op_name}: algorithm {algorithm!r} needs {need}. Actual: kernel {w.shape[:2]}, strides {(sh, sw)}, "
            f"dilations {(dh, dw)}; use algorithm 'gemm'"
        )
    if algorithm == "fft":
        from distnet.nn.conv_fft import Conv2DFFT

        return Conv2DFFT.apply(x, w, rows=rows, cols_axis=cols)
    if algorithm == "winograd":
        from distnet.nn.conv_winograd import Conv2DWinograd

        return Conv2DWinograd.apply(x, w, rows=rows, cols_axis=cols)
    return Conv2D.apply(x, w, strides=(sh, sw), dilations=(dh, dw), rows=rows, cols_axis=cols)
