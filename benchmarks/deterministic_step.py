"""The deterministic step's cost by piece size: ms/step beside the default step, and the exact sum's share.

Runs ``Trainer`` steps of a compare.py net (reference, twoconv or mlp; global
batch 100, Adam, replicated, ``conv_algorithm="gemm"``) on this process's
communicator, once per mode in the order given: ``default`` (the default
step) or a piece size (``Trainer(deterministic=True, piece_size=k)``; ``auto``
for the default piece size).  Prints, on rank 0, the median ms/step after the
warm-up and the median time in ``exact_allreduce`` (the rest of the difference
is the pieces' forward and backward at their smaller shapes).  Put ``default``
first and last to see the machine's drift.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE mpiexec -n 2 python benchmarks/deterministic_step.py \\
        --model reference --modes default,auto,25,7,default
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import distnet  # noqa: E402 (after the thread settings)
import distnet.training.deterministic as det  # noqa: E402
from distnet.data import ArrayDataset  # noqa: E402
from distnet.training.trainer import Trainer  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from compare import CLASSES, distnet_model, make_data  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="reference", choices=("reference", "twoconv", "mlp"))
    ap.add_argument("--modes", default="default,auto,25,7,default")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    comm = distnet.distributed.init().comm
    in_sum: list[float] = []
    original = det.exact_allreduce

    def timed(*a, **k):   # the exact sum's share of the step (patched in this process only)
        t0 = time.perf_counter()
        out = original(*a, **k)
        in_sum.append(time.perf_counter() - t0)
        return out

    det.exact_allreduce = timed
    for mode in args.modes.split(","):
        kw = {} if mode == "default" else {"deterministic": True,
                                           "piece_size": None if mode == "auto" else int(mode)}
        x, y = make_data(args.batch * (args.steps + args.warmup))
        trainer = Trainer(distnet_model(args.model), "sparse_softmax_cross_entropy", distnet.optimizers.Adam(1e-4),
                          ArrayDataset(x, y, num_classes=CLASSES), global_batch_size=args.batch,
                          steps=args.steps + args.warmup, seed=0, comm=comm, check_every=None,
                          conv_algorithm="gemm", strategy="replicated", **kw)
        times: list[float] = []
        last = [0.0]

        def hook(_t, _r, times=times, last=last) -> None:
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now

        trainer.add_hook(hook)
        in_sum.clear()
        comm.barrier()
        last[0] = time.perf_counter()
        trainer.fit(verbose=0)
        if comm.rank == 0:
            ex = statistics.median(in_sum[args.warmup:]) * 1e3 if in_sum else 0.0
            label = mode if mode == "default" else f"pieces of {trainer.piece_size}"
            print(f"{args.model} {label:>15}: {statistics.median(times[args.warmup:]) * 1e3:8.1f} ms/step, "
                  f"exact_allreduce {ex:7.1f} ms  (load {' '.join(Path('/proc/loadavg').read_text().split()[:3])})",
                  flush=True)


if __name__ == "__main__":
    main()
