"""Shared pytest fixtures.

Fixtures are explicit (no module-level RNG): a test that needs random data
asks for ``rng`` and gets a generator with a fixed seed.
"""
from __future__ import annotations

from distnet.runner.blas_spin import spin_briefly

# The test process runs as the ``distnet`` command's processes do: OpenBLAS's idle threads spin
# briefly (set before numpy loads; the children the tests start inherit it).  Tests of the long spin
# set the variable themselves.
spin_briefly()

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh numpy Generator seeded with 0, one per test."""
    return np.random.default_rng(0)


@pytest.fixture
def compiled_kernels():
    """The tests that compare distnet's compiled kernels with their numpy paths (tests/test_jit_*.py)
    need the kernels on.  Skipped only where they are off (``DISTNET_JIT=0``, or numba missing
    although it is a dependency): then nothing compiled runs to compare, and the rest of the suite
    covers the numpy paths, which are what runs in their place."""
    from distnet import jit

    if not jit.available():
        # Why a skip is right here: with the kernels off there is no compiled path to compare, and
        # CI runs with them on (numba is a dependency), so these tests run there.
        pytest.skip("the compiled kernels are off (DISTNET_JIT=0 or no numba): no compiled path to compare")


@pytest.fixture
def small_arrays_compiled(compiled_kernels, monkeypatch):
    """The compiled kernels run however small the arrays (a model's arrays under
    ``jit.MIN_ELEMENTS`` keep the numpy paths): tests/test_jit_*.py."""
    from distnet import jit

    monkeypatch.setattr(jit, "MIN_ELEMENTS", 1)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request, monkeypatch):
    """The layers' kernels split over one or two threads (distnet/nn/_rows.py), however small the arrays."""
    from distnet.distributed.chunk_threads import ChunkThreads
    from distnet.nn import _rows

    pool = ChunkThreads(request.param, min_per_part=1)
    monkeypatch.setattr(_rows, "_threads", lambda: pool)
    monkeypatch.setattr(_rows, "MIN_BYTES_PER_PART", 1)
    yield request.param
    pool.close()

