"""Job files: parsing, validation errors (key, file and line), overrides, examples."""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from distnet.jobs.config import (
    DEFAULT_LAYERS, JobConfig, apply_overrides, check_world_size, default_job, dumps_toml,
    load_job, parse_job, parse_override,
)
from distnet.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "jobs").glob("*.toml"))

MINIMAL = """\
name = "tiny"

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 10

[train]
batch_size = 10
steps = 3
"""


def error_of(text: str, overrides=(), filename="job.toml", **kw) -> str:
    with pytest.raises(ConfigError) as info:
        parse_job(text, filename, overrides, **kw)
    return str(info.value)


# -- the examples and the default job ----------------------------------------

def test_examples_exist():
    names = {p.stem for p in EXAMPLES}
    assert {"seed003_baseline", "seed003_l2", "seed003_dropout", "mlp", "conv2"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_and_round_trips(path):
    cfg = load_job(path)
    assert cfg.source == str(path)
    again = parse_job(cfg.to_toml(), "again.toml")
    again.source = cfg.source
    assert again == cfg


def test_seed003_variants_differ_only_in_regularization():
    base, l2, drop = (load_job(ROOT / "examples" / "jobs" / f"seed003_{v}.toml")
                      for v in ("baseline", "l2", "dropout"))
    for cfg in (base, l2, drop):
        assert cfg.optimizer.name == "adam" and cfg.optimizer.learning_rate == 1e-4
        assert cfg.train.batch_size == 100 and cfg.train.steps == 1000
        conv = cfg.model.layers[0]
        assert (conv["type"], conv["filters"], conv["kernel_size"], conv["padding"]) == ("conv2d", 32, 5, "same")
    fc_units = [[l.get("units") for l in c.model.layers if l["type"] == "dense"] for c in (base, l2, drop)]
    assert fc_units == [[1024, 10]] * 3
    assert not any("kernel_regularizer" in l for l in base.model.layers)
    regs = [l["kernel_regularizer"] for l in l2.model.layers if "kernel_regularizer" in l]
    assert regs == [{"type": "l2", "scale": 0.004}] * 2
    assert [l["rate"] for l in drop.model.layers if l["type"] == "dropout"] == [0.5]
    assert [l["type"] for l in base.model.layers] == [l["type"] for l in l2.model.layers]


def test_default_job():
    cfg = load_job(None)
    assert cfg.model.layers == [dict(x) for x in DEFAULT_LAYERS]
    assert cfg.data.name == "fashion_mnist" and cfg.data.path is None
    assert cfg.ema.enabled and cfg.optimizer.name == "adam"
    assert cfg.run_dir == "runs/default"
    assert cfg.train.steps is not None and cfg.train.epochs is None
    # It evaluates on the whole test set there is (2,000 embedded images, 10,000 installed).
    assert cfg.data.test_samples is None and cfg.train.eval_every == 100


def test_checkpoint_every_zero_switches_checkpoints_off():
    from distnet.jobs.job import checkpoint_dir

    assert checkpoint_dir(load_job(None)) == os.path.join("runs", "default", "checkpoints")
    off = load_job(None, ["checkpoint.every=0"])
    assert off.checkpoint.every == 0 and checkpoint_dir(off) is None
    assert checkpoint_dir(load_job(None, ["checkpoint.every=0", "checkpoint.dir=/x"])) is None
    # Both ways of saying "off" together are not a contradiction.
    both = parse_job('[checkpoint]\nevery = 0\ndir = ""\n')
    assert checkpoint_dir(both) is None
    with pytest.raises(ConfigError, match=r"checkpoint.every: Expect: >= 0 Actual: -1"):
        load_job(None, ["checkpoint.every=-1"])
    with pytest.raises(ConfigError, match="checkpoint.every needs checkpoints on"):
        parse_job('[checkpoint]\nevery = 5\ndir = ""\n')
    # The round trip keeps it off.
    assert checkpoint_dir(parse_job(off.to_toml())) is None


def test_defaults_when_sections_are_left_out():
    cfg = parse_job("")
    assert isinstance(cfg, JobConfig)
    assert cfg.model.layers == [dict(x) for x in DEFAULT_LAYERS]
    assert cfg.train.epochs == 1 and cfg.train.steps is None
    assert cfg.loss.type == "sparse_softmax_cross_entropy"
    assert cfg.ema.enabled is False
    assert cfg.schedule.type == "constant"
    cfg = parse_job("[ema]\ndecay = 0.9\n")
    assert cfg.ema.enabled is True and cfg.ema.decay == 0.9 and cfg.ema.num_updates is True


def test_ints_are_accepted_as_floats_and_names_normalised():
    cfg = parse_job('[optimizer]\nname = "Gradient_Descent"\nlearning_rate = 1\n'
                    '[[model.layers]]\ntype = "Dense"\nunits = 10\nactivation = "None"\n')
    assert cfg.optimizer.name == "sgd"
    assert cfg.optimizer.learning_rate == 1.0 and isinstance(cfg.optimizer.learning_rate, float)
    assert cfg.model.layers == [{"type": "dense", "units": 10, "activation": "linear"}]


# -- unknown keys ---------------------------------------------------------------

def test_unknown_section_key_names_line_and_suggests():
    msg = error_of(MINIMAL + "\n[optimizer]\nname = \"adam\"\nlearnig_rate = 0.1\n")
    assert msg.startswith("job.toml:16: optimizer.learnig_rate: unknown key")
    assert "did you mean 'learning_rate'" in msg


def test_unknown_top_level_section():
    msg = error_of(MINIMAL + "\n[optimiser]\nname = \"adam\"\n")
    assert msg.startswith("job.toml:14: optimiser: unknown key")
    assert "did you mean 'optimizer'" in msg


def test_unknown_layer_key_in_second_layer_table():
    text = MINIMAL.replace("units = 10\n", "units = 10\nunit = 3\n")
    msg = error_of(text)
    assert msg.startswith("job.toml:9: model.layers[1].unit: unknown key")
    assert "did you mean 'units'" in msg


def test_key_of_other_optimizer_is_unknown():
    msg = error_of('[optimizer]\nname = "adam"\nmomentum = 0.9\n')
    assert msg.startswith("job.toml:3: optimizer.momentum: unknown key")


def test_unknown_value_suggests():
    msg = error_of('[schedule]\ntype = "cosin"\ndecay_steps = 10\n')
    assert msg.startswith("job.toml:2: schedule.type: unknown value 'cosin'")
    assert "did you mean 'cosine'" in msg
    msg = error_of(MINIMAL.replace('type = "flatten"', 'type = "flaten"'))
    assert "job.toml:4: model.layers[0].type" in msg and "'flatten'" in msg


def test_unknown_key_in_inline_table_points_at_its_line():
    text = MINIMAL.replace("units = 10\n", "units = 10\nkernel_regularizer = {type = \"l2\", scal = 0.1}\n")
    msg = error_of(text)
    assert msg.startswith("job.toml:9: model.layers[1].kernel_regularizer.scal: unknown key")
    assert "did you mean 'scale'" in msg


def test_dotted_keys_are_located():
    msg = error_of('name = "x"\noptimizer.learning_rate = -0.5\n')
    assert msg.startswith("job.toml:2: optimizer.learning_rate: Expect: > 0 Actual: -0.5")


# -- wrong types ------------------------------------------------------------------

@pytest.mark.parametrize("text, key, expected, got", [
    ("[train]\nbatch_size = 1.5\n", "train.batch_size", "an integer", "a number (1.5)"),
    ("[train]\nbatch_size = true\n", "train.batch_size", "an integer", "a boolean (true)"),
    ("[optimizer]\nlearning_rate = \"fast\"\n", "optimizer.learning_rate", "a number", "a string ('fast')"),
    ("[ema]\nnum_updates = 1\n", "ema.num_updates", "true or false", "an integer (1)"),
    ("seed = \"1\"\n", "seed", "an integer", "a string ('1')"),
    ("[train]\nsteps = [10]\n", "train.steps", "an integer", "a list ([10])"),
])
def test_wrong_type(text, key, expected, got):
    msg = error_of(text)
    line = text.count("\n", 0, text.index(key.split(".")[-1] + " =")) + 1
    assert msg == f"job.toml:{line}: {key}: Expect: {expected} Actual: {got}"


def test_section_that_is_not_a_table():
    msg = error_of("train = 3\n")
    assert msg.startswith("job.toml:1: train: Expect: a table")


def test_layers_must_be_tables():
    msg = error_of("[model]\nlayers = [1, 2]\n")
    assert msg.startswith("job.toml:2: model.layers: Expect: a list of tables")


def test_kernel_size_pair():
    cfg = parse_job(MINIMAL.replace('type = "flatten"', 'type = "conv2d"\nfilters = 4\nkernel_size = [3, 5]')
                    .replace("[[model.layers]]\ntype = \"dense\"", "[[model.layers]]\ntype = \"flatten\"\n\n"
                             "[[model.layers]]\ntype = \"dense\""))
    assert cfg.model.layers[0]["kernel_size"] == [3, 5]
    msg = error_of(MINIMAL.replace('type = "flatten"', 'type = "conv2d"\nfilters = 4\nkernel_size = [3, 5, 1]'))
    assert "model.layers[0].kernel_size: Expect: an integer or a pair of integers" in msg


# -- impossible values -----------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("[optimizer]\nlearning_rate = 0\n", "optimizer.learning_rate: Expect: > 0 Actual: 0.0"),
    ("[optimizer]\nlearning_rate = -1e-3\n", "optimizer.learning_rate: Expect: > 0 Actual: -0.001"),
    ("[train]\nbatch_size = 0\n", "train.batch_size: Expect: > 0 Actual: 0"),
    ("[train]\nsteps = -5\n", "train.steps: Expect: > 0 Actual: -5"),
    ("[train]\neval_every = 0\n", "train.eval_every: Expect: > 0 Actual: 0"),
    ("[regularization]\nweight_decay = -0.004\n", "regularization.weight_decay: Expect: >= 0 Actual: -0.004"),
    ("[ema]\ndecay = 1.0\n", "ema.decay: Expect: in (0, 1) Actual: 1.0"),
    ("[checkpoint]\nmax_to_keep = 0\n", "checkpoint.max_to_keep: Expect: > 0 Actual: 0"),
    ("[dist]\nstall_timeout = 0\n", "dist.stall_timeout: Expect: > 0 Actual: 0.0"),
    ("[dist]\nmax_bad_steps = 0\n", "dist.max_bad_steps: Expect: > 0 Actual: 0"),
    ("[train]\neval_batch_size = -1\n", "train.eval_batch_size: Expect: > 0 Actual: -1"),
    ("[optimizer]\nname = \"adam\"\nbeta1 = 1.0\n", "optimizer.beta1: Expect: in [0, 1) Actual: 1.0"),
    ("[schedule]\ntype = \"exponential\"\ndecay_steps = 0\ndecay_rate = 0.5\n",
     "schedule.decay_steps: Expect: > 0 Actual: 0"),
    ("[schedule]\nwarmup_steps = -1\n", "schedule.warmup_steps: Expect: >= 0 Actual: -1"),
    ("[train]\nbatch_size = 4\nmicro_batches = 8\n", "train.micro_batches: Expect: at most train.batch_size (4) Actual: 8"),
    ("seed = -1\n", "seed: Expect: >= 0 Actual: -1"),
])
def test_impossible_values(text, message):
    msg = error_of(text)
    assert msg.endswith(message)
    assert msg.startswith("job.toml:")


def test_impossible_layer_values():
    msg = error_of(MINIMAL.replace('type = "flatten"', 'type = "dropout"\nrate = 1.0'))
    assert msg == ("job.toml:5: model.layers[0].rate: Expect: in [0, 1) (the fraction of units dropped) "
                   "Actual: 1.0")
    msg = error_of(MINIMAL.replace("units = 10", "units = 0"))
    assert msg == "job.toml:8: model.layers[1].units: Expect: > 0 Actual: 0"
    msg = error_of(MINIMAL.replace("units = 10", "units = 10\nkernel_regularizer = {type = \"l2\", scale = -1}"))
    assert msg == "job.toml:9: model.layers[1].kernel_regularizer.scale: Expect: >= 0 Actual: -1.0"


def test_missing_required_keys():
    assert "a dense layer needs 'units'" in error_of(MINIMAL.replace("units = 10\n", ""))
    assert "needs a 'type'" in error_of("[[model.layers]]\nunits = 10\n")
    msg = error_of('[schedule]\ntype = "exponential"\ndecay_steps = 10\n')
    assert msg == "job.toml:1: schedule: the exponential schedule needs 'decay_rate'"
    assert "needs 'scale'" in error_of(MINIMAL.replace("units = 10", "units = 10\nkernel_regularizer = {type = \"l2\"}"))


def test_model_structure_checks():
    msg = error_of(MINIMAL.replace("units = 10\n", "units = 10\nactivation = \"softmax\"\n"))
    assert msg.startswith("job.toml:9: model.layers[1].activation: the last layer gives the logits")
    msg = error_of(MINIMAL + '\n[[model.layers]]\ntype = "dropout"\nrate = 0.5\n')
    assert "the last layer gives the logits, one per class: Expect: dense" in msg
    msg = error_of('[[model.layers]]\ntype = "flatten"\n[[model.layers]]\ntype = "conv2d"\nfilters = 3\n'
                   'kernel_size = 3\n[[model.layers]]\ntype = "dense"\nunits = 10\n')
    assert msg.startswith("job.toml:4: model.layers[1].type: a conv2d layer needs image input")
    assert "at least one layer" in error_of("[model]\nlayers = []\n")


def test_piecewise_schedule_checks():
    ok = parse_job('[schedule]\ntype = "piecewise"\nboundaries = [100, 200]\nvalues = [0.1, 0.01, 0.001]\n')
    assert ok.schedule.params == {"boundaries": [100, 200], "values": [0.1, 0.01, 0.001]}
    msg = error_of('[schedule]\ntype = "piecewise"\nboundaries = [100, 200]\nvalues = [0.1, 0.01]\n')
    assert msg.startswith("job.toml:4: schedule.values: one more entry than boundaries: Expect: ")
    msg = error_of('[schedule]\ntype = "piecewise"\nboundaries = [200, 100]\nvalues = [0.1, 0.01, 0.001]\n')
    assert msg.startswith("job.toml:3: schedule.boundaries: Expect: positive and strictly increasing")


def test_epochs_and_steps_both_set():
    msg = error_of("[train]\nepochs = 2\nsteps = 100\n")
    assert msg == ("job.toml:3: train.steps: set either train.epochs or train.steps, not both "
                   "(got epochs = 2 and steps = 100)")


def test_missing_dataset_path(tmp_path):
    msg = error_of('[data]\npath = "nowhere/train.h5"\n', base_dir=tmp_path)
    assert msg == ("job.toml:2: data.path: Expect: an HDF5 dataset file or a directory of IDX files "
                   f"Actual: no such file or directory: {tmp_path / 'nowhere' / 'train.h5'}")


def test_dataset_path_relative_to_the_job_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.h5").write_bytes(b"")
    job = tmp_path / "job.toml"
    job.write_text('[data]\npath = "data/train.h5"\n')
    assert load_job(job).data.path == str(tmp_path / "data" / "train.h5")
    assert "unknown value 'cifar'" in error_of('[data]\nname = "cifar"\n')


def test_batch_smaller_than_world_size():
    cfg = parse_job("[train]\nbatch_size = 3\n", "job.toml")
    check_world_size(cfg, 3)
    with pytest.raises(ConfigError) as info:
        check_world_size(cfg, 4)
    assert str(info.value) == ("job.toml: train.batch_size: every rank needs at least one sample per step: Expect: a global "
                               "batch of at least the number of ranks (4) = 4 Actual: 3")
    cfg = parse_job("[train]\nbatch_size = 6\nmicro_batches = 2\n", "job.toml")
    with pytest.raises(ConfigError, match=r"\(4\) x 2 micro-batches = 8"):
        check_world_size(cfg, 4)


def test_bad_toml_and_missing_file(tmp_path):
    msg = error_of("[train\nsteps = 3\n")
    assert msg.startswith("job.toml: not valid TOML:")
    with pytest.raises(ConfigError, match="no such job file"):
        load_job(tmp_path / "missing.toml")


# -- overrides --------------------------------------------------------------------

@pytest.mark.parametrize("item, path, value", [
    ("optimizer.learning_rate=0.01", ["optimizer", "learning_rate"], 0.01),
    ("train.steps=20", ["train", "steps"], 20),
    ("ema.num_updates=false", ["ema", "num_updates"], False),
    ("data.path=/tmp/x.h5", ["data", "path"], "/tmp/x.h5"),
    ('name="quoted"', ["name"], "quoted"),
    ("schedule.boundaries=[1, 2]", ["schedule", "boundaries"], [1, 2]),
    ('model.layers.1.kernel_regularizer={type = "l2", scale = 0.004}',
     ["model", "layers", 1, "kernel_regularizer"], {"type": "l2", "scale": 0.004}),
])
def test_parse_override(item, path, value):
    assert parse_override(item) == (path, value)


@pytest.mark.parametrize("item", ["optimizer.learning_rate", "=3", "a..b=1", "a b=1"])
def test_bad_override_syntax(item):
    with pytest.raises(ConfigError, match=r"--set"):
        parse_override(item)


def test_overrides_are_applied_and_validated():
    cfg = parse_job(MINIMAL, "job.toml", ["optimizer.learning_rate=0.01", "model.layers.1.units=10",
                                          "train.batch_size=20", "ema.decay=0.5"])
    assert cfg.optimizer.learning_rate == 0.01 and cfg.train.batch_size == 20
    assert cfg.ema.enabled and cfg.ema.decay == 0.5
    msg = error_of(MINIMAL, ["optimizer.learnig_rate=0.01"])
    assert msg.startswith("--set optimizer.learnig_rate=0.01: optimizer.learnig_rate: unknown key")
    msg = error_of(MINIMAL, ["train.batch_size=-2"])
    assert msg == "--set train.batch_size=-2: train.batch_size: Expect: > 0 Actual: -2"
    msg = error_of(MINIMAL, ["model.layers.5.units=3"])
    assert msg == "--set model.layers.5.units=3: model.layers has 2 entries, no index 5"


def test_overrides_of_the_default_model():
    cfg = default_job(["model.layers.0.filters=32", "model.layers.3.units=1024"])
    assert [l.get("filters") or l.get("units") for l in cfg.model.layers] == [32, None, None, 1024, 10]
    assert cfg.model.layers[0]["kernel_size"] == 5 and cfg.model.layers[3]["activation"] == "relu"
    assert default_job().model.layers[0]["filters"] == DEFAULT_LAYERS[0]["filters"]  # untouched


def test_override_of_steps_replaces_epochs():
    cfg = parse_job("[train]\nepochs = 3\n", overrides=["train.steps=7"])
    assert (cfg.train.steps, cfg.train.epochs) == (7, None)
    cfg = default_job(["train.epochs=1"])
    assert (cfg.train.steps, cfg.train.epochs) == (None, 1)


def test_apply_overrides_does_not_touch_its_input():
    raw = {"train": {"steps": 3}}
    out = apply_overrides(raw, ["train.steps=4", "optimizer.name=sgd"])
    assert raw == {"train": {"steps": 3}}
    assert out == {"train": {"steps": 4}, "optimizer": {"name": "sgd"}}


def test_dumps_toml_arrays_of_tables_and_escapes():
    text = dumps_toml({"name": 'a "b"\\c', "model": {"layers": [{"type": "dense", "units": 3}]},
                       "train": {"steps": 2, "flag": True, "xs": [1.5, 2]}})
    import tomllib

    assert tomllib.loads(text) == {"name": 'a "b"\\c', "model": {"layers": [{"type": "dense", "units": 3}]},
                                   "train": {"steps": 2, "flag": True, "xs": [1.5, 2]}}
    assert "[[model.layers]]" in text


def test_dist_and_train_options_reach_the_trainer():
    from distnet.jobs.job import build_trainer

    cfg = parse_job(MINIMAL + "eval_batch_size = 7\n[dist]\nstall_timeout = 9.5\ncheck_every = 3\n"
                    "max_bad_steps = 2\nbucket_bytes = 4096\n[ema]\ndecay = 0.5\nnum_updates = false\n"
                    "[data]\ntrain_samples = 30\ntest_samples = 10\n[checkpoint]\ndir = \"\"\n")
    from distnet.training.hooks.checkpointing import Checkpointing
    from distnet.training.hooks.parameter_check import ParameterCheck
    from distnet.training.hooks.stall_watchdog import StallWatchdog

    t = build_trainer(cfg)
    assert (t.hook(StallWatchdog).stall_timeout, t.hook(ParameterCheck).every) == (9.5, 3)
    assert (t.config.max_bad_steps, t.config.eval_batch_size) == (2, 7)
    assert t.ema is not None and t.ema.decay == 0.5 and t.config.ema_num_updates is False
    assert t.config.global_batch_size == 10 and t.total_steps == 3 and t.hook(Checkpointing) is None
    assert t.config.strategy_options["bucket_bytes"] == 4096
    assert len(t.train_data) == 30 and len(t.eval_data) == 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_builds_its_model_and_optimizer(path):
    from distnet.jobs.job import build_ema, build_model, build_optimizer

    cfg = load_job(path)
    from distnet.data.synthetic import SYNTHETIC_NAMES

    model = build_model(cfg)
    model.build((None, 8) if cfg.data.name in SYNTHETIC_NAMES else (None, 28, 28, 1))   # tabular: 8 features
    names = {v.name for v in model.trainable_variables}
    dense = [l for l in cfg.model.layers if l["type"] == "dense"]
    assert len([n for n in names if n.endswith("/kernel")]) == len(dense) + sum(
        l["type"] in ("conv2d", "conv2d_transpose", "lstm", "gru") for l in cfg.model.layers)
    n_reg = sum("kernel_regularizer" in l for l in cfg.model.layers)
    assert len(model.regularization_losses) == n_reg
    opt = build_optimizer(cfg)
    assert type(opt).__name__.lower().startswith(cfg.optimizer.name.replace("sgd", "gradientdescent"))
    assert (build_ema(cfg) is not None) == cfg.ema.enabled


def test_seed003_model_names_and_l2_term():
    import numpy as np

    from distnet.jobs.job import build_model

    cfg = load_job(ROOT / "examples" / "jobs" / "seed003_l2.toml")
    from distnet.data.synthetic import SYNTHETIC_NAMES

    model = build_model(cfg)
    model.build((None, 8) if cfg.data.name in SYNTHETIC_NAMES else (None, 28, 28, 1))   # tabular: 8 features
    shapes = {v.name: v.shape for v in model.trainable_variables}
    assert shapes == {"conv1/kernel": (5, 5, 1, 32), "conv1/bias": (32,), "fc1/kernel": (14 * 14 * 32, 1024),
                      "fc1/bias": (1024,), "fc2/kernel": (1024, 10), "fc2/bias": (10,)}
    by_name = {v.name: v.numpy().astype(np.float64) for v in model.trainable_variables}
    # TF1: l2_regularizer(0.004)(w) = 0.004 * sum(w**2) / 2, one term per FC kernel.
    expected = sum(0.004 * np.sum(by_name[k] ** 2) / 2 for k in ("fc1/kernel", "fc2/kernel"))
    got = sum(float(t.numpy()) for t in model.regularization_losses)
    # The terms are float32 sums over 6.4 M weights: agree to float32 accumulation error.
    assert got == pytest.approx(expected, rel=1e-4)
    assert np.allclose(by_name["fc1/bias"], 0.1) and np.abs(by_name["fc1/kernel"]).max() <= 0.2


def test_schedule_from_the_job():
    from distnet.jobs.job import build_schedule

    lr = build_schedule(load_job(ROOT / "examples" / "jobs" / "mlp.toml"))
    # warm-up 50 steps to 0.05, then 0.05 * 0.5 ** (s / 600) counted from the end of the warm-up
    assert [lr(0), lr(25), lr(50), lr(650)] == pytest.approx([0.0, 0.025, 0.05, 0.025])
    lr = build_schedule(parse_job('[optimizer]\nlearning_rate = 0.1\n[schedule]\ntype = "exponential"\n'
                                  'decay_steps = 10\ndecay_rate = 0.5\nstaircase = true\n'))
    assert [lr(9), lr(10), lr(25)] == pytest.approx([0.1, 0.05, 0.025])
    lr = build_schedule(parse_job('[schedule]\ntype = "piecewise"\nboundaries = [5]\nvalues = [1.0, 0.5]\n'))
    assert [lr(5), lr(6)] == pytest.approx([1.0, 0.5])
    assert build_schedule(parse_job("[optimizer]\nlearning_rate = 0.3\n")) == 0.3


# -- the plain sections are declared once (distnet/jobs/schema.py) ---------------------------------

def _plain_keys():
    from distnet.jobs.schema import SECTIONS

    return [(name, key) for name, section in SECTIONS.items() for key in section.keys]


def _other_value(key):
    """A valid value of ``key`` other than its default."""
    from distnet import registry

    if key.choices:
        return next(c for c in key.choices if c != key.default)
    return {registry.INT: 7 if key.default != 7 else 8, registry.FLOAT: 0.25 if key.default != 0.25 else 0.5,
            registry.BOOL: not key.default if key.default is not None else True}[key.type]


def test_every_declared_key_is_a_dataclass_field_with_its_default():
    from distnet.jobs.schema import SECTIONS

    cfg = JobConfig()
    for name, section in SECTIONS.items():
        fields = dataclasses.fields(getattr(cfg, name))
        assert [f.name for f in fields] == [k.name for k in section.keys], name
        for f, key in zip(fields, section.keys):
            assert f.default == key.default, f"{name}.{key.name}"


@pytest.mark.parametrize("name,key", _plain_keys(), ids=lambda x: getattr(x, "name", x))
def test_every_declared_key_is_validated(name, key):
    from distnet import registry

    wrong = {registry.INT: '"x"', registry.FLOAT: '"x"', registry.BOOL: '"x"', registry.STR: "1",
             registry.TABLE: "1", registry.STR_OR_TABLE: "1"}[key.type]
    with pytest.raises(ConfigError, match=rf"{name}\.{key.name}: Expect: {re.escape(key.type)}"):
        parse_job("", overrides=[f"{name}.{key.name}={wrong}"])
    if key.low is not None:
        bad = key.low if key.low_open else key.low - 1
        with pytest.raises(ConfigError, match=rf"{name}\.{key.name}: Expect: {re.escape(key.range_text())} Actual:"):
            parse_job("", overrides=[f"{name}.{key.name}={bad}"])
    if key.choices:
        with pytest.raises(ConfigError, match=rf"{name}\.{key.name}: unknown value 'nothing_like_it'"):
            parse_job("", overrides=[f"{name}.{key.name}=nothing_like_it"])


def test_every_declared_key_is_built(monkeypatch):
    """A key with a Trainer keyword reaches the Trainer as it is; build_trainer hands the Trainer no
    other job value by hand; a key without one names the function that reads it, and that function does."""
    import importlib
    import inspect

    import distnet.training.trainer
    from distnet.jobs import job
    from distnet.training.options import SERVICES
    from distnet.training.settings import TrainConfig as LoopConfig

    seen = {}

    class Recorder:
        def __init__(self, model, loss, optimizer, data, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(distnet.training.trainer, "Trainer", Recorder)
    with_arg = [(name, key) for name, key in _plain_keys() if key.arg]
    values = {key.arg: _other_value(key) for name, key in with_arg}
    values["conv_algorithm"] = "fft"   # not "auto": dist.deterministic, set too, refuses a measured choice
    overrides = [f"{name}.{key.name}={str(values[key.arg]).lower()}" for name, key in with_arg]
    cfg = parse_job(MINIMAL, overrides=[o for o in overrides if not o.startswith("train.epochs")])
    job.build_trainer(cfg)
    for name, key in with_arg:
        assert key.arg in LoopConfig.names() or key.arg in SERVICES, f"Trainer takes no {key.arg!r}"
        if key.name != "epochs":   # steps was set, which excludes epochs
            assert seen[key.arg] == values[key.arg], f"{name}.{key.name}"
    by_hand = set(seen) - {key.arg for _, key in with_arg}
    assert by_hand == {"eval_data", "validation_data", "hooks", "ema", "seed", "comm", "checkpoint_dir",
                       "config_text", "trace", "strategy", "strategy_options", "logger"}
    for name, key in _plain_keys():
        if key.arg:
            continue
        assert key.used_by, f"{name}.{key.name}: no Trainer keyword and no used_by"
        module, _, attr = key.used_by.rpartition(".")
        try:
            reader = getattr(importlib.import_module(module), attr)
        except (ImportError, ValueError, AttributeError):   # a module not imported yet: distnet.jobs.cli
            reader = importlib.import_module(key.used_by)
        assert re.search(rf"\.{key.name}\b|\b{name}\.{key.name}\b", inspect.getsource(reader)), \
            f"{key.used_by} does not read {name}.{key.name}"


def test_every_declared_key_is_documented():
    from distnet.jobs import registry_docs

    text = (Path(__file__).resolve().parents[1] / "docs" / "jobs.md").read_text(encoding="utf-8")
    for name, key in _plain_keys():
        assert f"<!-- registry: {name} -->" in text
        assert f"| `{key.name}` | {key.doc}" in registry_docs.render_section(name)
    assert registry_docs.update(text) == text, "run python -m distnet.jobs.registry_docs docs/jobs.md"


def test_a_key_defaults_to_what_the_trainer_does_unless_the_job_says_otherwise():
    """The job hands every key with a Trainer keyword over, default or not (no None filter), so a
    default stated twice must agree; only the watchdog differs on purpose (a job turns it on)."""
    import inspect

    from distnet.training.options import SERVICES
    from distnet.training.settings import TrainConfig as LoopConfig

    loop = {name: p.default for name, p in inspect.signature(LoopConfig).parameters.items()}
    differ = {}
    for name, key in _plain_keys():
        if key.arg:
            trainer_default = loop[key.arg] if key.arg in loop else SERVICES[key.arg]
            if trainer_default != key.default:
                differ[key.arg] = (key.default, trainer_default)
    assert differ == {"stall_timeout": (120.0, None)}
