"""TF1's gradient clipping in graph mode: ``clip_by_norm``, ``global_norm`` and
``clip_by_global_norm``, composed from graph ops exactly as TF1 composes them
(so they are differentiable, and a zero tensor gives no NaN)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from distnet.compat.v1 import math_ops as m
from distnet.compat.v1.array_ops import cast, ones_like, stack
from distnet.compat.v1.graph import Tensor, convert_to_tensor, get_default_graph


def clip_by_norm(t: Any, clip_norm: Any, axes: Any = None, name: str | None = None) -> Tensor:
    """``t * clip_norm / max(l2norm(t, axes), clip_norm)``: ``t`` unchanged when its
    L2 norm (over ``axes``, all axes when None) is at most ``clip_norm``."""
    with get_default_graph().name_scope(name or "clip_by_norm"):
        t = convert_to_tensor(t)
        clip = cast(clip_norm, t.dtype) if not isinstance(clip_norm, Tensor) or clip_norm.dtype != t.dtype \
            else clip_norm
        l2sum = m.reduce_sum(t * t, axes, keepdims=True)
        positive = l2sum > 0
        # TF1's safe form: the square root of 1 where the sum is 0, so its gradient stays finite.
        l2norm = m.where(positive, m.sqrt(m.where(positive, l2sum, ones_like(l2sum))), l2sum)
        return (t * clip) / m.maximum(l2norm, clip)


def global_norm(t_list: Sequence[Any], name: str | None = None) -> Tensor:
    """``sqrt(sum(sum(t**2) for t in t_list))``, None entries skipped (TF1's ``tf.global_norm``)."""
    if isinstance(t_list, Tensor) or not isinstance(t_list, (list, tuple)):
        raise TypeError(f"global_norm: Expect: a list or tuple of tensors Actual: {type(t_list).__name__}")
    with get_default_graph().name_scope(name or "global_norm"):
        present = [convert_to_tensor(t) for t in t_list if t is not None]
        if not present:
            raise ValueError("global_norm: Expect: at least one tensor that is not None Actual: none")
        half = stack([m.l2_loss(t) for t in present])
        return m.sqrt(m.reduce_sum(half) * np.asarray(2.0, dtype=present[0].dtype))


def clip_by_global_norm(t_list: Sequence[Any], clip_norm: Any, use_norm: Any = None,
                        name: str | None = None) -> tuple:
    """``([t * clip_norm / max(global_norm, clip_norm) for t in t_list], global_norm)``.

    None entries stay None; ``use_norm`` is the global norm when already
    computed.  As TF1: when the norm is not finite every clipped value is NaN.

    Example:
      >>> grads, norm = tf.clip_by_global_norm([g for g, _ in grads_and_vars], 5.0)
    """
    if isinstance(t_list, Tensor) or not isinstance(t_list, (list, tuple)):
        raise TypeError(f"clip_by_global_norm: Expect: t_list a list or tuple of tensors "
                        f"Actual: {type(t_list).__name__}")
    t_list = list(t_list)
    norm = global_norm(t_list) if use_norm is None else convert_to_tensor(use_norm)
    with get_default_graph().name_scope(name or "clip_by_global_norm"):
        dt = norm.dtype
        clip = cast(clip_norm, dt) if not isinstance(clip_norm, Tensor) or clip_norm.dtype != dt else clip_norm
        # TF1: scale = clip_norm * min(1 / norm, 1 / clip_norm); NaN when the norm is not finite.
        scale = clip * m.minimum(1.0 / norm, 1.0 / clip)
        finite = m.less(m.abs(norm), np.asarray(np.inf, dtype=dt))
        scale = m.where_v2(finite, scale, np.asarray(np.nan, dtype=dt))
        out = [None if t is None else convert_to_tensor(t) * cast(scale, convert_to_tensor(t).dtype)
               for t in t_list]
    return out, norm
