"""Stop a real multi-worker job with signals at random moments, many times, and count what happened.

Each repeat runs ``distnet train examples/jobs/mlp.toml -n N`` through the
launcher (as a user would; ``--via mpiexec`` runs ``mpiexec -n N python -m
distnet train`` directly), waits until training has begun, sleeps a random
time of up to 2 s and delivers one kind of signal (tests/stop_util.py lists
them), then checks: the exit status (130 / 143), that the newest checkpoint
is at the last logged step with the data position of the next unseen
sample, that metrics.jsonl ends with an ``end`` record, that no process of
the job is left, that nothing printed a traceback and that no file the
job made stays in ``/dev/shm`` (``shm-left``: names that were not there
before the repeat; other jobs on the machine write there too, so for an
exact count run it in a private ``/dev/shm``, as tests/test_shm_leftovers.py
does: ``unshare --mount --propagation private sh -c 'mount -t tmpfs tmpfs
/dev/shm && exec python benchmarks/stop_signals.py ...'``).  One line per
repeat, then the counts:

    python benchmarks/stop_signals.py --kind all --repeats 20 -n 2
    python benchmarks/stop_signals.py --set 'dist.strategy={type = "replicated", shared_memory = true}'

Not a test (it takes minutes); tests/test_stop.py runs a few repeats of each kind.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from stop_util import KINDS, check_stopped, run_and_signal  # noqa: E402

SHM = "/dev/shm"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=KINDS + ("all",), default="all")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("-n", "--workers", type=int, default=2)
    ap.add_argument("--via", choices=("launcher", "mpiexec"), default="launcher")
    ap.add_argument("--job", default=str(ROOT / "examples/jobs/mlp.toml"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a job setting for every repeat, as distnet train --set (repeatable)")
    args = ap.parse_args()
    from distnet.jobs.config import load_job
    from distnet.jobs.job import load_data

    cfg = load_job(args.job, ["train.epochs=4", *args.set])
    num_samples, batch = len(load_data(cfg)[0]), cfg.train.batch_size
    kinds = KINDS if args.kind == "all" else (args.kind,)
    for kind in kinds:
        counts: Counter = Counter()
        with tempfile.TemporaryDirectory(prefix="distnet-stop-") as tmp:
            for i in range(args.repeats):
                rng = random.Random(args.seed * 100003 + i)
                run_dir = Path(tmp) / f"run{i}"
                before = set(os.listdir(SHM))
                sets = [a for kv in ["train.epochs=4", *args.set] for a in ("--set", kv)]
                run = run_and_signal(kind, Path(args.job), run_dir, args.workers, rng, *sets,
                                     via=args.via, max_delay=2.0,
                                     min_delay=0.2 if kind == "startup-int" else 0.0)
                outcome, detail = check_stopped(run, run_dir, num_samples, batch)
                left = sorted(set(os.listdir(SHM)) - before)
                if left and outcome == "ok":
                    outcome, detail = "shm-left", f"{detail}; left in {SHM}: {left}"
                counts[outcome] += 1
                print(f"{kind} -n {args.workers} via {args.via} #{i + 1}: {outcome} {detail}", flush=True)
        print(f"== {kind} -n {args.workers} via {args.via}: "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f" (of {args.repeats})", flush=True)


if __name__ == "__main__":
    main()
