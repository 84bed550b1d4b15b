"""Max pooling over 2-D windows, NHWC (TF's ``tf.nn.max_pool``).

Vectorised by looping over the ``kh*kw`` window offsets only: each offset is
one strided slice of the padded input covering every output pixel at once.
Windows that tile the input exactly (the usual 2x2 stride 2 on an even size)
keep no winning offsets: the forward is a running ``np.maximum`` only, and the
backward finds each window's first pixel equal to its maximum from the input
(which the graph holds anyway) in one comparison of the whole input against
the broadcast output — the same output and gradient as the general path in
fewer passes over the data (benchmarks/README.md has the figures).  With numba
(:mod:`distnet.jit`) disjoint windows without padding take one compiled pass
instead, over runs of samples on the rank's threads: the same maximum, bit for
bit, and each window's winning offset (one byte) kept for a backward that
reads only it and the gradient.

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

from distnet import jit
from distnet.autodiff import Op
from distnet.nn._rows import over_rows
from distnet.nn._spatial import Axis, pad_hw, pool_geometry, window_slice
from distnet.tensor import Tensor


#: Input bytes per chunk of samples on the tiled path (a few hundred kB: stays in a core's cache).
CHUNK_BYTES = 256 << 10


def _real(rows: Axis, h: int, i: int, sh: int, cols: Axis, w: int, j: int, sw: int) -> np.ndarray | None:
    """``[Ho, Wo]`` mask of the windows whose pixel at offset ``(i, j)`` is real, not padding.

    None when every window's pixel is real (always so without padding).
    """
    r = i + sh * np.arange(rows.out) - rows.before
    q = j + sw * np.arange(cols.out) - cols.before
    r_ok, q_ok = (r >= 0) & (r < h), (q >= 0) & (q < w)
    if r_ok.all() and q_ok.all():
        return None
    return r_ok[:, None] & q_ok[None, :]


class MaxPool(Op):
    """``max_pool`` on arrays; geometry is resolved by :func:`max_pool`."""

    __slots__ = ("ksize", "strides", "rows", "cols_axis", "x_shape", "argmax", "saved", "x", "out", "winners",
                 "tiles")

    def __init__(self, ksize: tuple[int, int], strides: tuple[int, int], rows: Axis, cols_axis: Axis):
        self.ksize, self.strides = ksize, strides
        self.rows, self.cols_axis = rows, cols_axis
        self.argmax = self.saved = self.x = self.out = self.winners = None

    def _disjoint(self) -> bool:
        """Windows that neither overlap nor touch padding (e.g. 2x2 stride 2 on an even size)."""
        r, q = self.rows, self.cols_axis
        return (self.ksize == self.strides and not (r.before or r.after or q.before or q.after))

    def _tiles(self, x: np.ndarray) -> bool:
        """Disjoint windows that cover the whole input (no padding, no leftover rows or columns)."""
        (kh, kw), r, q = self.ksize, self.rows, self.cols_axis
        return self._disjoint() and x.shape[1] == r.out * kh and x.shape[2] == q.out * kw

    @staticmethod
    def _chunks(x: np.ndarray):
        """``(lo, hi)`` runs of samples of about :data:`CHUNK_BYTES` of ``x``: each run's passes stay in cache."""
        per = max(1, CHUNK_BYTES // max(1, x[:1].nbytes))
        for lo in range(0, x.shape[0], per):
            yield lo, min(lo + per, x.shape[0])

    def _windows(self, a: np.ndarray) -> np.ndarray:
        """``a`` (input-shaped, C-contiguous) as ``[N, Ho, kh, Wo, kw, C]``: a view, no copy."""
        (kh, kw), n, c = self.ksize, a.shape[0], a.shape[3]
        return a.reshape(n, self.rows.out, kh, self.cols_axis.out, kw, c)

    def _views(self, a: np.ndarray):
        """The ``kh*kw`` strided views of ``a`` (input-shaped) that each cover one window offset."""
        (kh, kw), (sh, sw) = self.ksize, self.strides
        for k in range(kh * kw):
            i, j = divmod(k, kw)
            yield a[:, window_slice(i, 1, sh, self.rows.out), window_slice(j, 1, sw, self.cols_axis.out), :]

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x_shape = x.shape
        if (_disjoint_forward is not None and jit.worth(x.size) and self._disjoint() and x.flags.c_contiguous
                and jit.compiles(x) and self.ksize[0] * self.ksize[1] <= 256):   # offsets in a byte
            out = self._forward_compiled(x)
            if out is not None:
                return out
        if self._tiles(x) and x.flags.c_contiguous and x.dtype.kind == "f":
            # The running maximum in the general path's order of offsets (the same bits, signed
            # zeros included); np.maximum propagates NaN: then the general path follows TF1's rule.
            (kh, kw), xw = self.ksize, self._windows(x)
            out = np.empty((x.shape[0], self.rows.out, self.cols_axis.out, x.shape[3]), dtype=x.dtype)
            for lo, hi in self._chunks(x):
                o, v = out[lo:hi], xw[lo:hi]
                np.copyto(o, v[:, :, 0, :, 0, :])
                for k in range(1, kh * kw):
                    i, j = divmod(k, kw)
                    np.maximum(o, v[:, :, i, :, j, :], out=o)
            if not np.isnan(out).any():
                self.x, self.out = x, out   # backward finds the winners from these
                return out
        if self._disjoint():
            # Fast path: a running np.maximum over the offsets, then each window's first offset
            # equal to that maximum, found from the last offset to the first (so the first
            # wins).  np.maximum propagates NaN, so a NaN in any window shows in the (small)
            # output: then the general path below runs instead, which follows TF1's NaN rule.
            views = list(self._views(x))
            out = np.array(views[0])
            for v in views[1:]:
                np.maximum(out, v, out=out)
            if not np.isnan(out).any():
                # The winning offsets are found only if a gradient is asked for (backward): an
                # evaluation's forward pass never needs them. The input and the output are held
                # by the graph anyway (the input tensor is the output's parent).
                self.argmax, self.saved = None, (x, out)
                return out
        return self._forward_argmax(x)

    def _forward_compiled(self, x: np.ndarray) -> np.ndarray | None:
        """Disjoint windows without padding, compiled: the forward paths' maximum (bits included) and
        each window's winning offset (the first equal to its maximum, as their backward finds it),
        kept for backward; None where a window's maximum is NaN (TF1's NaN rule: the general path)."""
        (kh, kw) = self.ksize
        n, c = x.shape[0], x.shape[3]
        out = np.empty((n, self.rows.out, self.cols_axis.out, c), dtype=x.dtype)
        winners = np.empty(out.shape, dtype=np.uint8)
        nan, kernel = [], _forward_2x2 if (kh, kw) == (2, 2) else _disjoint_forward

        def work(lo, hi):
            if kernel(x, kh, kw, out, winners, lo, hi):
                nan.append(True)

        over_rows(n, x.nbytes, work)
        if nan:
            return None
        self.winners, self.tiles = winners, self._tiles(x)
        # The numpy backward's inputs too (held by the graph anyway), for a gradient of another dtype.
        if self.tiles:
            self.x, self.out = x, out
        else:
            self.saved = (x, out)
        return out

    def _backward_compiled(self, g: np.ndarray) -> np.ndarray:
        """The gradient from the winning offsets :meth:`_forward_compiled` kept, bitwise the numpy
        paths' (``_mode`` says which of their element-wise formulas applies)."""
        (kh, kw), winners = self.ksize, self.winners
        g = np.ascontiguousarray(g)
        dx = np.empty(self.x_shape, dtype=g.dtype)
        mode, dt = _mode(bool(np.isfinite(g).all()), self.tiles), g.dtype.type

        def work(lo, hi):
            _disjoint_backward(g, winners, kh, kw, mode, dt(0), dt(1), dx, lo, hi)

        over_rows(g.shape[0], dx.nbytes, work)
        return dx

    def _disjoint_argmax(self) -> np.ndarray:
        """The fast path's winning offsets, from its input and output: each window's first
        offset equal to its maximum, found from the last offset to the first (so the first wins)."""
        x, out = self.saved
        views = list(self._views(x))
        last = len(views) - 1
        # Without NaN every window's maximum is one of its values: the last offset
        # needs no comparison.
        arg = np.full(out.shape, last, dtype=np.int8 if len(views) <= 127 else np.int32)
        eq = np.empty(out.shape, dtype=bool)
        step = np.empty(out.shape, dtype=arg.dtype)
        for k in range(last - 1, -1, -1):
            np.equal(views[k], out, out=eq)
            # arg = eq ? k : arg, as arithmetic (masked writes are much slower)
            np.subtract(k, arg, out=step)
            step *= eq
            arg += step
        return arg

    def _forward_argmax(self, x: np.ndarray) -> np.ndarray:
        """Any geometry: the running maximum and the winning offset of every window."""
        self.x_shape = x.shape
        n, h, w, c = x.shape
        (kh, kw), (sh, sw) = self.ksize, self.strides
        rows, cols = self.rows, self.cols_axis
        # TF: SAME pads with -inf; padded pixels are also kept from winning a tie below.
        xp = pad_hw(x, rows, cols, fill=-np.inf)
        shape = (n, rows.out, cols.out, c)
        out = np.empty(shape, dtype=x.dtype)
        # The winning offset (row-major index in the window); -1 while a window saw only padding.
        arg = np.zeros(shape, dtype=np.int8 if kh * kw <= 127 else np.int32)
        take = np.empty(shape, dtype=bool)
        step = np.empty(shape, dtype=arg.dtype)
        # Masked writes (copyto/where) are much slower than arithmetic on random masks, so the
        # running maximum uses fmax (equal to TF's rule for NaN-free input) and the argmax an
        # arithmetic select; input holding NaN takes the masked path, which follows TF exactly.
        exact = bool(np.isnan(x).any()) if x.dtype.kind == "f" else False
        unseen = None
        for k in range(kh * kw):
            i, j = divmod(k, kw)
            v = xp[:, window_slice(i, 1, sh, rows.out), window_slice(j, 1, sw, cols.out), :]
            real = _real(rows, h, i, sh, cols, w, j, sw)
            if k == 0:
                np.copyto(out, v)
                if real is not None:
                    unseen = ~real
                    np.copyto(arg, -1, where=unseen[None, :, :, None])
                continue
            # TF1 kernel: replace the running maximum only when it is strictly smaller ...
            np.greater(v, out, out=take)
            if unseen is not None:
                # ... or when the window has seen no real pixel yet and this one is real.
                first = unseen if real is None else unseen & real
                take |= first[None, :, :, None]
                unseen = unseen & ~first
                if not unseen.any():
                    unseen = None
            if exact:
                np.copyto(out, v, where=take)
            else:
                np.fmax(out, v, out=out)
            # arg = take ? k : arg
            np.subtract(k, arg, out=step)
            step *= take
            arg += step
        self.argmax = arg
        return out

    def _backward_tiled(self, g: np.ndarray) -> np.ndarray:
        """The gradient of the tiling windows: to each window's first pixel (row-major) equal to its
        maximum, as TF1's kernel (its running maximum is replaced only by a strictly larger value)."""
        (kh, kw) = self.ksize
        xw, dx = self._windows(self.x), np.empty(self.x.shape, dtype=g.dtype)
        dxw = self._windows(dx)
        finite = bool(np.isfinite(g).all())
        for lo, hi in self._chunks(self.x):
            eq = np.equal(xw[lo:hi], self.out[lo:hi, :, None, :, None, :])
            if kh * kw > 1:
                # Ties (e.g. a window of zeros after relu): only the first equal pixel keeps its gradient.
                taken = eq[:, :, 0, :, 0, :].copy()
                for k in range(1, kh * kw):
                    i, j = divmod(k, kw)
                    e = eq[:, :, i, :, j, :]
                    np.greater(e, taken, out=e)   # e and not taken
                    if k < kh * kw - 1:
                        taken |= e
            gb, d = g[lo:hi, :, None, :, None, :], dxw[lo:hi]
            if finite:
                # The mask as 0/1 values, then one product of the same dtype: numpy's mixed-dtype
                # broadcast product (bool by float) runs its buffered casting loop.
                np.copyto(d, eq)
                d *= gb
            else:   # inf * 0 would be NaN: masked writes
                d[...] = 0
                np.copyto(d, np.broadcast_to(gb, d.shape), where=eq)
        return dx

    def backward(self, g: np.ndarray, needs) -> tuple:
        if self.winners is not None and jit.compiles(g):
            return (self._backward_compiled(g),)
        if self.x is not None:
            return (self._backward_tiled(g),)
        if self.argmax is None:
            self.argmax, self.saved = self._disjoint_argmax(), None
        n, h, w, c = self.x_shape
        (kh, kw), (sh, sw) = self.ksize, self.strides
        rows, cols = self.rows, self.cols_axis
        hp, wp = h + rows.before + rows.after, w + cols.before + cols.after
        overlap = kh > sh or kw > sw
        # g * mask is exact when g is finite (no inf * 0); otherwise use masked writes.
        exact = not bool(np.isfinite(g).all())
        # Windows that tile the (padded) input exactly write every pixel once below: no zero fill.
        tiled = (not exact and (kh, kw) == (sh, sw) and rows.out * sh == hp and cols.out * sw == wp)
        dxp = (np.empty if tiled else np.zeros)((n, hp, wp, c), dtype=g.dtype)
        mask = np.empty(g.shape, dtype=bool)
        for k in range(kh * kw):
            i, j = divmod(k, kw)
            dst = dxp[:, window_slice(i, 1, sh, rows.out), window_slice(j, 1, sw, cols.out), :]
            np.equal(self.argmax, k, out=mask)
            if exact:
                np.add(dst, g, out=dst, where=mask)
            elif overlap:
                dst += g * mask
            else:
                # Disjoint windows: each input pixel gets at most one gradient, no accumulation.
                np.multiply(g, mask, out=dst)
        if hp == h and wp == w:
            return (dxp,)
        return (dxp[:, rows.before:rows.before + h, cols.before:cols.before + w, :],)


@jit.kernel
def _disjoint_forward(x, kh, kw, out, winners, lo, hi):
    """Samples ``lo:hi`` of the disjoint windows' forward: ``out`` as the numpy paths' running
    ``np.maximum`` over the offsets in row-major order gives it (signed zeros included),
    ``winners`` the first offset holding the maximum (TF1's strict ``max < value``, as the numpy
    backward finds it).  True when some maximum is NaN.

    ``np.maximum(m, v)`` is ``m`` where ``m > v`` or ``m`` is NaN, else ``v`` (so ``maximum(0., -0.)``
    is ``-0.``, as numpy's loops give it)."""
    ho, wo, c = out.shape[1], out.shape[2], out.shape[3]
    nan = False
    for n in range(lo, hi):
        for r in range(ho):
            for q in range(wo):
                o, a = out[n, r, q], winners[n, r, q]
                o[:] = x[n, r * kh, q * kw]
                a[:] = 0
                for k in range(1, kh * kw):
                    v, kk = x[n, r * kh + k // kw, q * kw + k % kw], np.uint8(k)
                    for ch in range(c):
                        m = o[ch]
                        a[ch] = kk if v[ch] > m else a[ch]
                        o[ch] = m if (m > v[ch] or m != m) else v[ch]
                for ch in range(c):
                    nan |= o[ch] != o[ch]
    return nan


@jit.kernel
def _forward_2x2(x, kh, kw, out, winners, lo, hi):
    """:func:`_disjoint_forward` of the usual 2x2 window, its offsets unrolled so that the loop over
    channels vectorises (3x faster than the general loop)."""
    ho, wo, c = out.shape[1], out.shape[2], out.shape[3]
    nan = False
    for n in range(lo, hi):
        for r in range(ho):
            for q in range(wo):
                o, a = out[n, r, q], winners[n, r, q]
                x0, x1 = x[n, 2 * r, 2 * q], x[n, 2 * r, 2 * q + 1]
                x2, x3 = x[n, 2 * r + 1, 2 * q], x[n, 2 * r + 1, 2 * q + 1]
                for ch in range(c):
                    m, k, v = x0[ch], np.uint8(0), x1[ch]
                    k = np.uint8(1) if v > m else k
                    m = m if (m > v or m != m) else v
                    v = x2[ch]
                    k = np.uint8(2) if v > m else k
                    m = m if (m > v or m != m) else v
                    v = x3[ch]
                    k = np.uint8(3) if v > m else k
                    m = m if (m > v or m != m) else v
                    o[ch], a[ch] = m, k
                    nan |= m != m
    return nan


#: The numpy paths' gradient per pixel (winner ``w``): ``w * g`` where ``g`` is finite everywhere;
#: else ``g`` (tiling windows' masked copy) or ``0 + g`` (the others' masked add into zeros).
_PRODUCT, _COPY, _ADD = 0, 1, 2


def _mode(finite: bool, tiles: bool) -> int:
    return _PRODUCT if finite else (_COPY if tiles else _ADD)


@jit.kernel
def _disjoint_backward(g, winners, kh, kw, mode, zero, one, dx, lo, hi):
    """Samples ``lo:hi`` of the gradient of the disjoint windows: each window's gradient to its
    winning pixel, zero to the others and to the rows and columns no window covers."""
    ho, wo, c = g.shape[1], g.shape[2], g.shape[3]
    for n in range(lo, hi):
        dx[n, ho * kh:] = zero
        dx[n, :ho * kh, wo * kw:] = zero
        for r in range(ho):
            for q in range(wo):
                gw, a = g[n, r, q], winners[n, r, q]
                for k in range(kh * kw):
                    d = dx[n, r * kh + k // kw, q * kw + k % kw]
                    if mode == _PRODUCT:
                        for ch in range(c):
                            d[ch] = (one if a[ch] == k else zero) * gw[ch]
                    elif mode == _COPY:
                        for ch in range(c):
                            d[ch] = gw[ch] if a[ch] == k else zero
                    else:
                        for ch in range(c):
                            d[ch] = zero + gw[ch] if a[ch] == k else zero


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
    x, ksize, strides, rows, cols = pool_geometry(value, ksize, strides, padding, data_format, "max_pool")
    return MaxPool.apply(x, ksize=ksize, strides=strides, rows=rows, cols_axis=cols)
