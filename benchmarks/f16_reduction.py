"""Two ways to sum float16 gradients over ranks with MPI, which has no float16 sum.

1. distnet's :class:`~distnet.distributed.compression.Float16Compressor`: ``Alltoall``
   of float16 blocks, each rank sums its block in float32 in rank order,
   casts it to float16, in-place ``Allgather``;
2. ``MPI.Op.Create`` of a Python sum on ``MPI.UINT16_T`` passed to
   ``Allreduce`` (the operands decoded to float32, added, encoded back with
   the same helpers), MPI choosing the reduction order;

beside the bare float32 ``MPI.Allreduce`` of the uncompressed gradients.
Alternating calls, each timed between barriers, median and best of the
slowest rank.  Also prints whether every rank got the same bits from each
way and whether the two ways agree (on 3 ranks the user op's partial sums
are rounded to float16 in MPI's order, so they need not).

Usage::

    OMP_NUM_THREADS=1 mpiexec -n 2 python benchmarks/f16_reduction.py [--size 6434634] [--repeats 10]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

from distnet.distributed import get_communicator  # noqa: E402
from distnet.distributed.compression import Float16Compressor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=6_434_634, help="gradients (default: the reference net's)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    comm = get_communicator("mpi")
    mpi = comm.mpi_comm
    comp = Float16Compressor(comm)
    n = args.size
    rng = np.random.default_rng(comm.rank)
    # Gradient-like magnitudes, 1e-5..1e-2 (see benchmarks/allreduce.py).
    src = (rng.standard_normal(n) * 10.0 ** rng.uniform(-5, -2, n)).astype(np.float32)
    a2a_out = np.empty(n, np.float32)
    op_out = np.empty(n, np.float32)
    half = np.empty(n, np.float16)
    bare = np.empty(n, np.float32)
    chunk = 1 << 20
    left, right = np.empty(chunk, np.float32), np.empty(chunk, np.float32)

    def user_sum(inbuf, inoutbuf, datatype) -> None:
        a = np.frombuffer(inbuf, np.float16)
        b = np.frombuffer(inoutbuf, np.float16)
        for lo in range(0, a.size, chunk):
            k = min(a.size, lo + chunk) - lo
            comp._decode(a[lo: lo + k], left[:k])
            comp._decode(b[lo: lo + k], right[:k])
            np.add(left[:k], right[:k], out=left[:k])
            comp._encode(left[:k], b[lo: lo + k])

    op = MPI.Op.Create(user_sum, commute=True)

    def alltoall_way() -> None:
        np.copyto(a2a_out, src)
        comp.allreduce_(a2a_out)

    def user_op_way() -> None:
        comp._encode(src, half)
        mpi.Allreduce(MPI.IN_PLACE, [half.view(np.uint16), MPI.UINT16_T], op=op)
        comp._decode(half, op_out)

    def bare_way() -> None:
        np.copyto(bare, src)
        mpi.Allreduce(MPI.IN_PLACE, bare)

    ways = {"bare float32 Allreduce": bare_way, "Alltoall + Allgather": alltoall_way,
            "user op Allreduce": user_op_way}
    times: dict = {k: [] for k in ways}
    for i in range(args.warmup + args.repeats):
        for name, fn in ways.items():
            mpi.Barrier()
            t0 = time.perf_counter()
            fn()
            took = np.array([time.perf_counter() - t0])
            mpi.Allreduce(MPI.IN_PLACE, took, op=MPI.MAX)
            if i >= args.warmup:
                times[name].append(float(took[0]))
    digests = comm.allgather_object((hashlib.sha256(a2a_out.tobytes()).hexdigest(),
                                     hashlib.sha256(op_out.tobytes()).hexdigest()))
    op.Free()
    if comm.rank == 0:
        print(f"{comm.size} ranks, {n} gradients ({4 * n / 2**20:.1f} MB float32), median / best ms of "
              f"{args.repeats} (slowest rank)")
        base = statistics.median(times["bare float32 Allreduce"])
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"  {name:24s} {med * 1e3:8.2f} {min(ts) * 1e3:8.2f}   {med / base:5.2f}x bare")
        print(f"  every rank the same bits: Alltoall way {len({d[0] for d in digests}) == 1}, "
              f"user op {len({d[1] for d in digests}) == 1}; the two ways agree: "
              f"{all(d[0] == d[1] for d in digests)}")


if __name__ == "__main__":
    main()
