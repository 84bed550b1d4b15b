"""``Recurrent``: what :class:`~distnet.layers.LSTM` and :class:`~distnet.layers.GRU` share.

Inputs are ``[batch, time, features]`` (Keras' ``time_major=False``); the
state starts at zeros for every sequence.  Each layer unrolls its time loop
over native ops (``matmul``, ``sigmoid``, ``tanh``, slicing), so the
gradient through time is the autodiff of that loop — no backward of its
own.  Weights follow Keras' layout, gates side by side along the last axis:
``kernel [features, gates * units]``, ``recurrent_kernel [units, gates * units]``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from distnet.model import initializers as _init
from distnet.model import regularizers as _reg
from distnet.errors import InvalidArgumentError, ShapeError
from distnet.layers.base import Layer, get_activation
from distnet.registry import BOOL, INT, STR, STR_OR_TABLE, TABLE, Option
from distnet.tensor import Tensor

# The job-file keys LSTM and GRU share (Keras' names and defaults).
RECURRENT = (
    Option("units", INT, doc="the state's size (and the output's last axis)", low=0, low_open=True),
    Option("return_sequences", BOOL, False, "output every step `[batch, time, units]` instead of the "
           "last `[batch, units]`", group="recurrent-layer"),
    Option("activation", STR, "tanh", "the candidate's and output's activation (table below)",
           ref="activation", group="recurrent-layer"),
    Option("recurrent_activation", STR, "sigmoid", "the gates' activation", ref="activation",
           group="recurrent-layer"),
    Option("use_bias", BOOL, True, "add a bias `<name>/bias`", group="recurrent-layer"),
    Option("kernel_initializer", STR_OR_TABLE, "glorot_uniform", "the input kernel's initializer",
           ref="initializer", group="recurrent-layer"),
    Option("recurrent_initializer", STR_OR_TABLE, "orthogonal", "the recurrent kernel's initializer",
           ref="initializer", group="recurrent-layer"),
    Option("bias_initializer", STR_OR_TABLE, "zeros", "the bias' initializer", ref="initializer",
           group="recurrent-layer"),
    Option("kernel_regularizer", TABLE, None, "a regularizer of the input kernel", ref="regularizer",
           group="recurrent-layer"),
    Option("recurrent_regularizer", TABLE, None, "a regularizer of the recurrent kernel", ref="regularizer",
           group="recurrent-layer"),
    Option("bias_regularizer", TABLE, None, "a regularizer of the bias", ref="regularizer",
           group="recurrent-layer"),
)


class Recurrent(Layer):
    """Base of the recurrent layers: options, weights and shapes.  Subclasses
    set ``gates`` and implement :meth:`call`."""

    gates = 1

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, return_sequences: bool = False, name: Optional[str] = None):
        kind = type(self).__name__
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise InvalidArgumentError(f"{kind}: units: Expect: a positive int Actual: {units!r}")
        super().__init__(name=name)
        self.units = units
        self.activation = get_activation(activation)
        self.recurrent_activation = get_activation(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.return_sequences = bool(return_sequences)
        self.kernel_initializer = _init.get(kernel_initializer)
        self.recurrent_initializer = _init.get(recurrent_initializer)
        self.bias_initializer = _init.get(bias_initializer)
        self.kernel_regularizer = _reg.get(kernel_regularizer)
        self.recurrent_regularizer = _reg.get(recurrent_regularizer)
        self.bias_regularizer = _reg.get(bias_regularizer)
        self.kernel = self.recurrent_kernel = self.bias = None

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ShapeError(f"{type(self).__name__} {self.name!r}: Expect: inputs [batch, time, features] Actual: "
                             f"per-sample shape {tuple(input_shape)} — put a reshape layer before it, e.g. "
                             "target_shape = [28, 28] for 28x28 images read row by row")
        return (input_shape[0], self.units) if self.return_sequences else (self.units,)

    def build_weights(self, input_shape, rng):
        width = self.gates * self.units
        self.kernel = self.add_weight("kernel", (input_shape[1], width), self.kernel_initializer,
                                      self.kernel_regularizer, rng)
        self.recurrent_kernel = self.add_weight("recurrent_kernel", (self.units, width), self.recurrent_initializer,
                                                self.recurrent_regularizer, rng)
        if self.use_bias:
            self.bias = self.add_weight("bias", self.bias_shape(), self.bias_initializer_for(), self.bias_regularizer,
                                        rng)

    def bias_shape(self) -> tuple:
        return (self.gates * self.units,)

    def bias_initializer_for(self):
        """The bias' initializer (LSTM's ``unit_forget_bias`` changes it)."""
        return self.bias_initializer

    def act(self, x: Tensor) -> Tensor:
        return x if self.activation is None else self.activation(x)

    def gate(self, x: Tensor) -> Tensor:
        return x if self.recurrent_activation is None else self.recurrent_activation(x)

    def zero_state(self, batch: int) -> Tensor:
        return Tensor(np.zeros((batch, self.units), dtype=self.dtype))

    def finish(self, outputs: list[Tensor]) -> Tensor:
        """The last state, or every step's stacked along the time axis."""
        if not self.return_sequences:
            return outputs[-1]
        from distnet.ops import stack

        return stack(outputs, axis=1)
