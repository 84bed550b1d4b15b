"""dropout: inverted scaling, statistics, seeds, per-sample keys, errors."""
import numpy as np
import pytest

import distnet
from distnet import nn
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients


def keys(indices, seed=0, step=0, layer=0):
    return nn.dropout_sample_keys(seed, step, layer, np.asarray(indices))


@pytest.mark.parametrize("source", ["rng", "keys"])
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_statistics(source, rate):
    x = np.ones((400, 500), np.float32)
    if source == "rng":
        y = nn.dropout(x, rate, rng=np.random.default_rng(0)).numpy()
    else:
        y = nn.dropout(x, rate, sample_keys=keys(np.arange(400))).numpy()
    zeros = np.mean(y == 0)
    # 200,000 Bernoulli draws: the standard error of the fraction is < 0.0012.
    assert abs(zeros - rate) < 0.006
    assert abs(y.mean() - 1.0) < 0.006 / (1 - rate)
    # Inverted scaling: survivors are multiplied by 1 / (1 - rate).
    np.testing.assert_allclose(np.unique(y[y != 0]), [1 / (1 - rate)], rtol=1e-6)


def test_keep_prob_is_one_minus_rate():
    x = np.ones((50, 40))
    a = nn.dropout(x, keep_prob=0.7, rng=np.random.default_rng(3)).numpy()
    b = nn.dropout(x, rate=0.3, rng=np.random.default_rng(3)).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.isclose(a.max(), 1 / 0.7)


def test_same_seed_same_mask_different_seed_different_mask():
    x = np.ones((64, 32))
    a = nn.dropout(x, 0.5, rng=np.random.default_rng(7)).numpy()
    b = nn.dropout(x, 0.5, rng=np.random.default_rng(7)).numpy()
    c = nn.dropout(x, 0.5, rng=np.random.default_rng(8)).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.3
    k = nn.dropout(x, 0.5, sample_keys=keys(np.arange(64), seed=1)).numpy()
    k2 = nn.dropout(x, 0.5, sample_keys=keys(np.arange(64), seed=1)).numpy()
    k3 = nn.dropout(x, 0.5, sample_keys=keys(np.arange(64), seed=2)).numpy()
    np.testing.assert_array_equal(k, k2)
    assert np.mean(k != k3) > 0.3


def test_a_sample_mask_does_not_depend_on_its_batch():
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((8, 6, 5, 3))
    global_idx = np.array([40, 41, 42, 43, 44, 45, 46, 47])
    full = nn.dropout(batch, 0.5, sample_keys=keys(global_idx, seed=9, step=3, layer=1)).numpy()
    # The same sample (global index 45) alone in a batch of one, and at position 0 of another batch.
    alone = nn.dropout(batch[5:6], 0.5, sample_keys=keys([45], seed=9, step=3, layer=1)).numpy()
    np.testing.assert_array_equal(alone[0], full[5])
    other = np.stack([batch[5], batch[0], batch[1]])
    moved = nn.dropout(other, 0.5, sample_keys=keys([45, 40, 41], seed=9, step=3, layer=1)).numpy()
    np.testing.assert_array_equal(moved[0], full[5])
    np.testing.assert_array_equal(moved[1], full[0])
    assert 0 < np.mean(full == 0) < 1


def test_keys_differ_by_sample_step_layer_and_seed():
    base = keys(np.arange(1000))
    assert base.dtype == np.uint64 and len(np.unique(base)) == 1000
    for other in (keys(np.arange(1000), step=1), keys(np.arange(1000), layer=1), keys(np.arange(1000), seed=1)):
        assert not np.any(other == base)
    # Different keys give (nearly) independent masks.
    x = np.ones((2, 4000))
    y = nn.dropout(x, 0.5, sample_keys=keys([0, 1])).numpy()
    assert 0.4 < np.mean(y[0] != y[1]) < 0.6


def test_keys_can_be_derived_from_uint64_keys_per_layer():
    sample = keys(np.arange(16), seed=5, step=2)
    layer0 = nn.dropout_sample_keys(0, 0, 0, sample)
    layer1 = nn.dropout_sample_keys(0, 0, 1, sample)
    assert layer0.dtype == np.uint64 and len(np.unique(np.concatenate([layer0, layer1]))) == 32
    np.testing.assert_array_equal(nn.dropout_sample_keys(0, 0, 0, sample[3:4]), layer0[3:4])
    from distnet.nn.dropout import make_sample_keys
    np.testing.assert_array_equal(make_sample_keys(5, 2, 0, np.arange(16)), sample)


def test_gradient_with_a_fixed_mask():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 5))
    k = keys(np.arange(4))
    check_gradients(lambda t: nn.dropout(t, 0.4, sample_keys=k), [x])
    check_gradients(lambda t: nn.dropout(t, keep_prob=0.6, rng=np.random.default_rng(11)), [x])


def test_gradient_is_the_mask():
    x = distnet.Variable(np.ones((3, 50)))
    y = nn.dropout(x, 0.25, rng=np.random.default_rng(5))
    (g,) = distnet.gradients(distnet.reduce_sum(y), [x])
    np.testing.assert_array_equal(g, y.numpy())


def test_noise_shape_broadcasts_the_mask():
    x = np.ones((6, 4, 4, 8))
    y = nn.dropout(x, 0.5, rng=np.random.default_rng(0), noise_shape=[6, 1, 1, 8]).numpy()
    # One decision per (sample, channel), shared by every pixel.
    assert np.all(y == y[:, :1, :1, :])
    yk = nn.dropout(x, 0.5, sample_keys=keys(np.arange(6)), noise_shape=(6, 1, 1, 8)).numpy()
    assert np.all(yk == yk[:, :1, :1, :])
    assert 0 < np.mean(yk == 0) < 1
    # Keras: None stands for x's size.
    yn = nn.dropout(x, 0.5, sample_keys=keys(np.arange(6)), noise_shape=(None, 1, 1, None)).numpy()
    np.testing.assert_array_equal(yn, yk)


def test_rate_zero_is_identity_and_dtype_is_kept():
    x = distnet.constant(np.arange(6.0, dtype=np.float32).reshape(2, 3))
    assert nn.dropout(x, 0.0, rng=np.random.default_rng(0)) is x
    assert nn.dropout(x, 0.5, rng=np.random.default_rng(0)).dtype == np.float32


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(rate=0.5), InvalidArgumentError, "exactly one source of randomness"),
    (dict(rate=0.5, rng=np.random.default_rng(0), sample_keys=np.zeros(4, np.uint64)),
     InvalidArgumentError, "exactly one source"),
    (dict(rng=np.random.default_rng(0)), InvalidArgumentError, "exactly one of rate"),
    (dict(rate=0.5, keep_prob=0.5, rng=np.random.default_rng(0)), InvalidArgumentError, "exactly one of rate"),
    (dict(rate=1.0, rng=np.random.default_rng(0)), InvalidArgumentError, r"0 <= rate < 1 Actual: 1.0"),
    (dict(rate=-0.1, rng=np.random.default_rng(0)), InvalidArgumentError, "rate: Expect: 0 <= rate < 1"),
    (dict(keep_prob=0.0, rng=np.random.default_rng(0)), InvalidArgumentError, "keep_prob: Expect: 0 < keep_prob <= 1"),
    (dict(rate=0.5, rng=np.random.RandomState(0)), DTypeError, "Generator"),
    (dict(rate=0.5, sample_keys=np.zeros(4, np.int64)), DTypeError, "uint64"),
    (dict(rate=0.5, sample_keys=np.zeros(3, np.uint64)), ShapeError, "one key per sample"),
    (dict(rate=0.5, rng=np.random.default_rng(0), noise_shape=(4, 3)), ShapeError, "noise_shape"),
    (dict(rate=0.5, sample_keys=np.zeros(4, np.uint64), noise_shape=(1, 5)), ShapeError, "batch size"),
    (dict(rate=0.5, rng=np.random.default_rng(0), noise_shape=(4, 2.5)), ShapeError, "noise_shape"),
])
def test_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        nn.dropout(np.ones((4, 5)), **kwargs)


def test_key_helper_errors():
    with pytest.raises(InvalidArgumentError, match="seed"):
        nn.dropout_sample_keys(-1, 0, 0, [0])
    with pytest.raises(InvalidArgumentError, match="step"):
        nn.dropout_sample_keys(0, 1.5, 0, [0])
    with pytest.raises(InvalidArgumentError, match=">= 0"):
        nn.dropout_sample_keys(0, 0, 0, [3, -2])
    with pytest.raises(ShapeError, match="1-D"):
        nn.dropout_sample_keys(0, 0, 0, [[3]])
    with pytest.raises(DTypeError, match="integers"):
        nn.dropout_sample_keys(0, 0, 0, [0.5])
