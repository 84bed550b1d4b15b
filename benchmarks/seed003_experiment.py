"""Seed 003's experiment (docs/jobs.md): no regularization vs L2 on the FC weights vs dropout.

The reference net: conv 5x5x32 SAME + relu + max-pool 2 (SAME) ->
FC 1024 relu (-> dropout) -> FC 10, truncated-normal(0.1) weights and 0.1
biases, Adam 1e-4, batch 100, 1000 steps.  Every 100 steps it prints the
accuracy on the first 1000 training and the first 1000 test images, as the
experiment's original TF1 code did.  Variants:

* ``none``    — cross-entropy only;
* ``l2``      — plus ``0.004 * l2_loss(W)`` for both FC weight matrices
  (``kernel_regularizer=l2(0.004)``: TF's ``l2_regularizer(0.004)``);
* ``dropout`` — keep_prob 0.5 after FC 1024 while training.

(The experiment's original TF1 code applied ``l2_loss`` to the *initial value*
tensor, which carries no gradient; here the penalty is on the variables, as intended.)

Run ``python benchmarks/seed003_experiment.py [--data DIR]``;
with ``mpiexec -n N`` the same run is data-parallel (same results).
Add ``--two-conv --epochs 3`` for the 2-conv baseline.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import distnet
from distnet import layers
from distnet.model import initializers, regularizers
from distnet.data import ArrayDataset, load_dataset
from distnet.training.trainer import Trainer


def build_model(variant: str, seed: int, two_conv: bool = False) -> distnet.Sequential:
    w_init = initializers.truncated_normal(stddev=0.1)
    b_init = initializers.constant(0.1)
    reg = regularizers.l2(0.004) if variant == "l2" else None
    stack = [
        layers.Conv2D(32, 5, padding="same", activation="relu", kernel_initializer=w_init, bias_initializer=b_init),
        layers.MaxPool2D(2, padding="same"),
    ]
    if two_conv:
        stack += [
            layers.Conv2D(64, 5, padding="same", activation="relu", kernel_initializer=w_init,
                          bias_initializer=b_init),
            layers.MaxPool2D(2, padding="same"),
        ]
    stack += [
        layers.Flatten(),
        layers.Dense(1024, activation="relu", kernel_initializer=w_init, bias_initializer=b_init,
                     kernel_regularizer=reg),
    ]
    if variant == "dropout":
        stack.append(layers.Dropout(0.5))
    stack.append(layers.Dense(10, kernel_initializer=w_init, bias_initializer=b_init, kernel_regularizer=reg))
    return distnet.Sequential(stack, input_shape=(28, 28, 1), seed=seed)


def subset(ds, n: int) -> ArrayDataset:
    x, y = ds.read(np.arange(min(n, len(ds))))
    return ArrayDataset(x, y)


def run(variant: str, train, test, steps: int, seed: int, two_conv: bool, every: int, comm,
        lr: float = 1e-4) -> list[dict]:
    model = build_model(variant, seed, two_conv)
    train_probe, test_probe = subset(train, 1000), subset(test, 1000)
    rows: list[dict] = []

    def probe(trainer: Trainer, record: dict) -> None:
        step = record["step"]
        if step % every == 0 or step == 1:
            row = {"variant": variant, "step": step,
                   "train_acc": trainer.evaluate(train_probe)["accuracy"],
                   "test_acc": trainer.evaluate(test_probe)["accuracy"],
                   "loss": record["loss"], "reg_loss": record["reg_loss"]}
            rows.append(row)
            if comm.rank == 0:
                print(f"{variant:8s} step {step:5d}  train accuracy {row['train_acc']:.3f}  "
                      f"test accuracy {row['test_acc']:.3f}  loss {row['loss']:.4f}", flush=True)

    trainer = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(lr), train,
                      global_batch_size=100, steps=steps, seed=seed, comm=comm, callbacks=[probe],
                      check_every=None)
    t0 = time.perf_counter()
    trainer.fit()
    final = trainer.evaluate(test)
    if comm.rank == 0:
        print(f"{variant:8s} full test set: accuracy {final['accuracy']:.4f} loss {final['loss']:.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    rows.append({"variant": variant, "step": steps, "full_test_acc": final["accuracy"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="directory of Fashion-MNIST IDX files "
                        "(default: the installed dataset, else the embedded subset)")
    parser.add_argument("--variants", default="none,l2,dropout")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=None, help="train this many epochs instead of --steps")
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam's learning rate (the experiment's: 1e-4)")
    parser.add_argument("--two-conv", action="store_true", help="add conv 5x5x64 + pool (the 2-conv net)")
    parser.add_argument("--json", default=None, help="write the table as JSON to this file")
    args = parser.parse_args(argv)

    comm = distnet.distributed.get_communicator("auto")
    train, test = load_dataset("fashion_mnist", directory=args.data)
    steps = args.steps if args.epochs is None else args.epochs * -(-len(train) // 100)
    if comm.rank == 0:
        print(f"train {len(train)} images, test {len(test)} images, {comm.size} rank(s), {steps} steps",
              flush=True)
    rows: list[dict] = []
    for variant in args.variants.split(","):
        rows += run(variant, train, test, steps, args.seed, args.two_conv, args.every, comm, args.lr)
    if args.json and comm.rank == 0:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
