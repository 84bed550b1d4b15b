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

from typing import Callable, Sequence

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
    requested leaf's gradient goes into a caller's ``out`` array, saving the
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
              out: Sequence | None = None, accumulate: bool = False,
              on_final: Callable[[int], None] | None = None,
              progress: Callable[[], None] | None = None) -> list:
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
      out: optional arrays, one per ``xs`` (``None`` for an entry to allocate
        as usual), each of its tensor's shape and gradient dtype, C-contiguous
        and writeable: the gradient is written there (e.g. straight into a
        synchroniser's buffer) and that array is returned.  The first
        contribution is copied in, later ones are added in place.  An
        unconnected tensor's ``out`` is zero-filled (``"zero"``) or left as
        it is (``"none"``; ``None`` is returned for it).
      accumulate: with ``out``, add the gradient to what ``out`` holds
        (micro-batch accumulation) instead of overwriting it.  The addition
        is ``out + gradient`` with the gradient summed over its uses first,
        exactly as ``out += gradients(...)[i]`` would round.
      on_final: called as ``on_final(i)`` as soon as the gradient of
        ``xs[i]`` is final (every use of it processed; in ``out[i]`` when
        given), before the rest of the backward pass; once per index.
      progress: called after every op's backward (e.g. to progress
        non-blocking communication).

    Returns:
      ``list[np.ndarray]``, each of its tensor's shape and dtype, writeable
      and distinct from the other returned arrays (``out[i]`` itself where
      given).

    Example:
      >>> x = distnet.Variable([1.0, 2.0])
      >>> distnet.gradients(distnet.reduce_sum(x * x), [x])
      [array([2., 4.], dtype=float32)]
      >>> buf = np.zeros(2, np.float32)
      >>> distnet.gradients(distnet.reduce_sum(x * x), [x], out=[buf])[0] is buf
      True
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
    outs = _check_out(xs, out, accumulate)
    for name, fn in (("on_final", on_final), ("progress", progress)):
        if fn is not None and not callable(fn):
            raise InvalidArgumentError(f"gradients: {name}: Expect: a callable or None Actual: {type(fn).__name__}")

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

    # Tensors whose completion is watched (an out array or on_final): the
    # number of uses (edges from ops in the graph) still to be processed.
    # Every node of ``order`` is visited by the walk below, so when a leaf's
    # count reaches 0 no further contribution can come; an intermediate
    # tensor is complete when the walk reaches it.
    watch: dict = {}
    pending: dict = {}
    if outs is not None or on_final is not None:
        for i, x in enumerate(xs):
            watch.setdefault(x, []).append(i)
        pending = {x: 0 for x in watch if x in needs}
        for node in order:
            for p in node._parents:
                if p in pending:
                    pending[p] += 1
    # A leaf's out array that receives its first contribution by copy and
    # the later ones in place (no new array per use); with ``accumulate`` the
    # uses are summed apart first and added once, as ``out += g`` would.
    owned: dict = {}
    if outs is not None and not accumulate:
        owned = {x: o for x, o in zip(xs, outs) if o is not None and x._op is None}
    done: list = [False] * len(xs)
    found: dict = {}

    def finish(x) -> None:
        """x's gradient is complete: land it in its out array, tell on_final."""
        g = found.get(x)
        for i in watch[x]:
            dest = outs[i] if outs is not None else None
            if dest is not None and g is not dest:
                if g is not None:
                    if accumulate:
                        np.add(dest, g, out=dest, casting="same_kind")
                    else:
                        np.copyto(dest, g, casting="same_kind")
                elif not accumulate and unconnected_gradients == "zero":
                    dest.fill(0)
            done[i] = True
            if on_final is not None:
                on_final(i)

    if needs[ys]:
        if grad_ys is None:
            seed = np.ones(ys.shape, dtype=_grad_dtype(ys))
        else:
            seed = np.asarray(grad_ys, dtype=_grad_dtype(ys)).reshape(ys.shape)
        grads: dict = {ys: seed}
        for node in reversed(order):
            g = grads.pop(node, None)
            if g is not None and node in wanted:
                found[node] = g
            if watch and node in pending and pending[node] == 0 and not done[watch[node][0]]:
                finish(node)     # an intermediate tensor (or ys itself): all its uses are behind
            op = node._op
            parents = node._parents
            if g is not None and op is not None:
                parent_needs = [needs[p] for p in parents]
                if True in parent_needs:
                    pgrads = None
                    if owned and op.backward_out is not None:
                        # First contributions to out arrays: let the op write there.
                        dests, given = [], set()
                        for p, need in zip(parents, parent_needs):
                            d = owned.get(p) if need and p not in grads and p not in given else None
                            given.add(p)
                            dests.append(d)
                        if any(d is not None for d in dests):
                            pgrads = op.backward_out(g, parent_needs, tuple(dests))
                    if pgrads is None:
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
                        if prev is None:
                            dest = owned.get(parent)
                            if dest is not None and pg is not dest:
                                np.copyto(dest, pg, casting="same_kind")
                                pg = dest
                            grads[parent] = pg
                        elif prev is owned.get(parent, False):
                            np.add(prev, pg, out=prev, casting="same_kind")
                        else:
                            grads[parent] = prev + pg
            if watch:
                for parent in parents:
                    if parent in pending:
                        pending[parent] -= 1
                        if pending[parent] == 0 and parent._op is None:
                            # A leaf: nothing upstream, its gradient is final now.
                            g_leaf = grads.pop(parent, None)
                            if g_leaf is not None:
                                found[parent] = g_leaf
                            finish(parent)
            if progress is not None and op is not None:
                progress()
        del grads
    result = []
    handed_out: set[int] = set()
    for i, x in enumerate(xs):
        g = found.get(x)
        if x in watch and not done[i]:
            # Never reached by the walk (unconnected): finish this index only.
            indices = watch[x]
            watch[x] = [i]
            finish(x)
            watch[x] = indices
        dest = outs[i] if outs is not None else None
        if dest is not None:
            result.append(None if g is None and unconnected_gradients == "none" else dest)
            handed_out.add(id(dest))
            continue
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


def _check_out(xs: list, out, accumulate: bool) -> list | None:
    """Validate ``gradients(out=...)``: one writeable C-contiguous array (or
    None) per tensor, of its shape and gradient dtype, no two sharing memory."""
    if not isinstance(accumulate, (bool, np.bool_)):
        raise InvalidArgumentError(f"gradients: accumulate: Expect: True or False Actual: {accumulate!r}")
    if out is None:
        if accumulate:
            raise InvalidArgumentError("gradients: accumulate=True: Expect: out arrays to add into Actual: out=None")
        return None
    if isinstance(out, np.ndarray) or not isinstance(out, Sequence):
        raise InvalidArgumentError(
            f"gradients: out: Expect: a list of arrays (or None), one per xs Actual: {type(out).__name__}")
    outs = list(out)
    if len(outs) != len(xs):
        raise InvalidArgumentError(
            f"gradients: out: Expect: {len(xs)} arrays (or None), one per xs Actual: {len(outs)}")
    seen: dict = {}
    for i, (x, o) in enumerate(zip(xs, outs)):
        if x in seen and (o is not None or outs[seen[x]] is not None):
            raise InvalidArgumentError(
                f"gradients: out[{i}]: xs[{i}] is also xs[{seen[x]}]; Expect: each tensor once when out is given")
        seen.setdefault(x, i)
        if o is None:
            continue
        if not isinstance(o, np.ndarray):
            raise InvalidArgumentError(f"gradients: out[{i}]: Expect: a numpy array or None Actual: {type(o).__name__}")
        if o.shape != x.data.shape:
            raise ShapeError(f"gradients: out[{i}]: Expect: shape {x.data.shape} (its tensor's) Actual: shape {o.shape}")
        dt = _grad_dtype(x)
        if o.dtype != dt:
            raise DTypeError(f"gradients: out[{i}]: Expect: dtype {dt} (its tensor's gradient) Actual: dtype {o.dtype}")
        if not o.flags.writeable or not o.flags.c_contiguous:
            raise InvalidArgumentError(
                f"gradients: out[{i}]: Expect: a writeable C-contiguous array Actual: "
                f"writeable={o.flags.writeable}, c_contiguous={o.flags.c_contiguous}")
    for i, a in enumerate(outs):
        for j in range(i):
            b = outs[j]
            if a is not None and b is not None and a.size and b.size and np.shares_memory(a, b):
                raise InvalidArgumentError(f"gradients: out[{i}] and out[{j}]: Expect: separate memory Actual: overlapping")
        if a is None or not a.size:
            continue
        # An out array over a value of the graph would be overwritten while
        # backward still reads it (e.g. a variable's own data): refused.
        for j, x in enumerate(xs):
            if x.data.size and np.may_share_memory(a, x.data):
                raise InvalidArgumentError(
                    f"gradients: out[{i}]: Expect: memory apart from the values of xs Actual: it overlaps xs[{j}]'s value")
    return outs


def _grad_dtype(t: "Tensor") -> np.dtype:
    """Gradients have the tensor's dtype when it is floating, else float32."""
    dt = t.data.dtype
    return dt if dt.kind == "f" else _FLOAT32


_FLOAT32 = np.dtype(np.float32)


# Imported last: distnet.tensor imports the ops, which import Op from here.
# A module-level name (not an import inside apply) keeps per-op overhead low.
from distnet.tensor import Tensor  # noqa: E402
