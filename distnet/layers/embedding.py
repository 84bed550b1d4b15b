"""``Embedding``: integer ids ``[batch, ...]`` -> rows of a table ``[batch, ..., output_dim]`` (Keras ``Embedding``).

The lookup is :func:`distnet.gather` on the table's first axis, whose
gradient is the scatter-add of the upstream rows into a zero table (a row
looked up twice gets both contributions).  Ids may come as floats (a job's
data are float arrays) when they are whole numbers.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from distnet.model import initializers as _init
from distnet.model import regularizers as _reg
from distnet.errors import InvalidArgumentError
from distnet.layers.base import NAME, Layer
from distnet.registry import INT, STR_OR_TABLE, TABLE, Option, register
from distnet.tensor import Tensor


@register("layer", "embedding", Option("input_dim", INT, doc="the number of ids (ids in `[0, input_dim)`)",
                                       low=0, low_open=True),
          Option("output_dim", INT, doc="the size of each id's vector", low=0, low_open=True),
          Option("embeddings_initializer", STR_OR_TABLE, "random_uniform",
                 "the table's initializer (Keras: uniform in ±0.05)", ref="initializer"),
          Option("embeddings_regularizer", TABLE, None, "a regularizer of the table", ref="regularizer"),
          NAME, doc="integer ids `[batch, ...]` -> `[batch, ..., output_dim]`, rows of the table "
                    "`<name>/embeddings [input_dim, output_dim]`",
          sequence_output=True)
class Embedding(Layer):
    """A trainable lookup table (Keras ``Embedding``; TF's ``tf.nn.embedding_lookup``).

    Args:
      input_dim: the number of ids, > 0.
      output_dim: the vectors' size, > 0.
      embeddings_initializer: default ``random_uniform`` (±0.05, Keras' ``"uniform"``).
      embeddings_regularizer: ``w -> scalar Tensor`` or None.
      name: layer name (default ``embedding``).

    Example:
      >>> Sequential([Embedding(1000, 16), LSTM(32), Dense(2)], input_shape=(20,))
    """

    base_name = "embedding"

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="random_uniform",
                 embeddings_regularizer=None, name: Optional[str] = None):
        for what, v in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise InvalidArgumentError(f"Embedding: {what}: Expect: a positive int Actual: {v!r}")
        super().__init__(name=name)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings_initializer = _init.get(embeddings_initializer)
        self.embeddings_regularizer = _reg.get(embeddings_regularizer)
        self.embeddings = None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def build_weights(self, input_shape, rng):
        self.embeddings = self.add_weight("embeddings", (self.input_dim, self.output_dim),
                                          self.embeddings_initializer, self.embeddings_regularizer, rng)

    def ids(self, x: Tensor) -> np.ndarray:
        """``x``'s values as int64 ids, each checked to be a whole number in ``[0, input_dim)``."""
        raw = x.data
        if raw.dtype.kind == "f":
            ok = np.isfinite(raw) & (raw == np.round(raw))
            if not ok.all():
                raise InvalidArgumentError(f"Embedding {self.name!r}: Expect: whole-number ids Actual: "
                                           f"{raw[~ok].reshape(-1)[:3].tolist()}")
        elif raw.dtype.kind not in "iu":
            raise InvalidArgumentError(f"Embedding {self.name!r}: Expect: integer ids Actual: dtype {raw.dtype}")
        bad = (raw < 0) | (raw >= self.input_dim)
        if bad.any():
            raise InvalidArgumentError(f"Embedding {self.name!r}: Expect: ids in [0, {self.input_dim}) Actual: "
                                       f"{raw[bad].reshape(-1)[:3].tolist()}")
        return raw.astype(np.int64)

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:
        from distnet.ops import gather

        return gather(self.embeddings, self.ids(x), axis=0)
