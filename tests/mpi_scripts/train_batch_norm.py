"""Train a small conv net with batch normalization through the Trainer and save its parameters,
moving statistics, EMA shadows and losses, so runs on 1, 2 and 3 ranks can be compared.

52 samples in batches of 10: the shards are uneven on 3 ranks, and the last batch of each epoch
(2 samples) leaves a rank (on 3), or a micro-batch of a rank, without samples.  Rank 0 saves the
trainer's state (the checkpoint's arrays); with ``--per-rank`` every rank saves its own moving
statistics too (``rank<r>:<name>``), and the sample indices of its shard at every step.

usage: python train_batch_norm.py OUT.npz [--steps 12] [--micro 1] [--strategy replicated]
       [--overlap 0|1] [--compression float16] [--sync 0|1] [--per-rank] [--momentum 0.9]
       [--ckpt DIR [--stop-at K] [--resume] [--signal-at K]]
         (--signal-at: rank 0 sends itself SIGTERM during step K; the run stops there with a checkpoint)
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from _common import expect, script_args, say  # noqa: E402

import distnet  # noqa: E402
from distnet import layers  # noqa: E402
from distnet.data import ArrayDataset  # noqa: E402
from distnet.errors import TrainingStopped  # noqa: E402
from distnet.layers.batch_norm import batch_norm_layers  # noqa: E402
from distnet.training.trainer import Trainer  # noqa: E402


def dataset(n: int = 52) -> ArrayDataset:
    rng = np.random.default_rng(7)
    x = (rng.random((n, 6, 6, 1), dtype=np.float32) * 0.5 + 0.5).astype(np.float32)
    y = (x[:, :3].mean(axis=(1, 2, 3)) > x[:, 3:].mean(axis=(1, 2, 3))).astype(np.int64)
    y += 2 * (x[:, :, :3].mean(axis=(1, 2, 3)) > 0.75).astype(np.int64)
    return ArrayDataset(x, y, num_classes=4)


def model(momentum: float) -> distnet.Sequential:
    return distnet.Sequential([
        layers.Conv2D(3, 3, padding="same", use_bias=False),
        layers.BatchNorm(momentum=momentum),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(8, activation="relu", use_bias=False),   # a bias before batch norm has no gradient (only rounding noise, which Adam would amplify)
        layers.BatchNorm(momentum=momentum),
        layers.Dropout(0.2),
        layers.Dense(4),
    ], input_shape=(6, 6, 1), seed=3)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--micro", type=int, default=1)
    p.add_argument("--strategy", default="replicated")
    p.add_argument("--overlap", type=int, choices=(0, 1), default=None)
    p.add_argument("--compression", default=None)
    p.add_argument("--sync", type=int, choices=(0, 1), default=1)
    p.add_argument("--per-rank", action="store_true")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--ckpt", default=None)
    p.add_argument("--stop-at", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--signal-at", type=int, default=None)
    args = p.parse_args(script_args())
    comm = distnet.distributed.get_communicator("auto")
    options = {"strategy": args.strategy}
    if args.overlap is not None:
        options["overlap"] = bool(args.overlap)
    if args.compression is not None:
        options["compression"] = args.compression
    steps = args.stop_at if args.stop_at is not None else args.steps
    trainer = Trainer(model(args.momentum), "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.01),
                      dataset(), global_batch_size=10, steps=steps, micro_batches=args.micro, seed=11, comm=comm,
                      ema=distnet.ExponentialMovingAverage(0.9), sync_batch_norm=bool(args.sync),
                      check_every=1, checkpoint_dir=args.ckpt, checkpoint_every=None, log_every=1000, **options)
    shards = []   # this rank's sample indices, one array per step
    original = trainer.sampler.next

    def next_batch():
        b = original()
        shards.append(b.indices.copy())
        if args.signal_at is not None and comm.rank == 0 and trainer.step + 1 == args.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)   # a real signal, during step K
        return b

    trainer.sampler.next = next_batch
    stopped = None
    try:
        history = trainer.fit(resume=args.resume, verbose=0)
    except TrainingStopped as exc:
        stopped, history = exc, trainer.history
    losses = np.array([r["loss"] for r in history if "loss" in r])
    state = trainer.state()
    arrays = {}
    if args.per_rank:
        own = {f"rank{comm.rank}:{v.name}": v.numpy() for v in trainer.all_variables if not v.trainable}
        # The steps' shards, each ended by -1.
        own[f"rank{comm.rank}:shards"] = np.concatenate([np.append(s, -1) for s in shards])
        gathered = comm.allgather_object(own)
        for table in gathered:
            arrays.update(table)
    if comm.rank == 0:
        arrays.update({f"param:{k}": v for k, v in state.params.items()})
        arrays.update({f"ema:{k}": v for k, v in state.ema.items()})
        np.savez(args.out, losses=losses, steps=trainer.step, stopped=-1 if stopped is None else stopped.step,
                 **arrays)
    trainer.close()
    expect(len(batch_norm_layers(trainer.model)) == 2 and not any(
        layer.synchronizing for layer in batch_norm_layers(trainer.model)),
        "after close() the model's training calls are no collectives")
    say(f"rank {comm.rank} size {comm.size} steps {trainer.step} stopped {stopped is not None}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
