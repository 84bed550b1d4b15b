"""Gradient clipping: the transform between the reduction of a step's gradients and the update.

Two norms, as Keras names them (``clipnorm``, ``global_clipnorm``) and TF1
computes them (``tf.clip_by_norm``, ``tf.clip_by_global_norm``):

* by each variable's norm: ``g * c / max(||g||, c)``;
* by the global norm over every gradient of the step:
  ``g * c / max(sqrt(sum ||g_i||^2), c)``.

Both apply when both are set, per-variable first.  :class:`Clip` runs on the
gradients a strategy's reduce left (:meth:`~distnet.distributed.strategies.base.Strategy.clip`)
or on those given to ``Optimizer.apply_gradients``.  A rank that holds only
parts of the variables (ZeRO-1) passes which variable each part belongs to
and a reduction of the per-variable partial sums of squares, so the norms are
those of the whole gradient; the sum over variables is then taken in
variable order as here, so a variable held whole by one rank contributes
exactly what it contributes on one process.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np

from distnet.errors import InvalidArgumentError


def global_norm(grads: Iterable[np.ndarray | None]) -> float:
    """``sqrt(sum(sum(g**2)))`` over the non-None arrays (TF's ``tf.global_norm``)."""
    total = 0.0
    for g in grads:
        if g is not None:
            total += _squares(np.asarray(g))
    return math.sqrt(total)


def clip_by_global_norm(grads: Sequence[np.ndarray | None], clip_norm: float,
                        use_norm: float | None = None) -> tuple[list, float]:
    """Scale ``grads`` so that their global norm is at most ``clip_norm``.

    TF1's ``tf.clip_by_global_norm``: each ``g`` becomes
    ``g * clip_norm / max(global_norm, clip_norm)``; ``None`` entries stay None.

    Args:
      grads: arrays (or None).
      clip_norm: the maximum global norm, > 0.
      use_norm: the global norm if already known.

    Returns:
      ``(clipped, global_norm)``; the inputs are not modified.

    Example:
      >>> clipped, norm = clip_by_global_norm([np.array([3.0]), np.array([4.0])], 1.0)
      >>> norm, clipped[0], clipped[1]
      (5.0, array([0.6]), array([0.8]))
    """
    _check_clip("clip_norm", clip_norm)
    norm = global_norm(grads) if use_norm is None else float(use_norm)
    scale = _scale(norm, float(clip_norm), "clip_by_global_norm")
    return [None if g is None else _scaled(np.asarray(g), scale, False) for g in grads], norm


class Clip:
    """Clipping by each variable's norm and / or by the global norm, as one transform.

    Args:
        clipnorm: the maximum norm of each variable's gradient (None: no limit).
        global_clipnorm: the maximum global norm (None: no limit).
    Example:
        >>> Clip(global_clipnorm=1.0)([np.array([3.0]), np.array([4.0])])
        [array([0.6]), array([0.8])]
    """

    __slots__ = ("clipnorm", "global_clipnorm")

    def __init__(self, clipnorm: float | None = None, global_clipnorm: float | None = None) -> None:
        for name, value in (("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm)):
            if value is not None:
                _check_clip(name, value)
        self.clipnorm = None if clipnorm is None else float(clipnorm)
        self.global_clipnorm = None if global_clipnorm is None else float(global_clipnorm)

    @classmethod
    def of(cls, optimizer) -> "Clip | None":
        """The clipping ``optimizer`` asks for (its ``clipnorm`` / ``global_clipnorm``), or None."""
        clipnorm = getattr(optimizer, "clipnorm", None)
        global_clipnorm = getattr(optimizer, "global_clipnorm", None)
        if clipnorm is None and global_clipnorm is None:
            return None
        return cls(clipnorm, global_clipnorm)

    def __call__(self, grads: list, *, owners: Sequence[int] | None = None, variables: int | None = None,
                 reduce: Callable[[np.ndarray], None] | None = None, in_place: bool = False) -> list:
        """The clipped gradients (``grads`` itself, its arrays scaled, when ``in_place``).

        Args:
            grads: arrays (or None), each a variable or a part of one.
            owners: the variable each entry is (part of); default: entry i is variable i.
            variables: the number of variables (default ``len(grads)``).
            reduce: sums per-variable partial sums of squares (a float64
                array) over the ranks that hold the other parts, in place.
            in_place: scale the arrays themselves (a strategy's buffer).
        Raises:
            InvalidArgumentError: a norm is not finite (a gradient holds inf or nan).
        """
        grads = grads if in_place else list(grads)
        owners = list(range(len(grads))) if owners is None else list(owners)
        n = len(grads) if variables is None else int(variables)
        if self.clipnorm is not None:
            squares = self._squares(grads, owners, n, reduce)
            scales = [_scale(math.sqrt(s), self.clipnorm, "clipnorm") for s in squares]
            for k, (g, j) in enumerate(zip(grads, owners)):
                if g is not None:
                    grads[k] = _scaled(g, scales[j], in_place)
        if self.global_clipnorm is not None:
            total = 0.0
            for s in self._squares(grads, owners, n, reduce):   # in variable order, as global_norm
                total += float(s)
            scale = _scale(math.sqrt(total), self.global_clipnorm, "global_clipnorm")
            for k, g in enumerate(grads):
                if g is not None:
                    grads[k] = _scaled(g, scale, in_place)
        return grads

    @staticmethod
    def _squares(grads: list, owners: list, n: int, reduce) -> np.ndarray:
        squares = np.zeros(n, dtype=np.float64)
        for g, j in zip(grads, owners):
            if g is not None:
                squares[j] += _squares(np.asarray(g))
        if reduce is not None:
            reduce(squares)
        return squares

    def __repr__(self) -> str:
        return f"Clip(clipnorm={self.clipnorm!r}, global_clipnorm={self.global_clipnorm!r})"


def _squares(g: np.ndarray) -> float:
    """``sum(g**2)`` as TF1 and the optimizers have it: one dot product in the array's dtype."""
    return float(np.vdot(g.ravel(), g.ravel()).real) if g.size else 0.0


def _scale(norm: float, clip: float, what: str) -> float:
    if not math.isfinite(norm):
        raise InvalidArgumentError(f"{what}: the norm of the gradients: Expect: a finite number "
                                   f"Actual: {norm} (a gradient holds inf or nan)")
    return clip / max(norm, clip)


def _scaled(g: np.ndarray, scale: float, in_place: bool) -> np.ndarray:
    g = np.asarray(g)
    factor = g.dtype.type(scale) if g.dtype.kind == "f" else scale
    if in_place:
        return np.multiply(g, factor, out=g)
    return g * factor


def _check_clip(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(value)) or value <= 0:
        raise InvalidArgumentError(f"{name}: Expect: a finite number > 0 Actual: {value!r}")
