"""Job files: parse and validate a TOML job into a :class:`JobConfig`.

A job file describes one training run (see ``docs/jobs.md`` for every key)::

    seed = 0
    run_dir = "runs/my_job"

    [[model.layers]]
    type = "conv2d"
    filters = 32
    kernel_size = 5
    activation = "relu"

    [optimizer]
    name = "adam"
    learning_rate = 1e-4

    [train]
    batch_size = 100
    steps = 1000

Everything is checked before any worker starts: an unknown key (with a "did
you mean" suggestion), a value of the wrong type or an impossible value
raises :class:`~distnet.errors.ConfigError` naming the key and, where the
key comes from a file, the file and line.  ``--set key.path=value``
overrides are applied before validation, so they are checked the same way.
"""
from __future__ import annotations

import copy
import difflib
import math
import os
import re
import sys
import warnings
from dataclasses import asdict, dataclass, field, make_dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from distnet import registry
from distnet.errors import ConfigError
from distnet.jobs.schema import BUILTIN_DATASETS, METRICS, SECTIONS, Section

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "JobConfig", "ModelConfig", "LossConfig", "RegularizationConfig", "OptimizerConfig",
    "ScheduleConfig", "EMAConfig", "DataConfig", "TrainConfig", "CheckpointConfig",
    "DistConfig", "load_job", "parse_job", "default_job", "apply_overrides",
    "parse_override", "check_world_size", "dumps_toml", "BUILTIN_DATASETS",
]


# ---------------------------------------------------------------------------
# The dataclasses: one per section, every field with its default.
# ---------------------------------------------------------------------------


#: The default model, used when a job has no ``[model]`` section: the reference
#: net (conv 5x5x32 SAME + relu, max-pool 2, dense 1024 relu, dense 10; docs/jobs.md).
DEFAULT_LAYERS: tuple[dict, ...] = (
    {"type": "conv2d", "filters": 32, "kernel_size": 5, "padding": "same", "activation": "relu"},
    {"type": "max_pool2d", "pool_size": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 1024, "activation": "relu"},
    {"type": "dense", "units": 10},
)


@dataclass
class ModelConfig:
    """``[model]``: the layers, in order, each a dict with a ``type`` key."""

    layers: list[dict] = field(default_factory=lambda: [dict(x) for x in DEFAULT_LAYERS])


@dataclass
class LossConfig:
    """``[loss]``: the base loss between labels and the model's logits."""

    type: str = "sparse_softmax_cross_entropy"


@dataclass
class OptimizerConfig:
    """``[optimizer]``: the optimizer's name and its hyper-parameters."""

    name: str = "adam"
    learning_rate: float = 1e-3
    params: dict = field(default_factory=dict)  # beta1, momentum, clip_norm, ...


@dataclass
class ScheduleConfig:
    """``[schedule]``: learning rate as a function of the global step."""

    type: str = "constant"
    warmup_steps: int = 0
    params: dict = field(default_factory=dict)  # decay_steps, decay_rate, ...


def _section_class(section: Section) -> type:
    """The dataclass of a plain section: one field per declared key, with its default."""
    cls = make_dataclass(section.cls, [(k.name, Any, field(default=k.default)) for k in section.keys])
    cls.__doc__ = f"``[{section.name}]``: {section.doc}."
    cls.__module__ = __name__
    return cls


RegularizationConfig = _section_class(SECTIONS["regularization"])
EMAConfig = _section_class(SECTIONS["ema"])
DataConfig = _section_class(SECTIONS["data"])
TrainConfig = _section_class(SECTIONS["train"])
CheckpointConfig = _section_class(SECTIONS["checkpoint"])
DistConfig = _section_class(SECTIONS["dist"])


@dataclass
class JobConfig:
    """One validated training job.  Build it with :func:`load_job` or :func:`parse_job`.

    Example:
        >>> cfg = parse_job('[train]\\nsteps = 10\\n', overrides=["optimizer.learning_rate=0.01"])
        >>> cfg.optimizer.learning_rate, cfg.train.steps
        (0.01, 10)
    """

    name: str = "job"
    seed: int = 0
    run_dir: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    source: str = "<default job>"  # where the job came from (file name), for messages

    def to_dict(self) -> dict:
        """The job as a plain dict in the job-file layout (what :func:`dumps_toml` writes)."""
        return _config_to_raw(self)

    def to_toml(self) -> str:
        """The job as TOML text: parsing it again gives an equal :class:`JobConfig`."""
        return dumps_toml(self.to_dict())


# ---------------------------------------------------------------------------
# The schema: which keys each section takes, their types and allowed values.
# ---------------------------------------------------------------------------

# What a value must be; the component modules use the same words (distnet.registry).
_INT, _FLOAT, _BOOL, _STR, _TABLE = registry.INT, registry.FLOAT, registry.BOOL, registry.STR, registry.TABLE

# The layers, activations, initializers, regularizers, optimizers, schedules and
# losses, their names and keys, come from where they are defined: see distnet.registry.

_TOP = {"name": _STR, "seed": _INT, "run_dir": _STR}
_SECTIONS: dict[str, dict[str, str]] = {
    "model": {"layers": "a list of tables"},
    "loss": {"type": _STR},
    "optimizer": {"name": _STR, "learning_rate": _FLOAT},  # + per-optimizer keys
    "schedule": {"type": _STR, "warmup_steps": _INT},      # + per-schedule keys
    # The plain sections, declared in distnet.jobs.schema:
    **{name: {k.name: k.type for k in section.keys} for name, section in SECTIONS.items()},
}


# ---------------------------------------------------------------------------
# Locating keys in the file text (tomllib gives no positions).
# ---------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEYLINE = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _split_dotted(key: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", key)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


class _Locator:
    """Maps key paths (``("optimizer", "learning_rate")``) to 1-based line numbers.

    A small scan for ``key =`` under its ``[section]`` header; arrays of tables
    (``[[model.layers]]``) are numbered in order.  A path not found falls back to
    its closest located parent (a key inside an inline table gets the table's line).
    """

    def __init__(self, text: str | None, filename: str | None, overrides: Iterable[str] = ()):
        self.filename = filename
        self.lines: dict[tuple, int] = {}
        self.overridden: dict[tuple, str] = {}
        for item in overrides:
            key = item.split("=", 1)[0].strip()
            self.overridden[tuple(_path_from_override(key))] = item
        if not text:
            return
        prefix: tuple = ()
        counters: dict[tuple, int] = {}
        for lineno, line in enumerate(text.splitlines(), start=1):
            m = _HEADER.match(line)
            if m and not _KEYLINE.match(line):
                path = tuple(_split_dotted(m.group(2)))
                if m.group(1) == "[[":
                    index = counters.get(path, 0)
                    counters[path] = index + 1
                    prefix = path + (index,)
                else:
                    prefix = path
                self.lines.setdefault(prefix, lineno)
                continue
            k = _KEYLINE.match(line)
            if k:
                parts = tuple(_split_dotted(k.group(1)))
                for n in range(1, len(parts) + 1):  # dotted keys also locate their tables
                    self.lines.setdefault(prefix + parts[:n], lineno)

    def where(self, path: tuple) -> str:
        """``"--set a.b=1"``, ``"job.toml:12"``, ``"job.toml"`` or ``""``."""
        for n in range(len(path), 0, -1):
            if tuple(path[:n]) in self.overridden:
                return f"--set {self.overridden[tuple(path[:n])]}"
        for n in range(len(path), 0, -1):
            if tuple(path[:n]) in self.lines:
                return f"{self.filename or '<job>'}:{self.lines[tuple(path[:n])]}"
        return self.filename or ""


def _dotted(path: Iterable) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _Checker:
    """Collects the location logic so every error reads the same way."""

    def __init__(self, locator: _Locator):
        self.loc = locator

    def fail(self, path: tuple, message: str) -> None:
        where = self.loc.where(path)
        key = _dotted(path)
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}{key}: {message}" if key else f"{prefix}{message}")

    def known(self, table: Mapping, path: tuple, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.fail(path + (key,), f"unknown key; {hint}expected one of: "
                          + ", ".join(sorted(allowed)))

    def typed(self, value: Any, path: tuple, kind: str) -> Any:
        ok = {
            _INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
            _FLOAT: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            _BOOL: lambda v: isinstance(v, bool),
            _STR: lambda v: isinstance(v, str),
            _TABLE: lambda v: isinstance(v, dict),
            "a list of tables": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
            registry.INT_LIST: lambda v: isinstance(v, list) and all(
                isinstance(x, int) and not isinstance(x, bool) for x in v),
            registry.NUMBER_LIST: lambda v: isinstance(v, list) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v),
            registry.STR_OR_TABLE: lambda v: isinstance(v, (str, dict)),
            registry.INT_OR_PAIR: lambda v: (
                isinstance(v, int) and not isinstance(v, bool)) or (
                isinstance(v, list) and len(v) == 2 and all(
                    isinstance(x, int) and not isinstance(x, bool) for x in v)),
        }[kind]
        if not ok(value):
            self.fail(path, f"Expect: {kind} Actual: {_describe(value)}")
        if kind == _FLOAT:
            value = float(value)
            if not math.isfinite(value):
                self.fail(path, f"Expect: a finite number Actual: {value}")
        if kind == registry.NUMBER_LIST:
            value = [float(x) for x in value]
            if not all(math.isfinite(x) for x in value):
                self.fail(path, f"Expect: finite numbers Actual: {value}")
        return value

    def positive(self, value, path: tuple, allow_zero: bool = False) -> None:
        if value is None:
            return
        if value < 0 or (value == 0 and not allow_zero):
            self.fail(path, f"Expect: {'>= 0' if allow_zero else '> 0'} Actual: {value}")

    def choice(self, value: str, path: tuple, choices: Iterable[str]) -> str:
        choices = list(choices)
        if value not in choices:
            close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            self.fail(path, f"unknown value '{value}'; {hint}expected one of: " + ", ".join(choices))
        return value


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return f"a list ({_short(value)})"
    if isinstance(value, dict):
        return f"a table ({_short(value)})"
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------

def _path_from_override(key: str) -> list:
    return [int(p) if p.isdigit() else p for p in _split_dotted(key)]


def parse_override(item: str) -> tuple[list, Any]:
    """Split ``"optimizer.learning_rate=0.01"`` into its key path and value.

    The value is parsed as a TOML value (``0.01``, ``true``, ``[1, 2]``,
    ``{type = "l2", scale = 0.004}``); if that fails it is taken as a string,
    so ``data.path=/tmp/x.h5`` needs no quotes.  A number in the path indexes a
    list: ``model.layers.2.units=512``.

    Returns:
        ``(path, value)``.
    """
    if "=" not in item:
        raise ConfigError(f"--set {item}: Expect: KEY=VALUE (e.g. optimizer.learning_rate=0.01) Actual: no '='")
    key, text = item.split("=", 1)
    key, text = key.strip(), text.strip()
    if not key or not re.fullmatch(r"[A-Za-z0-9_.-]+", key) or ".." in key or key.startswith("."):
        raise ConfigError(f"--set {item}: Expect: a dotted key like optimizer.learning_rate Actual: {key!r}")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return _path_from_override(key), value


# Keys that exclude each other: overriding one removes the other from the job,
# so ``--set train.steps=10`` works on a job that sets ``train.epochs``.
_EXCLUSIVE = {("train", "steps"): ("train", "epochs"), ("train", "epochs"): ("train", "steps")}


def apply_overrides(raw: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of the raw job dict with ``--set`` overrides applied.

    Setting one of two exclusive keys (``train.steps`` / ``train.epochs``)
    removes the other one.
    """
    raw = copy.deepcopy(raw)
    for item in overrides:
        path, value = parse_override(item)
        other = _EXCLUSIVE.get(tuple(path))
        if other is not None and isinstance(raw.get(other[0]), dict):
            raw[other[0]].pop(other[1], None)
        if path[0] == "model" and "model" not in raw:  # overriding the default model's layers
            raw["model"] = {"layers": [dict(layer) for layer in DEFAULT_LAYERS]}
        node: Any = raw
        for i, part in enumerate(path[:-1]):
            if isinstance(node, list):
                if not isinstance(part, int) or not 0 <= part < len(node):
                    raise ConfigError(f"--set {item}: {_dotted(path[:i])} has {len(node)} entries, "
                                      f"no index {part}")
                node = node[part]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: {_dotted(path[:i])} is not a table")
            if isinstance(path[i + 1], int) and part not in node:
                raise ConfigError(f"--set {item}: {_dotted(path[:i + 1])} is not set in the job")
            node = node.setdefault(part, {})
        last = path[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or not 0 <= last < len(node):
                raise ConfigError(f"--set {item}: {_dotted(path[:-1])} has {len(node)} entries, "
                                  f"no index {last}")
            node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {item}: {_dotted(path[:-1])} is not a table")
    return raw


# ---------------------------------------------------------------------------
# Validation: raw dict -> JobConfig
# ---------------------------------------------------------------------------

def _validate(raw: dict, chk: _Checker, base_dir: Path | None) -> JobConfig:
    chk.known(raw, (), list(_TOP) + list(_SECTIONS))
    for key, kind in _TOP.items():
        if key in raw:
            chk.typed(raw[key], (key,), kind)
    for section in _SECTIONS:
        if section in raw and not isinstance(raw[section], dict):
            chk.fail((section,), f"Expect: a table ([{section}]) Actual: {_describe(raw[section])}")

    cfg = JobConfig()
    cfg.name = raw.get("name", cfg.name)
    cfg.seed = raw.get("seed", cfg.seed)
    chk.positive(cfg.seed, ("seed",), allow_zero=True)
    cfg.run_dir = raw.get("run_dir")

    def simple(section: str, target: Any, skip: Iterable[str] = ()) -> dict:
        table = raw.get(section, {})
        for key, kind in _SECTIONS[section].items():
            if key in table and key not in skip:
                setattr(target, key, chk.typed(table[key], (section, key), kind))
        return table

    # [model]
    model = raw.get("model", {})
    chk.known(model, ("model",), _SECTIONS["model"])
    if "model" in raw:
        cfg.model.layers = []
    if "layers" in model:
        chk.typed(model["layers"], ("model", "layers"), "a list of tables")
        cfg.model.layers = [_validate_layer(layer, ("model", "layers", i), chk)
                            for i, layer in enumerate(model["layers"])]
    if not cfg.model.layers:
        chk.fail(("model", "layers"), "the model needs at least one layer "
                 "(add [[model.layers]] tables, or leave [model] out for the default model)")
    _check_model_order(cfg.model.layers, chk)

    # [loss]
    loss = raw.get("loss", {})
    chk.known(loss, ("loss",), _SECTIONS["loss"])
    simple("loss", cfg.loss)
    from distnet.model.losses import job_losses

    chk.choice(cfg.loss.type, ("loss", "type"), job_losses())

    # [regularization]
    _plain(raw, "regularization", cfg.regularization, chk)

    # [optimizer] and [schedule]: a registered component by name, then its options
    opt, optimizer = _component_section(raw, "optimizer", "name", cfg.optimizer, chk, simple)
    chk.positive(cfg.optimizer.learning_rate, ("optimizer", "learning_rate"))
    cfg.optimizer.params = _options(opt, optimizer, ("optimizer",), chk, f"the {optimizer.name} optimizer")
    sched, schedule = _component_section(raw, "schedule", "type", cfg.schedule, chk, simple)
    chk.positive(cfg.schedule.warmup_steps, ("schedule", "warmup_steps"), allow_zero=True)
    cfg.schedule.params = _options(sched, schedule, ("schedule",), chk, f"the {schedule.name} schedule")

    # [ema]
    ema = _plain(raw, "ema", cfg.ema, chk)
    if "ema" in raw and "enabled" not in ema:
        cfg.ema.enabled = True  # an [ema] section switches it on

    # [data]
    _plain(raw, "data", cfg.data, chk)
    from_cli = ("data", "path") in chk.loc.overridden  # a --set path is relative to the cwd
    _check_data(cfg.data, chk, None if from_cli else base_dir)

    # [train]
    _plain(raw, "train", cfg.train, chk)
    t = cfg.train
    if t.epochs is not None and t.steps is not None:
        chk.fail(("train", "steps"), f"set either train.epochs or train.steps, not both "
                 f"(got epochs = {t.epochs} and steps = {t.steps})")
    if t.epochs is None and t.steps is None:
        t.epochs = 1
    if t.micro_batches > t.batch_size:
        chk.fail(("train", "micro_batches"), f"Expect: at most train.batch_size ({t.batch_size}) "
                 f"Actual: {t.micro_batches}")

    # [checkpoint]
    _plain(raw, "checkpoint", cfg.checkpoint, chk)
    if cfg.checkpoint.every and cfg.checkpoint.dir == "":
        chk.fail(("checkpoint", "every"), "checkpoint.every needs checkpoints on, "
                 "but checkpoint.dir is \"\" (off)")

    # [dist]
    _plain(raw, "dist", cfg.dist, chk)
    cfg.dist.strategy = _validate_strategy(cfg.dist.strategy, ("dist", "strategy"), chk)
    _check_selection(cfg, chk)
    _check_deterministic(cfg, chk)
    return cfg


def _check_deterministic(cfg: JobConfig, chk: _Checker) -> None:
    """What ``[dist] deterministic`` cannot cover, refused before any worker starts (the Trainer
    refuses the same: distnet/training/deterministic.py)."""
    if not cfg.dist.deterministic:
        return
    _, options = strategy_spec(cfg.dist.strategy)
    lossy = [f"{key} = {_toml_value(options[key])}" for key in ("compression", "overlap")
             if options.get(key, False) not in (False, "none")]
    if lossy:
        chk.fail(("dist", "deterministic"), "Expect: a strategy without compression or overlap (the exact sum "
                 f"replaces the float reduction) Actual: dist.strategy with {' and '.join(lossy)}")
    if cfg.train.conv_algorithm == "auto":
        chk.fail(("dist", "deterministic"), "Expect: train.conv_algorithm \"gemm\", \"fft\" or \"winograd\" "
                 "(one fixed arithmetic) Actual: \"auto\" (measured at start-up: another run may choose another)")


def _plain(raw: dict, section: str, target: Any, chk: _Checker) -> dict:
    """Validate a plain section into ``target`` from its declared keys (distnet.jobs.schema):
    each value's type, then its choices and range.  Rules across keys are the caller's."""
    table = raw.get(section, {})
    declared = SECTIONS[section]
    chk.known(table, (section,), [k.name for k in declared.keys])
    for key in declared.keys:
        if key.name not in table:
            continue
        where = (section, key.name)
        value = chk.typed(table[key.name], where, key.type)
        if key.choices:
            value = chk.choice(value.lower().replace("-", "_"), where, key.choices)
        if (key.low is not None or key.high is not None) and not key.in_range(value):
            chk.fail(where, f"Expect: {key.range_text()} Actual: {value}")
        setattr(target, key.name, value)
    return table


def _validate_strategy(spec: Any, path: tuple, chk: _Checker) -> str | dict:
    """``"zero1"`` or ``{type = "zero1", shared_memory = true}`` (no ``type``: ``"auto"``): the name, checked, and the options
    the named strategy (or, for ``"auto"``, some strategy) declares, checked as it declares them.

    Returns the name alone when no option is given, else the table with ``type`` first.
    """
    from distnet.distributed.strategies import all_strategies

    known = all_strategies()
    table = {"type": spec} if isinstance(spec, str) else dict(spec)
    table.setdefault("type", "auto")   # --set dist.strategy.compression=float16 on a job that names none
    at = path if isinstance(spec, str) else path + ("type",)
    name = chk.choice(chk.typed(table["type"], at, _STR).lower(), at, ["auto", *known])
    takers = list(known.values()) if name == "auto" else [known[name]]
    declared = {o.name: o for cls in takers for o in cls.options}
    chk.known({k: v for k, v in table.items() if k != "type"}, path, declared)
    out: dict[str, Any] = {"type": name}
    for key, value in table.items():
        if key == "type":
            continue
        opt, where = declared[key], path + (key,)
        if opt.type == registry.BOOL_OR_AUTO:
            if not (isinstance(value, bool) or value == "auto"):
                chk.fail(where, f"Expect: {opt.type} Actual: {_describe(value)}")
        else:
            value = chk.typed(value, where, opt.type)
        if opt.choices:
            value = chk.choice(value.lower(), where, opt.choices)
        if (opt.low is not None or opt.high is not None) and not opt.in_range(value):
            chk.fail(where, f"Expect: {opt.range_text()} Actual: {value}")
        out[key] = value
    return name if len(out) == 1 else out


def strategy_spec(spec: str | Mapping) -> tuple[str, dict]:
    """``(name, options asked for)`` of a validated ``[dist] strategy``."""
    if isinstance(spec, str):
        return spec, {}
    return spec["type"], {k: v for k, v in spec.items() if k != "type"}


#: Keys of earlier job files and where each lives now: the ONE mapping from the old layout.
#: The strategy's options were flat keys of [dist]; shard_optimizer named the strategy.
_MOVED = {("dist", key): ("dist", "strategy", key) for key in ("bucket_bytes", "overlap", "compression",
                                                               "shared_memory")}
_MOVED[("dist", "shard_optimizer")] = ("dist", "strategy", "type")


def _upgrade(raw: dict, chk: _Checker) -> dict:
    """The job in today's layout, each old key moved where :data:`_MOVED` says, with one
    deprecation line per key naming where it goes now."""
    for old, new in _MOVED.items():
        table = raw.get(old[0])
        if not isinstance(table, dict) or old[1] not in table:
            continue
        value = table.pop(old[1])
        spec = table.get("strategy", "auto")
        spec = {"type": spec} if isinstance(spec, str) else dict(spec)
        if old[1] == "shard_optimizer":
            value = chk.typed(value, old, _BOOL)
            said = "zero1" if value else "replicated"
            if spec.get("type", "auto") not in ("auto", said):
                chk.fail(old, f"Expect: no shard_optimizer with strategy = '{spec['type']}' Actual: "
                              f"shard_optimizer = {str(value).lower()} (it means '{said}')")
            hint = f'strategy = "{said}"'
            spec["type"] = said
        else:
            hint = f"strategy = {{type = \"{spec.get('type', 'auto')}\", {old[1]} = {_toml_value(value)}}}"
            spec.setdefault("type", "auto")
            spec[new[-1]] = value
        table["strategy"] = spec
        # One line naming the key where it was written (the job file's line, or the --set).
        where = chk.loc.where(old)
        file, _, line = where.rpartition(":")
        if where.startswith("--set") or not line.isdigit():
            file, line = where or "<job>", "0"
        warnings.warn_explicit(f"{_dotted(old)} is deprecated: write [dist] {hint}", FutureWarning, file, int(line))
    return raw


#: [train] early_stopping's keys and types (Keras's EarlyStopping arguments).
_EARLY_STOPPING = {"metric": _STR, "patience": _INT, "min_delta": _FLOAT, "mode": _STR,
                   "restore_best_weights": _BOOL}


def _task_metrics(cfg: JobConfig) -> tuple[str, ...]:
    """The metrics the job's evaluations give: a regression loss gives ``mae``, the others ``accuracy``."""
    found = registry.lookup("loss", cfg.loss.type)
    other = "accuracy" if found is not None and found.info.get("outputs") == "values" else "mae"
    return tuple(m for m in METRICS if not m.endswith(other))


def _check_selection(cfg: JobConfig, chk: _Checker) -> None:
    """The validation split, early stopping and the best checkpoint: chosen on validation data only."""
    v = cfg.data.validation
    if v is not None and (not v > 0 or (v >= 1 and v != int(v))):
        chk.fail(("data", "validation"), f"Expect: a whole number of samples >= 1 or a fraction in (0, 1) "
                                         f"Actual: {v:g}")
    es = cfg.train.early_stopping
    if es is not None:
        chk.known(es, ("train", "early_stopping"), _EARLY_STOPPING)
        for key, kind in _EARLY_STOPPING.items():
            if key in es:
                es[key] = chk.typed(es[key], ("train", "early_stopping", key), kind)
        es.setdefault("metric", "val_loss")
        chk.choice(es["metric"], ("train", "early_stopping", "metric"), _task_metrics(cfg))
        chk.positive(es.get("patience"), ("train", "early_stopping", "patience"), allow_zero=True)
        chk.positive(es.get("min_delta"), ("train", "early_stopping", "min_delta"), allow_zero=True)
        chk.choice(es.get("mode", "auto"), ("train", "early_stopping", "mode"), ("auto", "min", "max"))
    if cfg.checkpoint.keep_best is not None:
        chk.choice(cfg.checkpoint.keep_best, ("checkpoint", "keep_best"), _task_metrics(cfg))
    chosen = [(("train", "early_stopping", "metric"), es["metric"])] if es is not None else []
    if cfg.checkpoint.keep_best is not None:
        chosen.append((("checkpoint", "keep_best"), cfg.checkpoint.keep_best))
        if cfg.checkpoint.every == 0 or cfg.checkpoint.dir == "":
            off = "checkpoint.every = 0" if cfg.checkpoint.every == 0 else 'checkpoint.dir = ""'
            chk.fail(("checkpoint", "keep_best"), f"Expect: checkpoints on (the best one is kept beside them) "
                                                  f"Actual: they are off ({off})")
    for path, metric in chosen:   # the evaluation gives ema_* metrics only with an EMA to evaluate
        if metric.startswith("ema_") and not cfg.ema.enabled:
            chk.fail(path, f"Expect: an [ema] section (the '{metric}' metric evaluates the EMA weights) "
                           f"Actual: no EMA; add [ema] (e.g. --set ema.enabled=true) or choose '{metric[4:]}'")
    for path, wanted in ((("train", "early_stopping"), es is not None),
                         (("checkpoint", "keep_best"), cfg.checkpoint.keep_best is not None)):
        if wanted and v is None:
            chk.fail(path, "Expect: [data] validation (samples held out of the training data to choose on; "
                           "the test set is never used to choose) Actual: none")
        if wanted and not cfg.train.eval_every:
            chk.fail(path, "Expect: train.eval_every (how often the validation split is evaluated) Actual: none")



def _component_section(raw: dict, section: str, key: str, target, chk, simple) -> tuple:
    """``(the section's table, its component)`` for a section that names a registered component
    (``[optimizer] name``, ``[schedule] type``): the name checked and canonical in ``target``, the
    section's keys checked against its fields and the component's options, its plain fields set."""
    body = raw.get(section, {})
    if key in body:
        name = chk.typed(body[key], (section, key), _STR)
        setattr(target, key, _component(section, name, (section, key), chk).name)
    component = _component(section, getattr(target, key), (section, key), chk)
    chk.known(body, (section,), list(_SECTIONS[section]) + [o.name for o in component.options])
    simple(section, target, skip=(key,))
    return body, component

def _component(kind: str, name: str, path: tuple, chk: _Checker) -> registry.Component:
    """The registered component ``name`` (an alias or any case), or a "did you mean" error."""
    found = registry.lookup(kind, name)
    if found is None:
        chk.choice(name.lower(), path, registry.names(kind))  # fails, naming the choices
    return found


def _options(table: Mapping, component: registry.Component, path: tuple, chk: _Checker,
             what: str) -> dict:
    """The values of ``component``'s keys in ``table`` (the caller checks for unknown keys).

    Checks each value's type, then that required keys are there, then each
    value's range, choices or the component it names, then the component's own
    check across keys.
    """
    out: dict[str, Any] = {}
    for opt in component.options:
        if opt.name in table:
            out[opt.name] = chk.typed(table[opt.name], path + (opt.name,), opt.type)
    for opt in component.options:
        if opt.required and opt.name not in out:
            chk.fail(path, f"{what} needs '{opt.name}'")
    for opt in component.options:
        if opt.name not in out:
            continue
        where, value = path + (opt.name,), out[opt.name]
        if opt.choices:
            value = chk.choice(value.lower(), where, opt.choices)
        if opt.ref == "activation":
            value = _component("activation", value, where, chk).name
        elif opt.ref == "initializer":
            value = _validate_initializer(value, where, chk)
        elif opt.ref == "regularizer":
            value = _validate_regularizer(value, where, chk)
        items = value if isinstance(value, list) else [value]
        if (opt.low is not None or opt.high is not None) and not all(opt.in_range(x) for x in items):
            note = f" {opt.note}" if opt.note else ""
            chk.fail(where, f"Expect: {opt.range_text()}{note} Actual: {value}")
        out[opt.name] = value
    problem = component.check(out) if component.check is not None else None
    if problem is not None:
        chk.fail(path + (problem[0],), problem[1])
    return out


def _validate_layer(layer: dict, path: tuple, chk: _Checker) -> dict:
    if "type" not in layer:
        chk.fail(path, "every layer needs a 'type' (one of: " + ", ".join(registry.names("layer")) + ")")
    ltype = chk.typed(layer["type"], path + ("type",), _STR)
    component = _component("layer", ltype, path + ("type",), chk)
    chk.known(layer, path, ["type"] + [o.name for o in component.options])
    return {"type": component.name, **_options(layer, component, path, chk, f"a {component.name} layer")}


def _validate_regularizer(spec: dict, path: tuple, chk: _Checker) -> dict:
    if "type" not in spec:
        chk.fail(path, "a regularizer needs a 'type' (one of: " + ", ".join(registry.names("regularizer"))
                 + "), e.g. {type = \"l2\", scale = 0.004}")
    rtype = chk.typed(spec["type"], path + ("type",), _STR)
    component = _component("regularizer", rtype, path + ("type",), chk)
    chk.known(spec, path, ["type"] + [o.name for o in component.options])
    return {"type": component.name, **_options(spec, component, path, chk, f"an {component.name} regularizer")}


def _validate_initializer(spec: Any, path: tuple, chk: _Checker) -> Any:
    if isinstance(spec, str):
        return _component("initializer", spec, path, chk).name
    if "type" not in spec:
        chk.fail(path, "an initializer table needs a 'type', e.g. {type = \"truncated_normal\", stddev = 0.1}")
    itype = chk.typed(spec["type"], path + ("type",), _STR)
    component = _component("initializer", itype, path + ("type",), chk)
    chk.known(spec, path, ["type"] + [o.name for o in component.options])
    return {"type": component.name,
            **_options(spec, component, path, chk, f"the {component.name} initializer")}


def _check_model_order(layers: list[dict], chk: _Checker) -> None:
    """Image layers come before the first flattening one; a recurrent layer comes after a reshape (or
    an embedding); the last layer gives the logits."""
    kinds = registry.components("layer")
    flattening = "/".join(c.name for c in kinds if c.info.get("flat_output"))
    flat = False
    for i, layer in enumerate(layers):
        info = registry.lookup("layer", layer["type"]).info
        if info.get("image_input") and flat:
            chk.fail(("model", "layers", i, "type"), f"a {layer['type']} layer needs image input "
                     f"(NHWC) but comes after a {flattening} layer")
        if info.get("flat_output"):
            flat = True
        if info.get("sequence_input") and not any(registry.lookup("layer", before["type"]).info.get(
                "sequence_output") for before in layers[:i]):
            chk.fail(("model", "layers", i, "type"), f"a {layer['type']} layer takes [batch, time, features]: "
                     "put a reshape layer before it (e.g. target_shape = [28, 28] to read 28x28 images row by "
                     "row) or an embedding")
    last = layers[-1]
    if not registry.lookup("layer", last["type"]).info.get("gives_logits"):
        logits = " or ".join(c.name for c in kinds if c.info.get("gives_logits"))
        chk.fail(("model", "layers", len(layers) - 1), f"the last layer gives the logits, one per class: "
                 f"Expect: {logits} Actual: {last['type']}")
    activation = last.get("activation")
    if activation is not None and not registry.lookup("activation", activation).info.get("identity"):
        chk.fail(("model", "layers", len(layers) - 1, "activation"),
                 "the last layer gives the logits: leave its activation out (linear), "
                 f"got '{activation}' (the loss applies the softmax)")


def _check_data(d: DataConfig, chk: _Checker, base_dir: Path | None) -> None:
    if d.path == "":
        d.path = None  # data.path = "" clears a path (e.g. --set data.path="")
    if d.path is not None:
        path = Path(os.path.expanduser(d.path))
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.exists():
            chk.fail(("data", "path"), "Expect: an HDF5 dataset file or a directory of IDX files "
                     f"Actual: no such file or directory: {path}")
        d.path = str(path)
    if d.name is None:
        d.name = "fashion_mnist"  # with a path: what an IDX directory holds
    chk.positive(d.train_samples, ("data", "train_samples"))
    chk.positive(d.test_samples, ("data", "test_samples"))


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------

#: The built-in default job: the reference net with Adam 1e-4 and
#: batch 100, run for 500 steps (5 epochs of the embedded 10,000 images) so
#: that it trains in about a minute on two cores.
DEFAULT_JOB_TOML = """\
name = "default"
seed = 0

# No [model] section: the default model (DEFAULT_LAYERS), the reference
# net: conv 5x5x32 SAME + relu, max-pool 2, dense 1024 relu, dense 10.

[optimizer]
name = "adam"
learning_rate = 1e-4

[ema]
decay = 0.99
num_updates = true

[data]
name = "fashion_mnist"

[train]
batch_size = 100
steps = 500
eval_every = 100
log_every = 20

[checkpoint]
every = 100
# A first demo keeps its newest checkpoint only (103 MB: weights, Adam's slots
# and the EMA of 6.4 M parameters) instead of the usual 5; --resume needs no more.
max_to_keep = 1
"""


def parse_job(text: str, filename: str | None = None, overrides: Iterable[str] = (),
              base_dir: str | os.PathLike | None = None) -> JobConfig:
    """Parse and validate job text.

    Args:
        text: the TOML job.
        filename: shown in error messages (``job.toml:12: ...``).
        overrides: ``--set`` items, ``"optimizer.learning_rate=0.01"``.
        base_dir: relative ``data.path`` values are taken from here (the job
            file's directory); default the current directory.

    Returns:
        The validated :class:`JobConfig`.

    Raises:
        ConfigError: on bad TOML, unknown keys, wrong types or impossible values.
    """
    overrides = list(overrides)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{filename or '<job>'}: not valid TOML: {exc}") from None
    raw = apply_overrides(raw, overrides)
    chk = _Checker(_Locator(text, filename, overrides))
    raw = _upgrade(raw, chk)
    cfg = _validate(raw, chk, Path(base_dir) if base_dir is not None else None)
    cfg.source = filename or "<job>"
    if cfg.run_dir is None:
        cfg.run_dir = os.path.join("runs", cfg.name)
    return cfg


def load_job(path: str | os.PathLike | None, overrides: Iterable[str] = ()) -> JobConfig:
    """Read and validate a job file (``None`` gives the built-in default job).

    Relative ``data.path`` values are relative to the job file's directory.

    Example:
        >>> cfg = load_job(None, ["train.steps=50"])
        >>> cfg.train.steps, cfg.train.epochs
        (50, None)
    """
    if path is None:
        return default_job(overrides)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such job file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the job file ({exc})") from None
    return parse_job(text, str(p), overrides, base_dir=p.parent)


def default_job(overrides: Iterable[str] = ()) -> JobConfig:
    """The built-in default job (what ``distnet train`` runs with no job file)."""
    cfg = parse_job(DEFAULT_JOB_TOML, "<default job>", overrides)
    cfg.source = "<default job>"
    return cfg


def check_world_size(cfg: JobConfig, world_size: int) -> None:
    """Raise ConfigError if the job cannot run on ``world_size`` ranks.

    Every rank needs at least one sample of each global batch (and of each
    micro-batch), so ``train.batch_size >= world_size * micro_batches``.
    """
    need = world_size * cfg.train.micro_batches
    if cfg.train.batch_size < need:
        extra = f" x {cfg.train.micro_batches} micro-batches" if cfg.train.micro_batches > 1 else ""
        raise ConfigError(f"{cfg.source}: train.batch_size: every rank needs at least one sample per step: Expect: "
                          f"a global batch of at least the number of ranks ({world_size}){extra} = {need} "
                          f"Actual: {cfg.train.batch_size}")


# ---------------------------------------------------------------------------
# Writing a config back as TOML (for checkpoints and `distnet inspect`).
# ---------------------------------------------------------------------------

def _config_to_raw(cfg: JobConfig) -> dict:
    d = asdict(cfg)
    raw: dict[str, Any] = {"name": cfg.name, "seed": cfg.seed}
    if cfg.run_dir is not None:
        raw["run_dir"] = cfg.run_dir
    raw["model"] = {"layers": d["model"]["layers"]}
    raw["loss"] = d["loss"]
    raw["regularization"] = d["regularization"]
    raw["optimizer"] = {"name": cfg.optimizer.name, "learning_rate": cfg.optimizer.learning_rate,
                        **cfg.optimizer.params}
    raw["schedule"] = {"type": cfg.schedule.type, "warmup_steps": cfg.schedule.warmup_steps,
                       **cfg.schedule.params}
    raw["ema"] = d["ema"]
    for section in ("data", "train", "checkpoint", "dist"):
        raw[section] = {k: v for k, v in d[section].items() if v is not None}
    return raw


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {type(value).__name__} to TOML")


def dumps_toml(raw: Mapping) -> str:
    """Write a job dict as TOML (top-level keys, then tables, lists of tables as ``[[...]]``)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for section, table in raw.items():
        if not isinstance(table, dict):
            continue
        plain = {k: v for k, v in table.items()
                 if not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))}
        arrays = {k: v for k, v in table.items() if k not in plain}
        if plain or not arrays:
            lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in plain.items()]
        for key, items in arrays.items():
            for item in items:
                lines += ["", f"[[{section}.{key}]]"]
                lines += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines).lstrip("\n") + "\n"
