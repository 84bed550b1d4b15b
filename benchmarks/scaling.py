"""Data-parallel scaling of the reference conv net: step time on 1 rank vs N.

Run the same command with and without mpiexec, one BLAS thread per rank:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/scaling.py --batch 200
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 mpiexec -n 2 python benchmarks/scaling.py --batch 200

or let it launch both, side by side, in alternation (the fair way on a shared
machine):

    python benchmarks/scaling.py --compare 2 --batch 200

Trainer options side by side on N ranks (alternating runs, no 1-rank run):

    python benchmarks/scaling.py --variants direct,overlap,zero1 --ranks 2 --batch 100

or, robust to a changing load, their steps interleaved in the same two processes:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 mpiexec -n 2 python benchmarks/scaling.py \
        --variants direct,overlap,zero1 --interleave --batch 100 --steps 60

``direct``: the replicated strategy, gradients written prescaled into its
buffer; ``overlap``: ``Trainer(strategy="replicated", overlap=True)``, buckets
all-reduced with ``Iallreduce`` while backward runs (``--bucket-mb``, default
the strategy's 8 MB); ``zero1``: ``Trainer(strategy="zero1",
shared_memory="auto")``.  Their sync time is what is left to wait for after
backward.

Definitions printed:
  * step time: median wall time of a synchronized training step (forward,
    backward, gradient all-reduce, Adam update) at global batch B;
  * sync time: median time inside the gradient all-reduce of a step, beside a
    bare in-place ``MPI.Allreduce`` of the same number of bytes in the same run;
  * scaling efficiency = (1-rank step time at B) / (N-rank step time at B) / N,
    as a percentage — 100% means N ranks process the global batch N times
    faster.

The reference conv net: conv 5x5x32 SAME + relu + max-pool 2 -> dense 1024
relu -> dense 10, softmax cross-entropy, Adam, float32, 28x28x1 inputs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def reference_net(seed: int = 0):
    import distnet
    from distnet import layers

    return distnet.Sequential([
        layers.Conv2D(32, 5, padding="same", activation="relu"),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(1024, activation="relu"),
        layers.Dense(10),
    ], input_shape=(28, 28, 1), seed=seed)


VARIANTS = {
    "direct": {"strategy": "replicated"},
    "overlap": {"strategy": "replicated", "overlap": True},
    "zero1": {"strategy": "zero1", "shared_memory": "auto"},
}


def variant_options(spec: str, bucket_mb: float | None) -> dict:
    """Trainer options of ``name`` or ``name:MB`` (bucket_bytes in MB; else
    ``bucket_mb`` for the overlap variant, the trainer's default otherwise)."""
    name, _, mb = spec.partition(":")
    options = dict(VARIANTS[name])
    if mb:
        options["bucket_bytes"] = int(float(mb) * (1 << 20))
    elif options.get("overlap") and bucket_mb is not None:
        options["bucket_bytes"] = int(bucket_mb * (1 << 20))
    return options


def measure(batch: int, steps: int, warmup: int, shard: bool = False, options: dict | None = None) -> dict | None:
    import distnet
    from distnet.data import ArrayDataset
    from distnet.training.trainer import Trainer

    comm = distnet.distributed.init().comm
    rng = np.random.default_rng(0)
    n = batch * (steps + warmup)
    data = ArrayDataset(rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n), num_classes=10)
    trainer = Trainer(reference_net(), "sparse_softmax_cross_entropy", distnet.optimizers.Adam(1e-4), data,
                      global_batch_size=batch, steps=steps + warmup, seed=0, comm=comm, check_every=None,
                      **({"strategy": "zero1" if shard and comm.size > 1 else "replicated"} | (options or {})))

    sync_times: list[float] = []
    original = trainer.strategy.reduce

    def timed_sync(*args, **kwargs):
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        sync_times.append(time.perf_counter() - t0)
        return out

    trainer.strategy.reduce = timed_sync
    step_times: list[float] = []
    last = [time.perf_counter()]

    def on_step(_trainer, _record):
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now

    trainer.add_hook(on_step)
    comm.barrier()
    last[0] = time.perf_counter()
    trainer.fit()

    bare = []
    if comm.size > 1:
        buf = np.ones(trainer.strategy.nbytes // 4, dtype=np.float32)
        for _ in range(steps):
            comm.barrier()
            t0 = time.perf_counter()
            comm.allreduce_(buf)
            bare.append(time.perf_counter() - t0)
    result = {
        "ranks": comm.size, "batch": batch, "steps": steps,
        "step_ms": 1e3 * float(np.median(step_times[warmup:])),
        "sync_ms": 1e3 * float(np.median(sync_times[warmup:])),
        "bare_allreduce_ms": 1e3 * float(np.median(bare)) if bare else None,
        "sync_mbytes": trainer.strategy.nbytes / 1e6,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS"),
    }
    return result if comm.rank == 0 else None


def compare(nranks: int, batch: int, steps: int, warmup: int, rounds: int, shard: bool = False) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    me = [sys.executable, __file__, "--batch", str(batch), "--steps", str(steps), "--warmup", str(warmup), "--json"]
    if shard:
        me.append("--shard")
    runs: dict[int, list[dict]] = {1: [], nranks: []}
    for _ in range(rounds):  # alternate, so both see the same machine load
        for n in (1, nranks):
            cmd = me if n == 1 else [mpiexec, "-n", str(n), *me]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            runs[n].append(json.loads(out.strip().splitlines()[-1]))
    t1 = float(np.median([r["step_ms"] for r in runs[1]]))
    tn = float(np.median([r["step_ms"] for r in runs[nranks]]))
    sync = float(np.median([r["sync_ms"] for r in runs[nranks]]))
    bare = float(np.median([r["bare_allreduce_ms"] for r in runs[nranks]]))
    mb = runs[nranks][0]["sync_mbytes"]
    print(f"reference conv net, global batch {batch}, {steps} timed steps x {rounds} alternating rounds, "
          f"1 BLAS thread per rank{', sharded optimizer (ZeRO-1) on N ranks' if shard else ''}")
    print(f"  1 rank : {t1:8.1f} ms/step  ({batch / t1 * 1e3:7.0f} samples/s)")
    print(f"  {nranks} ranks: {tn:8.1f} ms/step  ({batch / tn * 1e3:7.0f} samples/s)")
    print(f"  scaling efficiency = T1 / (T{nranks} * {nranks}) = {100 * t1 / (tn * nranks):.1f} %")
    print(f"  gradient sync: {sync:.2f} ms/step vs bare Allreduce of the same {mb:.1f} MB: {bare:.2f} ms "
          f"-> {sync / bare:.2f}x")


def measure_interleaved(names: list[str], batch: int, steps: int, warmup: int, bucket_mb: float | None) -> None:
    """One trainer per variant in the same processes, their steps interleaved
    (A B C A B C ...): every variant sees the same machine load, and the
    per-step ratios against the first variant are paired."""
    import distnet
    from distnet.data import ArrayDataset
    from distnet.training.trainer import Trainer

    comm = distnet.distributed.init().comm
    rng = np.random.default_rng(0)
    n = batch * (steps + warmup)
    data = ArrayDataset(rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n), num_classes=10)
    trainers, syncs = {}, {}
    for name in names:
        options = variant_options(name, bucket_mb)
        t = Trainer(reference_net(), "sparse_softmax_cross_entropy", distnet.optimizers.Adam(1e-4), data,
                    global_batch_size=batch, steps=steps + warmup, seed=0, comm=comm, check_every=None, **options)
        syncs[name] = []
        original = t.strategy.reduce

        def timed_sync(*args, _orig=original, _out=syncs[name], **kwargs):
            t0 = time.perf_counter()
            res = _orig(*args, **kwargs)
            _out.append(time.perf_counter() - t0)
            return res

        t.strategy.reduce = timed_sync
        trainers[name] = t
    times: dict[str, list[float]] = {name: [] for name in names}
    for k in range(steps + warmup):
        order = names[k % len(names):] + names[:k % len(names)]
        for name in order:
            t = trainers[name]
            comm.barrier()
            t0 = time.perf_counter()
            t.train_step(t.sampler.next())
            times[name].append(time.perf_counter() - t0)
    if comm.rank != 0:
        return
    base = np.array(times[names[0]][warmup:])
    print(f"reference conv net, {comm.size} ranks, global batch {batch}, {steps} timed steps interleaved "
          f"(one trainer per variant, same processes); load average: {os.getloadavg()[0]:.2f}")
    for name in names:
        t = np.array(times[name][warmup:])
        sy = np.array(syncs[name][warmup:])
        print(f"  {name:8s}: median {1e3 * np.median(t):7.1f} ms/step, best {1e3 * t.min():7.1f}, "
              f"sync wait median {1e3 * np.median(sy):6.2f} ms; median paired ratio to {names[0]}: "
              f"{np.median(t / base):.3f}")


def compare_variants(names: list[str], nranks: int, batch: int, steps: int, warmup: int, rounds: int,
                     bucket_mb: float | None) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(rounds):  # alternate (order rotating), so all see the same machine load
        for name in names[r % len(names):] + names[:r % len(names)]:
            options = variant_options(name, bucket_mb)
            cmd = [sys.executable, __file__, "--batch", str(batch), "--steps", str(steps), "--warmup", str(warmup),
                   "--json", "--options", json.dumps(options)]
            if nranks > 1:
                cmd = [mpiexec, "-n", str(nranks), *cmd]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
    print(f"reference conv net, {nranks} ranks x 1 BLAS thread, global batch {batch}, {steps} timed steps x "
          f"{rounds} alternating rounds; load average before: {os.getloadavg()[0]:.2f}")
    base = float(np.median([r["step_ms"] for r in runs[names[0]]]))
    for name in names:
        step = float(np.median([r["step_ms"] for r in runs[name]]))
        sync = float(np.median([r["sync_ms"] for r in runs[name]]))
        each = " ".join(f"{r['step_ms']:.1f}" for r in runs[name])
        print(f"  {name:8s}: {step:7.1f} ms/step ({step / base:.3f}x {names[0]}), sync wait {sync:6.2f} ms;"
              f" rounds: {each}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compare", type=int, default=None, metavar="N",
                        help="launch 1 rank and N ranks alternately and print the comparison")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shard", action="store_true",
                        help="N ranks use the sharded (ZeRO-1) optimizer; its sync figure is the reduce-scatter only")
    parser.add_argument("--json", action="store_true", help="print one JSON line (for --compare)")
    parser.add_argument("--options", default=None, help="Trainer keyword arguments as a JSON object")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated among {sorted(VARIANTS)}, each optionally NAME:MB (bucket size): "
                             "compare them on --ranks ranks")
    parser.add_argument("--ranks", type=int, default=2, help="ranks for --variants (default 2)")
    parser.add_argument("--bucket-mb", type=float, default=None, help="bucket size of the overlap variant")
    parser.add_argument("--interleave", action="store_true",
                        help="with --variants, under mpiexec (or 1 process): the variants' steps interleaved in "
                             "the same processes")
    args = parser.parse_args()
    if args.variants:
        names = args.variants.split(",")
        unknown = sorted({n.partition(":")[0] for n in names} - set(VARIANTS))
        if unknown:
            parser.error(f"--variants: unknown {unknown}; expected among {sorted(VARIANTS)}")
        if args.interleave:
            measure_interleaved(names, args.batch, args.steps, args.warmup, args.bucket_mb)
        else:
            compare_variants(names, args.ranks, args.batch, args.steps, args.warmup, args.rounds, args.bucket_mb)
        return 0
    if args.compare:
        compare(args.compare, args.batch, args.steps, args.warmup, args.rounds, args.shard)
        return 0
    result = measure(args.batch, args.steps, args.warmup, args.shard,
                     json.loads(args.options) if args.options else None)
    if result is not None:
        print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
