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

from typing import TYPE_CHECKING, Sequence

import numpy as np

from distnet.errors import DTypeError, ShapeError

if TYPE_CHECKING:  # pragma: no cover
    from distnet.tensor import Tensor


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
        from distnet.tensor import Tensor

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
    node is marked when it is expanded, not when it is pushed: a tensor
    reached by two paths (a diamond) must still come after all its inputs.
    """
    order: list = []
    visited: set[int] = set()
    stack: list = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for parent in node._parents:
            if id(parent) not in visited:
                stack.append((parent, False))
    return order


def gradients(ys: "Tensor", xs, grad_ys=None) -> list[np.ndarray]:
    """Gradients of the scalar ``ys`` with respect to each tensor in ``xs``.

    TF1's ``tf.gradients`` for a scalar: returns a list of numpy arrays in the
    order of ``xs`` (a single tensor is accepted and still gives a list), with
    zeros for a tensor ``ys`` does not depend on.

    Args:
      ys: a scalar :class:`Tensor` (shape ``()`` or any shape of size 1).
      xs: a tensor or a list of tensors / variables.
      grad_ys: optional upstream gradient for ``ys`` (defaults to 1).

    Returns:
      ``list[np.ndarray]``, each of its tensor's shape and dtype.

    Example:
      >>> x = distnet.Variable([1.0, 2.0])
      >>> distnet.gradients(distnet.reduce_sum(x * x), [x])
      [array([2., 4.], dtype=float32)]
    """
    from distnet.tensor import Tensor

    if not isinstance(ys, Tensor):
        raise DTypeError(f"gradients: ys must be a Tensor, got {type(ys).__name__}")
    if ys.data.size != 1:
        raise ShapeError(
            "gradients: ys must be a scalar (one element). "
            f"Expect: shape () Actual: shape {ys.shape}; reduce it first, "
            "e.g. with distnet.reduce_sum or distnet.reduce_mean"
        )
    single = isinstance(xs, Tensor)
    xs = [xs] if single else list(xs)
    for i, x in enumerate(xs):
        if not isinstance(x, Tensor):
            raise DTypeError(f"gradients: xs[{i}] must be a Tensor or Variable, got {type(x).__name__}")

    order = _topological_order(ys)
    wanted = {id(x) for x in xs}
    # needs[id]: a requested tensor is this one or lies upstream of it.
    needs: dict[int, bool] = {}
    for node in order:
        needs[id(node)] = id(node) in wanted or any(needs[id(p)] for p in node._parents)

    found: dict[int, np.ndarray] = {}
    if needs[id(ys)]:
        if grad_ys is None:
            seed = np.ones(ys.shape, dtype=_grad_dtype(ys))
        else:
            seed = np.asarray(grad_ys, dtype=_grad_dtype(ys)).reshape(ys.shape)
        grads: dict[int, np.ndarray] = {id(ys): seed}
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if id(node) in wanted:
                found[id(node)] = g
            if node._op is None:
                continue
            parent_needs = [needs[id(p)] for p in node._parents]
            if not any(parent_needs):
                continue
            pgrads = node._op.backward(g, parent_needs)
            for parent, pg, need in zip(node._parents, pgrads, parent_needs):
                if not need or pg is None:
                    continue
                if pg.shape != parent.shape:
                    raise ShapeError(
                        f"internal: {type(node._op).__name__}.backward returned a gradient of "
                        f"shape {pg.shape} for an input of shape {parent.shape}"
                    )
                prev = grads.get(id(parent))
                grads[id(parent)] = pg if prev is None else prev + pg
    out = []
    for x in xs:
        g = found.get(id(x))
        if g is None:
            g = np.zeros(x.shape, dtype=_grad_dtype(x))
        elif g.dtype != _grad_dtype(x):
            g = g.astype(_grad_dtype(x))
        out.append(g)
    return out


def _grad_dtype(t: "Tensor") -> np.dtype:
    """Gradients have the tensor's dtype when it is floating, else float32."""
    return t.dtype if np.issubdtype(t.dtype, np.floating) else np.dtype(np.float32)
