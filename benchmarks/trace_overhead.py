"""What ``--trace`` costs a step: the MLP example's step time with the timeline on and off.

The two trainers alternate in rounds in one process (so machine load hits
both alike) and the median step time of each is printed, with the ratio.

    python benchmarks/trace_overhead.py --rounds 5 --steps 200
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)

import numpy as np  # noqa: E402

import distnet  # noqa: E402
from distnet import layers  # noqa: E402
from distnet.data import ArrayDataset  # noqa: E402


def trainer(steps: int, trace: str | None):
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.random((100 * steps, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 100 * steps),
                        num_classes=10)
    model = distnet.Sequential([layers.Flatten(), layers.Dense(256, activation="relu"),
                                layers.Dense(128, activation="relu"), layers.Dense(10)], input_shape=(28, 28, 1),
                               seed=0)
    return distnet.Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(1e-3), data,
                           global_batch_size=100, steps=steps, trace=trace)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    distnet.distributed.init()
    times = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in ("off", "on") if r % 2 == 0 else ("on", "off"):
                t = trainer(args.steps, os.path.join(tmp, f"trace{r}") if name == "on" else None)
                stamps = []
                t.add_hook(lambda tr, rec: stamps.append(time.perf_counter()))
                t.fit(verbose=0)
                times[name].append(statistics.median(np.diff(stamps)) * 1e3)
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(f"MLP step, batch 100, 1 process: trace off {off:.3f} ms, on {on:.3f} ms -> on/off {on / off:.3f} "
          f"(medians of {args.rounds} rounds of {args.steps} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
