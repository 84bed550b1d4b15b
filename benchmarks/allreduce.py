"""Gradient synchronisation vs a bare in-place ``MPI.Allreduce`` of the same bytes.

The gradients have the reference conv net's shapes (conv2d 5x5x1x32, dense
6272x1024, dense_1 1024x10: ~6.4 M float32 parameters, ~26 MB).  Per call,
each side is timed between two barriers, bare and synchronised calls
alternating so that machine noise hits both alike; the figure is the median
over repeats of the slowest rank's time.

Usage::

    mpiexec -n 2 python benchmarks/allreduce.py
    mpiexec -n 2 python benchmarks/allreduce.py --repeats 50 --buckets 1,4,8,16,32,0

``--buckets`` in MB, 0 meaning one buffer.  Prints, per bucket size, the
median ms of the bare all-reduce and of ``Replicated.reduce`` in its
four ways of use (gradients copied in; computed into ``grad_views()``;
prescaled; global count all-reduced rather than given), and of the
non-blocking path of ``overlap=True`` (``begin``, every variable reported
final, ``sync``: Iallreduce + Wait of each bucket with no backward to hide
them behind), and each ratio to the bare all-reduce (target: <= 1.1x).
With ``--f16`` (default on) the same run adds ``f16 copy``: the ``copy``
case with ``compression="float16"`` (half the bytes on the wire;
gradient-like magnitudes, see ``grads16``), and after the table the sharded
(ZeRO-1) reduce-scatter with and without compression, the time of the
float16 casts and sums alone (no communication) and the link bandwidth
below which compression pays.  Set OMP_NUM_THREADS=1 (the launcher's
environment reaches every rank).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from distnet.distributed import Replicated, get_communicator  # noqa: E402
from distnet.distributed.strategies.base import reduce_arrays  # noqa: E402
from distnet.tensor import Variable  # noqa: E402

SHAPES = {
    "conv2d/kernel": (5, 5, 1, 32), "conv2d/bias": (32,),
    "dense/kernel": (6272, 1024), "dense/bias": (1024,),
    "dense_1/kernel": (1024, 10), "dense_1/bias": (10,),
}
MB = 1 << 20


def timed(comm, fn) -> float:
    """Seconds of ``fn()`` on the slowest rank, between two barriers."""
    comm.barrier()
    t0 = time.perf_counter()
    fn()
    took = np.array([time.perf_counter() - t0])
    comm.allreduce_(took, op="max")
    return float(took[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--buckets", default="1,4,8,16,32,0", help="bucket sizes in MB, 0 = one buffer")
    parser.add_argument("--f16", choices=("on", "off"), default="on",
                        help="also time the float16-compressed sync (compression='float16')")
    args = parser.parse_args()

    comm = get_communicator("auto")
    rank, size = comm.rank, comm.size
    rng = np.random.default_rng(rank)
    variables = [Variable(np.zeros(s, np.float32), name=n) for n, s in SHAPES.items()]
    grads = [rng.standard_normal(s, dtype=np.float32) for s in SHAPES.values()]
    # float16 conversion time depends on the values (numpy is slow on float16
    # subnormals): the float16 cases get gradient-like magnitudes, 1e-5..1e-2
    # (a quarter of them below float16's smallest normal, 6.1e-5, as in the
    # MLP example's gradients late in training).
    grads16 = [(g * 10.0 ** rng.uniform(-5, -2, g.shape)).astype(np.float32) for g in grads]
    nbytes = sum(g.nbytes for g in grads)
    bare_values = rng.standard_normal(nbytes // 4, dtype=np.float32)
    bare = bare_values.copy()
    local_count = 50 + rank   # uneven shards
    global_count = sum(50 + r for r in range(size))

    if rank == 0:
        print(f"ranks {size}, {len(grads)} gradients, {nbytes / MB:.1f} MB float32, "
              f"{args.repeats} repeats (median ms of the slowest rank; ratio to the bare all-reduce)")
        print("  copy: reduce(grads) packs the arrays; views: grads computed into grad_views();")
        print("  prescaled: views already scaled by local/global count; N reduced: global_count not given;")
        print("  nonblock: overlap=True's Iallreduce per bucket, prescaled views, nothing to overlap with")
        print(f"{'bucket':>8} {'n':>3} {'case':>10} {'median ms':>10} {'ratio':>6} {'best ms':>8} {'ratio':>6}")
    scalars = {"loss_sum": 1.0, "correct": 3}
    for mb in (float(x) for x in args.buckets.split(",")):
        bucket_bytes = None if mb == 0 else int(mb * MB)
        sync = Replicated(comm, variables, bucket_bytes=bucket_bytes, scalar_names=("loss_sum", "correct"))
        views = sync.grad_views()
        nb = Replicated(comm, variables, bucket_bytes=bucket_bytes, scalar_names=("loss_sum", "correct"),
                                  overlap=True)
        nb_views = nb.grad_views()

        def nonblocking():
            sink = nb.gradient_sink(accumulate=False, local_count=local_count, scalars=scalars)
            for i in reversed(range(len(nb_views))):
                sink(i, nb_views[i])
            return nb.reduce(local_count, scalars=scalars, global_count=global_count)

        def fill_views():   # stands for a backward pass writing into the views: not timed
            for v, g in zip(views, grads):
                np.copyto(v, g)

        cases = {
            "bare": lambda: comm.allreduce_(bare),
            "copy": lambda: reduce_arrays(sync, grads, local_count, scalars=scalars, global_count=global_count),
            "views": lambda: reduce_arrays(sync, views, local_count, scalars=scalars, global_count=global_count),
            "prescaled": lambda: reduce_arrays(sync, views, local_count, scalars=scalars, global_count=global_count,
                                           prescaled=True),
            "N reduced": lambda: reduce_arrays(sync, grads, local_count, scalars=scalars),
            "nonblock": nonblocking,
        }
        if args.f16 == "on" and size > 1:
            sync16 = Replicated(comm, variables, bucket_bytes=bucket_bytes,
                                          scalar_names=("loss_sum", "correct"), compression="float16")
            cases["f16 copy"] = lambda: reduce_arrays(sync16, grads16, local_count, scalars=scalars, global_count=global_count)
        times: dict = {k: [] for k in cases}
        for i in range(args.warmup + args.repeats):
            for name, fn in cases.items():   # interleaved: noise hits every case alike
                # Untimed refills: fresh values (no overflow from repeated sums)
                # and the same cache state for the bare and the in-place cases.
                if name in ("views", "prescaled"):
                    fill_views()
                elif name == "nonblock":
                    for v, g in zip(nb_views, grads):
                        np.copyto(v, g)
                elif name == "bare":
                    np.copyto(bare, bare_values)
                took = timed(comm, fn)
                if i >= args.warmup:
                    times[name].append(took)
        if rank == 0:
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            best = {k: min(v) * 1e3 for k, v in times.items()}
            label = "one" if bucket_bytes is None else f"{mb:g} MB"
            for k in cases:
                print(f"{label:>8} {len(sync.buckets):>3} {k:>10} {med[k]:10.2f} {med[k] / med['bare']:6.2f} "
                      f"{best[k]:8.2f} {best[k] / best['bare']:6.2f}", flush=True)
    if args.f16 == "on" and size > 1:
        f16_sharded_and_casts(comm, args, variables, grads, grads16, bare, bare_values, local_count, global_count)


def f16_sharded_and_casts(comm, args, variables, grads, grads16, bare, bare_values, local_count,
                          global_count) -> None:
    """The sharded reduce-scatter with and without float16 compression beside
    the bare all-reduce, then the compressor's local work alone."""
    from distnet.distributed.compression import Float16Compressor
    from distnet.distributed import Zero1

    size = comm.size
    def sharded(compression, shared):
        return Zero1(comm, [Variable(np.zeros(v.shape, np.float32), name=v.name) for v in variables],
                                   scalar_names=("loss_sum", "correct"), compression=compression,
                                   shared_memory=shared)

    # "none"/"float16": MPI messages; "shm": through shared memory where the
    # ranks share a machine (the default there; else the same as "none").
    syncs = {"none": sharded("none", False), "float16": sharded("float16", False), "shm": sharded("none", "auto")}

    def with_gather(sync, g):
        reduce_arrays(sync, g, local_count, global_count=global_count)
        sync.gather_params()

    cases = {"bare": lambda: comm.allreduce_(bare),
             "zero1 rs": lambda: reduce_arrays(syncs["none"], grads, local_count, global_count=global_count),
             "zero1 f16": lambda: reduce_arrays(syncs["float16"], grads16, local_count, global_count=global_count),
             "rs+ag": lambda: with_gather(syncs["none"], grads),
             "shm rs+ag" if syncs["shm"].shared else "(no shm)": lambda: with_gather(syncs["shm"], grads)}
    times: dict = {k: [] for k in cases}
    for i in range(args.warmup + args.repeats):
        for name, fn in cases.items():
            if name == "bare":
                np.copyto(bare, bare_values)
            took = timed(comm, fn)
            if i >= args.warmup:
                times[name].append(took)

    # The compressor's arithmetic without the wire: encode n, sum N float16
    # blocks of n/N into float32, encode n/N, decode n (what allreduce_ does
    # around its Alltoall and Allgather).
    comp = Float16Compressor(comm)
    flat = np.concatenate([g.reshape(-1) for g in grads16])
    flat_values = flat.copy()
    n = flat.size
    block = comp._block(n)
    send, recv, acc = comp._buffers(block)

    def local_work():
        comp._encode(flat, send[:n])
        np.copyto(recv, send)
        comp._sum_blocks(recv, block, acc)
        comp._encode(acc, send[:block])
        comp._decode(send[:n], flat)

    work = []
    for i in range(args.warmup + args.repeats):
        np.copyto(flat, flat_values)   # untimed: the same values every time
        took = timed(comm, local_work)
        if i >= args.warmup:
            work.append(took)
    if comm.rank == 0:
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        best = {k: min(v) * 1e3 for k, v in times.items()}
        print("\nsharded (ZeRO-1) sync: reduce-scatter + small all-reduce (zero1 rs, f16: MPI messages), "
              "with the parameters' all-gather (rs+ag: MPI messages; shm rs+ag: through shared memory, "
              "the default when the ranks share a machine), beside the bare all-reduce")
        for k in cases:
            print(f"{'one':>8} {'':>3} {k:>10} {med[k]:10.2f} {med[k] / med['bare']:6.2f} "
                  f"{best[k]:8.2f} {best[k] / best['bare']:6.2f}")
        w = statistics.median(work) * 1e3
        nbytes = 4 * n
        # Ring all-reduce: each rank sends 2 (N-1)/N of the bytes; float16 halves that.
        saved = (size - 1) / size * nbytes
        print(f"\nfloat16 casts and sums alone (no communication), {n} gradients: median {w:.2f} ms "
              f"({w * 1e6 / n:.2f} ns per gradient)")
        print(f"compression saves {saved / MB:.1f} MB per rank and sync: it pays on links slower than "
              f"~{saved / (w / 1e3) / 1e6:.0f} MB/s ({8 * saved / (w / 1e3) / 1e9:.1f} Gbit/s)")

if __name__ == "__main__":
    main()
