"""Softmax cross-entropy with logits, dense and sparse labels."""
import numpy as np
import pytest

import distnet
from distnet import nn
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients

dense = nn.softmax_cross_entropy_with_logits
sparse = nn.sparse_softmax_cross_entropy_with_logits


def hand_loss(labels, logits):
    """-sum(labels * log(softmax(logits))) written out in float64."""
    p = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    return -(labels * np.log(p)).sum(axis=-1)


def test_dense_matches_hand_formula():
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]])
    labels = np.array([[1.0, 0.0, 0.0], [0.2, 0.7, 0.1]])
    loss = dense(labels=labels, logits=logits)
    assert loss.shape == (2,)
    np.testing.assert_allclose(loss.numpy(), hand_loss(labels, logits), rtol=1e-14)
    # A worked number: -log(e^2 / (e^2 + e^1 + e^0.1)) = 0.41703001628...
    np.testing.assert_allclose(loss.numpy()[0], 0.41703001628, rtol=1e-10)


def test_sparse_equals_dense_with_one_hot():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    one_hot = np.eye(4)[labels]
    np.testing.assert_allclose(sparse(labels=labels, logits=logits).numpy(),
                               hand_loss(one_hot, logits), rtol=1e-13)


def test_dense_gradients_float64():
    rng = np.random.default_rng(1)
    labels = rng.dirichlet(np.ones(5), size=4)
    check_gradients(lambda lab, lg: dense(labels=lab, logits=lg), [labels, rng.standard_normal((4, 5))])


def test_dense_gradient_on_other_axis_float64():
    rng = np.random.default_rng(2)
    labels = np.ascontiguousarray(rng.dirichlet(np.ones(3), size=4).T)   # columns sum to 1: class axis 0
    check_gradients(lambda lab, lg: dense(labels=lab, logits=lg, axis=0), [labels, rng.standard_normal((3, 4))])


def test_dense_logits_gradient_is_tf1_softmax_minus_labels_for_unnormalised_labels():
    # TF1's kernel returns softmax - labels whatever the labels sum to (the exact
    # derivative would be softmax * sum(labels) - labels): the module doc says so.
    labels = np.array([[0.5, 1.5, 0.0]])                   # sums to 2
    logits = distnet.Variable(np.array([[1.0, 2.0, 3.0]]))
    (g,) = distnet.gradients(distnet.reduce_sum(dense(labels=labels, logits=logits)), [logits])
    p = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(g[0], p - labels[0], rtol=1e-14)
    assert not np.allclose(g[0], 2 * p - labels[0])


def test_sparse_gradients_float64():
    rng = np.random.default_rng(3)
    labels = np.array([[0, 4], [2, 2], [1, 3]])
    check_gradients(lambda lg: sparse(labels=labels, logits=lg), [rng.standard_normal((3, 2, 5))])


def test_logits_gradient_is_softmax_minus_onehot():
    logits = distnet.Variable(np.array([[1.0, 2.0, 3.0]]))
    (g,) = distnet.gradients(distnet.reduce_sum(sparse(labels=[2], logits=logits)), [logits])
    p = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(g[0], p - [0, 0, 1], rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_for_logits_of_magnitude_1e4(dtype):
    lg = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype)
    labels = np.array([1, 0])
    for fn, lab in ((sparse, labels), (dense, np.eye(3, dtype=dtype)[labels])):
        x = distnet.Variable(lg)
        loss = fn(labels=lab, logits=x)
        assert loss.dtype == dtype
        np.testing.assert_allclose(loss.numpy(), [2e4, 2e4 + np.log(2.0)], rtol=1e-6)
        (g,) = distnet.gradients(distnet.reduce_sum(loss), [x])
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, [[1, -1, 0], [-1, 0.5, 0.5]], atol=1e-6)


def test_labels_gradient_is_minus_log_softmax():
    logits = np.array([[0.0, np.log(3.0)]])
    labels = distnet.Variable(np.array([[0.5, 0.5]]))
    (g,) = distnet.gradients(distnet.reduce_sum(dense(labels=labels, logits=logits)), [labels])
    np.testing.assert_allclose(g, [[np.log(4.0), np.log(4.0 / 3.0)]], rtol=1e-14)


def test_sparse_label_out_of_range_names_value_and_range():
    with pytest.raises(InvalidArgumentError, match=r"label value of 10 .*index \(2,\).*\[0, 10\)"):
        sparse(labels=[0, 9, 10], logits=np.zeros((3, 10)))
    with pytest.raises(InvalidArgumentError, match=r"label value of -1 .*\[0, 4\)"):
        sparse(labels=np.array([-1, 2], np.int64), logits=np.zeros((2, 4)))


def test_sparse_float_labels_are_a_dtype_error():
    with pytest.raises(DTypeError, match=r"integer class indices.*float32"):
        sparse(labels=np.array([1.0, 0.0], np.float32), logits=np.zeros((2, 3)))
    with pytest.raises(DTypeError, match="integer"):
        sparse(labels=distnet.constant([1.0]), logits=np.zeros((1, 3)))


def test_shape_errors():
    with pytest.raises(ShapeError, match=r"Expect: \(3,\)"):
        sparse(labels=[[0], [1], [2]], logits=np.zeros((3, 4)))
    with pytest.raises(ShapeError, match="same shape"):
        dense(labels=np.zeros((3, 4)), logits=np.zeros((3, 5)))


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        dense(np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(TypeError):
        sparse([0], np.zeros((1, 2)))
