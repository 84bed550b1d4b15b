"""Compare two checkpoints bit for bit: the check of deterministic mode (docs/determinism.md).

Two runs of the same job in deterministic mode — on any numbers of workers, or one resumed
on another number — must end with the same bits in every array a checkpoint holds: the
weights, every optimizer slot, every EMA shadow, and the same step, iteration count and
data position.  :func:`compare_states` lists every difference; ``distnet compare A B``
prints them (exit 1 when there is one).  What is left out on purpose: the world size that
wrote the file, the job text (run directories differ) and the last metrics (they hold a
speed).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Difference:
    """One way two checkpoints differ.

    Attributes:
        what: the array or field, e.g. ``"params/dense/kernel"``, ``"slots/m/dense/bias"``, ``"step"``.
        detail: how: ``"max |a - b| = 3e-08 (12 of 80 elements)"``, ``"only in A"``, ``"10 vs 12"``.
    """

    what: str
    detail: str


def _arrays(state) -> dict:
    out = {f"params/{k}": v for k, v in state.params.items()}
    out.update({f"ema/{k}": v for k, v in state.ema.items()})
    for slot, per_var in state.optimizer.get("slots", {}).items():
        out.update({f"slots/{slot}/{k}": v for k, v in per_var.items()})
    return out


def _array_difference(a: np.ndarray, b: np.ndarray) -> str | None:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"{a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
    if a.tobytes() == b.tobytes():
        return None
    # bits differ: values, or NaNs of other payloads, or -0.0 against 0.0
    bits_a, bits_b = (x.reshape(-1).view(np.uint8).reshape(x.size, -1) for x in (a, b))
    elements = int(np.count_nonzero((bits_a != bits_b).any(axis=1)))
    with np.errstate(invalid="ignore", over="ignore"):
        delta = np.abs(a.astype(np.float64) - b.astype(np.float64)).reshape(-1)
    finite = delta[np.isfinite(delta)]
    largest = f"{float(finite.max()):.3g}" if finite.size else "nan"
    return f"max |a - b| = {largest} ({elements} of {a.size} elements)"


def compare_states(a, b) -> tuple[list[Difference], int]:
    """``(differences, arrays compared)`` of two :class:`~distnet.checkpoint.state.CheckpointState`.

    Example:
        >>> diffs, n = compare_states(load("A/ckpt-00000010.h5"), load("B/ckpt-00000010.h5"))
        >>> diffs == []   # bitwise equal
        True
    """
    out = []
    for field in ("step", "epoch", "position"):
        va, vb = getattr(a, field), getattr(b, field)
        if va != vb:
            out.append(Difference(field, f"{va} vs {vb}"))
    ia, ib = a.optimizer.get("iterations"), b.optimizer.get("iterations")
    if ia != ib:
        out.append(Difference("optimizer iterations", f"{ia} vs {ib}"))
    arrays_a, arrays_b = _arrays(a), _arrays(b)
    for name in sorted(set(arrays_a) | set(arrays_b)):
        if name not in arrays_b:
            out.append(Difference(name, "only in A"))
        elif name not in arrays_a:
            out.append(Difference(name, "only in B"))
        else:
            detail = _array_difference(arrays_a[name], arrays_b[name])
            if detail is not None:
                out.append(Difference(name, detail))
    return out, len(set(arrays_a) | set(arrays_b))
