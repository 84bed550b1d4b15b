"""distnet's training step with ``conv_algorithm="gemm"`` and ``"auto"`` side by side.

Runs compare.py's distnet worker (the same step, data and settings as
compare.py) in fresh processes, the two settings alternating in every round,
for the reference and 2-conv nets at 1x1 (one process, one thread) and 2x1
(``mpiexec -n 2``, ZeRO-1); prints the median ms/step over rounds (best round
in brackets), the ratio auto / gemm, and the plan ``auto`` chose.

usage: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/conv_plan.py [--rounds 3] [--models reference,twoconv]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import compare  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default="reference,twoconv")
    parser.add_argument("--configs", default="1x1,2x1")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    compare.OPENBLAS_CORE = None   # OpenBLAS picks its kernels from the CPU, as in compare.py's default
    runs = [(model, config) for model in args.models.split(",") for config in args.configs.split(",")]
    times: dict[tuple, list[float]] = {}
    plans = {}
    print(f"# load average at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)
    t0 = time.time()
    for r in range(args.rounds):
        for model, config in runs:
            order = ("gemm", "auto") if r % 2 == 0 else ("auto", "gemm")
            for algorithm in order:
                fw = "distnet-zero1" if config == "2x1" else "distnet"
                res = compare.launch(fw, config, model, 100, args.steps, args.warmup, "off", algorithm)
                times.setdefault((model, config, algorithm), []).append(res["step_ms"])
                plans[(model, config, algorithm)] = res.get("conv_algorithms")
        print(f"# round {r + 1}/{args.rounds} after {time.time() - t0:.0f} s, load "
              f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)
    print("| model | config | gemm ms | auto ms | auto / gemm | auto's plan |")
    print("|---|---|---|---|---|---|")
    for model, config in runs:
        g, a = times[(model, config, "gemm")], times[(model, config, "auto")]
        print(f"| {model} | {config} | {statistics.median(g):.1f} ({min(g):.1f}) | {statistics.median(a):.1f} "
              f"({min(a):.1f}) | {statistics.median(a) / statistics.median(g):.2f}x | "
              f"{plans[(model, config, 'auto')]} |")
    print(f"# cpus {os.cpu_count()}")


if __name__ == "__main__":
    main()
