"""``Layer``: the base class of distnet's Keras-style layers.

A layer owns its variables and the regularizers attached to them.  It is
built lazily from the first input's per-sample shape (or eagerly by
``Sequential(input_shape=...)``), drawing initial values from a Generator
it is given — never from a global RNG.  Variables are named
``<layer name>/<weight name>`` (``dense_1/kernel``); a model gives its layers
their names (a counter per layer type within the model, as Keras).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import numpy as np

from distnet.model import initializers as _init
from distnet import registry
from distnet.model import regularizers as _reg
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.registry import BOOL, INT_OR_PAIR, STR, STR_OR_TABLE, TABLE, Option
from distnet.tensor import Tensor, Variable

# The job-file keys the layers share (see distnet.registry).
NAME = Option("name", STR, None, "the prefix of the layer's variables' names: `name = \"fc1\"` gives "
              "`fc1/kernel`, `fc1/bias` (default `dense`, `dense_1`, ...)", group="common")
WEIGHTED = (
    Option("activation", STR, None, "an activation (table below)", ref="activation",
           group="weighted-layer"),
    Option("use_bias", BOOL, True, "add a bias vector `<name>/bias`", group="weighted-layer"),
    Option("kernel_initializer", STR_OR_TABLE, "glorot_uniform",
           "an initializer (table below): its name, or a table with its type and parameters, "
           "`{type = \"truncated_normal\", stddev = 0.1}`", ref="initializer", group="weighted-layer"),
    Option("bias_initializer", STR_OR_TABLE, "zeros", "as `kernel_initializer`", ref="initializer",
           group="weighted-layer"),
    Option("kernel_regularizer", TABLE, None, "a regularizer (table below), "
           "`{type = \"l2\", scale = 0.004}`: its term is added to the loss", ref="regularizer",
           group="weighted-layer"),
    Option("bias_regularizer", TABLE, None, "as `kernel_regularizer`", ref="regularizer",
           group="weighted-layer"),
)


def pair_option(name: str, default, doc: str) -> Option:
    """An ``int or [h, w]`` key of a layer, each entry > 0."""
    return Option(name, INT_OR_PAIR, default, doc, low=0, low_open=True)


PADDING = Option("padding", STR, "valid", "`\"same\"` (output `ceil(in / stride)`) or `\"valid\"`",
                 choices=("same", "valid"))


def get_activation(identifier: Union[None, str, Callable]) -> Optional[Callable[[Tensor], Tensor]]:
    """``None`` or the identity (``'linear'``) -> None; a registered activation's name
    (``'relu'``, ``'sigmoid'``, ``'tanh'``, ``'softmax'``) -> the ``distnet.nn`` op;
    a callable is kept."""
    if identifier is None:
        return None
    if callable(identifier):
        return identifier
    found = registry.lookup("activation", identifier) if isinstance(identifier, str) else None
    if found is None:
        raise InvalidArgumentError(f"unknown activation {identifier!r}; expected None, a callable or one of "
                                   f"{list(registry.names('activation'))}")
    return None if found.info.get("identity") else found.obj


def check_name(name: Any) -> Optional[str]:
    if name is None:
        return None
    if not isinstance(name, str) or not name or "/" in name or name != name.strip():
        raise InvalidArgumentError(f"layer name: Expect: a non-empty string without '/' or surrounding spaces Actual: {name!r}")
    return name


class Layer:
    """Base class.  Subclasses set ``base_name`` and implement :meth:`build_weights`,
    :meth:`compute_output_shape` and :meth:`call`.

    Args:
      name: explicit layer name (the prefix of its variables); default from
        ``base_name`` and the model's counter.
    """

    base_name = "layer"

    def __init__(self, name: Optional[str] = None):
        self._explicit_name = check_name(name)
        self.name = self._explicit_name or self.base_name
        self.built = False
        self.input_shape: Optional[tuple] = None
        self.output_shape: Optional[tuple] = None
        self.dtype = np.dtype(np.float32)
        self._weights: list[Variable] = []
        self._regularized: list[tuple[Variable, Callable]] = []
        self._model = None
        self.index = 0  # position in its model (Dropout derives its keys from it)

    # -- building ---------------------------------------------------------
    def add_weight(self, name: str, shape: tuple, initializer, regularizer=None, rng=None,
                   trainable: bool = True) -> Variable:
        """Create the variable ``<layer name>/<name>`` from ``initializer(shape, dtype, rng)``."""
        init = _init.get(initializer)
        value = np.asarray(init(tuple(shape), self.dtype, rng))
        if value.shape != tuple(shape):
            raise ShapeError(f"{self.name}/{name}: initializer {init!r} returned shape {value.shape}; "
                             f"Expect: {tuple(shape)}")
        var = Variable(value, name=f"{self.name}/{name}", trainable=trainable, dtype=self.dtype)
        self._weights.append(var)
        reg = _reg.get(regularizer)
        if reg is not None:
            self._regularized.append((var, reg))
        return var

    def build(self, input_shape: tuple, rng: Optional[np.random.Generator] = None, dtype=np.float32) -> None:
        """Create the variables for inputs of per-sample shape ``input_shape``.

        Args:
          input_shape: the shape of one sample (no batch axis).
          rng: Generator for the initial values (default ``default_rng(0)``).
          dtype: floating dtype of the variables.
        """
        input_shape = tuple(int(n) for n in input_shape)
        if self.built:
            if input_shape != self.input_shape:
                raise ShapeError(f"layer {self.name!r} was built for inputs of shape {self.input_shape}; "
                                 f"Actual: {input_shape}")
            return
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise DTypeError(f"layer {self.name!r}: dtype: Expect: a floating dtype Actual: {self.dtype}")
        self.output_shape = tuple(self.compute_output_shape(input_shape))
        self.build_weights(input_shape, np.random.default_rng(0) if rng is None else rng)
        self.input_shape = input_shape
        self.built = True

    def build_weights(self, input_shape: tuple, rng: np.random.Generator) -> None:
        """Create the variables (none by default)."""

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """Per-sample output shape for a per-sample input shape."""
        return input_shape

    # -- running ----------------------------------------------------------
    def __call__(self, x: Any, training: bool = False, rng: Optional[np.random.Generator] = None,
                 sample_keys: Optional[np.ndarray] = None) -> Tensor:
        if not isinstance(x, Tensor):
            x = Tensor(np.asarray(x), dtype=self.dtype if self.built else None)
        if x.ndim < 1:
            raise ShapeError(f"layer {self.name!r}: input must have a batch axis; Actual: a scalar")
        if not self.built:
            dtype = x.dtype if x.dtype.kind == "f" else np.float32
            self.build(x.shape[1:], dtype=dtype)
        elif tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(f"layer {self.name!r}: Expect: input of shape (batch, {', '.join(map(str, self.input_shape))}"
                             f"{',' if len(self.input_shape) == 1 else ''}) Actual: {x.shape}")
        return self.call(x, training=training, rng=rng, sample_keys=sample_keys)

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    # -- introspection ----------------------------------------------------
    @property
    def variables(self) -> list[Variable]:
        return list(self._weights)

    @property
    def trainable_variables(self) -> list[Variable]:
        return [v for v in self._weights if v.trainable]

    @property
    def regularization_losses(self) -> list[Tensor]:
        """The regularizers' terms recomputed from the current weights (disabled ones left out)."""
        out = []
        for var, reg in self._regularized:
            term = reg(var)
            if term is not None:
                out.append(term)
        return out

    def count_params(self) -> int:
        return int(sum(v.size for v in self._weights))

    def __repr__(self) -> str:
        return f"<distnet.layers.{type(self).__name__} name={self.name!r} built={self.built}>"


class WeightedLayer(Layer):
    """A layer with a kernel, an optional bias and an activation (Dense, Conv2D)."""

    def __init__(self, activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 name: Optional[str] = None):
        super().__init__(name=name)
        self.activation = get_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _init.get(kernel_initializer)
        self.bias_initializer = _init.get(bias_initializer)
        self.kernel_regularizer = _reg.get(kernel_regularizer)
        self.bias_regularizer = _reg.get(bias_regularizer)
        self.kernel: Optional[Variable] = None
        self.bias: Optional[Variable] = None

    def _make_weights(self, kernel_shape: tuple, units: int, rng) -> None:
        self.kernel = self.add_weight("kernel", kernel_shape, self.kernel_initializer, self.kernel_regularizer, rng)
        if self.use_bias:
            self.bias = self.add_weight("bias", (units,), self.bias_initializer, self.bias_regularizer, rng)

    def _finish(self, y: Tensor) -> Tensor:
        from distnet.nn.activations import relu

        if self.use_bias and self.activation is relu:
            from distnet.nn.bias_add_relu import bias_add_relu

            return _release(y, bias_add_relu(y, self.bias))   # bitwise relu(bias_add(y, bias)), fewer passes
        if self.use_bias:
            from distnet.nn import bias_add

            y = _release(y, bias_add(y, self.bias))
        return y if self.activation is None else self.activation(y)


def positive_pair(value: Any, what: str, layer: str) -> tuple[int, int]:
    """An int or a pair of positive ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        a, b = (int(v) for v in value)
        ok = all(int(v) == v and not isinstance(v, bool) for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok or a <= 0 or b <= 0:
        raise InvalidArgumentError(f"{layer}: {what}: Expect: a positive int or a pair of them Actual: {value!r}")
    return a, b


def check_padding(padding: Any, layer: str) -> str:
    """Keras' ``'valid'`` / ``'same'`` (either case) -> TF's ``'VALID'`` / ``'SAME'``."""
    if not isinstance(padding, str) or padding.upper() not in ("VALID", "SAME"):
        raise InvalidArgumentError(f"{layer}: padding: Expect: 'valid' or 'same' Actual: {padding!r}")
    return padding.upper()


def window_out(size: int, k: int, s: int, padding: str) -> int:
    """TF's output size: SAME ceil(n / s), VALID ceil((n - k + 1) / s)."""
    if padding == "SAME":
        return -(-size // s)
    return -(-(size - k + 1) // s)


def _release(inner: Tensor, out: Tensor) -> Tensor:
    """``out``, after letting go of the values of ``inner``, the layer's own intermediate tensor
    (the convolution's or matmul's result, before the bias): the graph keeps ``inner`` until the
    step's gradients are done, but no backward reads it (each op keeps what its backward needs,
    and the bias ops need only their output or nothing), so an activation-sized array less is
    held through the rest of the step.  ``inner`` keeps its shape and dtype, which the gradient
    walk checks, as a read-only view of one zero."""
    if inner._op is not None and out is not inner:   # an op's result, not a tensor of the caller's
        zero = np.zeros((), dtype=inner.data.dtype)
        zero.flags.writeable = False
        # np.broadcast_to's view, built directly (its Python layer costs a few microseconds per layer)
        inner.data = np.ndarray(inner.data.shape, zero.dtype, buffer=zero, strides=(0,) * inner.data.ndim)
    return out
