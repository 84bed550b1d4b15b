"""Compiled element-wise kernels: numba's ``njit`` with the options every kernel shares.

numpy runs an expression such as Adam's update as a sequence of passes, one
per operation, each reading and writing whole arrays; a compiled loop does
the same arithmetic in one pass with the values in registers.  Each kernel
performs, element by element, exactly the floating-point operations of the
numpy code it replaces, in the same order and the same dtype (no fused
multiply-add, no reassociation: numba's default ``fastmath=False``), so its
results are bitwise the numpy path's.  Every kernel's test checks that
against the numpy path it stands for (``tests/test_jit_kernels.py``).

``kernel(fn)`` returns the compiled function, or ``None`` where numba is not
installed or ``DISTNET_JIT=0`` is set (for debugging: the numpy paths stay,
and give the same bits).  Callers keep their numpy path for that case.

Options, and why:

* ``nogil``: the kernels run on :mod:`distnet.distributed.chunk_threads`'
  threads, several at once;
* ``error_model="numpy"``: a division by zero gives inf/nan as numpy does
  (numba's default raises, and its checks keep loops from being vectorised);
* ``cache``: compiled code is kept on disk beside the module (or in numba's
  user cache directory where that is read-only), so a process compiles a
  kernel once per argument types, not every start;
* ``boundscheck=False``: callers pass arrays of matching sizes.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

#: ``DISTNET_JIT=0`` turns the compiled kernels off (the numpy paths run; same bits).
ENABLED = os.environ.get("DISTNET_JIT", "1").strip().lower() not in ("0", "false", "no", "off")

try:
    if not ENABLED:
        raise ImportError("DISTNET_JIT=0")
    import numba as _numba
except ImportError:   # pragma: no cover - numba is a dependency; this is the fallback
    _numba = None


def kernel(fn: Callable) -> Optional[Callable]:
    """``fn`` compiled by numba (lazily, per argument types), or None without numba.

    The plain function stays reachable as ``.py_func`` on the result.
    """
    if _numba is None:   # pragma: no cover - see above
        return None
    return _numba.njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)(fn)


def available() -> bool:
    """True when :func:`kernel` compiles (numba importable and not turned off)."""
    return _numba is not None
