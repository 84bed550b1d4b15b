"""The shared windows of the sharded optimizer (or the replicated strategy's shared sum):
freed by close(), refused or left off when /dev/shm is too small.

usage: python shm_windows.py close [zero1|replicated]  (5 synchronisers built and closed, 5 built
                                      and dropped: /dev/shm's free space before and after each)
       python shm_windows.py small [zero1|replicated]  (free space faked at SMALL MB: auto falls back,
                                      True is an error)
Prints one ``RESULT {json}`` line on rank 0.
"""
from __future__ import annotations

import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from _common import expect, say, script_args  # noqa: E402

import distnet  # noqa: E402
from distnet.distributed import shared_memory  # noqa: E402
from distnet.distributed.strategies.replicated import Replicated  # noqa: E402
from distnet.distributed.strategies.zero1 import Zero1  # noqa: E402
from distnet.errors import InvalidArgumentError  # noqa: E402

N = 1_000_000   # 4 MB of float32: segments of 4 MB per rank (+ 4 MB of weights under ZeRO-1) per synchroniser
#: The faked free space of "small" (MB): below what each strategy needs for N on 2 ranks (12 / 8 MB).
SMALL = {"zero1": 10, "replicated": 5}


def build(comm, shared, strategy="zero1"):
    v = distnet.Variable(np.ones(N, dtype=np.float32), name="w")
    return {"zero1": Zero1, "replicated": Replicated}[strategy](comm, [v], shared_memory=shared), v


def main() -> int:
    mode, strategy = (script_args() + ["zero1"])[:2]
    comm = distnet.distributed.get_communicator("auto")
    out = {}
    if mode == "close":
        free0 = shared_memory.free_bytes()
        for _ in range(5):
            sync, v = build(comm, True, strategy)
            expect(sync.shared, "shared memory on one machine")
            sync.close()
            expect(not sync.shared and float(v.data.sum()) == N, "private weights after close")
        comm.barrier()
        free_closed = shared_memory.free_bytes()
        kept = [build(comm, True, strategy) for _ in range(5)]   # never closed: their windows stay
        comm.barrier()
        free_kept = shared_memory.free_bytes()
        out = {"free0": free0, "free_closed": free_closed, "free_kept": free_kept}
        for sync, _ in kept:
            sync.close()
    elif mode == "small":
        # SMALL MB on the last rank, plenty elsewhere: every rank must still take the same path
        room = SMALL[strategy] << 20 if comm.rank == comm.size - 1 else 1 << 40
        shared_memory.free_bytes = lambda path=shared_memory.SHM_DIR: room
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sync, _ = build(comm, "auto", strategy)
        out["auto_shared"] = comm.allgather_object(sync.shared)
        out["warnings"] = [str(w.message) for w in caught]
        try:
            build(comm, True, strategy)
            error = None
        except InvalidArgumentError as exc:
            error = str(exc)
        out["true_errors"] = comm.allgather_object(error)
    if comm.rank == 0:
        say("RESULT " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
