"""Trainer(deterministic=True) under several strategies in one launch; rank 0 saves everything.

usage: deterministic_strategies.py OUT.npz [--strategies replicated,zero1,...] [--ckpt DIR]
       [--steps K] [--resume] [--micro M] [--default] [--nan-sample K] [--bn]

``--default``: the same runs in the default (not deterministic) mode.
``--bn``: the conv net with two batch-normalization layers (after the conv and the
first dense layer), ``sync_batch_norm`` left on (no effect in deterministic mode).

A small conv net (conv, dense with an L2 regularizer, dropout, dense; the images
randomly cropped after padding and flipped) with Adam
(per-variable and global-norm clipping that bite), an EMA, on 50 images of 6x6,
global batch 14 (a partial last batch of 8; 14 is not a multiple of 3, 4, 5 or
6), piece size 3 (5 pieces per batch: some ranks get none on 6), 10 steps,
evaluation every 4 steps on 23 samples (eval batch 5) with and without the EMA.

For each strategy, keys ``<strategy>:<what>``: every array of the final
checkpoint state (``param/``, ``slot/<slot>/``, ``ema/``), ``losses`` (every
logged step), ``evals`` (every evaluation number, in order) and ``final_eval``
(Trainer.evaluate after fit, with and without the EMA).
"""
from __future__ import annotations

import os
import sys

# Deterministic mode's guarantee holds for the same BLAS threads per rank: one, as
# `distnet train --deterministic` sets (before numpy loads OpenBLAS).
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import numpy as np  # noqa: E402
from _common import say, script_args  # noqa: E402

import distnet  # noqa: E402
from distnet import layers  # noqa: E402
from distnet.data import ArrayDataset  # noqa: E402
from distnet.model import regularizers  # noqa: E402
from distnet.training.trainer import Trainer  # noqa: E402

args = script_args()
out = args[0]


def opt(name, default):
    return args[args.index(name) + 1] if name in args else default


strategies = opt("--strategies", "replicated").split(",")
ckpt = opt("--ckpt", None)
steps = int(opt("--steps", 10))
micro = int(opt("--micro", 1))
deterministic = "--default" not in args
rng = np.random.default_rng(5)
x = rng.random((73, 6, 6, 1), dtype=np.float32)
y = (x[:, :3].mean(axis=(1, 2, 3)) * 3 > x[:, 3:].mean(axis=(1, 2, 3)) * 2 + 0.5).astype(np.int64)
y = y + (x[:, 0, 0, 0] > 0.7)


class NanAt(ArrayDataset):
    """Reads sample ``nan_at`` as NaNs (a dataset refuses them in its arrays): the steps whose
    batch holds it have a non-finite gradient and are skipped, on every rank alike."""

    nan_at = -1

    def read(self, indices):
        xs, ys = super().read(indices)
        xs = np.array(xs)
        xs[np.asarray(indices) == self.nan_at] = np.nan
        return xs, ys


train, test = NanAt(x[:50], y[:50], num_classes=3), ArrayDataset(x[50:], y[50:], num_classes=3)
train.nan_at = int(opt("--nan-sample", -1))
# "zero1shm": ZeRO-1 through shared memory (one parameter buffer per machine)
SPECS = {"replicated": {"strategy": "replicated"}, "zero1": {"strategy": "zero1"},
         "zero1shm": {"strategy": "zero1", "strategy_options": {"shared_memory": True}},
         "hierarchical": {"strategy": "hierarchical"}}
saved = {}
for strategy in strategies:
    if "--bn" in args:
        model = distnet.Sequential([
            layers.Conv2D(4, 3, activation="relu"), layers.BatchNorm(momentum=0.8), layers.Flatten(),
            layers.Dense(16, activation="relu", kernel_regularizer=regularizers.l2(0.01)),
            layers.BatchNorm(momentum=0.7), layers.Dropout(0.3), layers.Dense(3)], input_shape=(6, 6, 1), seed=3)
    else:
        model = distnet.Sequential([
            layers.Conv2D(4, 3, activation="relu"), layers.Flatten(),
            layers.Dense(16, activation="relu", kernel_regularizer=regularizers.l2(0.01)),
            layers.Dropout(0.3), layers.Dense(3)], input_shape=(6, 6, 1), seed=3)
    optimizer = distnet.optimizers.Adam(0.02, clipnorm=0.2, global_clipnorm=0.3)
    ema = distnet.ExponentialMovingAverage(0.9)
    trainer = Trainer(model, "sparse_softmax_cross_entropy", optimizer, train, eval_data=test, ema=ema,
                      global_batch_size=14, steps=steps, seed=11, eval_every=4, eval_batch_size=5,
                      checkpoint_dir=None if ckpt is None else f"{ckpt}/{strategy}", checkpoint_every=None,
                      log_every=1000, check_every=None, deterministic=deterministic,
                      piece_size=3 if deterministic else None,
                      micro_batches=micro, augment_padding=1, augment_flip=True, **SPECS[strategy])
    if trainer.comm.rank == 0:
        say(f"strategy {trainer.strategy.name} machines {getattr(trainer.strategy, 'machines', 1)} "
            f"size {trainer.comm.size}")
    trainer.fit(resume="--resume" in args, verbose=0)
    losses = [r["loss"] for r in trainer.history if "loss" in r]
    skipped = [r["step"] for r in trainer.history if r.get("finite") is False]
    evals = [v for r in trainer.history for k, v in sorted(r.items())
             if k.startswith(("test_", "ema_test_")) and isinstance(v, float)]
    final = trainer.evaluate()
    final_ema = trainer.evaluate(use_ema=True)
    state = trainer.state()
    if trainer.comm.rank == 0:
        arrays = {f"param/{k}": v for k, v in state.params.items()}
        arrays.update({f"ema/{k}": v for k, v in state.ema.items()})
        for slot, per_var in state.optimizer["slots"].items():
            arrays.update({f"slot/{slot}/{k}": v for k, v in per_var.items()})
        arrays["losses"] = np.array(losses, np.float64)
        arrays["skipped"] = np.array(skipped, np.int64)
        arrays["evals"] = np.array(evals, np.float64)
        arrays["final_eval"] = np.array([final["loss"], final["accuracy"], final_ema["loss"],
                                         final_ema["accuracy"]], np.float64)
        # copies: under shared memory the state views the window that close() frees
        saved.update({f"{strategy}:{k}": np.array(v) for k, v in arrays.items()})
    trainer.close()
if saved:
    np.savez(out, **saved)
sys.stdout.write(f"DONE {trainer.comm.rank} of {trainer.comm.size}\n")
