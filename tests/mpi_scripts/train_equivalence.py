"""Train a small conv net for a few steps and save parameters, EMA shadows and
the logged losses, so runs on 1, 2 and 3 ranks can be compared.

The net has everything whose distribution could go wrong: a conv layer with
an L2 kernel regularizer (way b) plus weight decay on every variable (way a),
dropout (per-sample keyed masks), Adam with an exponentially decaying
learning rate, an EMA with num_updates, and optionally micro-batches.

usage: python train_equivalence.py OUT.npz [--steps 20] [--batch 10] [--micro 1]
       [--reg-mult M]                 (multiply every regularization scale by M)
       [--direct 0|1] [--overlap 0|1] [--bucket BYTES] [--shard 0|1]
                                      (Trainer's strategy, overlap, bucket_bytes)
       [--nan-at STEP]                (rank 0 plants a NaN in its gradient of the first variable at STEP,
                                       in the sync buffer, before that variable is reported final)
       [--ckpt DIR --stop-at K]       (train K steps, checkpoint into DIR, exit)
       [--ckpt DIR --resume]          (resume from DIR's newest checkpoint)
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from _common import script_args, say  # noqa: E402

import distnet  # noqa: E402
from distnet import layers  # noqa: E402
from distnet.model import regularizers, schedules
from distnet.data import ArrayDataset  # noqa: E402
from distnet.training.trainer import Trainer  # noqa: E402


def dataset(n: int = 53) -> ArrayDataset:
    rng = np.random.default_rng(7)
    x = rng.random((n, 8, 8, 1), dtype=np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype(np.int64)
    y += 2 * (x[:, :, :4].mean(axis=(1, 2, 3)) > 0.5).astype(np.int64)
    return ArrayDataset(x, y, num_classes=4)


def build(steps: int, batch: int, micro: int, comm, ckpt: str | None, reg_mult: float = 1.0,
          **options) -> Trainer:
    model = distnet.Sequential([
        layers.Conv2D(4, 3, padding="same", activation="relu", kernel_regularizer=regularizers.l2(0.05 * reg_mult)),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(16, activation="tanh", kernel_regularizer=regularizers.l1(0.01 * reg_mult)),
        layers.Dropout(0.3),
        layers.Dense(4),
    ], input_shape=(8, 8, 1), seed=3)
    lr = schedules.exponential_decay(0.01, decay_steps=5, decay_rate=0.5, staircase=False)
    return Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(lr), dataset(),
                   global_batch_size=batch, steps=steps, ema=distnet.ExponentialMovingAverage(0.9),
                   weight_decay=0.01 * reg_mult, micro_batches=micro, seed=11, comm=comm, check_every=5,
                   checkpoint_dir=ckpt, checkpoint_every=None, log_every=1000, **options)


def plant_nan(trainer: Trainer, comm, step: int) -> None:
    """On rank 0, once, at ``step``: a NaN in the first variable's gradient,
    written where backward puts it (the strategy's buffer), before it is
    reported final (so an overlapped bucket carries it)."""
    sync, planted = trainer.strategy, []
    view = sync.grad_views()[0]

    def due() -> bool:
        # A skipped step does not advance the step: plant only once.
        return comm.rank == 0 and trainer.step == step and not planted

    if getattr(sync, "overlap", False):
        # The sink reports each final gradient to _grad_ready, which starts its bucket.
        original_ready = sync._grad_ready

        def grad_ready(i):
            if i == 0 and due():
                planted.append(True)
                view.reshape(-1)[0] = np.nan
            return original_ready(i)

        sync._grad_ready = grad_ready
    else:
        original_reduce = sync.reduce

        def planted_reduce(*a, **kw):
            if due():   # the sinks wrote this step's gradients into the views
                planted.append(True)
                view.reshape(-1)[0] = np.nan
            return original_reduce(*a, **kw)

        sync.reduce = planted_reduce


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--micro", type=int, default=1)
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--stop-at", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--reg-mult", type=float, default=1.0)
    parser.add_argument("--overlap", type=int, choices=(0, 1), default=None)
    parser.add_argument("--bucket", type=int, default=None)
    parser.add_argument("--shard", type=int, choices=(0, 1), default=0)
    parser.add_argument("--strategy", default=None, help="a strategy by name (overrides --shard)")
    parser.add_argument("--report-strategy", action="store_true", help="print the strategy the trainer runs")
    parser.add_argument("--nan-at", type=int, default=None)
    args = parser.parse_args(script_args())
    comm = distnet.distributed.get_communicator("auto")
    steps = args.stop_at if args.stop_at is not None else args.steps
    options = {"strategy": args.strategy or ("zero1" if args.shard else "replicated")}
    if args.bucket is not None:   # an option given is an option asked for
        options["bucket_bytes"] = args.bucket
    if args.overlap is not None:
        options["overlap"] = bool(args.overlap)
    trainer = build(steps, args.batch, args.micro, comm, args.ckpt, args.reg_mult, **options)
    if args.report_strategy and comm.rank == 0:
        say(f"strategy {trainer.strategy.name}")
    if args.nan_at is not None:
        plant_nan(trainer, comm, args.nan_at)
    history = trainer.fit(resume=args.resume)  # with a checkpoint dir, the last step is saved
    losses = np.array([r["loss"] for r in history if "loss" in r])
    finite = np.array([r["finite"] for r in history if "finite" in r])
    regs = np.array([r["reg_loss"] for r in history if "reg_loss" in r])
    state = trainer.state()  # collective: gathers sharded slots and shadows
    if comm.rank == 0:
        arrays = {f"param:{k}": v for k, v in state.params.items()}
        arrays.update({f"ema:{k}": v for k, v in state.ema.items()})
        np.savez(args.out, losses=losses, regs=regs, finite=finite, steps=trainer.step, **arrays)
    say(f"rank {comm.rank} size {comm.size} steps {trainer.step} final_loss {losses[-1]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
