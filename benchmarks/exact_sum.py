"""The exact (float64 fixed-grid) sum against the plain float32 all-reduce it replaces.

The gradients have the reference conv net's shapes (conv2d 5x5x1x32 + bias,
dense 6272x1024 + bias, dense_1 1024x10 + bias: ~6.4 M float32), one scale
segment per variable.  Each rank holds ``--pieces`` per-piece gradients
(canonical pieces of the global batch: ``pieces * size`` in all).  Timed
between barriers, the two sides alternating so machine noise hits both alike;
the figure is the median over repeats of the slowest rank's time.

- ``float32``: the pieces added locally in float32, one in-place float32 Allreduce
  (what a rank does today with micro-batches);
- ``exact``: :func:`~distnet.distributed.exact_sum.exact_allreduce` (one max-reduction of
  the exponents, the rounding of every piece to the grid, a float64 reduce-scatter and a float32
  all-gather, the conversion back of this rank's block), and its parts measured alone; with one
  piece per rank on 2 ranks (2 summands in all) it is the float32 all-reduce path.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE mpiexec -n 2 python benchmarks/exact_sum.py
    ... --pieces 1,8 --repeats 9
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from distnet.distributed import get_communicator  # noqa: E402 (after the thread settings)
from distnet.distributed.exact_sum import (  # noqa: E402
    dequantize,
    exact_allreduce,
    fraction_bits,
    local_exponents,
    quantize,
)

SHAPES = {"conv2d/bias": (32,), "conv2d/kernel": (5, 5, 1, 32), "dense/bias": (1024,),
          "dense/kernel": (6272, 1024), "dense_1/bias": (10,), "dense_1/kernel": (1024, 10)}


def timed(comm, fn) -> float:
    comm.barrier()
    t0 = time.perf_counter()
    fn()
    mine = np.array([time.perf_counter() - t0])
    comm.allreduce_(mine, op="max")
    return float(mine[0])


def measure(comm, pieces: list, starts, repeats: int) -> tuple:
    """Per repeat: the float32 path, the exact path and the exact path's parts (seconds, slowest rank)."""
    count = len(pieces) * comm.size
    frac = fraction_bits(count)

    def plain():
        acc = pieces[0].copy()
        for g in pieces[1:]:
            acc += g
        comm.allreduce_(acc)

    def exact():
        exact_allreduce(comm, pieces, count, starts=starts)

    parts = {"exps": [], "quantize": [], "allreduce": [], "back": []}
    f32, ex = [], []
    e = local_exponents(pieces, starts)
    comm.allreduce_(e, op="max")
    q = quantize(pieces, e, frac, starts)
    blk = -(-q.size // comm.size)
    q_pad = np.zeros(blk * comm.size)
    q_pad[:q.size] = q
    for _ in range(repeats):
        f32.append(timed(comm, plain))
        ex.append(timed(comm, exact))
        parts["exps"].append(timed(comm, lambda: comm.allreduce_(local_exponents(pieces, starts), op="max")))
        parts["quantize"].append(timed(comm, lambda: quantize(pieces, e, frac, starts)))
        parts["allreduce"].append(timed(comm, lambda: comm.allgather_(np.zeros(blk * comm.size, np.float32))
                                        if comm.reduce_scatter_block_(q_pad, np.empty(blk)) is not None else None))
        parts["back"].append(timed(comm, lambda: dequantize(q, e, frac, starts)))
    return f32, ex, parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pieces", default="1,8", help="pieces per rank, comma-separated")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    comm = get_communicator("auto")
    sizes = [int(np.prod(SHAPES[k])) for k in sorted(SHAPES)]
    starts = np.cumsum([0] + sizes[:-1])
    n = sum(sizes)
    rng = np.random.default_rng(comm.rank)
    if comm.rank == 0:
        print(f"ranks {comm.size}, {n} float32 per gradient ({n * 4 / 1e6:.1f} MB; the exact sum's wire: float64 "
              f"reduce-scatter + float32 all-gather), {len(sizes)} segments, median of {args.repeats}, slowest rank")
        print(f"{'pieces/rank':>11} {'float32 ms':>11} {'exact ms':>9} {'ratio':>6} | exact parts ms: "
              f"{'exps':>6} {'quantize':>8} {'f64 RS + f32 AG':>15} {'back':>6}")
    for p in (int(v) for v in args.pieces.split(",")):
        # gradient-like magnitudes that differ by layer
        pieces = [(rng.standard_normal(n) * np.repeat(10.0 ** -np.arange(len(sizes)), sizes)).astype(np.float32)
                  for _ in range(p)]
        f32, ex, parts = measure(comm, pieces, starts, args.repeats)
        if comm.rank == 0:
            a, b = statistics.median(f32) * 1e3, statistics.median(ex) * 1e3
            m = {k: statistics.median(v) * 1e3 for k, v in parts.items()}
            print(f"{p:>11} {a:>11.1f} {b:>9.1f} {b / a:>5.2f}x | {'':>15}{m['exps']:>6.1f} {m['quantize']:>8.1f} "
                  f"{m['allreduce']:>15.1f} {m['back']:>6.1f}")


if __name__ == "__main__":
    main()
