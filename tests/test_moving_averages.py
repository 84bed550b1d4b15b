"""ExponentialMovingAverage against hand-computed sequences; swapping; state."""
import numpy as np
import pytest

import distnet
from distnet.errors import CheckpointError, InvalidArgumentError
from distnet.model.moving_averages import ExponentialMovingAverage


def test_hand_computed_sequence_without_num_updates():
    v = distnet.Variable(np.array([0.0, 10.0]), name="w")
    ema = ExponentialMovingAverage(0.5)
    ema.apply([v])
    np.testing.assert_allclose(ema.average(v).data, [0.0, 10.0])  # starts at the variable
    v.assign([4.0, 2.0])
    ema.apply([v])
    np.testing.assert_allclose(ema.average(v).data, [2.0, 6.0])   # 0.5*0 + 0.5*4, 0.5*10 + 0.5*2
    v.assign([4.0, 2.0])
    ema.apply([v])
    np.testing.assert_allclose(ema.average(v).data, [3.0, 4.0])


def test_num_updates_caps_the_decay():
    v = distnet.Variable(np.array([1.0]), name="w")
    ema = ExponentialMovingAverage(0.99)
    ema.apply([v], num_updates=0)           # shadow = 1
    v.assign([2.0])
    d = ema.apply([v], num_updates=1)       # decay = min(0.99, 2/11)
    assert d == pytest.approx(2 / 11)
    assert ema.average(v).data[0] == pytest.approx(2 / 11 * 1 + 9 / 11 * 2)
    assert ema.apply([v], num_updates=10 ** 6) == pytest.approx(0.99)


def test_shadows_lag_the_weights_as_the_formula_says():
    v = distnet.Variable(np.array([0.0]), name="w")
    ema = ExponentialMovingAverage(0.9)
    ema.apply([v])
    for k in range(1, 21):
        v.assign([float(k)])                 # weights rise linearly
        ema.apply([v])
        shadow = ema.average(v).data[0]
        # closed form of the recursion from shadow_0 = 0 for var_j = j
        expected = sum(0.1 * 0.9 ** (k - j) * j for j in range(1, k + 1))
        assert shadow == pytest.approx(expected)
        assert shadow < k
        # equivalently the lag behind a ramp is d/(1-d) * (1 - d**k), tending to 9 steps
        assert k - shadow == pytest.approx(9 * (1 - 0.9 ** k))


def test_average_is_a_non_trainable_named_variable():
    v = distnet.Variable(np.zeros((2, 2), dtype=np.float32), name="dense/kernel")
    ema = ExponentialMovingAverage(0.9)
    ema.apply([v])
    s = ema.average(v)
    assert isinstance(s, distnet.Variable) and not s.trainable
    assert s.name == ema.average_name(v) == "dense/kernel/ExponentialMovingAverage"
    assert s.dtype == np.float32
    with pytest.raises(InvalidArgumentError, match="no shadow"):
        ema.average(distnet.Variable([1.0], name="other"))


def test_swapped_puts_shadows_in_and_restores_also_on_exception():
    v = distnet.Variable(np.array([1.0]), name="w")
    ema = ExponentialMovingAverage(0.5)
    ema.apply([v])
    v.assign([3.0])
    ema.apply([v])                            # shadow 2, var 3
    with ema.swapped([v]):
        assert v.data[0] == 2.0
    assert v.data[0] == 3.0
    with pytest.raises(RuntimeError):
        with ema.swapped():
            assert v.data[0] == 2.0
            raise RuntimeError("evaluation failed")
    assert v.data[0] == 3.0
    with pytest.raises(InvalidArgumentError, match="no shadow"):
        with ema.swapped([distnet.Variable([0.0], name="x")]):
            pass


def test_state_dict_roundtrip_and_pending_load():
    v = distnet.Variable(np.array([1.0, 2.0]), name="w")
    ema = ExponentialMovingAverage(0.5)
    ema.apply([v])
    v.assign([3.0, 4.0])
    ema.apply([v])
    state = ema.state_dict()
    np.testing.assert_allclose(state["w"], [2.0, 3.0])
    fresh = ExponentialMovingAverage(0.5)
    fresh.load_state_dict(state)              # before any apply: kept for the first build
    fresh.apply([v])                          # shadow starts from the loaded value
    np.testing.assert_allclose(fresh.average(v).data, [2.5, 3.5])
    with pytest.raises(CheckpointError, match="missing variables \\['w'\\].*unexpected variables \\['z'\\]"):
        fresh.load_state_dict({"z": np.zeros(2)})
    with pytest.raises(CheckpointError, match="shape"):
        fresh.load_state_dict({"w": np.zeros(3)})
    other = ExponentialMovingAverage(0.5)
    other.load_state_dict({"q": np.zeros(2)})
    with pytest.raises(CheckpointError, match="missing variables \\['w'\\]"):
        other.apply([v])


def test_validation():
    with pytest.raises(InvalidArgumentError, match="decay"):
        ExponentialMovingAverage(1.5)
    ema = ExponentialMovingAverage(0.9)
    a, b = distnet.Variable([1.0], name="same"), distnet.Variable([2.0], name="same")
    with pytest.raises(InvalidArgumentError, match="duplicates"):
        ema.apply([a, b])
    with pytest.raises(InvalidArgumentError, match="num_updates"):
        ema.apply([a], num_updates=-1)


def test_chunked_update_equals_whole_array_update():
    """Chunks of 5 elements give bit for bit the whole-array shadows (float32),
    and match the formula computed in float64."""
    rng = np.random.default_rng(3)
    values = [rng.standard_normal((6, 7)).astype(np.float32) for _ in range(4)]
    shadows = []
    for chunk in (5, 10**9):
        v = distnet.Variable(values[0], name="w")
        ema = ExponentialMovingAverage(0.9)
        ema.chunk_size = chunk
        for n, x in enumerate(values):
            v.assign(x)
            ema.apply([v], num_updates=n)
        shadows.append(ema.average(v).data.copy())
    assert np.array_equal(shadows[0], shadows[1])
    ref = values[0].astype(np.float64)
    for n, x in enumerate(values):
        d = min(0.9, (1 + n) / (10 + n))
        ref = d * ref + (1 - d) * x
    np.testing.assert_allclose(shadows[0], ref, rtol=1e-5, atol=1e-6)
