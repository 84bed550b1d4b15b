"""The autodiff core: graph walk, accumulation, broadcasting, deep graphs,
memory, errors and dtypes."""
from __future__ import annotations

import gc
import sys
import tracemalloc

import numpy as np
import pytest

import distnet
from distnet.autodiff import Op, gradients, unbroadcast
from distnet.distributed.strategies.base import GradientSink
from distnet.errors import DTypeError, ShapeError
from distnet.gradcheck import check_gradients


def test_variable_used_twice_accumulates():
    # (x + x) * x = 2x^2, gradient 4x; an overwriting graph walk gives 3x or 2x.
    x = distnet.Variable([1.0, -2.0, 3.0])
    y = distnet.reduce_sum((x + x) * x)
    (g,) = gradients(y, [x])
    np.testing.assert_array_equal(g, [4.0, -8.0, 12.0])


def test_same_operand_on_both_sides():
    x = distnet.Variable(3.0)
    (g,) = gradients(x * x, [x])
    assert g == 6.0


def test_diamond_shared_subexpression():
    # b = x^2 is used by two branches that meet again: f = b*3 + exp(b).
    x = distnet.Variable([0.5, -1.0], dtype="float64")
    b = distnet.square(x)
    f = distnet.reduce_sum(b * 3.0 + distnet.exp(b))
    (g,) = gradients(f, [x])
    xv = x.numpy()
    np.testing.assert_allclose(g, (3.0 + np.exp(xv ** 2)) * 2 * xv, rtol=1e-12)


def test_diamond_with_unequal_path_lengths():
    # One branch reaches x directly, the other through a long chain: the walk
    # must still order x after every path (a push-time visited mark fails here).
    x = distnet.Variable(2.0, dtype="float64")
    long = x
    for _ in range(5):
        long = long * 1.0
    f = distnet.stack([x, long * 2.0, x * 3.0])
    (g,) = gradients(distnet.reduce_sum(f), [x])
    assert g == 6.0


def test_broadcast_gradients_are_summed_back(rng):
    a = distnet.Variable(rng.standard_normal((2, 3)), dtype="float64")
    row = distnet.Variable(rng.standard_normal((1, 3)), dtype="float64")
    col = distnet.Variable(rng.standard_normal((2, 1)), dtype="float64")
    vec = distnet.Variable(rng.standard_normal(3), dtype="float64")
    s = distnet.Variable(1.5, dtype="float64")
    y = distnet.reduce_sum(a * row + col + vec * s)
    ga, grow, gcol, gvec, gs = gradients(y, [a, row, col, vec, s])
    np.testing.assert_allclose(ga, np.broadcast_to(row.numpy(), (2, 3)))
    np.testing.assert_allclose(grow, a.numpy().sum(axis=0, keepdims=True))
    np.testing.assert_allclose(gcol, np.full((2, 1), 3.0))
    np.testing.assert_allclose(gvec, np.full(3, 2 * 1.5))
    np.testing.assert_allclose(gs, 2 * vec.numpy().sum())
    assert [g.shape for g in (ga, grow, gcol, gvec, gs)] == [(2, 3), (1, 3), (2, 1), (3,), ()]


def test_unbroadcast_helper():
    g = np.ones((4, 2, 3))
    assert unbroadcast(g, (2, 3)).tolist() == np.full((2, 3), 4.0).tolist()
    assert unbroadcast(g, (1, 3)).tolist() == [[8.0, 8.0, 8.0]]
    assert unbroadcast(g, ()).item() == 24.0
    assert unbroadcast(g, (4, 2, 3)) is g


def test_unconnected_tensor_gets_zeros():
    x = distnet.Variable([1.0, 2.0])
    other = distnet.Variable([[1.0, 2.0, 3.0]], dtype="float64")
    y = distnet.reduce_sum(x * 2.0)
    gx, gother = gradients(y, [x, other])
    np.testing.assert_array_equal(gx, [2.0, 2.0])
    assert gother.shape == (1, 3) and gother.dtype == np.float64
    assert not gother.any()


def test_gradient_of_a_tensor_with_respect_to_itself():
    x = distnet.Variable(5.0)
    assert gradients(x, [x])[0] == 1.0


def test_gradient_wrt_intermediate_tensor():
    x = distnet.Variable([1.0, 2.0], dtype="float64")
    z = x * 3.0                       # intermediate
    w = distnet.reduce_sum(z * z)     # dw/dz = 2z, dw/dx = 18x
    gz, gx = gradients(w, [z, x])
    np.testing.assert_allclose(gz, 2 * z.numpy())
    np.testing.assert_allclose(gx, 18 * x.numpy())


def test_single_tensor_xs_and_grad_ys():
    x = distnet.Variable([1.0, 2.0])
    y = distnet.reduce_sum(x * x)
    (g,) = gradients(y, x, grad_ys=0.5)
    np.testing.assert_allclose(g, [1.0, 2.0])


def test_stop_gradient_blocks_flow():
    x = distnet.Variable([1.0, 2.0])
    y = distnet.reduce_sum(x * distnet.stop_gradient(x))
    (g,) = gradients(y, [x])
    np.testing.assert_array_equal(g, x.numpy())   # only the direct path


def test_deep_chain_does_not_hit_recursion_limit():
    x = distnet.Variable(1.0, dtype="float64")
    y = x
    n = 10_000
    assert n > sys.getrecursionlimit()
    for _ in range(n):
        y = y * 1.0001
    (g,) = gradients(y, [x])
    np.testing.assert_allclose(g, 1.0001 ** n, rtol=1e-9)
    del y  # dropping a 10,000-deep graph must not overflow either
    gc.collect()


def _training_step(w, b, x, labels):
    logits = distnet.matmul(x, w) + b
    loss = distnet.reduce_mean(distnet.square(logits - labels)) + 0.01 * distnet.reduce_sum(distnet.abs(w))
    gw, gb = gradients(loss, [w, b])
    w.assign_sub(0.01 * gw)
    b.assign_sub(0.01 * gb)
    return float(loss)


def test_memory_stays_flat_over_10000_steps(rng):
    w = distnet.Variable(rng.standard_normal((3, 2)) * 0.1, name="w", dtype="float32")
    b = distnet.Variable(np.zeros(2), name="b", dtype="float32")
    x = distnet.constant(rng.standard_normal((8, 3)).astype(np.float32))
    labels = distnet.constant(rng.standard_normal((8, 2)).astype(np.float32))
    # Warm-up, untraced: CPython's free lists (e.g. up to 2,000 cached tuples
    # per size) fill over the first ~1,000 steps and then stay flat; they are
    # bounded caches, not leaks, so they are filled before measuring (and no
    # gc.collect() after this point: a full collection empties them again).
    gc.collect()
    for _ in range(2_000):
        _training_step(w, b, x, labels)
    tracemalloc.start()
    try:
        for _ in range(100):
            _training_step(w, b, x, labels)
        current_100, peak_100 = tracemalloc.get_traced_memory()
        for _ in range(100, 10_000):
            last = _training_step(w, b, x, labels)
        current_10k, peak_10k = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.isfinite(last)
    slack = 32 * 1024  # bytes: a leak of even 4 bytes per step would exceed it
    assert peak_10k <= peak_100 + slack, (peak_100, peak_10k)
    assert current_10k <= current_100 + slack, (current_100, current_10k)


def test_graph_is_freed_when_output_is_dropped():
    import weakref

    x = distnet.Variable([1.0, 2.0])
    y = x * 2.0
    z = distnet.reduce_sum(y * y)
    ref = weakref.ref(y)
    gradients(z, [x])
    del y, z
    assert ref() is None  # no tape or cache holds the intermediate


def test_gradients_of_non_scalar_raises():
    x = distnet.Variable([1.0, 2.0])
    with pytest.raises(ShapeError, match=r"scalar.*\(2,\)"):
        gradients(x * 2.0, [x])


def test_gradients_rejects_non_tensors():
    x = distnet.Variable(1.0)
    with pytest.raises(DTypeError, match="ys: Expect: a Tensor"):
        gradients(1.0, [x])
    with pytest.raises(DTypeError, match=r"xs\[1\]"):
        gradients(x * 2.0, [x, np.ones(1)])


def test_wrong_gradient_shape_from_an_op_is_reported():
    class Bad(Op):
        __slots__ = ()

        def forward(self, x):
            return x.sum()

        def backward(self, g, needs):
            return (np.ones(7),)

    x = distnet.Variable([1.0, 2.0])
    with pytest.raises(ShapeError, match=r"Bad.*\(7,\).*\(2,\)"):
        gradients(Bad.apply(x), [x])


def test_dtype_mismatch_names_both_dtypes():
    a = distnet.constant([1.0], dtype="float32")
    b = distnet.constant([1.0], dtype="float64")
    with pytest.raises(DTypeError, match=r"add.*float32.*float64"):
        a + b
    with pytest.raises(DTypeError, match=r"matmul.*float64.*float32"):
        distnet.matmul(b[None], a[None])


def test_shape_mismatch_messages_name_both_shapes():
    with pytest.raises(ShapeError, match=r"matmul.*\(2, 3\) and \(4, 5\)"):
        distnet.matmul(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32))
    with pytest.raises(ShapeError, match=r"add.*\(2, 3\) and \(4, 5\)"):
        distnet.constant(np.ones((2, 3))) + distnet.constant(np.ones((4, 5)))


def test_default_dtype_is_float32_end_to_end():
    c = distnet.constant(1.5)
    assert c.dtype == np.float32
    w = distnet.Variable([[1.0, 2.0], [3.0, 4.0]])
    assert w.dtype == np.float32
    h = distnet.sqrt(distnet.exp(distnet.matmul(w, w) * 0.01 + 1.0) / 2.0) ** 2
    y = distnet.reduce_mean(h) + distnet.reduce_max(distnet.log(distnet.abs(w) + 1)) - 3
    for t in (h, y, distnet.reduce_sum(distnet.where(w > 2, w, -w))):
        assert t.dtype == np.float32
    (g,) = gradients(y, [w])
    assert g.dtype == np.float32


def test_float64_end_to_end(rng):
    w = distnet.Variable(rng.standard_normal((3, 2)), dtype="float64")
    x = distnet.constant(rng.standard_normal((4, 3)))
    assert w.dtype == x.dtype == np.float64
    h = distnet.maximum(distnet.matmul(x, w), 0.0)
    loss = distnet.reduce_mean(distnet.square(h - 1.0)) + distnet.reduce_sum(distnet.abs(w)) * 0.1
    assert loss.dtype == np.float64
    (g,) = gradients(loss, [w])
    assert g.dtype == np.float64
    check_gradients(
        lambda wt: distnet.reduce_mean(distnet.square(distnet.maximum(distnet.matmul(x, wt), 0.0) - 1.0)),
        [w.numpy()],
    )


def test_gradient_of_a_0d_variable_is_an_ndarray():
    s = distnet.Variable(2.0)
    (g,) = gradients(distnet.abs(s) * 3.0, [s])
    assert isinstance(g, np.ndarray) and g.shape == () and g.dtype == np.float32 and g == 3.0


try:
    from hypothesis import given, settings
    from hypothesis.extra.numpy import mutually_broadcastable_shapes
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    given = None

if given is not None:
    @settings(max_examples=25, deadline=None)
    @given(mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3))
    def test_broadcast_gradients_match_numpy_for_any_shapes(shapes):
        sx, sy = shapes.input_shapes
        rng = np.random.default_rng(1)
        xv, yv = rng.standard_normal(sx), rng.standard_normal(sy)
        x, y = distnet.constant(xv), distnet.constant(yv)
        gx, gy = gradients(distnet.reduce_sum(x * y + x), [x, y])
        assert gx.shape == sx and gy.shape == sy
        # The loss is linear in each operand: the gradient at element i is the
        # loss's change for a one-hot input at i (independent of unbroadcast).
        full = np.broadcast_shapes(sx, sy)

        def one_hot_response(shape, weight):
            out = np.zeros(shape)
            for i in np.ndindex(*shape):
                e = np.zeros(shape)
                e[i] = 1.0
                out[i] = np.sum(np.broadcast_to(e, full) * weight)
            return out

        np.testing.assert_allclose(gx, one_hot_response(sx, yv + 1.0), rtol=1e-12)
        np.testing.assert_allclose(gy, one_hot_response(sy, xv), rtol=1e-12)


def test_returned_gradients_are_separate_writeable_arrays():
    a = distnet.Variable([1.0, 2.0])
    b = distnet.Variable([3.0, 4.0])
    ga, gb, ga2 = gradients(distnet.reduce_sum(a + b), [a, b, a])
    ga *= 10.0  # an optimizer may update a gradient in place
    np.testing.assert_array_equal(gb, [1.0, 1.0])
    np.testing.assert_array_equal(ga2, [1.0, 1.0])
    (gs,) = gradients(distnet.reduce_sum(a), [a])
    gs += 1.0


def test_unconnected_gradients_none_allocates_nothing():
    x, y = distnet.Variable([1.0, 2.0]), distnet.Variable([3.0])
    loss = distnet.reduce_sum(x * x)
    gx, gy = distnet.gradients(loss, [x, y], unconnected_gradients="none")
    np.testing.assert_array_equal(gx, [2.0, 4.0])
    assert gy is None
    assert distnet.gradients(loss, [y])[0].tolist() == [0.0]  # the default stays zeros
    with pytest.raises(distnet.InvalidArgumentError, match="unconnected_gradients"):
        distnet.gradients(loss, [x], unconnected_gradients="zeros")


# -- gradients(on_leaf=): the one hook; the training strategies' sinks plug in there --
def _net(rng, dtype=np.float32):
    """A small two-layer net with a shared weight and an unused variable."""
    w1 = distnet.Variable(rng.standard_normal((5, 4)).astype(dtype), name="w1")
    b1 = distnet.Variable(rng.standard_normal(4).astype(dtype), name="b1")
    w2 = distnet.Variable(rng.standard_normal((4, 3)).astype(dtype), name="w2")
    unused = distnet.Variable(np.ones(2, dtype), name="unused")
    x = distnet.constant(rng.standard_normal((6, 5)).astype(dtype))
    h = distnet.nn.tanh(distnet.matmul(x, w1) + b1)
    # w1 is used twice (a diamond through the loss), b1 once, w2 once.
    loss = distnet.reduce_sum(distnet.matmul(h, w2) ** 2) + distnet.reduce_sum(w1 * w1)
    return loss, [w1, b1, w2, unused]


class _Recorder:
    """An ``on_leaf`` hook that records what gradients() hands it (copies) and the order."""

    def __init__(self):
        self.events, self.received = [], {}

    def __call__(self, i, g):
        self.events.append(i)
        self.received[i] = None if g is None else np.array(g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_on_leaf_gets_the_plain_gradients_once_each(rng, dtype):
    loss, xs = _net(rng, dtype)
    plain = gradients(loss, xs)
    rec = _Recorder()
    assert gradients(loss, xs, on_leaf=rec) is None
    assert sorted(rec.events) == [0, 1, 2, 3]          # once per leaf
    for i in range(3):
        np.testing.assert_array_equal(rec.received[i], plain[i])   # the same arithmetic: bitwise
        assert rec.received[i].dtype == dtype
    assert rec.received[3] is None                        # unconnected: None, nothing allocated


def test_on_leaf_gets_the_sum_of_three_contributions():
    # (x + x) * x: the leaf gets three contributions, summed before the hook sees it.
    x = distnet.Variable([1.0, -2.0, 3.0])
    y = distnet.Variable([1.0, 1.0])
    rec = _Recorder()
    gradients(distnet.reduce_sum((x + x) * x), [x, y], on_leaf=rec)
    np.testing.assert_array_equal(rec.received[0], [4.0, -8.0, 12.0])
    assert rec.received[1] is None and rec.events == [0, 1]


def test_on_leaf_takes_ys_itself_when_it_is_a_leaf():
    x = distnet.Variable(np.float32(2.0))
    rec = _Recorder()
    gradients(x, [x], on_leaf=rec)
    assert rec.received[0] == 1.0 and rec.events == [0]


def test_on_leaf_refuses_intermediate_tensors_and_duplicates(rng):
    loss, xs = _net(rng)
    h = xs[0] * 2.0
    with pytest.raises(distnet.errors.InvalidArgumentError, match=r"Expect: leaf tensors.*xs\[1\]"):
        gradients(distnet.reduce_sum(h), [xs[0], h], on_leaf=_Recorder())
    with pytest.raises(distnet.errors.InvalidArgumentError, match="each tensor once"):
        gradients(loss, [xs[0], xs[0]], on_leaf=_Recorder())


def test_on_leaf_fires_as_soon_as_a_leafs_uses_are_done(rng):
    # A chain of 3 layers on a variable input: each layer's weight is complete
    # after its matmul's backward, before the walk reaches the chain's input.
    ws = [distnet.Variable(rng.standard_normal((4, 4)).astype(np.float32), name=f"w{i}") for i in range(3)]
    backwards = []

    class Marked(Op):   # identity on the chain's input: records when backward reaches it
        def forward(self, x):
            return x

        def backward(self, g, needs):
            backwards.append("input")
            return (g,)

    x = distnet.Variable(rng.standard_normal((2, 4)).astype(np.float32), name="x")
    h = Marked.apply(x)
    for w in ws:
        h = distnet.nn.tanh(distnet.matmul(h, w))
    loss = distnet.reduce_sum(h)
    seen = []
    gradients(loss, [*ws, x], on_leaf=lambda i, g: seen.append((i, list(backwards))))
    assert [i for i, _ in seen] == [2, 1, 0, 3]
    # Every weight was complete before backward reached the input; x after it.
    assert [b for _, b in seen] == [[], [], [], ["input"]]
    plain = gradients(loss, [*ws, x])
    rec = _Recorder()
    gradients(loss, [*ws, x], on_leaf=rec)
    for i in range(4):
        np.testing.assert_array_equal(rec.received[i], plain[i])


def test_gradient_sink_lands_copies_accumulates_and_zero_fills(rng):
    """GradientSink (the strategies' hook): bitwise the plain gradients in its
    views; accumulating rounds as ``view += g``; None zero-fills (not when accumulating)."""
    loss, xs = _net(rng)
    plain = gradients(loss, xs)
    views = [np.full(x.shape, np.nan, np.float32) for x in xs]
    landed = []
    gradients(loss, xs, on_leaf=GradientSink(views, accumulate=False, on_final=landed.append))
    for v, p in zip(views, plain):
        np.testing.assert_array_equal(v, p)
    assert sorted(landed) == [0, 1, 2, 3] and not views[3].any()
    start = [rng.standard_normal(x.shape).astype(np.float32) for x in xs]
    want = [s.copy() for s in start]
    for w, g in zip(want, plain):
        w += g
    views = [s.copy() for s in start]
    gradients(loss, xs, on_leaf=GradientSink(views, accumulate=True))
    for v, w in zip(views, want):
        np.testing.assert_array_equal(v, w)


def test_gradients_into_a_sink_check_against_finite_differences(rng):
    """float64: what lands in the sink (accumulated onto zeros) is the true gradient."""
    w0 = rng.standard_normal((3, 2))
    f = lambda a: np.sum(np.tanh(a) * a)   # noqa: E731
    w = distnet.Variable(w0)
    buf = np.zeros((3, 2))
    gradients(distnet.reduce_sum(distnet.nn.tanh(w) * w), [w], on_leaf=GradientSink([buf], accumulate=True))
    eps = 1e-6
    num = np.zeros_like(buf)
    for idx in np.ndindex(buf.shape):
        d = np.zeros_like(buf)
        d[idx] = eps
        num[idx] = (f(w0 + d) - f(w0 - d)) / (2 * eps)
    np.testing.assert_allclose(buf, num, rtol=1e-6, atol=1e-8)


class _ScaleInto(Op):
    """y = a * w (w a vector), with a backward_out that writes dw into out."""

    __slots__ = ("a", "w", "calls")

    def forward(self, a, w):
        self.a, self.w, self.calls = a, w, []
        return a * w

    def backward(self, g, needs):
        self.calls.append("backward")
        return (g * self.w if needs[0] else None), ((g * self.a).sum(axis=0) if needs[1] else None)

    def backward_out(self, g, needs, outs):
        self.calls.append(("backward_out", tuple(o is not None for o in outs)))
        ga = g * self.w if needs[0] else None
        gw = None
        if needs[1]:
            gw = outs[1] if outs[1] is not None else np.empty(self.w.shape, self.w.dtype)
            np.sum(g * self.a, axis=0, out=gw)
        return ga, gw


def test_out_builds_the_gradients_in_the_given_arrays_bitwise(rng):
    loss, xs = _net(rng)
    plain = gradients(loss, xs)
    outs = [np.full(x.shape, np.nan, np.float32) for x in xs]
    rec = []
    gradients(loss, xs, out=outs, on_leaf=lambda i, g: rec.append((i, g)))
    for i in range(3):
        np.testing.assert_array_equal(outs[i], plain[i])
    assert all(g is outs[i] for i, g in rec if i < 3)        # the hook gets the out array itself
    assert dict(rec)[3] is None and np.isnan(outs[3]).all()   # unconnected: left as it was
    got = gradients(loss, xs, out=outs[:3] + [None])          # no hook: the list, built in out
    assert all(got[i] is outs[i] for i in range(3)) and not got[3].any()
    with pytest.raises(distnet.errors.InvalidArgumentError, match="out: Expect: one array"):
        gradients(loss, xs, out=outs[:2])


def test_backward_out_writes_the_first_contribution_straight_into_out(rng):
    a = distnet.Variable(rng.standard_normal((3, 4)).astype(np.float32))
    w = distnet.Variable(rng.standard_normal(4).astype(np.float32))
    y = _ScaleInto.apply(a, w)
    op = y._op
    loss = distnet.reduce_sum(y * y)
    plain = gradients(loss, [a, w])
    assert op.calls == ["backward"]
    outs = [np.full((3, 4), np.nan, np.float32), np.full(4, np.nan, np.float32)]
    op.calls.clear()
    received = {}
    gradients(loss, [a, w], out=outs, on_leaf=received.__setitem__)
    assert op.calls == [("backward_out", (True, True))]
    assert received[1] is outs[1]
    np.testing.assert_array_equal(outs[1], plain[1])
    np.testing.assert_array_equal(outs[0], plain[0])
    # Accumulating (GradientSink.out is None): the op is not handed arrays; the sink adds.
    op.calls.clear()
    sink = GradientSink(outs, accumulate=True)
    gradients(loss, [a, w], on_leaf=sink, out=sink.out)
    assert op.calls == ["backward"]
    np.testing.assert_array_equal(outs[1], plain[1] + plain[1])


def test_backward_out_is_not_used_once_out_holds_a_contribution(rng):
    # w used twice; whichever use comes second is added in place, never handed
    # to backward_out (which would overwrite the first).
    a = distnet.Variable(rng.standard_normal((3, 4)).astype(np.float32))
    w = distnet.Variable(rng.standard_normal(4).astype(np.float32))
    y = _ScaleInto.apply(a, w)
    loss = distnet.reduce_sum(y * y) + distnet.reduce_sum(w * w)
    plain = gradients(loss, [w])
    buf = np.full(4, np.nan, np.float32)
    gradients(loss, [w], out=[buf])
    np.testing.assert_array_equal(buf, plain[0])   # first use written, second added: as plain
    y2 = _ScaleInto.apply(a, w)
    z = _ScaleInto.apply(a, w)
    loss2 = distnet.reduce_sum(y2 * z)
    want = gradients(loss2, [w])[0]
    gradients(loss2, [w], out=[buf])
    np.testing.assert_array_equal(buf, want)
    outs_given = [c for c in y2._op.calls + z._op.calls if isinstance(c, tuple) and c[1][1]]
    assert len(outs_given) == 1
