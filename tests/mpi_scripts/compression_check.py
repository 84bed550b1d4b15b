"""float16 gradient compression against a numpy reference, on real ranks.

Usage: compression_check.py COUNT_RANK_0 COUNT_RANK_1 ...   (one per rank, 0 allowed)

Every rank draws every rank's gradients (``default_rng(2000 + rank)``, with
magnitudes from 1e-9 to 10 so that some flush to zero in float16 and most
lose digits), so each can compute the reference in numpy: every rank's
packed gradient rounded to float16, summed in float32 in rank order, and
(replicated path) the sum rounded to float16 once more.  The arithmetic is
the same as the compressed sync's, so the comparison is bitwise (tolerance
0).  Checked: the replicated sync with buckets of several sizes and with
and without ``global_count``, the sharded (ZeRO-1) reduce-scatter on uneven,
padded blocks, identical bits on every rank, the count and scalars equal
to the float32 path's, and float16 overflow reported as non-finite on every
rank.  Prints ``OK <case>`` (rank 0) and ``DONE <rank>``.
"""
import hashlib

import numpy as np

from _common import expect, say, script_args
from distnet.distributed.strategies.base import reduce_arrays
from distnet.distributed import Replicated, get_communicator, install_abort_hook
from distnet.distributed.strategies.zero1 import Zero1
from distnet.tensor import Variable

counts = [int(c) for c in script_args()]
comm = get_communicator("auto")
install_abort_hook(comm)
rank, size = comm.rank, comm.size
expect(len(counts) == size, f"give one count per rank: {counts} for {size} ranks")
total = sum(counts)

# 1217 elements: neither 2 nor 3 divides them; listed unsorted.
shapes = {"dense/kernel": (30, 40), "conv/kernel": (3, 3, 1, 1), "dense/bias": (8,)}
variables = [Variable(np.ones(s, np.float32), name=n) for n, s in shapes.items()]
order = sorted(range(len(variables)), key=lambda i: variables[i].name)
reg = [(0.004 * (k + 1) * np.ones(v.shape)).astype(np.float32) for k, v in enumerate(variables)]


def grads_of(r):
    rng = np.random.default_rng(2000 + r)
    return [(rng.standard_normal(v.shape) * 10.0 ** rng.uniform(-9, 1, v.shape)).astype(np.float32)
            for v in variables]


def packed(r, known):
    """What rank r's sync packs: its gradients times n_r / N (N given, or
    summed from the ranks' counts first by ``reduce_arrays``: the same weight)."""
    weight = counts[r] / total
    return [np.multiply(g, weight) if counts[r] else np.zeros_like(g) for g in grads_of(r)]


def f16_sum(known):
    """Per variable: the float32 sum in rank order of the float16-rounded packed gradients."""
    sums = None
    for r in range(size):
        rounded = [p.astype(np.float16).astype(np.float32) for p in packed(r, known)]
        sums = rounded if sums is None else [np.add(s, x) for s, x in zip(sums, rounded)]
    return sums


def digest(arrays) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()


def same_on_every_rank(arrays, case):
    digests = comm.allgather_object(digest(arrays))
    expect(len(set(digests)) == 1, f"{case}: ranks got different bits: {digests}")


scalars = {"loss_sum": 0.1 * (rank + 1) / 3.0 + 1e-3, "correct": float(counts[rank] % 3)}
mine = grads_of(rank) if counts[rank] else None

# -- the replicated all-reduce ----------------------------------------------
for known in (True, False):
    plain = Replicated(comm, variables, scalar_names=("loss_sum", "correct"))
    ref32 = reduce_arrays(plain, mine, counts[rank], scalars=scalars, regularization_grads=reg,
                       global_count=total if known else None)
    ref32 = {"grads": [g.copy() for g in ref32.grads], "scalars": ref32.scalars, "count": ref32.global_count}
    sums = f16_sum(known)
    want = []
    for s, g in zip(sums, reg):
        x = s.astype(np.float16).astype(np.float32)
        want.append(np.add(x, g))
    for bucket_bytes in (None, 200, 1000, 10 ** 6):
        case = f"replicated bucket={bucket_bytes} global_count_known={known}"
        sync = Replicated(comm, variables, bucket_bytes=bucket_bytes,
                                    scalar_names=("loss_sum", "correct"), compression="float16")
        expect(sync.compressor is not None, f"{case}: no compressor on {size} ranks")
        res = reduce_arrays(sync, mine, counts[rank], scalars=scalars, regularization_grads=reg,
                        global_count=total if known else None)
        expect(res.is_finite, f"{case}: not finite")
        expect(res.global_count == total == ref32["count"], f"{case}: global count {res.global_count} != {total}")
        expect(res.scalars == ref32["scalars"], f"{case}: scalars {res.scalars} != float32 path {ref32['scalars']}")
        expect(res.scalars["correct"] == sum(c % 3 for c in counts), f"{case}: correct count {res.scalars}")
        diff32 = 0.0
        for i, (g, w, g32) in enumerate(zip(res.grads, want, ref32["grads"])):
            expect(g.dtype == np.float32 and g.shape == variables[i].shape, f"{case}: dtype/shape")
            expect(np.array_equal(g.view(np.uint32), w.view(np.uint32)),
                   f"{case}: {variables[i].name} differs from the numpy reference by "
                   f"{float(np.max(np.abs(g - w)))}")
            diff32 = max(diff32, float(np.max(np.abs(g.astype(np.float64) - g32))))
        # Compression really happened (differs from float32) and stayed within
        # float16's rounding (relative 2**-11 per rounding, three roundings).
        expect(diff32 > 0, f"{case}: identical to the float32 path: nothing was compressed")
        scale = max(float(np.max(np.abs(g))) for g in ref32["grads"])
        expect(diff32 <= 4 * 2.0 ** -11 * scale, f"{case}: {diff32} from float32, beyond float16 rounding")
        same_on_every_rank(res.grads, case)
        if bucket_bytes is not None and bucket_bytes < 1000:
            expect(len(range(0, 1217, bucket_bytes // 4)) > 1, f"{case}: expected several buckets")
        if rank == 0:
            say(f"OK {case} max_diff_from_float32={diff32:.3g}")

# -- the sharded reduce-scatter (ZeRO-1) ------------------------------------
sync = Zero1(comm, [Variable(np.ones(v.shape, np.float32), name=v.name) for v in variables],
                           scalar_names=("loss_sum", "correct"), compression="float16")
plain = Zero1(comm, [Variable(np.ones(v.shape, np.float32), name=v.name) for v in variables],
                            scalar_names=("loss_sum", "correct"))
res32 = reduce_arrays(plain, mine, counts[rank], scalars=scalars, regularization_grads=reg, global_count=total)
res = reduce_arrays(sync, mine, counts[rank], scalars=scalars, regularization_grads=reg, global_count=total)
case = "sharded"
expect(res.is_finite, f"{case}: not finite")
expect(res.scalars == res32.scalars and res.global_count == total, f"{case}: scalars {res.scalars} != {res32.scalars}")
sums = f16_sum(True)
pieces = []
for p, g in zip(sync.pieces_info, res.grads):
    w = np.add(sums[p.index].reshape(-1)[p.start: p.stop], reg[p.index].reshape(-1)[p.start: p.stop])
    expect(np.array_equal(g.view(np.uint32), w.view(np.uint32)),
           f"{case}: piece {p.name}[{p.start}:{p.stop}] differs from the reference by {float(np.max(np.abs(g - w)))}")
    pieces.append(g.copy())
expect(sum(p.size for p in sync.pieces_info) == sync.block_range[1] - sync.block_range[0], f"{case}: pieces")
full = comm.allgather_object([(p.index, p.start, g) for p, g in zip(sync.pieces_info, pieces)])
covered = sum(g.size for part in full for _, _, g in part)
expect(covered == 1217, f"{case}: the blocks cover {covered} elements, not 1217")
if rank == 0:
    say(f"OK {case} block={sync.block_size} padded={sync.padded}")

# -- float16 overflow: non-finite on every rank, both paths -------------------
big = [np.full(v.shape, 1e5 if (rank == 0 and k == 0) else 1.0, np.float32) for k, v in enumerate(variables)]
for label, s in (("replicated", Replicated(comm, variables, compression="float16")),
                 ("replicated bucket=256", Replicated(comm, variables, bucket_bytes=256,
                                                                 compression="float16")),
                 ("sharded", Zero1(comm, [Variable(np.ones(v.shape, np.float32), name=v.name)
                                                        for v in variables], compression="float16"))):
    # 1e5 > 65504, the largest float16: inf on the wire, although finite in float32.
    r = reduce_arrays(s, big, max(counts[rank], 1), global_count=sum(max(c, 1) for c in counts), prescaled=True)
    flags = comm.allgather_object(r.is_finite)
    expect(flags == [False] * size, f"overflow {label}: is_finite on the ranks {flags}, expected all False")
    r32 = reduce_arrays(Replicated(comm, variables), big, max(counts[rank], 1),
                                                     global_count=sum(max(c, 1) for c in counts), prescaled=True)
    expect(r32.is_finite, "overflow: the float32 path must be finite for this test to mean anything")
    if rank == 0:
        say(f"OK overflow {label}")

# A sum that overflows only after the reduction: 6e4 on every rank (finite
# in float16) sums beyond 65504; the replicated result is rounded to
# float16, so inf; the sharded block keeps the float32 sum, finite.
near = [np.full(v.shape, 6e4, np.float32) for v in variables]
r = reduce_arrays(Replicated(comm, variables, compression="float16"), near, 1, global_count=size, prescaled=True)
expect(comm.allgather_object(r.is_finite) == [False] * size, "sum overflow: replicated must be non-finite")
r = reduce_arrays(Zero1(comm, [Variable(np.ones(v.shape, np.float32), name=v.name) for v in variables],
                        compression="float16"), near, 1, global_count=size, prescaled=True)
expect(comm.allgather_object(r.is_finite) == [True] * size, "sum overflow: the sharded float32 block is finite")
expect(all(float(np.max(g)) == 6e4 * size for g in r.grads if g.size), "sum overflow: sharded block value")
if rank == 0:
    say("OK sum overflow")
say(f"DONE {rank}")
