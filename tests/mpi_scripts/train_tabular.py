"""Train a regression (MSE, 8 features, float targets) or a binary classification (sigmoid
cross-entropy, one output unit) on the generated tabular data for a few steps, with evaluations,
and save the parameters and the logged metrics, so runs on 1, 2 and 3 ranks can be compared.

usage: python train_tabular.py OUT.npz [--task regression|binary] [--steps 12] [--batch 30]
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
from distnet.data import Subset  # noqa: E402
from distnet.data.synthetic import load_synthetic  # noqa: E402
from distnet.training.trainer import Trainer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--task", default="regression")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=30)
    args = parser.parse_args(script_args())
    comm = distnet.distributed.get_communicator("auto")
    regression = args.task == "regression"
    train, test = load_synthetic("tabular_regression" if regression else "tabular_binary")
    test = Subset(test, np.arange(97), "first 97")   # not a multiple of the ranks
    model = distnet.Sequential([layers.Dense(16, activation="relu"), layers.Dense(1)], input_shape=(8,), seed=3)
    trainer = Trainer(model, "mean_squared_error" if regression else "sigmoid_cross_entropy",
                      distnet.optimizers.Adam(0.01), train, eval_data=test, global_batch_size=args.batch,
                      steps=args.steps, eval_every=6, seed=11, comm=comm, log_every=1000)
    h = trainer.fit(verbose=0)
    metric = "mae" if regression else "accuracy"
    state = trainer.state()
    if comm.rank == 0:
        np.savez(args.out, losses=np.array(h.history["loss"]), metric=np.array(h.history[metric]),
                 test_loss=np.array(h.history["test_loss"]), test_metric=np.array(h.history[f"test_{metric}"]),
                 **{f"param:{k}": v for k, v in state.params.items()})
    say(f"rank {comm.rank} size {comm.size} steps {trainer.step} test_{metric} {h.history[f'test_{metric}'][-1]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
