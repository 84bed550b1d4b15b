"""Train tests/mpi_scripts/sharded_train.py's net with and without float16
gradient compression, through ``Trainer(compression=...)`` or a job file.

usage: python compression_train.py OUT.npz [--compression none|float16] [--shard]
       [--bucket BYTES] [--steps 12] [--blowup-at STEP] [--job]

``--blowup-at STEP``: at that step rank 0 plants 1e6 in one gradient element (5e5 once weighted by n_r / N):
finite in float32, beyond float16's 65504, so inf on the wire.
``--job``: the trainer is built from a job text with
``--set``-style overrides (``dist.strategy.compression=...``) by ``distnet.jobs.job.build_trainer``.
Saves the parameters (``param:<name>``), the per-step ``finite`` flags and
losses; prints ``rank R digest D compressor C`` on every rank.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from _common import expect, plant_in_gradients, say, script_args  # noqa: E402

import distnet  # noqa: E402
from distnet.training.trainer import Trainer  # noqa: E402
from sharded_train import _net, optimizer  # noqa: E402
from train_equivalence import dataset  # noqa: E402

JOB = """\
name = "compression"
seed = 11

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 9
activation = "tanh"

[[model.layers]]
type = "dense"
units = 4

[optimizer]
name = "adam"
learning_rate = 0.01

[train]
batch_size = 10
steps = 6
log_every = 1000

[checkpoint]
dir = ""
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--compression", default="float16")
    parser.add_argument("--shard", action="store_true")
    parser.add_argument("--bucket", type=int, default=None)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--blowup-at", type=int, default=None)
    parser.add_argument("--job", action="store_true")
    args = parser.parse_args(script_args())
    comm = distnet.distributed.get_communicator("auto")
    if args.job:
        from distnet.jobs.config import parse_job
        from distnet.jobs.job import build_trainer

        overrides = [f"dist.strategy.compression={args.compression}",
                     f"dist.strategy.type={'zero1' if args.shard else 'replicated'}"]
        cfg = parse_job(JOB, "compression.toml", overrides=overrides)
        expect(cfg.dist.strategy["compression"] == args.compression, f"job: dist.strategy = {cfg.dist.strategy!r}")
        expect(f'compression = "{args.compression}"' in cfg.to_toml(), "job: compression not in the job text")
        trainer = build_trainer(cfg, comm=comm, data=(dataset(), dataset(20)))
    else:
        trainer = Trainer(_net(), "sparse_softmax_cross_entropy", optimizer("adam"), dataset(),
                          global_batch_size=10, steps=args.steps, ema=distnet.ExponentialMovingAverage(0.9),
                          weight_decay=0.01, seed=11, comm=comm, check_every=4, log_every=1000,
                          strategy="zero1" if args.shard else "replicated", compression=args.compression,
                          # an option given is an option asked for: bucket_bytes only when set
                          **({"bucket_bytes": args.bucket} if args.bucket is not None else {}))
    expect((trainer.strategy.name == "zero1") == args.shard, "strategy")
    expect(trainer.strategy.compression == args.compression, f"sync.compression = {trainer.strategy.compression!r}")
    active = trainer.strategy.compressor is not None
    expect(active == (args.compression == "float16" and comm.size > 1), f"compressor active: {active}")
    if args.blowup_at is not None:
        def blowup(grads):
            grads[0].reshape(-1)[0] = 1e6   # x n_r/N = 5e5 on the wire

        plant_in_gradients(trainer, args.blowup_at, blowup)
    history = trainer.fit()
    finite = np.array([r["finite"] for r in history if "finite" in r])
    losses = np.array([r["loss"] for r in history if "loss" in r])
    params = {v.name: v.numpy() for v in trainer.all_variables}
    digest = hashlib.sha256(b"".join(params[k].tobytes() for k in sorted(params))).hexdigest()[:16]
    if comm.rank == 0:
        np.savez(args.out, finite=finite, losses=losses, steps=trainer.step,
                 **{f"param:{k}": v for k, v in params.items()})
    say(f"rank {comm.rank} digest {digest} compressor {type(trainer.strategy.compressor).__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
