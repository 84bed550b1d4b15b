"""Optimizers: first three steps against hand-computed TF1 values, state, clipping, errors."""
import math

import numpy as np
import pytest

import distnet
from distnet.errors import CheckpointError, DistnetError, InvalidArgumentError, ShapeError
from distnet.optimizers import (Adagrad, Adam, AdamW, GradientDescent, Momentum, RMSProp,
                                clip_by_global_norm, global_norm)
from distnet.model.schedules import exponential_decay

W0 = [1.0, -2.0]
GRADS = [np.array([0.5, -1.0]), np.array([0.25, 2.0]), np.array([-1.0, 0.5])]


def run(opt, w0=W0, grads=GRADS, dtype=np.float64):
    v = distnet.Variable(np.array(w0, dtype=dtype), name="w")
    out = []
    for g in grads:
        opt.apply_gradients([(g.astype(dtype), v)])
        out.append(v.data.copy())
    return v, out


def test_gradient_descent_three_steps():
    _, ws = run(GradientDescent(0.1))
    # w -= 0.1 * g, by hand
    np.testing.assert_allclose(ws[0], [0.95, -1.9])
    np.testing.assert_allclose(ws[1], [0.925, -2.1])
    np.testing.assert_allclose(ws[2], [1.025, -2.15])


def test_momentum_three_steps():
    _, ws = run(Momentum(0.1, momentum=0.9))
    # accum: [0.5,-1] -> [0.7, 1.1] -> [-0.37, 1.49]; w -= 0.1 * accum
    np.testing.assert_allclose(ws[0], [0.95, -1.9])
    np.testing.assert_allclose(ws[1], [0.88, -2.01])
    np.testing.assert_allclose(ws[2], [0.917, -2.159])


def test_momentum_nesterov_three_steps():
    _, ws = run(Momentum(0.1, momentum=0.9, use_nesterov=True))
    # w -= lr*g + lr*mu*accum with the new accum
    # step1: accum [0.5,-1]: delta 0.1*[0.5,-1] + 0.09*[0.5,-1] = [0.095,-0.19]
    np.testing.assert_allclose(ws[0], [0.905, -1.81])
    # step2: accum [0.7,1.1]: delta [0.025+0.063, 0.2+0.099] = [0.088, 0.299]
    np.testing.assert_allclose(ws[1], [0.817, -2.109])
    # step3: accum [-0.37,1.49]: delta [-0.1-0.0333, 0.05+0.1341]
    np.testing.assert_allclose(ws[2], [0.9503, -2.2931])


def adam_reference(w0, grads, lr, b1, b2, eps, wd=0.0):
    w = [float(x) for x in w0]
    m = [0.0] * len(w)
    v = [0.0] * len(w)
    out = []
    for t, g in enumerate(grads, start=1):
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for i, gi in enumerate(g):
            w[i] -= lr * wd * w[i]
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            w[i] -= lr_t * m[i] / (math.sqrt(v[i]) + eps)
        out.append(list(w))
    return out


def test_adam_three_steps_tf1_epsilon_hat():
    _, ws = run(Adam(0.1))
    ref = adam_reference(W0, GRADS, 0.1, 0.9, 0.999, 1e-8)
    for got, want in zip(ws, ref):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # First step of Adam moves every weight by ~lr against the gradient's sign.
    np.testing.assert_allclose(ws[0], [0.9, -1.9], rtol=1e-6)


def test_adam_epsilon_placement_is_tf1_not_pytorch():
    # With a large epsilon the two placements differ clearly at step 1:
    # TF1: lr*sqrt(1-b2)/(1-b1) * m/(sqrt(v)+eps); PyTorch: lr * m_hat/(sqrt(v_hat)+eps).
    g = np.array([0.5])
    v = distnet.Variable(np.array([0.0]), name="w")
    Adam(1.0, epsilon=0.1).apply_gradients([(g, v)])
    m, vv = 0.1 * 0.5, 0.001 * 0.25
    tf1 = -(math.sqrt(0.001) / 0.1) * m / (math.sqrt(vv) + 0.1)
    pytorch = -(m / 0.1) / (math.sqrt(vv / 0.001) + 0.1)
    assert v.data[0] == pytest.approx(tf1, rel=1e-12)
    assert abs(tf1 - pytorch) > 0.1


def test_adamw_three_steps():
    _, ws = run(AdamW(0.1, weight_decay=0.5))
    ref = adam_reference(W0, GRADS, 0.1, 0.9, 0.999, 1e-8, wd=0.5)
    for got, want in zip(ws, ref):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # zero gradient: only the decay acts, var *= 1 - lr*wd
    v = distnet.Variable(np.array([2.0]), name="w")
    AdamW(0.1, weight_decay=0.5).apply_gradients([(np.zeros(1), v)])
    assert v.data[0] == pytest.approx(2.0 * 0.95)


def test_adamw_decay_filter_skips_bias():
    b = distnet.Variable(np.array([2.0]), name="dense/bias")
    AdamW(0.1, weight_decay=0.5, decay_filter=lambda n: not n.endswith("bias")).apply_gradients([(np.zeros(1), b)])
    assert b.data[0] == 2.0


def test_rmsprop_three_steps_ms_starts_at_ones():
    _, ws = run(RMSProp(0.1, decay=0.9))
    w, ms = list(W0), [1.0, 1.0]
    for g, got in zip(GRADS, ws):
        for i in range(2):
            ms[i] = 0.9 * ms[i] + 0.1 * g[i] ** 2
            w[i] -= 0.1 * g[i] / math.sqrt(ms[i] + 1e-10)
        np.testing.assert_allclose(got, w, rtol=1e-12)
    # by hand, step 1: ms = 0.9 + 0.1*0.25 = 0.925; w0 -= 0.1*0.5/sqrt(0.925)
    assert ws[0][0] == pytest.approx(1.0 - 0.05 / math.sqrt(0.925))


def test_rmsprop_momentum_centered_three_steps():
    _, ws = run(RMSProp(0.1, decay=0.9, momentum=0.5, epsilon=1e-6, centered=True))
    w, ms, mg, mom = list(W0), [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]
    for g, got in zip(GRADS, ws):
        for i in range(2):
            ms[i] = 0.9 * ms[i] + 0.1 * g[i] ** 2
            mg[i] = 0.9 * mg[i] + 0.1 * g[i]
            mom[i] = 0.5 * mom[i] + 0.1 * g[i] / math.sqrt(ms[i] - mg[i] ** 2 + 1e-6)
            w[i] -= mom[i]
        np.testing.assert_allclose(got, w, rtol=1e-12)


def test_adagrad_three_steps():
    _, ws = run(Adagrad(0.1))
    w, acc = list(W0), [0.1, 0.1]
    for g, got in zip(GRADS, ws):
        for i in range(2):
            acc[i] += g[i] ** 2
            w[i] -= 0.1 * g[i] / math.sqrt(acc[i])
        np.testing.assert_allclose(got, w, rtol=1e-12)
    assert ws[0][0] == pytest.approx(1.0 - 0.05 / math.sqrt(0.35))


def test_float32_update_stays_float32_in_place():
    v = distnet.Variable(np.array([1.0, 2.0], dtype=np.float32), name="w")
    buf = v.data
    opt = Adam(0.01)
    opt.apply_gradients([(np.array([0.1, 0.2], dtype=np.float32), v)])
    assert v.data is buf and v.data.dtype == np.float32
    assert opt.get_slot(v, "m").dtype == np.float32


def test_iterations_and_schedule_use_step_before_increment():
    lr = exponential_decay(1.0, decay_steps=1, decay_rate=0.5)
    opt = GradientDescent(lr)
    v = distnet.Variable(np.array([0.0]), name="w")
    for _ in range(3):
        opt.apply_gradients([(np.array([1.0]), v)])
    # steps used lr(0)=1, lr(1)=0.5, lr(2)=0.25
    assert opt.iterations == 3
    assert v.data[0] == pytest.approx(-1.75)


def test_minimize_and_compute_gradients():
    w = distnet.Variable(np.array([3.0, -1.0]), name="w")
    opt = GradientDescent(0.25)
    gv = opt.compute_gradients(lambda: distnet.reduce_sum(w * w), [w])
    np.testing.assert_allclose(gv[0][0], [6.0, -2.0])
    assert gv[0][1] is w
    opt.minimize(lambda: distnet.reduce_sum(w * w), [w])
    np.testing.assert_allclose(w.data, [1.5, -0.5])
    assert opt.iterations == 1


def test_none_gradient_leaves_variable_alone():
    a = distnet.Variable(np.array([1.0]), name="a")
    b = distnet.Variable(np.array([1.0]), name="b")
    opt = Momentum(0.1)
    opt.apply_gradients([(None, a), (np.array([1.0]), b)])
    assert a.data[0] == 1.0 and b.data[0] == pytest.approx(0.9)


def test_clip_by_global_norm_function():
    clipped, norm = clip_by_global_norm([np.array([3.0]), None, np.array([4.0])], 1.0)
    assert norm == 5.0
    np.testing.assert_allclose(clipped[0], [0.6])
    assert clipped[1] is None
    np.testing.assert_allclose(clipped[2], [0.8])
    same, _ = clip_by_global_norm([np.array([0.3])], 1.0)
    np.testing.assert_allclose(same[0], [0.3])
    assert global_norm([np.array([1.0, 2.0]), np.array([2.0])]) == 3.0
    with pytest.raises(InvalidArgumentError, match="clip_norm"):
        clip_by_global_norm([np.array([1.0])], 0.0)


def test_global_clipnorm_option():
    a = distnet.Variable(np.array([0.0]), name="a")
    b = distnet.Variable(np.array([0.0]), name="b")
    GradientDescent(1.0, global_clipnorm=1.0).apply_gradients([(np.array([3.0]), a), (np.array([4.0]), b)])
    np.testing.assert_allclose([a.data[0], b.data[0]], [-0.6, -0.8])


def test_clipnorm_is_per_variable():
    a = distnet.Variable(np.array([0.0]), name="a")
    b = distnet.Variable(np.array([0.0]), name="b")
    GradientDescent(1.0, clipnorm=1.0).apply_gradients([(np.array([3.0]), a), (np.array([0.5]), b)])
    np.testing.assert_allclose([a.data[0], b.data[0]], [-1.0, -0.5])


def test_clip_transform_by_parts_gives_the_norms_of_whole_variables():
    """Clip over parts of variables (as a ZeRO-1 rank holds them): ``owners``
    maps each part to its variable, ``reduce`` sums the partial squares; the
    result is the whole variables' clipping, part by part, in place."""
    from distnet.optimizers.clipping import Clip

    whole = [np.array([3.0, 4.0]), np.array([12.0])]          # norms 5 and 12; global 13
    parts = [np.array([3.0]), np.array([4.0]), np.array([12.0])]
    owners = [0, 0, 1]
    reduced = []
    got = Clip(clipnorm=10.0)(parts, owners=owners, variables=2, reduce=reduced.append, in_place=True)
    assert got is parts and len(reduced) == 1 and reduced[0].tolist() == [25.0, 144.0]
    np.testing.assert_allclose(np.concatenate(parts), [3.0, 4.0, 10.0])   # only the 12 exceeds 10
    parts = [np.array([3.0]), np.array([4.0]), np.array([12.0])]
    Clip(global_clipnorm=6.5)(parts, owners=owners, variables=2, in_place=True)
    np.testing.assert_allclose(np.concatenate(parts), np.array([3.0, 4.0, 12.0]) / 2)
    # Out of place (the optimizer's apply_gradients): the inputs stay as they were.
    out = Clip(global_clipnorm=6.5)(whole)
    np.testing.assert_allclose(out[1], [6.0]) and np.testing.assert_allclose(whole[1], [12.0])
    with pytest.raises(InvalidArgumentError, match="global_clipnorm: the norm of the gradients: Expect: a finite number Actual: inf"):
        Clip(global_clipnorm=1.0)([np.array([np.inf])])
    with pytest.raises(InvalidArgumentError, match="clipnorm: Expect: a finite number > 0"):
        Clip(clipnorm=-1.0)


def test_apply_update_is_the_rule_without_the_clipping():
    a = distnet.Variable(np.array([0.0]), name="a")
    opt = GradientDescent(1.0, global_clipnorm=1.0)
    opt.apply_update([(np.array([3.0]), a)])
    assert a.data[0] == -3.0 and opt.iterations == 1
    opt.apply_gradients([(np.array([3.0]), a)])
    assert a.data[0] == -4.0 and opt.iterations == 2


def test_state_dict_roundtrip_continues_identically():
    v1 = distnet.Variable(np.array([1.0, -2.0]), name="w")
    opt1 = Adam(0.1)
    opt1.apply_gradients([(GRADS[0], v1)])
    state = opt1.state_dict()
    assert state["iterations"] == 1 and set(state["slots"]) == {"m", "v"}
    v2 = distnet.Variable(v1.data, name="w")
    opt2 = Adam(0.1)
    opt2.build([v2])
    opt2.load_state_dict(state)
    for g in GRADS[1:]:
        opt1.apply_gradients([(g, v1)])
        opt2.apply_gradients([(g, v2)])
    np.testing.assert_array_equal(v1.data, v2.data)
    np.testing.assert_array_equal(opt1.get_slot(v1, "v"), opt2.get_slot(v2, "v"))


def test_load_state_dict_is_strict_and_lists_all_problems():
    a = distnet.Variable(np.zeros(2), name="a")
    b = distnet.Variable(np.zeros(3), name="b")
    opt = Adam()
    opt.build([a, b])
    bad = {"iterations": 4, "slots": {"m": {"a": np.zeros(5), "c": np.zeros(1)}, "v": {"a": np.zeros(2), "b": np.zeros(3)}}}
    with pytest.raises(CheckpointError) as err:
        opt.load_state_dict(bad)
    msg = str(err.value)
    assert "missing variables ['b']" in msg and "unexpected variables ['c']" in msg and "(5,)" in msg
    assert opt.iterations == 0
    fresh = Adam()
    with pytest.raises(CheckpointError, match="build"):
        fresh.load_state_dict({"iterations": 0, "slots": {"m": {"a": np.zeros(2)}, "v": {"a": np.zeros(2)}}})


def test_slot_names_and_get_slot():
    v = distnet.Variable(np.zeros(3), name="w")
    opt = RMSProp(0.1)
    opt.build([v])
    assert opt.slot_names == ("rms", "momentum")
    np.testing.assert_array_equal(opt.get_slot(v, "rms"), np.ones(3))
    assert RMSProp(0.1, centered=True).slot_names == ("rms", "momentum", "mg")
    a = Adagrad(0.1, initial_accumulator_value=0.3)
    a.build([v])
    np.testing.assert_allclose(a.get_slot(v, "accumulator"), 0.3)
    with pytest.raises(InvalidArgumentError, match="no slot 'x'"):
        opt.get_slot(v, "x")


@pytest.mark.parametrize("make, word", [
    (lambda: GradientDescent(0.0), "learning_rate"),
    (lambda: GradientDescent(-1.0), "learning_rate"),
    (lambda: Adam(beta1=1.0), "beta1"),
    (lambda: Adam(beta2=-0.1), "beta2"),
    (lambda: Adam(epsilon=0.0), "epsilon"),
    (lambda: Momentum(0.1, momentum=-0.5), "momentum"),
    (lambda: RMSProp(0.1, decay=1.5), "decay"),
    (lambda: Adagrad(0.1, initial_accumulator_value=0.0), "initial_accumulator_value"),
    (lambda: AdamW(weight_decay=-1.0), "weight_decay"),
    (lambda: GradientDescent(0.1, global_clipnorm=0), "global_clipnorm"),
])
def test_bad_hyper_parameters(make, word):
    with pytest.raises(InvalidArgumentError, match=word):
        make()


def test_bad_gradients_and_names():
    v = distnet.Variable(np.zeros(2), name="w")
    opt = GradientDescent(0.1)
    with pytest.raises(ShapeError, match=r"Expect: \(2,\) Actual: \(3,\)"):
        opt.apply_gradients([(np.zeros(3), v)])
    w2 = distnet.Variable(np.zeros(2), name="w")
    with pytest.raises(InvalidArgumentError, match="duplicates"):
        opt.apply_gradients([(np.zeros(2), v), (np.zeros(2), w2)])
    with pytest.raises(DistnetError, match="Variable"):
        opt.apply_gradients([(np.zeros(2), distnet.constant([1.0, 2.0]))])
    neg = GradientDescent(lambda step: -1.0)
    with pytest.raises(InvalidArgumentError, match="learning rate at step 0"):
        neg.apply_gradients([(np.zeros(2), v)])


# -- cache-sized chunks ---------------------------------------------------------
CHUNKED = [
    ("gd", lambda: GradientDescent(0.1)),
    ("momentum", lambda: Momentum(0.1, momentum=0.9)),
    ("nesterov", lambda: Momentum(0.1, momentum=0.9, use_nesterov=True)),
    ("adam", lambda: Adam(0.01)),
    ("adamw", lambda: AdamW(0.01, weight_decay=0.1)),
    ("adagrad", lambda: Adagrad(0.1)),
    ("rmsprop", lambda: RMSProp(0.01, momentum=0.5, centered=True)),
]


@pytest.mark.parametrize("name,make", CHUNKED, ids=[c[0] for c in CHUNKED])
def test_chunked_update_equals_whole_array_update(name, make):
    """Chunks of 7 elements (cutting through rows; the last one short) give
    bit for bit the whole-array update, slots included, in float32."""
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((9, 13)).astype(np.float32)
    grads = [rng.standard_normal((9, 13)).astype(np.float32) for _ in range(4)]
    results = []
    for chunk in (7, 10**9):
        opt = make()
        opt.chunk_size = chunk
        v = distnet.Variable(w0, name="w")
        for g in grads:
            opt.apply_gradients([(g, v)])
        results.append((v.data.copy(), opt.state_dict()["slots"]))
    (w_small, s_small), (w_whole, s_whole) = results
    assert not np.array_equal(w_small, w0)
    assert np.array_equal(w_small, w_whole)
    for slot in s_whole:
        assert np.array_equal(s_small[slot]["w"], s_whole[slot]["w"]), slot


def test_chunked_adam_matches_the_closed_form_in_float64():
    """Independent of the implementation: TF1's Adam in float64 numpy, whole
    arrays, against the default (chunked) optimizer on 100 003 elements."""
    rng = np.random.default_rng(2)
    n = 100_003   # several default chunks and a short last one
    w = rng.standard_normal(n)
    grads = [rng.standard_normal(n) for _ in range(3)]
    opt = Adam(0.01)
    assert opt.chunk_size < n
    v = distnet.Variable(w.copy(), name="w")
    m = np.zeros(n)
    s = np.zeros(n)
    for t, g in enumerate(grads, start=1):
        opt.apply_gradients([(g, v)])
        m = 0.9 * m + 0.1 * g
        s = 0.999 * s + 0.001 * g * g
        w = w - 0.01 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(s) + 1e-8)
    np.testing.assert_allclose(v.data, w, rtol=1e-12, atol=1e-12)


def test_scratch_is_chunk_sized_not_parameter_sized():
    opt = Adam(0.01)
    v = distnet.Variable(np.zeros(100_000, np.float32), name="big")
    opt.build([v])
    assert opt._scratch["big"].size == opt.chunk_size
