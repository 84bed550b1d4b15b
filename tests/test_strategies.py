"""The strategy interface: strategies are found by name, ``"auto"`` chooses
among them, and a new one is a module added to the strategies folder and
nothing else (distnet/distributed/strategies/)."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import distnet
from distnet import layers
from distnet.model import regularizers
from distnet.data import ArrayDataset
from distnet.distributed import SingleCommunicator, all_strategies
from distnet.errors import InvalidArgumentError
from distnet.training.trainer import Trainer
from mpi_util import run_mpi

# A third strategy, written as its own module: every variable's gradient
# all-reduced on its own (no flat buffer), every rank updating every weight.
THIRD = textwrap.dedent('''
    import numpy as np

    from distnet.distributed.strategies.base import Strategy, SyncResult, all_finite


    class PerVariable(Strategy):
        """All-reduce each variable's gradient on its own."""

        name = "per_variable"
        options = {}

        def __init__(self, comm, variables, scalar_names=()):
            super().__init__(comm, variables, scalar_names)
            self.grads = [np.zeros(v.shape, self.dtype) for v in self.variables]
            self.buffer = np.zeros(1 + len(self.scalar_names), np.float64)

        @classmethod
        def preference(cls, comm, optimizer, options):
            return -1   # never chosen by "auto": only by name

        def grad_views(self):
            return self.grads

        def reduce(self, local_count, scalars=None, regularization_grads=None, global_count=None):
            local_count, global_count = self._check_counts(local_count, global_count)
            scalars = self._check_scalars(scalars)
            self._take_written(local_count)
            self.buffer[0] = local_count
            for k, name in enumerate(self.scalar_names, start=1):
                self.buffer[k] = scalars.get(name, 0.0)
            self.comm.allreduce_(self.buffer)
            for g in self.grads:
                self.comm.allreduce_(g)
            total = self._global_total(self.buffer[0], global_count)
            for g, r in zip(self.grads, self._aligned(regularization_grads, "regularization_grads")):
                if r is not None:
                    np.add(g, r, out=g, casting="same_kind")
            return SyncResult(grads=list(self.grads), variables=list(self.variables),
                              scalars={n: float(self.buffer[k]) for k, n in enumerate(self.scalar_names, 1)},
                              global_count=total, is_finite=all(all_finite(g.reshape(-1)) for g in self.grads))
''')


@pytest.fixture
def third_strategy(tmp_path, monkeypatch):
    """The module dropped beside the package's strategies (on the package's search path)."""
    (tmp_path / "per_variable.py").write_text(THIRD, encoding="utf-8")
    import distnet.distributed.strategies as package

    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    yield "per_variable"
    import sys

    sys.modules.pop("distnet.distributed.strategies.per_variable", None)


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 4, 4, 1), dtype=np.float32)
    return ArrayDataset(x, (x.reshape(n, -1).sum(axis=1) * 3).astype(np.int64) % 3, num_classes=3)


def _train(optimizer_options: dict | None = None, **options) -> dict:
    model = distnet.Sequential([layers.Flatten(), layers.Dense(8, activation="tanh",
                                                               kernel_regularizer=regularizers.l2(0.01)),
                                layers.Dropout(0.2), layers.Dense(3)], input_shape=(4, 4, 1), seed=4)
    t = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.02, **(optimizer_options or {})),
                _data(),
                global_batch_size=10, steps=8, micro_batches=2, seed=1, weight_decay=0.001,
                ema=distnet.ExponentialMovingAverage(0.9), comm=SingleCommunicator(), **options)
    t.fit()
    state = t.state()
    return {**{f"p:{k}": v for k, v in state.params.items()}, **{f"e:{k}": v for k, v in state.ema.items()}}


def test_the_package_strategies_are_found_by_name():
    assert sorted(all_strategies()) == ["hierarchical", "replicated", "zero1"]


def test_a_new_module_is_a_new_strategy_that_trains_like_the_others(third_strategy):
    assert sorted(all_strategies()) == ["hierarchical", "per_variable", "replicated", "zero1"]
    want = _train(strategy="replicated")
    got = _train(strategy=third_strategy)
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)   # one process: the same bits
    with pytest.raises(InvalidArgumentError, match="strategy 'per_variable': option 'overlap'"):
        _train(strategy=third_strategy, overlap=True)


def test_auto_prefers_zero1_on_several_ranks_unless_an_option_needs_replicated():
    import types

    two = types.SimpleNamespace(size=2, rank=0)
    from distnet.distributed.strategies import strategy_class

    adam, clipped = distnet.optimizers.Adam(0.1), distnet.optimizers.Adam(0.1, global_clipnorm=1.0)
    assert strategy_class("auto", two, adam, {})[0].name == "zero1"
    assert strategy_class("auto", two, adam, {"shared_memory": "auto"})[0].name == "zero1"
    # Every option given is asked for, whatever its value: overlap is replicated's alone.
    assert strategy_class("auto", two, adam, {"overlap": False})[0].name == "replicated"
    assert strategy_class("auto", two, clipped, {})[0].name == "zero1"   # clipping runs under every strategy
    assert strategy_class("auto", two, adam, {"bucket_bytes": 1 << 20})[0].name == "replicated"
    assert strategy_class("auto", SingleCommunicator(), adam, {})[0].name == "replicated"
    cls, options = strategy_class("auto", two, adam, {"overlap": True})
    assert cls.name == "replicated" and options == {"bucket_bytes": None, "overlap": True, "compression": "none",
                                                    "shared_memory": False}
    # shared_memory is both strategies' option: with one of replicated's alone, replicated runs it.
    assert strategy_class("auto", two, adam, {"overlap": False, "shared_memory": "auto"})[0].name == "replicated"
    assert strategy_class("auto", two, adam, {"bucket_bytes": 64, "shared_memory": True})[0].name == "replicated"
    with pytest.raises(InvalidArgumentError, match=r"Expect: a strategy that takes the options \['overlap', "
                                                   r"'piece_count'\]"):
        strategy_class("auto", two, adam, {"overlap": False, "piece_count": 4})


def test_job_files_name_the_strategy():
    from distnet.jobs.config import parse_job
    from distnet.errors import ConfigError
    from distnet.jobs.job import build_trainer
    from test_dist_sharded import JOB

    assert build_trainer(parse_job(JOB + '[dist]\nstrategy = "zero1"\n')).strategy.name == "zero1"
    assert build_trainer(parse_job(JOB + '[dist]\nstrategy = {type = "replicated", overlap = true}\n')).strategy.overlap
    table = parse_job(JOB + '[dist.strategy]\ntype = "replicated"\nbucket_bytes = 4096\n')
    assert table.dist.strategy == {"type": "replicated", "bucket_bytes": 4096}
    assert parse_job(table.to_toml()).dist.strategy == table.dist.strategy
    # The old flat key goes through the one mapping, says where it lives now, and builds the same.
    with pytest.warns(FutureWarning, match=r"dist.overlap is deprecated: write \[dist\] strategy = "
                                           r"\{type = \"replicated\", overlap = true\}"):
        old = parse_job(JOB + '[dist]\nstrategy = "replicated"\noverlap = true\n')
    assert old.dist.strategy == {"type": "replicated", "overlap": True}
    again = parse_job(parse_job(JOB + '[dist]\nstrategy = "zero1"\n').to_toml())
    assert again.dist.strategy == "zero1"
    with pytest.raises(ConfigError, match=r"dist.strategy: unknown value 'zero'; did you mean 'zero1'\?"):
        parse_job(JOB + '[dist]\nstrategy = "zero"\n')
    with pytest.raises(ConfigError, match=r"dist.shard_optimizer: Expect: no shard_optimizer with strategy = "
                                          r"'zero1' Actual: shard_optimizer = false"):
        parse_job(JOB + '[dist]\nstrategy = "zero1"\nshard_optimizer = false\n')
    # Each strategy's options are its own, checked when the job is read.
    with pytest.raises(ConfigError, match=r"dist.strategy.overlap: unknown key; expected one of: compression, "
                                          r"shared_memory"):
        parse_job(JOB + '[dist]\nstrategy = {type = "zero1", overlap = true}\n')
    with pytest.raises(ConfigError, match=r"dist.strategy.bucket_bytes: Expect: > 0 Actual: 0"):
        parse_job(JOB + '[dist]\nstrategy = {type = "replicated", bucket_bytes = 0}\n')
    with pytest.raises(ConfigError, match=r"dist.strategy.shared_memory: Expect: true, false or \"auto\""):
        parse_job(JOB + '[dist]\nstrategy = {type = "zero1", shared_memory = "yes"}\n')
    assert parse_job(JOB, overrides=["dist.strategy.overlap=true"]).dist.strategy == {"type": "auto",
                                                                                       "overlap": True}
    # "auto" with an option only replicated takes runs replicated.
    assert build_trainer(parse_job(JOB + '[dist]\nstrategy = {type = "auto", overlap = true}\n')
                         ).strategy.name == "replicated"


# -- clipping: the step between reduce and update, under every strategy --------------
@pytest.mark.parametrize("clip", [{"global_clipnorm": 0.02}, {"clipnorm": 0.02}])
def test_clipping_runs_under_zero1_in_one_process_bitwise_as_replicated(clip):
    """One rank: ZeRO-1 holds every variable whole, so its clipping is the replicated one, bit for bit."""
    want = _train(strategy="replicated", optimizer_options=clip)
    got = _train(strategy="zero1", optimizer_options=clip)
    unclipped = _train(strategy="replicated")
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert max(float(np.max(np.abs(want[k] - unclipped[k]))) for k in want) > 1e-3   # the clip acted


def test_strategy_clip_scales_the_reduced_gradients_in_place():
    from distnet.distributed.strategies.base import reduce_arrays
    from distnet.distributed.strategies.zero1 import Zero1
    from distnet.tensor import Variable

    variables = [Variable(np.zeros(2, np.float32), name="a"), Variable(np.zeros(1, np.float32), name="b")]
    for cls in (all_strategies()["replicated"], Zero1):
        s = cls(SingleCommunicator(), variables)
        res = reduce_arrays(s, [np.array([3.0, 4.0], np.float32), np.array([12.0], np.float32)], 1)
        views = [np.asarray(g) for g in res.grads]
        s.clip(res, distnet.optimizers.Adam(0.1, global_clipnorm=6.5))
        assert all(g is v for g, v in zip(res.grads, views))   # the buffer itself
        np.testing.assert_allclose(np.concatenate([np.ravel(g) for g in res.grads]), [1.5, 2.0, 6.0])
        s.clip(res, distnet.optimizers.Adam(0.1))               # no clipping asked: nothing changes
        np.testing.assert_allclose(np.concatenate([np.ravel(g) for g in res.grads]), [1.5, 2.0, 6.0])


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_mpi_clipping_under_zero1_and_hierarchical_equals_replicated(ranks):
    """tests/mpi_scripts/clip_check.py: bitwise where no variable is cut by a block
    boundary (2 ranks), float rounding where one is (its norm is two partial sums)."""
    run = run_mpi("clip_check.py", ranks, timeout=300)
    assert run.returncode == 0, run.describe()
    assert sorted(run.values("DONE")) == [str(r) for r in range(ranks)], run.describe()
    assert len(run.values("OK")) == 18, run.describe()


def test_the_job_key_clip_norm_clips_under_zero1():
    """``optimizer.clip_norm`` (the optimizer's global_clipnorm) reaches the strategy's clip step."""
    from distnet.jobs.config import parse_job
    from distnet.jobs.job import build_trainer
    from test_dist_sharded import JOB

    runs = {}
    for clip in ("", "clip_norm = 0.01\n"):
        job = parse_job(JOB + '[dist]\nstrategy = "zero1"\n' + (f"[optimizer]\n{clip}" if clip else ""))
        trainer = build_trainer(job)
        assert trainer.strategy.name == "zero1"
        assert trainer.optimizer.global_clipnorm == (0.01 if clip else None)
        trainer.fit(verbose=0)
        runs[bool(clip)] = {v.name: v.numpy().copy() for v in trainer.variables}
    assert max(float(np.max(np.abs(runs[True][k] - runs[False][k]))) for k in runs[True]) > 1e-4
