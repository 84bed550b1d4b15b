"""Bitwise before/after check of distnet training through the native Trainer.

Trains a small net (conv with an L2 kernel regularizer, dense with L1, dropout,
weight decay, Adam on an exponential-decay schedule, EMA with num_updates) for
20 steps on 1 rank and under ``mpiexec -n 2`` / ``-n 3`` with every strategy
that runs on one host (replicated, replicated+shared memory,
replicated+overlap, replicated+float16, zero1, zero1+shared memory, hierarchical), with and without micro-batches, with
global-norm and per-variable clipping (where the strategy takes it today), and
a stop after 8 steps + resume to 20.  Each run saves every final parameter,
optimizer slot (full arrays, gathered), EMA shadow, the optimizer's iteration
count and every step's loss / reg_loss / accuracy to one .npz.

usage:
    PYTHONPATH=<tree> python benchmarks/bitwise_check.py run OUT_DIR [--only SUBSTR] [--timeout 300]
    python benchmarks/bitwise_check.py compare DIR_BEFORE DIR_AFTER      # exit 1 on any difference

A config a tree refuses (e.g. clipping under zero1 before it was supported)
is recorded as ``<name>.refused.txt`` with the error, not as a failure;
``compare`` reports configs present on one side only.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

STEPS = 20


def configs() -> list[dict]:
    out = []
    for micro in (1, 3):
        out.append({"name": f"n1_default_micro{micro}", "ranks": 1, "strategy": "auto", "micro": micro})
    out.append({"name": "n1_globalclip", "ranks": 1, "strategy": "auto", "micro": 1, "global_clipnorm": 0.05})
    out.append({"name": "n1_clipnorm", "ranks": 1, "strategy": "auto", "micro": 2, "clipnorm": 0.05})
    out.append({"name": "n1_resume", "ranks": 1, "strategy": "auto", "micro": 2, "stop_at": 8})
    strategies = {
        "replicated": {"strategy": "replicated"},
        # as job files run it: the shared sum on 2 ranks, the all-reduce on 3
        "replicatedshm": {"strategy": "replicated", "shared_memory": "auto"},
        "overlap": {"strategy": "replicated", "overlap": True},
        "fp16": {"strategy": "replicated", "compression": "float16"},
        "zero1": {"strategy": "zero1"},
        "zero1shm": {"strategy": "zero1", "shared_memory": True},
        "hierarchical": {"strategy": "hierarchical"},
    }
    for n in (2, 3):
        for sname, opts in strategies.items():
            for micro in (1, 2):
                out.append({"name": f"n{n}_{sname}_micro{micro}", "ranks": n, "micro": micro, **opts})
            out.append({"name": f"n{n}_{sname}_globalclip", "ranks": n, "micro": 2, "global_clipnorm": 0.05,
                        **opts})
            out.append({"name": f"n{n}_{sname}_clipnorm", "ranks": n, "micro": 1, "clipnorm": 0.05, **opts})
        out.append({"name": f"n{n}_zero1_resume", "ranks": n, "micro": 2, "strategy": "zero1", "stop_at": 8})
        out.append({"name": f"n{n}_replicated_resume", "ranks": n, "micro": 1, "strategy": "replicated",
                    "stop_at": 8})
        out.append({"name": f"n{n}_replicatedshm_resume", "ranks": n, "micro": 1, "stop_at": 8,
                    **strategies["replicatedshm"]})
    return out


# -- the worker (one run; under mpiexec for several ranks) ------------------------------

def _trainer(cfg: dict, steps: int, ckpt: str | None, comm):
    import distnet
    from distnet import layers, regularizers, schedules
    from distnet.data import ArrayDataset
    from distnet import Trainer

    rng = np.random.default_rng(7)
    n = 61
    x = rng.random((n, 8, 8, 1), dtype=np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype(np.int64)
    y += 2 * (x[:, :, :4].mean(axis=(1, 2, 3)) > 0.5).astype(np.int64)
    data = ArrayDataset(x, y, num_classes=4)
    model = distnet.Sequential([
        layers.Conv2D(4, 3, padding="same", activation="relu", kernel_regularizer=regularizers.l2(0.05)),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(16, activation="tanh", kernel_regularizer=regularizers.l1(0.01)),
        layers.Dropout(0.3),
        layers.Dense(4),
    ], input_shape=(8, 8, 1), seed=3)
    lr = schedules.exponential_decay(0.01, decay_steps=5, decay_rate=0.5, staircase=False)
    clip = {k: cfg[k] for k in ("clipnorm", "global_clipnorm") if k in cfg}
    opt = distnet.optimizers.Adam(lr, **clip)
    options = {k: cfg[k] for k in ("overlap", "compression", "shared_memory", "bucket_bytes") if k in cfg}
    return Trainer(model, "sparse_softmax_cross_entropy", opt, data, global_batch_size=12, steps=steps,
                   ema=distnet.ExponentialMovingAverage(0.9), weight_decay=0.01, micro_batches=cfg["micro"],
                   seed=11, comm=comm, check_every=5, checkpoint_dir=ckpt, checkpoint_every=None,
                   log_every=1000, strategy=cfg.get("strategy", "auto"), **options)


def worker(cfg: dict, out: str) -> None:
    import distnet
    from distnet.distributed import get_communicator

    distnet.distributed.init()
    comm = get_communicator("auto")
    history: list = []
    try:
        if "stop_at" in cfg:
            ckpt = str(Path(out).with_suffix(".ckpt"))
            t = _trainer(cfg, cfg["stop_at"], ckpt, comm)
            history += [r for r in t.fit(verbose=0) if "loss" in r]
            t.close()
            t = _trainer(cfg, STEPS, ckpt, comm)
            history += [r for r in t.fit(resume=True, verbose=0) if "loss" in r]
        else:
            t = _trainer(cfg, STEPS, None, comm)
            history += [r for r in t.fit(verbose=0) if "loss" in r]
    except Exception as exc:   # a tree that refuses the config: recorded, not a crash
        if comm.rank == 0:
            Path(out).with_suffix(".refused.txt").write_text(f"{type(exc).__name__}: {exc}\n")
        return
    state = t.state()   # a collective: full slots and shadows whatever the strategy
    # Copies: under shared memory the parameters view a window that close() frees.
    arrays = {f"params/{k}": np.array(v) for k, v in state.params.items()}
    t.close()
    if comm.rank != 0:
        return
    arrays.update({f"ema/{k}": v for k, v in state.ema.items()})
    for slot, table in state.optimizer["slots"].items():
        arrays.update({f"slots/{slot}/{k}": v for k, v in table.items()})
    arrays["iterations"] = np.array(state.optimizer["iterations"])
    for key in ("loss", "reg_loss", "accuracy", "lr"):
        arrays[f"history/{key}"] = np.array([r[key] for r in history], dtype=np.float64)
    np.savez(out, **arrays)


# -- driver ------------------------------------------------------------------------------

def run(out_dir: str, only: str | None, timeout: float) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    failed = 0
    for cfg in configs():
        if only and only not in cfg["name"]:
            continue
        target = out / f"{cfg['name']}.npz"
        for stale in (target, target.with_suffix(".refused.txt")):
            stale.unlink(missing_ok=True)
        shutil.rmtree(target.with_suffix(".ckpt"), ignore_errors=True)
        cmd = [sys.executable, __file__, "worker", json.dumps(cfg), str(target)]
        if cfg["ranks"] > 1:
            cmd = [mpiexec, "-n", str(cfg["ranks"]), *cmd]
        t0 = time.time()
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
            ok = p.returncode == 0
        except subprocess.TimeoutExpired:
            p, ok = None, False
        refused = target.with_suffix(".refused.txt")
        status = "ok" if ok and target.exists() else ("refused" if ok and refused.exists() else "FAILED")
        print(f"{cfg['name']:32s} {status:8s} {time.time() - t0:5.1f}s"
              + (f"  ({refused.read_text().strip()[:110]})" if status == "refused" else ""), flush=True)
        if status == "FAILED":
            failed += 1
            print((p.stdout[-2000:] + p.stderr[-3000:]) if p is not None else "timeout", flush=True)
    return 1 if failed else 0


def compare(a: str, b: str) -> int:
    da, db = Path(a), Path(b)
    names = sorted({p.stem for p in da.glob("*.npz")} | {p.stem for p in db.glob("*.npz")})
    bad = 0
    for name in names:
        fa, fb = da / f"{name}.npz", db / f"{name}.npz"
        if not fa.exists() or not fb.exists():
            print(f"{name:32s} only in {'after' if fb.exists() else 'before'}")
            continue
        xa, xb = np.load(fa), np.load(fb)
        keys = sorted(set(xa.files) | set(xb.files))
        diffs = []
        for k in keys:
            if k not in xa.files or k not in xb.files:
                diffs.append(f"{k} missing on one side")
            elif xa[k].shape != xb[k].shape or xa[k].dtype != xb[k].dtype or \
                    xa[k].tobytes() != xb[k].tobytes():
                d = np.max(np.abs(xa[k].astype(np.float64) - xb[k].astype(np.float64))) \
                    if xa[k].shape == xb[k].shape else "shape"
                diffs.append(f"{k} (max |diff| {d})")
        print(f"{name:32s} {'bitwise equal' if not diffs else 'DIFFERS: ' + '; '.join(diffs[:4])}"
              f"  ({len(keys)} arrays)")
        bad += bool(diffs)
    print(f"{len(names)} configs, {bad} differ")
    return 1 if bad else 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(json.loads(sys.argv[2]), sys.argv[3])
        return 0
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out_dir")
    r.add_argument("--only")
    r.add_argument("--timeout", type=float, default=300)
    c = sub.add_parser("compare")
    c.add_argument("before")
    c.add_argument("after")
    args = ap.parse_args()
    if args.cmd == "run":
        return run(args.out_dir, args.only, args.timeout)
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
