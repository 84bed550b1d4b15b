"""The Trainer's hook protocol (distnet/training/hook.py, distnet/training/hooks/): events, order,
ownership of the log, the earlier fn(trainer, record) form, and the config + hooks constructor."""
from __future__ import annotations

import json
import signal

import numpy as np
import pytest

import distnet
from distnet import layers
from distnet.data import ArrayDataset
from distnet.errors import InvalidArgumentError, TrainingStopped
from distnet.training.metrics import MetricsLogger
from distnet.training.trainer import Trainer
from distnet.training.hook import Hook
from distnet.training.hooks.checkpointing import Checkpointing
from distnet.training.hooks.metrics_log import MetricsLog
from distnet.training.hooks.periodic_evaluation import PeriodicEvaluation
from distnet.training.settings import TrainConfig


def blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.array([[0.2, 0.2], [0.8, 0.2], [0.5, 0.8]], np.float32)[y] + 0.05 * rng.standard_normal((n, 2))
    return ArrayDataset(x.astype(np.float32).reshape(n, 1, 1, 2).clip(0, 1), y.astype(np.int64), num_classes=3)


def mlp():
    return distnet.Sequential([layers.Flatten(), layers.Dense(3)], input_shape=(1, 1, 2), seed=0)


class Recorder(Hook):
    """Records every event it hears, with the step the context says."""

    def __init__(self, events):
        self.events = events

    def on_fit_begin(self, ctx):
        self.events.append(("fit_begin", ctx.step))

    def on_step_begin(self, ctx):
        self.events.append(("step_begin", ctx.step))

    def on_step_end(self, ctx, record):
        assert record["step"] == ctx.step
        self.events.append(("step_end", ctx.step))

    def on_evaluate(self, ctx, result):
        self.events.append(("evaluate", result["step"]))

    def on_stop(self, ctx, stop):
        self.events.append(("stop", stop.step))

    def on_fit_end(self, ctx):
        self.events.append(("fit_end", ctx.step))

    def on_close(self, ctx, status):
        self.events.append(("close", status))


def test_events_come_in_the_protocol_order():
    events = []
    t = Trainer(mlp(), "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), blobs(),
                TrainConfig(global_batch_size=20, steps=4), eval_data=blobs(9, 1),
                hooks=[PeriodicEvaluation(every=2), Recorder(events)])
    t.fit(verbose=0)
    assert events == [("fit_begin", 0),
                      ("step_begin", 0), ("step_end", 1), ("step_begin", 1), ("evaluate", 2), ("step_end", 2),
                      ("step_begin", 2), ("step_end", 3), ("step_begin", 3), ("evaluate", 4), ("step_end", 4),
                      ("fit_end", 4), ("close", "completed")]
    assert [r["step"] for r in t.history if "test_loss" in r] == [2, 4]   # not evaluated twice at the end


def test_a_stop_replaces_the_steps_end_and_the_checkpoint_is_the_stops(tmp_path):
    events = []

    class StopAt3(Hook):
        def on_step_end(self, ctx, record):
            if record["step"] == 2:
                ctx.request_stop(signal.SIGTERM)   # rides in step 3's reduction

    t = Trainer(mlp(), "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), blobs(),
                TrainConfig(global_batch_size=20, steps=10),
                hooks=[Checkpointing(str(tmp_path / "ck")), StopAt3(), Recorder(events)])
    with pytest.raises(TrainingStopped) as info:
        t.fit(verbose=0)
    assert (info.value.code, info.value.step) == (143, 3)
    assert info.value.checkpoint.endswith("ckpt-00000003.h5")
    assert events[-4:] == [("step_end", 2), ("step_begin", 2), ("stop", 3), ("close", "interrupted")]


def test_the_log_hook_owns_the_log_and_closes_it_once_with_the_status(tmp_path):
    class Boom(Hook):
        def on_step_end(self, ctx, record):
            if record["step"] == 2:
                raise ZeroDivisionError("boom")

    log = MetricsLogger(tmp_path, progress="none", tensorboard=False)
    t = Trainer(mlp(), "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), blobs(),
                TrainConfig(global_batch_size=20, steps=5), hooks=[MetricsLog(log, job="x"), Boom()])
    with pytest.raises(ZeroDivisionError):
        t.fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["start", "step", "step", "end"]
    assert records[0]["job"] == "x" and records[0]["total_steps"] == 5
    assert records[-1]["status"] == "failed"


def test_callables_keep_working_and_a_wrong_hook_is_named():
    seen = []

    class WithEval:
        def __call__(self, trainer, record):
            seen.append(("step", record["step"], trainer.step))

        def on_evaluate(self, trainer, result):
            seen.append(("eval", result["step"]))

    t = Trainer(mlp(), "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), blobs(),
                global_batch_size=30, steps=2, eval_every=2, eval_data=blobs(6, 2), callbacks=[WithEval()])
    t.fit(verbose=0)
    assert seen == [("step", 1, 1), ("eval", 2), ("step", 2, 2)]
    with pytest.raises(InvalidArgumentError, match=r"hooks: Expect: a distnet.training.hook.Hook .* "
                                                   r"or a callable fn\(trainer, record\) Actual: int"):
        Trainer(mlp(), "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), blobs(),
                global_batch_size=30, steps=2, hooks=[3])


def test_config_and_keywords_give_the_same_run_and_do_not_mix():
    def run(**how):
        t = Trainer(mlp(), "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.05), blobs(), **how)
        t.fit(verbose=0)
        return [v.numpy() for v in t.all_variables], [r["loss"] for r in t.history]

    a = run(config=TrainConfig(global_batch_size=20, steps=6, micro_batches=2, seed=3, weight_decay=0.01))
    b = run(global_batch_size=20, steps=6, micro_batches=2, seed=3, weight_decay=0.01)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a[0], b[0])) and a[1] == b[1]
    with pytest.raises(InvalidArgumentError, match=r"not both Actual: config and \['steps'\]"):
        Trainer(mlp(), "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.05), blobs(),
                TrainConfig(global_batch_size=20, steps=6), steps=3)
    with pytest.raises(InvalidArgumentError, match="Expect: exactly one of epochs and steps"):
        TrainConfig(global_batch_size=20)
    cfg = TrainConfig(global_batch_size=20, steps=1, strategy="replicated")
    t = Trainer(mlp(), "sparse_softmax_cross_entropy", distnet.optimizers.Adam(0.05), blobs(), cfg, overlap=True)
    assert t.strategy.overlap is True and t.config.strategy_options == {"overlap": True}
    assert cfg.strategy_options == {}   # the caller's config is left as it was


def test_loss_names_come_from_the_registry():
    from distnet import registry
    from distnet.model import losses

    assert losses.get("mse") is losses.mean_squared_error
    # On a job model's last Dense layer: its logits, or its outputs as a regression's predictions.
    assert set(losses.job_losses()) == {"sparse_softmax_cross_entropy", "softmax_cross_entropy",
                                        "sigmoid_cross_entropy", "mean_squared_error", "mean_absolute_error",
                                        "huber"}
    assert "binary_crossentropy" in registry.names("loss")
    # The one-hot form of softmax_cross_entropy on class labels: the sparse form's value.
    logits = distnet.constant(np.array([[1.0, 2.0, 0.5], [0.1, -1.0, 3.0]], np.float32))
    y = np.array([1, 2])
    dense = losses.get("softmax_cross_entropy", class_labels=True)(y, logits, reduction="sum")
    assert dense.numpy() == losses.sparse_softmax_cross_entropy(y, logits, reduction="sum").numpy()
    with pytest.raises(InvalidArgumentError, match="unknown loss 'hinge'; expected a callable or one of"):
        Trainer(mlp(), "hinge", distnet.optimizers.Adam(0.05), blobs(), global_batch_size=20, steps=1)
