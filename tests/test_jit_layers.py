"""The layers' compiled kernels (max_pool, bias_add_relu, relu) give bitwise the numpy paths' results.

Each kernel's numpy path stays (numba missing or ``DISTNET_JIT=0``); these tests
run both on the same inputs — ties, signed zeros, subnormals, inf and NaN, odd
shapes, float32 and float64 — on one thread and split over two, and compare
the bits of the outputs and of the gradients.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

import distnet
from distnet import jit, nn

pooling = sys.modules["distnet.nn.pooling"]
activations = sys.modules["distnet.nn.activations"]
bar = sys.modules["distnet.nn.bias_add_relu"]

# tests/conftest.py: the kernels on however small the arrays (skipped only with the kernels off); and `threads`
pytestmark = pytest.mark.usefixtures("small_arrays_compiled")

DTYPES = [np.float32, np.float64]




def special(rng, shape, dtype, ties=True, nonfinite=False):
    """Normals with ties (a few small integers), zeros of both signs, subnormals, and inf/NaN if asked."""
    x = rng.standard_normal(shape).astype(dtype)
    info = np.finfo(dtype)
    picks = [0.0, -0.0, info.tiny / 4, -info.tiny / 4, info.max / 8, -info.max / 8]
    if ties:
        picks += [1.0, 1.0, 2.0, -1.0]
    if nonfinite:
        picks += [np.inf, -np.inf, np.nan]
    flat = x.reshape(-1)
    where = rng.choice(flat.size, size=flat.size // 3, replace=False)
    flat[where] = rng.choice(np.array(picks, dtype=dtype), size=where.size)
    return x


def bits(*arrays):
    return [(a.dtype, a.shape, np.ascontiguousarray(a).tobytes()) for a in arrays]


# -- max_pool ------------------------------------------------------------------

def pool_both(x, g, k, s, padding, monkeypatch):
    """``(out, dx, compiled_ran)`` of the compiled path, then of the numpy path."""
    runs = []
    for kernel in (pooling._disjoint_forward, None):
        with monkeypatch.context() as m:
            m.setattr(pooling, "_disjoint_forward", kernel)
            xv = distnet.Variable(x, name="x")
            y = nn.max_pool(xv, k, s, padding)
            (dx,) = distnet.gradients(distnet.reduce_sum(y * distnet.constant(g)), [xv])
            runs.append((y.numpy(), np.asarray(dx)))
    return runs


def pool_op(x, k, s, padding):
    """The max_pool op of this geometry, not yet run (its forward takes an array as given)."""
    _, ksize, strides, r, c = pooling.pool_geometry(distnet.constant(x), k, s, padding, "NHWC", "max_pool")
    return pooling.MaxPool(ksize, strides, r, c)


GEOMETRIES = [  # (input shape, ksize, strides, padding)
    ((4, 8, 8, 5), 2, 2, "SAME"),      # tiles
    ((3, 6, 9, 2), 3, 3, "VALID"),     # tiles, 3x3
    ((3, 7, 9, 3), 2, 2, "VALID"),     # disjoint, a row and a column left over
    ((2, 6, 6, 4), (2, 3), (2, 3), "VALID"),
    ((2, 5, 4, 3), 1, 1, "VALID"),
    ((5, 4, 6, 1), (1, 2), (1, 2), "SAME"),
    ((2, 9, 5, 7), (4, 1), (4, 1), "VALID"),
    ((3, 17, 16, 2), 16, 16, "VALID"),  # 256 offsets: the last is 255, the largest a byte holds
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s,padding", GEOMETRIES)
def test_max_pool_kernels_are_bitwise_the_numpy_paths(shape, k, s, padding, dtype, threads, monkeypatch):
    rng = np.random.default_rng(sum(shape))
    x = special(rng, shape, dtype)
    x[0] = 0.0                     # whole windows of equal values: the first pixel wins
    x[1] = rng.choice(np.array([0.0, -0.0, -1.0], dtype), shape[1:])   # signed zeros mixed: the output's sign bit
    if shape[0] > 2:
        x[2] = rng.integers(-1, 2, shape[1:]).astype(dtype)   # many ties
    kh, kw = (k, k) if isinstance(k, int) else k
    x[-1, kh - 1, kw - 1] = np.finfo(dtype).max   # the first window's last offset wins
    for gvals in ({}, {"nonfinite": True}):   # finite g: products; else the masked paths
        g0 = pool_both(x, np.zeros(1, dtype), k, s, padding, monkeypatch)[0][0]
        g = special(rng, g0.shape, dtype, **gvals)
        (y1, dx1), (y2, dx2) = pool_both(x, g, k, s, padding, monkeypatch)
        assert bits(y1, dx1) == bits(y2, dx2)
    assert np.any(dx1 != 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_nan_and_inf_inputs(dtype, threads, monkeypatch):
    """A NaN maximum leaves the kernel for the general path (TF1's NaN rule); infinities stay in it."""
    rng = np.random.default_rng(3)
    x = special(rng, (3, 6, 8, 4), dtype)
    x[1, 2, 3, 1] = np.inf
    x[1, 0, 0, 0] = x[1, 0, 1, 0] = -np.inf
    x[2, 4, 4, 2] = np.inf
    x[2, 4, 5, 2] = np.inf          # a tie of infinities
    g = special(rng, (3, 3, 4, 4), dtype)
    (y1, dx1), (y2, dx2) = pool_both(x, g, 2, 2, "SAME", monkeypatch)
    assert bits(y1, dx1) == bits(y2, dx2)
    assert nn.max_pool(x, 2, 2, "SAME")._op.winners is not None
    x[0, 1, 1, 3] = np.nan          # a window's last pixel
    x[2, 2, 2, 0] = np.nan          # a window's first pixel
    (y1, dx1), (y2, dx2) = pool_both(x, g, 2, 2, "SAME", monkeypatch)
    assert bits(y1, dx1) == bits(y2, dx2)
    assert nn.max_pool(x, 2, 2, "SAME")._op.winners is None
    assert np.isnan(y1).sum() == 1    # TF1: a NaN counts only as a window's first pixel


def test_max_pool_kernel_runs_on_the_usual_geometry_only():
    rng = np.random.default_rng(4)
    ops = {}
    for name, x, k, s, padding in [("tiles", rng.standard_normal((2, 4, 4, 3)), 2, 2, "SAME"),
                                   ("float16", rng.standard_normal((2, 4, 4, 3)).astype(np.float16), 2, 2, "SAME"),
                                   ("overlap", rng.standard_normal((2, 5, 5, 3)), 3, 2, "VALID"),
                                   ("padded", rng.standard_normal((2, 5, 5, 3)), 2, 2, "SAME"),
                                   ("strided", rng.standard_normal((2, 4, 8, 3))[:, :, ::2], 2, 2, "SAME"),
                                   ("256 offsets", rng.standard_normal((1, 16, 16, 2)), 16, 16, "VALID"),
                                   ("257 offsets", rng.standard_normal((1, 1, 257, 2)), (1, 257), (1, 257), "VALID")]:
        op = pool_op(x, k, s, padding)
        op.forward(x)
        ops[name] = op.winners is not None
    assert ops == {"tiles": True, "float16": False, "overlap": False, "padded": False, "strided": False,
                   "256 offsets": True, "257 offsets": False}


class _Kernel:
    """A stand-in kernel, loaded in this process or not, that records its calls."""

    def __init__(self, loaded: bool, kernel=None):
        self.loaded, self.kernel, self.calls = loaded, kernel, 0

    def __call__(self, *args):
        assert self.loaded, "a kernel not loaded ran on a small array"
        self.calls += 1
        return self.kernel(*args)


def test_small_arrays_keep_the_numpy_paths_until_the_kernel_is_loaded(monkeypatch):
    monkeypatch.setattr(jit, "MIN_ELEMENTS", 4 * 4 * 4 * 3 + 1)
    x = np.random.default_rng(6).standard_normal((4, 4, 4, 3))
    op = pool_op(x, 2, 2, "SAME")
    op.forward(x)
    assert op.winners is None
    real = activations._positive_part, activations._times_positive, bar._bias_add_relu
    for loaded in (False, True):
        kernels = {"positive": _Kernel(loaded, real[0]), "times": _Kernel(loaded, real[1]),
                   "bias": _Kernel(loaded, real[2])}
        monkeypatch.setattr(activations, "_positive_part", kernels["positive"])
        monkeypatch.setattr(activations, "_times_positive", kernels["times"])
        monkeypatch.setattr(bar, "_bias_add_relu", kernels["bias"])
        xt = distnet.constant(x)
        y = nn.relu(xt)
        y.numpy()
        distnet.gradients(distnet.reduce_sum(y), [xt])
        nn.bias_add_relu(x, np.ones(3)).numpy()
        assert [k.calls > 0 for k in kernels.values()] == [loaded] * 3


def test_max_pool_gradient_of_another_dtype_takes_the_numpy_backward(monkeypatch):
    """A float16 gradient of a compiled float32 forward: the numpy backward, from the same forward."""
    rng = np.random.default_rng(5)
    x = special(rng, (2, 4, 6, 3), np.float32)
    g = rng.standard_normal((2, 2, 3, 3)).astype(np.float16)
    results = []
    for kernel in (pooling._disjoint_forward, None):
        monkeypatch.setattr(pooling, "_disjoint_forward", kernel)
        op = pool_op(x, 2, 2, "SAME")
        results.append(bits(op.forward(x), op.backward(g, (True,))[0]))
    assert results[0] == results[1]


# -- bias_add_relu and relu ----------------------------------------------------

def kernels_off(monkeypatch):
    monkeypatch.setattr(bar, "_bias_add_relu", None)
    monkeypatch.setattr(activations, "_positive_part", None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5), (4, 7, 6, 8), (2, 1, 1, 1), (5, 13, 3)])
@pytest.mark.parametrize("nonfinite", [False, True])
def test_bias_add_relu_kernels_are_bitwise_the_numpy_path(shape, dtype, nonfinite, threads, monkeypatch):
    rng = np.random.default_rng(len(shape) + shape[-1])
    x = special(rng, shape, dtype, nonfinite=nonfinite)
    b = special(rng, shape[-1:], dtype, nonfinite=nonfinite)
    b[0] = -0.0
    g = special(rng, shape, dtype, nonfinite=nonfinite)
    runs = []
    for off in (False, True):
        with monkeypatch.context() as m:
            if off:
                kernels_off(m)
            xv, bv = distnet.Variable(x, name="x"), distnet.Variable(b, name="b")
            y = nn.bias_add_relu(xv, bv)
            dx, db = distnet.gradients(distnet.reduce_sum(y * distnet.constant(g)), [xv, bv])
            runs.append(bits(y.numpy(), np.asarray(dx), np.asarray(db)))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nonfinite", [False, True])
def test_relu_kernels_are_bitwise_the_numpy_path(dtype, nonfinite, threads, monkeypatch):
    rng = np.random.default_rng(7)
    x = special(rng, (6, 5, 7), dtype, nonfinite=nonfinite)
    g = special(rng, x.shape, dtype, nonfinite=nonfinite)
    runs = []
    for off in (False, True):
        with monkeypatch.context() as m:
            if off:
                kernels_off(m)
            xv = distnet.Variable(x, name="x")
            y = nn.relu(xv)
            (dx,) = distnet.gradients(distnet.reduce_sum(y * distnet.constant(g)), [xv])
            runs.append(bits(y.numpy(), np.asarray(dx)))
    assert runs[0] == runs[1]
    # And against the formulas the numpy path had before the kernels (a mask from the input).
    assert runs[0] == bits(np.maximum(x, 0), activations.times_mask(g, x > 0))


def test_times_positive_is_times_mask_of_the_positive_output(threads):
    rng = np.random.default_rng(8)
    for dtype in DTYPES:
        y = special(rng, (9, 31), dtype, nonfinite=True)
        g = special(rng, (9, 31), dtype, nonfinite=True)
        assert bits(activations.times_positive(g, y)) == bits(activations.times_mask(g, y > 0))
    # Mixed dtypes and non-contiguous arrays keep numpy's rules.
    y64, g32 = special(rng, (4, 6), np.float64), special(rng, (4, 6), np.float32)
    assert bits(activations.times_positive(g32, y64)) == bits(activations.times_mask(g32, y64 > 0))
    y, g = special(rng, (4, 12), np.float32), special(rng, (4, 12), np.float32)
    assert bits(activations.times_positive(g[:, ::2], y[:, ::2])) == bits(activations.times_mask(g[:, ::2],
                                                                                                  y[:, ::2] > 0))


def test_relu_of_integers_keeps_numpy():
    np.testing.assert_array_equal(nn.relu(np.array([-2, 0, 3], np.int32)).numpy(), np.array([0, 0, 3], np.int32))
