"""Train a few steps with a timeline (Trainer(trace=DIR)); rank SLOW reads its
data SLEEP seconds late at every step, a straggler the others wait for.

usage: mpiexec -n N python trace_straggler.py DIR [SLOW] [SLEEP]
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from _common import script_args  # noqa: E402

import distnet  # noqa: E402
from distnet import layers  # noqa: E402
from distnet.data import ArrayDataset  # noqa: E402


class Slow(ArrayDataset):
    def __init__(self, x, y, delay):
        super().__init__(x, y, num_classes=3)
        self.delay = delay

    def read(self, indices):
        time.sleep(self.delay)
        return super().read(indices)


args = script_args()
out, slow, sleep = args[0], int(args[1]) if len(args) > 1 else -1, float(args[2]) if len(args) > 2 else 0.0
comm = distnet.distributed.get_communicator("auto")
rng = np.random.default_rng(0)
x = rng.random((60, 4, 4, 1), dtype=np.float32)
y = rng.integers(0, 3, 60)
data = Slow(x, y, sleep if comm.rank == slow else 0.0)
model = distnet.Sequential([layers.Flatten(), layers.Dense(16, activation="relu"), layers.Dense(3)],
                           input_shape=(4, 4, 1), seed=0)
trainer = distnet.Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.01), data,
                          eval_data=data, eval_every=5, global_batch_size=12, steps=10, comm=comm, trace=out,
                          check_every=None)
trainer.fit()
trainer.close()
