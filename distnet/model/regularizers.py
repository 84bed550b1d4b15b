"""Weight regularizers (TF1's ``tf.contrib.layers.l1_regularizer`` / ``l2_regularizer``).

A regularizer is a callable ``w -> scalar Tensor`` (or ``None``)::

    l1(scale)(w)      = scale * sum(|w|)
    l2(scale)(w)      = scale * sum(w**2) / 2        # TF1: scale * tf.nn.l2_loss(w)
    l1_l2(a, b)(w)    = l1(a)(w) + l2(b)(w)

With ``w = [[5,-2],[-3,1]]`` and scale 0.5, l1 gives 5.5 and l2 gives 9.75.  Note that Keras' ``regularizers.l2`` has no ``/ 2``; distnet
follows TF1.

Convention for a zero scale (TF1): the term is *disabled* and the callable
returns ``None``; layers and :func:`collect` skip it.  A negative scale is an
:class:`~distnet.errors.InvalidArgumentError`.

The two ways to regularize have one aggregate each, and both always return
a scalar Tensor, ``0.0`` when there is nothing to add: :func:`weight_decay_loss`
(weight decay over a list of variables, a job's ``[regularization]``) and
``distnet.model.losses.get_regularization_loss`` (the sum of the layers' own
regularizer terms).  Given the same scale on the same variables they agree.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Optional, Union

import numpy as np

from distnet import registry
from distnet.errors import DTypeError, InvalidArgumentError
from distnet.registry import FLOAT, Option, register
from distnet.tensor import Tensor, as_tensor

Regularizer = Callable[[Tensor], Optional[Tensor]]


def _scale(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidArgumentError(f"{name}: scale: Expect: a number Actual: {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise InvalidArgumentError(f"{name}: scale: Expect: a finite number >= 0 Actual: {value!r}")
    return v


def _weights(name: str, w: Any) -> Tensor:
    t = as_tensor(w)
    if t.dtype.kind != "f":
        raise DTypeError(f"{name}: Expect: a floating tensor Actual: dtype {t.dtype}")
    return t


class L1:
    """``scale * sum(|w|)``; ``None`` when ``scale == 0``."""

    def __init__(self, scale: float):
        self.scale = _scale("l1", scale)

    def __call__(self, w: Any) -> Optional[Tensor]:
        from distnet.ops import abs as _abs, reduce_sum

        if self.scale == 0.0:
            return None
        return reduce_sum(_abs(_weights("l1", w))) * self.scale

    def __repr__(self) -> str:
        return f"l1({self.scale})"


class L2:
    """``scale * sum(w**2) / 2`` (TF1's l2_regularizer); ``None`` when ``scale == 0``."""

    def __init__(self, scale: float):
        self.scale = _scale("l2", scale)

    def __call__(self, w: Any) -> Optional[Tensor]:
        from distnet.nn import l2_loss

        if self.scale == 0.0:
            return None
        return l2_loss(_weights("l2", w)) * self.scale

    def __repr__(self) -> str:
        return f"l2({self.scale})"


class L1L2:
    """``l1 * sum(|w|) + l2 * sum(w**2) / 2``; a zero part is left out, ``None`` if both are."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1, self.l2 = L1(_scale("l1_l2", l1)), L2(_scale("l1_l2", l2))

    def __call__(self, w: Any) -> Optional[Tensor]:
        terms = [t for t in (self.l1(w), self.l2(w)) if t is not None]
        if not terms:
            return None
        return terms[0] if len(terms) == 1 else terms[0] + terms[1]

    def __repr__(self) -> str:
        return f"l1_l2(l1={self.l1.scale}, l2={self.l2.scale})"


def _scale_option(name: str = "scale") -> Option:
    return Option(name, FLOAT, doc="the factor (0 switches the term off)", low=0.0)


@register("regularizer", "l1", _scale_option(), doc="`scale * sum(abs(w))`")
def l1(scale: float) -> L1:
    """L1 regularizer ``scale * sum(|w|)``.

    Example:
      >>> l1(0.5)(distnet.constant([[5.0, -2.0], [-3.0, 1.0]])).numpy()
      array(5.5, dtype=float32)
    """
    return L1(scale)


@register("regularizer", "l2", _scale_option(),
          doc="`scale * sum(w**2) / 2` (TF1's `l2_regularizer`; Keras' has no `/ 2`)")
def l2(scale: float) -> L2:
    """L2 regularizer ``scale * sum(w**2) / 2`` (TF1).

    Example:
      >>> l2(0.5)(distnet.constant([[5.0, -2.0], [-3.0, 1.0]])).numpy()
      array(9.75, dtype=float32)
    """
    return L2(scale)


@register("regularizer", "l1_l2", _scale_option("l1"), _scale_option("l2"),
          doc="`l1 * sum(abs(w)) + l2 * sum(w**2) / 2`")
def l1_l2(l1: float = 0.0, l2: float = 0.0) -> L1L2:  # noqa: F811 (Keras' argument names)
    """Sum of an L1 and an L2 (TF1 halved) regularizer."""
    return L1L2(l1, l2)


def get(identifier: Union[None, str, dict, Regularizer]) -> Optional[Regularizer]:
    """``None`` stays None; a callable is returned as is; a job-file table
    (``{"type": "l2", "scale": 0.004}``) builds that regularizer; a bare name
    (``"l1"``, ``"l2"``, ``"l1_l2"``) gives it with every scale 0.01 (Keras' default)."""
    if identifier is None or callable(identifier):
        return identifier
    if isinstance(identifier, str):
        found = registry.lookup("regularizer", identifier)
        if found is not None:
            return found.make({opt.name: 0.01 for opt in found.options})
    if isinstance(identifier, dict):
        return registry.make("regularizer", identifier)
    raise InvalidArgumentError(
        f"unknown regularizer {identifier!r}; expected None, a callable w -> scalar Tensor, or one of "
        f"{list(registry.names('regularizer'))}")


def _zero(dtype=np.float32) -> Tensor:
    return Tensor(np.zeros((), dtype=dtype))


def add_n(terms: Iterable[Optional[Tensor]], dtype=np.float32) -> Tensor:
    """Sum of scalar tensors, skipping ``None`` (disabled terms); ``0.0`` of ``dtype`` if empty."""
    total = None
    for t in terms:
        if t is None:
            continue
        total = t if total is None else total + t
    return _zero(dtype) if total is None else total


def _is_bias(var) -> bool:
    name = getattr(var, "name", None) or ""
    return name.rsplit("/", 1)[-1].startswith("bias")


def weight_decay_loss(variables: Iterable, weight_decay: float, exclude_bias: bool = False) -> Tensor:
    """Weight decay: ``weight_decay * sum(l2_loss(v) for v in variables)``.

    Args:
      variables: typically ``model.trainable_variables`` (biases included, as
        TF1 code written this way does).
      weight_decay: >= 0; 0 gives a scalar 0.0.
      exclude_bias: leave out variables whose last name component starts with
        ``bias`` (``dense/bias``).

    Returns:
      A scalar Tensor.

    Example:
      >>> weight_decay_loss(model.trainable_variables, 0.004)
    """
    from distnet.nn import l2_loss

    wd = _scale("weight_decay_loss", weight_decay)
    variables = [v for v in variables if not (exclude_bias and _is_bias(v))]
    if wd == 0.0 or not variables:
        return _zero(variables[0].dtype if variables else np.float32)
    return add_n(l2_loss(v) for v in variables) * wd


__all__ = ["l1", "l2", "l1_l2", "get", "weight_decay_loss", "add_n", "L1", "L2", "L1L2"]
