"""The flat layout of a model's variables: one contiguous buffer, one view per variable.

Every strategy keeps the gradients (and ZeRO-1 the weights) in one flat
buffer, so a whole step's reduction is one collective on one array.  The
layout is the same on every rank: variables in sorted-name order, each at
its offset, optionally cut into ``ranks`` equal blocks (zero padding at the
end; a block may cut through a variable) for strategies that give each rank
a block of its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from distnet.errors import InvalidArgumentError

#: Block lengths are a multiple of this many elements (64 bytes of float32),
#: so every rank's block starts on a cache line.
BLOCK_ALIGN = 16


@dataclass(frozen=True)
class Piece:
    """The part of variable ``index`` that falls in one rank's block.

    Attributes:
        index: the variable's position in the layout's ``variables``.
        name: the variable's name.
        start, stop: element range within the flattened variable.
        lo: offset of the piece in the rank's block.
    """

    index: int
    name: str
    start: int
    stop: int
    lo: int

    @property
    def size(self) -> int:
        return self.stop - self.start


class FlatLayout:
    """Where each variable lives in a flat buffer, and each rank's block of it.

    Args:
        variables: objects with a unique string ``name`` and a ``shape``.
        ranks: number of equal blocks (1: no blocks, no padding).
    Attributes:
        variables, names: as given (the caller's order).
        offsets: element offset of each variable (aligned with ``variables``).
        total: elements of all variables.
        block_size: elements of each rank's block (``total`` when ``ranks`` is 1).
        padded: ``block_size * ranks`` (>= ``total``; the end is padding).
    Example:
        >>> layout = FlatLayout(model.trainable_variables, ranks=2)
        >>> views = layout.views(np.zeros(layout.padded, np.float32))
    """

    def __init__(self, variables: Sequence, ranks: int = 1) -> None:
        self.variables = list(variables)
        if not self.variables:
            raise InvalidArgumentError("flat layout: Expect: at least one variable Actual: none")
        names = [getattr(v, "name", None) for v in self.variables]
        if any(not isinstance(n, str) for n in names):
            raise InvalidArgumentError("flat layout: every variable needs a string name")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidArgumentError(f"Variable names must be unique. Found duplicates: {dupes}")
        self.names = names
        self.sizes = [int(np.prod(v.shape, dtype=np.int64)) for v in self.variables]
        self.offsets = [0] * len(names)
        offset = 0
        for i in sorted(range(len(names)), key=lambda k: names[k]):
            self.offsets[i] = offset
            offset += self.sizes[i]
        self.total = offset
        self.ranks = int(ranks)
        if ranks == 1:
            self.block_size = self.total
        else:
            self.block_size = -(-self.total // (ranks * BLOCK_ALIGN)) * BLOCK_ALIGN
        self.padded = self.block_size * self.ranks

    def order(self) -> list[int]:
        """Variable indices in buffer order."""
        return sorted(range(len(self.names)), key=lambda k: self.offsets[k])

    def views(self, flat: np.ndarray) -> list[np.ndarray]:
        """One view of ``flat`` per variable, of its shape (aligned with ``variables``)."""
        return [flat[off: off + n].reshape(v.shape)
                for off, n, v in zip(self.offsets, self.sizes, self.variables)]

    def block_range(self, rank: int) -> tuple[int, int]:
        """``(lo, hi)``: the real (unpadded) elements of ``rank``'s block."""
        lo = min(self.total, rank * self.block_size)
        return lo, min(self.total, lo + self.block_size)

    def pieces(self, rank: int) -> list[Piece]:
        """The pieces of the variables that fall in ``rank``'s block, in buffer order."""
        lo, hi = self.block_range(rank)
        out = []
        for i in self.order():
            a = max(lo, self.offsets[i])
            b = min(hi, self.offsets[i] + self.sizes[i])
            if a < b:
                out.append(Piece(i, self.names[i], a - self.offsets[i], b - self.offsets[i], a - lo))
        return out

    def pack(self, arrays: Sequence[np.ndarray], flat: np.ndarray) -> np.ndarray:
        """Copy ``arrays`` (aligned with ``variables``) into ``flat``; returns ``flat``."""
        for view, a in zip(self.views(flat), arrays):
            np.copyto(view, a, casting="unsafe")
        return flat
