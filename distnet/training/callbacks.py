"""Early stopping and keeping the best checkpoint (Keras's names), under their earlier import path.

They are hooks now (:mod:`distnet.training.hook`): see
:mod:`distnet.training.hooks.early_stopping` and :mod:`distnet.training.hooks.keep_best`.
"""
from __future__ import annotations

from distnet.training.hooks.early_stopping import EarlyStopping
from distnet.training.hooks.keep_best import KeepBest

__all__ = ["EarlyStopping", "KeepBest"]
