"""``tf.contrib.layers.optimize_loss``: the training op of TF1's contrib
in one call -- an optimizer by name, class or instance, a learning rate
(a float becomes the variable ``OptimizeLoss/learning_rate``) and its decay,
gradient multipliers, clipping, summaries -- returning a tensor that runs
the update and gives the loss.

The global gradient norm (summaries, clipping by a float) is
:func:`distnet.optimizers.base.global_norm` / ``clip_by_global_norm`` on
the gradients of the call; under a ``DistributedOptimizer`` those are the
global batch's, so the clip is that of the global gradient.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import distnet
from distnet.compat.v1 import array_ops, summary, train as _train
from distnet.compat.v1.graph import GraphKeys, Tensor, build, convert_to_tensor, get_default_graph
from distnet.compat.v1.variables import (
    constant_initializer, get_variable, trainable_variables, variable_scope,
)
from distnet.optimizers.base import clip_by_global_norm, global_norm

SUMMARIES = ("learning_rate", "loss", "gradients", "gradient_norm", "global_gradient_norm")


def _momentum(learning_rate):
    return _train.MomentumOptimizer(learning_rate, momentum=0.9)


#: TF1's optimizer names (``"Ftrl"`` has no distnet optimizer).
OPTIMIZER_CLS_NAMES = {
    "Adagrad": _train.AdagradOptimizer,
    "Adam": _train.AdamOptimizer,
    "Momentum": _momentum,
    "RMSProp": _train.RMSPropOptimizer,
    "SGD": _train.GradientDescentOptimizer,
}


def _norm_op(tensors: list, name: str) -> Tensor:
    """The global norm of ``tensors`` (float32, as TF1's)."""
    return build("GlobalNorm", lambda vals: distnet.constant(np.float32(global_norm([v.data for v in vals]))),
                 tensors, _name=name)


def _clip_by_norm(grads_and_vars: list, clip_norm: float) -> list:
    kept = [(g, v) for g, v in grads_and_vars if g is not None]
    norm = _norm_op([g for g, _ in kept], "global_norm")
    out = []
    for g, v in kept:
        def clip(gv, n, dtype=g.dtype):
            scaled, _ = clip_by_global_norm([gv.data], clip_norm, use_norm=float(n.data))
            return distnet.constant(np.asarray(scaled[0], dtype))

        out.append((build("ClipByGlobalNorm", clip, g, norm), v))
    return out


def _multiply(grads_and_vars: list, multipliers: dict) -> list:
    """TF1: a multiplier's key is the variable or its tensor name (``"b:0"``; a bare ``"b"`` matches nothing)."""
    out = []
    for g, v in grads_and_vars:
        key = v if v in multipliers else v.name
        if g is not None and key in multipliers:
            g = g * convert_to_tensor(np.float32(multipliers[key]))
        out.append((g, v))
    return out


def optimize_loss(loss, global_step, learning_rate, optimizer, gradient_noise_scale=None, gradient_multipliers=None,
                  clip_gradients=None, learning_rate_decay_fn=None, update_ops=None, variables=None, name=None,
                  summaries=None, colocate_gradients_with_ops=False, increment_global_step=True):
    """One training op: gradients of ``loss`` by ``optimizer``, applied; its value is ``loss``.

    Args (TF1's): ``optimizer`` is a name of :data:`OPTIMIZER_CLS_NAMES`, an
    optimizer class (made with ``learning_rate=lr``), an instance, or a
    function ``lr -> optimizer``; ``clip_gradients`` a float (clip by global
    norm) or a function of the ``(gradient, variable)`` list;
    ``gradient_multipliers`` ``{variable or tensor name "w:0": factor}``; ``summaries``
    some of :data:`SUMMARIES` (default loss, learning_rate,
    global_gradient_norm); ``update_ops`` (default ``UPDATE_OPS``) run before
    the loss.
    """
    g = get_default_graph()
    loss = convert_to_tensor(loss)
    if loss.shape.ndims not in (None, 0):
        raise ValueError(f"optimize_loss: Expect: a scalar loss Actual: shape {loss.shape}")
    if global_step is None:
        global_step = _train.get_global_step()
    if gradient_noise_scale is not None:
        raise ValueError("optimize_loss: gradient_noise_scale is not supported by distnet.compat.v1 (random noise "
                         "would differ between ranks); Expect: gradient_noise_scale=None")
    if summaries is None:
        summaries = ["loss", "learning_rate", "global_gradient_norm"]
    for s in summaries:
        if s not in SUMMARIES:
            raise ValueError(f"Summaries should be one of [{', '.join(SUMMARIES)}], you provided {s}.")
    with variable_scope(name, default_name="OptimizeLoss"):
        ops = list(update_ops) if update_ops is not None else list(g.get_collection(GraphKeys.UPDATE_OPS))
        if ops:
            with g.control_dependencies(ops):
                loss = array_ops.identity(loss)
        lr = None
        if learning_rate is not None:
            if isinstance(learning_rate, Tensor) and learning_rate.shape.ndims == 0:
                lr = learning_rate
            elif isinstance(learning_rate, float):
                if learning_rate < 0.0:
                    raise ValueError(f"Invalid learning_rate {learning_rate}.")
                lr = get_variable("learning_rate", [], trainable=False,
                                  initializer=constant_initializer(learning_rate))
            else:
                raise ValueError(f"Learning rate should be 0d Tensor or float. Got {learning_rate!r} of type "
                                 f"{type(learning_rate).__name__}")
        if lr is not None and learning_rate_decay_fn is not None:
            if global_step is None:
                raise ValueError("global_step is required for learning_rate_decay_fn.")
            lr = learning_rate_decay_fn(lr, global_step)
            if "learning_rate" in summaries:
                summary.scalar("learning_rate", lr)
        opt = _make_optimizer(optimizer, lr, learning_rate)
        var_list = list(variables) if variables is not None else trainable_variables()
        grads = opt.compute_gradients(loss, var_list)
        if gradient_multipliers is not None:
            grads = _multiply(grads, gradient_multipliers)
        present = [gr for gr, _ in grads if gr is not None]
        if not present:
            raise ValueError("Empty list of (gradient, var) pairs encountered: the loss depends on none of the "
                             "variables")
        norms = "global_gradient_norm" in summaries or "gradient_norm" in summaries
        if norms:
            summary.scalar("global_norm/gradient_norm", _norm_op(present, "global_norm"))
        if isinstance(clip_gradients, float):
            grads = _clip_by_norm(grads, clip_gradients)
        elif callable(clip_gradients):
            grads = clip_gradients(grads)
        elif clip_gradients is not None:
            raise ValueError(f"Unknown type {type(clip_gradients).__name__} for clip_gradients")
        if "loss" in summaries:
            summary.scalar("loss", loss)
        for gr, v in grads:
            if gr is None:
                continue
            tag = v.name.replace(":", "_")
            if "gradients" in summaries:
                summary.histogram(f"gradients/{tag}", gr)
            if "gradient_norm" in summaries:
                summary.scalar(f"gradient_norm/{tag}", _norm_op([gr], "global_norm"))
        if clip_gradients is not None and norms:
            summary.scalar("global_norm/clipped_gradient_norm",
                           _norm_op([gr for gr, _ in grads if gr is not None], "global_norm"))
        update = opt.apply_gradients(grads, global_step=global_step if increment_global_step else None, name="train")
        with g.control_dependencies([update]):
            return array_ops.identity(loss)


def _make_optimizer(optimizer: Any, lr: Any, learning_rate: Any):
    if isinstance(optimizer, str):
        if lr is None:
            raise ValueError(f"Learning rate is None, but should be specified if optimizer is string ({optimizer}).")
        if optimizer not in OPTIMIZER_CLS_NAMES:
            raise ValueError(f"Optimizer name should be one of [{', '.join(OPTIMIZER_CLS_NAMES)}], you provided "
                             f"{optimizer}." + (" (Ftrl has no distnet optimizer)" if optimizer == "Ftrl" else ""))
        return OPTIMIZER_CLS_NAMES[optimizer](learning_rate=lr)
    if isinstance(optimizer, type) and issubclass(optimizer, _train.Optimizer):
        if lr is None:
            raise ValueError(f"Learning rate is None, but should be specified if optimizer is class ({optimizer}).")
        return optimizer(learning_rate=lr)
    if isinstance(optimizer, _train.Optimizer):
        return optimizer
    if callable(optimizer):
        opt = optimizer(lr) if learning_rate is not None else optimizer()
        if not isinstance(opt, _train.Optimizer):
            raise ValueError(f"Unrecognized optimizer: function should return subclass of Optimizer. Got {opt}.")
        return opt
    raise ValueError("Unrecognized optimizer: should be string, subclass of Optimizer, instance of subclass of "
                     f"Optimizer or function with one argument. Got {optimizer!r}.")
