"""The exact sum's accuracy against the float32 sums it replaces, both against math.fsum.

For each number of summands and each kind of data, ``--n`` columns of float32
summands are summed three ways: :func:`~distnet.distributed.exact_sum.exact_allreduce`
(one process, the same bits as any split over ranks; all columns in one scale
segment, as one variable's gradient), float32 in sequence (a
rank's local accumulation, a ring all-reduce) and float32 pairwise (numpy's
``add.reduce``); each result's error is measured against ``math.fsum`` of the
same float32 values (exact, then rounded once to float64), in units of the
float32 ulp of the exact sum.  Prints the largest and the mean error and the
share of columns that are correctly rounded (error <= 1/2 ulp).

Usage::

    python benchmarks/exact_sum_accuracy.py            # a few seconds
    python benchmarks/exact_sum_accuracy.py --n 20000
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from distnet.distributed.exact_sum import exact_allreduce
from distnet.distributed.single import SingleCommunicator


def data(kind: str, rng, count: int, n: int) -> np.ndarray:
    if kind == "normal":
        x = rng.standard_normal((count, n))
    elif kind == "gradients":   # magnitudes spread over 8 decades, as a layer's per-piece gradients
        x = rng.standard_normal((count, n)) * 10.0 ** rng.uniform(-8, 0, (count, n))
    elif kind == "cancelling":  # pieces that mostly cancel: the sum is far smaller than its terms
        base = rng.standard_normal(n)
        x = base * rng.choice([-1.0, 1.0], (count, n)) + 1e-4 * rng.standard_normal((count, n))
    else:
        raise ValueError(kind)
    return x.astype(np.float32)


def ulps(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    unit = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / unit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="columns per case")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"error in float32 ulps of the exact sum, {args.n} columns per row: max / mean / share correctly rounded")
    print(f"{'data':>11} {'count':>5} | {'exact sum':>24} | {'float32 sequential':>24} | {'float32 pairwise':>24}")
    for kind in ("normal", "gradients", "cancelling"):
        for count in (2, 8, 64, 1024):
            x = data(kind, rng, count, args.n)
            exact = np.array([math.fsum(col) for col in x.T.astype(np.float64).tolist()])
            ours = exact_allreduce(SingleCommunicator(), x, count)   # what any number of ranks gives
            seq = x[0].copy()
            for row in x[1:]:
                seq += row
            pair = np.add.reduce(np.ascontiguousarray(x.T), axis=1, dtype=np.float32)   # numpy's pairwise
            cells = []
            for got in (ours, seq, pair):
                u = ulps(got, exact)
                cells.append(f"{u.max():8.2f} {u.mean():7.3f} {100 * np.mean(u <= 0.5):6.1f}%")
            print(f"{kind:>11} {count:>5} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
