"""Learning-rate schedules: values at chosen steps and argument validation."""
import math

import pytest

from distnet.errors import InvalidArgumentError
from distnet.model.schedules import (cosine_decay, exponential_decay, piecewise_constant, polynomial_decay,
                               resolve, warmup)


def test_exponential_decay_smooth_and_staircase():
    smooth = exponential_decay(0.1, decay_steps=100, decay_rate=0.96)
    assert smooth(0) == pytest.approx(0.1)
    assert smooth(50) == pytest.approx(0.1 * 0.96 ** 0.5)
    assert smooth(100) == pytest.approx(0.096)
    assert smooth(250) == pytest.approx(0.1 * 0.96 ** 2.5)
    stair = exponential_decay(0.1, decay_steps=100, decay_rate=0.96, staircase=True)
    assert stair(99) == pytest.approx(0.1)
    assert stair(100) == pytest.approx(0.096)
    assert stair(250) == pytest.approx(0.1 * 0.96 ** 2)


def test_piecewise_constant_boundaries_are_inclusive_on_the_left_value():
    s = piecewise_constant([100, 200], [1.0, 0.5, 0.1])
    assert [s(0), s(100), s(101), s(200), s(201), s(10 ** 6)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]


def test_polynomial_decay():
    s = polynomial_decay(1.0, decay_steps=10, end_learning_rate=0.1, power=2.0)
    assert s(0) == pytest.approx(1.0)
    assert s(5) == pytest.approx(0.9 * 0.25 + 0.1)
    assert s(10) == pytest.approx(0.1)
    assert s(50) == pytest.approx(0.1)
    c = polynomial_decay(1.0, decay_steps=10, end_learning_rate=0.0, cycle=True)
    assert c(15) == pytest.approx(1.0 - 15 / 20)  # horizon grows to 20
    assert c(0) == pytest.approx(1.0)


def test_cosine_decay():
    s = cosine_decay(2.0, decay_steps=10, alpha=0.1)
    assert s(0) == pytest.approx(2.0)
    assert s(5) == pytest.approx(2.0 * (0.9 * 0.5 + 0.1))
    assert s(10) == pytest.approx(0.2)
    assert s(20) == pytest.approx(0.2)
    assert s(3) == pytest.approx(2.0 * (0.9 * 0.5 * (1 + math.cos(math.pi * 0.3)) + 0.1))


def test_warmup_wraps_a_float_and_a_schedule():
    w = warmup(0.4, warmup_steps=4)
    assert [round(w(i), 12) for i in range(6)] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.4]
    inner = exponential_decay(1.0, decay_steps=1, decay_rate=0.5)
    w2 = warmup(inner, warmup_steps=2, initial_learning_rate=0.5)
    assert [w2(i) for i in range(5)] == pytest.approx([0.5, 0.75, 1.0, 0.5, 0.25])


def test_resolve():
    assert resolve(0.3, 7) == 0.3
    assert resolve(exponential_decay(1.0, 1, 0.5), 2) == 0.25
    with pytest.raises(InvalidArgumentError, match="step 3"):
        resolve(lambda s: float("nan"), 3)


@pytest.mark.parametrize("make, word", [
    (lambda: exponential_decay(0.1, 0, 0.9), "decay_steps: Expect: > 0 Actual: 0"),
    (lambda: exponential_decay(-0.1, 10, 0.9), "learning_rate"),
    (lambda: exponential_decay(0.1, 10, 0.0), "decay_rate"),
    (lambda: piecewise_constant([10, 5], [1, 2, 3]), "strictly increasing"),
    (lambda: piecewise_constant([10], [1.0]), "one more"),
    (lambda: polynomial_decay(0.1, -5), "decay_steps"),
    (lambda: cosine_decay(0.1, 10, alpha=2.0), "alpha"),
    (lambda: warmup(0.1, 0), "warmup_steps"),
    (lambda: warmup(0.1, "ten"), "warmup_steps"),
    (lambda: exponential_decay("a", 10, 0.9), "learning_rate: Expect: a number"),
])
def test_validation(make, word):
    with pytest.raises(InvalidArgumentError, match=word):
        make()


def test_negative_or_fractional_step_is_an_error():
    s = exponential_decay(0.1, 10, 0.9)
    with pytest.raises(InvalidArgumentError, match="step"):
        s(-1)
    with pytest.raises(InvalidArgumentError, match="step"):
        s(1.5)
