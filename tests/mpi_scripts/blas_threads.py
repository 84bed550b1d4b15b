"""Print, per rank, the BLAS threads after distnet.distributed.init(), as
``THREADS rank=<r> set=<value returned> blas=<threads threadpoolctl reports>``.

usage: mpiexec -n N python blas_threads.py [auto|none|K]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from _common import say, script_args  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

import distnet  # noqa: E402
from distnet import layers  # noqa: E402
from distnet.data import ArrayDataset  # noqa: E402
from distnet.training.trainer import Trainer  # noqa: E402

arg = (script_args() or ["auto"])[0]
value = None if arg == "none" else ("auto" if arg == "auto" else int(arg))
rng = np.random.default_rng(0)
data = ArrayDataset(rng.random((12, 2, 2, 1), dtype=np.float32), rng.integers(0, 3, 12), num_classes=3)
model = distnet.Sequential([layers.Flatten(), layers.Dense(3)], input_shape=(2, 2, 1), seed=0)
proc = distnet.distributed.init(blas_threads=value)
t = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), data,
            global_batch_size=6, steps=1, check_every=None, comm=proc.comm)
blas = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
say(f"THREADS rank={t.comm.rank} set={proc.blas_threads} blas={blas}")
