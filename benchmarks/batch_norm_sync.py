"""The cost of synchronized batch normalization: one training-mode forward +
backward of ``batch_norm_train`` with the statistics all-reduced over the
ranks (two small all-reduces: ``2C + 1`` and ``2C`` float64 values) against
each rank's own statistics, on a conv layer's activations.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE mpiexec -n 2 python benchmarks/batch_norm_sync.py

Rank 0 prints one line per shape: the median of 30 runs of each (taken in turn), and the
difference (the synchronization's cost per layer and step), then the median time of the
messages alone (the two all-reduces right after a barrier, no compute between).

    ... mpiexec -n 2 python benchmarks/batch_norm_sync.py --trainer

measures whole Trainer steps instead: a conv net with two batch-norm layers (global batch 100,
28 x 28 x 1 inputs), ``sync_batch_norm`` on and off in turn, 3 rounds of 15 steps each, the
median step time of each (micro_batches 1, and 2 with --micro 2).
"""
import sys
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


def message_time(comm, channels, repeat=30):
    """Median of the two all-reduces alone (``2C + 1`` and ``2C`` float64), each after a barrier."""
    times = []
    for _ in range(repeat):
        a, b = np.ones(2 * channels + 1), np.ones(2 * channels)
        comm.barrier()
        t = time.perf_counter()
        comm.allreduce_(a)
        comm.allreduce_(b)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def trainer_steps(comm, sync, micro, steps=15):
    """Median seconds per step of a small batch-normalized conv net through the Trainer."""
    from distnet import layers
    from distnet.data import ArrayDataset
    from distnet.training.trainer import Trainer

    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.random((1000, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 1000),
                        num_classes=10)
    model = distnet.Sequential([
        layers.Conv2D(16, 3, padding="same", use_bias=False), layers.BatchNorm(), layers.MaxPool2D(2),
        layers.Conv2D(32, 3, padding="same", use_bias=False), layers.BatchNorm(), layers.MaxPool2D(2),
        layers.Flatten(), layers.Dense(10)], input_shape=(28, 28, 1), seed=0)
    trainer = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(1e-3), data,
                      global_batch_size=100, steps=steps, micro_batches=micro, comm=comm, sync_batch_norm=sync,
                      strategy="replicated", log_every=1000, check_every=1000)
    history = trainer.fit(verbose=0)
    trainer.close()
    # 1000 samples in steps of 100: every step has 100; the first 2 (warm-up) are left out.
    return float(np.median([100 / r["samples_per_sec"] for r in history if "samples_per_sec" in r][2:]))


def main_trainer(comm, micro):
    times = {True: [], False: []}
    for _ in range(3):
        for sync in (True, False):
            times[sync].append(trainer_steps(comm, sync, micro))
    if comm.rank == 0:
        on, off = float(np.median(times[True])), float(np.median(times[False]))
        print(f"{comm.size} ranks, Trainer step (2 batch-norm layers, global batch 100, micro_batches {micro}): "
              f"synchronized {on * 1e3:.1f} ms, per-rank statistics {off * 1e3:.1f} ms, "
              f"difference {(on - off) * 1e3:+.1f} ms (median of 3 rounds x 13 steps)")


if __name__ == "__main__":
    comm = get_communicator("auto")
    if "--trainer" in sys.argv:
        main_trainer(comm, 2 if "--micro" in sys.argv else 1)
        sys.exit(0)
    rng = np.random.default_rng(comm.rank)
    for shape in ((50, 28, 28, 32), (50, 14, 14, 64), (50, 1024)):
        x = distnet.constant(rng.standard_normal(shape).astype(np.float32))
        r = distnet.constant(rng.standard_normal(shape).astype(np.float32))
        local, synced = median_times(comm, x, r)
        if comm.rank == 0:
            print(f"{comm.size} ranks, per-rank batch {shape}: own statistics {local * 1e3:.2f} ms, "
                  f"synchronized {synced * 1e3:.2f} ms, difference {(synced - local) * 1e3:+.2f} ms "
                  "(forward + backward, median of 30)")
        alone = message_time(comm, shape[-1])
        if comm.rank == 0:
            print(f"  the two all-reduces alone ({2 * shape[-1] + 1} + {2 * shape[-1]} float64): "
                  f"{alone * 1e3:.3f} ms (median of 30)")
