"""Checkpoint write/read speed against a bare ``numpy.save`` of the same arrays.

The state has the reference conv net's shapes (conv2d 5x5x1x32, dense
6272x1024, dense_1 1024x10: ~6.4 M float32 parameters) plus Adam's m and v
and the EMA shadows: ~103 MB.  Both sides fsync before the clock stops.

Usage::

    python benchmarks/checkpoint.py                 # default settings, 5 repeats
    python benchmarks/checkpoint.py --sweep         # also chunk sizes, libver, digest cost
    python benchmarks/checkpoint.py --dir /data/ckpt --repeats 9

Prints the median (and best) seconds and MB/s of each operation, and the
ratio of medians checkpoint / numpy (target: within 1.5x).  Runs are
interleaved so that both sides see the same machine load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from distnet.checkpoint import CheckpointManager, CheckpointState, compute_digest, load, write_checkpoint
from distnet.checkpoint import writer as writer_module
from distnet.checkpoint.writer import header_items

SHAPES = {
    "conv2d/kernel": (5, 5, 1, 32), "conv2d/bias": (32,),
    "dense/kernel": (6272, 1024), "dense/bias": (1024,),
    "dense_1/kernel": (1024, 10), "dense_1/bias": (10,),
}


def reference_state(seed: int = 0) -> CheckpointState:
    rng = np.random.default_rng(seed)

    def arrays():
        return {n: rng.standard_normal(s, dtype=np.float32) for n, s in SHAPES.items()}

    return CheckpointState(
        params=arrays(), ema=arrays(),
        optimizer={"name": "adam", "iterations": 1000, "slots": {"m": arrays(), "v": arrays()},
                   "hyper": {"learning_rate": 1e-4, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}},
        step=1000, epoch=1, position=40000, rng={"seed": 0}, world_size=2,
        config_text="[job]\n", metrics={"loss": 0.1},
    )


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def numpy_save(path: str, arrays: dict) -> None:
    with open(path, "wb") as fh:
        for arr in arrays.values():
            np.save(fh, arr)
        fh.flush()
        os.fsync(fh.fileno())


def numpy_load(path: str, arrays: dict) -> list:
    with open(path, "rb") as fh:
        return [np.load(fh) for _ in arrays]


def timed_together(fns: dict, repeats: int) -> dict:
    """Run the functions round-robin (so that they share the same machine
    noise) and return ``{name: (median, best)}`` seconds."""
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def timed(fn, repeats: int) -> tuple[float, float]:
    return timed_together({"fn": fn}, repeats)["fn"]


def report(label: str, seconds: tuple[float, float], nbytes: int, baseline: float | None = None) -> None:
    med, best = seconds
    mb = nbytes / 1e6
    line = f"{label:<52} {med:7.3f} s  {mb / med:8.1f} MB/s   (best {best:.3f} s, {mb / best:.1f} MB/s)"
    if baseline is not None:
        line += f"   ratio {med / baseline:.2f}x"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help="directory to write in (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweep", action="store_true", help="also try chunk sizes, libver, digest")
    args = parser.parse_args()
    state = reference_state().validate()
    arrays = state.arrays()
    nbytes = sum(a.nbytes for a in arrays.values())
    n_params = sum(a.size for a in state.params.values())
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        print(f"state: {n_params / 1e6:.2f} M parameters, {len(arrays)} arrays, {nbytes / 1e6:.1f} MB; "
              f"dir {directory}; median of {args.repeats}")
        npy = os.path.join(directory, "arrays.npy")
        ckpt = os.path.join(directory, "ckpt-00001000.h5")
        mgr = CheckpointManager(os.path.join(directory, "mgr"), max_to_keep=2)
        w = timed_together({"numpy": lambda: numpy_save(npy, arrays),
                            "ckpt": lambda: write_checkpoint(ckpt, state),
                            "mgr": lambda: mgr.save(state)}, args.repeats)
        r = timed_together({"numpy": lambda: numpy_load(npy, arrays),
                            "ckpt": lambda: load(ckpt)}, args.repeats)
        report("numpy.save + fsync (write)", w["numpy"], nbytes)
        report("write_checkpoint (digest, fletcher32, fsync)", w["ckpt"], nbytes, w["numpy"][0])
        report("CheckpointManager.save (write + verify)", w["mgr"], nbytes, w["numpy"][0])
        report("numpy.load (read)", r["numpy"], nbytes)
        report("load (scan, fletcher32, digest)", r["ckpt"], nbytes, r["numpy"][0])
        np_write = w["numpy"]
        print(f"file sizes: checkpoint {os.path.getsize(ckpt) / 1e6:.1f} MB, "
              f"numpy {os.path.getsize(npy) / 1e6:.1f} MB")
        if args.sweep:
            sweep(state, arrays, nbytes, directory, args.repeats, np_write[0])


def sweep(state, arrays, nbytes, directory, repeats, np_write) -> None:
    """Where the time goes: the digest alone, and the bare HDF5 write (no
    digest) for several chunk sizes, chunk-cache settings and format bounds,
    all interleaved with numpy.save."""
    print("\n-- where the time goes (interleaved; ratios against numpy.save of this run) --")
    header = header_items(state)
    tmp = os.path.join(directory, "sweep.h5")
    npy = os.path.join(directory, "sweep.npy")
    slots = sorted(state.optimizer["slots"])

    def raw_write(chunk_bytes, libver=writer_module.LIBVER, rdcc=0):
        def run():
            writer_module._write_file(tmp, arrays, header, lambda: "0" * 64, slots,
                                      chunk_bytes, libver, rdcc)
            fsync_file(tmp)
        return run

    runs = {"numpy.save + fsync": lambda: numpy_save(npy, arrays),
            "SHA-256 digest alone": lambda: compute_digest(arrays.items(), header)}
    for mib in (0.25, 1, 4, 16, 64):
        runs[f"h5 write + fsync, {mib:g} MiB chunks"] = raw_write(int(mib * 2 ** 20))
    runs["h5 write + fsync, 1 MiB chunks, 1 MiB chunk cache"] = raw_write(2 ** 20, rdcc=2 ** 20)
    for libver in (("earliest", "latest"), ("v108", "v108"), ("latest", "latest")):
        runs[f"h5 write + fsync, 1 MiB chunks, libver {libver[0]}"] = raw_write(2 ** 20, libver)
    times = timed_together(runs, repeats)
    base = times["numpy.save + fsync"][0]
    for name, t in times.items():
        report(name, t, nbytes, None if name.startswith("numpy") else base)


if __name__ == "__main__":
    main()
