"""A layer's compiled element-wise kernel over runs of rows (samples), on the rank's threads.

The layers' kernels (pooling, bias + relu, relu) compute every output element
from its own inputs only, so the rows of a batch can be split among threads and
each thread gives the bits one thread would.  The threads are the rank's BLAS
threads (:class:`~distnet.distributed.chunk_threads.ChunkThreads`): in the
``1x2`` configuration both cores work while BLAS, between two matrix
products, waits; with one thread the kernel runs in the calling thread.

One pool serves every layer of the process (layers' ops are made anew each
step: a pool per op would start threads every step); it is created at the
first split and :class:`ChunkThreads` starts a new one in a forked child.
"""
from __future__ import annotations

import functools
from typing import Callable

from distnet.distributed.chunk_threads import ChunkThreads

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
