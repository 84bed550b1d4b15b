"""``out = a + b`` and whether every sum is finite, in one pass: the shared-memory reductions' step.

A rank that sums gradients itself (the replicated strategy's ``shared_memory``,
ZeRO-1's block sums through shared memory) must also say whether the sum is
finite; numpy needs a second pass over the result for that (a sum of squares,
or ``isfinite``).  The compiled kernel (:mod:`distnet.jit`) checks each sum as
it stores it.  Both paths add with numpy's float addition, element by
element, so the sums are the same bits, and both answer exactly "every element
finite" (``tests/test_jit_kernels.py``).
"""
from __future__ import annotations

import numpy as np

from distnet import jit

#: Elements per chunk of the numpy path (256 KiB of float32: summed and checked while cached).
CHUNK = 1 << 16


@jit.kernel
def _sum_finite_kernel(out, a, b):
    finite = True
    for i in range(out.size):
        s = a[i] + b[i]
        out[i] = s
        finite &= np.isfinite(s)
    return finite


# In place (``out`` is ``a``): with ``out`` and ``a`` as two arguments the compiled loop finds
# them overlapping at run time and takes its scalar version, at a third of the speed.
@jit.kernel
def _add_finite_kernel(out, b):
    finite = True
    for i in range(out.size):
        s = out[i] + b[i]
        out[i] = s
        finite &= np.isfinite(s)
    return finite


def sum_finite(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    """``out[:] = a + b`` (1-d arrays of one dtype and size; ``out`` may be ``a``); True when
    every element of the sum is finite.

    Numpy path (no numba, ``DISTNET_JIT=0``, fewer than ``jit.MIN_ELEMENTS`` elements while the
    kernel is not loaded, a dtype numba does not compile): chunk by chunk, the sum then its sum of squares while cached
    (finite only if every element is), the exact check where it overflows.
    """
    if _sum_finite_kernel is not None and jit.compiles(out, a, b):
        in_place = a is out or (a.ctypes.data == out.ctypes.data and a.strides == out.strides)
        if jit.worth(out.size, _add_finite_kernel if in_place else _sum_finite_kernel):
            return bool(_add_finite_kernel(out, b) if in_place else _sum_finite_kernel(out, a, b))
    finite = True
    with np.errstate(over="ignore", invalid="ignore"):
        for lo in range(0, out.size, CHUNK):
            chunk = out[lo: lo + CHUNK]
            np.add(a[lo: lo + CHUNK], b[lo: lo + CHUNK], out=chunk)
            finite = finite and bool(np.isfinite(np.dot(chunk, chunk)) or np.isfinite(chunk).all())
    return finite
