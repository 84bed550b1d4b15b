"""Where a synchronized training step's time goes, per rank: the rest of the
step (data, forward, backward), the strategy's ``reduce`` — and inside it
the MPI calls and the finite check — and ``update`` (the optimizer; with
ZeRO-1 also the weights' gather), beside a bare in-place all-reduce of the
same buffer timed in a hot loop after training.

The models and data are ``compare.py``'s; medians over the timed steps.
"finite check" counts the replicated strategy's pass over the reduced
buffer; ZeRO-1 checks its block inside its sums (part of ``reduce``).

Usage::

    python benchmarks/step_parts.py --model reference --batch 200
    mpiexec -n 2 python benchmarks/step_parts.py --model reference --batch 200 --strategy zero1
    mpiexec -n 2 python benchmarks/step_parts.py --model mlp --batch 100 --strategy replicated [--shared-memory off]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from distnet.runner.blas_spin import spin_briefly  # noqa: E402 (imports no numpy)

spin_briefly()   # as the distnet command's processes, before numpy loads OpenBLAS

import numpy as np  # noqa: E402

import compare  # noqa: E402
import distnet  # noqa: E402
from distnet.data import ArrayDataset  # noqa: E402
from distnet.distributed.strategies import base as strategy_base  # noqa: E402
from distnet.training.trainer import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=compare.MODELS, default="reference")
    parser.add_argument("--batch", type=int, default=200, help="global batch")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--strategy", default="auto", help="replicated, zero1, ... (auto: the Trainer's choice)")
    parser.add_argument("--shared-memory", choices=("on", "off"), default="on",
                        help="sum the gradients through a shared window (shared_memory='auto', as job files run "
                             "it: the default) or, off, with MPI messages")
    parser.add_argument("--conv-algorithm", default="auto", choices=("auto", "gemm", "fft", "winograd"),
                        help="the Trainer's conv_algorithm (default auto, as compare.py)")
    args = parser.parse_args()

    comm = distnet.distributed.init().comm
    x, y = compare.make_data(args.batch * (args.steps + args.warmup))
    from distnet.distributed.strategies import all_strategies

    takes = args.strategy == "auto" or "shared_memory" in all_strategies()[args.strategy].option_names()
    options = {"shared_memory": "auto" if args.shared_memory == "on" else False} if takes else {}
    trainer = Trainer(compare.distnet_model(args.model), "sparse_softmax_cross_entropy",
                      distnet.optimizers.Adam(compare.LEARNING_RATE), ArrayDataset(x, y, num_classes=compare.CLASSES),
                      global_batch_size=args.batch, steps=args.steps + args.warmup, seed=0, comm=comm,
                      check_every=None, strategy=args.strategy, conv_algorithm=args.conv_algorithm, **options)
    strategy = trainer.strategy
    times: dict[str, list] = {"step": [], "reduce": [], "mpi": [], "finite": [], "update": []}
    in_reduce = [False]

    def timed(name, fn, only_in_reduce=False):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                if in_reduce[0] or not only_in_reduce:
                    times[name].append(time.perf_counter() - t0)
        return wrapper

    def reduce(*a, **k):
        if comm.size > 1:
            comm.barrier()   # waiting for a slower rank is imbalance, not synchronisation
        n_mpi, n_finite = len(times["mpi"]), len(times["finite"])
        in_reduce[0] = True
        try:
            out = timed("reduce", original_reduce)(*a, **k)
        finally:
            in_reduce[0] = False
        # one entry per step: the sum of this step's calls
        times["mpi"][n_mpi:] = [sum(times["mpi"][n_mpi:])]
        times["finite"][n_finite:] = [sum(times["finite"][n_finite:])]
        return out

    original_reduce = strategy.reduce
    strategy.reduce = reduce
    strategy.update = timed("update", strategy.update)
    for name in ("allreduce_", "reduce_scatter_block_", "allgather_", "barrier"):
        setattr(strategy.comm, name, timed("mpi", getattr(strategy.comm, name), only_in_reduce=True))
    for module in (sys.modules[type(strategy).__module__], strategy_base):
        if hasattr(module, "all_finite"):
            module.all_finite = timed("finite", strategy_base.all_finite, only_in_reduce=True)
    last = [0.0]

    def on_step(_trainer, _record) -> None:
        now = time.perf_counter()
        times["step"].append(now - last[0])
        last[0] = now

    trainer.add_hook(on_step)
    comm.barrier()
    last[0] = time.perf_counter()
    trainer.fit(verbose=0)

    bare = []
    if comm.size > 1:
        buf = np.ones(strategy.nbytes // 4, dtype=np.float32)
        for _ in range(max(args.steps, 20)):
            comm.barrier()
            t0 = time.perf_counter()
            comm.allreduce_(buf)
            bare.append(time.perf_counter() - t0)

    def med(values):
        values = values[args.warmup:] or values
        return 1e3 * statistics.median(values) if values else 0.0

    rows = comm.allgather_object({k: med(v) for k, v in times.items()})
    if comm.rank != 0:
        return
    print(f"{args.model}, global batch {args.batch}, {comm.size} rank(s), strategy {strategy.name}"
          f"{' (shared sum)' if getattr(strategy, 'shared', False) else ''}, "
          f"{strategy.nbytes / 1e6:.2f} MB reduced per step; convolutions {trainer.conv_algorithms}; medians in ms")
    for r, d in enumerate(rows):
        rest = d["step"] - d["reduce"] - d["update"]
        print(f"  rank {r}: step {d['step']:.2f} = rest (data, forward, backward) {rest:.2f} + reduce {d['reduce']:.2f} "
              f"(MPI {d['mpi']:.2f}, finite check {d['finite']:.2f}) + update {d['update']:.2f}")
    if bare:
        print(f"  bare in-place all-reduce of the same bytes, hot loop after training: {med(bare):.2f}")


if __name__ == "__main__":
    main()
