"""Optimizers with TensorFlow 1.x update formulas and defaults, in order of
increasing complexity.  See :mod:`distnet.optimizers.base` for the API."""
from distnet.optimizers.base import Optimizer, clip_by_global_norm, global_norm  # noqa: F401
from distnet.optimizers.gradient_descent import GradientDescent  # noqa: F401
from distnet.optimizers.momentum import Momentum  # noqa: F401
from distnet.optimizers.adagrad import Adagrad  # noqa: F401
from distnet.optimizers.adadelta import Adadelta  # noqa: F401
from distnet.optimizers.rmsprop import RMSProp  # noqa: F401
from distnet.optimizers.adam import Adam  # noqa: F401
from distnet.optimizers.adamw import AdamW  # noqa: F401



def get(name: str, **kwargs) -> Optimizer:
    """An optimizer by its registered name (``"sgd"``, ``"momentum"``, ``"adagrad"``, ``"adadelta"``,
    ``"rmsprop"``, ``"adam"``, ``"adamw"``), built with the constructor's ``kwargs``.

    Without ``learning_rate``, Keras's default for the name is used (0.01 for ``"sgd"`` and
    ``"momentum"``, 0.001 for the others), so ``Trainer(model, loss, "adam", data)`` works.

    Example:
      >>> get("adam", learning_rate=1e-4)
    """
    from distnet import registry
    from distnet.errors import InvalidArgumentError

    found = registry.lookup("optimizer", str(name))
    if found is None:
        raise InvalidArgumentError(f"unknown optimizer {name!r}; expected one of "
                                   f"{list(registry.names('optimizer'))}")
    if "learning_rate" not in kwargs:
        kwargs["learning_rate"] = 0.01 if found.name in ("sgd", "momentum") else 0.001
    return found.obj(**kwargs)


__all__ = ["Optimizer", "clip_by_global_norm", "global_norm", "GradientDescent", "Momentum", "Adagrad", "Adadelta",
           "RMSProp", "Adam", "AdamW", "get"]
