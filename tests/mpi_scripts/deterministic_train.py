"""Training built from canonical pieces and the exact sum, bitwise the same on any N.

A prototype of the deterministic mode outside the Trainer (whose gradient
path is being reshaped): an MLP with dropout (per-sample keys) and Adam; each
step cuts the global batch into pieces of PIECE samples (pieces.next_pieces),
runs every piece's forward/backward as one unit, packs each piece's gradients
and its loss sum into one float32 vector (variables in sorted-name order, one
scale segment each) and sums them over ranks with exact_allreduce
(count = pieces of the global batch, independent of N), then divides by the
global count and applies Adam.

usage: deterministic_train.py OUT.npz [STEPS] [BATCH] [PIECE]
Rank 0 saves every weight, every Adam slot and every step's loss to OUT.npz.
"""
from __future__ import annotations

import numpy as np
from _common import say, script_args

import distnet
from distnet import layers
from distnet.model import losses
from distnet.autodiff import gradients
from distnet.distributed import (
    FlatLayout,
    ShardSampler,
    get_communicator,
    install_abort_hook,
)
from distnet.distributed.exact_sum import exact_allreduce
from distnet.distributed.pieces import next_pieces
from distnet.nn.dropout import per_sample_keys

args = script_args()
out = args[0]
steps, batch, piece = (int(a) for a in (args[1:4] + ["12", "22", "3"][len(args) - 1:]))
comm = get_communicator("auto")
install_abort_hook(comm)

rng = np.random.default_rng(7)
x_all = rng.standard_normal((61, 12)).astype(np.float32)
y_all = (x_all[:, :6].sum(1) > 0).astype(np.int64) + 2 * (x_all[:, 6:].sum(1) > 0).astype(np.int64)
model = distnet.Sequential([layers.Dense(32, activation="relu"), layers.Dropout(0.4),
                            layers.Dense(16, activation="tanh"), layers.Dense(4)], input_shape=(12,), seed=3)
variables = model.trainable_variables
layout = FlatLayout(variables)
order = layout.order()
starts = [layout.offsets[i] for i in order] + [layout.total]       # + one segment: the loss sum
opt = distnet.optimizers.Adam(0.01)
sampler = ShardSampler(len(x_all), batch, seed=5, rank=comm.rank, size=comm.size)

step_losses = []
for step in range(steps):
    shard = next_pieces(sampler, piece)
    vectors = []
    for idx in shard.indices:
        x, y = x_all[idx], y_all[idx]
        logits = model(x, training=True, dropout_keys=per_sample_keys(11, step, idx))
        loss = losses.sparse_softmax_cross_entropy(y, logits, reduction="sum")
        vec = np.empty(layout.total + 1, np.float32)
        layout.pack(gradients(loss, variables), vec[:layout.total])
        vec[-1] = loss.numpy()
        vectors.append(vec)
    total = exact_allreduce(comm, vectors, count=shard.num_pieces, size=layout.total + 1, starts=starts)
    mean = total / np.float32(shard.global_batch_size)
    opt.apply_gradients(zip(layout.views(mean[:layout.total]), variables))
    step_losses.append(mean[-1])

if comm.rank == 0:
    arrays = {f"var/{v.name}": v.numpy() for v in variables}
    for slot, per_var in opt.state_dict()["slots"].items():
        arrays.update({f"slot/{slot}/{name}": a for name, a in per_var.items()})
    np.savez(out, losses=np.array(step_losses, np.float32), **arrays)
say(f"DONE {comm.rank}")
