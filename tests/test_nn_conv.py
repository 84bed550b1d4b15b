"""conv2d: against a naive loop, TF's padding rule, gradient checks, errors."""
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import distnet
from distnet import nn
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients


def naive_conv2d(x, w, stride, padding, dilation=(1, 1)):
    """Direct loops over every output element, TF's padding rule written out."""
    n, h, wd, c = x.shape
    kh, kw, ci, co = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    keh, kew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if padding == "SAME":
        oh, ow = math.ceil(h / sh), math.ceil(wd / sw)
        ph = max((oh - 1) * sh + keh - h, 0)
        pw = max((ow - 1) * sw + kew - wd, 0)
        top, left = ph // 2, pw // 2
    else:
        oh, ow = math.ceil((h - keh + 1) / sh), math.ceil((wd - kew + 1) / sw)
        top = left = 0
    out = np.zeros((n, oh, ow, co))
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for o in range(co):
                    acc = 0.0
                    for p in range(kh):
                        for q in range(kw):
                            r, s = i * sh + p * dh - top, j * sw + q * dw - left
                            if 0 <= r < h and 0 <= s < wd:
                                acc += np.dot(x[b, r, s, :], w[p, q, :, o])
                    out[b, i, j, o] = acc
    return out


CASES = [
    # (input shape, filter shape, stride, padding)
    ((2, 5, 5, 3), (3, 3, 3, 4), (1, 1), "SAME"),
    ((2, 5, 5, 3), (3, 3, 3, 4), (1, 1), "VALID"),
    ((2, 6, 7, 2), (3, 2, 2, 3), (2, 2), "SAME"),
    ((2, 6, 7, 2), (3, 2, 2, 3), (2, 2), "VALID"),
    ((1, 4, 4, 1), (2, 2, 1, 2), (1, 1), "SAME"),   # even kernel: the odd padding goes after
    ((3, 7, 6, 1), (5, 5, 1, 2), (2, 1), "SAME"),   # kernel larger than half the input
    ((1, 5, 4, 2), (1, 1, 2, 5), (2, 2), "VALID"),  # 1x1 kernel, strided
]


@pytest.mark.parametrize("xs, ws, stride, padding", CASES)
def test_forward_matches_naive_loops(xs, ws, stride, padding):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    got = nn.conv2d(x, w, strides=stride, padding=padding).numpy()
    np.testing.assert_allclose(got, naive_conv2d(x, w, stride, padding), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xs, ws, stride, padding", CASES)
def test_gradients_float64(xs, ws, stride, padding):
    rng = np.random.default_rng(2)
    check_gradients(lambda x, w: nn.conv2d(x, w, strides=stride, padding=padding),
                    [rng.standard_normal(xs), rng.standard_normal(ws)])


def test_dilations_match_naive_and_gradients():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 7, 8, 2)), rng.standard_normal((2, 3, 2, 3))
    for padding in ("SAME", "VALID"):
        got = nn.conv2d(x, w, strides=1, padding=padding, dilations=[1, 2, 2, 1]).numpy()
        np.testing.assert_allclose(got, naive_conv2d(x, w, (1, 1), padding, (2, 2)), rtol=1e-12, atol=1e-12)
        check_gradients(lambda a, b: nn.conv2d(a, b, 1, padding, dilations=2), [x, w])


def test_same_padding_puts_the_odd_pixel_after():
    # TF: 4 wide, 2x2 kernel, stride 1 -> pad_total 1, before 0, after 1.
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    w = np.ones((2, 2, 1, 1))
    out = nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME").numpy()[0, :, :, 0]
    assert out[0, 0] == 0 + 1 + 4 + 5
    assert out[3, 3] == 15  # bottom-right window sees only the last pixel
    assert out[0, 3] == 3 + 7


def test_output_shapes_follow_tf():
    x = np.zeros((1, 28, 28, 1), np.float32)
    w = np.zeros((5, 5, 1, 32), np.float32)
    assert nn.conv2d(x, w, 1, "SAME").shape == (1, 28, 28, 32)
    assert nn.conv2d(x, w, 2, "SAME").shape == (1, 14, 14, 32)
    assert nn.conv2d(x, w, 1, "VALID").shape == (1, 24, 24, 32)
    assert nn.conv2d(x, w, 3, "VALID").shape == (1, 8, 8, 32)   # ceil(24 / 3)
    assert nn.conv2d(x, w, (2, 3), "SAME").shape == (1, 14, 10, 32)


def test_stride_spellings_agree():
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 9, 9, 2)), rng.standard_normal((3, 3, 2, 2))
    a = nn.conv2d(x, w, 2, "SAME").numpy()
    b = nn.conv2d(x, w, (2, 2), "SAME").numpy()
    c = nn.conv2d(x, w, [1, 2, 2, 1], "SAME").numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_float32_stays_float32_and_gradients_flow():
    rng = np.random.default_rng(5)
    x = distnet.Variable(rng.standard_normal((2, 6, 6, 3)).astype(np.float32))
    w = distnet.Variable(rng.standard_normal((3, 3, 3, 4)).astype(np.float32))
    y = nn.conv2d(x, w, 1, "SAME")
    assert y.dtype == np.float32
    gx, gw = distnet.gradients(distnet.reduce_sum(y), [x, w])
    assert gx.dtype == np.float32 and gw.dtype == np.float32
    # d sum / d w[p, q, c, o] = sum of the input pixels that offset reads, the same for every o.
    x64 = x.numpy().astype(np.float64)
    ref = check_sum_grad_w(x64, (3, 3))
    np.testing.assert_allclose(gw[:, :, :, 0], ref, rtol=1e-5, atol=1e-5)  # float32 sums of ~50 terms
    np.testing.assert_allclose(gw[:, :, :, 3], ref, rtol=1e-5, atol=1e-5)


def check_sum_grad_w(x, k):
    """Gradient of sum(conv2d(x, w, 1, 'SAME')) w.r.t. w[:, :, :, o], by shifting."""
    n, h, w, c = x.shape
    kh, kw = k
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    return np.array([[xp[:, p:p + h, q:q + w, :].sum(axis=(0, 1, 2)) for q in range(kw)] for p in range(kh)])


def test_only_the_requested_gradient_is_computed():
    rng = np.random.default_rng(6)
    x = distnet.constant(rng.standard_normal((1, 4, 4, 1)))
    w = distnet.Variable(rng.standard_normal((3, 3, 1, 2)))
    (gw,) = distnet.gradients(distnet.reduce_sum(nn.conv2d(x, w, 1, "VALID")), [w])
    np.testing.assert_allclose(gw[:, :, 0, 0], [[x.numpy()[0, p:p + 2, q:q + 2, 0].sum() for q in range(3)]
                                                for p in range(3)])


def test_wrong_rank_is_a_clear_error():
    with pytest.raises(ShapeError, match=r"rank 4.*Actual: rank 3"):
        nn.conv2d(np.zeros((28, 28, 1)), np.zeros((5, 5, 1, 32)), 1, "SAME")
    with pytest.raises(ShapeError, match=r"filters must have rank 4"):
        nn.conv2d(np.zeros((1, 28, 28, 1)), np.zeros((5, 5, 32)), 1, "SAME")


def test_channel_mismatch_names_both_numbers():
    with pytest.raises(ShapeError, match=r"input has 3 channels but filters expect 1"):
        nn.conv2d(np.zeros((1, 8, 8, 3)), np.zeros((3, 3, 1, 4)), 1, "SAME")


@pytest.mark.parametrize("padding", ["same", "FULL", "", None, 2])
def test_bad_padding(padding):
    with pytest.raises(InvalidArgumentError, match="padding: Expect: 'SAME' \\| 'VALID'"):
        nn.conv2d(np.zeros((1, 8, 8, 1)), np.zeros((3, 3, 1, 1)), 1, padding)


@pytest.mark.parametrize("strides, pattern", [
    (0, "positive"), ((1, -1), "positive"), ([2, 1, 1, 1], "batch and channel"),
    ((1, 2, 3), "1, 2 or 4 entries"), (1.5, "int"), ("2", "int"),
])
def test_bad_strides(strides, pattern):
    with pytest.raises(InvalidArgumentError, match=pattern):
        nn.conv2d(np.zeros((1, 8, 8, 1)), np.zeros((3, 3, 1, 1)), strides, "SAME")


def test_valid_window_larger_than_input():
    with pytest.raises(ShapeError, match=r"window \(5\) is larger than the input height \(4\)"):
        nn.conv2d(np.zeros((1, 4, 8, 1)), np.zeros((5, 5, 1, 1)), 1, "VALID")


def test_dtype_errors():
    with pytest.raises(DTypeError):
        nn.conv2d(distnet.constant(np.zeros((1, 4, 4, 1), np.float32)),
                  distnet.constant(np.zeros((3, 3, 1, 1), np.float64)), 1, "SAME")
    with pytest.raises(DTypeError, match="floating"):
        nn.conv2d(np.zeros((1, 4, 4, 1), np.int32), np.zeros((3, 3, 1, 1), np.int32), 1, "SAME")


def test_nchw_is_refused():
    with pytest.raises(InvalidArgumentError, match="NHWC"):
        nn.conv2d(np.zeros((1, 4, 4, 1)), np.zeros((3, 3, 1, 1)), 1, "SAME", data_format="NCHW")


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7), c=st.integers(1, 3), o=st.integers(1, 3),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       dh=st.integers(1, 2), dw=st.integers(1, 2), padding=st.sampled_from(["SAME", "VALID"]))
def test_any_geometry_matches_naive_loops(n, h, w, c, o, kh, kw, sh, sw, dh, dw, padding):
    if padding == "VALID":
        assume((kh - 1) * dh + 1 <= h and (kw - 1) * dw + 1 <= w)
    rng = np.random.default_rng(n * 1000 + h * 100 + w)
    x, f = rng.standard_normal((n, h, w, c)), rng.standard_normal((kh, kw, c, o))
    xt, ft = distnet.Variable(x), distnet.Variable(f)
    y = nn.conv2d(xt, ft, (sh, sw), padding, dilations=(dh, dw))
    np.testing.assert_allclose(y.numpy(), naive_conv2d(x, f, (sh, sw), padding, (dh, dw)), rtol=1e-12, atol=1e-12)
    # The backward of a linear map is its transpose: <conv(x), g> == <x, dx> == <f, df>.
    g = rng.standard_normal(y.shape)
    dx, df = distnet.gradients(distnet.reduce_sum(y * g), [xt, ft])
    total = float(np.sum(y.numpy() * g))
    assert np.isclose(np.sum(x * dx), total, rtol=1e-10, atol=1e-10)
    assert np.isclose(np.sum(f * df), total, rtol=1e-10, atol=1e-10)


CHUNKED_CASES = [
    # (input shape, filter shape, stride, dilation, padding); batches of 5 in chunks of 2 leave a
    # partial last chunk.
    ((5, 7, 6, 3), (5, 5, 3, 4), (1, 1), (1, 1), "SAME"),    # the 2-conv net's geometry, small
    ((5, 7, 6, 3), (3, 2, 3, 4), (1, 1), (1, 1), "VALID"),
    ((5, 6, 6, 2), (2, 2, 2, 3), (1, 1), (1, 1), "SAME"),    # even kernel: odd padding after
    ((1, 9, 8, 2), (5, 5, 2, 3), (1, 1), (1, 1), "SAME"),    # batch 1
    ((5, 7, 6, 3), (3, 3, 3, 2), (2, 1), (1, 1), "SAME"),    # strided: input gradient by scatter
    ((5, 9, 9, 2), (3, 3, 2, 2), (1, 1), (2, 2), "VALID"),   # dilated: input gradient by scatter
]


def _conv_grads(x, f, stride, dilation, padding):
    xt, ft = distnet.Variable(x), distnet.Variable(f)
    y = nn.conv2d(xt, ft, stride, padding, dilations=dilation)
    g = np.random.default_rng(5).standard_normal(y.shape).astype(x.dtype)
    dx, df = distnet.gradients(distnet.reduce_sum(y * distnet.constant(g)), [xt, ft])
    return y.numpy(), dx, df, g


@pytest.mark.parametrize("xs, ws, stride, dilation, padding", CHUNKED_CASES)
def test_chunked_path_matches_whole_matrix_path_and_naive_loops(xs, ws, stride, dilation, padding, monkeypatch):
    from distnet.nn import conv

    rng = np.random.default_rng(4)
    x, f = rng.standard_normal(xs), rng.standard_normal(ws)
    whole = _conv_grads(x, f, stride, dilation, padding)
    whole32 = _conv_grads(x.astype(np.float32), f.astype(np.float32), stride, dilation, padding)
    chunk_sizes = []
    original = conv._im2col

    def spy(xp, *args):
        chunk_sizes.append(xp.shape[0])
        return original(xp, *args)

    # Force the chunked path: every matrix is "large", chunks of two samples.
    monkeypatch.setattr(conv, "CHUNK_MIN_BYTES", 0)
    monkeypatch.setattr(conv, "_im2col", spy)
    for dtype, ref in ((np.float64, whole), (np.float32, whole32)):
        per_sample = int(np.prod(ws[:3])) * np.dtype(dtype).itemsize * math.prod(ref[0].shape[1:3])
        monkeypatch.setattr(conv, "CHUNK_BYTES", 2 * per_sample)
        y, dx, df, g = _conv_grads(x.astype(dtype), f.astype(dtype), stride, dilation, padding)
        assert y.dtype == dx.dtype == df.dtype == dtype
        # The chunked sums add the same products in another order: float64 agrees to 1e-12,
        # float32 to a few ulps of the magnitudes (sums of up to 5*5*3 products, then of 5 chunks).
        tol = 1e-12 if dtype == np.float64 else 1e-5
        scale = [max(1.0, float(np.abs(a).max())) for a in ref[:3]]
        for got, want, sc in zip((y, dx, df), ref[:3], scale):
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * sc)
    # The chunks really were chunks (at most two samples per gathered matrix, the last one
    # partial), and the float64 run also matches the naive loops and the transpose identity.
    assert chunk_sizes and max(chunk_sizes) <= 2 and (xs[0] == 1 or 1 in chunk_sizes)
    y, dx, df, g = _conv_grads(x, f, stride, dilation, padding)
    np.testing.assert_allclose(y, naive_conv2d(x, f, stride, padding, dilation), rtol=1e-12, atol=1e-12)
    total = float(np.sum(y * g))
    assert np.isclose(np.sum(x * dx), total, rtol=1e-10) and np.isclose(np.sum(f * df), total, rtol=1e-10)


@pytest.mark.parametrize("xs, ws, stride, dilation, padding", CHUNKED_CASES[:1] + CHUNKED_CASES[4:5])
def test_chunked_path_gradients_float64(xs, ws, stride, dilation, padding, monkeypatch):
    from distnet.nn import conv

    monkeypatch.setattr(conv, "CHUNK_MIN_BYTES", 0)
    monkeypatch.setattr(conv, "CHUNK_BYTES", 1)   # one sample per chunk
    rng = np.random.default_rng(6)
    check_gradients(lambda a, b: nn.conv2d(a, b, stride, padding, dilations=dilation),
                    [rng.standard_normal(xs), rng.standard_normal(ws)])


def test_large_matrices_take_the_chunked_path():
    # The 2-conv net's second conv at batch 50 gathers 31 MB of columns: chunked.
    from distnet.nn.conv import CHUNK_MIN_BYTES, Conv2D

    x = distnet.constant(np.zeros((50, 14, 14, 32), np.float32))
    w = distnet.Variable(np.zeros((5, 5, 32, 64), np.float32))
    y = nn.conv2d(x, w, 1, "SAME")
    assert 50 * 14 * 14 * 5 * 5 * 32 * 4 >= CHUNK_MIN_BYTES
    assert isinstance(y._op, Conv2D) and y._op.chunk >= 1 and y._op.cols is None


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 4), h=st.integers(1, 7), w=st.integers(1, 7), c=st.integers(1, 3), o=st.integers(1, 3),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 2), sw=st.integers(1, 2),
       dh=st.integers(1, 2), padding=st.sampled_from(["SAME", "VALID"]), chunk=st.integers(1, 3))
def test_any_geometry_chunked_matches_naive_loops(n, h, w, c, o, kh, kw, sh, sw, dh, padding, chunk):
    from distnet.nn import conv

    if padding == "VALID":
        assume((kh - 1) * dh + 1 <= h and (kw - 1) * dh + 1 <= w)
    rng = np.random.default_rng(n * 1000 + h * 100 + w * 10 + chunk)
    x, f = rng.standard_normal((n, h, w, c)), rng.standard_normal((kh, kw, c, o))
    saved = conv.CHUNK_MIN_BYTES, conv.CHUNK_BYTES
    rows_out = -(-h // sh) if padding == "SAME" else -(-(h - (kh - 1) * dh) // sh)
    cols_out = -(-w // sw) if padding == "SAME" else -(-(w - (kw - 1) * dh) // sw)
    conv.CHUNK_MIN_BYTES, conv.CHUNK_BYTES = 0, chunk * rows_out * cols_out * kh * kw * c * 8
    try:
        xt, ft = distnet.Variable(x), distnet.Variable(f)
        y = nn.conv2d(xt, ft, (sh, sw), padding, dilations=(dh, dh))
        assert y._op.chunk == chunk
        g = rng.standard_normal(y.shape)
        dx, df = distnet.gradients(distnet.reduce_sum(y * g), [xt, ft])
    finally:
        conv.CHUNK_MIN_BYTES, conv.CHUNK_BYTES = saved
    np.testing.assert_allclose(y.numpy(), naive_conv2d(x, f, (sh, sw), padding, (dh, dh)), rtol=1e-12, atol=1e-12)
    total = float(np.sum(y.numpy() * g))
    assert np.isclose(np.sum(x * dx), total, rtol=1e-10, atol=1e-10)
    assert np.isclose(np.sum(f * df), total, rtol=1e-10, atol=1e-10)
    # Element by element against the whole-matrix path (float64: sums in another order).
    xw, fw = distnet.Variable(x), distnet.Variable(f)
    yw = nn.conv2d(xw, fw, (sh, sw), padding, dilations=(dh, dh))
    assert yw._op.chunk == 0
    dxw, dfw = distnet.gradients(distnet.reduce_sum(yw * g), [xw, fw])
    np.testing.assert_allclose(dx, dxw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(df, dfw, rtol=1e-12, atol=1e-12)
