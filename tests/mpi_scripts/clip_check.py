"""Clipping by norm and by global norm under every strategy, against replicated, on real ranks.

usage: clip_check.py    (under mpiexec -n 2 or -n 3)

Trains the same net with the same clipping under ``replicated``, ``zero1``
(MPI messages and shared memory) and ``hierarchical`` and compares every
final parameter, optimizer slot and EMA shadow with the replicated run:

* ``aligned``: one bias-free dense kernel per rank, each of one block's size,
  so no variable is cut by a block boundary: each rank's sums of squares are
  those of whole variables, and the global norm is summed over variables in
  the same order as replicated's.  On 2 ranks (where the reduction of two
  terms is the same whichever collective sums them) the results must be the
  same bits; on 3 the collectives may associate the three ranks' terms
  differently (an ulp, as without clipping), so float rounding;
* ``general``: a net whose variables the blocks cut, so a cut variable's sum of
  squares is the sum of two partial dot products instead of one: float rounding.

Each case also checks that clipping was active (the unclipped run differs by
far more than the tolerance).  Prints ``OK <case>`` on rank 0 and ``DONE <rank>``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from _common import expect, say  # noqa: E402

import distnet  # noqa: E402
from distnet import layers  # noqa: E402
from distnet.model import regularizers
from distnet.data import ArrayDataset  # noqa: E402
from distnet.distributed import get_communicator, install_abort_hook  # noqa: E402
from distnet.training.trainer import Trainer  # noqa: E402

comm = get_communicator("auto")
install_abort_hook(comm)
size = comm.size


def data(classes: int) -> ArrayDataset:
    rng = np.random.default_rng(5)
    x = rng.random((48, 4, 4, 1), dtype=np.float32)
    return ArrayDataset(x, (x.reshape(48, -1).sum(axis=1) * 7).astype(np.int64) % classes, num_classes=classes)


def model(kind: str):
    if kind == "aligned":   # size kernels of 16 x 16 = 256 elements: one block each
        return distnet.Sequential([layers.Flatten()] + [layers.Dense(16, use_bias=False) for _ in range(size)],
                                  input_shape=(4, 4, 1), seed=2), 16
    return distnet.Sequential([layers.Flatten(), layers.Dense(7, activation="tanh",
                                                              kernel_regularizer=regularizers.l2(0.01)),
                               layers.Dropout(0.2), layers.Dense(5)], input_shape=(4, 4, 1), seed=2), 5


def train(kind: str, strategy: str, clip: dict, **options) -> dict:
    net, classes = model(kind)
    t = Trainer(net, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.05, **clip), data(classes),
                global_batch_size=12, steps=6, micro_batches=2, seed=1, weight_decay=0.001,
                ema=distnet.ExponentialMovingAverage(0.9), comm=comm, check_every=None, strategy=strategy,
                **options)
    if kind == "aligned" and strategy != "replicated":
        sizes = [p.size for p in t.strategy.pieces_info]
        expect(len(sizes) == 1 and sizes[0] == 256, f"aligned layout: pieces {sizes} on rank {comm.rank}")
    t.fit(verbose=0)
    state = t.state()
    out = {f"p:{k}": np.array(v) for k, v in state.params.items()}
    out.update({f"e:{k}": np.array(v) for k, v in state.ema.items()})
    for slot, table in state.optimizer["slots"].items():
        out.update({f"s:{slot}:{k}": np.array(v) for k, v in table.items()})
    t.close()
    return out


def max_diff(a: dict, b: dict) -> float:
    expect(sorted(a) == sorted(b), f"state keys {sorted(a)} != {sorted(b)}")
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


TOL = 2e-6   # float32 rounding carried through 6 Adam steps of weights of size ~1
for kind in ("aligned", "general"):
    for clip in ({"global_clipnorm": 0.05}, {"clipnorm": 0.05}, {"clipnorm": 0.2, "global_clipnorm": 0.05}):
        ref = train(kind, "replicated", clip)
        active = max_diff(ref, train(kind, "replicated", {}))
        expect(active > 100 * TOL, f"{kind} {clip}: clipping changed nothing ({active})")
        for strategy, options in (("zero1", {}), ("zero1", {"shared_memory": True}), ("hierarchical", {})):
            got = train(kind, strategy, clip, **options)
            case = f"{kind} {sorted(clip.items())} {strategy} {options}"
            if kind == "aligned" and size == 2:
                same = all(np.array_equal(got[k].view(np.uint32), ref[k].view(np.uint32)) for k in ref)
                expect(same, f"{case}: not bitwise equal to replicated (max diff {max_diff(got, ref)})")
            diff = max_diff(got, ref)
            expect(diff <= TOL, f"{case}: differs from replicated by {diff}")
            if comm.rank == 0:
                say(f"OK {case} max_diff={diff:.3g} clipping_effect={active:.3g}")
say(f"DONE {comm.rank}")
