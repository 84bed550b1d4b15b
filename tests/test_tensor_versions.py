"""The native API's traps (issue 13): unnamed Variables get TF1's unique names;
a gradient through values of variables written since raises instead of being
silently stale; moving averages start at the variables' initial values."""
from __future__ import annotations

import numpy as np
import pytest

import distnet
from distnet.tensor import StaleGradientError, check_not_stale


def test_unnamed_variables_get_unique_tf1_names():
    a, b = distnet.Variable([1.0]), distnet.Variable([2.0])
    assert a.name != b.name
    for v in (a, b):
        assert v.name == "Variable" or (v.name.startswith("Variable_") and v.name[9:].isdigit())
    # The trap of the issue: minimize over two unnamed variables used to raise "names must be unique".
    opt = distnet.optimizers.GradientDescent(0.1)
    opt.minimize(lambda: distnet.reduce_sum(a * a + b * b), [a, b])
    np.testing.assert_allclose(a.numpy(), [0.8])
    np.testing.assert_allclose(b.numpy(), [1.6])
    assert distnet.Variable([0.0], name="w").name == "w"


def test_minimize_of_a_loss_built_before_the_step_raises_instead_of_reusing_it():
    w = distnet.Variable([5.0, 10.0])
    loss = distnet.reduce_sum(w * w)           # 125.0, built once as in a TF1 program
    opt = distnet.optimizers.GradientDescent(0.1)
    opt.minimize(loss, [w])                    # first step: fresh
    np.testing.assert_allclose(w.numpy(), [4.0, 8.0])
    with pytest.raises(StaleGradientError, match="has been written since.*Compute the loss again"):
        opt.minimize(loss, [w])
    np.testing.assert_allclose(w.numpy(), [4.0, 8.0])   # nothing applied
    # Recomputing it each step is fine: the loss goes down.
    for _ in range(3):
        opt.minimize(lambda: distnet.reduce_sum(w * w), [w])
    np.testing.assert_allclose(w.numpy(), np.array([4.0, 8.0]) * 0.8 ** 3, rtol=1e-6)


def test_assign_and_ema_swap_make_a_graph_stale_deep_inside():
    w = distnet.Variable(np.ones((2, 2)))
    h = distnet.matmul(w, w)
    for _ in range(50):                      # the read is far from the loss
        h = h * 1.0
    loss = distnet.reduce_sum(h)
    check_not_stale(loss)
    w.assign(np.zeros((2, 2)))
    with pytest.raises(StaleGradientError, match="'" + w.name + "' at version 0.*now version 1"):
        check_not_stale(loss)
    ema = distnet.ExponentialMovingAverage(0.5)
    v = distnet.Variable([1.0])
    ema.apply([v])
    loss2 = distnet.reduce_sum(v * 2.0)
    with ema.swapped([v]):
        pass
    with pytest.raises(StaleGradientError):
        distnet.optimizers.GradientDescent(0.1).compute_gradients(loss2, [v])


def test_versions_count_writes_and_initial_value_is_kept():
    v = distnet.Variable([1.0, 2.0])
    assert v.version == 0
    np.testing.assert_array_equal(v.initial_value, [1.0, 2.0])
    v.assign([3.0, 4.0])
    v.assign_add([1.0, 1.0])
    assert v.version == 2
    np.testing.assert_array_equal(v.initial_value, [1.0, 2.0])
    assert not v.initial_value.flags.writeable
    opt = distnet.optimizers.Adam(0.1)
    opt.apply_gradients([(np.ones(2, np.float32), v)])
    assert v.version == 3


def test_ema_shadow_starts_at_initial_value_without_build():
    # TF1: shadow initializer = var.initialized_value(); the first apply after a step
    # gives decay * initial + (1 - decay) * var.
    w = distnet.Variable([10.0])
    opt = distnet.optimizers.GradientDescent(1.0)
    opt.apply_gradients([(np.array([4.0], np.float32), w)])      # w: 10 -> 6
    ema = distnet.ExponentialMovingAverage(0.9)
    ema.apply([w])
    np.testing.assert_allclose(ema.average(w).numpy(), [0.9 * 10.0 + 0.1 * 6.0], rtol=1e-6)


def test_plain_gradients_refuse_a_stale_loss():
    import distnet
    from distnet.tensor import StaleGradientError

    w = distnet.Variable([1.0, 2.0], name="w_stale")
    loss = distnet.reduce_sum(w * w)
    assert distnet.gradients(loss, [w])[0].tolist() == [2.0, 4.0]
    w.assign([3.0, 3.0])
    with pytest.raises(StaleGradientError, match="Variable 'w_stale' at version 0.*now version 1"):
        distnet.gradients(loss, [w])
    assert distnet.gradients(distnet.reduce_sum(w * w), [w])[0].tolist() == [6.0, 6.0]


def test_a_trainer_keeps_no_second_copy_of_the_weights():
    """The Trainer builds its moving average before the first step, then tells
    the variables to keep no copy of their initial values: training costs no
    second copy of every weight."""
    import distnet
    from distnet import layers
    from distnet.data import ArrayDataset
    from distnet.errors import InvalidArgumentError

    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.random((20, 2, 2, 1), dtype=np.float32), rng.integers(0, 3, 20), num_classes=3)
    model = distnet.Sequential([layers.Flatten(), layers.Dense(3)], input_shape=(2, 2, 1), seed=0)
    first = {v.name: v.numpy().copy() for v in model.trainable_variables}
    ema = distnet.ExponentialMovingAverage(0.5)
    t = distnet.Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.1), data, steps=2,
                        global_batch_size=10, ema=ema)
    t.fit(verbose=0)
    for v in model.trainable_variables:
        assert v._initial is not None and v._initial.size == 0          # no copy kept
        with pytest.raises(InvalidArgumentError, match="forget_initial_value"):
            v.initial_value  # noqa: B018 (the access raises)
    # The shadows still started at the initial values (TF1): built before step 1, so after one
    # Adam step (num_updates 1: decay min(0.5, 2/11)) shadow = initial - (initial - w1) * (1 - d).
    model2 = distnet.Sequential([layers.Flatten(), layers.Dense(3)], input_shape=(2, 2, 1), seed=0)
    ema2 = distnet.ExponentialMovingAverage(0.5)
    t2 = distnet.Trainer(model2, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.1), data, steps=1,
                         global_batch_size=10, ema=ema2)
    t2.fit(verbose=0)
    d = np.float32(2) / np.float32(11)
    for v in model2.trainable_variables:
        want = first[v.name] - (first[v.name] - v.numpy()) * (np.float32(1) - d)
        np.testing.assert_allclose(ema2.average(v).numpy(), want, rtol=1e-6, err_msg=v.name)
