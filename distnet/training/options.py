"""Keras-style keyword arguments of ``Trainer(...)`` turned into a :class:`TrainConfig` and hooks.

``Trainer(model, loss, optimizer, data, global_batch_size=100, steps=200,
eval_every=50, checkpoint_dir="ckpt", callbacks=[...])`` keeps working: the
loop's settings go to the config, each service's settings make its hook (in
a fixed order: log, tracer, watchdog, parameter check, evaluation,
checkpoints, then the callbacks), anything else is a strategy option
(checked by the strategy).
"""
from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

from distnet.errors import InvalidArgumentError
from distnet.training.hook import as_hook
from distnet.training.settings import TrainConfig

#: The services' keywords and their defaults.
SERVICES = MappingProxyType({
    "eval_every": None, "log_every": 100, "checkpoint_dir": None, "checkpoint_every": None, "max_to_keep": 5,
    "logger": None, "check_every": 100, "stall_timeout": None, "callbacks": (), "trace": None})


def split_options(config: TrainConfig | None, options: dict[str, Any], hooks=()) -> tuple[TrainConfig, dict, list]:
    """``(config, services, all hooks)`` from ``Trainer``'s keyword arguments and its ``hooks``."""
    own = {k: options.pop(k) for k in TrainConfig.names() if k in options}
    if config is not None and own:
        raise InvalidArgumentError(f"Trainer: Expect: the loop's settings in config= or as keywords, not both "
                                   f"Actual: config and {sorted(own)}")
    services = {k: options.pop(k, default) for k, default in SERVICES.items()}
    if config is None:
        config = TrainConfig(**{**own, "strategy_options": {**own.get("strategy_options", {}), **options}})
    elif options:   # a copy: the caller's config stays as it was
        config = dataclasses.replace(config, strategy_options={**config.strategy_options, **options})
    given = [as_hook(h) for h in hooks]
    return config, services, service_hooks(services, given) + given


def service_hooks(s: dict, given=()) -> list:
    """The hooks of the services' keywords, in the order they run (an evaluation at the end
    unless ``given`` holds an evaluation hook of its own)."""
    from distnet.training.hooks.checkpointing import Checkpointing
    from distnet.training.hooks.metrics_log import MetricsLog
    from distnet.training.hooks.parameter_check import ParameterCheck
    from distnet.training.hooks.periodic_evaluation import PeriodicEvaluation
    from distnet.training.hooks.stall_watchdog import StallWatchdog
    from distnet.training.hooks.tracing import Tracing

    hooks: list = []
    if s["logger"] is not None:   # a MetricsLogger, or the MetricsLog hook that owns one
        hooks.append(s["logger"] if isinstance(s["logger"], MetricsLog) else MetricsLog(s["logger"]))
    if s["trace"] is not None:
        hooks.append(Tracing(s["trace"]))
    if s["stall_timeout"]:
        hooks.append(StallWatchdog(s["stall_timeout"]))
    if s["check_every"]:
        hooks.append(ParameterCheck(s["check_every"]))
    if s["eval_every"] is not None or not any(isinstance(h, PeriodicEvaluation) for h in given):
        hooks.append(PeriodicEvaluation(s["eval_every"]))
    if s["checkpoint_dir"] is not None:
        hooks.append(Checkpointing(s["checkpoint_dir"], s["checkpoint_every"], s["max_to_keep"]))
    hooks += [as_hook(c) for c in s["callbacks"]]
    return hooks
