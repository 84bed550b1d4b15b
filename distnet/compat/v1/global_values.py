"""When a value computed in a ``Session.run`` stands for the global batch,
and the all-reduce that makes it so (``tf.metrics`` and scalar summaries).

Under data parallelism a run's data is a rank's part of the global batch
when its feed came from ``tf.distributed.shard`` (or a constant made of
it), or when it read a batch of a ``tf.data`` iterator (an op marked
``_data_batch``): every rank then runs the same step together, and a
metric's counts or a summary's mean are summed over the ranks.  A run whose
data is not such a part (every rank, or rank 0 alone, evaluating data of
its own) stays on its rank, with no communication.  Summing is right even
if every rank read the same rows: the ratios that metrics and means report
do not change when every count is multiplied by the number of ranks.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def reducing_comm(run: Any, graph: Any):
    """The communicator to sum this run's evaluation values over, or None (keep them local)."""
    comm = graph.multi_rank_comm()
    if comm is None or run.rank_local:
        return None
    if run.shard is not None or graph._shard is not None:
        return comm
    if any(getattr(op, "_data_batch", False) for op in run.values):
        return comm
    return None


def sum_over_ranks(comm: Any, arrays: list) -> list:
    """``arrays`` summed over the ranks in one all-reduce (float64), each back in its dtype."""
    buf = np.concatenate([np.asarray(a, np.float64).reshape(-1) for a in arrays])
    comm.allreduce_(buf)
    out, pos = [], 0
    for a in arrays:
        a = np.asarray(a)
        out.append(buf[pos:pos + a.size].reshape(a.shape).astype(a.dtype))
        pos += a.size
    return out


def sample_count(run: Any, graph: Any) -> float:
    """This rank's number of samples in the run: the shard's rows, else the first size of a
    batch it read (a fed batch of unknown first size or a tf.data batch), else 1."""
    shard = run.shard if run.shard is not None else graph._shard
    if shard is not None:
        return float(shard[1])
    for op, value in list(run.fed.items()) + list(run.values.items()):
        batched = getattr(op, "_data_batch", False) or (
            op in run.fed and op.outputs and op.outputs[0].shape.ndims
            and op.outputs[0].shape.dims[0].value is None)
        data = getattr(value, "data", value)
        if batched and getattr(data, "ndim", 0):
            return float(data.shape[0])
    return 1.0
