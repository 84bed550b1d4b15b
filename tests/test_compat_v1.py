"""distnet.compat.v1: TF1's graph mode over distnet's ops (issue 13)."""
from __future__ import annotations

import collections
import subprocess
import sys

import numpy as np
import pytest

import distnet.compat.v1 as tf
from distnet.compat.v1.errors import FailedPreconditionError, UnsupportedError
from distnet.distributed import CollectiveError
from distnet.errors import DistnetError, InvalidArgumentError, ShapeError
from mpi_util import run_mpi


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


# -- graph, names, shapes ------------------------------------------------------------------

def test_names_are_tf1s_and_unique():
    a, b = tf.Variable([1.0]), tf.Variable([2.0])
    assert (a.name, b.name) == ("Variable:0", "Variable_1:0")
    with tf.name_scope("layer1"):
        c = tf.Variable([3.0])
        d = tf.add(c, 1.0, name="sum")
    with tf.name_scope("layer1"):
        e = tf.Variable([3.0])
    assert c.op.name == "layer1/Variable" and d.op.name == "layer1/sum" and e.op.name == "layer1_1/Variable"
    with tf.variable_scope("conv1"):
        w = tf.get_variable("weights", [2])
    with tf.variable_scope("conv1", reuse=True):
        assert tf.get_variable("weights") is w
    with pytest.raises(ValueError, match="already exists"):
        with tf.variable_scope("conv1"):
            tf.get_variable("weights", [2])
    assert w.op.name == "conv1/weights"


def test_static_shapes_follow_the_ops():
    x = tf.placeholder(tf.float32, [None, 784])
    h = tf.reshape(x, [-1, 28, 28, 1])
    assert h.shape.as_list() == [None, 28, 28, 1] and str(x.shape) == "(?, 784)"
    w = tf.Variable(tf.zeros([5, 5, 1, 32]))
    c = tf.nn.max_pool(tf.nn.conv2d(h, w, [1, 1, 1, 1], "SAME"), [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
    assert c.get_shape().as_list() == [None, 14, 14, 32]
    assert int(c.shape[1]) == 14 and c.shape[0].value is None
    assert tf.reduce_sum(c, [1, 2]).shape.as_list() == [None, 32]
    assert tf.placeholder(tf.float32).shape.ndims is None
    assert x.dtype == np.float32 and tf.argmax(x, 1).dtype == np.int64


def test_shape_errors_are_raised_where_the_op_is_made():
    x = tf.placeholder(tf.float32, [None, 784])
    with pytest.raises(ShapeError, match="matmul"):
        tf.matmul(x, tf.zeros([100, 10]))


def test_constant_value_and_shape():
    with tf.Session() as sess:
        assert sess.run(tf.constant(0.1, shape=[2, 2])).tolist() == [[np.float32(0.1)] * 2] * 2
        assert sess.run(tf.constant([1, 2], shape=[4])).tolist() == [1, 2, 2, 2]    # TF1 pads with the last
        assert sess.run(tf.constant([1, 2, 3, 4], shape=[2, 2])).tolist() == [[1, 2], [3, 4]]
        assert tf.constant(1.0).dtype == np.float32 and tf.constant(1).dtype == np.int32


# -- session --------------------------------------------------------------------------------

def test_run_accepts_nested_fetches_and_feeds():
    x = tf.placeholder(tf.float32, [None, 2])
    y = x * 2.0
    s = tf.reduce_sum(y)
    Pair = collections.namedtuple("Pair", "a b")
    with tf.Session() as sess:
        out = sess.run({"y": y, "nested": [s, (s, Pair(y, s))], "op": tf.no_op()}, feed_dict={x: [[1.0, 2.0]]})
        assert out["y"].tolist() == [[2.0, 4.0]] and out["nested"][0] == 6.0 and out["op"] is None
        assert isinstance(out["nested"][1], tuple) and out["nested"][1][1].b == 6.0
        assert sess.run(s.name, {x.name: [[1.0, 1.0]]}) == 4.0
        assert isinstance(sess.run(s, {x: [[1.0, 1.0]]}), np.float32)
        with pytest.raises(ValueError, match="Cannot feed value of shape \\(3,\\)"):
            sess.run(s, {x: [1.0, 2.0, 3.0]})
        with pytest.raises(DistnetError, match="You must feed a value for placeholder tensor 'Placeholder'"):
            sess.run(s)


def test_eval_and_run_use_the_default_session_and_uninitialized_reads_fail():
    v = tf.Variable(3.0)
    w = v * 2.0
    with pytest.raises(ValueError, match="No default session"):
        w.eval()
    sess = tf.InteractiveSession()
    with pytest.raises(FailedPreconditionError, match="uninitialized value Variable"):
        w.eval()
    tf.global_variables_initializer().run()
    assert w.eval() == 6.0
    tf.assign(v, 5.0).op.run()
    assert v.eval() == 5.0
    sess.close()


def test_variables_belong_to_the_session():
    v = tf.Variable(1.0)
    inc = tf.assign_add(v, 1.0)
    with tf.Session() as s1, tf.Session() as s2:
        s1.run(v.initializer)
        s2.run(v.initializer)
        s1.run(inc)
        s1.run(inc)
        assert s1.run(v) == 3.0 and s2.run(v) == 1.0


def test_control_dependencies_run_in_the_order_given():
    v = tf.Variable(1.0)
    double = tf.assign(v, v * 2.0)
    plus = tf.assign(v, v + 3.0)
    with tf.control_dependencies([double, plus]):
        both = tf.no_op()
    with tf.Session() as sess:
        sess.run(v.initializer)
        sess.run(both)
        assert sess.run(v) == 5.0          # (1 * 2) + 3, not (1 + 3) * 2
        sess.run(tf.group(plus, double))
        assert sess.run(v) == 16.0


def test_random_ops_statistics_and_seeds():
    tf.set_random_seed(7)
    t = tf.truncated_normal([20000], mean=1.0, stddev=0.5)
    u = tf.random_uniform([20000], -2.0, 2.0)
    n = tf.random_normal([20000], stddev=3.0)
    with tf.Session() as sess:
        a, ua, na = sess.run([t, u, n])
        b = sess.run(t)
    assert np.all(np.abs(a - 1.0) <= 1.0) and abs(a.mean() - 1.0) < 0.02
    assert abs(a.std() - 0.5 * 0.8796) < 0.01            # the truncated normal's std
    assert ua.min() >= -2.0 and ua.max() < 2.0 and abs(ua.mean()) < 0.05
    assert abs(na.std() - 3.0) < 0.1
    assert not np.array_equal(a, b)                      # a new draw every run
    with tf.Session() as sess:
        assert np.array_equal(sess.run(t), a)            # the same sequence in a new session


# -- gradients and training ----------------------------------------------------------------------

def test_gradients_float64_against_finite_differences():
    x = tf.placeholder(tf.float64, [3, 2])
    w = tf.Variable(np.array([[0.3], [-0.2]]))
    loss = tf.reduce_mean(tf.square(tf.nn.tanh(tf.matmul(x, w)) - 0.5)) + tf.nn.l2_loss(w)
    (gw,) = tf.gradients(loss, [w])
    assert tf.gradients(loss, [tf.Variable(1.0)]) == [None]
    data = np.random.default_rng(0).standard_normal((3, 2))
    with tf.Session() as sess:
        sess.run(w.initializer)
        g = sess.run(gw, {x: data})

        def f(wv):
            return np.mean((np.tanh(data @ wv) - 0.5) ** 2) + 0.5 * np.sum(wv ** 2)

        w0 = sess.run(w)
        num = np.zeros_like(w0)
        for i in range(2):
            e = np.zeros_like(w0)
            e[i, 0] = 1e-6
            num[i, 0] = (f(w0 + e) - f(w0 - e)) / 2e-6
    np.testing.assert_allclose(g, num, rtol=1e-6)


def test_minimize_in_a_loop_never_reuses_an_old_step():
    # The native trap of issue 13 ("the loss stayed at 125.0"): here each run recomputes.
    w = tf.Variable([5.0, 10.0])
    loss = tf.reduce_sum(w * w)
    train = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        seen = [sess.run([train, loss])[1] for _ in range(3)]
    assert seen == [125.0, 80.0, pytest.approx(51.2)]


def test_optimizers_first_steps_by_hand_with_global_step_and_decay():
    gs = tf.train.get_or_create_global_step()
    lr = tf.train.exponential_decay(0.1, gs, 1, 0.5, staircase=True)
    w = tf.Variable([1.0])
    m = tf.Variable([1.0])
    a = tf.Variable([1.0])
    step_gd = tf.train.GradientDescentOptimizer(lr).minimize(tf.reduce_sum(3.0 * w), global_step=gs)
    step_m = tf.train.MomentumOptimizer(0.1, 0.9).minimize(tf.reduce_sum(2.0 * m))
    step_a = tf.train.AdamOptimizer(0.1).minimize(tf.reduce_sum(2.0 * a))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(2):
            sess.run([step_gd, step_m, step_a])
        assert gs.dtype == np.int64 and sess.run(gs) == 2
        np.testing.assert_allclose(sess.run(w), [1.0 - 0.3 - 0.15], rtol=1e-6)      # lr 0.1 then 0.05
        np.testing.assert_allclose(sess.run(m), [1.0 - 0.2 - 0.1 * (0.9 * 2 + 2)], rtol=1e-6)
        np.testing.assert_allclose(sess.run(a), [1.0 - 0.2], rtol=1e-5)             # Adam: lr * sign at first


def test_ema_with_num_updates_and_its_shadow_names():
    w = tf.Variable(0.0)
    gs = tf.Variable(0, trainable=False)
    ema = tf.train.ExponentialMovingAverage(0.99, gs)
    op = ema.apply([w])
    shadow = ema.average(w)
    assert shadow.op.name == "Variable/ExponentialMovingAverage" == ema.average_name(w)
    assert shadow in tf.global_variables() and shadow not in tf.trainable_variables()
    assert w in tf.moving_average_variables()
    assert sorted(ema.variables_to_restore()) == ["Variable/ExponentialMovingAverage", "Variable_1"]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        with pytest.raises(DistnetError, match="uninitialized"):
            with tf.Session() as other:
                other.run(op)
        sess.run(tf.assign(w, 1.0))
        sess.run(op)
        assert sess.run(shadow) == np.float32(0.9)


def test_layers_and_collected_regularization():
    x = tf.placeholder(tf.float32, [None, 4])
    h = tf.layers.dense(x, 3, activation=tf.nn.relu, kernel_regularizer=tf.contrib.layers.l2_regularizer(0.1))
    y = tf.layers.dense(h, 2)
    names = [v.op.name for v in tf.trainable_variables()]
    assert names == ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
    assert y.shape.as_list() == [None, 2]
    regs = tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)
    assert len(regs) == 1
    tf.losses.mean_squared_error(tf.zeros_like(y), y)
    total = tf.losses.get_total_loss()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        k = sess.run(tf.trainable_variables()[0])
        assert sess.run(tf.losses.get_regularization_loss()) == pytest.approx(0.1 * (k ** 2).sum() / 2, rel=1e-6)
        feed = {x: np.ones((2, 4), np.float32)}
        mse = sess.run(tf.reduce_mean(tf.square(y)), feed)
        assert sess.run(total, feed) == pytest.approx(mse + 0.1 * (k ** 2).sum() / 2, rel=1e-6)


def test_where_selects_rows_like_tf1_and_cross_entropy_v1_stops_label_gradients():
    c = tf.constant([True, False])
    x = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    lab = tf.Variable([[0.2, 0.8]])
    logits = tf.Variable([[1.0, 2.0]])
    v1 = tf.nn.softmax_cross_entropy_with_logits(labels=lab, logits=logits)
    v2 = tf.nn.softmax_cross_entropy_with_logits_v2(labels=lab, logits=logits)
    with tf.Session() as sess:
        assert sess.run(tf.where(c, x, -x)).tolist() == [[1.0, 2.0], [-3.0, -4.0]]
        assert sess.run(tf.where_v2(c, x, -x)).tolist() == [[1.0, -2.0], [3.0, -4.0]]
        sess.run(tf.global_variables_initializer())
        assert sess.run(tf.gradients(v1, [lab])[0]).tolist() == [[0.0, 0.0]]
        assert np.abs(sess.run(tf.gradients(v2, [lab])[0])).sum() > 0
        p = np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum()
        np.testing.assert_allclose(sess.run(tf.gradients(v1, [logits])[0]), [p - [0.2, 0.8]], rtol=1e-6)


def test_dropout_keeps_about_keep_prob_and_scales():
    tf.set_random_seed(3)
    kp = tf.placeholder(tf.float32)
    d = tf.nn.dropout(tf.ones([200, 100]), kp)
    with tf.Session() as sess:
        out = sess.run(d, {kp: 0.5})
        assert set(np.unique(out).tolist()) == {0.0, 2.0} and abs((out > 0).mean() - 0.5) < 0.02
        assert np.array_equal(sess.run(d, {kp: 1.0}), np.ones((200, 100), np.float32))


def test_saver_round_trip_and_latest_checkpoint(tmp_path):
    v = tf.Variable([1.0, 2.0], name="weights")
    gs = tf.train.get_or_create_global_step()
    train = tf.train.AdamOptimizer(0.1).minimize(tf.reduce_sum(v * v), global_step=gs)
    saver = tf.train.Saver(max_to_keep=1)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(train)
        p1 = saver.save(sess, str(tmp_path / "m.ckpt"), global_step=gs)
        sess.run(train)
        p2 = saver.save(sess, str(tmp_path / "m.ckpt"), global_step=gs)
        want = sess.run(v)
        sess.run(train)
        third = sess.run(v)
    assert p1.endswith("m.ckpt-1") and p2.endswith("m.ckpt-2")
    assert tf.train.latest_checkpoint(str(tmp_path)) == p2 and not (tmp_path / "m.ckpt-1").exists()
    with tf.Session() as sess:
        saver.restore(sess, tf.train.latest_checkpoint(str(tmp_path)))
        np.testing.assert_array_equal(sess.run(v), want)
        assert sess.run(gs) == 2
        sess.run(train)                           # Adam resumes from its saved slots: the same third step
        np.testing.assert_array_equal(sess.run(v), third)
    with tf.Session() as sess:
        with pytest.raises(DistnetError, match="Failed to find any matching files"):
            saver.restore(sess, str(tmp_path / "nope"))


# -- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,name,nearest", [
    ("train", "FtrlOptimizer", "tf.train.AdagradOptimizer"),
    ("", "py_func", "through a placeholder"),
    ("train", "ProximalAdagradOptimizer", "tf.train.AdagradOptimizer"),
    ("train", "AdamOptimiser", "tf.train.AdamOptimizer"),
])
def test_unsupported_apis_name_themselves_and_the_nearest(path, name, nearest):
    ns = tf
    for part in filter(None, path.split(".")):
        ns = getattr(ns, part)
    with pytest.raises(UnsupportedError) as err:
        getattr(ns, name)
    msg = str(err.value)
    assert f"tf.{path + '.' if path else ''}{name} is not supported by distnet.compat.v1" in msg
    assert nearest in msg and "docs/tf1.md" in msg
    assert not hasattr(ns, name)


def test_summaries_are_written_as_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboardX", reason="the tensorboard extra: pip install -e '.[test]'")
    from tensorboard.backend.event_processing import event_accumulator

    w = tf.Variable([1.0, 2.0, 3.0])
    step = tf.placeholder(tf.float32, [])
    with tf.name_scope("train"):
        tf.summary.scalar("loss", tf.reduce_sum(w) * step)
    tf.summary.histogram("weights", w)
    merged = tf.summary.merge_all()
    with tf.Session() as sess:
        sess.run(w.initializer)
        writer = tf.summary.FileWriter(str(tmp_path), sess.graph)
        for i in range(3):
            writer.add_summary(sess.run(merged, {step: float(i)}), i)
        writer.close()
    acc = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    assert acc.Tags()["scalars"] == ["train/loss"]
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(0, 0.0), (1, 6.0), (2, 12.0)]
    hist = acc.Histograms("weights")
    assert [h.step for h in hist] == [0, 1, 2] and hist[0].histogram_value.num == 3
    assert hist[0].histogram_value.sum == pytest.approx(6.0)
    with pytest.raises(TypeError, match="value of a summary op"):
        tf.summary.FileWriter(str(tmp_path)).add_summary(1.0, 0)
    with pytest.raises(UnsupportedError, match="tf.summary.initialize is not supported by distnet.compat.v1"):
        tf.summary.initialize()


def test_importing_it_imports_no_tensorflow():
    code = "import sys, distnet.compat.v1 as tf; print(sorted(m for m in sys.modules if 'tensorflow' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 3])
def test_distributed_optimizer_equals_one_process_on_uneven_shards(tmp_path, n):
    run = run_mpi("compat_distributed.py", n, str(tmp_path), timeout=180)
    assert run.returncode == 0, run.describe()
    checks = run.values("check")
    assert [c.split()[0] for c in checks] == ["mean", "sum", "saver", "summaries"], run.describe()
    assert all(float(c.split()[1]) < 1e-6 for c in checks[:2]), run.describe()
    assert sorted(run.values("done")) == [f"rank {r}" for r in range(n)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "model.ckpt-0", "tb"]


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 3])
def test_distributed_optimizer_on_the_strategies(tmp_path, n):
    """tests/mpi_scripts/compat_distributed_strategies.py: replicated, ZeRO-1, overlap and
    float16 equal one process; a global-norm clip between compute_gradients and
    apply_gradients clips the global gradient; a non-finite step is skipped on every rank."""
    run = run_mpi("compat_distributed_strategies.py", n, str(tmp_path), timeout=300)
    assert run.returncode == 0, run.describe()
    checks = run.values("check")
    assert [c.split()[0] for c in checks] == ["replicated", "zero1", "overlap", "float16", "clip_replicated",
                                              "clip_zero1", "guard_replicated", "guard_zero1"], run.describe()
    assert sorted(run.values("done")) == [f"rank {r}" for r in range(n)]


def test_distributed_optimizer_options_are_checked():
    with pytest.raises(InvalidArgumentError, match="strategy: Expect: one of .*'replicated'.* Actual: 'ring'"):
        tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1), strategy="ring")
    with pytest.raises(InvalidArgumentError, match="sharded=True is strategy='zero1'"):
        tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1), strategy="replicated", sharded=True)
    with pytest.raises(InvalidArgumentError, match="shared_memory: Expect: False"):   # replicated as well
        tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1), overlap=True, shared_memory=True)
    with pytest.raises(InvalidArgumentError, match="shared_memory: Expect: False"):
        tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1), sharded=True, shared_memory=True)
    opt = tf.train.GradientDescentOptimizer(0.1)
    tf.DistributedOptimizer(opt)
    with pytest.raises(InvalidArgumentError, match="wrapped once"):
        tf.DistributedOptimizer(opt)


def test_distributed_optimizer_skips_a_non_finite_step_in_one_process():
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 1])
        w = tf.Variable([2.0])
        step = tf.train.get_or_create_global_step()
        train = tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.5), max_bad_steps=2).minimize(
            tf.reduce_mean(x * w), global_step=step)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            with pytest.warns(Warning, match="step skipped"):
                sess.run(train, {x: [[np.nan]]})
            assert sess.run(w).tolist() == [2.0] and sess.run(step) == 0
            sess.run(train, {x: [[1.0]]})
            assert sess.run(w).tolist() == [1.5] and sess.run(step) == 1
            with pytest.warns(Warning):
                sess.run(train, {x: [[np.inf]]})
            with pytest.raises(CollectiveError, match="2 consecutive steps"):
                sess.run(train, {x: [[np.nan]]})


def test_rmsprop_and_adagrad_first_step_by_hand():
    r, a = tf.Variable([1.0]), tf.Variable([1.0])
    step_r = tf.train.RMSPropOptimizer(0.1, decay=0.9).minimize(tf.reduce_sum(2.0 * r))
    step_a = tf.train.AdagradOptimizer(0.1).minimize(tf.reduce_sum(2.0 * a))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run([step_r, step_a])
        ms = 0.9 * 1.0 + 0.1 * 4.0                       # TF1: the mean square starts at ones
        np.testing.assert_allclose(sess.run(r), [1.0 - 0.1 * 2.0 / np.sqrt(ms + 1e-10)], rtol=1e-6)
        np.testing.assert_allclose(sess.run(a), [1.0 - 0.1 * 2.0 / np.sqrt(0.1 + 4.0)], rtol=1e-6)


def test_decays_of_global_step():
    gs = tf.Variable(0, trainable=False)
    pw = tf.train.piecewise_constant(gs, [2, 4], [1.0, 0.5, 0.1])
    poly = tf.train.polynomial_decay(1.0, gs, 4, end_learning_rate=0.0)
    cos = tf.train.cosine_decay(1.0, gs, 4)
    inc = tf.assign_add(gs, 1)
    with tf.Session() as sess:
        sess.run(gs.initializer)
        seen = []
        for _ in range(6):
            seen.append([float(v) for v in sess.run([pw, poly, cos])])
            sess.run(inc)
    np.testing.assert_allclose([s[0] for s in seen], [1.0, 1.0, 1.0, 0.5, 0.5, 0.1])   # values[0] while step <= 2
    np.testing.assert_allclose([s[1] for s in seen], [1.0, 0.75, 0.5, 0.25, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose([s[2] for s in seen], [0.5 * (1 + np.cos(np.pi * min(t, 4) / 4)) for t in range(6)],
                               atol=1e-7)
    with pytest.raises(ValueError, match="global_step is required"):
        tf.train.exponential_decay(0.1, None, 10, 0.9)


def test_losses_identity_stop_gradient_in_top_k_and_apply_regularization():
    logits = tf.Variable([[2.0, 1.0, 0.1], [0.5, 2.5, 0.2]])
    onehot = tf.constant([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    ce = tf.losses.softmax_cross_entropy(onehot, logits)
    sce = tf.losses.sparse_softmax_cross_entropy(tf.constant([0, 2]), logits)
    assert tf.get_collection(tf.GraphKeys.LOSSES) == [ce, sce]
    g_id, = tf.gradients(tf.reduce_sum(tf.identity(logits) * 3.0), [logits])
    g_stop, = tf.gradients(tf.reduce_sum(tf.stop_gradient(logits) * logits), [logits])
    top1 = tf.nn.in_top_k(tf.constant([[0.1, 0.9, 0.9], [0.3, 0.2, 0.5]]), tf.constant([2, 0]), 1)
    top2 = tf.nn.in_top_k(tf.constant([[0.1, 0.9, 0.9], [0.3, 0.2, 0.5]]), tf.constant([2, 0]), 2)
    w1, w2 = tf.constant([[1.0, -2.0]]), tf.constant([3.0])
    reg = tf.contrib.layers.apply_regularization(tf.contrib.layers.l1_regularizer(0.5), [w1, w2])
    with tf.Session() as sess:
        sess.run(logits.initializer)
        z = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.2]])
        lse = np.log(np.exp(z).sum(1))
        assert sess.run(ce) == pytest.approx(np.mean(lse - z[[0, 1], [0, 2]]), rel=1e-6)
        assert sess.run(sce) == pytest.approx(sess.run(ce), rel=1e-6)
        assert np.all(sess.run(g_id) == 3.0)
        np.testing.assert_allclose(sess.run(g_stop), z, rtol=1e-6)       # only the second factor differentiates
        assert sess.run(top1).tolist() == [True, False]                  # a tie with the target counts (TF1)
        assert sess.run(top2).tolist() == [True, True]
        assert sess.run(reg) == 3.0 and tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES) == [reg]


def test_layers_dropout_follows_the_training_flag():
    tf.set_random_seed(0)
    x = tf.ones([100, 50])
    training = tf.placeholder(tf.bool, [])
    d = tf.layers.dropout(x, rate=0.25, training=training)
    off = tf.layers.dropout(x, rate=0.25)
    with tf.Session() as sess:
        on = sess.run(d, {training: True})
        kept = np.unique(on[on != 0])
        assert len(kept) == 1 and kept[0] == pytest.approx(1 / 0.75)
        assert abs((on == 0).mean() - 0.25) < 0.03
        assert np.array_equal(sess.run(d, {training: False}), np.ones((100, 50), np.float32))
        assert np.array_equal(sess.run(off), np.ones((100, 50), np.float32))


@pytest.mark.mpi
def test_a_failing_rank_ends_the_whole_tf1_job_with_its_error():
    run = run_mpi("compat_fail.py", 2, timeout=60)
    assert run.returncode != 0, run.describe()
    assert "Cannot feed value of shape (4, 5)" in run.stderr and "[rank 1]" in run.stderr, run.describe()
    assert "unreachable on rank 1" not in run.stdout


def test_distributed_optimizers_of_one_graph_must_agree_on_batch_norm_sync():
    # One batch normalization op serves every optimizer of a graph, so a second
    # DistributedOptimizer with other settings is refused instead of silently winning.
    with tf.Graph().as_default() as g:
        tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1))
        tf.DistributedOptimizer(tf.train.AdamOptimizer(0.1))          # same settings: accepted
        assert g.batch_norm_sync() == (True, "mean")
        inner = tf.train.GradientDescentOptimizer(0.1)
        with pytest.raises(InvalidArgumentError, match="sync_batch_norm=False, loss_reduction='mean'"):
            tf.DistributedOptimizer(inner, sync_batch_norm=False)
        assert inner._applier is None and g.batch_norm_sync() == (True, "mean")
        with pytest.raises(InvalidArgumentError, match="loss_reduction='sum'"):
            tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1), loss_reduction="sum")
