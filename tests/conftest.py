"""Shared pytest fixtures.

Fixtures are explicit (no module-level RNG): a test that needs random data
asks for ``rng`` and gets a generator with a fixed seed.
"""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh numpy Generator seeded with 0, one per test."""
    return np.random.default_rng(0)
