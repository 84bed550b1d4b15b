"""Train a small conv net with the sharded (ZeRO-1) or the replicated optimizer
and save parameters, EMA shadows, optimizer slots and the logged losses.

The net is tests/mpi_scripts/train_equivalence.py's (L2 + L1 kernel
regularizers, weight decay, dropout, EMA with num_updates) with a hidden
width of 17: 1217 parameters, which 2 and 3 ranks do not divide evenly.

usage: python sharded_train.py OUT.npz [--shard | --auto] [--opt adam|momentum|sgd]
       [--steps 20] [--batch 10] [--ckpt DIR --stop-at K | --ckpt DIR --resume]
       [--nan-at STEP]   (rank 0 plants one NaN in one gradient element at STEP)
       [--tiny]          (a model of 8 parameters: ranks beyond the first hold none)
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from _common import expect, plant_in_gradients, say, script_args  # noqa: E402

import distnet  # noqa: E402
import distnet.errors  # noqa: E402
from distnet import layers  # noqa: E402
from distnet.model import regularizers, schedules
from distnet.training.trainer import Trainer  # noqa: E402
from train_equivalence import dataset  # noqa: E402


def optimizer(kind: str):
    lr = schedules.exponential_decay(0.01, decay_steps=5, decay_rate=0.5, staircase=False)
    if kind == "adam":
        return distnet.optimizers.Adam(lr)
    if kind == "momentum":
        return distnet.optimizers.Momentum(lr, momentum=0.9)
    return distnet.optimizers.GradientDescent(0.1)


def build(args, comm) -> Trainer:
    if args.tiny:   # 8 parameters: on 3 ranks, ranks 1 and 2 hold none
        model = distnet.Sequential([
            layers.MaxPool2D(8), layers.Flatten(),
            layers.Dense(4, kernel_regularizer=regularizers.l2(0.05)),
        ], input_shape=(8, 8, 1), seed=3)
    else:
        model = _net()
    steps = args.stop_at if args.stop_at is not None else args.steps
    return Trainer(model, "sparse_softmax_cross_entropy", optimizer(args.opt), dataset(),
                   global_batch_size=args.batch, steps=steps, ema=distnet.ExponentialMovingAverage(0.9),
                   weight_decay=0.01, seed=11, comm=comm, check_every=5, checkpoint_dir=args.ckpt,
                   log_every=1000, strategy="auto" if args.auto else ("zero1" if args.shard else "replicated"),
                   eval_every=args.eval_every, micro_batches=args.micro_batches,
                   # an option given is asked for: shared_memory only to the strategy that takes it
                   **({} if args.shm == "default" or not (args.shard or args.auto) else
                      {"shared_memory": {"auto": "auto", "on": True, "off": False}[args.shm]}))


def _net():
    return distnet.Sequential([
        layers.Conv2D(4, 3, padding="same", activation="relu", kernel_regularizer=regularizers.l2(0.05)),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(17, activation="tanh", kernel_regularizer=regularizers.l1(0.01)),
        layers.Dropout(0.3),
        layers.Dense(4),
    ], input_shape=(8, 8, 1), seed=3)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--shard", action="store_true")
    parser.add_argument("--auto", action="store_true", help="strategy='auto': the trainer decides")
    parser.add_argument("--opt", default="adam", choices=("adam", "momentum", "sgd"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--stop-at", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--nan-at", type=int, default=None)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--shm", default="auto", choices=("auto", "on", "off", "default"),
                        help="shared_memory of the sharded path: auto, True, False or the Trainer's default")
    parser.add_argument("--eval-every", type=int, default=None, help="evaluate (and with the EMA) every N steps")
    parser.add_argument("--micro-batches", type=int, default=1)
    parser.add_argument("--close", action="store_true",
                        help="close() the trainer at the end, evaluate again with the EMA weights, "
                             "and check that it trains no more")
    args = parser.parse_args(script_args())
    comm = distnet.distributed.get_communicator("auto")
    trainer = build(args, comm)
    if args.nan_at is not None:
        def nan(grads):
            grads[-1].reshape(-1)[-1] = np.nan   # one element of the last variable

        plant_in_gradients(trainer, args.nan_at, nan)
    history = trainer.fit(resume=args.resume)
    losses = np.array([r["loss"] for r in history if "loss" in r])
    finite = np.array([r["finite"] for r in history if "finite" in r])
    state = trainer.state()          # a collective when sharded: every rank calls it
    if comm.rank == 0:
        arrays = {f"param:{k}": v for k, v in state.params.items()}
        arrays.update({f"ema:{k}": v for k, v in state.ema.items()})
        for slot, table in state.optimizer["slots"].items():
            arrays.update({f"slot:{slot}:{k}": v for k, v in table.items()})
        ema_eval = trainer.evaluate(dataset(), use_ema=True)
        np.savez(args.out, losses=losses, finite=finite, steps=trainer.step, sharded=trainer.strategy.name == "zero1",
                 shared=bool(getattr(trainer.strategy, "shared", False)),
                 ema_eval_loss=ema_eval["loss"], **arrays)
    else:
        ema_eval = trainer.evaluate(dataset(), use_ema=True)
    if args.close:
        before = {v.name: v.numpy().copy() for v in trainer.variables}
        trainer.close()
        expect(not getattr(trainer.strategy, "shared", False), "no shared memory after close()")
        expect(all(np.array_equal(before[v.name], v.numpy()) for v in trainer.variables),
               "the weights keep their values after close()")
        again = trainer.evaluate(dataset(), use_ema=True)
        expect(again == ema_eval, f"EMA evaluation after close() {again} != before {ema_eval}")
        try:
            trainer.train_step(trainer.sampler.next())
            expect(False, "a closed trainer trained")
        except distnet.errors.InvalidArgumentError as exc:
            expect("close() was called" in str(exc), str(exc))
        say(f"rank {comm.rank} closed")
    say(f"rank {comm.rank} size {comm.size} shard {args.shard} steps {trainer.step} final_loss {losses[-1]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
