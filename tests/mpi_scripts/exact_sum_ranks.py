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
# non-finite summands in some pieces, a length no number of ranks divides evenly
special = [p[:9_973].copy() for p in pieces]
special[3][::97], special[8][::89], special[5][::83] = np.nan, np.inf, -np.inf
odd = exact_allreduce(comm, special[lo: lo + counts[comm.rank]], count=P, size=9_973, starts=[0, 7])
# two summands in the whole job (the float32 path): pieces 0 and 1 dealt as whole pieces
two = block_counts(2, comm.size)
lo2 = sum(two[:comm.rank])
pair = exact_allreduce(comm, special[3:5][lo2: lo2 + two[comm.rank]], count=2, size=9_973)
say("DIGEST " + hashlib.sha256(out.tobytes() + odd.tobytes() + pair.tobytes()).hexdigest())
plain = np.zeros(n, np.float32)
for p in mine:
    plain += p
comm.allreduce_(plain)
say("FLOAT32 " + hashlib.sha256(plain.tobytes()).hexdigest())
say(f"DONE {comm.rank}")
