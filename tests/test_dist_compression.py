"""float16 gradient compression (distnet/distributed/compression.py).

Under real ``mpiexec -n 2`` and ``-n 3``: the compressed sync equals, bitwise
(tolerance 0: the reference does the same float operations in the same
order), a numpy reference built from the same per-rank gradients rounded to
float16 and summed in float32 in rank order, on the replicated path with
and without buckets and on the sharded reduce-scatter, with uneven shards
(a rank with no samples) and blocks that 2 and 3 do not divide; every rank
holds the same bits; the count and the scalars equal the float32 path's;
float16 overflow skips the step on every rank.  Through ``Trainer`` and a
job file.  In process: one rank is a no-op, bad values are refused.
"""
from __future__ import annotations

import numpy as np
import pytest

import distnet
from distnet import layers
from distnet.jobs.config import parse_job
from distnet.data import ArrayDataset
from distnet.distributed import Replicated, SingleCommunicator
from distnet.distributed.compression import COMPRESSIONS, Float16Compressor, check_compression, make_compressor
from distnet.distributed.strategies.zero1 import Zero1
from distnet.errors import ConfigError, DistributedError, InvalidArgumentError
from distnet.tensor import Variable
from distnet.training.trainer import Trainer
from mpi_util import run_mpi

TRAIN = "compression_train.py"


# -- the collective against the numpy reference, real ranks ----------------------

@pytest.mark.parametrize("counts", [("3", "8"), ("4", "0", "7")], ids=["n2", "n3-empty-rank"])
def test_compressed_sync_equals_the_float16_reference(counts):
    run = run_mpi("compression_check.py", len(counts), *counts, timeout=90)
    assert run.returncode == 0, run.describe()
    ok = run.values("OK")
    assert sum(v.startswith("replicated") for v in ok) == 8, run.describe()
    assert any(v.startswith("sharded") for v in ok) and "sum overflow" in ok, run.describe()
    assert sum(v.startswith("overflow") for v in ok) == 3, run.describe()
    assert sorted(run.values("DONE")) == [str(r) for r in range(len(counts))]


# -- through the trainer, real ranks -----------------------------------------------

def _train(tmp_path, n, name, *args):
    out = tmp_path / f"{name}.npz"
    run = run_mpi(TRAIN, n, str(out), *args, timeout=120)
    assert run.returncode == 0, run.describe()
    digests = {line.split()[1]: line.split()[3] for line in run.stdout.splitlines() if line.startswith("rank ")}
    assert len(digests) == n, run.describe()
    # Every rank holds the same parameters, bit for bit.
    assert len(set(digests.values())) == 1, run.describe()
    return dict(np.load(out))


def _params(res) -> dict:
    return {k: v for k, v in res.items() if k.startswith("param:")}


def _max_diff(a, b) -> float:
    pa, pb = _params(a), _params(b)
    assert sorted(pa) == sorted(pb) and pa
    return max(float(np.max(np.abs(pa[k].astype(np.float64) - pb[k]))) for k in pa)


@pytest.mark.parametrize("n, shard", [(2, False), (3, True)], ids=["n2-replicated", "n3-sharded"])
def test_trainer_with_compression_stays_close_to_float32(tmp_path, n, shard):
    extra = ("--shard",) if shard else ()
    f16 = _train(tmp_path, n, "f16", "--compression", "float16", *extra)
    f32 = _train(tmp_path, n, "f32", "--compression", "none", *extra)
    assert int(f16["steps"]) == int(f32["steps"]) == 12 and f16["finite"].all()
    diff = _max_diff(f16, f32)
    # Compression happened (not bitwise the float32 run) and its effect is
    # rounding-sized: Adam's update does not depend on the gradient's scale,
    # so a relative rounding of ~1e-3 moves each of the 12 updates (lr <= 0.01)
    # by ~1e-5; a lost or doubled rank contribution moves them by ~lr.
    assert 0 < diff < 5e-3, diff


def test_buckets_do_not_change_the_compressed_result(tmp_path):
    # Rounding is element-wise and the sum is in rank order whatever the
    # bucket: bitwise the same parameters with 3 buckets or one buffer.
    one = _train(tmp_path, 2, "one", "--compression", "float16")
    bucketed = _train(tmp_path, 2, "bucketed", "--compression", "float16", "--bucket", "2000")
    assert _max_diff(one, bucketed) == 0.0


@pytest.mark.parametrize("n, shard", [(2, False), (2, True), (3, False)],
                         ids=["n2-replicated", "n2-sharded", "n3-replicated"])
def test_float16_overflow_skips_the_step_on_every_rank(tmp_path, n, shard):
    extra = ("--shard",) if shard else ()
    f16 = _train(tmp_path, n, "f16", "--blowup-at", "3", *extra)
    # One step skipped (step 3, never applied), then training goes on to the end.
    assert f16["finite"].tolist() == [True] * 3 + [False] + [True] * 9
    assert int(f16["steps"]) == 12
    # The same gradient is finite in float32: the float32 run takes every step.
    f32 = _train(tmp_path, n, "f32", "--blowup-at", "3", "--compression", "none", *extra)
    assert f32["finite"].all() and len(f32["finite"]) == 12


@pytest.mark.parametrize("compression", ["float16", "none"])
def test_the_option_through_a_job_file_on_two_ranks(tmp_path, compression):
    res = _train(tmp_path, 2, "job", "--job", "--compression", compression)
    assert int(res["steps"]) == 6 and res["finite"].all()


# -- one process ---------------------------------------------------------------

def _blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.standard_normal((n, 2)) * 0.3 + np.eye(3, 2)[y]).astype(np.float32)
    return ArrayDataset(x.reshape(n, 1, 1, 2).clip(0, 1), y.astype(np.int64), num_classes=3)


def _fit(**kw) -> dict:
    model = distnet.Sequential([layers.Flatten(), layers.Dense(5, activation="tanh"), layers.Dense(3)],
                               input_shape=(1, 1, 2), seed=1)
    trainer = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.05), _blobs(),
                      global_batch_size=20, steps=6, comm=SingleCommunicator(), log_every=1000, **kw)
    trainer.fit()
    assert trainer.strategy.compressor is None
    return {v.name: v.numpy() for v in trainer.all_variables}


@pytest.mark.parametrize("shard", [False, True])
def test_one_rank_is_a_no_op(shard):
    # Nothing goes on the wire with one rank, so nothing is rounded: bitwise
    # the uncompressed run (DDP and Horovod users expect no change on one process).
    strategy = "zero1" if shard else "replicated"
    plain = _fit(strategy=strategy)
    compressed = _fit(strategy=strategy, compression="float16")
    assert all(np.array_equal(plain[k], compressed[k]) for k in plain)
    rounded = {k: v.astype(np.float16).astype(np.float32) for k, v in plain.items()}
    assert any(not np.array_equal(plain[k], rounded[k]) for k in plain), "the test needs values float16 changes"


def test_make_compressor_and_check_compression():
    comm = SingleCommunicator()
    assert COMPRESSIONS == ("none", "float16")
    assert check_compression("float16") == "float16"
    assert make_compressor("none", comm) is None and make_compressor("float16", comm) is None
    v = [Variable(np.zeros(3, np.float32), name="w")]
    assert Replicated(comm, v, compression="float16").compression == "float16"
    assert Zero1(comm, v, compression="float16").compressor is None
    # The collective itself needs MPI's Alltoall/Allgather.
    with pytest.raises(DistributedError, match="Expect: a communicator of 2 or more ranks"):
        Float16Compressor(comm)


@pytest.mark.parametrize("bad", ["fp16", "Float16", "", None, 16, "bfloat16"])
def test_bad_values_are_refused_by_name(bad):
    v = [Variable(np.zeros(3, np.float32), name="w")]
    with pytest.raises(InvalidArgumentError, match=r"compression: Expect: one of 'none', 'float16' Actual: "):
        Replicated(SingleCommunicator(), v, compression=bad)
    with pytest.raises(InvalidArgumentError, match=r"compression: Expect: one of 'none', 'float16'"):
        _fit(compression=bad)


def test_job_file_key_and_override():
    assert parse_job("").dist.strategy == "auto"
    cfg = parse_job('[dist]\nstrategy = {type = "auto", compression = "float16"}\n', "job.toml")
    assert cfg.dist.strategy == {"type": "auto", "compression": "float16"}
    assert parse_job(cfg.to_toml(), "again.toml").dist.strategy == cfg.dist.strategy
    assert parse_job("", overrides=["dist.strategy.compression=float16"]).dist.strategy["compression"] == "float16"
    assert parse_job('[dist.strategy]\ncompression = "float16"\n',
                     overrides=["dist.strategy.compression=none"]).dist.strategy["compression"] == "none"
    with pytest.warns(FutureWarning, match=r"dist.compression is deprecated") as seen:
        assert parse_job('[dist]\ncompression = "float16"\n', "job.toml").dist.strategy == cfg.dist.strategy
    assert (seen[0].filename, seen[0].lineno) == ("job.toml", 2)   # where the old key was written
    with pytest.raises(ConfigError, match=r"job.toml:2: dist.strategy.compression: unknown value 'fp16'.*float16"):
        parse_job('[dist.strategy]\ncompression = "fp16"\n', "job.toml")
    with pytest.raises(ConfigError, match=r"dist.strategy.compression: unknown value 'float17'; "
                                          r"did you mean 'float16'"):
        parse_job("", overrides=["dist.strategy.compression=float17"])
    with pytest.raises(ConfigError, match=r"dist.strategy.compression: Expect: a string"):
        parse_job("[dist]\nstrategy = {compression = 16}\n", "job.toml")


def test_job_file_reaches_the_trainer_on_one_rank():
    from distnet.jobs.job import build_trainer

    cfg = parse_job('[[model.layers]]\ntype = "flatten"\n\n[[model.layers]]\ntype = "dense"\nunits = 3\n\n'
                    '[train]\nbatch_size = 20\nsteps = 2\n\n[checkpoint]\ndir = ""\n', "job.toml",
                    overrides=["dist.strategy.compression=float16"])
    trainer = build_trainer(cfg, comm=SingleCommunicator(), data=(_blobs(), _blobs(20, 1)))
    assert trainer.strategy.compression == "float16" and trainer.strategy.compressor is None


# -- the float16 conversions against numpy's cast, in process ---------------------

def _codec():
    import types

    # The conversions need no communication: a stand-in for a communicator of 2 ranks.
    return Float16Compressor(types.SimpleNamespace(rank=0, size=2))


def test_encode_is_bitwise_numpys_cast_but_nan_payloads():
    codec = _codec()
    every_half = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    finite = every_half[np.isfinite(every_half)]
    ordered = np.unique(finite)
    mid = ((ordered[:-1].astype(np.float64) + ordered[1:]) / 2).astype(np.float32)   # the ties, every binade
    rng = np.random.default_rng(5)
    x = np.concatenate([
        every_half, mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf)),
        rng.integers(0, 1 << 32, 300_000, dtype=np.uint64).astype(np.uint32).view(np.float32),  # NaN payloads too
        (rng.standard_normal(100_000) * 10.0 ** rng.uniform(-12, 6, 100_000)).astype(np.float32),
        np.array([65504, 65519.99, 65520, 1e6, -7e4, 2.0 ** -24, 2.0 ** -25, -2.0 ** -25, 1e-45, -1e-45,
                  2.0 ** -14 * (1 - 2.0 ** -12), np.inf, -np.inf, np.nan, -0.0], np.float32),
        np.full(40_000, 0.5, np.float32),      # whole chunks without subnormals take numpy's cast,
        rng.standard_normal(50_000).astype(np.float32) * np.float32(0.01),   # and those with a few
    ])
    assert (np.abs(x) < 2.0 ** -14).mean() > 0.1    # the subnormal path is exercised
    got = np.empty(x.size, np.float16)
    codec._encode(x, got)
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(np.float16)
    nan = np.isnan(x)
    assert np.isnan(got[nan]).all() and nan.sum() > 100
    # Bitwise for every value but NaN (whose payload a multiply may quiet).
    assert np.array_equal(got[~nan].view(np.uint16), want[~nan].view(np.uint16))


def test_decode_is_bitwise_numpys_cast():
    codec = _codec()
    bits = np.arange(1 << 16, dtype=np.uint16)
    got = np.empty(bits.size, np.float32)
    codec._decode(bits.view(np.float16), got)
    assert np.array_equal(got.view(np.uint32), bits.view(np.float16).astype(np.float32).view(np.uint32))
    # The blocks' sum decodes by the same table, in rank order.
    recv = np.random.default_rng(1).standard_normal(2 * 40_000).astype(np.float16)
    out = np.empty(40_000, np.float32)
    codec._sum_blocks(recv, 40_000, out)
    assert np.array_equal(out, recv[:40_000].astype(np.float32) + recv[40_000:].astype(np.float32))


def test_distnet_train_takes_the_override(capsys, tmp_path):
    from distnet.runner import exit_status
    from distnet.jobs.cli import main

    job = tmp_path / "job.toml"
    job.write_text('[[model.layers]]\ntype = "flatten"\n\n[[model.layers]]\ntype = "dense"\nunits = 10\n\n'
                   '[data]\nname = "fashion_mnist"\ntrain_samples = 200\ntest_samples = 50\n\n'
                   '[train]\nbatch_size = 50\nsteps = 2\n')
    run_dir = tmp_path / "run"
    assert main(["train", str(job), "--set", "dist.strategy.compression=float16", "--run-dir", str(run_dir),
                 "--progress", "none"]) == exit_status.OK
    assert parse_job((run_dir / "job.toml").read_text()).dist.strategy["compression"] == "float16"
    capsys.readouterr()
    assert main(["train", str(job), "--set", "dist.strategy.compression=half", "--run-dir", str(tmp_path / "bad"),
                 "--progress", "none"]) == exit_status.BAD_INPUT
    err = capsys.readouterr().err
    assert "dist.strategy.compression: unknown value 'half'" in err and "float16" in err
