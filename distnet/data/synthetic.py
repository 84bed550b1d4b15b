"""Tabular datasets made by a formula from a fixed seed: the same samples on every machine and
every rank, with nothing to download — for examples and tests beyond images.

* ``"tabular_regression"``: 8 standard-normal features; the target is
  ``2 sin(x0) + x1 x2 + 0.5 x3**2 - x4 + 0.1 noise`` (x5..x7 carry nothing), float32.
* ``"tabular_binary"``: 8 standard-normal features; the label is 1 where
  ``x0 + x1 x2 - 0.5 x3 > 0``, with 5 % of the labels flipped (so about 95 % is the best
  accuracy one can expect).

Both give 4,000 training and 1,000 test samples.
"""
from __future__ import annotations

import numpy as np

from distnet.data.builtin import Splits
from distnet.data.datasets import ArrayDataset
from distnet.errors import DataError

SYNTHETIC_NAMES = ("tabular_regression", "tabular_binary")
_TRAIN, _TEST, _FEATURES = 4000, 1000, 8


def _features(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((_TRAIN + _TEST, _FEATURES)).astype(np.float32)


def _split(x: np.ndarray, y: np.ndarray, name: str, **kwargs) -> Splits:
    source = f"{name} (distnet.data.synthetic, seed 0)"
    return Splits(ArrayDataset(x[:_TRAIN], y[:_TRAIN], source=source, **kwargs),
                  ArrayDataset(x[_TRAIN:], y[_TRAIN:], source=source, **kwargs))


def load_synthetic(name: str) -> Splits:
    """The train and test splits of the generated dataset ``name`` (one of :data:`SYNTHETIC_NAMES`).

    Example:
      >>> train, test = load_synthetic("tabular_regression")
      >>> len(train), train.image_shape, train.target
      (4000, (8,), 'values')
    """
    key = str(name).lower().replace("-", "_")
    if key == "tabular_regression":
        x = _features(0)
        noise = np.random.default_rng(1).standard_normal(len(x)).astype(np.float32)
        y = 2 * np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 3] ** 2 - x[:, 4] + 0.1 * noise
        return _split(x, y.astype(np.float32), key)
    if key == "tabular_binary":
        x = _features(2)
        y = (x[:, 0] + x[:, 1] * x[:, 2] - 0.5 * x[:, 3] > 0).astype(np.int64)
        flip = np.random.default_rng(3).random(len(x)) < 0.05
        y[flip] = 1 - y[flip]
        return _split(x, y, key, num_classes=2, class_names=("0", "1"))
    raise DataError(f"no generated dataset {name!r}; Expect: one of {list(SYNTHETIC_NAMES)}")


__all__ = ["SYNTHETIC_NAMES", "load_synthetic"]
