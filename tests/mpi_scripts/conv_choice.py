"""Train a small conv net with ``conv_algorithm="auto"`` on every rank and save
each rank's plan and a digest of its final weights, so the test can check that
all ranks run rank 0's choice and stay bitwise equal.

Every rank's measurement is replaced by a fake whose winner depends on the
rank (rank r: algorithm number r of those that apply is fastest), so a rank
that used its own measurement would disagree with rank 0.

With ``--ckpt DIR`` the run writes its checkpoints there (the test resumes
from them on another number of ranks).

usage: python conv_choice.py OUT.npz [--steps 3] [--ckpt DIR] [--resume]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from _common import say, script_args  # noqa: E402

import distnet  # noqa: E402
from distnet import layers  # noqa: E402
from distnet.data import ArrayDataset  # noqa: E402
from distnet.nn import conv_choice  # noqa: E402
from distnet.training.trainer import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(script_args())
    comm = distnet.distributed.init().comm
    real = conv_choice.time_algorithms

    def fake(*a, **k):
        times = real(*a, **k, repeats=1)
        names = sorted(times)
        winner = names[comm.rank % len(names)]
        return {name: (0.0 if name == winner else 1.0) for name in names}

    conv_choice.time_algorithms = fake
    conv_choice.MEASURE_MIN_FLOP = 0   # the layers here are small: measure them anyway
    rng = np.random.default_rng(5)
    x = rng.random((24, 8, 8, 2), dtype=np.float32)
    y = rng.integers(0, 3, 24)
    model = distnet.Sequential([
        layers.Conv2D(4, 3, padding="same", activation="relu"),
        layers.Conv2D(6, 5, padding="same", activation="relu"),
        layers.Flatten(),
        layers.Dense(3),
    ], input_shape=(8, 8, 2), seed=1)
    trainer = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.01),
                      ArrayDataset(x, y, num_classes=3), global_batch_size=12, steps=args.steps, seed=2,
                      comm=comm, conv_algorithm="auto", log_every=1000, checkpoint_dir=args.ckpt)
    trainer.fit(resume=args.resume, verbose=0)
    plan = ",".join(f"{k}={v}" for k, v in sorted(trainer.conv_algorithms.items()))
    digest = hashlib.sha256(b"".join(v.data.tobytes() for v in trainer.all_variables)).hexdigest()
    rows = comm.allgather_object((plan, digest))
    say(f"rank {comm.rank}: {plan} {digest[:12]}")
    if comm.rank == 0:
        np.savez(args.out, plans=np.array([r[0] for r in rows]), digests=np.array([r[1] for r in rows]))


if __name__ == "__main__":
    main()
