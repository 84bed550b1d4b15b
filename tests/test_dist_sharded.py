"""The sharded optimizer and EMA (ZeRO-1) give the replicated path's results.

Real ``mpiexec -n 2`` and ``-n 3`` runs of tests/mpi_scripts/sharded_train.py
(1217 parameters: neither 2 nor 3 divides them, so the blocks are uneven and
cut through variables), compared with one process: parameters, EMA shadows
and optimizer slots (gathered to full arrays) within 1e-5, the same logged
loss; checkpoints resume bitwise on the same world size, across 2 -> 3
ranks, and between the sharded and the replicated path both ways.  On one
machine the sharded path goes through shared memory by default (one copy of
the weights, gradients summed from the other ranks' shared buffers); the
same runs with ``shared_memory=False`` (MPI reduce-scatter and all-gather)
give the same bits on 2 ranks.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from distnet.distributed.strategies.base import reduce_arrays
from mpi_util import run_mpi, run_script
from test_config import MINIMAL

SCRIPT = "sharded_train.py"
TOL = 1e-5  # max abs difference allowed in float32


def _single(tmp_path, name, *args) -> dict:
    return run_script(SCRIPT, tmp_path, name, *args)


def _mpi(tmp_path, n, name, *args) -> dict:
    return run_script(SCRIPT, tmp_path, name, *args, nprocs=n)


def _state(res, prefixes=("param:", "ema:", "slot:")) -> dict:
    return {k: v for k, v in res.items() if k.startswith(prefixes)}


def _max_diff(a, b, prefixes=("param:", "ema:", "slot:")) -> float:
    sa, sb = _state(a, prefixes), _state(b, prefixes)
    assert sorted(sa) == sorted(sb)
    assert sa, "nothing to compare"
    return max(float(np.max(np.abs(sa[k].astype(np.float64) - sb[k]))) for k in sa)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One process, replicated, per optimizer."""
    base = tmp_path_factory.mktemp("single")
    return {opt: _single(base, opt, "--opt", opt) for opt in ("adam", "momentum", "sgd")}


@pytest.fixture(scope="module")
def sharded2(tmp_path_factory):
    return _mpi(tmp_path_factory.mktemp("sharded2"), 2, "adam", "--shard")


@pytest.mark.mpi
def test_sharded_adam_on_2_ranks_equals_one_process_and_replicated(single, sharded2, tmp_path):
    ref = single["adam"]
    diff = _max_diff(ref, sharded2)
    print(f"sharded 2 ranks vs 1 process (Adam): max |param/EMA/slot difference| = {diff:.3g}")
    assert diff < TOL
    np.testing.assert_allclose(sharded2["losses"], ref["losses"], rtol=1e-5, atol=1e-6)
    assert int(sharded2["steps"]) == 20 and sharded2["finite"].all()
    # EMA evaluation gathers the shadows: the same loss as the replicated run's.
    np.testing.assert_allclose(sharded2["ema_eval_loss"], ref["ema_eval_loss"], rtol=1e-5)
    # The gathered slots are full arrays under every variable's name.
    assert {k for k in sharded2 if k.startswith("slot:m:")} == {k for k in ref if k.startswith("slot:m:")}
    replicated = _mpi(tmp_path, 2, "replicated")
    # Two ranks: reduce-scatter sums the same two numbers as the all-reduce.
    for k in _state(replicated):
        assert np.array_equal(replicated[k], sharded2[k]), f"{k}: sharded != replicated on 2 ranks"


@pytest.mark.mpi
def test_shared_memory_and_mpi_messages_give_the_same_bits(sharded2, tmp_path):
    assert bool(sharded2["shared"]), "2 ranks on one machine: the default goes through shared memory"
    messages = _mpi(tmp_path, 2, "messages", "--shard", "--shm", "off")
    assert not bool(messages["shared"])
    for k in _state(sharded2):
        assert np.array_equal(messages[k], sharded2[k]), f"{k}: shared memory != MPI messages on 2 ranks"
    np.testing.assert_array_equal(messages["losses"], sharded2["losses"])
    assert float(messages["ema_eval_loss"]) == float(sharded2["ema_eval_loss"])


@pytest.mark.mpi
def test_mpi_messages_on_3_ranks_and_a_resume_across_the_two_ways(single, tmp_path):
    res = _mpi(tmp_path, 3, "messages3", "--shard", "--shm", "off")
    assert not bool(res["shared"])
    assert _max_diff(single["adam"], res) < TOL
    # Written through shared memory, resumed with messages (and the other way): same bits.
    ckpt_a, ckpt_b = tmp_path / "a", tmp_path / "b"
    _mpi(tmp_path, 2, "shm-first", "--shard", "--shm", "on", "--ckpt", ckpt_a, "--stop-at", 9)
    _mpi(tmp_path, 2, "msg-first", "--shard", "--shm", "off", "--ckpt", ckpt_b, "--stop-at", 9)
    a = _mpi(tmp_path, 2, "msg-resumed", "--shard", "--shm", "off", "--ckpt", ckpt_a, "--resume")
    b = _mpi(tmp_path, 2, "shm-resumed", "--shard", "--shm", "on", "--ckpt", ckpt_b, "--resume")
    assert bool(b["shared"]) and not bool(a["shared"])
    for k in _state(a):
        assert np.array_equal(a[k], b[k]), f"{k}: resumed runs differ"


@pytest.mark.mpi
def test_shared_memory_with_evaluation_micro_batches_and_close(tmp_path):
    """EMA evaluation every 2 steps (the weights swapped in and out of the shared
    buffer between barriers), 2 micro-batches, then close(): the same bits as
    the message path, and after close() the same evaluation from private weights."""
    args = ("--shard", "--eval-every", 2, "--micro-batches", 2, "--close")
    shm = _mpi(tmp_path, 2, "shm-eval", *args, "--shm", "on")
    msg = _mpi(tmp_path, 2, "msg-eval", *args, "--shm", "off")
    assert bool(shm["shared"]) and not bool(msg["shared"])
    for k in _state(shm):
        assert np.array_equal(shm[k], msg[k]), k
    np.testing.assert_array_equal(shm["losses"], msg["losses"])
    three = _mpi(tmp_path, 3, "shm-eval3", *args, "--shm", "on")
    assert bool(three["shared"]) and _max_diff(msg, three) < TOL


@pytest.mark.mpi
@pytest.mark.parametrize("strategy", ["zero1", "replicated"])
def test_close_frees_the_shared_windows(strategy):
    import json

    run = run_mpi("shm_windows.py", 2, "close", strategy, timeout=60)
    assert run.returncode == 0, run.describe()
    res = json.loads(run.stdout.split("RESULT ", 1)[1].splitlines()[0])
    mb = 1e6
    # 5 synchronisers of 2 x 4 MB of gradient segments each (+ 4 MB of weights under ZeRO-1)
    each = 11 if strategy == "zero1" else 7
    kept = (res["free_closed"] - res["free_kept"]) / mb
    assert kept > 5 * each, f"windows that are never closed hold /dev/shm: only {kept:.1f} MB"
    assert abs(res["free0"] - res["free_closed"]) / mb < 8, res   # against 40-60 MB unfreed


@pytest.mark.mpi
@pytest.mark.parametrize("strategy, fallback, free", [("zero1", "uses MPI messages (slower)", "10.5"),
                                                      ("replicated", "all-reduces with MPI (slower)", "5.2")])
def test_a_small_dev_shm_falls_back_to_messages_or_is_refused(strategy, fallback, free):
    import json

    run = run_mpi("shm_windows.py", 2, "small", strategy, timeout=60)
    assert run.returncode == 0, run.describe()
    res = json.loads(run.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert res["auto_shared"] == [False, False]     # only rank 1 is short: both ranks agree
    assert any(fallback in w and f"{free} MB free" in w and "shm-size" in w for w in res["warnings"]), res
    for error in res["true_errors"]:                  # refused on every rank, not only the short one
        assert "shared_memory=True: Expect: " in error and "/dev/shm" in error and "shm-size" in error


@pytest.mark.mpi
def test_auto_shards_on_2_ranks(sharded2, tmp_path):
    # strategy="auto" and the Trainer's default shared_memory (False): messages
    res = _mpi(tmp_path, 2, "auto", "--auto", "--shm", "default")
    assert not bool(res["shared"])
    assert bool(res["sharded"]) and bool(sharded2["sharded"])
    for k in _state(sharded2):
        assert np.array_equal(res[k], sharded2[k]), k


@pytest.mark.mpi
@pytest.mark.parametrize("opt", ["momentum", "sgd"])
def test_sharded_momentum_and_sgd_on_2_ranks(single, tmp_path, opt):
    res = _mpi(tmp_path, 2, opt, "--shard", "--opt", opt)
    diff = _max_diff(single[opt], res)
    print(f"sharded 2 ranks vs 1 process ({opt}): max difference = {diff:.3g}")
    assert diff < TOL
    np.testing.assert_allclose(res["losses"], single[opt]["losses"], rtol=1e-5, atol=1e-6)


@pytest.mark.mpi
def test_sharded_on_3_ranks_uneven_blocks(single, tmp_path):
    res = _mpi(tmp_path, 3, "adam3", "--shard")
    diff = _max_diff(single["adam"], res)
    print(f"sharded 3 ranks vs 1 process (Adam): max difference = {diff:.3g}")
    assert diff < TOL
    np.testing.assert_allclose(res["losses"], single["adam"]["losses"], rtol=1e-5, atol=1e-6)


@pytest.mark.mpi
def test_sharded_resume_same_world_size_is_bitwise(sharded2, tmp_path):
    ckpt = tmp_path / "ckpt"
    _mpi(tmp_path, 2, "first", "--shard", "--ckpt", ckpt, "--stop-at", 9)
    resumed = _mpi(tmp_path, 2, "resumed", "--shard", "--ckpt", ckpt, "--resume")
    for k in _state(sharded2):
        assert np.array_equal(sharded2[k], resumed[k]), f"{k} differs after a sharded resume"


@pytest.mark.mpi
def test_sharded_resume_on_3_ranks(single, tmp_path):
    ckpt = tmp_path / "ckpt"
    _mpi(tmp_path, 2, "first", "--shard", "--ckpt", ckpt, "--stop-at", 9)
    resumed = _mpi(tmp_path, 3, "resumed3", "--shard", "--ckpt", ckpt, "--resume")
    diff = _max_diff(single["adam"], resumed)
    print(f"sharded 2 -> 3 ranks resume: max difference vs uninterrupted = {diff:.3g}")
    assert diff < TOL


@pytest.mark.mpi
def test_checkpoints_cross_between_sharded_and_replicated(single, tmp_path):
    # written sharded on 2 ranks, resumed replicated in one process
    a = tmp_path / "a"
    _mpi(tmp_path, 2, "a1", "--shard", "--ckpt", a, "--stop-at", 9)
    ra = _single(tmp_path, "a2", "--ckpt", a, "--resume")
    # written replicated in one process, resumed sharded on 3 ranks
    b = tmp_path / "b"
    _single(tmp_path, "b1", "--ckpt", b, "--stop-at", 9)
    rb = _mpi(tmp_path, 3, "b2", "--shard", "--ckpt", b, "--resume")
    for name, res in (("sharded -> replicated", ra), ("replicated -> sharded", rb)):
        diff = _max_diff(single["adam"], res)
        print(f"{name}: max difference vs uninterrupted = {diff:.3g}")
        assert diff < TOL, name


@pytest.mark.mpi
def test_one_nan_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    """Rank 0 plants a NaN in the last element of the last variable, which
    rank 1's block holds: the reduce-scatter carries it there, and the
    non-finite flag in the small all-reduce makes both ranks skip the step."""
    res = _mpi(tmp_path, 2, "nan", "--shard", "--nan-at", 3)
    finite = res["finite"]
    assert finite.size == 21 and int((~finite).sum()) == 1 and not finite[3]
    assert int(res["steps"]) == 20
    assert all(np.isfinite(v).all() for v in _state(res).values())


@pytest.mark.mpi
def test_ranks_holding_no_parameters(tmp_path):
    """8 parameters on 3 ranks: blocks of 16 elements, so ranks 1 and 2 hold
    nothing; they still take every step, write and resume checkpoints."""
    ref = _single(tmp_path, "tiny1", "--tiny")
    ckpt = tmp_path / "ckpt"
    _mpi(tmp_path, 3, "tiny3a", "--tiny", "--shard", "--ckpt", ckpt, "--stop-at", 9)
    res = _mpi(tmp_path, 3, "tiny3", "--tiny", "--shard", "--ckpt", ckpt, "--resume")
    assert sorted(k for k in res if k.startswith("param:")) == ["param:dense/bias", "param:dense/kernel"]
    assert _max_diff(ref, res) < TOL
    np.testing.assert_allclose(res["losses"], ref["losses"][9:], rtol=1e-5, atol=1e-6)


# -- in one process -----------------------------------------------------------
def test_sharded_in_one_process_is_bitwise_replicated(single, tmp_path):
    res = _single(tmp_path, "shard1", "--shard")
    for k in _state(single["adam"]):
        assert np.array_equal(single["adam"][k], res[k]), k


def _tiny_trainer(**kwargs):
    import distnet
    from distnet import layers
    from distnet.data import ArrayDataset
    from distnet.training.trainer import Trainer

    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.random((8, 2, 2, 1), dtype=np.float32), rng.integers(0, 2, 8), num_classes=2)
    model = distnet.Sequential([layers.Flatten(), layers.Dense(2)], input_shape=(2, 2, 1), seed=0)
    opt = kwargs.pop("optimizer", None) or distnet.optimizers.Adam(0.1)
    return Trainer(model, "sparse_softmax_cross_entropy", opt, data, global_batch_size=4, steps=2,
                   comm=distnet.distributed.SingleCommunicator(), **kwargs)


def test_sharded_rejects_what_it_cannot_do():
    from distnet.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="bucket_bytes"):
        _tiny_trainer(strategy="zero1", bucket_bytes=1 << 20)
    with pytest.raises(InvalidArgumentError, match="strategy: Expect: 'auto' or one of .* Actual: 'yes'"):
        _tiny_trainer(strategy="yes")


def test_shared_memory_is_refused_where_it_cannot_be():
    from distnet.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="shared_memory=True: Expect: an MPI job of 2 or more ranks "
                                                   "on one machine Actual: 1 rank"):
        _tiny_trainer(strategy="zero1", shared_memory=True)
    with pytest.raises(InvalidArgumentError, match="shared_memory=True: Expect: an MPI job of 2 ranks on one machine "
                                                   "Actual: 1 rank"):
        _tiny_trainer(strategy="replicated", shared_memory=True)
    for bad in ("yes", 1, None):
        with pytest.raises(InvalidArgumentError, match="shared_memory: Expect: 'auto', True or False"):
            _tiny_trainer(strategy="zero1", shared_memory=bad)
    assert _tiny_trainer(strategy="zero1").strategy.shared is False        # auto, one process


def test_shared_memory_with_compression_is_refused_or_left_off(monkeypatch):
    """On one machine (faked here: one_machine says yes), float16 compression
    keeps the message path: auto leaves shared memory off, True is an error."""
    import distnet
    from distnet.distributed import shared_memory
    from distnet.distributed.strategies.zero1 import Zero1
    from distnet.errors import InvalidArgumentError

    monkeypatch.setattr(shared_memory, "one_machine", lambda comm: True)
    variables = [distnet.Variable(np.zeros(3), name="v", dtype="float32")]
    comm = distnet.distributed.SingleCommunicator()
    assert Zero1(comm, variables, compression="float16").shared is False
    with pytest.raises(InvalidArgumentError, match="shared_memory=True with compression: Expect: one of them"):
        Zero1(comm, variables, compression="float16", shared_memory=True)
    assert _tiny_trainer(strategy="zero1", shared_memory=False).strategy.shared is False


def test_close_in_one_process_replicated_or_sharded_twice_and_as_a_context():
    from distnet.errors import InvalidArgumentError

    for kwargs in ({}, {"strategy": "zero1"}):
        with _tiny_trainer(**kwargs) as trainer:
            trainer.fit()
            before = [v.numpy().copy() for v in trainer.variables]
        assert trainer._closed                                   # closed on leaving the block
        trainer.close()                                          # twice: nothing more to do
        assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, trainer.variables))
        assert trainer.evaluate(trainer.train_data)["samples"] == 8   # still evaluates
        with pytest.raises(InvalidArgumentError, match="close\\(\\) was called"):
            trainer.train_step(trainer.sampler.next())
    with pytest.raises(ZeroDivisionError):
        with _tiny_trainer() as trainer:
            raise ZeroDivisionError
    assert not trainer._closed   # not after an exception (it may be one rank's alone)


def test_auto_is_replicated_on_one_rank():
    assert _tiny_trainer().strategy.name == "replicated"
    assert _tiny_trainer(strategy="auto").strategy.name == "replicated"
    assert _tiny_trainer(strategy="zero1").strategy.name == "zero1"


def test_pieces_share_memory_with_the_variables():
    trainer = _tiny_trainer(strategy="zero1")
    sync = trainer.strategy
    assert sum(p.data.size for p in sync.pieces) == sync.total == 4 * 2 + 2
    for v in trainer.variables:
        assert np.shares_memory(v.data, sync.params)
    before = {v.name: v.numpy().copy() for v in trainer.variables}
    trainer.fit()
    assert any(not np.array_equal(before[v.name], v.numpy()) for v in trainer.variables)
    full = sync.full_state(trainer.optimizer.state_dict()["slots"]["m"])
    assert {k: a.shape for k, a in full.items()} == {v.name: v.shape for v in trainer.variables}
    with pytest.raises(Exception, match="Expect"):
        sync.local_state({v.name: np.zeros(3) for v in trainer.variables})


def test_grad_views_are_the_padded_buffer_that_backward_writes():
    """Zero1.grad_views(): one view per variable into its own (padded)
    buffer, which the trainer's sinks fill; in one process ZeRO-1 gives the
    replicated strategy's weights bitwise."""
    trainer = _tiny_trainer(strategy="zero1")
    sync = trainer.strategy
    views = sync.grad_views()
    assert [v.shape for v in views] == [v.shape for v in trainer.variables]
    assert all(np.shares_memory(v, sync._grad_part) for v in views)
    sink = sync.gradient_sink(accumulate=False, local_count=1, scalars={})
    assert all(a is b for a, b in zip(sink.views, views))
    sync.reduce(1)   # close the step the sink opened (its views hold no gradient: zeros)
    trainer.fit()
    replicated = _tiny_trainer(strategy="replicated")
    replicated.fit()
    for a, b in zip(trainer.variables, replicated.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_finite_check_flags_nan_and_inf_but_not_huge_finite_values():
    from distnet.distributed import SingleCommunicator
    from distnet.distributed.strategies.zero1 import Zero1
    from distnet.tensor import Variable

    variables = [Variable(np.zeros((3, 50_000), np.float32), name="big"), Variable(np.zeros(3, np.float32), name="b")]
    sync = Zero1(SingleCommunicator(), variables)
    for bad in (np.nan, np.inf, -np.inf):
        grads = [np.ones(v.shape, np.float32) for v in variables]
        grads[0][1, 12_345] = bad
        assert not reduce_arrays(sync, grads, 2, global_count=2).is_finite, bad
    grads = [np.ones(v.shape, np.float32) for v in variables]
    grads[0][2, -1] = 3.0
    res = reduce_arrays(sync, grads, 2)   # 2 of 2 samples: weight 1
    assert res.is_finite
    assert [p.name for p in res.variables] == ["b", "big"]   # this rank's pieces, in layout order
    np.testing.assert_array_equal(res.grads[1], np.ravel(grads[0]))
    huge = [np.full(v.shape, 3e38, np.float32) for v in variables]   # finite; its sum of squares overflows
    assert reduce_arrays(sync, huge, 1).is_finite


# test_config's smallest job, on 30 generated samples, without checkpoints.
JOB = MINIMAL + """
[data]
train_samples = 30
test_samples = 10

[checkpoint]
dir = ""
"""


def test_job_file_option_reaches_the_trainer():
    from distnet.jobs.config import parse_job
    from distnet.errors import ConfigError
    from distnet.jobs.job import build_trainer

    assert build_trainer(parse_job(JOB + "[dist]\nshard_optimizer = true\n")).strategy.name == "zero1"
    assert build_trainer(parse_job(JOB)).strategy.name == "replicated"
    with pytest.raises(ConfigError, match="shard_optimizer"):
        parse_job(JOB + "[dist]\nshard_optimizer = 1\n")
    with pytest.raises(ConfigError, match="bucket_bytes"):
        build_trainer(parse_job(JOB + "[dist]\nshard_optimizer = true\nbucket_bytes = 4096\n"))


FAULTS = """
import resource, sys
import numpy as np
sys.path.insert(0, {tests!r})
from distnet.distributed.process import tune_malloc
assert ({tuning} and tune_malloc()) is {tuning}
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):   # like a step: a few 12 MB arrays alive at once, then all freed
    arrays = [np.ones(3_000_000, np.float32) for _ in range(3)]
    del arrays
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_malloc_tuning_reuses_freed_large_blocks():
    """Three 12 MB arrays alive at once, then freed, 20 times: by default
    glibc returns the freed top of the heap (above its trim threshold) or
    the mmapped blocks to the system and faults every page in again; tuned,
    the heap keeps them."""
    import os

    tests = os.path.dirname(__file__)
    faults = {}
    for tuning in (True, False):
        proc = subprocess.run([sys.executable, "-c", FAULTS.format(tests=tests, tuning=tuning)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        faults[tuning] = int(proc.stdout.split()[-1])
    print(f"minor page faults for 20 x 3 x 12 MB: tuned {faults[True]}, default {faults[False]}")
    assert 5 * faults[True] < faults[False]   # 20 x 3 x 2930 pages if all were faulted in again


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_job_files_shard_the_optimizer_by_default_on_several_ranks_where_they_can(ranks):
    run = run_mpi("job_defaults.py", ranks, timeout=60)
    assert run.returncode == 0, run.describe()
    got = dict(line.split(" ", 2)[1:] for line in run.stdout.splitlines() if line.startswith("OPTIONS "))
    eight = 8 << 20   # the replicated path's default buckets on several ranks (distnet/training/trainer.py)
    # On one machine through shared memory unless told not to or compressing: ZeRO-1 on any
    # number of ranks; replicated's shared sum on 2 (also with buckets: it does not use them),
    # never with overlap; on 3 ranks replicated falls back to the all-reduce.
    two = ranks == 2
    assert got == {"unset": "shard=True overlap=False buckets=None shm=True",
                   "off": f"shard=False overlap=False buckets={eight} shm={two}",
                   "buckets": f"shard=False overlap=False buckets=4096 shm={two}",
                   "overlap": f"shard=False overlap=True buckets={eight} shm=False",
                   "clip": "shard=True overlap=False buckets=None shm=True",   # clipping runs sharded too
                   "f16": "shard=False overlap=False buckets=None shm=False",
                   "noshm": "shard=True overlap=False buckets=None shm=False",
                   "replnoshm": f"shard=False overlap=False buckets={eight} shm=False",
                   "shard-f16": "shard=True overlap=False buckets=None shm=False"}, run.describe()
