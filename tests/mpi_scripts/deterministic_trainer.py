"""The Trainer with deterministic=True: rank 0 saves every checkpoint array and every step's loss.

usage: deterministic_trainer.py OUT.npz [--deterministic 0|1] [--ckpt DIR (--stop-at K | --resume)]
An MLP with dropout, an L2 regularizer and Adam on 61 samples, global batch 22
(a partial last batch), piece size 3, 12 steps.
"""
from __future__ import annotations

import sys

import numpy as np
from _common import script_args

import distnet
from distnet import layers
from distnet.model import regularizers
from distnet.data import ArrayDataset
from distnet.training.trainer import Trainer

args = script_args()
out, det = args[0], (args[args.index("--deterministic") + 1] == "1") if "--deterministic" in args else True
ckpt = args[args.index("--ckpt") + 1] if "--ckpt" in args else None
steps = int(args[args.index("--stop-at") + 1]) if "--stop-at" in args else 12
rng = np.random.default_rng(7)
x = rng.random((61, 4, 3), dtype=np.float32)
y = (x[:, :2].mean(axis=(1, 2)) > x[:, 2:].mean(axis=(1, 2))).astype(np.int64)
data = ArrayDataset(x, y, num_classes=2)
model = distnet.Sequential([layers.Flatten(), layers.Dense(32, activation="relu",
                                                           kernel_regularizer=regularizers.l2(0.01)),
                            layers.Dropout(0.4), layers.Dense(2)], input_shape=(4, 3, 1), seed=3)
trainer = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.01), data, global_batch_size=22,
                  steps=steps, seed=11, checkpoint_dir=ckpt, checkpoint_every=None, log_every=1000, check_every=None, deterministic=det,
                  piece_size=3 if det else None, strategy="replicated")
trainer.fit(resume="--resume" in args, verbose=0)
losses = [r["loss"] for r in trainer.history if "loss" in r]
if trainer.comm.rank == 0:
    arrays = {f"var/{v.name}": v.numpy() for v in model.variables}
    for slot, per_var in trainer.optimizer.state_dict()["slots"].items():
        arrays.update({f"slot/{slot}/{name}": a for name, a in per_var.items()})
    np.savez(out, losses=np.array(losses, np.float64), **arrays)
sys.stdout.write(f"DONE {trainer.comm.rank}\n")
