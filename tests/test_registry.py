"""The component registry: names, aliases, options, and that the validator, the
builder and docs/jobs.md all follow it (a component added anywhere reaches all three)."""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

import distnet
from distnet import registry
from distnet.jobs import registry_docs
from distnet.jobs.config import parse_job
from distnet.errors import ConfigError, InvalidArgumentError
from distnet.jobs.job import build_model, build_optimizer
from distnet.layers import Dense, get_activation
from distnet.layers.base import NAME, Layer
from distnet.registry import FLOAT, Option, register

DOCS = Path(__file__).resolve().parents[1] / "docs" / "jobs.md"

LAYERS = """\
[[model.layers]]
type = "flatten"

[[model.layers]]
type = "{kind}"
{extra}

[[model.layers]]
type = "dense"
units = 10
"""


# -- docs/jobs.md -----------------------------------------------------------------

def test_docs_tables_are_the_registry():
    text = DOCS.read_text(encoding="utf-8")
    for kind in registry.KINDS:
        assert f"<!-- registry: {kind} -->" in text, f"docs/jobs.md has no table of the {kind}s"
    assert registry_docs.update(text) == text, (
        "docs/jobs.md's component tables are out of date: run python -m distnet.jobs.registry_docs docs/jobs.md")


def test_every_component_and_option_has_a_doc():
    for kind in registry.KINDS:
        found = registry.components(kind)
        assert found, kind
        for c in found:
            assert c.doc, (kind, c.name)
            for opt in c.options:
                assert opt.doc, (kind, c.name, opt.name)


def test_documented_defaults_are_the_constructors():
    """A registered default is what the constructor does when the job leaves the key out."""
    checked = 0
    for kind in registry.KINDS:
        for c in registry.components(kind):
            for opt in c.options:
                if opt.required:
                    continue
                functions = ([k.__init__ for k in c.obj.__mro__ if "__init__" in vars(k)]
                             if isinstance(c.obj, type) else [c.obj])
                for fn in functions:
                    params = inspect.signature(fn).parameters
                    if opt.parameter in params:
                        assert params[opt.parameter].default == opt.default, (kind, c.name, opt.name)
                        checked += 1
                        break
                else:
                    raise AssertionError(f"{kind} {c.name}: no parameter {opt.parameter!r}")
    assert checked > 30


def test_registry_docs_check_and_rewrite(tmp_path):
    f = tmp_path / "jobs.md"
    f.write_text("# x\n\n<!-- registry: schedule -->\n| stale |\n<!-- end registry -->\ntail\n")
    assert registry_docs.main(["--check", str(f)]) == 1
    assert registry_docs.main([str(f)]) == 0
    text = f.read_text()
    assert "| stale |" not in text and '`"cosine"`' in text and text.endswith("<!-- end registry -->\ntail\n")
    assert registry_docs.main(["--check", str(f)]) == 0
    with pytest.raises(ValueError, match="Expect: one of"):
        registry_docs.update("<!-- registry: losses -->\n<!-- end registry -->")


# -- names, aliases and building -------------------------------------------------------

def test_names_aliases_and_case():
    assert registry.names("optimizer") == ("sgd", "momentum", "adagrad", "adadelta", "rmsprop", "adam", "adamw")
    assert registry.lookup("optimizer", "Gradient_Descent").obj is distnet.optimizers.GradientDescent
    assert registry.lookup("layer", "FC").obj is Dense
    assert registry.lookup("activation", "none").name == "linear"
    assert registry.lookup("layer", "transformer") is None
    assert get_activation("linear") is None and get_activation("none") is None
    assert get_activation("Relu") is distnet.nn.relu


def test_make():
    w = distnet.constant([[5.0, -2.0], [-3.0, 1.0]])
    assert float(registry.make("regularizer", {"type": "l2", "scale": 0.5})(w).numpy()) == 9.75
    assert float(registry.make("regularizer", {"type": "l1", "scale": 0.5})(w).numpy()) == 5.5
    assert registry.make("initializer", "he_normal") is distnet.model.initializers.he_normal
    assert repr(registry.make("initializer", {"type": "constant", "value": 0.1})) == "constant(0.1)"
    with pytest.raises(InvalidArgumentError, match="initializer 'constant': unknown parameter 'stddev'"):
        registry.make("initializer", {"type": "constant", "stddev": 1.0})
    with pytest.raises(InvalidArgumentError, match="unknown regularizer 'l3'; expected one of"):
        registry.make("regularizer", "l3")
    with pytest.raises(InvalidArgumentError, match="Expect: a name or a table with a 'type'"):
        registry.make("regularizer", {"scale": 1.0})


def test_option_ranges():
    beta = Option("beta1", FLOAT, 0.9, "x", low=0.0, high=1.0, high_open=True)
    assert beta.range_text() == "in [0, 1)" and beta.in_range(0.0) and not beta.in_range(1.0)
    positive = Option("epsilon", FLOAT, 1e-8, "x", low=0.0, low_open=True)
    assert positive.range_text() == "> 0" and not positive.in_range(0.0) and positive.in_range(1e-30)
    assert Option("n", FLOAT, 1.0, "x").range_text() == ""


def test_register_needs_a_known_kind_and_a_doc():
    with pytest.raises(ValueError, match="unknown kind 'metric'"):
        register("metric", "hinge", doc="x")
    with pytest.raises(ValueError, match="needs a doc"):
        register("layer", "thing", doc="")


def test_a_subclass_is_not_registered_by_inheritance(monkeypatch):
    class MyAdam(distnet.optimizers.Adam):
        pass

    monkeypatch.setattr(distnet.optimizers, "MyAdam", MyAdam, raising=False)
    assert [c.obj for c in registry.components("optimizer")].count(distnet.optimizers.Adam) == 1
    assert MyAdam not in [c.obj for c in registry.components("optimizer")]


# -- a new component reaches the validator, the builder and the docs check -------------------

def test_a_new_layer_is_validated_built_and_missing_from_the_docs(monkeypatch):
    @register("layer", "scale", Option("factor", FLOAT, 1.0, "the factor", low=0.0, low_open=True), NAME,
              doc="`factor * x`")
    class Scale(Layer):
        base_name = "scale"

        def __init__(self, factor=1.0, name=None):
            super().__init__(name=name)
            self.factor = factor

        def call(self, x, training=False, rng=None, sample_keys=None):
            return x * self.factor

    monkeypatch.setattr(distnet.layers, "Scale", Scale, raising=False)

    cfg = parse_job(LAYERS.format(kind="Scale", extra="factor = 2"))
    assert cfg.model.layers[1] == {"type": "scale", "factor": 2.0}
    model = build_model(cfg)
    out = model(np.ones((1, 3), np.float32))
    assert out.shape == (1, 10)
    assert isinstance(model.layers[1], Scale) and model.layers[1].factor == 2.0

    with pytest.raises(ConfigError, match=r"model.layers\[1\].factor: Expect: > 0 Actual: 0.0"):
        parse_job(LAYERS.format(kind="scale", extra="factor = 0"), "job.toml")
    with pytest.raises(ConfigError, match=r"model.layers\[1\].factr: unknown key; did you mean 'factor'"):
        parse_job(LAYERS.format(kind="scale", extra="factr = 2"), "job.toml")

    text = DOCS.read_text(encoding="utf-8")
    assert registry_docs.update(text) != text  # test_docs_tables_are_the_registry would fail
    assert '| `"scale"` | `factor` (1.0): the factor, > 0 | `factor * x` |' in registry_docs.render("layer")


def test_a_new_activation_and_optimizer_option_reach_the_job(monkeypatch):
    def swish(x, name=None):
        return x * distnet.nn.sigmoid(x)

    monkeypatch.setattr(distnet.nn.activations, "swish",
                        register("activation", "swish", doc="`x * sigmoid(x)`")(swish), raising=False)
    cfg = parse_job(LAYERS.format(kind="dense", extra='units = 4\nactivation = "SWISH"'))
    assert cfg.model.layers[1]["activation"] == "swish"
    assert build_model(cfg).layers[1].activation is swish

    # An unknown optimizer lists every registered name, in registration order.
    with pytest.raises(ConfigError, match="expected one of: sgd, momentum, adagrad, adadelta, rmsprop, adam, adamw$"):
        parse_job('[optimizer]\nname = "lamb"\n', "job.toml")
    opt = build_optimizer(parse_job('[optimizer]\nname = "rmsprop"\nclip_norm = 2.5\ncentered = true\n'))
    assert opt.global_clipnorm == 2.5 and opt.centered and opt.slot_names == ("rms", "momentum", "mg")
