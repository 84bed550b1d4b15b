"""A validation split taken from the training data (Keras's ``validation_split``, chosen by seed).

The samples held out are drawn with a permutation from the job's seed, so
every rank and every run of the job holds out the same ones; training then
never sees them, and early stopping or the best checkpoint are chosen on
them instead of the test set.
"""
from __future__ import annotations

import math

import numpy as np

from distnet.errors import InvalidArgumentError


class Subset:
    """The samples ``indices`` (in that order) of ``base``, as a dataset of their own.

    Args:
        base: the dataset.
        indices: its rows, in the order this dataset gives them.
        label: what the subset is, shown after the base's source (``"first 1000"``).
    """

    def __init__(self, base, indices, label: str) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.num_classes = base.num_classes
        self.target = getattr(base, "target", "classes")
        self.image_shape = base.image_shape
        self.class_names = getattr(base, "class_names", None)
        self.source = f"{getattr(base, 'source', '')} ({label})"
        self.files = tuple(getattr(base, "files", ()))

    def __len__(self) -> int:
        return int(self.indices.size)

    def read(self, indices):
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.indices.size):
            raise InvalidArgumentError(f"read: indices: Expect: row numbers in [0, {self.indices.size}) "
                                       f"Actual: {int(idx.min())}..{int(idx.max())}")
        return self.base.read(self.indices[idx])   # the base reads rows in any order (files sort them)


def validation_split(dataset, size: float, seed: int = 0) -> tuple[Subset, Subset]:
    """``(train, validation)`` parts of ``dataset``.

    Args:
        size: a number of samples (>= 1, whole) or a fraction in (0, 1).
        seed: chooses which samples are held out.
    Example:
        >>> train, val = validation_split(full_train, 0.1, seed=0)   # doctest: +SKIP
    """
    n = len(dataset)
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not size > 0 or \
            (size >= 1 and float(size) != int(size)):
        raise InvalidArgumentError(f"validation: Expect: a whole number of samples >= 1 or a fraction in (0, 1) "
                                   f"Actual: {size!r}")
    count = int(size) if size >= 1 else max(1, math.floor(size * n))
    if count >= n:
        raise InvalidArgumentError(f"validation: Expect: fewer samples than the training data's {n} "
                                   f"Actual: {count}")
    held = np.sort(np.random.default_rng([int(seed), 7]).permutation(n)[:count])
    keep = np.setdiff1d(np.arange(n, dtype=np.int64), held, assume_unique=True)
    return (Subset(dataset, keep, f"training part: {keep.size}"),
            Subset(dataset, held, f"validation: {held.size}"))
