"""Synchronized batch normalization on N ranks, saved for comparison with one process.

Usage: mpiexec -n N python batch_norm_sync.py OUT.npz COMBINE

The global batch (``default_rng(0)``, 11 samples, so shards are uneven) is
split in rank order; each rank normalizes its shard with the statistics of
the whole batch (``reducer = comm.allreduce_``) and differentiates its own
loss: with COMBINE ``mean`` the mean over its samples of ``sum(y * r)`` (the
gradients then combined weighted by sample count, as the Trainer does), with
``sum`` its share ``sum(y * r) / 11`` (combined by a plain sum).  Rank 0
writes the output, statistics and gradients of the global batch.
"""

import numpy as np

import distnet
from distnet.distributed import get_communicator, install_abort_hook
from distnet.nn.batch_norm import batch_norm_train

from _common import script_args

out_path, combine = script_args()[:2]
comm = get_communicator("auto")
install_abort_hook(comm)
rank, size = comm.rank, comm.size

rng = np.random.default_rng(0)
B = 11
x = rng.standard_normal((B, 3, 2, 4)) * 1.5 + 0.5
r = rng.standard_normal(x.shape)
gamma, beta = rng.random(4) + 0.5, rng.standard_normal(4)
base, extra = divmod(B, size)
start = rank * base + min(rank, extra)
count = base + (1 if rank < extra else 0)
part = slice(start, start + count)

xt, gt, bt = distnet.constant(x[part]), distnet.constant(gamma), distnet.constant(beta)
y, stats = batch_norm_train(xt, gt, bt, epsilon=1e-3, reducer=lambda v: comm.allreduce_(v), combine=combine)
weight = count / B if combine == "mean" else 1.0
loss = distnet.reduce_sum(y * distnet.constant(r[part])) * (1.0 / count if combine == "mean" else 1.0 / B)
dx, dg, db = distnet.gradients(loss, [xt, gt, bt])

# The global batch's arrays: each rank's rows in place, then one sum.
glob_y, glob_dx = np.zeros_like(x), np.zeros_like(x)
glob_y[part] = y.numpy()
glob_dx[part] = dx * weight     # a rank's input gradient is 1 / weight times the global loss's
comm.allreduce_(glob_y)
comm.allreduce_(glob_dx)
params = np.concatenate([dg, db]) * weight
comm.allreduce_(params)
if rank == 0:
    np.savez(out_path, y=glob_y, dx=glob_dx, dgamma=params[:4], dbeta=params[4:], mean=stats.mean,
             variance=stats.variance, count=stats.count)
print(f"DONE {rank} {size}")
