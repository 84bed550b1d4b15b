"""Reverse-mode automatic differentiation on numpy arrays.

A :class:`~distnet.tensor.Tensor` produced by an op remembers the op and its
input tensors.  :func:`gradients` walks that graph backwards from a scalar:

* the walk is iterative (no recursion limit on deep graphs);
* only the inputs that lead to a requested tensor get gradients computed
  (each op's ``backward`` is told which inputs need one, as in Chainer);
* gradients of a tensor used several times are *accumulated*, never
  overwritten, and every gradient's shape is checked against its tensor's;
* an intermediate gradient is dropped as soon as it has been consumed.

There is no global tape: the graph of a step lives exactly as long as the
tensors that hold it, so it is freed when the step's loss goes out of scope.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from distnet.errors import DTypeError, InvalidArgumentError, ShapeError


class Op:
    """One differentiable operation, forward and backward side by side.

    Subclasses take their non-tensor attributes in ``__init__``, compute the
    output from numpy arrays in :meth:`forward` (saving on ``self`` what the
    backward pass needs) and return one gradient per input from
    :meth:`backward`, ``None`` where ``needs[i]`` is false.  Broadcasting is
    undone with :func:`unbroadcast`.  Build a tensor with :meth:`apply`.

    An op whose backward can produce a gradient straight into a given array
    (``np.matmul(..., out=)``) may define ``backward_out(g, needs, outs)``:
    ``outs[i]`` is an array of input ``i``'s shape and gradient dtype, or
    None; it returns what :meth:`backward` returns, with ``outs[i]`` itself
    where it wrote that gradient there.  :func:`gradients` calls it when a
    leaf's gradient is to be built in a caller's ``out`` array, saving the
    copy; an op without it is simply copied from.
    """

    __slots__ = ()
    backward_out = None   # optional: (g, needs, outs) -> tuple, see above

    def forward(self, *xs: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def backward(self, g: np.ndarray, needs: Sequence[bool]) -> tuple:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: "Tensor", **attrs) -> "Tensor":
        """Run the op on tensors and record it in the graph of the result."""
        op = cls(**attrs)
        out = op.forward(*[t.data for t in inputs])
        return Tensor._from_op(out, op, inputs)


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``g`` back to ``shape``: the inverse of numpy broadcasting.

    Leading axes that broadcasting added are summed away first, then every
    axis where ``shape`` has size 1 is summed with ``keepdims``.
    """
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead > 0:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _topological_order(root: "Tensor") -> list:
    """Tensors reachable from ``root``, every tensor after its inputs.

    Iterative depth-first post-order, so a chain of any length works.  A
    tensor is placed only when it is met again after all its inputs were
    expanded, so a tensor reached by two paths (a diamond) still comes after
    all its inputs.  Tensors hash by identity, so they key the state directly.
    """
    order: list = []
    state: dict = {}  # tensor -> 1 (expanded) or 2 (placed)
    stack: list = [root]
    while stack:
        node = stack[-1]
        s = state.get(node)
        if s is None:
            state[node] = 1
            for parent in node._parents:
                if parent not in state:
                    stack.append(parent)
        else:
            stack.pop()
            if s == 1:
                state[node] = 2
                order.append(node)
    return order


def gradients(ys: "Tensor", xs, grad_ys=None, unconnected_gradients: str = "zero", *,
              on_leaf=None, out=None) -> list | None:
    """Gradients of the scalar ``ys`` with respect to each tensor in ``xs``.

    TF1's ``tf.gradients`` for a scalar: returns a list of numpy arrays in the
    order of ``xs`` (a single tensor is accepted and still gives a list), with
    zeros for a tensor ``ys`` does not depend on.

    Args:
      ys: a scalar :class:`Tensor` (shape ``()`` or any shape of size 1).
      xs: a tensor or a list of tensors / variables.
      grad_ys: optional upstream gradient for ``ys`` (defaults to 1).
      unconnected_gradients: TF's option: ``"zero"`` (default) gives zeros for
        a tensor ``ys`` does not depend on, ``"none"`` gives ``None`` and
        allocates nothing.
      on_leaf: the one hook: ``on_leaf(i, g)`` is called once per ``xs[i]``
        (distinct leaf tensors, e.g. variables) as soon as its gradient ``g``
        is complete -- every use of ``xs[i]`` processed -- before the rest
        of the walk (``g`` is None where ``ys`` does not depend on
        ``xs[i]``).  The gradients are then handed over instead of returned:
        the training strategies land them in their buffers and may start
        reducing them while backward goes on
        (:class:`~distnet.distributed.strategies.base.GradientSink`).  ``g``
        may be an array the walk shares with another gradient: read or copy
        it, never write it -- unless it is ``out[i]``.
      out: like numpy's ``out=``: arrays (or None entries), one per
        ``xs[i]`` (distinct leaves), to build the gradients in -- the first
        contribution written there (by the op itself when it has
        ``backward_out``, e.g. a matmul's BLAS call), later ones added in
        place, so a large gradient needs no temporary and no copy (the
        strategies pass their buffer's views).  Where ``ys`` does not depend
        on ``xs[i]``, ``out[i]`` is left as it was.

    Returns:
      ``list[np.ndarray]``, each of its tensor's shape and dtype, writeable
      and distinct from the other returned arrays; None with ``on_leaf``.

    Raises:
      StaleGradientError: ``ys`` was computed from a variable written since
        (its graph holds the old values: the gradient would be the old one).

    Example:
      >>> x = distnet.Variable([1.0, 2.0])
      >>> distnet.gradients(distnet.reduce_sum(x * x), [x])
      [array([2., 4.], dtype=float32)]
    """
    xs = _checked_args(ys, xs, unconnected_gradients, out)
    order = _topological_order(ys)
    wanted = set(xs)
    # needs[t]: t is requested or lies downstream of a requested tensor.
    needs: dict = {}
    for node in order:
        need = node in wanted
        for p in node._parents:   # a loop, not any(generator): this runs for every node of every step
            if need:
                break
            need = needs[p]
        needs[node] = need
        for var, version in node._read:
            if var._version != version:
                _stale(var, version)
    # With the hook: each leaf's uses still to process (its gradient is complete at 0).
    index = _leaf_index(xs) if on_leaf is not None or out is not None else {}
    pending = _uses(order, [x for x in index if x in needs]) if on_leaf is not None else {}
    dests = {} if out is None else {x: out[i] for x, i in index.items() if out[i] is not None}

    found: dict = {}
    if needs[ys]:
        seed = np.ones(ys.shape, dtype=_grad_dtype(ys)) if grad_ys is None else \
            np.asarray(grad_ys, dtype=_grad_dtype(ys)).reshape(ys.shape)
        grads: dict = {ys: seed}
        for node in reversed(order):
            g = grads.pop(node, None)
            if g is not None and node in wanted:
                found[node] = g
            op, parents = node._op, node._parents
            if g is not None and op is not None:
                parent_needs = [needs[p] for p in parents]
                if True in parent_needs:
                    _accumulate(op, g, parents, parent_needs, grads, dests)
            for parent in parents:
                if parent in pending:
                    pending[parent] -= 1
                    if pending[parent] == 0:   # every use behind: complete
                        del pending[parent]
                        on_leaf(index[parent], grads.pop(parent, None))
        del grads
    if on_leaf is not None:
        for x, i in index.items():
            if x in pending or x not in needs:   # ys itself, or unconnected
                on_leaf(i, found.get(x))
        return None
    return _handed_out(xs, found, unconnected_gradients)


def _checked_args(ys, xs, unconnected_gradients: str, out) -> list:
    """``xs`` as a list, after checking every argument of :func:`gradients`."""
    if not isinstance(ys, Tensor):
        raise DTypeError(f"gradients: ys: Expect: a Tensor Actual: {type(ys).__name__}")
    if ys.data.size != 1:
        raise ShapeError(
            "gradients: ys: a scalar (one element): "
            f"Expect: shape () Actual: shape {ys.shape}; reduce it first, "
            "e.g. with distnet.reduce_sum or distnet.reduce_mean"
        )
    if unconnected_gradients not in ("zero", "none"):
        raise InvalidArgumentError(
            f"gradients: unconnected_gradients: Expect: 'zero' or 'none' Actual: {unconnected_gradients!r}")
    xs = [xs] if isinstance(xs, Tensor) else list(xs)
    for i, x in enumerate(xs):
        if not isinstance(x, Tensor):
            raise DTypeError(f"gradients: xs[{i}]: Expect: a Tensor or Variable Actual: {type(x).__name__}")
    if out is not None and len(out) != len(xs):
        raise InvalidArgumentError(f"gradients: out: Expect: one array (or None) per x, {len(xs)} "
                                   f"Actual: {len(out)}")
    return xs


def _handed_out(xs: list, found: dict, unconnected_gradients: str) -> list:
    """The returned list: each x's gradient in its dtype, zeros (or None) where unconnected."""
    result = []
    handed_out: set[int] = set()
    for x in xs:
        g = found.get(x)
        if g is None:
            if unconnected_gradients == "none":
                result.append(None)
                continue
            g = np.zeros(x.shape, dtype=_grad_dtype(x))
        elif not isinstance(g, np.ndarray) or g.dtype != _grad_dtype(x):
            g = np.asarray(g, dtype=_grad_dtype(x))
        # Each returned array belongs to the caller: writeable, and not the
        # same object as another returned gradient (``w1 + w2`` hands the same
        # upstream array to both inputs; an in-place update of one must not
        # change the other).
        if id(g) in handed_out or not g.flags.writeable:
            g = g.copy()
        handed_out.add(id(g))
        result.append(g)
    return result


def _accumulate(op: Op, g: np.ndarray, parents: tuple, parent_needs: list, grads: dict, dests: dict) -> None:
    """Run ``op``'s backward and add each input's gradient to ``grads``.

    A leaf with an ``out`` array (``dests``) gets its first contribution
    written there (by the op itself when it has ``backward_out``) and the
    later ones added in place; other tensors sum their contributions.
    """
    pgrads = None
    if dests and op.backward_out is not None:
        outs = tuple([dests.get(p) if need and p not in grads and p not in parents[:k] else None
                      for k, (p, need) in enumerate(zip(parents, parent_needs))])
        for d in outs:
            if d is not None:
                pgrads = op.backward_out(g, parent_needs, outs)
                break
    if pgrads is None:
        pgrads = op.backward(g, parent_needs)
    for parent, pg, need in zip(parents, pgrads, parent_needs):
        if not need or pg is None:
            continue
        if pg.shape != parent.data.shape:
            raise ShapeError(f"internal: {type(op).__name__}.backward returned a gradient of "
                             f"shape {pg.shape} for an input of shape {parent.shape}")
        prev = grads.get(parent)
        if prev is None:
            dest = dests.get(parent)
            if dest is not None and pg is not dest:
                np.copyto(dest, pg, casting="same_kind")
                pg = dest
            grads[parent] = pg
        elif prev is dests.get(parent, False):
            np.add(prev, pg, out=prev, casting="same_kind")
        else:
            grads[parent] = prev + pg


def _stale(var, version: int) -> None:
    from distnet.tensor import StaleGradientError

    raise StaleGradientError(
        f"gradient through a tensor computed from Variable {var.name!r} at version {version}, but the variable "
        f"has been written since (now version {var._version}); Expect: a loss computed after the last update. "
        "Compute the loss again after each step, e.g. opt.minimize(lambda: loss_fn(), var_list) or, for TF1 "
        "programs, distnet.compat.v1 (graph mode)")


def _leaf_index(xs: list) -> dict:
    """``{tensor: position}`` for ``gradients(on_leaf=, out=)``: distinct leaves only."""
    index: dict = {}
    for i, x in enumerate(xs):
        if x._op is not None:
            raise InvalidArgumentError(f"gradients: on_leaf/out: Expect: leaf tensors (variables) Actual: xs[{i}] "
                                       f"is the output of {type(x._op).__name__}")
        if x in index:
            raise InvalidArgumentError(f"gradients: on_leaf/out: xs[{i}] is also xs[{index[x]}]; "
                                       "Expect: each tensor once")
        index[x] = i
    return index


def _uses(order: list, leaves: list) -> dict:
    """``{leaf: number of edges from it into the graph}`` for ``leaves`` (all in the graph)."""
    uses = {x: 0 for x in leaves}
    for node in order:
        for p in node._parents:
            if p in uses:
                uses[p] += 1
    return uses


def _grad_dtype(t: "Tensor") -> np.dtype:
    """Gradients have the tensor's dtype when it is floating, else float32."""
    dt = t.data.dtype
    return dt if dt.kind == "f" else _FLOAT32


_FLOAT32 = np.dtype(np.float32)


# Imported last: distnet.tensor imports the ops, which import Op from here.
# A module-level name (not an import inside apply) keeps per-op overhead low.
from distnet.tensor import Tensor  # noqa: E402
