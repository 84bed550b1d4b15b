"""Graph ops with several outputs (``tf.nn.top_k``'s values and indices, ``tf.split``'s parts):
one op computes the distnet function once per run, and one tensor per output
takes its part."""
from __future__ import annotations

from typing import Callable

from distnet.compat.v1.graph import Operation, _fill, _flatten, _probe, leaf
from distnet.compat.v1.train import node_tensor


def build_outputs(op_type: str, fn: Callable, n: int, *args, _name: str | None = None, **kwargs) -> list:
    """``n`` tensors, the parts of ``fn(*args, **kwargs)`` (a sequence of ``n``
    distnet tensors), graph tensors in the arguments replaced by their values
    as :func:`distnet.compat.v1.graph.build` does; shapes from probes."""
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
    value = node_tensor(node)
    return [leaf(op_type, lambda run, values, i=i: values[0][i], dtype, shape, probes, name=f"{node.name}/out",
                 inputs=[value]) for i, (dtype, shape, probes) in enumerate(probed)]
