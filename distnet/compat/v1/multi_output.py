"""Graph ops with several outputs (``tf.nn.top_k``'s values and indices, ``tf.split``'s parts):
one op computes the distnet function once per run, and one tensor per output
takes its part."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from distnet.compat.v1.graph import Operation, Tensor, TensorShape, _fill, _flatten, _probe, leaf
from distnet.compat.v1.train import node_tensor
from distnet.errors import DistnetError, InvalidArgumentError
from distnet.tensor import Tensor as EagerTensor


def _parts(out_type: str, node: Operation, probed: list, names: list) -> list:
    """One tensor per output of ``node`` (whose value is the list of them): ``probed`` gives
    each one's ``(dtype, static shape, probes)``."""
    value = node_tensor(node)
    return [leaf(out_type, lambda run, values, i=i: values[0][i], dtype, shape, probes, name=names[i],
                 inputs=[value]) for i, (dtype, shape, probes) in enumerate(probed)]


def build_outputs(op_type: str, fn: Callable, n: int, *args, _name: str | None = None,
                  _names: list | None = None, **kwargs) -> list:
    """``n`` tensors, the parts of ``fn(*args, **kwargs)`` (a sequence of ``n``
    distnet tensors), graph tensors in the arguments replaced by their values
    as :func:`distnet.compat.v1.graph.build` does; shapes from probes.
    ``_names`` names the output tensors' ops (default ``<op>/out``)."""
    found: list = []
    template_args = _flatten(list(args), found)
    template_kwargs = _flatten(kwargs, found)

    def compute(run, values):
        out = fn(*_fill(template_args, values), **_fill(template_kwargs, values))
        if len(out) != n:
            raise ValueError(f"internal: {op_type} gave {len(out)} outputs, Expect: {n}")
        return list(out)

    probed = [_probe(op_type, lambda run, values, i=i: compute(run, values)[i], found) for i in range(n)]
    node = Operation(op_type, found, compute, name=_name)
    return _parts(op_type, node, probed, _names or [f"{node.name}/out"] * n)


def run_outputs(op_type: str, compute: Callable, inputs: Sequence[Tensor], name: str | None = None) -> list:
    """Tensors for the outputs of one op: ``compute(run, values)`` (which may run nested
    graphs in ``run``) returns a list of distnet tensors, computed once per ``Session.run``;
    shapes and dtypes come from one call on the inputs' probes, whose ranks must be known."""
    probes = []
    for k in range(2):
        if any(t._probes is None for t in inputs):
            probes = None
            break
        vals = [EagerTensor._from_op(t._probes[k], None, ()) for t in inputs]
        try:
            with np.errstate(all="ignore"):
                probes.append([np.asarray(v.data) for v in compute(None, vals)])
        except (DistnetError, ValueError, TypeError, IndexError) as err:
            if k == 0:
                raise type(err)(f"{op_type}: {err}") from None
            probes = None
            break
    node = Operation(op_type, list(inputs), compute, name=name or op_type)
    if probes is None:
        node_tensor(node)
        raise InvalidArgumentError(f"{op_type}: the rank of every input must be known to build it")
    probed = [(a.dtype, TensorShape([n if n == m else None for n, m in zip(a.shape, b.shape)]) if a.ndim == b.ndim
               else TensorShape(None), (a, b)) for a, b in zip(*probes)]
    return _parts("Identity", node, probed, [f"{node.name}/output_{i}" for i in range(len(probed))])
