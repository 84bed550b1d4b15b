"""Train a recurrent net (images reshaped to rows, an LSTM returning every
step into a GRU, a dense layer) for a few steps and save its parameters and
the logged losses, so runs on 1, 2 and 3 ranks can be compared.

usage: python train_recurrent.py OUT.npz [--steps 8] [--batch 10] [--micro 1]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from _common import script_args, say  # noqa: E402
from train_equivalence import dataset  # noqa: E402

import distnet  # noqa: E402
from distnet import layers  # noqa: E402
from distnet.model import regularizers
from distnet.training.trainer import Trainer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--micro", type=int, default=1)
    args = parser.parse_args(script_args())
    comm = distnet.distributed.get_communicator("auto")
    model = distnet.Sequential([
        layers.Reshape((8, 8)),
        layers.LSTM(6, return_sequences=True, recurrent_regularizer=regularizers.l2(0.01)),
        layers.GRU(5),
        layers.Dense(4),
    ], input_shape=(8, 8, 1), seed=3)
    trainer = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.01), dataset(),
                      global_batch_size=args.batch, steps=args.steps, micro_batches=args.micro, seed=11, comm=comm,
                      check_every=4, log_every=1000)
    history = trainer.fit()
    losses = np.array([r["loss"] for r in history if "loss" in r])
    state = trainer.state()
    if comm.rank == 0:
        np.savez(args.out, losses=losses, **{f"param:{k}": v for k, v in state.params.items()})
    say(f"rank {comm.rank} size {comm.size} steps {trainer.step} final_loss {losses[-1]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
