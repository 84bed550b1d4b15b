"""Which synchroniser a job file gets on this many ranks: prints, on rank 0,
one line ``OPTIONS <variant> shard=<bool> overlap=<bool> buckets=<bucket_bytes> shm=<bool>``
per ``[dist]`` variant (buckets: None when sharded or one buffer; shm: through
shared memory: ZeRO-1's weights and block sums, or the replicated strategy's sum).

usage: mpiexec -n N python job_defaults.py
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from _common import say  # noqa: E402

from distnet.jobs.config import parse_job  # noqa: E402
from distnet.jobs.job import build_trainer  # noqa: E402
from test_dist_sharded import JOB  # noqa: E402

VARIANTS = {
    "unset": "",
    "off": "[dist]\nshard_optimizer = false\n",
    "buckets": "[dist]\nbucket_bytes = 4096\n",
    "overlap": "[dist]\noverlap = true\n",
    "clip": "[optimizer]\nclip_norm = 1.0\n",
    "f16": "[dist]\nshard_optimizer = false\ncompression = \"float16\"\n",
    "noshm": "[dist]\nshared_memory = false\n",
    "replnoshm": "[dist]\nstrategy = {type = \"replicated\", shared_memory = false}\n",
    "shard-f16": "[dist]\ncompression = \"float16\"\n",
}
for name, extra in VARIANTS.items():
    t = build_trainer(parse_job(JOB + extra))
    if t.comm.rank == 0:
        buckets = None if t.strategy.name == "zero1" else t.strategy.bucket_bytes
        shm = bool(getattr(t.strategy, "shared", False))
        say(f"OPTIONS {name} shard={t.strategy.name == 'zero1'} overlap={getattr(t.strategy, 'overlap', False)} buckets={buckets} shm={shm}")
    t.close()
