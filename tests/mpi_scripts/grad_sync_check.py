"""Replicated against the single-process answer, on real ranks.

Usage: grad_sync_check.py COUNT_RANK_0 COUNT_RANK_1 ...   (one per rank, 0 allowed)

Sample ``i`` has the per-variable "gradient" ``default_rng(i)`` draws, so every
rank knows every sample's gradient and computes in float64 what one process
would get on the whole global batch: the mean over all samples, plus the
regularization gradient once.  Each rank syncs the mean of its own samples
(the last partial batch case: some ranks may have 0) for several bucket
sizes, with and without ``global_count``, and checks the result.  Prints
``OK <case>`` and ``DONE <rank>``.
"""
import numpy as np

from _common import expect, script_args, say
from distnet.distributed.strategies.base import reduce_arrays
from distnet.distributed import Replicated, get_communicator, install_abort_hook
from distnet.tensor import Variable

counts = [int(c) for c in script_args()]
comm = get_communicator("auto")
install_abort_hook(comm)
rank, size = comm.rank, comm.size
expect(len(counts) == size, f"give one count per rank: {counts} for {size} ranks")

shapes = {"conv/kernel": (3, 3, 2, 4), "conv/bias": (4,), "dense/kernel": (36, 10), "dense/bias": (10,)}
# Listed in an order that is not sorted: the layout must not depend on it.
variables = [Variable(np.ones(s, np.float32), name=n) for n, s in shapes.items()]
reg = {v.name: 0.004 * v.data.astype(np.float64) * (k + 1) for k, v in enumerate(variables)}


def sample_grads(i):
    rng = np.random.default_rng(1000 + i)
    return [rng.standard_normal(v.shape) for v in variables]


def sample_loss(i):
    return float(i % 7) / 7.0


total = sum(counts)
first = sum(counts[:rank])
mine = list(range(first, first + counts[rank]))
every = [sample_grads(i) for i in range(total)]
want = [sum(g[k] for g in every) / total + reg[v.name] for k, v in enumerate(variables)]
want_loss_sum = sum(sample_loss(i) for i in range(total))
local = [sum(sample_grads(i)[k] for i in mine) / len(mine) if mine else None for k in range(len(variables))]
local_loss_sum = sum(sample_loss(i) for i in mine)

for bucket_bytes in (None, 200, 1000, 10 ** 6):
    for known in (False, True):
        sync = Replicated(comm, variables, bucket_bytes=bucket_bytes, scalar_names=("loss_sum", "correct"))
        grads = [None if g is None else g.astype(np.float32) for g in local]
        res = reduce_arrays(sync, grads, len(mine), scalars={"loss_sum": local_loss_sum, "correct": float(len(mine) % 2)},
                        regularization_grads=[reg[v.name].astype(np.float32) for v in variables],
                        global_count=total if known else None)
        case = f"bucket={bucket_bytes} global_count_known={known}"
        expect(res.is_finite, case)
        expect(res.global_count == total, f"{case}: global count {res.global_count} != {total}")
        expect(abs(res.scalars["loss_sum"] - want_loss_sum) < 1e-4, f"{case}: loss sum")
        expect(res.scalars["correct"] == sum(c % 2 for c in counts), f"{case}: correct count")
        for (g, v), w in zip(res.grads_and_vars(), want):
            expect(g.shape == v.shape and g.dtype == np.float32, f"{case}: {v.name} shape/dtype")
            err = float(np.max(np.abs(g - w)))
            expect(err < 1e-5, f"{case}: {v.name} differs from the single-process mean by {err}")
            # The regularization gradient entered once: counting it once per
            # rank (or 1/size times) would be off by far more than the tolerance.
            wrong = w + (size - 1) * reg[v.name]
            expect(float(np.max(np.abs(g - wrong))) > 1e-3, f"{case}: {v.name} indistinguishable from N x reg")
        if bucket_bytes is not None and bucket_bytes < 1000:
            expect(len(sync.buckets) > 1, f"{case}: expected several buckets, got {len(sync.buckets)}")
        if rank == 0:
            say(f"OK {case} buckets={len(sync.buckets)}")

# Gradients written straight into the buffer's views, and prescaled ones.
sync = Replicated(comm, variables, bucket_bytes=256)
views = sync.grad_views()
for view, g in zip(views, local):
    if g is None:
        view.fill(np.nan)   # ignored: this rank has no samples
    else:
        np.copyto(view, g, casting="same_kind")
res = reduce_arrays(sync, views, len(mine), global_count=total)   # the adapter lands views in place
for g, w, v in zip(res.grads, want, variables):
    expect(float(np.max(np.abs(g + reg[v.name] - w))) < 1e-5, f"in-place views: {v.name}")
prescaled = [None if g is None else (g * len(mine) / total).astype(np.float32) for g in local]
res = reduce_arrays(Replicated(comm, variables), prescaled, len(mine), prescaled=True)
for g, w, v in zip(res.grads, want, variables):
    expect(float(np.max(np.abs(g + reg[v.name] - w))) < 1e-5, f"prescaled: {v.name}")
if rank == 0:
    say("OK views_and_prescaled")

# Non-finite on one rank only: every rank sees is_finite False.
sync = Replicated(comm, variables)
grads = [np.zeros(v.shape, np.float32) for v in variables]
if rank == size - 1:
    grads[2][0, 0] = np.inf
res = reduce_arrays(sync, grads, 1)
flags = comm.allgather_object(res.is_finite)
expect(flags == [False] * size, f"is_finite after an inf on rank {size - 1}: {flags}")
res = reduce_arrays(sync, [np.zeros(v.shape, np.float32) for v in variables], 1)
expect(res.is_finite, "finite again on the next step")
if rank == 0:
    say("OK non_finite")

# Overlap: non-blocking bucket all-reduces started as variables are reported
# final (in an order unlike the buffer's), against the blocking sync of the
# same prescaled gradients.  Sums of 2 terms are commutative, so on 2 ranks
# the two must agree bitwise; on 3 ranks MPI may associate the 3 terms
# differently between its blocking and non-blocking algorithms (an ulp).
for bucket_bytes in (None, 64, 500):
    blocking = Replicated(comm, variables, bucket_bytes=bucket_bytes, scalar_names=("loss_sum",))
    overlapped = Replicated(comm, variables, bucket_bytes=bucket_bytes, scalar_names=("loss_sum",),
                                      overlap=True)
    scal = {"loss_sum": local_loss_sum}
    if mine:
        sink = overlapped.gradient_sink(accumulate=False, local_count=len(mine), scalars=scal)
        for k in (2, 0, 3, 1):
            sink(k, prescaled[k])
    got = overlapped.reduce(len(mine), scalars=scal, global_count=total,
                            regularization_grads=[reg[v.name].astype(np.float32) for v in variables])
    ref = reduce_arrays(blocking, prescaled, len(mine), scalars=scal, global_count=total, prescaled=True,
                        regularization_grads=[reg[v.name].astype(np.float32) for v in variables])
    case = f"overlap bucket={bucket_bytes} buckets={len(overlapped.buckets)}"
    expect(got.global_count == total and got.is_finite, case)
    expect(abs(got.scalars["loss_sum"] - want_loss_sum) < 1e-4, f"{case}: loss sum")
    for g, r, w, v in zip(got.grads, ref.grads, want, variables):
        if size == 2:
            expect(np.array_equal(g, r), f"{case}: {v.name} not bitwise equal to the blocking sync")
        expect(float(np.max(np.abs(g - w))) < 1e-5, f"{case}: {v.name} differs from the single-process mean")
    if rank == 0:
        say(f"OK {case}")
say(f"DONE {rank}")
