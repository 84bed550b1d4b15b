"""Initializers: shapes, dtypes, statistics, reproducibility from an explicit Generator."""
import math

import numpy as np
import pytest

from distnet.model import initializers as init
from distnet.errors import DTypeError, InvalidArgumentError


def rng(seed=0):
    return np.random.default_rng(seed)


def test_constant_family():
    np.testing.assert_array_equal(init.zeros((2, 3), np.float32, None), np.zeros((2, 3)))
    np.testing.assert_array_equal(init.ones((2,), np.float64, None), [1.0, 1.0])
    c = init.constant(0.25)((3,), np.float32, None)
    assert c.dtype == np.float32 and np.all(c == 0.25)


def test_random_normal_statistics_and_reproducibility():
    a = init.random_normal(mean=1.0, stddev=0.5)((200, 100), np.float32, rng(1))
    b = init.random_normal(mean=1.0, stddev=0.5)((200, 100), np.float32, rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32
    assert abs(a.mean() - 1.0) < 0.01 and abs(a.std() - 0.5) < 0.01


def test_truncated_normal_redraws_beyond_two_stddev():
    x = init.truncated_normal(mean=0.5, stddev=0.1)((100000,), np.float64, rng(2))
    assert np.all(np.abs(x - 0.5) <= 0.2 + 1e-12)
    # a normal truncated to [-2, 2] has std 0.8796 (values were re-drawn, not clipped)
    assert x.std() == pytest.approx(0.1 * 0.87962566, rel=0.02)
    assert np.mean(np.abs(x - 0.5) > 0.199) < 0.005  # no pile-up at the bounds (clipping: ~0.046)


def test_glorot_uniform_limit():
    x = init.glorot_uniform((300, 200), np.float64, rng(3))
    limit = math.sqrt(6 / 500)
    assert x.max() <= limit and x.min() >= -limit
    assert x.max() > 0.95 * limit
    assert x.std() == pytest.approx(limit / math.sqrt(3), rel=0.02)
    k = init.glorot_uniform((5, 5, 3, 8), np.float64, rng(3))  # conv fans: 75, 200
    assert np.abs(k).max() <= math.sqrt(6 / 275)


def test_he_normal_std():
    x = init.he_normal((400, 300), np.float64, rng(4))
    assert x.std() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    assert np.abs(x).max() <= 2 * math.sqrt(2 / 400) / 0.87962566 + 1e-12


def test_compute_fans():
    assert init.compute_fans((3, 4)) == (3, 4)
    assert init.compute_fans((5, 5, 1, 32)) == (25, 800)
    assert init.compute_fans((7,)) == (7, 7)


def test_get():
    assert init.get("glorot_uniform") is init.glorot_uniform
    assert init.get("zeros") is init.zeros
    f = init.constant(2.0)
    assert init.get(f) is f
    assert isinstance(init.get("truncated_normal"), init.TruncatedNormal)
    with pytest.raises(InvalidArgumentError, match="unknown initializer 'glorot'"):
        init.get("glorot")


def test_errors():
    with pytest.raises(InvalidArgumentError, match="Generator"):
        init.glorot_uniform((2, 2), np.float32, None)
    with pytest.raises(DTypeError, match="floating"):
        init.zeros((2,), np.int32, None)
    with pytest.raises(InvalidArgumentError, match="stddev"):
        init.random_normal(stddev=0.0)
    with pytest.raises(InvalidArgumentError, match="shape"):
        init.zeros((2, -1), np.float32, None)


def test_orthogonal_and_random_uniform():
    from distnet.model.initializers import get, orthogonal, random_uniform

    rng = np.random.default_rng(0)
    for shape in ((6, 6), (4, 10), (10, 4), (2, 3, 5)):
        w = orthogonal(2.0)(shape, np.float64, rng)
        assert w.shape == shape
        m = w.reshape(-1, shape[-1])
        small = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
        np.testing.assert_allclose(small, 4.0 * np.eye(min(m.shape)), atol=1e-12)
    a, b = (orthogonal()((5, 5), np.float32, np.random.default_rng(3)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    u = get("uniform")((1000,), np.float32, rng)
    assert u.min() >= -0.05 and u.max() < 0.05 and u.std() > 0.025
    v = get({"type": "random_uniform", "minval": 1.0, "maxval": 2.0})((500,), np.float64, rng)
    assert v.min() >= 1.0 and v.max() < 2.0 and v.dtype == np.float64
    with pytest.raises(InvalidArgumentError, match="minval < maxval"):
        random_uniform(1.0, 1.0)
    with pytest.raises(InvalidArgumentError, match="rank >= 2"):
        orthogonal()((3,), np.float32, rng)
