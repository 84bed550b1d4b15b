"""TF1's recurrent cells (``tf.nn.rnn_cell`` / ``tf.contrib.rnn``): one time step each.

A cell is called as ``output, new_state = cell(inputs, state)`` on graph
tensors and builds the step from this package's graph ops, so autodiff
differentiates it like any other graph.  On its first call a cell opens a
variable scope named after it (``basic_lstm_cell``, ``gru_cell``, ...,
made unique as TF1 does) under the current one and creates its variables
there; later calls reuse them.  Variable names, shapes, gate order and
kernel layout are TF1's, so the same weights give TF1's numbers:

- ``BasicRNNCell``: ``kernel [in + units, units]``, ``bias``;
  ``h = tanh([x, h] @ kernel + bias)``.
- ``BasicLSTMCell`` / ``LSTMCell``: ``kernel [in + units, 4 units]`` with the
  gates in the order ``i, j, f, o``; ``c = c * sigmoid(f + forget_bias) +
  sigmoid(i) * tanh(j)``, ``h = tanh(c) * sigmoid(o)``; ``LSTMCell`` adds
  peepholes (``w_f_diag``, ``w_i_diag``, ``w_o_diag``), ``cell_clip`` and a
  projection (``projection/kernel``).
- ``GRUCell``: ``gates/kernel [in + units, 2 units]`` (``r, u``, bias 1.0) and
  ``candidate/kernel``; ``h = u * h + (1 - u) * tanh([x, r * h] @ W + b)``.
"""
from __future__ import annotations

import collections
import re
from typing import Any

import numpy as np

import distnet.nn as dnn
from distnet.compat.v1 import array_ops as _a
from distnet.compat.v1 import math_ops as _m
from distnet.compat.v1.graph import Tensor, build, convert_to_tensor
from distnet.compat.v1.variables import (
    AUTO_REUSE,
    constant_initializer,
    get_variable,
    get_variable_scope,
    variable_scope,
    zeros_initializer,
)
from distnet.tensor import Tensor as EagerTensor


class LSTMStateTuple(collections.namedtuple("LSTMStateTuple", ("c", "h"))):
    """An LSTM's state: the cell ``c`` and the output ``h`` (TF1's order)."""

    __slots__ = ()

    @property
    def dtype(self):
        return self.c.dtype


# -- nested states -----------------------------------------------------------------------

def flatten_state(state: Any) -> list:
    """The tensors (or sizes) of a nested state, in order."""
    if isinstance(state, (tuple, list)):
        out: list = []
        for s in state:
            out.extend(flatten_state(s))
        return out
    return [state]


def pack_state(structure: Any, flat: list) -> Any:
    """``flat`` put back into ``structure``'s nesting (inverse of :func:`flatten_state`)."""
    it = iter(flat)

    def pack(s):
        if isinstance(s, LSTMStateTuple):
            return LSTMStateTuple(*[pack(x) for x in s])
        if isinstance(s, (tuple, list)):
            items = [pack(x) for x in s]
            return items if isinstance(s, list) else tuple(items)
        return next(it)

    return pack(structure)


def _zeros(batch_size: Any, size: int, dtype: Any) -> Tensor:
    def fn(b):
        n = int(b.data) if isinstance(b, EagerTensor) else int(b)
        return EagerTensor._from_op(np.zeros((n, size), dtype=dtype), None, ())

    return build("zeros", fn, batch_size)


# -- the base -----------------------------------------------------------------------------

class RNNCell:
    """TF1's abstract cell: ``state_size``, ``output_size``, ``zero_state`` and
    ``__call__(inputs, state, scope=None) -> (output, new_state)``.

    A subclass written as TF1 users wrote theirs defines ``state_size``,
    ``output_size``, ``call(inputs, state)`` and, optionally,
    ``build(inputs_shape)`` creating its variables with ``self.add_variable``
    (or ``add_weight``, or ``tf.get_variable``); its scope is its class name in
    snake case (``MinimalRNNCell`` -> ``minimal_rnn_cell``), as TF1's.  The
    cells of this module create theirs in ``_create_variables(depth, dtype)``.
    """

    _default_name: str | None = None

    def __init__(self, trainable: bool = True, name: str | None = None, dtype: Any = None, reuse: Any = None,
                 **kwargs):
        self._name = name
        self._reuse = reuse
        self._dtype = dtype
        self._scope = None
        self.built = False
        self.trainable = trainable

    @property
    def state_size(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define state_size")

    @property
    def output_size(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define output_size")

    @property
    def name(self) -> str:
        return self._scope.name if self._scope is not None else self._base_name()

    def _base_name(self) -> str:
        return self._name or self._default_name or _snake_case(type(self).__name__)

    def zero_state(self, batch_size: Any, dtype: Any) -> Any:
        """Zeros of ``[batch_size, size]`` for each part of ``state_size`` (``batch_size`` an int or a tensor)."""
        def make(size):
            if isinstance(size, LSTMStateTuple):
                return LSTMStateTuple(*[make(s) for s in size])
            if isinstance(size, (tuple, list)):
                return tuple(make(s) for s in size)
            return _zeros(batch_size, int(size), np.dtype(dtype))

        return make(self.state_size)

    def build(self, inputs_shape: Any) -> None:
        """Create the variables (in the cell's scope); called once, before the first ``call``."""
        depth = inputs_shape[-1].value if inputs_shape.dims else None
        if depth is None:
            raise ValueError(f"{type(self).__name__}: the last dimension of the inputs must be known to create the "
                             f"kernel; Actual: inputs of shape {inputs_shape}")
        self._create_variables(depth, self._variable_dtype)

    def _create_variables(self, input_depth: int, dtype: Any) -> None:
        """The variables of a cell of this module (none for the base)."""

    def add_variable(self, name: str, shape: Any, dtype: Any = None, initializer: Any = None, regularizer: Any = None,
                     trainable: bool = True, **kwargs):
        """A variable ``<cell scope>/name`` (TF1's ``Layer.add_variable``), of the inputs' dtype by default."""
        return get_variable(name, shape, dtype=dtype if dtype is not None else self._variable_dtype,
                            initializer=initializer, regularizer=regularizer, trainable=trainable)

    add_weight = add_variable

    def call(self, inputs: Tensor, state: Any):
        raise NotImplementedError(f"{type(self).__name__} must define call(inputs, state)")

    def __call__(self, inputs: Any, state: Any, scope: Any = None):
        inputs = convert_to_tensor(inputs)
        if inputs.shape.ndims is not None and inputs.shape.ndims != 2:
            raise ValueError(f"{type(self).__name__}: inputs: Expect: rank 2, [batch, depth] (one time step; "
                             f"tf.nn.dynamic_rnn for a sequence) Actual: shape {inputs.shape} of {inputs.name}")
        if self._scope is None:
            base = self._base_name()
            # TF1: a cell made to reuse (or under a reusing scope) takes its plain name, to find the variables
            # an earlier model created there; otherwise the name is made unique (gru_cell, gru_cell_1, ...).
            reusing = bool(self._reuse) or get_variable_scope().reuse in (True, AUTO_REUSE)
            opened = variable_scope(scope if scope is not None else base) if reusing else \
                variable_scope(scope, default_name=base)
            with opened as vs:
                self._scope = vs
                self._build_once(inputs)
                return self.call(inputs, state)
        with variable_scope(self._scope, reuse=True):
            return self.call(inputs, state)

    def _build_once(self, inputs: Tensor) -> None:
        if self.built:
            return
        self._variable_dtype = inputs.dtype if self._dtype is None else np.dtype(self._dtype)
        self.build(inputs.shape)
        self.built = True


def _snake_case(name: str) -> str:
    """TF1's layer name of a class: ``MinimalRNNCell`` -> ``minimal_rnn_cell``."""
    first = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", first).lower()


def _activation(activation: Any):
    return _m.tanh if activation is None else activation


def _gates(x: Tensor, n: int, k: int) -> list:
    """The ``k`` column blocks of width ``n`` of ``x`` (TF1's ``split(x, k, axis=1)``)."""
    return [x[:, i * n:(i + 1) * n] for i in range(k)]


class _UnitsCell(RNNCell):
    """A cell whose state and output are ``num_units`` wide, with one activation."""

    def __init__(self, num_units: int, activation: Any = None, reuse: Any = None, name: str | None = None,
                 dtype: Any = None, **kwargs):
        super().__init__(name=name, dtype=dtype, reuse=reuse)
        self._num_units = int(num_units)
        self._act = _activation(activation)

    @property
    def state_size(self) -> int:
        return self._num_units

    @property
    def output_size(self) -> int:
        return self._num_units


class BasicRNNCell(_UnitsCell):
    """``h = activation([x, h] @ kernel + bias)`` (variables ``kernel``, ``bias``)."""

    _default_name = "basic_rnn_cell"

    def _create_variables(self, input_depth, dtype):
        self._kernel = get_variable("kernel", [input_depth + self._num_units, self._num_units], dtype=dtype)
        self._bias = get_variable("bias", [self._num_units], dtype=dtype, initializer=zeros_initializer(dtype))

    def call(self, inputs, state):
        h = self._act(_m.bias_add(_m.matmul(_a.concat([inputs, state], 1), self._kernel), self._bias))
        return h, h


class BasicLSTMCell(RNNCell):
    """TF1's LSTM without peepholes: gates ``i, j, f, o`` of ``[x, h] @ kernel + bias``."""

    _default_name = "basic_lstm_cell"

    def __init__(self, num_units: int, forget_bias: float = 1.0, state_is_tuple: bool = True, activation: Any = None,
                 reuse: Any = None, name: str | None = None, dtype: Any = None, **kwargs):
        super().__init__(name=name, dtype=dtype, reuse=reuse)
        self._num_units = int(num_units)
        self._forget_bias = float(forget_bias)
        self._state_is_tuple = bool(state_is_tuple)
        self._act = _activation(activation)

    @property
    def state_size(self) -> Any:
        n = self._num_units
        return LSTMStateTuple(n, n) if self._state_is_tuple else 2 * n

    @property
    def output_size(self) -> int:
        return self._num_units

    def _create_variables(self, input_depth, dtype):
        n = self._num_units
        self._kernel = get_variable("kernel", [input_depth + n, 4 * n], dtype=dtype)
        self._bias = get_variable("bias", [4 * n], dtype=dtype, initializer=zeros_initializer(dtype))

    def _split_state(self, state):
        if self._state_is_tuple:
            c, h = state
            return c, h
        n = self._num_units
        return state[:, :n], state[:, n:]

    def _join_state(self, c, h):
        return LSTMStateTuple(c, h) if self._state_is_tuple else _a.concat([c, h], 1)

    def call(self, inputs, state):
        c, h = self._split_state(state)
        z = _m.bias_add(_m.matmul(_a.concat([inputs, h], 1), self._kernel), self._bias)
        if self._act is _m.tanh:
            new_c, new_h = _fused_step(z, c, self._forget_bias, self._num_units)
        else:
            i, j, f, o = _gates(z, self._num_units, 4)
            new_c = c * _m.sigmoid(f + self._forget_bias) + _m.sigmoid(i) * self._act(j)
            new_h = self._act(new_c) * _m.sigmoid(o)
        return new_h, self._join_state(new_c, new_h)


def _fused_step(z: Tensor, c: Tensor, forget_bias: float, n: int) -> tuple:
    """``(c', h')`` from :func:`distnet.nn.lstm_step` (one autodiff node for the gates' arithmetic)."""
    both = build("LSTMBlockCell", lambda zz, cc: dnn.lstm_step(zz, cc, forget_bias), z, c)
    return both[:, :n], both[:, n:]


class LSTMCell(BasicLSTMCell):
    """TF1's full LSTM: optional peepholes, ``cell_clip``, a projection of the
    output to ``num_proj`` (then the state is ``(c, projected h)``) and an
    ``initializer`` for the kernels."""

    _default_name = "lstm_cell"

    def __init__(self, num_units: int, use_peepholes: bool = False, cell_clip: float | None = None,
                 initializer: Any = None, num_proj: int | None = None, proj_clip: float | None = None,
                 num_unit_shards: Any = None, num_proj_shards: Any = None, forget_bias: float = 1.0,
                 state_is_tuple: bool = True, activation: Any = None, reuse: Any = None, name: str | None = None,
                 dtype: Any = None, **kwargs):
        super().__init__(num_units, forget_bias, state_is_tuple, activation, reuse=reuse, name=name, dtype=dtype)
        if num_unit_shards is not None or num_proj_shards is not None:
            raise ValueError("LSTMCell: num_unit_shards / num_proj_shards (deprecated in TF1) are not supported; "
                             "leave them None")
        self._use_peepholes = bool(use_peepholes)
        self._cell_clip = cell_clip
        self._initializer = initializer
        self._num_proj = None if num_proj is None else int(num_proj)
        self._proj_clip = proj_clip

    @property
    def state_size(self) -> Any:
        n, p = self._num_units, self._num_proj or self._num_units
        return LSTMStateTuple(n, p) if self._state_is_tuple else n + p

    @property
    def output_size(self) -> int:
        return self._num_proj or self._num_units

    def _create_variables(self, input_depth, dtype):
        n, p = self._num_units, self._num_proj or self._num_units
        init = self._initializer
        self._kernel = get_variable("kernel", [input_depth + p, 4 * n], dtype=dtype, initializer=init)
        self._bias = get_variable("bias", [4 * n], dtype=dtype, initializer=zeros_initializer(dtype))
        if self._use_peepholes:
            self._w_f = get_variable("w_f_diag", [n], dtype=dtype, initializer=init)
            self._w_i = get_variable("w_i_diag", [n], dtype=dtype, initializer=init)
            self._w_o = get_variable("w_o_diag", [n], dtype=dtype, initializer=init)
        if self._num_proj is not None:
            with variable_scope("projection"):
                self._proj = get_variable("kernel", [n, self._num_proj], dtype=dtype, initializer=init)

    def _split_state(self, state):
        if self._state_is_tuple:
            c, h = state
            return c, h
        n = self._num_units
        return state[:, :n], state[:, n:]

    def call(self, inputs, state):
        c_prev, m_prev = self._split_state(state)
        z = _m.bias_add(_m.matmul(_a.concat([inputs, m_prev], 1), self._kernel), self._bias)
        fb = self._forget_bias
        if not self._use_peepholes and self._cell_clip is None and self._act is _m.tanh:
            c, m = _fused_step(z, c_prev, fb, self._num_units)
        else:
            i, j, f, o = _gates(z, self._num_units, 4)
            if self._use_peepholes:
                c = (_m.sigmoid(f + fb + self._w_f * c_prev) * c_prev
                     + _m.sigmoid(i + self._w_i * c_prev) * self._act(j))
            else:
                c = _m.sigmoid(f + fb) * c_prev + _m.sigmoid(i) * self._act(j)
            if self._cell_clip is not None:
                c = _m.clip_by_value(c, -float(self._cell_clip), float(self._cell_clip))
            if self._use_peepholes:
                m = _m.sigmoid(o + self._w_o * c) * self._act(c)
            else:
                m = _m.sigmoid(o) * self._act(c)
        if self._num_proj is not None:
            m = _m.matmul(m, self._proj)
            if self._proj_clip is not None:
                m = _m.clip_by_value(m, -float(self._proj_clip), float(self._proj_clip))
        return m, self._join_state(c, m)


class GRUCell(_UnitsCell):
    """TF1's GRU: reset and update gates ``r, u`` (``gates/``, bias 1.0), then the
    ``candidate/`` from ``[x, r * h]``; ``h = u * h + (1 - u) * candidate``."""

    _default_name = "gru_cell"

    def __init__(self, num_units: int, activation: Any = None, reuse: Any = None, kernel_initializer: Any = None,
                 bias_initializer: Any = None, name: str | None = None, dtype: Any = None, **kwargs):
        super().__init__(num_units, activation, reuse, name, dtype)
        self._kernel_init = kernel_initializer
        self._bias_init = bias_initializer

    def _create_variables(self, input_depth, dtype):
        n = self._num_units
        with variable_scope("gates"):
            self._gate_kernel = get_variable("kernel", [input_depth + n, 2 * n], dtype=dtype,
                                             initializer=self._kernel_init)
            self._gate_bias = get_variable("bias", [2 * n], dtype=dtype, initializer=(
                self._bias_init if self._bias_init is not None else constant_initializer(1.0, dtype=dtype)))
        with variable_scope("candidate"):
            self._cand_kernel = get_variable("kernel", [input_depth + n, n], dtype=dtype,
                                             initializer=self._kernel_init)
            self._cand_bias = get_variable("bias", [n], dtype=dtype, initializer=(
                self._bias_init if self._bias_init is not None else zeros_initializer(dtype)))

    def call(self, inputs, state):
        g = _m.sigmoid(_m.bias_add(_m.matmul(_a.concat([inputs, state], 1), self._gate_kernel), self._gate_bias))
        r, u = _gates(g, self._num_units, 2)
        cand = self._act(_m.bias_add(_m.matmul(_a.concat([inputs, r * state], 1), self._cand_kernel),
                                     self._cand_bias))
        new_h = u * state + (1 - u) * cand
        return new_h, new_h


class MultiRNNCell(RNNCell):
    """Cells stacked: cell ``k`` (in scope ``cell_k``) takes cell ``k-1``'s output; the state is the tuple of theirs."""

    _default_name = "multi_rnn_cell"

    def __init__(self, cells: Any, state_is_tuple: bool = True):
        super().__init__()
        cells = list(cells)
        if not cells:
            raise ValueError("Must specify at least one cell for MultiRNNCell.")
        if not state_is_tuple:
            raise ValueError("MultiRNNCell(state_is_tuple=False) (deprecated in TF1) is not supported; "
                             "use the default state_is_tuple=True")
        if len({id(c) for c in cells}) != len(cells):
            # TF1 made [cell] * n share one cell's weights and then failed on their shapes; ask for n cells.
            raise ValueError("MultiRNNCell: the same cell object appears more than once; Expect: a new cell per "
                             "layer, e.g. MultiRNNCell([BasicLSTMCell(n) for _ in range(layers)])")
        self._cells = cells

    @property
    def state_size(self) -> tuple:
        return tuple(c.state_size for c in self._cells)

    @property
    def output_size(self) -> Any:
        return self._cells[-1].output_size

    def zero_state(self, batch_size, dtype):
        return tuple(c.zero_state(batch_size, dtype) for c in self._cells)

    def call(self, inputs, state):
        if not isinstance(state, (tuple, list)) or len(state) != len(self._cells):
            raise ValueError(f"MultiRNNCell: Expect: a state tuple of {len(self._cells)} cell states "
                             f"Actual: {type(state).__name__}")
        out, new = inputs, []
        for k, cell in enumerate(self._cells):
            with variable_scope(f"cell_{k}"):
                out, s = cell(out, state[k])
            new.append(s)
        return out, tuple(new)


class _Wrapper(RNNCell):
    """A cell around ``self._cell`` with its state, output size and zero state (no scope of its own)."""

    @property
    def wrapped_cell(self) -> RNNCell:
        return self._cell

    @property
    def state_size(self):
        return self._cell.state_size

    @property
    def output_size(self):
        return self._cell.output_size

    def zero_state(self, batch_size, dtype):
        return self._cell.zero_state(batch_size, dtype)


class DropoutWrapper(_Wrapper):
    """Dropout on a cell's inputs, outputs and new state (``*_keep_prob``, numbers or
    tensors); of an LSTM state only ``h`` is dropped, as TF1 does.  No scope of its own."""

    def __init__(self, cell: RNNCell, input_keep_prob: Any = 1.0, output_keep_prob: Any = 1.0,
                 state_keep_prob: Any = 1.0, variational_recurrent: bool = False, input_size: Any = None,
                 dtype: Any = None, seed: int | None = None, dropout_state_filter_visitor: Any = None):
        super().__init__()
        if variational_recurrent:
            raise ValueError("DropoutWrapper(variational_recurrent=True) is not supported; its per-sequence masks "
                             "are not implemented -- use the default per-step dropout")
        for label, p in (("input", input_keep_prob), ("output", output_keep_prob), ("state", state_keep_prob)):
            if isinstance(p, (int, float)) and not 0.0 < float(p) <= 1.0:
                raise ValueError(f"Parameter {label}_keep_prob must be between 0 and 1: {p}")
        self._cell = cell
        self._in, self._out, self._state = input_keep_prob, output_keep_prob, state_keep_prob
        self._seed = seed

    def _drop(self, x, keep, salt):
        if isinstance(keep, (int, float)) and float(keep) == 1.0:
            return x
        seed = None if self._seed is None else self._seed + salt
        return _m.dropout(x, keep_prob=keep, seed=seed)

    def _drop_state(self, state):
        if isinstance(state, LSTMStateTuple):
            return LSTMStateTuple(state.c, self._drop(state.h, self._state, 2))
        if isinstance(state, (tuple, list)):
            return type(state)(self._drop_state(s) for s in state)
        return self._drop(state, self._state, 2)

    def __call__(self, inputs, state, scope=None):
        inputs = self._drop(convert_to_tensor(inputs), self._in, 0)
        out, new_state = self._cell(inputs, state, scope=scope)
        return self._drop(out, self._out, 1), self._drop_state(new_state)


class ResidualWrapper(_Wrapper):
    """The cell's output plus its input (shapes must agree)."""

    def __init__(self, cell: RNNCell, residual_fn: Any = None):
        super().__init__()
        self._cell = cell
        self._fn = residual_fn

    def __call__(self, inputs, state, scope=None):
        inputs = convert_to_tensor(inputs)
        out, new_state = self._cell(inputs, state, scope=scope)
        return (self._fn(inputs, out) if self._fn is not None else inputs + out), new_state
