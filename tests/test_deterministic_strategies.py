"""Deterministic mode under every strategy: N workers, and a resume on another N, equal 1 worker bit for bit.

tests/mpi_scripts/deterministic_strategies.py trains a conv net with dropout, an L2
regularizer, Adam with per-variable and global-norm clipping, an EMA and periodic
evaluation (with and without the EMA), under several strategies in one launch.  Every
array of the final checkpoint state (weights, Adam slots, EMA shadows), every logged
step loss and every evaluation number must have the bits of one plain process.
"""
from __future__ import annotations

import numpy as np
import pytest
from mpi_util import run_script

SCRIPT = "deterministic_strategies.py"
# one machine: hierarchical is ZeRO-1 through shared memory plus its cross-machine step (here a no-op)
STRATEGIES = "replicated,zero1,zero1shm,hierarchical"


def _differ(one: dict, got: dict, keys=None) -> list:
    out = []
    for k in keys if keys is not None else got:
        what = k.split(":", 1)[1]
        ref = one[f"replicated:{what}"]
        if ref.shape != got[k].shape or ref.tobytes() != got[k].tobytes():
            out.append(k)
    return out


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    got = run_script(SCRIPT, tmp_path_factory.mktemp("det"), "one")
    assert len(got["replicated:losses"]) == 10 and np.all(np.isfinite(got["replicated:losses"]))
    # weights, two Adam slots and EMA shadows of 6 variables; 3 evaluations x (loss, accuracy) x (plain, EMA)
    assert sum(k.startswith("replicated:param/") for k in got) == 6
    assert sum(k.startswith("replicated:slot/") for k in got) == 12
    assert sum(k.startswith("replicated:ema/") for k in got) == 6
    assert got["replicated:evals"].shape == (12,)
    return got


@pytest.mark.mpi
def test_2_to_6_workers_under_every_strategy_equal_1_worker_bitwise(one, tmp_path):
    # 14 samples per step in 5 pieces of 3 (the last of 2): uneven on 2, 3, 4; ranks without
    # pieces on 6; a partial last batch of 8 samples.  On 3 ranks micro_batches=3 is given
    # too: pieces replace micro-batches, so it changes nothing.
    for n in (2, 3, 4, 5, 6):
        extra = ("--micro", 3) if n == 3 else ()
        got = run_script(SCRIPT, tmp_path, f"n{n}", "--strategies", STRATEGIES, *extra, nprocs=n, timeout=300)
        assert len(got) == 4 * 27, sorted(got)
        differ = _differ(one, got)
        assert not differ, f"{n} workers: differ from 1 worker: {differ}"


@pytest.mark.mpi
def test_the_comparison_sees_the_default_mode_differ(one, tmp_path):
    # The same check on the default mode's 2-worker run finds differences: the test above can fail.
    got = run_script(SCRIPT, tmp_path, "default2", "--strategies", "zero1", "--default", nprocs=2, timeout=300)
    assert _differ(one, got), "the default mode on 2 workers gave the bits of deterministic mode on 1"


@pytest.mark.mpi
@pytest.mark.parametrize("first, then", [(2, 3), (4, 1)])
def test_stopped_and_resumed_on_another_number_of_workers_equals_1_uninterrupted(one, tmp_path, first, then):
    ckpt = tmp_path / "ckpt"
    strategies = "replicated,zero1"
    run_script(SCRIPT, tmp_path, "first", "--strategies", strategies, "--ckpt", ckpt, "--steps", 5,
               nprocs=first, timeout=300)
    got = run_script(SCRIPT, tmp_path, "rest", "--strategies", strategies, "--ckpt", ckpt, "--resume",
                     nprocs=then if then > 1 else None, timeout=300)
    for s in strategies.split(","):
        # the 5 steps after the resume, the evaluations at steps 8 and 10, the final state
        assert got[f"{s}:losses"].tobytes() == one["replicated:losses"][5:].tobytes(), s
        assert got[f"{s}:evals"].tobytes() == one["replicated:evals"][4:].tobytes(), s
        keys = [k for k in got if k.startswith(f"{s}:") and k.split(":", 1)[1] not in ("losses", "evals")]
        assert len(keys) == 25
        differ = _differ(one, got, keys)
        assert not differ, f"{first} -> {then} workers: differ from 1 uninterrupted worker: {differ}"


@pytest.mark.parametrize("task", ["classes", "values"])
def test_evaluation_from_pieces_equals_the_plain_evaluation_of_one_process(task):
    # The pieces are the plain loop's batches, summed in the same order: the same bits
    # (the MPI test above checks that they are the same on 2 to 6 workers).
    import distnet
    from distnet import layers
    from distnet.model import losses
    from distnet.training.deterministic import evaluate_pieces
    from distnet.training.evaluation import Metric, evaluate

    rng = np.random.default_rng(2)
    x = rng.standard_normal((37, 3, 2)).astype(np.float32)
    labels = rng.integers(0, 4, len(x)) if task == "classes" else x[:, 0, 0] * 2
    model = distnet.Sequential([layers.Flatten(), layers.Dense(4 if task == "classes" else 1)],
                               input_shape=(3, 2, 1), seed=1)

    class Data:
        def __len__(self):
            return len(x)

        def read(self, idx):
            return x[idx], labels[idx]

    loss = losses.get("sparse_softmax_cross_entropy" if task == "classes" else "mean_squared_error",
                      class_labels=True)
    metric = Metric("accuracy" if task == "classes" else "mae")
    for batch in (1, 5, 37, 50):
        want = evaluate(model, Data(), loss, batch_size=batch, metric=metric)
        got = evaluate_pieces(model, Data(), loss, comm=None, batch_size=batch, metric=metric)
        assert got == want and got["samples"] == 37, (batch, got, want)
