"""``TrainConfig``: the numbers that shape a training run (the loop's own settings, not its services').

The services — checkpoints, evaluation, the log, the watchdog, ... — are
hooks with their own settings (:mod:`distnet.training.hooks`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from distnet.errors import InvalidArgumentError


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgumentError(f"{name}: Expect: a positive integer Actual: {value!r}")


@dataclass
class TrainConfig:
    """How the loop trains.

    Args:
        global_batch_size: samples per step over all ranks.
        epochs / steps: how long; exactly one of them.
        micro_batches: pieces each rank's shard is split into (gradients accumulated).
        seed: the data order and dropout masks.
        weight_decay: ``weight_decay * sum(l2_loss(v))`` added to the layers' terms (TF1).
        weight_decay_exclude_bias: leave the biases out of it.
        ema_num_updates: the EMA's decay follows ``min(decay, (1 + n) / (10 + n))``.
        max_bad_steps: consecutive non-finite steps before the job stops.
        eval_batch_size: samples per forward pass in evaluations.
        strategy: ``"auto"``, ``"replicated"``, ``"zero1"`` or any registered strategy.
        strategy_options: the strategy's own options, checked by it.
        conv_algorithm: the convolution layers' algorithm: None (default) is ``"auto"`` --
            measured per layer at start-up, rank 0's choice on every rank, stored in checkpoints
            and taken from them on resume -- except in the deterministic step, which measures
            nothing (``gemm``, or the checkpoint's plan); ``"gemm"`` or one forced
            (:mod:`distnet.nn.conv_choice`).
        deterministic: every step and every evaluation the same bits on any number of ranks,
            under every strategy (canonical pieces of ``piece_size`` samples, default
            :func:`~distnet.distributed.pieces.default_piece_size`, summed exactly:
            distnet/training/deterministic.py;
            ``micro_batches`` has no effect there: pieces replace them).
        sync_batch_norm: batch normalization's statistics over the global batch (each step's
            global micro-batch: :meth:`Trainer.train_step`), one small all-reduce per layer call;
            False: each rank's own shard (TensorFlow's and Horovod's default).
        augment_padding, augment_flip: random crop after zero padding and left-right flip of the
            training images (distnet/data/augment.py), per sample from its key.
        config_text: the job file stored in every checkpoint.
    """

    global_batch_size: int = 100
    epochs: int | None = None
    steps: int | None = None
    micro_batches: int = 1
    seed: int = 0
    weight_decay: float = 0.0
    weight_decay_exclude_bias: bool = False
    ema_num_updates: bool = True
    max_bad_steps: int = 5
    eval_batch_size: int = 1000
    strategy: str = "auto"
    strategy_options: dict = field(default_factory=dict)
    conv_algorithm: str | None = None
    deterministic: bool = False
    piece_size: int | None = None
    augment_padding: int = 0
    augment_flip: bool = False
    sync_batch_norm: bool = True
    config_text: str = ""

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise InvalidArgumentError(
                f"Expect: exactly one of epochs and steps Actual: epochs={self.epochs!r}, steps={self.steps!r}")
        for name in ("epochs", "steps"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        _positive_int("global_batch_size", self.global_batch_size)
        _positive_int("micro_batches", self.micro_batches)
        _positive_int("eval_batch_size", self.eval_batch_size)
        if self.weight_decay < 0:
            raise InvalidArgumentError(f"weight_decay: Expect: >= 0 Actual: {self.weight_decay}")
        self.global_batch_size = int(self.global_batch_size)
        self.micro_batches = int(self.micro_batches)
        self.seed = int(self.seed)
        self.weight_decay = float(self.weight_decay)
        self.max_bad_steps = int(self.max_bad_steps)
        self.eval_batch_size = int(self.eval_batch_size)
        if not isinstance(self.sync_batch_norm, (bool, np.bool_)):
            raise InvalidArgumentError(f"sync_batch_norm: Expect: True or False Actual: {self.sync_batch_norm!r}")
        self.sync_batch_norm = bool(self.sync_batch_norm)
        if isinstance(self.augment_padding, bool) or not isinstance(self.augment_padding, int) \
                or self.augment_padding < 0:
            raise InvalidArgumentError(f"augment_padding: Expect: an int >= 0 Actual: {self.augment_padding!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
