"""A layer's compiled element-wise kernel over runs of rows (samples), on the rank's threads.

The layers' kernels (pooling, bias + relu, relu) compute every output element
from its own inputs only, so the rows of a batch can be split among threads and
each thread gives the bits one thread would.  The threads are the rank's BLAS
threads (:class:`~distnet.distributed.chunk_threads.ChunkThreads`): in the
``1x2`` configuration both cores work while BLAS, between two matrix
products, waits; with one thread the kernel runs in the calling thread.

:func:`over_parts_one_blas_thread` splits work made of many small matrix
products the same way (the FFT convolution's per-frequency stages), each
thread's products on one BLAS thread.

One pool serves every layer of the process (layers' ops are made anew each
step: a pool per op would start threads every step); it is created at the
first split and :class:`ChunkThreads` starts a new one in a forked child.
"""
from __future__ import annotations

import functools
from typing import Callable

from distnet.distributed.chunk_threads import ChunkThreads
from distnet.distributed.threads import one_blas_thread
from distnet.runner.blas_spin import spins_briefly

#: Fewer bytes than this per thread are not worth the hand-over (tens of microseconds).
MIN_BYTES_PER_PART = 128 << 10


@functools.lru_cache(maxsize=None)
def _threads() -> ChunkThreads:
    return ChunkThreads("blas", min_per_part=1)


def over_rows(n: int, nbytes: int, work: Callable[[int, int], None]) -> None:
    """``work(lo, hi)`` over contiguous runs of ``range(n)`` covering it, on the rank's threads;
    ``nbytes`` is the memory the whole call touches (small calls stay on the calling thread)."""
    if n < 2 or nbytes < 2 * MIN_BYTES_PER_PART:
        work(0, n)
        return
    _threads().run(n, lambda part, lo, hi: work(lo, hi))


def over_parts_one_blas_thread(n: int, work: Callable[[int, int], None]) -> None:
    """``work(lo, hi)`` over contiguous runs of ``range(n)`` on the rank's threads, BLAS on one thread meanwhile.

    For work made of many small matrix products: BLAS shares out each one poorly among its threads
    and hands it over at every call, so the rank's threads take whole runs of them instead, each
    product on the core of the thread that calls it.  OpenBLAS divides a product by rows and
    columns, never along its sums, so one BLAS thread gives the bits several would.

    Only where BLAS's idle threads sleep soon after a product (:mod:`distnet.runner.blas_spin`, as
    the ``distnet`` command runs): otherwise one of them spins on a core for the whole call and the
    rank's threads, sharing the other, run slower than the calling thread alone."""
    pool = _threads()
    if n < 2 or pool.threads < 2 or not spins_briefly():
        work(0, n)
        return
    with one_blas_thread():
        pool.run(n, lambda part, lo, hi: work(lo, hi))
