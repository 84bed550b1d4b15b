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
    """

    __slots__ = ()

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


def gradients(ys: "Tensor", xs, grad_ys=None, unconnected_gradients: str = "zero") -> list:
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

    Returns:
      ``list[np.ndarray]``, each of its tensor's shape and dtype, writeable
      and distinct from the other returned arrays.

    Example:
      >>> x = distnet.Variable([1.0, 2.0])
      >>> distnet.gradients(distnet.reduce_sum(x * x), [x])
      [array([2., 4.], dtype=float32)]
    """
    if not isinstance(ys, Tensor):
        raise DTypeError(f"gradients: ys must be a Tensor, got {type(ys).__name__}")
    if ys.data.size != 1:
        raise ShapeError(
            "gradients: ys must be a scalar (one element). "
            f"Expect: shape () Actual: shape {ys.shape}; reduce it first, "
            "e.g. with distnet.reduce_sum or distnet.reduce_mean"
        )
    if unconnected_gradients not in ("zero", "none"):
        raise InvalidArgumentError(
            f"gradients: unconnected_gradients must be 'zero' or 'none', got {unconnected_gradients!r}")
    single = isinstance(xs, Tensor)
    xs = [xs] if single else list(xs)
    for i, x in enumerate(xs):
        if not isinstance(x, Tensor):
            raise DTypeError(f"gradients: xs[{i}] must be a Tensor or Variable, got {type(x).__name__}")

    order = _topological_order(ys)
    wanted = set(xs)
    # needs[t]: t is requested or lies downstream of a requested tensor.
    needs: dict = {}
    for node in order:
        need = node in wanted
        if not need:
            for p in node._parents:
                if needs[p]:
                    need = True
                    break
        needs[node] = need

    found: dict = {}
    if needs[ys]:
        if grad_ys is None:
            seed = np.ones(ys.shape, dtype=_grad_dtype(ys))
        else:
            seed = np.asarray(grad_ys, dtype=_grad_dtype(ys)).reshape(ys.shape)
        grads: dict = {ys: seed}
        for node in reversed(order):
            g = grads.pop(node, None)
            if g is None:
                continue
            if node in wanted:
                found[node] = g
            op = node._op
            if op is None:
                continue
            parents = node._parents
            parent_needs = [needs[p] for p in parents]
            if True not in parent_needs:
                continue
            pgrads = op.backward(g, parent_needs)
            for parent, pg, need in zip(parents, pgrads, parent_needs):
                if not need or pg is None:
                    continue
                if pg.shape != parent.data.shape:
                    raise ShapeError(
                        f"internal: {type(op).__name__}.backward returned a gradient of "
                        f"shape {pg.shape} for an input of shape {parent.shape}"
                    )
                prev = grads.get(parent)
                grads[parent] = pg if prev is None else prev + pg
        del grads
    out = []
    handed_out: set[int] = set()
    for x in xs:
        g = found.get(x)
        dt = _grad_dtype(x)
        if g is None:
            if unconnected_gradients == "none":
                out.append(None)
                continue
            g = np.zeros(x.shape, dtype=dt)
        elif not isinstance(g, np.ndarray) or g.dtype != dt:
            g = np.asarray(g, dtype=dt)
        # Each returned array belongs to the caller: writeable, and not the
        # same object as another returned gradient (``w1 + w2`` hands the same
        # upstream array to both inputs; an in-place update of one must not
        # change the other).
        if id(g) in handed_out or not g.flags.writeable:
            g = g.copy()
        handed_out.add(id(g))
        out.append(g)
    return out


def _grad_dtype(t: "Tensor") -> np.dtype:
    """Gradients have the tensor's dtype when it is floating, else float32."""
    dt = t.data.dtype
    return dt if dt.kind == "f" else _FLOAT32


_FLOAT32 = np.dtype(np.float32)


# Imported last: distnet.tensor imports the ops, which import Op from here.
# A module-level name (not an import inside apply) keeps per-op overhead low.
from distnet.tensor import Tensor  # noqa: E402
