"""``Sequential``: a stack of layers with named variables and a seeded initialisation.

Naming (Keras): a layer without an explicit ``name`` is called after its
type with a counter *within this model* — ``dense``, ``dense_1``,
``conv2d`` — so building the same model twice gives the same names; its
variables are ``<layer name>/kernel`` and ``<layer name>/bias``.
Checkpoints and all-reduce are keyed by these names.

Randomness is owned by the model: initial weights come from
``default_rng([seed, 0])``, dropout masks (without ``dropout_keys``) from
``default_rng([seed, 1])``.  Nothing reads a global RNG.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.layers.base import Layer
from distnet.tensor import Tensor, Variable


def _per_sample_shape(input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = (input_shape,)
    if shape and shape[0] is None:  # Keras' (None, ...) batch placeholder
        shape = shape[1:]
    if not shape or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0 for n in shape):
        raise InvalidArgumentError(
            f"input_shape: Expect: the shape of one sample, positive ints without the batch axis (e.g. (28, 28, 1)) "
            f"Actual: {input_shape!r}")
    return tuple(int(n) for n in shape)


class Sequential:
    """Layers applied in order.

    Args:
      layers: a list of :class:`~distnet.layers.Layer`.
      input_shape: per-sample input shape (no batch axis); builds the model now.
        Without it the model is built by :meth:`build` or the first call.
      seed: seeds the initial weights and the model's dropout Generator.
      dtype: floating dtype of the variables (float32; float64 for gradient checks).
      name: the model's name.

    Example:
      >>> model = Sequential([Dense(64, activation="relu"), Dense(10)], input_shape=(784,), seed=0)
      >>> logits = model(x_batch)
      >>> [v.name for v in model.variables]
      ['dense/kernel', 'dense/bias', 'dense_1/kernel', 'dense_1/bias']
    """

    def __init__(self, layers: Optional[Sequence[Layer]] = None, input_shape: Any = None, seed: int = 0,
                 dtype: Any = np.float32, name: str = "sequential"):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidArgumentError(f"Sequential: seed: Expect: an int >= 0 Actual: {seed!r}")
        self.seed = int(seed)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise DTypeError(f"Sequential: dtype: Expect: a floating dtype Actual: {self.dtype}")
        self.name = name
        self.layers: list[Layer] = []
        self.built = False
        self.input_shape: Optional[tuple] = None
        self._dropout_rng = np.random.default_rng([self.seed, 1])
        for layer in list(layers or []):
            self._append(layer)
        self._assign_names()
        if input_shape is not None:
            self.build(input_shape)

    # -- construction -----------------------------------------------------
    def _append(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise InvalidArgumentError(f"Sequential: Expect: a distnet.layers.Layer Actual: {type(layer).__name__}")
        if layer._model is not None and layer._model is not self:
            raise InvalidArgumentError(f"Sequential: layer {layer.name!r} already belongs to another model; "
                                       "create a new layer instead of sharing one")
        if any(layer is other for other in self.layers):
            raise InvalidArgumentError(f"Sequential: layer {layer.name!r} appears twice in the model")
        layer._model = self
        layer.index = len(self.layers)
        self.layers.append(layer)

    def add(self, layer: Layer) -> None:
        """Append a layer (before the model is built)."""
        if self.built:
            raise InvalidArgumentError("Sequential.add: the model is already built; add layers before building it")
        self._append(layer)
        self._assign_names()

    def _assign_names(self) -> None:
        explicit = [l._explicit_name for l in self.layers if l._explicit_name is not None]
        dups = sorted({n for n in explicit if explicit.count(n) > 1})
        if dups:
            raise InvalidArgumentError(f"Sequential: layer names must be unique. Found duplicates: {dups}")
        taken = set(explicit)
        counters: dict[str, int] = {}
        for layer in self.layers:
            if layer._explicit_name is not None:
                continue
            base = layer.base_name
            while True:  # Keras: dense, dense_1, dense_2, ... skipping names given explicitly
                k = counters.get(base, 0)
                counters[base] = k + 1
                candidate = base if k == 0 else f"{base}_{k}"
                if candidate not in taken:
                    break
            taken.add(candidate)
            layer.name = candidate

    def build(self, input_shape: Any) -> None:
        """Create every variable for inputs of per-sample shape ``input_shape``
        (a leading ``None`` is dropped).  Building again with the same shape does nothing."""
        shape = _per_sample_shape(input_shape)
        if self.built:
            if shape != self.input_shape:
                raise ShapeError(f"Sequential {self.name!r} is built for inputs of shape {self.input_shape}; "
                                 f"Actual: {shape}")
            return
        if not self.layers:
            raise InvalidArgumentError("Sequential: the model has no layers")
        rng = np.random.default_rng([self.seed, 0])
        current = shape
        for layer in self.layers:
            layer.build(current, rng=rng, dtype=self.dtype)
            current = layer.output_shape
        names = [v.name for v in self.variables]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise InvalidArgumentError(f"Sequential: variable names must be unique. Found duplicates: {dups}")
        self.input_shape = shape
        self.built = True

    # -- running ----------------------------------------------------------
    def __call__(self, x: Any, training: bool = False, dropout_keys: Optional[np.ndarray] = None) -> Tensor:
        """Run the layers on a batch.

        Args:
          x: ``[batch, *input_shape]``; arrays are converted to the model's dtype.
          training: enables Dropout.
          dropout_keys: optional ``uint64`` array, one key per sample, from which
            every Dropout layer derives its masks (rank-independent); without it
            the model's own seeded Generator is used.

        Returns:
          The output tensor ``[batch, *output_shape]``.
        """
        if isinstance(x, Tensor):
            if x.dtype != self.dtype:
                raise DTypeError(f"Sequential {self.name!r}: input dtype {x.dtype}; Expect: {self.dtype} "
                                 "(use distnet.cast, or pass a numpy array, which is converted)")
        else:
            arr = np.asarray(x)
            if arr.dtype.kind not in "fiu":
                raise DTypeError(f"Sequential {self.name!r}: input: Expect: a numeric dtype Actual: dtype {arr.dtype}")
            x = Tensor(arr, dtype=self.dtype)
        if x.ndim < 2 and not (self.built and len(self.input_shape) == 0):
            raise ShapeError(f"Sequential {self.name!r}: input: Expect: [batch, ...] Actual: shape {x.shape}")
        if not self.built:
            self.build(x.shape[1:])
        if self.input_shape[-1:] == (1,) and len(self.input_shape) > 1 and tuple(x.shape[1:]) == self.input_shape[:-1]:
            # The datasets' habit: (N, 28, 28) images for a model built on (28, 28, 1).
            from distnet.ops import expand_dims

            x = expand_dims(x, -1)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(f"Sequential {self.name!r}: Expect: input of shape (batch, "
                             f"{', '.join(map(str, self.input_shape))}{',' if len(self.input_shape) == 1 else ''}) "
                             f"Actual: {x.shape}")
        if dropout_keys is not None:
            keys = np.asarray(dropout_keys)
            if keys.dtype != np.uint64:
                raise DTypeError(f"Sequential: dropout_keys: Expect: a uint64 array Actual: dtype {keys.dtype}")
            if keys.shape != (x.shape[0],):
                raise ShapeError(f"Sequential: dropout_keys must hold one key per sample. "
                                 f"Expect: shape ({x.shape[0]},) Actual: {keys.shape}")
            dropout_keys = keys
        for layer in self.layers:
            x = layer(x, training=training, rng=self._dropout_rng, sample_keys=dropout_keys)
        return x

    def predict(self, x: Any, batch_size: int = 32) -> np.ndarray:
        """The outputs (inference mode) for every row of ``x``, ``batch_size`` rows per forward pass,
        as one numpy array (Keras's ``predict``; the outputs are what the last layer gives, e.g. logits).

        Example:
          >>> logits = model.predict(x_test, batch_size=256)     # doctest: +SKIP
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InvalidArgumentError(f"Sequential.predict: batch_size: Expect: a positive int Actual: {batch_size!r}")
        arr = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
        if arr.ndim < 1 or len(arr) == 0:
            raise ShapeError(f"Sequential.predict: Expect: a batch of at least one sample Actual: shape {arr.shape}")
        return np.concatenate([self(arr[i:i + batch_size], training=False).numpy()
                               for i in range(0, len(arr), int(batch_size))])

    # -- variables ----------------------------------------------------------
    def _require_built(self, what: str) -> None:
        if not self.built:
            raise InvalidArgumentError(f"Sequential.{what}: the model is not built yet; pass input_shape=, "
                                       "call build(input_shape) or call the model on a batch first")

    @property
    def variables(self) -> list[Variable]:
        """All variables, in layer order (kernel before bias)."""
        return [v for layer in self.layers for v in layer.variables]

    @property
    def trainable_variables(self) -> list[Variable]:
        """The trainable variables, in layer order."""
        return [v for v in self.variables if v.trainable]

    def get_variable(self, name: str) -> Variable:
        """The variable called ``name`` (e.g. ``'dense_1/kernel'``)."""
        for v in self.variables:
            if v.name == name:
                return v
        raise InvalidArgumentError(f"Sequential {self.name!r}: no variable named {name!r}; "
                                   f"variables: {[v.name for v in self.variables]}")

    @property
    def regularization_losses(self) -> list[Tensor]:
        """Scalar terms of every layer's regularizers, recomputed from the current weights
        (TF1's REGULARIZATION_LOSSES collection, owned by the model)."""
        return [t for layer in self.layers for t in layer.regularization_losses]

    @property
    def output_shape(self) -> Optional[tuple]:
        return self.layers[-1].output_shape if self.built else None

    def count_params(self) -> int:
        return int(sum(v.size for v in self.variables))

    def summary(self, print_fn: Optional[Callable[[str], Any]] = print) -> str:
        """A short table — layer (type), output shape, parameter count — and the total.

        Args:
          print_fn: called with the text (default ``print``); None to only return it.

        Returns:
          The table as a string.
        """
        self._require_built("summary")
        rows = [(f"{l.name} ({type(l).__name__})", str((None,) + tuple(l.output_shape)), str(l.count_params()))
                for l in self.layers]
        head = ("Layer (type)", "Output Shape", "Param #")
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(3)]

        def fmt(r):
            return f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}"

        rule = "-" * len(fmt(head))
        total = self.count_params()
        trainable = sum(v.size for v in self.trainable_variables)
        lines = [f'Model: "{self.name}"', rule, fmt(head), rule] + [fmt(r) for r in rows] + [
            rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}"]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        return f"<distnet.Sequential {self.name!r} layers={[l.name for l in self.layers]} built={self.built}>"


__all__ = ["Sequential"]
