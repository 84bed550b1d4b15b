"""Element-wise work over chunks, on as many threads as this rank runs BLAS on.

In one process with several threads (``distnet train`` on one rank, or the
``1x2`` configuration of benchmarks/compare.py), BLAS keeps every core busy in
the matrix products, but numpy's element-wise passes — the optimizer's update
and the EMA's, over every parameter each step — run on one.  numpy releases
the GIL inside its element-wise loops, so contiguous runs of chunks can be
updated by several threads at once.  Each element is computed by the same
operations as on one thread, so the results are bitwise the same.  The
threads have the cores only where BLAS's own idle threads do not spin for
long after each product (distnet/runner/blas_spin.py: the ``distnet``
command sees to it).

The thread count follows the rank's BLAS threads
(:func:`distnet.distributed.threads.limit_blas_threads`: one per rank when
ranks share the machine's cores): with one thread everything runs in the
calling thread and no pool is created.  The pool is created at the first
parallel run and owned by the object that made it.
"""
from __future__ import annotations

import contextvars
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from distnet.errors import InvalidArgumentError


def blas_threads() -> int:
    """This process's BLAS thread count (threadpoolctl), 1 when unknown."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return 1
    counts = [int(p.get("num_threads") or 1) for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(counts) if counts else 1


class ChunkThreads:
    """Runs ``work(part, lo, hi)`` over contiguous parts of ``range(n)`` on ``threads`` threads.

    Args:
      threads: >= 1; ``"blas"`` takes :func:`blas_threads` (resolved on first use).
      min_per_part: fewer items than this per part are not worth a thread
        (the hand-over costs tens of microseconds).

    Example:
      >>> pool = ChunkThreads(2)
      >>> pool.run(10, lambda part, lo, hi: print(part, lo, hi))   # parts 0..4 and 5..9
    """

    def __init__(self, threads: int | str = "blas", min_per_part: int = 8):
        if threads != "blas" and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InvalidArgumentError(f"threads: Expect: an int >= 1 or 'blas' Actual: {threads!r}")
        self._threads = threads
        self.min_per_part = int(min_per_part)
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0   # the process that started the pool: a forked child starts its own

    @property
    def threads(self) -> int:
        if self._threads == "blas":
            self._threads = blas_threads()
        return self._threads

    def parts(self, n: int) -> int:
        """How many parts :meth:`run` splits ``n`` items into."""
        return max(1, min(self.threads, n // max(1, self.min_per_part)))

    def run(self, n: int, work: Callable[[int, int, int], None]) -> None:
        """``work(part, lo, hi)`` for the :meth:`parts` contiguous ranges of ``range(n)``; part 0 in
        the calling thread, the others on the pool; returns when all are done (re-raising an error).

        Every part sees the caller's context variables (a copy each): numpy keeps ``np.errstate``
        in one, so a caller's ``errstate(over="ignore")`` or ``"raise"`` holds in every part."""
        parts = self.parts(n)
        if parts == 1:
            work(0, 0, n)
            return
        if self._pool is None or self._pid != os.getpid():
            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="distnet-chunks")
            self._pid = os.getpid()
        bounds = [n * k // parts for k in range(parts + 1)]
        futures = [self._pool.submit(contextvars.copy_context().run, work, k, bounds[k], bounds[k + 1])
                   for k in range(1, parts)]
        try:
            work(0, bounds[0], bounds[1])
        finally:
            for f in futures:
                f.result()

    def close(self) -> None:
        """Stop the pool's threads (a later :meth:`run` starts a new pool)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
