"""Compiled element-wise kernels: numba's ``njit`` with the options every kernel shares.

numpy runs an expression such as Adam's update as a sequence of passes, one
per operation, each reading and writing whole arrays; a compiled loop does
the same arithmetic in one pass with the values in registers.  Each kernel
performs, element by element, exactly the floating-point operations of the
numpy code it replaces, in the same order and the same dtype (no fused
multiply-add, no reassociation: numba's default ``fastmath=False``), so its
results are bitwise the numpy path's.  Every kernel's test checks that
against the numpy path it stands for (``tests/test_jit_kernels.py``,
``tests/test_jit_optimizers.py``).

``kernel(fn)`` returns a :class:`Kernel` that compiles ``fn`` at its first
call, or ``None`` where numba is not installed or ``DISTNET_JIT=0`` is set
(for debugging: the numpy paths run, and give the same bits).  Callers keep
their numpy path for that case.

Options, and why:

* ``nogil``: the kernels run on :mod:`distnet.distributed.chunk_threads`'
  threads, several at once;
* ``error_model="numpy"``: a division by zero gives inf/nan as numpy does
  (numba's default raises, and its checks keep loops from being vectorised);
* ``cache``: compiled code is kept on disk beside the module (or in numba's
  user cache directory, ``~/.cache/numba``, where that is read-only, as in an
  installed package), so a process compiles a kernel once per argument types,
  not every start; where neither is writable (nor ``NUMBA_CACHE_DIR``), each
  process compiles in memory, with a warning;
* ``boundscheck=False``: callers pass arrays of matching sizes.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from typing import Callable, Optional

import numpy as np

#: ``DISTNET_JIT=0`` turns the compiled kernels off (the numpy paths run; same bits).
ENABLED = os.environ.get("DISTNET_JIT", "1").strip().lower() not in ("0", "false", "no", "off")
#: numba is imported at a kernel's first call, not with distnet: importing it costs a
#: process start-up more than half a second, which commands that train nothing need not pay.
_AVAILABLE = ENABLED and importlib.util.find_spec("numba") is not None


class Kernel:
    """A function compiled by numba at its first call (then per new argument types).

    ``py_func`` is the plain Python function.
    """

    __slots__ = ("py_func", "_compiled")

    def __init__(self, fn: Callable):
        self.py_func = fn
        self._compiled = None

    @property
    def loaded(self) -> bool:
        """Whether this process has compiled (or loaded from the cache) the kernel already."""
        return self._compiled is not None

    def __call__(self, *args):
        compiled = self._compiled
        if compiled is None:   # two threads may both compile once; numba serialises it
            compiled = self._compiled = _compile(self.py_func)
        return compiled(*args)


def _compile(fn: Callable):
    """numba's dispatcher of ``fn``, cached on disk where numba finds a writable place."""
    njit = importlib.import_module("numba").njit
    options = {"nogil": True, "error_model": "numpy", "boundscheck": False}
    try:
        return njit(cache=True, **options)(fn)
    except RuntimeError:
        # Neither the package's directory nor numba's user cache directory (~/.cache/numba,
        # NUMBA_CACHE_DIR) is writable (a read-only install and home, as in many containers):
        # numba refuses to cache.  Compiled in memory instead, the kernel costs the process
        # a compilation at its first call (seconds, and a higher peak memory) at every start.
        from distnet.distributed.threads import PerformanceWarning   # imports distnet.jit

        warnings.warn("distnet's compiled kernels: numba finds no writable cache directory, so each process "
                      "compiles them again; Expect: NUMBA_CACHE_DIR set to a writable directory",
                      PerformanceWarning)   # this line: shown once per process
        return njit(**options)(fn)


def kernel(fn: Callable) -> Optional[Kernel]:
    """``fn`` as a :class:`Kernel`, or None without numba (or with ``DISTNET_JIT=0``)."""
    return Kernel(fn) if _AVAILABLE else None


#: Arrays of fewer elements keep the numpy path (the same bits): a process's first
#: kernel call imports numba and loads the compiled code, about a second, which the
#: small arrays of a small model (and of most tests) never win back.
MIN_ELEMENTS = 1 << 16


def worth(n: int, kernel: Optional[Kernel] = None) -> bool:
    """True when an array of ``n`` elements should take the compiled kernel: from ``MIN_ELEMENTS``
    on, or at any size once ``kernel`` is loaded in this process (a large array loaded it): then a
    call costs a few microseconds, where numpy's path costs about one per operation."""
    return _AVAILABLE and (n >= MIN_ELEMENTS or (kernel is not None and kernel.loaded))


def compiles(*arrays: np.ndarray) -> bool:
    """True when the arrays have one dtype, float32 or float64: numba compiles neither
    float16 nor long double, and mixed dtypes follow numpy's casting rules, which the
    numpy paths keep."""
    dtype = arrays[0].dtype
    if dtype not in _COMPILED_DTYPES:
        return False
    for a in arrays:
        if a.dtype != dtype:
            return False
    return True


_COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def available() -> bool:
    """True when :func:`kernel` compiles (numba installed and not turned off)."""
    return _AVAILABLE
