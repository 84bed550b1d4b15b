"""The gradient checker must fail when a gradient is wrong (and only then)."""
from __future__ import annotations

import numpy as np
import pytest

import distnet
from distnet.autodiff import Op
from distnet.errors import DTypeError
from distnet.gradcheck import GradientCheckError, check_gradients, numerical_gradient


class _CubeWrongBackward(Op):
    """x**3 whose backward forgets the factor 3."""

    __slots__ = ("x",)

    def forward(self, x):
        self.x = x
        return x ** 3

    def backward(self, g, needs):
        return (g * self.x ** 2,)


class _CubeRightBackward(_CubeWrongBackward):
    __slots__ = ()

    def backward(self, g, needs):
        return (3 * g * self.x ** 2,)


class _OneElementWrong(Op):
    """Identity whose gradient is wrong for the last element only."""

    __slots__ = ()

    def forward(self, x):
        return x.copy()

    def backward(self, g, needs):
        out = g.copy()
        out.flat[-1] *= 1.01
        return (out,)


class _SwappedBinary(Op):
    """x * y**2 with the two gradients exchanged."""

    __slots__ = ("x", "y")

    def forward(self, x, y):
        self.x, self.y = x, y
        return x * y * y

    def backward(self, g, needs):
        return (2 * g * self.x * self.y, g * self.y * self.y)


def test_wrong_backward_is_caught(rng):
    x = rng.standard_normal((3, 4))
    with pytest.raises(GradientCheckError, match="input 0"):
        check_gradients(lambda t: _CubeWrongBackward.apply(t), [x])


def test_right_backward_passes(rng):
    x = rng.standard_normal((3, 4))
    check_gradients(lambda t: _CubeRightBackward.apply(t), [x])


def test_error_in_a_single_element_is_caught(rng):
    x = rng.standard_normal((5, 5))
    with pytest.raises(GradientCheckError):
        check_gradients(lambda t: _OneElementWrong.apply(t), [x])


def test_swapped_gradients_are_caught_and_wrt_selects_inputs(rng):
    x, y = rng.standard_normal(4), rng.standard_normal(4) + 3.0
    with pytest.raises(GradientCheckError, match="input 1"):
        check_gradients(lambda a, b: _SwappedBinary.apply(a, b), [x, y], wrt=[1])
    with pytest.raises(GradientCheckError, match="input 0"):
        check_gradients(lambda a, b: _SwappedBinary.apply(a, b), [x, y], wrt=[0])


def test_float32_input_is_rejected():
    with pytest.raises(DTypeError, match="float64"):
        check_gradients(lambda t: distnet.square(t), [np.ones(3, dtype=np.float32)])


def test_inputs_are_not_modified(rng):
    x = rng.standard_normal((2, 3))
    before = x.copy()
    check_gradients(lambda t: distnet.exp(t), [x])
    np.testing.assert_array_equal(x, before)


def test_numerical_gradient_of_known_function():
    x = np.array([1.0, -2.0, 3.0])
    g = numerical_gradient(lambda arrs: float(np.sum(arrs[0] ** 2)), [x], 0, 1e-6)
    np.testing.assert_allclose(g, [2.0, -4.0, 6.0], rtol=1e-6)
