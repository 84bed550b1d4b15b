"""TF1's ``tf.nn.embedding_lookup``: rows of one table, or of a table split in parts.

With a list of ``n`` parts, TF1's ``partition_strategy`` says which part
holds id ``i``: ``"mod"`` (the default) puts it in part ``i % n`` at row
``i // n``; ``"div"`` splits the ids in contiguous ranges, the first
``total % n`` parts one row longer.  The lookup is a gather, so only the rows
looked up get a gradient.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import distnet
from distnet.compat.v1.graph import build, convert_to_tensor
from distnet.errors import InvalidArgumentError
from distnet.tensor import Tensor as EagerTensor


def lookup(parts: Sequence[EagerTensor], ids: Any, strategy: str) -> EagerTensor:
    """Rows ``ids`` (any shape) of the table made of ``parts``: ``ids.shape + row shape``."""
    idx = np.asarray(ids.data if isinstance(ids, EagerTensor) else ids).astype(np.int64)
    if len(parts) == 1:
        return distnet.gather(parts[0], idx)
    n = len(parts)
    sizes = np.array([p.shape[0] for p in parts])
    total = int(sizes.sum())
    flat = idx.reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= total):
        bad = flat[(flat < 0) | (flat >= total)][0]
        raise InvalidArgumentError(f"embedding_lookup: id {bad} is not in [0, {total}) (the parts hold {total} rows)")
    if strategy == "mod":
        part, row = flat % n, flat // n
    elif strategy == "div":
        per, extra = divmod(total, n)
        cut = extra * (per + 1)
        part = np.where(flat < cut, flat // (per + 1), extra + (flat - cut) // max(per, 1))
        row = np.where(flat < cut, flat % (per + 1), (flat - cut) % max(per, 1))
    else:
        raise ValueError(f"Unrecognized partition strategy: {strategy!r}; Expect: 'mod' or 'div'")
    pieces, order = [], []
    for p in range(n):
        where = np.nonzero(part == p)[0]
        if where.size:
            pieces.append(distnet.gather(parts[p], row[where]))
            order.append(where)
    if not pieces:
        return distnet.reshape(distnet.gather(parts[0], np.zeros(0, np.int64)), idx.shape + tuple(parts[0].shape[1:]))
    joined = distnet.concat(pieces, 0) if len(pieces) > 1 else pieces[0]
    inverse = np.empty(flat.size, np.int64)
    inverse[np.concatenate(order)] = np.arange(flat.size)
    return distnet.reshape(distnet.gather(joined, inverse), idx.shape + tuple(parts[0].shape[1:]))


def embedding_lookup(params: Any, ids: Any, partition_strategy: str = "mod", name: str | None = None,
                     validate_indices: bool = True, max_norm: Any = None):
    """The rows of ``params`` (a tensor or a list of its parts) at ``ids``."""
    if max_norm is not None:
        raise ValueError("embedding_lookup(max_norm=...) is not supported; clip the looked-up rows with "
                         "tf.clip_by_norm instead")
    if partition_strategy not in ("mod", "div"):
        raise ValueError(f"Unrecognized partition strategy: {partition_strategy!r}; Expect: 'mod' or 'div'")
    parts = list(params) if isinstance(params, (list, tuple)) else [params]
    if not parts:
        raise ValueError("Need at least one param")
    parts = [convert_to_tensor(p) for p in parts]
    return build("GatherV2" if len(parts) == 1 else "DynamicStitch",
                 lambda ps, i: lookup(ps, i, partition_strategy), parts, ids, _name=name or "embedding_lookup")
