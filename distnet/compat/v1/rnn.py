"""TF1's recurrent loops: ``static_rnn``, ``dynamic_rnn``,
``bidirectional_dynamic_rnn`` and ``static_bidirectional_rnn``.

``static_rnn`` calls the cell once per input in the graph, as TF1 does.
``dynamic_rnn`` is one graph op whose time loop runs when the session runs
it (the number of steps is the inputs' time size then): the cell is called
once, at graph-building time, on stand-in placeholders for one step's input
and state -- which creates its variables under ``rnn/`` with TF1's names --
and the op evaluates that one-step graph for every time step, feeding the
step's input and the previous state.  The step's values are distnet tensors,
so autodiff differentiates through the whole loop; the tensors the step
reads from outside (the variables, a keep probability) are inputs of the op,
so ``tf.gradients`` reaches them.

With ``sequence_length``, TF1's rule: past a sequence's length its outputs
are zero and its state is carried through unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import distnet
from distnet.compat.v1 import array_ops as _a
from distnet.compat.v1.graph import (
    Tensor,
    build,
    convert_to_tensor,
    get_default_graph,
    leaf,
)
from distnet.compat.v1.multi_output import run_outputs
from distnet.compat.v1.rnn_cell import (
    LSTMStateTuple,
    RNNCell,
    flatten_state,
    pack_state,
)
from distnet.compat.v1.variables import variable_scope
from distnet.errors import InvalidArgumentError
from distnet.tensor import Tensor as EagerTensor

# -- the one-step graph of a cell -------------------------------------------------------------

class _Step:
    """A cell called once on placeholders; evaluated per time step with fed values."""

    def __init__(self, cell: RNNCell, x_shape: list, dtype: Any, state_struct: Any):
        g = get_default_graph()
        start = len(g._ops)
        self.x = _a.placeholder(dtype, x_shape, name="step_input")
        flat = flatten_state(state_struct)
        self.state_in = [_a.placeholder(s.dtype, s.shape, name="step_state") for s in flat]
        self.structure = state_struct
        out, new_state = cell(self.x, pack_state(state_struct, self.state_in))
        self.output = convert_to_tensor(out)
        self.state_out = [convert_to_tensor(s) for s in flatten_state(new_state)]
        if len(self.state_out) != len(self.state_in):
            raise ValueError(f"{type(cell).__name__}: the new state has {len(self.state_out)} parts, the state "
                             f"{len(self.state_in)}; Expect: the structure of cell.state_size")
        for a, b in zip(self.state_in, self.state_out):
            if not a.shape.is_compatible_with(b.shape):
                raise ValueError(f"{type(cell).__name__}: a new state of shape {b.shape} for a state of shape "
                                 f"{a.shape}; Expect: the shapes of cell.state_size")
        created = set(g._ops[start:])
        self.external = self._externals(created)
        self.targets = [self.output.op] + [t.op for t in self.state_out]
        from distnet.compat.v1.session import evaluation_order

        # Every time step runs the same graph with the same ops fed, so the order in which a session
        # run would compute the step's ops is found once here instead of by a walk per time step.
        fed = {self.x.op, *[s.op for s in self.state_in], *[t.op for t in self.external]}
        self.schedule = evaluation_order(self.targets, fed)

    def _externals(self, created: set) -> list:
        """The tensors the step reads that it does not make: variables and anything built before it."""
        fed = {self.x.op, *[s.op for s in self.state_in]}
        seen, found, stack = set(), [], [t.op for t in [self.output, *self.state_out]]
        while stack:
            op = stack.pop()
            if op in seen or op in fed:
                continue
            seen.add(op)
            for t in op.inputs:
                if t.op in created and t.op.type != "VariableV2":
                    stack.append(t.op)
                elif t not in found:
                    found.append(t)
            stack.extend(c for c in op.control_inputs if c in created)
        return found

    def run(self, run, ext_values: dict, x: EagerTensor, state: list):
        """The step's output and new state; ``run`` is the op's session run, None for a probe."""
        from distnet.compat.v1.session import _Run

        fed = dict(ext_values)
        fed[self.x.op] = x
        for ph, v in zip(self.state_in, state):
            fed[ph.op] = v
        targets = self.targets
        if run is None:
            values = _probe_values(fed, targets)
        else:
            sub = _Run(run.session, fed, run.shard)
            sub.run_in_order(self.schedule)
            values = sub.values
        return values[targets[0]], [values[op] for op in targets[1:]]



def _probe_values(fed: dict, targets: list) -> dict:
    """The step's ops on stand-in values, each told it is a probe (``run=None``) as graph.py's probes are."""
    values = dict(fed)
    stack = [(op, False) for op in targets]
    while stack:
        op, expanded = stack.pop()
        if op in values:
            continue
        if expanded:
            values[op] = op._compute(None, [values[t.op] for t in op.inputs])
            continue
        stack.append((op, True))
        stack.extend((t.op, False) for t in op.inputs if t.op not in values)
    return values


def _mask(lengths: np.ndarray | None, t: int):
    return None if lengths is None else (t < lengths)[:, None]


def _select(mask, new: EagerTensor, old: EagerTensor) -> EagerTensor:
    return new if mask is None else distnet.where_v2(mask, new, old)


def _lengths(v: Any, batch: int) -> np.ndarray | None:
    if v is None:
        return None
    arr = np.asarray(v.data if isinstance(v, EagerTensor) else v).astype(np.int64).reshape(-1)
    if arr.shape != (batch,):
        raise InvalidArgumentError(f"sequence_length: Expect: a vector of {batch} lengths (one per batch entry) "
                                   f"Actual: shape {list(np.shape(v.data if isinstance(v, EagerTensor) else v))}")
    return arr


def _state_placeholders(cell: RNNCell, initial_state: Any, batch: Any, dtype: Any) -> Any:
    """The nested state of one step: the initial state's tensors, or ``[batch, size]`` of ``cell.state_size``."""
    if initial_state is not None:
        return pack_state(initial_state, [convert_to_tensor(s) for s in flatten_state(initial_state)])
    if dtype is None:
        raise ValueError("If there is no initial_state, you must give a dtype.")
    sizes = flatten_state(cell.state_size)
    return pack_state(cell.state_size, [_a.placeholder(dtype, [batch, int(n)], name="zero_state")
                                         for n in sizes])


def dynamic_rnn(cell: RNNCell, inputs: Any, sequence_length: Any = None, initial_state: Any = None, dtype: Any = None,
                parallel_iterations: Any = None, swap_memory: bool = False, time_major: bool = False,
                scope: Any = None):
    """``(outputs, state)``: the cell over the time axis of ``inputs``
    (``[batch, time, depth]``, or ``[time, batch, depth]`` when ``time_major``).

    ``outputs`` has the layout of ``inputs`` with the cell's output depth;
    ``state`` is the final state (per sequence, the state at its length).
    Variables live under ``scope`` (default ``rnn``).
    """
    if not isinstance(cell, RNNCell):
        raise TypeError(f"dynamic_rnn: Expect: an RNNCell (e.g. tf.nn.rnn_cell.BasicLSTMCell(n)) "
                        f"Actual: {type(cell).__name__}")
    if isinstance(inputs, (list, tuple)):
        raise TypeError("dynamic_rnn: Expect: one tensor of inputs Actual: a list; nested inputs are not supported "
                        "(concatenate them, or use static_rnn for a list of steps)")
    inputs = convert_to_tensor(inputs)
    if inputs.shape.ndims != 3:
        raise ValueError(f"dynamic_rnn: Expect: inputs of rank 3 ([batch, time, depth]) Actual: shape {inputs.shape}")
    b_ax = 1 if time_major else 0
    batch, depth = inputs.shape[b_ax].value, inputs.shape[2].value
    with variable_scope(scope if scope is not None else "rnn"):
        if initial_state is not None:
            dtype = flatten_state(initial_state)[0].dtype
        state_struct = _state_placeholders(cell, initial_state, batch, dtype)
        if initial_state is None:
            graph_state = []
        else:
            graph_state = flatten_state(state_struct)
            # The step's state has the inputs' batch size (a fixed-size zero_state may meet a None batch).
            state_struct = pack_state(state_struct, [
                _a.placeholder(s.dtype, [batch] + s.shape.as_list()[1:] if s.shape.dims else None, name="step_state")
                for s in graph_state])
        flat_struct = flatten_state(state_struct)
        step = _Step(cell, [batch, depth], inputs.dtype, state_struct)
        seq = None if sequence_length is None else convert_to_tensor(sequence_length)
        op_inputs = [inputs] + ([seq] if seq is not None else []) + graph_state + step.external
        n_state, n_ext = len(graph_state), len(step.external)

        def compute(run, values):
            x = values[0]
            if not time_major:
                x = distnet.transpose(x, (1, 0, 2))
            steps, b = x.shape[0], x.shape[1]
            rest = values[1:]
            lengths = None
            if seq is not None:
                # A probe's batch is a stand-in, which fixed lengths need not fit.
                lengths = _lengths(rest[0], b) if run is not None else None
                rest = rest[1:]
            # A probe's stand-in batch need not be the initial state's: it starts from zeros then.
            state = list(rest[:n_state]) if n_state and run is not None else [
                EagerTensor._from_op(np.zeros((b,) + tuple(s.shape.as_list()[1:]), dtype=s.dtype), None, ())
                for s in flat_struct]
            ext = {t.op: v for t, v in zip(step.external, rest[n_state:n_state + n_ext])}
            outs = []
            for t in range(steps):
                out, new = step.run(run, ext, x[t], state)
                mask = _mask(lengths, t)
                if mask is not None:
                    out = distnet.where_v2(mask, out, distnet.zeros_like(out))
                    new = [_select(mask, n, s) for n, s in zip(new, state)]
                outs.append(out)
                state = new
            if not outs:
                raise InvalidArgumentError("dynamic_rnn: the inputs have 0 time steps; Expect: at least one")
            y = distnet.stack(outs, 0)
            if not time_major:
                y = distnet.transpose(y, (1, 0, 2))
            return [y, *state]

        results = run_outputs("DynamicRNN", compute, op_inputs, name="rnn")
    return results[0], pack_state(state_struct, results[1:])


def _reverse(x: Tensor, lengths: Tensor | None, time_axis: int) -> Tensor:
    """Each sequence's first ``length`` steps reversed (all steps without lengths), TF1's ``reverse_sequence``."""
    def compute(run, values):
        v = values[0]
        if run is None:
            return v    # a probe: the shape is the input's (a fixed lengths vector may not fit a probe's batch)
        arr_t, arr_b = v.shape[time_axis], v.shape[1 - time_axis]
        lens = np.full(arr_b, arr_t) if lengths is None else _lengths(values[1], arr_b)
        t = np.arange(arr_t)[:, None]
        src = np.where(t < lens[None, :], lens[None, :] - 1 - t, t)          # [time, batch]
        swap = (1, 0) + tuple(range(2, v.ndim))
        vt = v if time_axis == 0 else distnet.transpose(v, swap)
        flat = distnet.reshape(vt, (arr_t * arr_b,) + tuple(vt.shape[2:]))
        out = distnet.reshape(distnet.gather(flat, (src * arr_b + np.arange(arr_b)[None, :]).reshape(-1)), vt.shape)
        return out if time_axis == 0 else distnet.transpose(out, swap)

    x = convert_to_tensor(x)
    inputs = [x] if lengths is None else [x, lengths]
    return leaf("ReverseV2" if lengths is None else "ReverseSequence", compute, x.dtype, x.shape, x._probes,
                name="ReverseSequence", inputs=inputs)


def reverse_sequence(input: Any, seq_lengths: Any, seq_axis: int | None = None, batch_axis: int | None = None,
                     name: str | None = None, seq_dim: int | None = None, batch_dim: int | None = None) -> Tensor:
    """TF1's ``tf.reverse_sequence``: each entry's first ``seq_lengths[b]`` steps reversed, the rest kept.

    The time and batch axes are the first two, in either order (``seq_axis=1,
    batch_axis=0`` for ``[batch, time, ...]``, ``seq_axis=0, batch_axis=1`` for time major).
    """
    seq_axis = seq_axis if seq_axis is not None else seq_dim
    batch_axis = batch_axis if batch_axis is not None else (batch_dim if batch_dim is not None else 0)
    if (seq_axis, batch_axis) not in ((1, 0), (0, 1)):
        raise ValueError(f"reverse_sequence: Expect: seq_axis and batch_axis 0 and 1 (in either order) "
                         f"Actual: seq_axis={seq_axis}, batch_axis={batch_axis}")
    return _reverse(convert_to_tensor(input), convert_to_tensor(seq_lengths), seq_axis)


def sequence_mask(lengths: Any, maxlen: Any = None, dtype: Any = np.bool_, name: str | None = None) -> Tensor:
    """TF1's ``tf.sequence_mask``: ``mask[..., j] = j < lengths[...]`` (``maxlen`` default: the largest length)."""
    def fn(n, m=None):
        arr = np.asarray(n.data).astype(np.int64)
        width = int(np.asarray(m.data if isinstance(m, EagerTensor) else m)) if m is not None else \
            int(arr.max(initial=0))
        return EagerTensor._from_op((np.arange(width) < arr[..., None]).astype(dtype), None, ())

    lengths = convert_to_tensor(lengths)
    if maxlen is None:
        return build("SequenceMask", fn, lengths, _name=name)
    return build("SequenceMask", fn, lengths, maxlen, _name=name)


def bidirectional_dynamic_rnn(cell_fw: RNNCell, cell_bw: RNNCell, inputs: Any, sequence_length: Any = None,
                              initial_state_fw: Any = None, initial_state_bw: Any = None, dtype: Any = None,
                              parallel_iterations: Any = None, swap_memory: bool = False, time_major: bool = False,
                              scope: Any = None):
    """``((output_fw, output_bw), (state_fw, state_bw))``: ``cell_fw`` over the
    sequences, ``cell_bw`` over each one reversed (within its length), its
    outputs reversed back; variables under ``bidirectional_rnn/fw`` and ``/bw``."""
    inputs = convert_to_tensor(inputs)
    seq = None if sequence_length is None else convert_to_tensor(sequence_length)
    t_ax = 0 if time_major else 1
    with variable_scope(scope if scope is not None else "bidirectional_rnn"):
        with variable_scope("fw") as fw_scope:
            out_fw, st_fw = dynamic_rnn(cell_fw, inputs, seq, initial_state_fw, dtype, time_major=time_major,
                                        scope=fw_scope)
        with variable_scope("bw") as bw_scope:
            rev = _reverse(inputs, seq, t_ax)
            tmp, st_bw = dynamic_rnn(cell_bw, rev, seq, initial_state_bw, dtype, time_major=time_major,
                                     scope=bw_scope)
    out_bw = _reverse(tmp, seq, t_ax)
    return (out_fw, out_bw), (st_fw, st_bw)


# -- static (unrolled in the graph) -------------------------------------------------------------

def _batch_size(x: Tensor) -> Any:
    n = x.shape[0].value if x.shape.dims else None
    return n if n is not None else _a.shape(x)[0]


def _copy_through(lengths: Tensor, t: int, new: Tensor, old: Tensor | None) -> Tensor:
    """``new`` for sequences longer than ``t``, else ``old`` (zeros when None)."""
    def compute(run, values):
        n, v = values[0], values[1]
        if run is None:
            return v    # a probe (see _reverse)
        mask = _mask(_lengths(n, v.shape[0]), t)
        return distnet.where_v2(mask, v, distnet.zeros_like(v) if old is None else values[2])

    inputs = [lengths, new] + ([] if old is None else [old])
    return leaf("Select", compute, new.dtype, new.shape, new._probes, name="Select", inputs=inputs)


def static_rnn(cell: RNNCell, inputs: Sequence[Any], initial_state: Any = None, dtype: Any = None,
               sequence_length: Any = None, scope: Any = None):
    """``(outputs, state)``: the cell called on each of the list ``inputs``
    (``[batch, depth]`` each, e.g. ``tf.unstack(x, axis=1)``), in the graph."""
    if not isinstance(cell, RNNCell):
        raise TypeError(f"static_rnn: Expect: an RNNCell Actual: {type(cell).__name__}")
    if not isinstance(inputs, (list, tuple)):
        raise TypeError("inputs must be a sequence (a list of [batch, depth] tensors, e.g. tf.unstack(x, axis=1))")
    if not inputs:
        raise ValueError("inputs must not be empty")
    inputs = [convert_to_tensor(x) for x in inputs]
    seq = None if sequence_length is None else convert_to_tensor(sequence_length)
    outputs = []
    with variable_scope(scope if scope is not None else "rnn"):
        if initial_state is not None:
            state = initial_state
        else:
            if dtype is None:
                raise ValueError("If no initial_state is provided, dtype must be specified")
            state = cell.zero_state(_batch_size(inputs[0]), dtype)
        for t, x in enumerate(inputs):
            out, new = cell(x, state)
            if seq is not None:
                out = _copy_through(seq, t, out, None)
                new = pack_state(new, [_copy_through(seq, t, n, o)
                                       for n, o in zip(flatten_state(new), flatten_state(state))])
            outputs.append(out)
            state = new
    return outputs, state


def static_bidirectional_rnn(cell_fw: RNNCell, cell_bw: RNNCell, inputs: Sequence[Any], initial_state_fw: Any = None,
                             initial_state_bw: Any = None, dtype: Any = None, sequence_length: Any = None,
                             scope: Any = None):
    """``(outputs, state_fw, state_bw)``: each output the forward and backward outputs concatenated."""
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise TypeError("inputs must be a non-empty list of [batch, depth] tensors")
    inputs = [convert_to_tensor(x) for x in inputs]
    seq = None if sequence_length is None else convert_to_tensor(sequence_length)
    with variable_scope(scope if scope is not None else "bidirectional_rnn"):
        with variable_scope("fw") as fw_scope:
            out_fw, st_fw = static_rnn(cell_fw, inputs, initial_state_fw, dtype, seq, scope=fw_scope)
        with variable_scope("bw") as bw_scope:
            rev = _reverse_list(inputs, seq)
            tmp, st_bw = static_rnn(cell_bw, rev, initial_state_bw, dtype, seq, scope=bw_scope)
    out_bw = _reverse_list(tmp, seq)
    return [_a.concat([f, b], 1) for f, b in zip(out_fw, out_bw)], st_fw, st_bw


def _reverse_list(xs: list, seq: Tensor | None) -> list:
    if seq is None:
        return list(reversed(xs))
    stacked = _reverse(_a.stack(xs, 0), seq, 0)
    return _a.unstack(stacked, num=len(xs), axis=0)


__all__ = ["LSTMStateTuple", "bidirectional_dynamic_rnn", "dynamic_rnn", "reverse_sequence", "sequence_mask",
           "static_bidirectional_rnn", "static_rnn"]
