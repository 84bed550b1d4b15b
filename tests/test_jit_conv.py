"""The convolutions' compiled data movement (distnet/jit.py) gives bitwise the numpy paths' results.

The FFT algorithm's transposing copies, filter blocks and block sums
(distnet/nn/conv_fft.py) and im2col's column copy (distnet/nn/conv.py) each
stand for a numpy expression that stays in the code (numba missing or
``DISTNET_JIT=0``).  These tests run a whole convolution, forward and both
gradients, both ways and compare the bits, on one thread and split over two
(distnet/nn/_rows.py), float32 and float64, odd sizes, with zeros of both
signs, subnormal and huge values in the data.
"""
from __future__ import annotations

import numpy as np
import pytest

from distnet.nn import conv, conv_fft
from distnet.nn._spatial import axis_geometry

# tests/conftest.py: the kernels on however small the arrays (skipped only with the kernels off); and `threads`
pytestmark = pytest.mark.usefixtures("small_arrays_compiled")

KERNELS = {conv_fft: ("_SWAP", "_BLOCKS", "_BLOCK_SUMS"), conv: ("_WINDOW_ROWS",)}


def special_values(rng, shape, dtype):
    """Random normals with zeros of both signs, tiny, huge and subnormal values mixed in (huge: products
    of two of them, summed, stay finite)."""
    x = rng.standard_normal(shape).astype(dtype)
    info = np.finfo(dtype)
    huge = np.sqrt(info.max) / 1e4
    picks = np.array([0.0, -0.0, info.tiny, -info.tiny, info.tiny / 4, huge, -huge, 3.0], dtype=dtype)
    flat = x.reshape(-1)
    where = rng.choice(flat.size, size=flat.size // 5, replace=False)
    flat[where] = rng.choice(picks, size=where.size)
    return x




def both_paths(monkeypatch, run):
    """``run()`` with the compiled kernels, then with the numpy paths."""
    compiled = run()
    with monkeypatch.context() as m:
        for module, names in KERNELS.items():
            for name in names:
                m.setattr(module, name, None)
        plain = run()
    return compiled, plain


def assert_same_bits(compiled, plain):
    for i, (a, b) in enumerate(zip(compiled, plain)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        assert a.tobytes() == b.tobytes(), f"output {i} differs"


def convolve(op_class, x, w, g, **kwargs):
    """Forward and both gradients of one convolution op."""
    op = op_class(**kwargs)
    y = op.forward(x, w)
    dx, dw = op.backward(g, (True, True))
    return y, dx, dw


# (n, h, w, c, o, kernel, padding)
FFT_CASES = [(3, 7, 9, 3, 5, (3, 4), "SAME"), (2, 11, 6, 1, 4, (5, 5), "SAME"),
             (5, 9, 8, 17, 3, (2, 3), "VALID"), (4, 14, 14, 32, 64, (5, 5), "SAME")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", FFT_CASES, ids=lambda c: "x".join(map(str, c[:5])) + c[6])
def test_fft_data_movement_is_bitwise_the_numpy_path(case, dtype, threads, monkeypatch):
    n, h, wd, c, o, (kh, kw), padding = case
    rng = np.random.default_rng(sum(case[:5]))
    rows = axis_geometry(h, kh, 1, 1, padding, "height", "test")
    cols = axis_geometry(wd, kw, 1, 1, padding, "width", "test")
    x = special_values(rng, (n, h, wd, c), dtype)
    w = special_values(rng, (kh, kw, c, o), dtype)
    g = special_values(rng, (n, rows.out, cols.out, o), dtype)
    compiled, plain = both_paths(monkeypatch, lambda: convolve(conv_fft.Conv2DFFT, x, w, g, rows=rows,
                                                               cols_axis=cols))
    assert_same_bits(compiled, plain)
    assert np.isfinite(compiled[0]).all() and np.abs(compiled[0]).max() > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fft_blocks_and_sums_keep_signs_and_special_values(dtype, monkeypatch):
    """The filter's blocks negate (the sign of 0 and nan flips), the sums add inf and nan as numpy."""
    rng = np.random.default_rng(1)
    p_, c, o = 3, 5, 7
    wri = special_values(rng, (2, 2 * p_, c, o), dtype)
    wri.reshape(-1)[:6] = [np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0]
    op = conv_fft.Conv2DFFT.__new__(conv_fft.Conv2DFFT)
    op.m, op.wri = {"p": p_}, wri

    def blocks():
        return [op._blocks(q, np.empty((p_, 2 * c, 2 * o), dtype)) for q in (0, 1)]

    compiled, plain = both_paths(monkeypatch, blocks)
    assert_same_bits(compiled, plain)
    d = special_values(rng, (p_, 2, c, 2, o), dtype)
    d.reshape(-1)[:6] = [np.inf, -np.inf, np.nan, np.inf, 0.0, -0.0]
    re, im = np.empty((p_, c, o), dtype), np.empty((p_, c, o), dtype)
    conv_fft._BLOCK_SUMS(d, re, im)
    assert re.tobytes() == np.add(d[:, 0, :, 0], d[:, 1, :, 1]).tobytes()
    assert im.tobytes() == np.subtract(d[:, 1, :, 0], d[:, 0, :, 1]).tobytes()


# (n, h, w, c, o, kernel, strides, dilations, padding); the first three copy short window rows
# (kw * C <= conv.SHORT_RUN) with the kernel, the last is dilated in width (numpy on both paths).
GEMM_CASES = [(4, 28, 28, 1, 8, (5, 5), (1, 1), (1, 1), "SAME"),
              (3, 9, 7, 2, 3, (3, 2), (2, 1), (1, 1), "SAME"),
              (2, 10, 11, 2, 4, (3, 3), (1, 2), (2, 1), "VALID"),
              (3, 8, 9, 20, 5, (2, 3), (1, 1), (1, 2), "SAME")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GEMM_CASES, ids=lambda c: "x".join(map(str, c[:5])) + c[8])
def test_im2col_is_bitwise_the_numpy_path(case, dtype, threads, monkeypatch):
    n, h, wd, c, o, (kh, kw), (sh, sw), (dh, dw), padding = case
    rng = np.random.default_rng(sum(case[:5]))
    rows = axis_geometry(h, kh, sh, dh, padding, "height", "test")
    cols = axis_geometry(wd, kw, sw, dw, padding, "width", "test")
    x = special_values(rng, (n, h, wd, c), dtype)
    w = special_values(rng, (kh, kw, c, o), dtype)
    g = special_values(rng, (n, rows.out, cols.out, o), dtype)
    compiled, plain = both_paths(monkeypatch, lambda: convolve(conv.Conv2D, x, w, g, strides=(sh, sw),
                                                               dilations=(dh, dw), rows=rows, cols_axis=cols))
    assert_same_bits(compiled, plain)


def test_chunked_im2col_is_bitwise_the_numpy_path(threads, monkeypatch):
    """Large column matrices run in sample chunks (conv.CHUNK_MIN_BYTES), the input gradient by im2col too
    (one channel in and out: short window rows both ways)."""
    monkeypatch.setattr(conv, "CHUNK_MIN_BYTES", 1)
    monkeypatch.setattr(conv, "CHUNK_BYTES", 20000)
    rng = np.random.default_rng(3)
    rows = cols = axis_geometry(9, 5, 1, 1, "SAME", "height", "test")
    x = special_values(rng, (7, 9, 9, 1), np.float32)
    w = special_values(rng, (5, 5, 1, 1), np.float32)
    g = special_values(rng, (7, 9, 9, 1), np.float32)
    compiled, plain = both_paths(monkeypatch, lambda: convolve(conv.Conv2D, x, w, g, strides=(1, 1),
                                                               dilations=(1, 1), rows=rows, cols_axis=cols))
    assert_same_bits(compiled, plain)
