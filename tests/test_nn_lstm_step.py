"""distnet.nn.lstm_step: the fused element-wise LSTM step against its composed form."""
import numpy as np
import pytest

import distnet
from distnet import nn
from distnet.errors import ShapeError
from distnet.gradcheck import check_gradients


def _composed(z, c, forget_bias):
    n = c.shape[1]
    i, j, f, o = (z[:, k * n:(k + 1) * n] for k in range(4))
    new_c = c * nn.sigmoid(f + forget_bias) + nn.sigmoid(i) * nn.tanh(j)
    return distnet.concat([new_c, nn.tanh(new_c) * nn.sigmoid(o)], 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_are_the_composed_ops_bit_for_bit(dtype):
    rng = np.random.default_rng(0)
    z, c = (rng.standard_normal(s).astype(dtype) * 3 for s in [(5, 12), (5, 3)])
    got = nn.lstm_step(z, c, forget_bias=0.5)
    want = _composed(distnet.constant(z), distnet.constant(c), 0.5)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_gradients_float64():
    rng = np.random.default_rng(1)
    check_gradients(lambda z, c: nn.lstm_step(z, c, 1.0), [rng.standard_normal((4, 8)), rng.standard_normal((4, 2))])
    # and the same gradients as the composed form, for each input alone
    z, c = distnet.Variable(rng.standard_normal((3, 20))), distnet.Variable(rng.standard_normal((3, 5)))
    r = distnet.constant(rng.standard_normal((3, 10)))
    fused = distnet.gradients(distnet.reduce_sum(nn.lstm_step(z, c) * r), [z, c])
    composed = distnet.gradients(distnet.reduce_sum(_composed(z, c, 1.0) * r), [z, c])
    for a, b in zip(fused, composed):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    (only_c,) = distnet.gradients(distnet.reduce_sum(nn.lstm_step(z, c) * r), [c])
    np.testing.assert_allclose(only_c, fused[1], rtol=1e-12)


def test_shape_errors():
    with pytest.raises(ShapeError, match=r"4 \* units"):
        nn.lstm_step(np.zeros((2, 7)), np.zeros((2, 2)))
