"""Record a battery program's numbers from real TensorFlow 2.21.

Run with an interpreter that has ``tensorflow`` (2.21, ``tf.compat.v1``;
``tf-keras`` with ``TF_USE_LEGACY_KERAS=1`` for ``tf.compat.v1.layers``;
``tf-slim`` for ``tf.contrib.layers``/``framework``/``slim``) --
a benchmark venv, never distnet's own dependencies::

    /path/to/tf-venv/bin/python tests/tf1_programs/record_reference.py PROGRAM.py [PROGRAM.py ...]

Each program runs unchanged, in its own process, from this folder, with the
environment given as ``NAME=value`` arguments before the programs (e.g.
``STEPS=20``), and its standard output is written to
``reference/<program>.txt``, after a header that says how it was recorded.

TensorFlow 2.21 lacks the names of TF 1.x's last years that the programs
use; :data:`SHIM` installs, for the recording only, ``import tensorflow as
tf`` as ``tf.compat.v1`` with v2 behaviour off (what a 1.x program meant)
and the ``tf.contrib`` members the programs use, each mapped to TF 2.21's
equivalent of the same semantics.  A program that needs a name with no
equivalent is judged by properties in its test instead, and says so.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

#: Run before the program, in its process: the TF1-era names on TF 2.21.
SHIM = r'''
import os, runpy, sys, types
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import tensorflow as _real
v1 = _real.compat.v1
v1.disable_v2_behavior()

def _ns(name, **members):
    mod = types.ModuleType(name)
    mod.__dict__.update(members)
    mod.__path__ = []
    sys.modules[name] = mod
    return mod

# tf.contrib: the members the battery uses, on TF 2.21's equivalents.
contrib = _ns("tensorflow.contrib")
contrib.rnn = _ns("tensorflow.contrib.rnn", **{k: getattr(v1.nn.rnn_cell, k) for k in dir(v1.nn.rnn_cell)
                                                if not k.startswith("_")},
                  static_rnn=v1.nn.static_rnn, static_bidirectional_rnn=v1.nn.static_bidirectional_rnn)
def _contrib_batch_norm(inputs, decay=0.999, center=True, scale=False, epsilon=0.001, activation_fn=None,
                        updates_collections=v1.GraphKeys.UPDATE_OPS, is_training=True, reuse=None, scope=None):
    """contrib.layers.batch_norm on TF 2.21: the layer with TF 1.x's fused kernel (a 2-D input viewed as
    [N, 1, 1, C], as contrib did), its update ops moved out of UPDATE_OPS and run before the output when
    updates_collections is None."""
    flat = inputs.shape.ndims == 2
    x = v1.reshape(inputs, [-1, 1, 1, int(inputs.shape[-1])]) if flat else inputs
    before = list(v1.get_collection(v1.GraphKeys.UPDATE_OPS))
    y = v1.layers.batch_normalization(x, momentum=decay, center=center, scale=scale, epsilon=epsilon,
                                      training=is_training, reuse=reuse, name=scope or "BatchNorm")
    new = [op for op in v1.get_collection(v1.GraphKeys.UPDATE_OPS) if op not in before]
    if updates_collections is None:
        ref = v1.get_collection_ref(v1.GraphKeys.UPDATE_OPS)
        for op in new:
            ref.remove(op)
        with v1.control_dependencies(new):
            y = v1.identity(y)
    y = v1.reshape(y, v1.shape(inputs)) if flat else y
    return activation_fn(y) if activation_fn is not None else y


contrib.layers = _ns("tensorflow.contrib.layers",
                     xavier_initializer=v1.glorot_uniform_initializer, flatten=v1.layers.flatten,
                     batch_norm=_contrib_batch_norm)
try:
    # tf-slim (pip install tf-slim) is TF 1.x's contrib.layers / contrib.framework / contrib.slim code,
    # kept alive for TF 2: the reference for the programs that use them.
    import tf_slim as _slim
    from tf_slim import layers as _slim_layers

    for _name in ("conv2d", "convolution2d", "fully_connected", "flatten", "max_pool2d", "dropout", "repeat",
                  "l1_regularizer", "l2_regularizer", "xavier_initializer"):
        setattr(contrib.layers, _name, getattr(_slim_layers, _name, None) or getattr(_slim, _name))
    from tensorflow.python.framework import ops as _ops
    # tf-slim 1.1's optimize_loss names ops.Tensor and ops.IndexedSlices, which TF 2.21 moved.
    _ops.Tensor, _ops.IndexedSlices = _real.Tensor, _real.IndexedSlices
    from tf_slim.layers import optimizers as _slim_optimizers
    contrib.layers.optimize_loss = _slim_optimizers.optimize_loss
    contrib.framework = _ns("tensorflow.contrib.framework", arg_scope=_slim.arg_scope,
                            add_arg_scope=_slim.add_arg_scope)
    contrib.slim = _slim
    sys.modules["tensorflow.contrib.slim"] = _slim
except ImportError:
    pass

def _sequence_loss(logits, targets, weights, average_across_timesteps=True, average_across_batch=True,
                   softmax_loss_function=None, name=None):
    # contrib.seq2seq.sequence_loss (absent from TF 2.21) from its definition: weighted cross-entropy,
    # summed and divided by the summed weights (+1e-12) over the averaged axes.
    classes = v1.shape(logits)[2]
    flat = v1.reshape(logits, [-1, classes])
    xent = v1.nn.sparse_softmax_cross_entropy_with_logits(labels=v1.reshape(targets, [-1]), logits=flat)
    xent = xent * v1.reshape(weights, [-1])
    if average_across_timesteps and average_across_batch:
        return v1.reduce_sum(xent) / (v1.reduce_sum(weights) + 1e-12)
    xent = v1.reshape(xent, v1.shape(logits)[0:2])
    if average_across_timesteps:
        return v1.reduce_sum(xent, axis=1) / (v1.reduce_sum(weights, axis=1) + 1e-12)
    if average_across_batch:
        return v1.reduce_sum(xent, axis=0) / (v1.reduce_sum(weights, axis=0) + 1e-12)
    return xent

contrib.seq2seq = _ns("tensorflow.contrib.seq2seq", sequence_loss=_sequence_loss)

def _sequence_loss_by_example(logits, targets, weights, average_across_timesteps=True,
                              softmax_loss_function=None, name=None):
    # contrib.legacy_seq2seq.sequence_loss_by_example from its definition: per example, the weighted
    # cross-entropies summed over the steps, divided by the summed weights (+1e-12) if averaging.
    terms = [v1.nn.sparse_softmax_cross_entropy_with_logits(labels=v1.reshape(t, [-1]), logits=l) * w
             for l, t, w in zip(logits, targets, weights)]
    total = v1.add_n(terms)
    return total / (v1.add_n(weights) + 1e-12) if average_across_timesteps else total

contrib.legacy_seq2seq = _ns("tensorflow.contrib.legacy_seq2seq", sequence_loss_by_example=_sequence_loss_by_example)

class _TF1(types.ModuleType):
    """``import tensorflow as tf`` in a 1.x program: tf.compat.v1 plus contrib."""
    def __getattr__(self, name):
        if name == "contrib":
            return contrib
        return getattr(v1, name)

top = _TF1("tensorflow")
top.__path__ = []
top.compat = _real.compat
sys.modules["tensorflow"] = top
program = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(program)))
runpy.run_path(program, run_name="__main__")
'''


def record(program: str, env: dict) -> Path:
    proc = subprocess.run([sys.executable, "-c", SHIM, program], cwd=HERE, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", **env},
                          timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{program} failed under TensorFlow (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    from importlib.metadata import version

    out = HERE / "reference" / (Path(program).stem + ".txt")
    out.parent.mkdir(exist_ok=True)
    settings = " ".join(f"{k}={v}" for k, v in sorted(env.items())) or "(none)"
    out.write_text(f"# recorded with TensorFlow {version('tensorflow-cpu')} (tf.compat.v1) by record_reference.py; "
                   f"environment: {settings}\n{proc.stdout}")
    return out


def main(argv: list[str]) -> int:
    env = dict(a.split("=", 1) for a in argv if "=" in a and not a.endswith(".py"))
    programs = [a for a in argv if a.endswith(".py")]
    if not programs:
        print(__doc__)
        return 2
    for program in programs:
        print(record(program, env))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
