"""TF1's control flow in graph mode: ``tf.cond``, ``tf.case`` and ``tf.while_loop``.

The branch and loop functions are called once, when the op is made, and
build ordinary graph ops (TF1 builds them once too).  The ops a function
creates are its *inside*; the tensors and ops they use from outside are
inputs of the control-flow op, so a session computes them first, whichever
branch is taken (TF1's rule: an op made outside ``cond`` runs even when only
the untaken branch uses it).  When the session runs the op:

* ``cond``/``case`` compute their predicates, then only the taken branch's
  outputs (:meth:`_Run.value` computes what they need);
* ``while_loop`` sets its loop variables, computes ``cond``, then ``body``,
  again and again; before each iteration the values of the inside ops are
  dropped from the call, so they are computed anew from the new loop
  variables.

The values are distnet tensors, so ``tf.gradients`` differentiates the
taken branch, or every iteration of the loop, like any other op
(``back_prop=False`` stops the gradient at the loop's outputs).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

import distnet
from distnet.compat.v1.graph import (
    Operation, Tensor, TensorShape, as_shape, convert_to_tensor, get_default_graph, leaf, probes_for,
)
from distnet.compat.v1.tensor_array import TensorArray
from distnet.compat.v1.train import node_tensor
from distnet.errors import InvalidArgumentError
from distnet.tensor import Tensor as EagerTensor


# -- nested structures (TF1's nest, for what the functions take and return) -------------------

def _is_sequence(x: Any) -> bool:
    return isinstance(x, (list, tuple, dict))


def _flatten(structure: Any) -> list:
    if isinstance(structure, dict):
        return [leaf_ for k in sorted(structure) for leaf_ in _flatten(structure[k])]
    if isinstance(structure, (list, tuple)):
        return [leaf_ for x in structure for leaf_ in _flatten(x)]
    return [structure]


def _pack(structure: Any, flat: Sequence) -> Any:
    it = iter(flat)

    def rebuild(s):
        if isinstance(s, dict):
            return type(s)((k, rebuild(s[k])) for k in sorted(s))
        if isinstance(s, tuple) and hasattr(s, "_fields"):
            return type(s)(*[rebuild(x) for x in s])
        if isinstance(s, (list, tuple)):
            return type(s)(rebuild(x) for x in s)
        return next(it)

    return rebuild(structure)


def _same_structure(a: Any, b: Any) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and sorted(a) == sorted(b) and all(
            _same_structure(a[k], b[k]) for k in a)
    if _is_sequence(a) or _is_sequence(b):
        return _is_sequence(a) and _is_sequence(b) and len(a) == len(b) and all(
            _same_structure(x, y) for x, y in zip(a, b))
    return True


# -- the inside of a function -----------------------------------------------------------------

class _Inside:
    """The ops a function created when called, and what they take from outside."""

    def __init__(self, ops: Sequence[Operation], outputs: Sequence[Tensor], exclude: Sequence[Operation] = ()):
        self.ops = list(ops)
        inside = set(self.ops)
        self.tensors: list = []     # outside tensors the inside reads (or returns)
        self.controls: list = []    # outside ops the inside waits for
        seen: set = set(exclude)
        for op in self.ops:
            for t in op.inputs:
                if t.op not in inside and t.op not in seen:
                    seen.add(t.op)
                    self.tensors.append(t)
            for c in op.control_inputs:
                if c not in inside and c not in self.controls and c not in seen:
                    self.controls.append(c)
        for t in outputs:
            if t.op not in inside and t.op not in seen:
                seen.add(t.op)
                self.tensors.append(t)


def _call(graph, fn: Callable, args: Sequence = (), what: str = "fn"):
    """Call ``fn(*args)``; ``(structure, flat output tensors, start index of its ops)``."""
    if not callable(fn):
        raise TypeError(f"{what} must be callable; Expect: a function (e.g. lambda: x) Actual: {type(fn).__name__}")
    start = len(graph._ops)
    out = fn(*args)
    if out is None:
        raise ValueError(f"{what} returned None; Expect: a tensor or a (nested) list/tuple of tensors")
    flat = [_as_tensor(x) for x in _flatten(out)]
    return out, flat, start


def _as_tensor(x: Any) -> Tensor:
    """A graph tensor for a structure's leaf: a TensorArray stands for its ``flow``; an
    Operation (``lambda: train_op``) for a tensor without value that runs after it."""
    if isinstance(x, TensorArray):
        return x.flow
    if isinstance(x, Operation):
        with x.graph.control_dependencies([x]):
            return leaf("Identity", lambda run, values: None, None, TensorShape(None), None, name="control")
    return convert_to_tensor(x)


def _rewrap(leaves: Sequence, tensors: Sequence[Tensor]) -> list:
    """``tensors`` with each TensorArray position of ``leaves`` made a TensorArray again."""
    return [x._new(t) if isinstance(x, TensorArray) else t for x, t in zip(leaves, tensors)]


def _merged(shapes: Sequence[TensorShape]) -> TensorShape:
    """The most specific shape every one of ``shapes`` has (TF1's most_specific_compatible_shape)."""
    first = shapes[0]
    if any(s.dims is None for s in shapes) or len({len(s.dims) for s in shapes}) > 1:
        return TensorShape(None)
    return TensorShape([first.dims[i].value if all(s.dims[i].value == first.dims[i].value for s in shapes)
                        else None for i in range(len(first.dims))])


def _outputs(node: Operation, columns: Sequence[Sequence[Tensor]], op_type: str) -> list:
    """One tensor per output position; ``columns[k]`` are that position's candidates."""
    value = node_tensor(node)
    out = []
    for k, cands in enumerate(columns):
        shape = _merged([c.shape for c in cands])
        same = all(c.shape == cands[0].shape for c in cands) and cands[0]._probes is not None
        probes = cands[0]._probes if same else (probes_for(shape, cands[0].dtype) if shape.dims is not None
                                                and cands[0].dtype is not None else None)
        out.append(leaf(op_type, lambda run, values, k=k: values[0][k], cands[0].dtype, shape, probes,
                        name=op_type, inputs=[value]))
    return out


# -- cond and case ----------------------------------------------------------------------------

def _check_pred(pred: Any, what: str) -> Tensor:
    if isinstance(pred, (bool, np.bool_)):
        raise TypeError(f"{what}: pred must not be a Python bool; Expect: a boolean tensor "
                        "(a Python bool needs no tf.cond: use an if)")
    pred = convert_to_tensor(pred)
    if pred.dtype is not None and pred.dtype != np.bool_:
        raise TypeError(f"{what}: Expect: a bool tensor as predicate Actual: dtype {pred.dtype.name}")
    if pred.shape.dims is not None and pred.shape.num_elements() not in (None, 1):
        raise ValueError(f"{what}: Expect: a scalar predicate Actual: shape {pred.shape}")
    return pred


def _branches(graph, fns: Sequence[Callable], names: Sequence[str], what: str):
    """Call each branch function; their structure (checked equal), flat outputs, insides."""
    structures, flats, insides = [], [], []
    for fn, label in zip(fns, names):
        out, flat, start = _call(graph, fn, (), f"{what}: {label}")
        structures.append(out)
        flats.append(flat)
        insides.append((start, flat))
    ends = [s for s, _ in insides[1:]] + [len(graph._ops)]
    built = [_Inside(graph._ops[start:end], flat) for (start, flat), end in zip(insides, ends)]
    for label, s, flat in zip(names[1:], structures[1:], flats[1:]):
        if not _same_structure(structures[0], s) or len(flat) != len(flats[0]):
            raise ValueError(f"{what}: {names[0]} and {label} must return the same structure; "
                             f"Expect: {_describe(structures[0])} Actual: {_describe(s)}")
        for i, (a, b) in enumerate(zip(flats[0], flat)):
            if a.dtype != b.dtype:
                raise ValueError(f"{what}: output {i} of {names[0]} and {label} must have the same dtype; "
                                 f"Expect: {a.dtype} Actual: {b.dtype}")
    return structures[0], flats, built


def _describe(structure: Any) -> str:
    if isinstance(structure, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in structure.items()) + "}"
    if isinstance(structure, (list, tuple)):
        inner = ", ".join(_describe(x) for x in structure)
        return f"[{inner}]" if isinstance(structure, list) else f"({inner})"
    return "tensor"


def _select(graph, op_type: str, preds: Sequence[Tensor], branches: list, flats: list, choose):
    """The op computing ``preds``, then the outputs of branch ``choose(pred values)`` only."""
    tensors, controls = [], []
    for inside in branches:
        for t in inside.tensors:
            if t not in tensors and t not in preds:
                tensors.append(t)
        controls.extend(c for c in inside.controls if c not in controls)
    n = len(preds)

    def compute(run, values):
        k = choose([bool(np.asarray(v.data).reshape(-1)[0]) for v in values[:n]])
        return [run.value(t) for t in flats[k]]

    node = Operation(op_type, list(preds) + tensors, compute, name=op_type, control_inputs=controls)
    return _outputs(node, list(zip(*flats)), "Merge")


def cond(pred, true_fn=None, false_fn=None, strict: bool = False, name: str | None = None, fn1=None, fn2=None):
    """TF1's ``tf.cond``: ``true_fn()`` where ``pred`` is true, else ``false_fn()``.

    Both functions are called once, now; when the session runs the result,
    only the taken branch's ops are computed (and differentiated).  A branch
    returning a one-element list gives its element, unless ``strict``.

    Example:
      >>> y = tf.cond(is_training, lambda: tf.nn.dropout(h, 0.5), lambda: h)
    """
    true_fn = true_fn if true_fn is not None else fn1
    false_fn = false_fn if false_fn is not None else fn2
    if true_fn is None or false_fn is None:
        raise TypeError("cond(): Expect: true_fn and false_fn Actual: "
                        f"{'true_fn' if true_fn is None else 'false_fn'} missing")
    pred = _check_pred(pred, "cond")
    graph = get_default_graph()
    with graph.name_scope(name or "cond"):
        structure, flats, branches = _branches(graph, [true_fn, false_fn], ["true_fn", "false_fn"], "cond")
        outs = _select(graph, "Cond", [pred], branches, flats, lambda p: 0 if p[0] else 1)
    result = _pack(structure, outs)
    if not strict and isinstance(result, list) and len(result) == 1:
        return result[0]
    return result


def case(pred_fn_pairs, default=None, exclusive: bool = False, strict: bool = False, name: str = "case"):
    """TF1's ``tf.case``: the function of the first true predicate, else ``default``.

    ``pred_fn_pairs`` is a list of ``(pred, fn)`` or a dict; without
    ``default`` the last function is the default and no true predicate is an
    error when the session runs it; with ``exclusive`` more than one true
    predicate is an error.
    """
    if isinstance(pred_fn_pairs, dict):
        pairs = list(pred_fn_pairs.items())
    else:
        pairs = list(pred_fn_pairs)
    if not pairs:
        raise ValueError("case: Expect: at least one (pred, fn) pair Actual: none")
    for i, p in enumerate(pairs):
        if not isinstance(p, (list, tuple)) or len(p) != 2 or not callable(p[1]):
            raise TypeError(f"case: pred_fn_pairs[{i}]: Expect: a (predicate, callable) pair Actual: {p!r:.80}")
    preds = [_check_pred(p, f"case: pred_fn_pairs[{i}]") for i, (p, _) in enumerate(pairs)]
    fns = [f for _, f in pairs] + ([default] if default is not None else [])
    labels = [f"fn {i}" for i in range(len(pairs))] + (["default"] if default is not None else [])
    graph = get_default_graph()
    pred_names = [p.name for p in preds]

    def choose(values):
        true = [i for i, v in enumerate(values) if v]
        if exclusive and len(true) > 1:
            raise InvalidArgumentError(
                f"Input error: exclusive=True: more than 1 conditions ({', '.join(pred_names)}) evaluated as "
                f"True: {[int(v) for v in values]}")
        if true:
            return true[0]
        if default is None:
            raise InvalidArgumentError(f"Input error: None of conditions evaluated as True: "
                                       f"{[int(v) for v in values]} (conditions {', '.join(pred_names)})")
        return len(pairs)

    with graph.name_scope(name or "case"):
        structure, flats, branches = _branches(graph, fns, labels, "case")
        outs = _select(graph, "Case", preds, branches, flats, choose)
    result = _pack(structure, outs)
    if not strict and isinstance(result, list) and len(result) == 1:
        return result[0]
    return result


# -- while_loop -------------------------------------------------------------------------------

def while_loop(cond, body, loop_vars, shape_invariants=None, parallel_iterations: int = 10, back_prop: bool = True,
               swap_memory: bool = False, name: str | None = None, maximum_iterations=None,
               return_same_structure: bool = False):
    """TF1's ``tf.while_loop``: ``while cond(*vars): vars = body(*vars)``.

    ``loop_vars`` is a (nested) list or tuple of tensors; ``body`` returns
    the same structure with the same dtypes and shapes compatible with
    ``shape_invariants`` (default: the initial shapes).  At most
    ``maximum_iterations`` iterations run.  Gradients flow through every
    iteration unless ``back_prop=False``.  A single loop variable is
    returned as itself unless ``return_same_structure``.

    Example:
      >>> i, total = tf.while_loop(lambda i, s: i < 10, lambda i, s: (i + 1, s + x), [0, 0.0])
    """
    if not callable(cond) or not callable(body):
        raise TypeError("while_loop: Expect: cond and body callables Actual: "
                        f"{type(cond).__name__} and {type(body).__name__}")
    if not isinstance(loop_vars, (list, tuple)) or not loop_vars:
        raise ValueError(f"while_loop: Expect: loop_vars a non-empty list or tuple of tensors "
                         f"Actual: {type(loop_vars).__name__}; write [x] for one loop variable")
    graph = get_default_graph()
    init_leaves = _flatten(loop_vars)
    flat_init = [_as_tensor(x) for x in init_leaves]
    if shape_invariants is not None:
        invariants = [as_shape(s) for s in _flatten(shape_invariants)]
        if len(invariants) != len(flat_init):
            raise ValueError(f"while_loop: shape_invariants: Expect: {len(flat_init)} shapes (one per loop "
                             f"variable) Actual: {len(invariants)}")
        for t, s in zip(flat_init, invariants):
            if not s.is_compatible_with(t.shape):
                raise ValueError(f"while_loop: the shape invariant {s} is not compatible with the initial shape "
                                 f"{t.shape} of {t.name}")
    else:
        invariants = [t.shape for t in flat_init]
    max_t = None
    if maximum_iterations is not None:
        max_t = convert_to_tensor(maximum_iterations)
    with graph.name_scope(name or "while"):
        start = len(graph._ops)
        loop_ops = []
        for t, s in zip(flat_init, invariants):
            probes = t._probes if t.shape == s else (probes_for(s, t.dtype) if s.dims is not None else None)
            lv = leaf("LoopVar", _loop_var_unset, t.dtype, s, probes, name="Identity")
            loop_ops.append(lv)
        args = _pack(loop_vars, _rewrap(init_leaves, loop_ops))
        c_out, c_flat, _ = _call(graph, cond, args, "while_loop: cond")
        if len(c_flat) != 1:
            raise ValueError(f"while_loop: cond must return one boolean tensor; Actual: {_describe(c_out)}")
        c_t = _check_pred(c_flat[0], "while_loop: cond")
        b_out, b_flat, _ = _call(graph, body, args, "while_loop: body")
        if not _is_sequence(b_out) and len(flat_init) == 1:
            b_out = type(loop_vars)([b_out])
        if not _same_structure(loop_vars, b_out) or len(b_flat) != len(flat_init):
            raise ValueError(f"while_loop: body must return the structure of loop_vars; Expect: "
                             f"{_describe(loop_vars)} Actual: {_describe(b_out)}")
        body_leaves = _flatten(b_out)
        for i, (a, b) in enumerate(zip(init_leaves, body_leaves)):
            if isinstance(a, TensorArray) != isinstance(b, TensorArray):
                raise TypeError(f"while_loop: loop variable {i} is {type(a).__name__} but body returned "
                                f"{type(b).__name__}; Expect: the same kinds")
        for t0, t1, s in zip(flat_init, b_flat, invariants):
            if t1.dtype != t0.dtype:
                raise TypeError(f"while_loop: Input tensor '{t0.name}' enters the loop with dtype {t0.dtype}, but "
                                f"has dtype {t1.dtype} after one iteration")
            if not s.is_compatible_with(t1.shape) or (s.dims is not None and t1.shape.dims is None):
                raise ValueError(f"Input tensor '{t0.name}' enters the loop with shape {s}, but has shape "
                                 f"{t1.shape} after one iteration. To allow the shape to vary across iterations, "
                                 "use the `shape_invariants` argument of tf.while_loop to specify a less-specific "
                                 "shape.")
        inside = _Inside(graph._ops[start:], [c_t] + b_flat, exclude=[lv.op for lv in loop_ops])
        inside_ops = inside.ops
        n = len(flat_init)
        lv_ops = [lv.op for lv in loop_ops]
        extra = [max_t] if max_t is not None else []

        def compute(run, values):
            current = list(values[:n])
            limit = None if max_t is None else int(np.asarray(values[n].data))
            count = 0
            store = run.values
            while limit is None or count < limit:
                for op in inside_ops:
                    store.pop(op, None)
                for op, v in zip(lv_ops, current):
                    store[op] = v
                if not bool(np.asarray(run.value(c_t).data).reshape(-1)[0]):
                    break
                current = [run.value(t) for t in b_flat]
                count += 1
            for op in inside_ops:
                store.pop(op, None)
            if not back_prop:
                current = [distnet.stop_gradient(v) if isinstance(v, EagerTensor) and v.dtype.kind == "f" else v
                           for v in current]
            return current

        node = Operation("While", flat_init + extra + [t for t in inside.tensors if t not in flat_init], compute,
                         name="While", control_inputs=inside.controls)
        exits = _rewrap(body_leaves, _outputs(node, [[lv] for lv in loop_ops], "Exit"))
    if not return_same_structure and len(loop_vars) == 1:
        return exits[0] if len(flat_init) == 1 else _pack(loop_vars[0], exits)
    return _pack(loop_vars, exits)


def _loop_var_unset(run, values):
    raise InvalidArgumentError("internal: a while_loop variable was computed outside its loop")
