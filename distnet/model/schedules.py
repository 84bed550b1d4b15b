"""Learning-rate schedules: small callable objects ``step -> float``.

A learning rate in distnet is a number or a schedule, nothing else.  The
optimizer resolves it once per step with the global step *before* that
step's increment, as TF1's ``exponential_decay(global_step)`` read the
variable that ``apply_gradients`` then incremented.

Every schedule validates its arguments when built and raises
:class:`~distnet.errors.InvalidArgumentError` naming the bad one.

Example:
  >>> lr = exponential_decay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
  >>> lr(0), lr(9), lr(10)
  (0.1, 0.1, 0.05)
"""
from __future__ import annotations

import math
from typing import Callable, Sequence, Union

from distnet.errors import InvalidArgumentError
from distnet.registry import BOOL, FLOAT, INT, INT_LIST, NUMBER_LIST, REQUIRED, Option, register

LearningRate = Union[float, Callable[[int], float]]


def _number(name: str, value, *, positive: bool = False, nonnegative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise InvalidArgumentError(f"{name}: Expect: a number Actual: {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidArgumentError(f"{name}: Expect: a finite number Actual: {value}")
    if positive and value <= 0:
        raise InvalidArgumentError(f"{name}: Expect: > 0 Actual: {value}")
    if nonnegative and value < 0:
        raise InvalidArgumentError(f"{name}: Expect: >= 0 Actual: {value}")
    return value


def _step(step) -> int:
    if isinstance(step, bool):
        raise InvalidArgumentError(f"step: Expect: an integer >= 0 Actual: {step!r}")
    try:
        s = int(step)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"step: Expect: an integer >= 0 Actual: {step!r}") from None
    if s != step or s < 0:
        raise InvalidArgumentError(f"step: Expect: an integer >= 0 Actual: {step!r}")
    return s


class Schedule:
    """Base class: a learning rate as a function of the global step."""

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


class ExponentialDecay(Schedule):
    """``lr * rate ** (step / decay_steps)``; the exponent floored when ``staircase``.

    Args:
      learning_rate: the rate at step 0 (> 0).
      decay_steps: steps per decay period (> 0).
      decay_rate: factor per period (> 0).
      staircase: decay in discrete steps (TF1's ``staircase=True``).
    """

    def __init__(self, learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False):
        self.learning_rate = _number("learning_rate", learning_rate, positive=True)
        self.decay_steps = _number("decay_steps", decay_steps, positive=True)
        self.decay_rate = _number("decay_rate", decay_rate, positive=True)
        self.staircase = bool(staircase)

    def __call__(self, step: int) -> float:
        p = _step(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.learning_rate * self.decay_rate ** p

    def __repr__(self) -> str:
        return (f"exponential_decay({self.learning_rate}, decay_steps={self.decay_steps:g}, "
                f"decay_rate={self.decay_rate}, staircase={self.staircase})")


class PiecewiseConstant(Schedule):
    """``values[i]`` for ``boundaries[i-1] < step <= boundaries[i]`` (TF1's convention).

    Args:
      boundaries: strictly increasing steps.
      values: one more value than boundaries.
    """

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]):
        self.boundaries = [_number(f"boundaries[{i}]", b) for i, b in enumerate(boundaries)]
        self.values = [_number(f"values[{i}]", v, nonnegative=True) for i, v in enumerate(values)]
        if len(self.values) != len(self.boundaries) + 1:
            raise InvalidArgumentError(
                "piecewise_constant: values must have one more element than boundaries; "
                f"Expect: {len(self.boundaries) + 1} values Actual: {len(self.values)}")
        for a, b in zip(self.boundaries, self.boundaries[1:]):
            if not b > a:
                raise InvalidArgumentError(f"piecewise_constant: boundaries: Expect: strictly increasing Actual: {list(boundaries)}")

    def __call__(self, step: int) -> float:
        s = _step(step)
        for b, v in zip(self.boundaries, self.values):
            if s <= b:  # TF1: values[0] while step <= boundaries[0]
                return v
        return self.values[-1]

    def __repr__(self) -> str:
        return f"piecewise_constant({self.boundaries}, {self.values})"


class PolynomialDecay(Schedule):
    """TF1's ``polynomial_decay``: from ``learning_rate`` to ``end_learning_rate``.

    ``(lr - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end``.
    With ``cycle`` the horizon grows to the next multiple of ``decay_steps``.
    """

    def __init__(self, learning_rate: float, decay_steps: int, end_learning_rate: float = 0.0001,
                 power: float = 1.0, cycle: bool = False):
        self.learning_rate = _number("learning_rate", learning_rate, positive=True)
        self.decay_steps = _number("decay_steps", decay_steps, positive=True)
        self.end_learning_rate = _number("end_learning_rate", end_learning_rate, nonnegative=True)
        self.power = _number("power", power, positive=True)
        self.cycle = bool(cycle)

    def __call__(self, step: int) -> float:
        s = _step(step)
        horizon = self.decay_steps
        if self.cycle:
            # TF1: decay_steps * ceil(step / decay_steps), with step 0 -> one period.
            horizon = self.decay_steps * max(1, math.ceil(s / self.decay_steps))
        else:
            s = min(s, horizon)
        frac = 1.0 - s / horizon
        return (self.learning_rate - self.end_learning_rate) * frac ** self.power + self.end_learning_rate

    def __repr__(self) -> str:
        return (f"polynomial_decay({self.learning_rate}, decay_steps={self.decay_steps:g}, "
                f"end_learning_rate={self.end_learning_rate}, power={self.power}, cycle={self.cycle})")


class CosineDecay(Schedule):
    """TF1's ``cosine_decay``: ``lr * ((1 - alpha) * 0.5 * (1 + cos(pi * t)) + alpha)``,
    ``t = min(step, decay_steps) / decay_steps``."""

    def __init__(self, learning_rate: float, decay_steps: int, alpha: float = 0.0):
        self.learning_rate = _number("learning_rate", learning_rate, positive=True)
        self.decay_steps = _number("decay_steps", decay_steps, positive=True)
        self.alpha = _number("alpha", alpha, nonnegative=True)
        if self.alpha > 1:
            raise InvalidArgumentError(f"cosine_decay: alpha: Expect: in [0, 1] Actual: {self.alpha}")

    def __call__(self, step: int) -> float:
        t = min(_step(step), self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * t))
        return self.learning_rate * ((1.0 - self.alpha) * cosine + self.alpha)

    def __repr__(self) -> str:
        return f"cosine_decay({self.learning_rate}, decay_steps={self.decay_steps:g}, alpha={self.alpha})"


class LinearWarmup(Schedule):
    """Linear warm-up in front of a float or another schedule.

    Convention (optax's ``join_schedules`` / Goyal et al.): for
    ``step < warmup_steps`` the rate rises linearly from
    ``initial_learning_rate`` at step 0 towards ``after(0)``; from
    ``warmup_steps`` on it is ``after(step - warmup_steps)``, so the wrapped
    schedule starts its own decay when the warm-up ends.
    """

    def __init__(self, schedule_or_float: LearningRate, warmup_steps: int, initial_learning_rate: float = 0.0):
        if callable(schedule_or_float):
            self.after = schedule_or_float
        else:
            self.after = float(_number("learning_rate", schedule_or_float, positive=True))
        try:
            ok = not isinstance(warmup_steps, bool) and int(warmup_steps) == warmup_steps and warmup_steps > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InvalidArgumentError(f"warmup_steps: Expect: an integer > 0 Actual: {warmup_steps!r}")
        self.warmup_steps = int(warmup_steps)
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate, nonnegative=True)

    def _after(self, step: int) -> float:
        return self.after(step) if callable(self.after) else self.after

    def __call__(self, step: int) -> float:
        s = _step(step)
        if s >= self.warmup_steps:
            return float(self._after(s - self.warmup_steps))
        target = float(self._after(0))
        return self.initial_learning_rate + (target - self.initial_learning_rate) * s / self.warmup_steps

    def __repr__(self) -> str:
        return f"warmup({self.after!r}, warmup_steps={self.warmup_steps}, initial_learning_rate={self.initial_learning_rate})"


_DECAY_STEPS = Option("decay_steps", INT, REQUIRED, "the length of the decay", low=0, low_open=True)


@register("schedule", "constant", doc="`lr`")
def constant(learning_rate: float) -> float:
    """No schedule: the learning rate itself (``[schedule] type = "constant"``)."""
    return learning_rate


@register("schedule", "exponential", _DECAY_STEPS,
          Option("decay_rate", FLOAT, REQUIRED, "the factor per `decay_steps`", low=0.0, low_open=True),
          Option("staircase", BOOL, False, "floor the exponent"),
          doc="`lr * decay_rate ** (step / decay_steps)`, the exponent floored when `staircase`")
def exponential_decay(learning_rate: float, decay_steps: int, decay_rate: float,
                      staircase: bool = False) -> ExponentialDecay:
    """TF1's ``tf.train.exponential_decay`` as a schedule.

    Args:
      learning_rate: rate at step 0.
      decay_steps: steps per decay period, > 0.
      decay_rate: multiplicative factor per period, > 0.
      staircase: floor ``step / decay_steps``.

    Returns:
      A callable ``step -> float``.

    Example:
      >>> exponential_decay(0.1, 100, 0.96)(100)
      0.096
    """
    return ExponentialDecay(learning_rate, decay_steps, decay_rate, staircase)


def _check_piecewise(params) -> tuple[str, str] | None:
    b, v = params["boundaries"], params["values"]
    if len(v) != len(b) + 1:
        return "values", (f"one more entry than boundaries: Expect: {len(b) + 1} values ({len(b)} boundaries) "
                          f"Actual: {len(v)}")
    if any(x >= y for x, y in zip(b, b[1:])) or (b and b[0] <= 0):
        return "boundaries", f"Expect: positive and strictly increasing Actual: {b}"
    return None


@register("schedule", "piecewise",
          Option("boundaries", INT_LIST, REQUIRED, "increasing steps"),
          Option("values", NUMBER_LIST, REQUIRED, "the rates, one more than `boundaries`",
                 low=0.0, low_open=True),
          check=_check_piecewise, uses_learning_rate=False,
          doc="`values[0]` up to and including `boundaries[0]`, then `values[1]`, ... "
              "(`learning_rate` is not used)")
def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> PiecewiseConstant:
    """TF1's ``tf.train.piecewise_constant``: ``values[0]`` up to and including
    ``boundaries[0]``, then ``values[1]``, ...

    Example:
      >>> piecewise_constant([100, 200], [1.0, 0.5, 0.1])(150)
      0.5
    """
    return PiecewiseConstant(boundaries, values)


@register("schedule", "polynomial", _DECAY_STEPS,
          Option("end_learning_rate", FLOAT, 0.0001, "the final rate", low=0.0),
          Option("power", FLOAT, 1.0, "the polynomial's power", low=0.0, low_open=True),
          Option("cycle", BOOL, False, "after `decay_steps`, decay again towards the next multiple of "
                 "`decay_steps` instead of staying at `end_learning_rate`"),
          doc="`(lr - end) * (1 - step / decay_steps) ** power + end`")
def polynomial_decay(learning_rate: float, decay_steps: int, end_learning_rate: float = 0.0001,
                     power: float = 1.0, cycle: bool = False) -> PolynomialDecay:
    """TF1's ``tf.train.polynomial_decay`` (defaults as in TF1).

    Example:
      >>> polynomial_decay(1.0, 10, end_learning_rate=0.0)(5)
      0.5
    """
    return PolynomialDecay(learning_rate, decay_steps, end_learning_rate, power, cycle)


@register("schedule", "cosine", _DECAY_STEPS,
          Option("alpha", FLOAT, 0.0, "the final rate as a fraction of `lr`", low=0.0, high=1.0),
          doc="`lr * ((1 - alpha) * 0.5 * (1 + cos(pi * step / decay_steps)) + alpha)`")
def cosine_decay(learning_rate: float, decay_steps: int, alpha: float = 0.0) -> CosineDecay:
    """TF1's ``tf.train.cosine_decay``.

    Example:
      >>> cosine_decay(1.0, 10)(5)
      0.5
    """
    return CosineDecay(learning_rate, decay_steps, alpha)


def warmup(schedule_or_float: LearningRate, warmup_steps: int, initial_learning_rate: float = 0.0) -> LinearWarmup:
    """Linear warm-up over ``warmup_steps``, then ``schedule_or_float`` (shifted to start at 0).

    Example:
      >>> s = warmup(0.4, warmup_steps=4)
      >>> [s(i) for i in range(6)]
      [0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.4]
    """
    return LinearWarmup(schedule_or_float, warmup_steps, initial_learning_rate)


def resolve(learning_rate: LearningRate, step: int) -> float:
    """The learning rate for ``step``: the float itself or ``schedule(step)``, validated.

    Raises:
      InvalidArgumentError: the value is not a finite number >= 0.
    """
    value = learning_rate(step) if callable(learning_rate) else learning_rate
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"learning rate schedule at step {step}: Expect: a float Actual: {type(value).__name__} {value!r}") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"learning rate at step {step}: Expect: a finite number >= 0 Actual: {value}")
    return value


__all__ = ["Schedule", "ExponentialDecay", "PiecewiseConstant", "PolynomialDecay", "CosineDecay",
           "LinearWarmup", "constant", "exponential_decay", "piecewise_constant", "polynomial_decay",
           "cosine_decay", "warmup", "resolve"]
