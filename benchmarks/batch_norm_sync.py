"""The cost of synchronized batch normalization: one training-mode forward +
backward of ``batch_norm_train`` with the statistics all-reduced over the
ranks (two small all-reduces: ``2C + 1`` and ``2C`` float64 values) against
each rank's own statistics, on a conv layer's activations.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE mpiexec -n 2 python benchmarks/batch_norm_sync.py

Rank 0 prints one line per shape: the median of 30 runs of each (taken in turn), and the
difference (the synchronization's cost per layer and step).
"""
import time

import numpy as np

import distnet
from distnet.distributed import get_communicator
from distnet.nn.batch_norm import batch_norm_train


def one(x, r, reducer):
    t = time.perf_counter()
    y = batch_norm_train(x, epsilon=1e-3, reducer=reducer).output
    distnet.gradients(distnet.reduce_sum(y * r), [x])
    return time.perf_counter() - t


def median_times(comm, x, r, repeat=30):
    """Both variants in turn (so a slow spell of the shared machine hits both), medians."""
    own, synced = [], []
    for _ in range(repeat):
        comm.barrier()
        own.append(one(x, r, None))
        comm.barrier()
        synced.append(one(x, r, lambda v: comm.allreduce_(v)))
    return float(np.median(own)), float(np.median(synced))


if __name__ == "__main__":
    comm = get_communicator("auto")
    rng = np.random.default_rng(comm.rank)
    for shape in ((50, 28, 28, 32), (50, 14, 14, 64), (50, 1024)):
        x = distnet.constant(rng.standard_normal(shape).astype(np.float32))
        r = distnet.constant(rng.standard_normal(shape).astype(np.float32))
        local, synced = median_times(comm, x, r)
        if comm.rank == 0:
            print(f"{comm.size} ranks, per-rank batch {shape}: own statistics {local * 1e3:.2f} ms, "
                  f"synchronized {synced * 1e3:.2f} ms, difference {(synced - local) * 1e3:+.2f} ms "
                  "(forward + backward, median of 30)")
