"""All-reduce check across hosts: every rank checks the sum and reports where it ran.

Usage: python allreduce_check.py STEPS [SLEEP_S] [STALL_S]

Each step all-reduces ``rank + step`` (1000 float64 values) and checks the sum
against ``size*step + size*(size-1)/2``.  Rank 0 prints ``step K sum S``
every step; every rank prints ``rank R of N on WHERE threads T`` once (WHERE:
the address of interface $DISTNET_TEST_IFACE if set, else $DISTNET_TEST_HOST,
else the host name) and
``ok rank R`` at the end.  A collective that does not complete within
STALL_S seconds (default 8) makes the rank print ``rank R: all-reduce of
step K stalled for S s`` on stderr and exit with status 3 -- a stand-in for
distnet's watchdog, so a cut link ends every rank instead of leaving it
blocked in the network stack.
"""
import fcntl
import os
import socket
import struct
import sys
import time

import numpy as np
from mpi4py import MPI


def _address(iface: str) -> str:
    """IPv4 address of ``iface`` in this rank's network namespace (SIOCGIFADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", iface.encode()[:15]))
    return socket.inet_ntoa(packed[20:24])


def main() -> int:
    steps = int(sys.argv[1])
    pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    stall = float(sys.argv[3]) if len(sys.argv) > 3 and not sys.argv[3].startswith("--") else 8.0
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    here = _address(os.environ["DISTNET_TEST_IFACE"]) if "DISTNET_TEST_IFACE" in os.environ \
        else os.environ.get("DISTNET_TEST_HOST", socket.gethostname())
    print(f"rank {rank} of {size} on {here} threads {os.environ.get('OMP_NUM_THREADS')}",
          flush=True)
    send = np.empty(1000)
    recv = np.empty(1000)
    for step in range(steps):
        send.fill(rank + step)
        req = comm.Iallreduce(send, recv)
        deadline = time.monotonic() + stall
        while not req.Test():
            if time.monotonic() > deadline:
                print(f"rank {rank}: all-reduce of step {step} stalled for {stall:g} s",
                      file=sys.stderr, flush=True)
                os._exit(3)
            time.sleep(0.001)
        expected = size * step + size * (size - 1) / 2
        if not np.all(recv == expected):
            print(f"rank {rank}: step {step} sum {recv[0]} != {expected}", file=sys.stderr,
                  flush=True)
            return 2
        if rank == 0:
            print(f"step {step} sum {recv[0]:g}", flush=True)
        if pause:
            time.sleep(pause)
    print(f"ok rank {rank}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
