"""matmul: 2-D and batched, transposes, broadcasting of batch axes,
gradient checks and shape errors."""
from __future__ import annotations

import numpy as np
import pytest

import distnet
from distnet.autodiff import gradients
from distnet.errors import DTypeError, ShapeError
from distnet.gradcheck import check_gradients


def _maybe_t(a, t):
    return np.swapaxes(a, -1, -2) if t else a


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("sa,sb", [
    ((2, 3), (3, 4)),             # 2-D
    ((5, 2, 3), (5, 3, 4)),       # batched
    ((5, 2, 3), (3, 4)),          # batched @ matrix
    ((2, 3), (5, 3, 4)),          # matrix @ batched
    ((2, 1, 2, 3), (1, 4, 3, 2)),  # batch axes broadcast both ways
])
def test_matmul_values_and_gradients(sa, sb, ta, tb, rng):
    a = _maybe_t(rng.standard_normal(sa), ta).copy()
    b = _maybe_t(rng.standard_normal(sb), tb).copy()
    out = distnet.matmul(a, b, transpose_a=ta, transpose_b=tb)
    np.testing.assert_allclose(out.numpy(), np.matmul(_maybe_t(a, ta), _maybe_t(b, tb)), rtol=1e-12)
    check_gradients(lambda x, y: distnet.matmul(x, y, transpose_a=ta, transpose_b=tb), [a, b])


def test_matmul_hand_computed():
    a = distnet.constant([[1.0, 2.0], [3.0, 4.0]])
    b = distnet.constant([[5.0], [6.0]])
    np.testing.assert_array_equal(distnet.matmul(a, b).numpy(), [[17.0], [39.0]])
    np.testing.assert_array_equal((a @ b).numpy(), [[17.0], [39.0]])
    # d/dA sum(A @ B) = 1 @ B^T; d/dB = A^T @ 1
    ga, gb = gradients(distnet.reduce_sum(a @ b), [a, b])
    np.testing.assert_array_equal(ga, [[5.0, 6.0], [5.0, 6.0]])
    np.testing.assert_array_equal(gb, [[4.0], [6.0]])


def test_rmatmul_with_numpy_on_the_left():
    b = distnet.constant([[1.0], [1.0]])
    out = np.array([[1.0, 2.0]], dtype=np.float32) @ b
    assert isinstance(out, distnet.Tensor)
    np.testing.assert_array_equal(out.numpy(), [[3.0]])


def test_matmul_keeps_float32():
    a = distnet.Variable(np.ones((2, 3), np.float32))
    out = distnet.matmul(a, np.ones((3, 2)))
    assert out.dtype == np.float32
    (g,) = gradients(distnet.reduce_sum(out), [a])
    assert g.dtype == np.float32


def test_inner_dimension_mismatch_names_both_shapes():
    with pytest.raises(ShapeError, match=r"matmul: incompatible shapes \(2, 3\) and \(4, 5\)"):
        distnet.matmul(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32))
    with pytest.raises(ShapeError, match=r"\(2, 3\) and \(2, 3\).*transpose_b=False.*3 and 2"):
        distnet.matmul(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32))


def test_batch_mismatch_and_rank_errors():
    with pytest.raises(ShapeError, match=r"\(2, 2, 3\) and \(3, 3, 4\).*batch"):
        distnet.matmul(np.ones((2, 2, 3), np.float32), np.ones((3, 3, 4), np.float32))
    with pytest.raises(ShapeError, match=r"rank >= 2.*\(3,\) and \(3, 4\)"):
        distnet.matmul(np.ones(3, np.float32), np.ones((3, 4), np.float32))


def test_matmul_dtype_mismatch():
    with pytest.raises(DTypeError, match="matmul"):
        distnet.matmul(distnet.constant(np.ones((2, 2))), distnet.constant(np.ones((2, 2), np.float32)))


@pytest.mark.parametrize("sa, sb", [((5, 4), (4, 3)), ((2, 5, 4), (4, 3)), ((2, 5, 4), (2, 4, 3))])
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_writes_gradients_into_out_arrays_with_the_same_bits(sa, sb, ta, tb, rng):
    a_shape = sa[:-2] + sa[-2:][::-1] if ta else sa
    b_shape = sb[:-2] + sb[-2:][::-1] if tb else sb
    a = distnet.Variable(rng.standard_normal(a_shape).astype(np.float32))
    b = distnet.Variable(rng.standard_normal(b_shape).astype(np.float32))

    def loss():
        return distnet.reduce_sum(distnet.square(distnet.matmul(a, b, transpose_a=ta, transpose_b=tb)))

    plain = gradients(loss(), [a, b])
    outs = [np.full(a_shape, np.nan, np.float32), np.full(b_shape, np.nan, np.float32)]
    gradients(loss(), [a, b], out=outs)
    for p, o in zip(plain, outs):
        np.testing.assert_array_equal(o, p)
    # The 2-D case is produced in place by the op (no temporary to copy from).
    op = loss()._parents[0]._parents[0]._op   # reduce_sum <- square <- matmul
    if len(sa) == len(sb) == 2:
        g = np.ones((sa[0], sb[1]), np.float32)
        dest = np.empty(b_shape, np.float32)
        assert op.backward_out(g, (False, True), (None, dest))[1] is dest
