"""One evaluation of a job's model on its test split: wall time, CPU time (user, system), page
faults, and the numbers it gives (printed in full, to compare two versions of the code bitwise).

The model holds its initial weights (the job's seed): the cost of an evaluation does not depend on
them, and the numbers are the same for every version of the code that computes the same thing.
CPU time, not wall time, is the figure to compare on a shared machine: the wall time there is
mostly waiting for a core.  Run two versions side by side (same load) with PYTHONPATH:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/eval_time.py [JOB] \
        [--batch-size 1000] [--profile]

JOB is a job file (default: the built-in default job).  ``--profile`` adds a cProfile of the pass
timed in CPU seconds (``time.process_time``), so the waiting does not show as work.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import time

import numpy as np


def main() -> None:
    from distnet.jobs.config import load_job
    from distnet.jobs.job import build_model, load_data
    from distnet.model import losses
    from distnet.training.evaluation import evaluate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", nargs="?", help="a job file (default: the built-in default job)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="samples per forward pass (default: the job's train.eval_batch_size)")
    parser.add_argument("--profile", action="store_true", help="print a CPU-time profile of the pass")
    args = parser.parse_args()

    cfg = load_job(args.job)
    batch_size = args.batch_size or cfg.train.eval_batch_size
    _, test = load_data(cfg)
    model = build_model(cfg)
    model(test.read(np.arange(2))[0], training=False)   # builds the weights outside the timing
    loss = losses.get(cfg.loss.type, class_labels=True)

    profiler = cProfile.Profile(time.process_time) if args.profile else None
    before, cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    result = evaluate(model, test, loss, batch_size=batch_size)
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(f"job {args.job or '(default)'}: {result['samples']} test samples, batch {batch_size}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"wall {wall:.2f} s  cpu {cpu:.2f} s (user {after.ru_utime - before.ru_utime:.2f}, "
          f"system {after.ru_stime - before.ru_stime:.2f})  page faults {after.ru_minflt - before.ru_minflt}  "
          f"peak RSS {after.ru_maxrss / 1024:.0f} MB")
    metric = "mae" if "mae" in result else "accuracy"
    print(f"loss {result['loss']!r}  {metric} {result[metric]!r}")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
