"""Trainer.fit() from Python under mpiexec: the last rank alone gets SIGTERM
(from its own callback, after step 5); every rank must stop after step 6 (the
step that carries the request), write one checkpoint there and leave fit()
with TrainingStopped(143), which ends the script with that status.

usage: python stop_fit.py CKPT_DIR
"""
from __future__ import annotations

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from _common import say, script_args  # noqa: E402

import distnet  # noqa: E402
from distnet.data import ArrayDataset  # noqa: E402
from distnet.errors import TrainingStopped  # noqa: E402

ckpt_dir = script_args()[0]
proc = distnet.distributed.init()
comm = proc.comm
rng = np.random.default_rng(0)
x = rng.random((60, 4, 4, 1), dtype=np.float32)
y = (x.mean(axis=(1, 2, 3)) > 0.5).astype(np.int64)
model = distnet.Sequential([distnet.layers.Flatten(), distnet.layers.Dense(2)], seed=1)


def signal_last_rank(trainer, record):
    if comm.rank == comm.size - 1 and record["step"] == 5:
        os.kill(os.getpid(), signal.SIGTERM)


trainer = distnet.Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.01),
                          ArrayDataset(x, y, num_classes=2), global_batch_size=10, steps=1000, comm=comm,
                          checkpoint_dir=ckpt_dir, callbacks=[signal_last_rank], stall_timeout=30)
try:
    trainer.fit()
except TrainingStopped as stop:
    say(f"stopped step {stop.step} code {stop.code}")
    raise
say("not stopped")
