"""The single-process trainer: the step's arithmetic, epochs, resume, guards."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import distnet
from distnet import layers
from distnet.model import regularizers
from distnet.data import ArrayDataset
from distnet.distributed import CollectiveError
from distnet.errors import InvalidArgumentError
from distnet.training.trainer import Trainer


def blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[0.2, 0.2], [0.8, 0.2], [0.5, 0.8]], dtype=np.float32)
    x = centers[y] + 0.08 * rng.standard_normal((n, 2)).astype(np.float32)
    return ArrayDataset(x.reshape(n, 1, 1, 2).clip(0, 1), y.astype(np.int64), num_classes=3)


def mlp(seed=0, reg=None, dropout=0.0):
    stack = [layers.Flatten(), layers.Dense(8, activation="tanh", kernel_regularizer=reg)]
    if dropout:
        stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(3))
    return distnet.Sequential(stack, input_shape=(1, 1, 2), seed=seed)


def weights(model):
    return {v.name: v.numpy().copy() for v in model.variables}


def test_learns_blobs_and_reports_global_metrics():
    train, test = blobs(300, 0), blobs(100, 1)
    t = Trainer(mlp(), "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.05), train,
                eval_data=test, global_batch_size=30, epochs=8, seed=1)
    history = t.fit()
    assert t.step == 8 * 10 == t.total_steps
    evals = [r for r in history if "test_accuracy" in r]
    assert evals[-1]["test_accuracy"] >= 0.95
    assert evals[-1]["test_samples"] == 100
    steps = [r for r in history if "loss" in r]
    assert steps[-1]["loss"] < steps[0]["loss"]


@pytest.mark.parametrize("wd", [0.02, 0.0])  # 0.0: the output layer is untouched by regularization
def test_one_sgd_step_matches_hand_computation(wd):
    """loss = mean CE + l2 term: the update is lr * (mean grad + reg grad), once."""
    train = blobs(12, 2)
    reg = regularizers.l2(0.3)
    model = mlp(seed=4, reg=reg)
    w0 = weights(model)
    t = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), train,
                global_batch_size=12, steps=1, seed=0, weight_decay=wd)
    # Expected: the same forward on the same (permuted) batch, by hand with the autodiff core.
    ref = mlp(seed=4, reg=reg)
    x, y = train.read(np.arange(12))
    logits = ref(x, training=True)
    base = distnet.model.losses.sparse_softmax_cross_entropy(y, logits)
    reg_total = distnet.model.losses.get_regularization_loss(ref) + regularizers.weight_decay_loss(
        ref.trainable_variables, wd)
    grads = distnet.gradients(base + reg_total, ref.trainable_variables)
    t.fit()
    for v, g in zip(ref.trainable_variables, grads):
        np.testing.assert_allclose(model.get_variable(v.name).numpy(), w0[v.name] - 0.1 * g, rtol=1e-5, atol=1e-6)


def test_micro_batches_equal_one_batch():
    runs = []
    for micro in (1, 4):
        model = mlp(seed=2, dropout=0.25)
        Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.01), blobs(50, 3),
                global_batch_size=20, steps=7, micro_batches=micro, seed=5).fit()
        runs.append(weights(model))
    for k in runs[0]:
        np.testing.assert_allclose(runs[0][k], runs[1][k], atol=1e-6)



def test_micro_batch_slices_are_array_split_parts():
    from distnet.training.trainer import _micro_batch_slices

    for n in range(1, 30):
        for m in range(1, n + 1):
            parts = [np.arange(n)[s] for s in _micro_batch_slices(n, m)]
            expect = np.array_split(np.arange(n), m)
            assert [p.tolist() for p in parts] == [e.tolist() for e in expect], (n, m)

def test_epochs_cover_every_sample_once_with_partial_batch():
    seen = []

    class Recording(ArrayDataset):
        def read(self, indices):
            seen.extend(int(i) for i in indices)
            return super().read(indices)

    base = blobs(23, 0)
    x, y = base.read(np.arange(23))
    data = Recording(x, y, num_classes=3)
    t = Trainer(mlp(), "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), data,
                global_batch_size=5, epochs=2, seed=3)
    t.fit()
    assert t.step == 2 * 5
    assert sorted(seen[:23]) == list(range(23)) and sorted(seen[23:]) == list(range(23))
    assert seen[:23] != seen[23:]  # a new permutation per epoch


def test_resume_is_bitwise(tmp_path):
    def make(steps, ckpt):
        return Trainer(mlp(seed=1, dropout=0.2), "sparse_softmax_cross_entropy",
                       distnet.optimizers.Adam(distnet.model.schedules.exponential_decay(0.02, 3, 0.7)),
                       blobs(37, 4), global_batch_size=8, steps=steps, seed=9,
                       ema=distnet.ExponentialMovingAverage(0.8), checkpoint_dir=ckpt, checkpoint_every=4)

    full = make(14, None)
    full.fit()
    make(6, tmp_path).fit()            # checkpoints at 4 and at the end (6)
    resumed = make(14, tmp_path)
    resumed.fit(resume=True)
    assert resumed.step == 14
    for a, b in zip(full.all_variables, resumed.all_variables):
        assert np.array_equal(a.numpy(), b.numpy()), a.name
    for k, v in full.ema.state_dict().items():
        assert np.array_equal(v, resumed.ema.state_dict()[k]), k


@pytest.mark.parametrize("options", [dict(strategy="replicated"), dict(strategy="replicated", overlap=True),
                                     dict(strategy="zero1")])
def test_non_finite_steps_are_skipped_then_abort(options):
    x = np.full((10, 1, 1, 2), 0.5, dtype=np.float32)
    y = np.zeros(10, dtype=np.int64)
    data = ArrayDataset(x, y, num_classes=3)
    model = mlp()
    t = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), data,
                global_batch_size=5, steps=10, max_bad_steps=3, seed=0, **options)
    # A NaN weight makes the loss and every gradient NaN.
    model.trainable_variables[0].data[0, 0] = np.nan
    before = weights(model)
    with pytest.warns(Warning, match="non-finite"), pytest.raises(CollectiveError, match="3 consecutive"):
        t.fit()
    after = weights(model)
    for k in before:  # skipped steps leave the weights untouched
        np.testing.assert_array_equal(before[k], after[k])
    assert t.step == 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(epochs=1, steps=1), "exactly one of epochs and steps"),
    (dict(steps=0), "steps: Expect: a positive integer"),
    (dict(steps=1, global_batch_size=0), "global_batch_size"),
    (dict(steps=1, micro_batches=0), "micro_batches"),
    (dict(steps=1, weight_decay=-1.0), "weight_decay"),
    (dict(steps=1, overlap=1), "overlap: Expect: True or False Actual: 1"),
    (dict(steps=1, direct_grads=True), r"Expect: a strategy that takes the options \['direct_grads'\]"),
    (dict(steps=1, strategy="zero1", overlap=True), r"strategy 'zero1': option 'overlap': Expect: one of"),
    (dict(steps=1, strategy="ring"), r"strategy: Expect: 'auto' or one of \['hierarchical', 'replicated', 'zero1'\] Actual: 'ring'"),
    (dict(steps=1, overlap=True, compression="float16"), r"overlap=True with compression='float16'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        Trainer(mlp(), "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), blobs(10),
                **kwargs)


def test_unknown_loss_name():
    with pytest.raises(InvalidArgumentError, match="unknown loss"):
        Trainer(mlp(), "hinge_of_doom", distnet.optimizers.GradientDescent(0.1), blobs(10), steps=1)


def test_evaluate_with_ema_weights_restores_trained_weights():
    model = mlp(seed=3)
    ema = distnet.ExponentialMovingAverage(0.5)
    t = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.05), blobs(40), steps=5,
                global_batch_size=10, ema=ema)
    t.fit()
    trained = weights(model)
    plain, averaged = t.evaluate(blobs(30, 7)), t.evaluate(blobs(30, 7), use_ema=True)
    assert plain["loss"] != averaged["loss"]
    for k, v in weights(model).items():
        np.testing.assert_array_equal(v, trained[k])


@pytest.mark.parametrize("micro", [1, 3])
def test_every_strategy_and_option_gives_the_same_bits_in_one_process(micro):
    """In one process nothing is summed over ranks, so every strategy and
    option (buckets, overlap, ZeRO-1's flat parameter buffer) must give the
    same weights bitwise, micro-batches accumulated in place as ``+=`` does."""
    runs = {}
    for options in (dict(strategy="replicated"), dict(strategy="replicated", bucket_bytes=64),
                    dict(strategy="replicated", overlap=True, bucket_bytes=64), dict(strategy="zero1")):
        model = mlp(seed=2, reg=regularizers.l2(0.01), dropout=0.25)
        Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.01), blobs(50, 3),
                global_batch_size=20, steps=6, micro_batches=micro, seed=5, weight_decay=0.002, **options).fit()
        runs[repr(options)] = weights(model)
    first = next(iter(runs.values()))
    for key, run in runs.items():
        for k in first:
            np.testing.assert_array_equal(run[k], first[k], err_msg=f"{key} {k}")


def test_overlap_starts_buckets_while_backward_runs():
    from distnet.distributed import SingleCommunicator

    class Recording(SingleCommunicator):
        def __init__(self):
            super().__init__()
            self.events = []

        def iallreduce_(self, arr, op="sum"):
            self.events.append("start")
            events = self.events

            class Req:
                def test(self):
                    events.append("test")
                    return False

                def wait(self):
                    events.append("wait")
            return Req()

    comm = Recording()
    t = Trainer(mlp(seed=1), "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), blobs(20),
                global_batch_size=10, steps=1, comm=comm, overlap=True, bucket_bytes=64, check_every=None)
    t.fit()
    n = len(t.strategy.buckets)
    assert n >= 3
    starts = [i for i, e in enumerate(comm.events) if e == "start"]
    assert len(starts) == n and comm.events.count("wait") == n
    # Some buckets started during backward (tests of them follow) before the last one.
    assert "test" in comm.events[starts[0]:starts[-1]]


def test_default_overlap_bucket_size_applies_only_with_overlap():
    from distnet.distributed.strategies.replicated import DEFAULT_BUCKET_BYTES

    t = Trainer(mlp(), "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), blobs(20),
                global_batch_size=10, steps=1, overlap=True)
    assert t.strategy.overlap and len(t.strategy.buckets) == 1 and t.strategy.buckets[0].nbytes <= DEFAULT_BUCKET_BYTES
    t = Trainer(mlp(), "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), blobs(20),
                global_batch_size=10, steps=1)
    assert not t.strategy.overlap


def test_job_file_overlap_option_reaches_the_trainer():
    from distnet.jobs.config import parse_job
    from distnet.errors import ConfigError
    from distnet.jobs.job import build_trainer
    from test_dist_sharded import JOB

    assert build_trainer(parse_job(JOB + "[dist]\noverlap = true\n")).strategy.overlap is True
    assert build_trainer(parse_job(JOB)).strategy.overlap is False
    with pytest.raises(ConfigError, match="overlap"):
        parse_job(JOB + "[dist]\noverlap = 1\n")
    with pytest.raises(ConfigError, match="dist.strategy.overlap: unknown key; expected one of: compression, "
                                          "shared_memory"):
        parse_job(JOB + "[dist]\noverlap = true\nshard_optimizer = true\n")


def test_fit_speaks_like_keras_unless_told_not_to(capsys):
    def make():
        return Trainer(mlp(seed=1), "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.01), blobs(40),
                       eval_data=blobs(20, 5), eval_every=4, global_batch_size=10, steps=8, log_every=2)

    make().fit(verbose=2)
    out = capsys.readouterr().out
    assert [line.split(" |")[0] for line in out.splitlines() if line.startswith("step ")] == \
        ["step 2/8", "step 4/8", "step 6/8", "step 8/8"]
    assert out.count("eval  step 4: test loss") == 1 and "test accuracy" in out   # evaluations as they happen
    make().fit(verbose=0)
    assert capsys.readouterr().out == ""
    with pytest.raises(InvalidArgumentError, match="verbose: Expect: 0, 1, 2 or 'auto' Actual: 3"):
        make().fit(verbose=3)


def test_a_resume_on_other_training_data_warns(tmp_path):
    from distnet.data.identity import DataMismatchWarning

    def make(data, steps):
        return Trainer(mlp(seed=1), "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1),
                       data, global_batch_size=8, steps=steps, seed=9, checkpoint_dir=tmp_path,
                       checkpoint_every=4)

    make(blobs(37, 4), 4).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataMismatchWarning)
        same = make(blobs(37, 4), 6)
        same.fit(resume=True)   # the same samples: no warning
    assert same.step == 6
    other = make(blobs(37, 5), 8)   # as many samples, other values
    with pytest.warns(DataMismatchWarning, match=r"other training data.* 37 samples, sha256 "):
        other.fit(resume=True)
    assert other.step == 8
