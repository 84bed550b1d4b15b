"""Replicated's ``shared_memory`` against its MPI all-reduce, on 2 real ranks.

Both strategies reduce the same gradients (random, with special values:
±0, subnormals, huge values whose sum overflows, and in some cases inf or NaN
on one rank): the reduced buffers must be the same bits (NaN as NaN) and the
finite decision the same, with and without regularization gradients, for a
buffer smaller than one chunk and one of several chunks; then a Trainer with
``shared_memory=True`` trains to the same weights as one without.  Prints
``OK <case>`` and ``DONE <rank>``.
"""
import numpy as np

from _common import expect, say
from distnet.distributed import Replicated, get_communicator, install_abort_hook
from distnet.distributed.strategies.base import reduce_arrays
from distnet.tensor import Variable

comm = get_communicator("auto")
install_abort_hook(comm)
rank = comm.rank
expect(comm.size == 2, f"run on 2 ranks, not {comm.size}")


def same_bits(a, b):
    return np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(
        np.where(np.isnan(a), 0, a).view(np.uint32), np.where(np.isnan(b), 0, b).view(np.uint32))


for n in (37, 200_001):
    variables = [Variable(np.zeros((n,), np.float32), name="b/w"), Variable(np.zeros((3, 5), np.float32), name="a/k")]
    shared = Replicated(comm, variables, scalar_names=("loss_sum",), shared_memory=True)
    plain = Replicated(comm, variables, scalar_names=("loss_sum",))
    expect(shared.shared and not plain.shared, "shared_memory=True on 2 ranks of one machine: a shared window")
    for case in ("plain", "specials", "overflow", "inf", "nan", "reg", "reg_inf"):
        rng = np.random.default_rng(100 * rank + len(case))
        grads = [rng.standard_normal(v.shape).astype(np.float32) for v in variables]
        if case != "plain":
            flat = grads[0]
            flat[:6] = [0.0, -0.0, 1e-45, -1e-44, 1e38, -1e38]   # their sums stay finite
        if case == "overflow":
            flat[-1] = 3e38   # finite on each rank, inf once summed: the exact check decides
        if case == "inf" and rank == 1:
            flat[n // 2] = np.inf
        if case == "nan" and rank == 0:
            grads[1][2, 3] = np.nan
        reg = None
        if case.startswith("reg"):
            reg = [np.full(v.shape, 0.5, np.float32) for v in variables]
            if case == "reg_inf":
                reg[1][0, 0] = np.inf
        res = [reduce_arrays(s, grads, 3, {"loss_sum": 1.5}, regularization_grads=reg, global_count=6,
                             prescaled=True) for s in (shared, plain)]
        label = f"n={n} {case}"
        expect(res[0].is_finite == res[1].is_finite, f"{label}: finite {res[0].is_finite} != {res[1].is_finite}")
        want_finite = case in ("plain", "specials", "reg")
        expect(res[0].is_finite == want_finite, f"{label}: finite {res[0].is_finite}, expected {want_finite}")
        expect(res[0].scalars == res[1].scalars and res[0].global_count == res[1].global_count, f"{label}: scalars")
        for g0, g1 in zip(res[0].grads, res[1].grads):
            expect(same_bits(g0, g1), f"{label}: the gradients differ")
        say(f"OK {label}")
    shared.close()
    expect(shared.buffer.size == 0, "closed: no view of the freed window is left")
    plain.close()

# A Trainer: the same weights with and without the shared sum.
import distnet  # noqa: E402
from distnet import layers  # noqa: E402
from distnet.data import ArrayDataset  # noqa: E402
from distnet.training.trainer import Trainer  # noqa: E402

rng = np.random.default_rng(0)
x = rng.random((64, 6), dtype=np.float32)
y = (x[:, 0] > x[:, 1]).astype(np.int64)
weights = []
for shared_memory in (False, True):
    model = distnet.Sequential([layers.Dense(8, activation="relu"), layers.Dense(2)], input_shape=(6,), seed=3)
    t = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.01), ArrayDataset(x, y, num_classes=2),
                global_batch_size=16, steps=6, seed=1, comm=comm, strategy="replicated", shared_memory=shared_memory,
                weight_decay=0.01)
    t.fit(verbose=0)
    expect(t.strategy.shared == shared_memory, f"Trainer(shared_memory={shared_memory}) strategy.shared={t.strategy.shared}")
    t.close()
    weights.append({v.name: v.numpy().copy() for v in model.trainable_variables})
expect(all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0]), "Trainer: weights differ")
say("OK trainer")
say(f"DONE {rank}")
