"""max_pool: against a naive loop, TF1 tie and padding rules, gradient checks, errors."""
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import distnet
from distnet import nn
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients


def naive_max_pool(x, k, s, padding):
    """Loops over output pixels; returns the output and TF1's argmax (first max, padding excluded)."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw) = k, s
    if padding == "SAME":
        oh, ow = math.ceil(h / sh), math.ceil(w / sw)
        top = max((oh - 1) * sh + kh - h, 0) // 2
        left = max((ow - 1) * sw + kw - w, 0) // 2
    else:
        oh, ow = math.ceil((h - kh + 1) / sh), math.ceil((w - kw + 1) / sw)
        top = left = 0
    out = np.zeros((n, oh, ow, c))
    grad_to = {}
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for ch in range(c):
                    best, where = None, None
                    for p in range(kh):
                        for q in range(kw):
                            r, t = i * sh + p - top, j * sw + q - left
                            if 0 <= r < h and 0 <= t < w:
                                v = x[b, r, t, ch]
                                if best is None or best < v:
                                    best, where = v, (b, r, t, ch)
                    out[b, i, j, ch] = best
                    grad_to[(b, i, j, ch)] = where
    return out, grad_to


def naive_grad(x, grad_to, g):
    dx = np.zeros_like(x)
    for out_idx, in_idx in grad_to.items():
        dx[in_idx] += g[out_idx]
    return dx


CASES = [
    ((2, 4, 4, 3), (2, 2), (2, 2), "SAME"),
    ((2, 5, 5, 2), (2, 2), (2, 2), "SAME"),    # odd size: the last window is padded
    ((2, 5, 5, 2), (2, 2), (2, 2), "VALID"),
    ((1, 6, 5, 2), (3, 3), (1, 1), "SAME"),    # overlapping windows
    ((1, 6, 5, 2), (3, 2), (1, 1), "VALID"),
    ((2, 7, 6, 1), (3, 3), (2, 2), "SAME"),
    ((2, 7, 6, 1), (3, 3), (2, 2), "VALID"),
]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("xs, k, s, padding", CASES)
def test_forward_and_gradient_match_naive_loops(xs, k, s, padding, ties):
    rng = np.random.default_rng(0)
    # With ties: small integers (many equal maxima, as after a relu), which TF1 breaks by order.
    x = rng.integers(-1, 2, xs).astype(np.float64) if ties else rng.standard_normal(xs)
    out, grad_to = naive_max_pool(x, k, s, padding)
    xt = distnet.Variable(x)
    y = nn.max_pool(xt, ksize=k, strides=s, padding=padding)
    np.testing.assert_array_equal(y.numpy(), out)
    g = rng.standard_normal(out.shape)
    (dx,) = distnet.gradients(distnet.reduce_sum(y * g), [xt])
    np.testing.assert_allclose(dx, naive_grad(x, grad_to, g), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("xs, k, s, padding", CASES)
def test_gradients_float64(xs, k, s, padding):
    # Distinct values well apart, so eps never changes which element is the maximum.
    rng = np.random.default_rng(1)
    x = rng.permutation(np.prod(xs)).reshape(xs).astype(np.float64) * 0.1
    check_gradients(lambda t: nn.max_pool(t, list((1,) + k + (1,)), [1, s[0], s[1], 1], padding), [x])


def test_ties_route_the_gradient_to_the_first_maximum():
    # TF1 CPU kernel: the running maximum is replaced only by a strictly larger value (row-major scan).
    x = distnet.Variable(np.array([[1.0, 3.0], [3.0, 3.0]]).reshape(1, 2, 2, 1))
    (dx,) = distnet.gradients(distnet.reduce_sum(nn.max_pool(x, 2, 2, "VALID")), [x])
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.0, 1.0], [0.0, 0.0]])


def test_padding_never_receives_gradient_even_for_minus_inf_windows():
    # A window of -inf pixels at the padded border: TF1 routes to its first real pixel.
    x_np = np.full((1, 3, 3, 1), -np.inf)
    x = distnet.Variable(x_np)
    y = nn.max_pool(x, 2, 2, "SAME")
    assert np.all(y.numpy() == -np.inf)
    (dx,) = distnet.gradients(distnet.reduce_sum(y), [x])
    expected = np.zeros((3, 3))
    expected[0, 0] = expected[0, 2] = expected[2, 0] = expected[2, 2] = 1.0
    np.testing.assert_array_equal(dx[0, :, :, 0], expected)


def test_same_padding_with_negative_values_ignores_the_padding():
    x = -np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    y = nn.max_pool(x, 2, 2, "SAME").numpy()[0, :, :, 0]
    np.testing.assert_array_equal(y, [[-1.0, -3.0], [-7.0, -9.0]])


def test_seed_003_shape_and_dtype():
    x = np.zeros((10, 28, 28, 32), np.float32)
    y = nn.max_pool(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
    assert y.shape == (10, 14, 14, 32) and y.dtype == np.float32


def test_errors():
    with pytest.raises(ShapeError, match="rank 4"):
        nn.max_pool(np.zeros((4, 4, 1)), 2, 2, "SAME")
    with pytest.raises(InvalidArgumentError, match="padding"):
        nn.max_pool(np.zeros((1, 4, 4, 1)), 2, 2, "same")
    with pytest.raises(InvalidArgumentError, match="batch and channel"):
        nn.max_pool(np.zeros((1, 4, 4, 1)), [2, 2, 2, 1], 2, "SAME")
    with pytest.raises(InvalidArgumentError, match="positive"):
        nn.max_pool(np.zeros((1, 4, 4, 1)), 2, 0, "SAME")
    with pytest.raises(ShapeError, match="larger than the input"):
        nn.max_pool(np.zeros((1, 2, 2, 1)), 3, 1, "VALID")
    with pytest.raises(DTypeError, match="floating"):
        nn.max_pool(np.zeros((1, 4, 4, 1), np.int32), 2, 2, "SAME")


def test_nan_follows_the_tf1_comparison():
    # TF1 replaces the maximum only when `max < value`: a NaN is skipped unless it comes first.
    x = distnet.Variable(np.array([[np.nan, 1.0, 5.0, 2.0], [1.0, np.nan, 3.0, 2.0]]).reshape(1, 2, 4, 1))
    y = nn.max_pool(x, 2, 2, "VALID")
    out, grad_to = naive_max_pool(x.numpy(), (2, 2), (2, 2), "VALID")
    np.testing.assert_array_equal(y.numpy(), out)  # NaN-aware equality
    (dx,) = distnet.gradients(distnet.reduce_sum(y), [x])
    np.testing.assert_array_equal(dx, naive_grad(x.numpy(), grad_to, np.ones(out.shape)))
    assert np.isnan(y.numpy()[0, 0, 0, 0]) and y.numpy()[0, 0, 1, 0] == 5.0


@pytest.mark.parametrize("k, s", [((2, 2), (2, 2)), ((3, 3), (1, 1))])
def test_infinite_upstream_gradient_reaches_only_the_maximum(k, s):
    rng = np.random.default_rng(3)
    x_np = rng.standard_normal((1, 4, 4, 2))
    x = distnet.Variable(x_np)
    y = nn.max_pool(x, k, s, "SAME")
    g = np.ones(y.shape)
    g[0, 0, 0, 0] = np.inf
    (dx,) = distnet.gradients(distnet.reduce_sum(y * g), [x])
    out, grad_to = naive_max_pool(x_np, k, s, "SAME")
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(dx, naive_grad(x_np, grad_to, g))
    assert not np.isnan(dx).any()


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7), c=st.integers(1, 3),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       padding=st.sampled_from(["SAME", "VALID"]), ties=st.booleans())
def test_any_geometry_matches_naive_loops(n, h, w, c, kh, kw, sh, sw, padding, ties):
    if padding == "VALID":
        assume(kh <= h and kw <= w)
    rng = np.random.default_rng(n * 1000 + h * 100 + w * 10 + c)
    x_np = rng.integers(-2, 2, (n, h, w, c)).astype(np.float64) if ties else rng.standard_normal((n, h, w, c))
    x = distnet.Variable(x_np)
    y = nn.max_pool(x, (kh, kw), (sh, sw), padding)
    out, grad_to = naive_max_pool(x_np, (kh, kw), (sh, sw), padding)
    np.testing.assert_array_equal(y.numpy(), out)
    g = rng.standard_normal(out.shape)
    (dx,) = distnet.gradients(distnet.reduce_sum(y * g), [x])
    np.testing.assert_allclose(dx, naive_grad(x_np, grad_to, g), rtol=1e-12, atol=1e-15)


DISJOINT = [
    ((3, 28, 28, 8), (2, 2), (2, 2), "SAME"),    # the reference net's pool (no padding needed)
    ((2, 14, 14, 5), (2, 2), (2, 2), "VALID"),
    ((2, 7, 9, 3), (2, 2), (2, 2), "VALID"),     # a last row and column no window covers
    ((1, 9, 6, 2), (3, 3), (3, 3), "SAME"),
    ((1, 8, 6, 2), (2, 3), (2, 3), "VALID"),
    ((2, 5, 4, 1), (1, 1), (1, 1), "VALID"),     # one-pixel windows
]


def _pool_op(xs, k, s, padding):
    from distnet.nn._spatial import axis_geometry
    from distnet.nn.pooling import MaxPool

    rows = axis_geometry(xs[1], k[0], s[0], 1, padding, "height", "max_pool")
    cols = axis_geometry(xs[2], k[1], s[1], 1, padding, "width", "max_pool")
    return MaxPool(ksize=k, strides=s, rows=rows, cols_axis=cols)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("xs, k, s, padding", DISJOINT)
def test_disjoint_fast_path_equals_the_argmax_path_bitwise(xs, k, s, padding, ties, monkeypatch):
    import distnet.nn.pooling as pooling

    monkeypatch.setattr(pooling, "CHUNK_BYTES", 1)   # one sample per chunk on the tiled path
    # The numpy fast paths (the compiled kernel, which stands for them: tests/test_jit_layers.py).
    monkeypatch.setattr(pooling, "_disjoint_forward", None)
    # Disjoint windows without padding take a fast path: windows that tile the input exactly keep
    # no argmax (the backward compares the input with the output), the others a running maximum,
    # then the first offset equal to it.  Either must give exactly what the general argmax path
    # gives, float32, ties (as after a relu) and signed zeros included, and match the naive loops.
    from distnet.nn.pooling import MaxPool

    rng = np.random.default_rng(11)
    x = (rng.integers(-1, 2, xs) if ties else rng.standard_normal(xs)).astype(np.float32)
    if ties:
        x[0, 0, 0, 0], x[0, -1, -1, -1] = -0.0, -0.0   # -0.0 == 0.0: a tie, and the sign of the output kept
    fast, plain = _pool_op(xs, k, s, padding), _pool_op(xs, k, s, padding)
    y_plain = plain._forward_argmax(x)
    with monkeypatch.context() as m:
        m.setattr(MaxPool, "_forward_argmax", lambda self, x: pytest.fail("the fast path did not run"))
        y_fast = fast.forward(x)
    assert y_fast.tobytes() == y_plain.tobytes()   # bitwise, signed zeros included
    tiled = xs[1] % k[0] == 0 and xs[2] % k[1] == 0
    assert (fast.x is not None) == tiled   # which fast path ran
    assert fast.argmax is None   # the winning offsets are found only when a gradient is asked for
    g = rng.standard_normal(y_fast.shape).astype(np.float32)
    (dx_fast,), (dx_plain,) = fast.backward(g, [True]), plain.backward(g, [True])
    if not tiled:   # the tiled path keeps no offsets at all
        np.testing.assert_array_equal(fast.argmax, plain.argmax)
        assert fast.argmax.dtype == plain.argmax.dtype
    assert dx_fast.dtype == np.float32
    np.testing.assert_array_equal(dx_fast, dx_plain)
    out, grad_to = naive_max_pool(x.astype(np.float64), k, s, padding)
    np.testing.assert_array_equal(y_fast, out)
    np.testing.assert_array_equal(dx_fast, naive_grad(x.astype(np.float64), grad_to, g.astype(np.float64)))


def test_disjoint_fast_path_gradient_float64_and_nan_fallback():
    rng = np.random.default_rng(12)
    x = rng.permutation(96).reshape(2, 4, 6, 2) * 0.1
    check_gradients(lambda t: nn.max_pool(t, 2, 2, "VALID"), [x])
    # A NaN in a window sends the op to the exact argmax path (TF1's NaN rule).
    x_nan = x.copy()
    x_nan[0, 0, 0, 0] = np.nan
    from distnet.nn.pooling import MaxPool

    calls = []
    general = MaxPool._forward_argmax

    def spy(self, x):
        calls.append(x.shape)
        return general(self, x)

    op = _pool_op(x_nan.shape, (2, 2), (2, 2), "VALID")
    MaxPool._forward_argmax = spy
    try:
        y = op.forward(x_nan)
    finally:
        MaxPool._forward_argmax = general
    assert calls == [x_nan.shape] and np.isnan(y[0, 0, 0, 0])
