"""2-D convolution in the frequency domain (``conv2d(..., algorithm="fft")``).

Stride 1, no dilation, NHWC input and HWIO filters, as :mod:`distnet.nn.conv`.
The padded input (``P x Q`` pixels, TF's padding) is correlated with the
kernel through its discrete Fourier transform: no wrap-around can reach the
``Ho x Wo`` outputs, because each of them reads only pixels of the padded
image (``Ho = P - kh + 1``), so the circular correlation of the ``P x Q``
grid *is* the convolution.  With ``X^`` and ``W^`` the transforms of the
padded input and of the kernel zero-padded to ``P x Q``:

    Y^[k] = X^[k] conj(W^[k])        (a cross-correlation, as TensorFlow's)
    y     = the first Ho x Wo pixels of the inverse transform of Y^.

Every stage is a small real matrix applied by one GEMM to the whole batch:
numpy's FFT pays a call per plane, a dense DFT matrix over a 14..32-pixel
axis costs a few FLOPs per value and runs at BLAS speed.  The stages, with
``Qr = Q // 2 + 1`` (the input is real, so the width transform keeps half
the spectrum) and ``F = Qr * P`` frequencies:

1. width: real ``W`` pixels -> ``Qr`` complex values, re/im as two rows
   (``T1``, ``[2 Qr, W]``; the padding's zero columns are left out);
2. height: complex ``H`` -> ``P`` (``M2``, ``[2 P, 2 H]``), per width frequency;
3. channels: one complex ``[N, C] @ [C, O]`` product per frequency, as the
   real ``[N, 2C] @ [2C, 2O]`` block matrix ``[[Wr, -Wi], [Wi, Wr]]``;
4. inverse height transform, only for the ``Ho`` output rows (``N2``);
5. inverse width transform from the half spectrum (Hermitian weights
   ``c_q``: 1 for the zero and the Nyquist frequency, 2 otherwise), only for
   the ``Wo`` output columns (``N1``); the ``1 / (P Q)`` sits in 4 and 5.

The backward pass is the adjoint of that chain: the transposed matrices in
reverse order.  The input gradient flows back through stages 5..1; the
filter gradient is ``X_f^T @ G_f`` per frequency, mapped back through the
(linear) kernel transform's transpose.  Every stage is exact linear algebra,
so the result differs from the direct sum only by rounding: the DFT of a
float32 grid of ``P x Q <= 64 x 64`` pixels loses a few units of the last
place; the tests bound the difference by ``1e-5`` of the output's largest
magnitude in float32 (tests/test_nn_conv_algorithms.py).

The arithmetic of stage 3 is ``8 N C O F`` FLOPs (``F ~ P Q / 2``) against
``2 N Ho Wo kh kw C O`` for im2col + GEMM: about ``kh kw / 2`` times less
for SAME padding, which pays for 5x5 kernels on channels deep enough to
make the transforms small beside it.  :mod:`distnet.nn.conv_choice` decides
per shape by measuring.
"""
from __future__ import annotations

import functools

import numpy as np

from distnet import jit
from distnet.autodiff import Op
from distnet.nn._rows import over_parts_one_blas_thread
from distnet.nn._spatial import Axis


# The data movement between the GEMMs -- transposing copies into and out of the stages' layouts,
# the filter's complex blocks and its gradient's real/imaginary sums -- as compiled one-pass
# loops (distnet/jit.py).  Each moves or adds exactly what the numpy expression beside its call
# does (the fallback without numba), so the bits are the same.  They run on the calling thread:
# split over the rank's two threads, a whole-batch copy took as long (its speed is the memory's),
# and longer right after a GEMM, whose BLAS threads still hold the other core
# (benchmarks/README.md).

def _swap_axes_1_3(src, dst):
    """``dst[a, d, c, b, :] = src[a, b, c, d, :]`` (both C-contiguous, 5-d)."""
    na, nb, nc, nd, ne = src.shape
    for a in range(na):
        for d in range(nd):
            for c in range(nc):
                for b in range(nb):
                    for e in range(ne):
                        dst[a, d, c, b, e] = src[a, b, c, d, e]


def _blocks_loop(wr, wi, b):
    """``b[p] = [[wr, -wi], [wi, wr]]`` (``b``: ``[P, 2, C, 2, O]``; ``wr``, ``wi``: ``[P, C, O]``)."""
    n_p, nc, no = wr.shape
    for p in range(n_p):
        for c in range(nc):
            # One run per block row: plain copies that vectorise.
            for o in range(no):
                b[p, 0, c, 0, o] = wr[p, c, o]
            for o in range(no):
                b[p, 0, c, 1, o] = -wi[p, c, o]
            for o in range(no):
                b[p, 1, c, 0, o] = wi[p, c, o]
            for o in range(no):
                b[p, 1, c, 1, o] = wr[p, c, o]


def _block_sums_loop(d, re, im):
    """``re = d[:, 0, :, 0] + d[:, 1, :, 1]``, ``im = d[:, 1, :, 0] - d[:, 0, :, 1]``."""
    n_p, _, nc, _, no = d.shape
    for p in range(n_p):
        for c in range(nc):
            for o in range(no):
                re[p, c, o] = d[p, 0, c, 0, o] + d[p, 1, c, 1, o]
                im[p, c, o] = d[p, 1, c, 0, o] - d[p, 0, c, 1, o]


_SWAP = jit.kernel(_swap_axes_1_3)
_BLOCKS = jit.kernel(_blocks_loop)
_BLOCK_SUMS = jit.kernel(_block_sums_loop)


def _swapped(src: np.ndarray, shape: tuple, dtype) -> np.ndarray:
    """``src`` (4-d, any layout) with axes 0 and 2 exchanged, C-contiguous in ``dtype``:
    NHWC <-> the stages' ``[W, H, N, C]``."""
    a, b, c, d = shape
    src = np.ascontiguousarray(src, dtype=dtype)
    out = np.empty((c, b, a, d), dtype=dtype)
    _swap(src.reshape(1, a, b, c, d), out.reshape(1, c, b, a, d))
    return out


def _swap(src: np.ndarray, dst: np.ndarray) -> None:
    """``dst[...] = src.transpose(0, 3, 2, 1, 4)`` (both C-contiguous, 5-d)."""
    if _SWAP is not None and jit.worth(dst.size) and jit.compiles(src, dst):
        _SWAP(src, dst)
    else:
        np.copyto(dst, src.transpose(0, 3, 2, 1, 4))


@functools.lru_cache(maxsize=32)
def _dft_matrices(h: int, w: int, rows: Axis, cols: Axis, k: tuple[int, int], dtype) -> dict:
    """The stage matrices of the module doc for an ``h x w`` input, in ``dtype`` (built in float64).

    Kept per geometry (read-only): building them (cos and sin of every entry) costs about a
    tenth of the convolution, and a net convolves the same shapes every step."""
    kh, kw = k
    p_, q_ = h + rows.before + rows.after, w + cols.before + cols.after
    qr = q_ // 2 + 1
    ho, wo = rows.out, cols.out
    two_pi = 2.0 * np.pi
    # 1. width, forward: rows (q, re/im), columns the unpadded pixels at padded position w + before.
    th = two_pi * np.outer(np.arange(qr), np.arange(w) + cols.before) / q_
    t1 = np.stack([np.cos(th), -np.sin(th)], axis=1).reshape(2 * qr, w)
    # 2. height, forward, complex: rows (p, re/im), columns (re/im, h).  X e^{-i phi}.
    ph = two_pi * np.outer(np.arange(p_), np.arange(h) + rows.before) / p_
    c, s = np.cos(ph), np.sin(ph)
    m2 = np.empty((p_, 2, 2, h))
    m2[:, 0, 0], m2[:, 0, 1], m2[:, 1, 0], m2[:, 1, 1] = c, s, -s, c
    # 4. height, inverse, complex: rows (re/im, i < Ho), columns (p, re/im).  Y e^{+i phi} / P.
    ph = two_pi * np.outer(np.arange(ho), np.arange(p_)) / p_
    c, s = np.cos(ph) / p_, np.sin(ph) / p_
    n2 = np.empty((2, ho, p_, 2))
    n2[0, :, :, 0], n2[0, :, :, 1], n2[1, :, :, 0], n2[1, :, :, 1] = c, -s, s, c
    # 5. width, inverse from the half spectrum: rows j < Wo, columns (q, re/im).  sum c_q Re(Z e^{+i theta}) / Q.
    weight = np.full(qr, 2.0)
    weight[0] = 1.0
    if q_ % 2 == 0:
        weight[-1] = 1.0   # the Nyquist frequency is its own mirror image
    th = two_pi * np.outer(np.arange(wo), np.arange(qr)) / q_
    n1 = np.stack([np.cos(th) * weight / q_, -np.sin(th) * weight / q_], axis=2).reshape(wo, 2 * qr)
    # The kernel's transform: rows (re/im, q, p) — the frequencies in the data's (q, p) order —,
    # columns the kernel taps (a, b).  W^ = sum w e^{-i angle}.
    angle = two_pi * (np.arange(qr)[:, None, None, None] * np.arange(kw)[None, None, None, :] / q_
                      + np.arange(p_)[None, :, None, None] * np.arange(kh)[None, None, :, None] / p_)
    kernel = np.stack([np.cos(angle), -np.sin(angle)]).reshape(2 * qr * p_, kh * kw)
    cast = {"t1": t1, "m2": m2.reshape(2 * p_, 2 * h), "n2": n2.reshape(2 * ho, 2 * p_), "n1": n1,
            "kernel": kernel}
    out = {name: np.ascontiguousarray(m, dtype=dtype) for name, m in cast.items()}
    for m in out.values():
        m.flags.writeable = False
    out.update(p=p_, q=q_, qr=qr)
    return out


class Conv2DFFT(Op):
    """``conv2d`` by DFT (stride 1, no dilation); geometry resolved by :func:`distnet.nn.conv2d`.

    Stages 2-4 run one width frequency ``q`` at a time (the height transform
    and the channel products of different ``q`` are independent): each
    frequency's arrays — a few hundred kB at batch 100 — stay in cache from
    one stage to the next, where whole-batch stages would stream megabytes
    through memory between them.
    """

    __slots__ = ("rows", "cols_axis", "x_shape", "w_shape", "m", "xf", "wri")

    def __init__(self, rows: Axis, cols_axis: Axis):
        self.rows, self.cols_axis = rows, cols_axis

    def _blocks(self, q: int, out: np.ndarray) -> np.ndarray:
        """``out[P, 2C, 2O]``: the blocks ``[[Wr, -Wi], [Wi, Wr]]`` of width frequency ``q``."""
        p_ = self.m["p"]
        wr, wi = self.wri[0, q * p_:(q + 1) * p_], self.wri[1, q * p_:(q + 1) * p_]
        c, o = wr.shape[1], wr.shape[2]
        b = out.reshape(p_, 2, c, 2, o)
        if _BLOCKS is not None and jit.worth(out.size) and jit.compiles(wr, wi, out):
            _BLOCKS(wr, wi, b)
            return out
        b[:, 0, :, 0] = wr
        np.negative(wi, out=b[:, 0, :, 1])
        b[:, 1, :, 0] = wi
        b[:, 1, :, 1] = wr
        return out

    def forward(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        dtype = np.result_type(x, w)
        self.x_shape, self.w_shape = x.shape, w.shape
        n, h, wd, c = x.shape
        kh, kw, _, o = w.shape
        m = self.m = _dft_matrices(h, wd, self.rows, self.cols_axis, (kh, kw), np.dtype(dtype))
        p_, qr = m["p"], m["qr"]
        ho, wo = self.rows.out, self.cols_axis.out
        # The kernel's transform, [re/im, F, C, O] (F in (q, p) order).
        self.wri = (m["kernel"] @ w.astype(dtype, copy=False).reshape(kh * kw, c * o)).reshape(2, qr * p_, c, o)
        # Stage 1 on the input laid out [W, H, N, C], so that it is one GEMM from the left.
        xt = _swapped(x, x.shape, dtype).reshape(wd, h * n * c)
        s1 = (m["t1"] @ xt).reshape(qr, 2 * h, n * c)                  # [q, (re/im, h), (n, c)]
        # Per width frequency: stages 2, 3 and 4.  xf (kept for the filter gradient): [q, p, n, (re/im, c)].
        xf = self.xf = np.empty((qr, p_, n, 2 * c), dtype=dtype)
        z = np.empty((qr, 2 * ho, n * o), dtype=dtype)                # [q, (re/im, i), (n, o)]

        def frequencies(lo: int, hi: int) -> None:
            s2 = np.empty((2 * p_, n * c), dtype=dtype)
            b = np.empty((p_, 2 * c, 2 * o), dtype=dtype)
            y = np.empty((p_, n, 2 * o), dtype=dtype)
            yt = np.empty((p_, 2, n, o), dtype=dtype)
            for q in range(lo, hi):
                np.matmul(m["m2"], s1[q], out=s2)                      # [(p, re/im), (n, c)]
                _swap(s2.reshape(p_, 2, 1, n, c), xf[q].reshape(p_, n, 1, 2, c))
                np.matmul(xf[q], self._blocks(q, b), out=y)            # [p, n, (re/im, o)]
                _swap(y.reshape(p_, n, 1, 2, o), yt.reshape(p_, 2, 1, n, o))
                np.matmul(m["n2"], yt.reshape(2 * p_, n * o), out=z[q])

        over_parts_one_blas_thread(qr, frequencies)
        # Stage 5: back to pixels, [Wo, Ho, N, O], then NHWC.
        out = m["n1"] @ z.reshape(2 * qr, ho * n * o)
        return _swapped(out, (wo, ho, n, o), dtype)

    def backward(self, g: np.ndarray, needs) -> tuple:
        m = self.m
        n, h, wd, c = self.x_shape
        kh, kw, _, o = self.w_shape
        p_, qr = m["p"], m["qr"]
        ho, wo = self.rows.out, self.cols_axis.out
        dtype = self.xf.dtype
        # Adjoint of stage 5: the upstream gradient into width frequencies.
        gt = _swapped(g, (n, ho, wo, o), dtype).reshape(wo, ho * n * o)
        gz = (m["n1"].T @ gt).reshape(qr, 2 * ho, n * o)
        dwri = ds1 = None
        if needs[1]:
            dwri = np.empty((2, qr * p_, c, o), dtype=dtype)
        if needs[0]:
            ds1 = np.empty((qr, 2 * h, n * c), dtype=dtype)

        def frequencies(lo: int, hi: int) -> None:
            # Adjoints of stages 4 and 3 (and 2 for the input gradient), one width frequency at a time.
            gy = np.empty((2 * p_, n * o), dtype=dtype)
            gf = np.empty((p_, n, 2, o), dtype=dtype)
            if needs[1]:
                db = np.empty((p_, 2 * c, 2 * o), dtype=dtype)
            if needs[0]:
                b = np.empty((p_, 2 * c, 2 * o), dtype=dtype)
                dxf = np.empty((p_, n, 2 * c), dtype=dtype)
                dxt = np.empty((p_, 2, n, c), dtype=dtype)
            for q in range(lo, hi):
                np.matmul(m["n2"].T, gz[q], out=gy)                     # [(p, re/im), (n, o)]
                _swap(gy.reshape(p_, 2, 1, n, o), gf.reshape(p_, n, 1, 2, o))
                g3 = gf.reshape(p_, n, 2 * o)
                if needs[1]:
                    np.matmul(self.xf[q].transpose(0, 2, 1), g3, out=db)  # [p, (re/im, c), (re/im, o)]
                    d4 = db.reshape(p_, 2, c, 2, o)
                    f = slice(q * p_, (q + 1) * p_)
                    re, im = dwri[0, f], dwri[1, f]
                    if _BLOCK_SUMS is not None and jit.worth(db.size) and jit.compiles(db, re, im):
                        _BLOCK_SUMS(d4, re, im)
                    else:
                        np.add(d4[:, 0, :, 0], d4[:, 1, :, 1], out=re)
                        np.subtract(d4[:, 1, :, 0], d4[:, 0, :, 1], out=im)
                if needs[0]:
                    np.matmul(g3, self._blocks(q, b).transpose(0, 2, 1), out=dxf)
                    _swap(dxf.reshape(p_, n, 1, 2, c), dxt.reshape(p_, 2, 1, n, c))
                    np.matmul(m["m2"].T, dxt.reshape(2 * p_, n * c), out=ds1[q])

        over_parts_one_blas_thread(qr, frequencies)
        dw = dx = None
        if needs[1]:
            dw = (m["kernel"].T @ dwri.reshape(2 * qr * p_, c * o)).reshape(kh, kw, c, o)
        if needs[0]:
            dx = _swapped(m["t1"].T @ ds1.reshape(2 * qr, h * n * c), (wd, h, n, c), dtype)
        return dx, dw
