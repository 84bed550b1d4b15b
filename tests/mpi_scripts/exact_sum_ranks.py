"""The exact sum through a real communicator: every rank prints the digest of the result.

Usage: exact_sum_ranks.py

12 pieces of 10,000 float32 values (over 40 binades, 4 segments, one NaN-free) are
dealt to the ranks in whole pieces (uneven: block counts); the sum's bits must be
the same on every rank and for any number of ranks.  Prints ``DIGEST <hex>``,
``FLOAT32 <hex>`` (the plain float32 all-reduce, for the record) and ``DONE <rank>``.
"""
import hashlib

import numpy as np
from _common import say

from distnet.distributed import block_counts, get_communicator, install_abort_hook
from distnet.distributed.exact_sum import exact_allreduce

comm = get_communicator("auto")
install_abort_hook(comm)
rng = np.random.default_rng(7)
P, n = 12, 10_000
pieces = [(rng.standard_normal(n) * 2.0 ** rng.integers(-40, 0, n)).astype(np.float32) for _ in range(P)]
counts = block_counts(P, comm.size)
lo = sum(counts[:comm.rank])
mine = pieces[lo: lo + counts[comm.rank]]
out = exact_allreduce(comm, mine, count=P, size=n, starts=[0, 2500, 5000, 7500])
say("DIGEST " + hashlib.sha256(out.tobytes()).hexdigest())
plain = np.zeros(n, np.float32)
for p in mine:
    plain += p
comm.allreduce_(plain)
say("FLOAT32 " + hashlib.sha256(plain.tobytes()).hexdigest())
say(f"DONE {comm.rank}")
