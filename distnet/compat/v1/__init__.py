"""TensorFlow 1.x programs as written: ``import distnet.compat.v1 as tf``.

A graph-mode front end over distnet's ops and autodiff: placeholders and
``feed_dict``, ``tf.Session``, ``tf.Variable(initial)``, collections,
``tf.train.*Optimizer``, ``exponential_decay(lr, global_step, ...)``,
``ExponentialMovingAverage(decay, num_updates)``, ``control_dependencies``,
``tf.layers``, ``tf.losses``, ``tf.train.Saver`` -- and data parallelism
with one line, ``opt = tf.DistributedOptimizer(opt)`` (see
:mod:`distnet.compat.v1.distributed`).  No TensorFlow is imported.

A TF1 name this module does not provide raises
:class:`~distnet.compat.v1.errors.UnsupportedError` naming it and the
nearest supported API.  The supported surface and the deliberate
differences are listed in docs/tf1.md.
"""
from __future__ import annotations

import sys as _sys

import numpy as _np

from distnet.compat.v1 import arg_scope as _arg_scope
from distnet.compat.v1 import array_ops as _a
from distnet.compat.v1 import candidate_sampling as _cs
from distnet.compat.v1 import contrib_layers as _cl
from distnet.compat.v1 import data as _data
from distnet.compat.v1 import distributed as _dist
from distnet.compat.v1 import embedding as _embedding
from distnet.compat.v1 import hooks as _hooks
from distnet.compat.v1 import input_data as _input_data
from distnet.compat.v1 import layers as _layers
from distnet.compat.v1 import math_ops as _m
from distnet.compat.v1 import metrics as _metrics
from distnet.compat.v1 import misc as _misc
from distnet.compat.v1 import monitored as _mon
from distnet.compat.v1 import normalization as _bn
from distnet.compat.v1 import optimize_loss as _optimize_loss
from distnet.compat.v1 import queues as _q
from distnet.compat.v1 import rnn as _rnn
from distnet.compat.v1 import rnn_cell as _cell
from distnet.compat.v1 import saver as _saver
from distnet.compat.v1 import seq2seq as _seq2seq
from distnet.compat.v1 import spatial as _spatial
from distnet.compat.v1 import summary as _summary
from distnet.compat.v1 import train as _train
from distnet.compat.v1 import variables as _v
from distnet.compat.v1.errors import (
    FailedPreconditionError, OutOfRangeError, UnsupportedError, unsupported as _unsupported,
)
from distnet.compat.v1.graph import (
    Dimension, Graph, GraphKeys, Operation, Tensor, TensorShape, as_dtype, convert_to_tensor, get_default_graph,
    get_default_session, no_output as _no_output, reset_default_graph,
)
from distnet.compat.v1.session import InteractiveSession, Session
from distnet.compat.v1.session_config import ConfigProto, GPUOptions, GraphOptions
from distnet.errors import InvalidArgumentError

#: The TF1 API this module follows (programs compare it to pick APIs).
__version__ = "1.15.0"
VERSION = __version__


class _Namespace:
    """A TF1 sub-module (``tf.nn``, ``tf.train``, ...): its members, and one clear
    error for any other name."""

    def __init__(self, path: str, **members):
        self.__dict__.update(members)
        self.__dict__["_path"] = path

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise _unsupported(self._path, name, self.__dict__)

    def __dir__(self):
        return sorted(k for k in self.__dict__ if not k.startswith("_"))

    def __repr__(self) -> str:
        return f"<distnet.compat.v1 namespace tf.{self._path}>"


# -- dtypes ---------------------------------------------------------------------------------
float16, float32, float64 = _np.float16, _np.float32, _np.float64
half, double = _np.float16, _np.float64
int8, int16, int32, int64 = _np.int8, _np.int16, _np.int32, _np.int64
uint8, uint16 = _np.uint8, _np.uint16
bool = _np.bool_  # noqa: A001
string = _np.bytes_


# -- graph, session, scopes, control ----------------------------------------------------------

def name_scope(name, default_name=None, values=None):
    """Ops created inside are named ``<scope>/<op>``."""
    return get_default_graph().name_scope(name if name is not None else default_name)


def control_dependencies(control_inputs):
    """Ops created inside run after ``control_inputs`` (in the order given)."""
    return get_default_graph().control_dependencies(control_inputs)


def group(*inputs, name=None):
    """One op that runs ``inputs`` (ops or tensors), in order."""
    flat = []
    for x in inputs:
        for y in (x if isinstance(x, (list, tuple)) else [x]):
            flat.append(y.op if isinstance(y, Tensor) else y)
    return _no_output("NoOp", lambda run, values: None, name=name or "group_deps", control_inputs=flat)


def no_op(name=None):
    """An op that does nothing (its control dependencies run)."""
    return _no_output("NoOp", lambda run, values: None, name=name or "NoOp")


def add_to_collection(name, value):
    get_default_graph().add_to_collection(name, value)


def add_to_collections(names, value):
    get_default_graph().add_to_collections(names, value)


def get_collection(key, scope=None):
    return get_default_graph().get_collection(key, scope)


def get_collection_ref(key):
    return get_default_graph().get_collection_ref(key)


def Print(input_, data, message=None, first_n=None, summarize=None, name=None):  # noqa: N802
    """``input_`` unchanged; prints ``message`` and the values of ``data`` when it runs."""
    from distnet.compat.v1.graph import build

    def fn(x, *vals):
        shown = [_np.asarray(v.data).reshape(-1)[: summarize or 3].tolist() for v in vals]
        print(f"{message or ''}{shown}")
        return x

    return build("Print", fn, input_, *list(data), _name=name)


def disable_v2_behavior():
    """Nothing to do: this module is TF1 behaviour."""


disable_eager_execution = disable_v2_behavior
enable_resource_variables = disable_v2_behavior


def executing_eagerly():
    return False


# -- ops -----------------------------------------------------------------------------------
from distnet.compat.v1.array_ops import (  # noqa: E402
    cast, concat, constant, expand_dims, fill, gather, identity, one_hot, ones, ones_like, placeholder,
    placeholder_with_default, random_normal, random_shuffle, random_uniform, range, rank, reshape,
    set_random_seed, shape, size, slice, squeeze, stack, stop_gradient, to_double, to_float, to_int32, to_int64,
    transpose, truncated_normal, unstack, zeros, zeros_like,
)
from distnet.compat.v1.math_ops import (  # noqa: E402
    abs, add, add_n, argmax, argmin, clip_by_value, divide, equal, exp, greater, greater_equal, less, less_equal,
    log, logical_and, logical_not, logical_or, matmul, maximum, minimum, multiply, negative, not_equal, pow,
    reduce_all, reduce_any, reduce_max, reduce_mean, reduce_min, reduce_sum, rsqrt, sigmoid, sign, sqrt, square,
    subtract, tanh, where, where_v2,
)
from distnet.compat.v1.clip_ops import clip_by_global_norm, clip_by_norm, global_norm  # noqa: E402
from distnet.compat.v1.control_flow import case, cond, while_loop  # noqa: E402
from distnet.compat.v1.tensor_array import TensorArray  # noqa: E402
from distnet.compat.v1.array_ops import gather_nd, split, tile  # noqa: E402
from distnet.compat.v1.math_ops import (  # noqa: E402
    arg_max, arg_min, floordiv, floormod, reduce_logsumexp, reduce_prod, squared_difference,
)
from distnet.compat.v1.session import RunMetadata, RunOptions  # noqa: E402
from distnet.compat.v1.train import gradients  # noqa: E402
from distnet.compat.v1.variables import (  # noqa: E402
    AUTO_REUSE, Variable, VariableScope, all_variables, assign, assign_add, assign_sub, constant_initializer,
    get_variable, get_variable_scope, global_variables, global_variables_initializer, glorot_normal_initializer,
    glorot_uniform_initializer, initialize_all_variables, is_variable_initialized, local_variables,
    local_variables_initializer, model_variables, moving_average_variables, ones_initializer,
    random_normal_initializer, random_uniform_initializer, trainable_variables, truncated_normal_initializer,
    variable_scope, variables_initializer, variance_scaling_initializer, zeros_initializer,
)

reverse_sequence = _rnn.reverse_sequence
sequence_mask = _rnn.sequence_mask
div = truediv = divide
sub = subtract
mul = multiply
neg = negative
pack = stack
mod = floormod


# -- the queue era's readers (tf.train holds the producers and batching) ------------------------
from distnet.compat.v1.queues import (  # noqa: E402
    FIFOQueue, FixedLengthRecordReader, IdentityReader, LMDBReader, PaddingFIFOQueue, RandomShuffleQueue,
    TextLineReader, TFRecordReader, WholeFileReader, decode_csv, decode_raw, parse_single_example,
)

# -- sub-modules -----------------------------------------------------------------------------
_CELLS = dict(
    RNNCell=_cell.RNNCell, BasicRNNCell=_cell.BasicRNNCell, BasicLSTMCell=_cell.BasicLSTMCell,
    LSTMCell=_cell.LSTMCell, GRUCell=_cell.GRUCell, MultiRNNCell=_cell.MultiRNNCell,
    DropoutWrapper=_cell.DropoutWrapper, ResidualWrapper=_cell.ResidualWrapper, LSTMStateTuple=_cell.LSTMStateTuple,
)

nn = _Namespace(
    "nn", relu=_m.relu, relu6=_m.relu6, sigmoid=_m.sigmoid, tanh=_m.tanh, softmax=_m.softmax,
    log_softmax=_m.log_softmax, softmax_cross_entropy_with_logits=_m.softmax_cross_entropy_with_logits,
    softmax_cross_entropy_with_logits_v2=_m.softmax_cross_entropy_with_logits_v2,
    sparse_softmax_cross_entropy_with_logits=_m.sparse_softmax_cross_entropy_with_logits,
    sigmoid_cross_entropy_with_logits=_m.sigmoid_cross_entropy_with_logits, l2_loss=_m.l2_loss,
    dropout=_m.dropout, conv2d=_m.conv2d, max_pool=_m.max_pool, bias_add=_m.bias_add, in_top_k=_m.in_top_k,
    embedding_lookup=_embedding.embedding_lookup, nce_loss=_cs.nce_loss, sampled_softmax_loss=_cs.sampled_softmax_loss,
    log_uniform_candidate_sampler=_cs.log_uniform_candidate_sampler,
    uniform_candidate_sampler=_cs.uniform_candidate_sampler,
    rnn_cell=_Namespace("nn.rnn_cell", **_CELLS), static_rnn=_rnn.static_rnn, dynamic_rnn=_rnn.dynamic_rnn,
    bidirectional_dynamic_rnn=_rnn.bidirectional_dynamic_rnn, static_bidirectional_rnn=_rnn.static_bidirectional_rnn,
    leaky_relu=_m.leaky_relu, softplus=_m.softplus, l2_normalize=_m.l2_normalize, top_k=_m.top_k,
    elu=_m.elu, selu=_m.selu,
    moments=_bn.moments, batch_normalization=_bn.batch_normalization, fused_batch_norm=_bn.fused_batch_norm,
    conv2d_transpose=_spatial.conv2d_transpose, avg_pool=_spatial.avg_pool, avg_pool2d=_spatial.avg_pool,
)

train = _Namespace(
    "train", Optimizer=_train.Optimizer, GradientDescentOptimizer=_train.GradientDescentOptimizer,
    MomentumOptimizer=_train.MomentumOptimizer, AdamOptimizer=_train.AdamOptimizer,
    RMSPropOptimizer=_train.RMSPropOptimizer, AdagradOptimizer=_train.AdagradOptimizer,
    AdadeltaOptimizer=_train.AdadeltaOptimizer,
    exponential_decay=_train.exponential_decay, piecewise_constant=_train.piecewise_constant,
    polynomial_decay=_train.polynomial_decay, cosine_decay=_train.cosine_decay,
    get_or_create_global_step=_train.get_or_create_global_step, get_global_step=_train.get_global_step,
    create_global_step=_train.create_global_step, global_step=_train.global_step,
    ExponentialMovingAverage=_train.ExponentialMovingAverage, Saver=_saver.Saver,
    latest_checkpoint=_saver.latest_checkpoint, get_checkpoint_state=_saver.get_checkpoint_state,
    checkpoint_exists=_saver.checkpoint_exists,
    string_input_producer=_q.string_input_producer, range_input_producer=_q.range_input_producer,
    slice_input_producer=_q.slice_input_producer, batch=_q.batch, shuffle_batch=_q.shuffle_batch,
    batch_join=_q.batch_join, shuffle_batch_join=_q.shuffle_batch_join, Coordinator=_q.Coordinator,
    start_queue_runners=_q.start_queue_runners, QueueRunner=_q.QueueRunner,
    match_filenames_once=_q.match_filenames_once,
    MonitoredTrainingSession=_mon.MonitoredTrainingSession, MonitoredSession=_mon.MonitoredSession,
    SingularMonitoredSession=_mon.SingularMonitoredSession, Scaffold=_mon.Scaffold,
    ChiefSessionCreator=_mon.ChiefSessionCreator, WorkerSessionCreator=_mon.WorkerSessionCreator,
    SessionRunHook=_mon.SessionRunHook, SessionRunArgs=_mon.SessionRunArgs, SessionRunContext=_mon.SessionRunContext,
    SessionRunValues=_mon.SessionRunValues, StopAtStepHook=_hooks.StopAtStepHook, NanTensorHook=_hooks.NanTensorHook,
    NanLossDuringTrainingError=_hooks.NanLossDuringTrainingError, LoggingTensorHook=_hooks.LoggingTensorHook,
    CheckpointSaverHook=_hooks.CheckpointSaverHook, CheckpointSaverListener=_hooks.CheckpointSaverListener,
    SummarySaverHook=_hooks.SummarySaverHook, StepCounterHook=_hooks.StepCounterHook,
    FinalOpsHook=_hooks.FinalOpsHook, FeedFnHook=_hooks.FeedFnHook, SecondOrStepTimer=_hooks.SecondOrStepTimer,
)

layers = _Namespace(
    "layers", dense=_layers.dense, conv2d=_layers.conv2d, max_pooling2d=_layers.max_pooling2d,
    dropout=_layers.dropout, flatten=_layers.flatten, batch_normalization=_bn.layers_batch_normalization,
    conv2d_transpose=_spatial.layers_conv2d_transpose, average_pooling2d=_spatial.average_pooling2d,
)

_contrib_layers_members = dict(
    l1_regularizer=_layers.l1_regularizer, l2_regularizer=_layers.l2_regularizer,
    l1_l2_regularizer=_layers.l1_l2_regularizer, sum_regularizer=_layers.sum_regularizer,
    apply_regularization=_layers.apply_regularization, xavier_initializer=_layers.xavier_initializer,
    xavier_initializer_conv2d=_layers.xavier_initializer, variance_scaling_initializer=variance_scaling_initializer,
    flatten=_cl.flatten, fully_connected=_cl.fully_connected, conv2d=_cl.conv2d, convolution2d=_cl.convolution2d,
    max_pool2d=_cl.max_pool2d, dropout=_cl.dropout, repeat=_cl.repeat, one_hot_encoding=_cl.one_hot_encoding,
    optimize_loss=_optimize_loss.optimize_loss, OPTIMIZER_CLS_NAMES=_optimize_loss.OPTIMIZER_CLS_NAMES,
    OPTIMIZER_SUMMARIES=list(_optimize_loss.SUMMARIES),
    # arg_scope reaches them too (slim's `arg_scope([batch_norm], is_training=...)`)
    batch_norm=_arg_scope.add_arg_scope(_bn.contrib_batch_norm),
    avg_pool2d=_arg_scope.add_arg_scope(_spatial.contrib_avg_pool2d),
)
_contrib_framework_members = dict(
    arg_scope=_arg_scope.arg_scope, add_arg_scope=_arg_scope.add_arg_scope, has_arg_scope=_arg_scope.has_arg_scope,
    current_arg_scope=_arg_scope.current_arg_scope, arg_scoped_arguments=_arg_scope.arg_scoped_arguments,
    get_or_create_global_step=_train.get_or_create_global_step, get_global_step=_train.get_global_step,
    get_variables=global_variables, get_model_variables=model_variables,
)
contrib = _Namespace(
    "contrib",
    layers=_Namespace("contrib.layers", **_contrib_layers_members),
    framework=_Namespace("contrib.framework", **_contrib_framework_members),
    # slim: the same layers and scopes under the name TF-Slim programs import.
    slim=_Namespace("contrib.slim", **_contrib_layers_members, **_contrib_framework_members),
    rnn=_Namespace(
        "contrib.rnn", **_CELLS, static_rnn=_rnn.static_rnn, static_bidirectional_rnn=_rnn.static_bidirectional_rnn,
    ),
    seq2seq=_Namespace("contrib.seq2seq", sequence_loss=_seq2seq.sequence_loss),
    legacy_seq2seq=_Namespace("contrib.legacy_seq2seq", sequence_loss=_seq2seq.legacy_sequence_loss,
                              sequence_loss_by_example=_seq2seq.sequence_loss_by_example),
)

losses = _Namespace(
    "losses", mean_squared_error=_layers.mean_squared_error, softmax_cross_entropy=_layers.softmax_cross_entropy,
    sparse_softmax_cross_entropy=_layers.sparse_softmax_cross_entropy, add_loss=_layers.add_loss,
    get_losses=_layers.get_losses, get_regularization_losses=_layers.get_regularization_losses,
    get_regularization_loss=_layers.get_regularization_loss, get_total_loss=_layers.get_total_loss,
    Reduction=_layers.Reduction,
)

initializers = _Namespace(
    "initializers", zeros=zeros_initializer, ones=ones_initializer, constant=constant_initializer,
    random_normal=random_normal_initializer, truncated_normal=truncated_normal_initializer,
    random_uniform=random_uniform_initializer, glorot_uniform=glorot_uniform_initializer,
    glorot_normal=glorot_normal_initializer, variance_scaling=variance_scaling_initializer,
    global_variables=global_variables_initializer, variables=variables_initializer,
)

random = _Namespace(
    "random", normal=random_normal, uniform=random_uniform, truncated_normal=truncated_normal,
    shuffle=random_shuffle, set_random_seed=set_random_seed,
)

math = _Namespace(
    "math", abs=abs, add=add, add_n=add_n, argmax=argmax, argmin=argmin, divide=divide, equal=equal, exp=exp,
    greater=greater, greater_equal=greater_equal, less=less, less_equal=less_equal, log=log,
    logical_and=logical_and, logical_not=logical_not, logical_or=logical_or, maximum=maximum, minimum=minimum,
    multiply=multiply, negative=negative, not_equal=not_equal, pow=pow, reduce_all=reduce_all,
    reduce_any=reduce_any, reduce_max=reduce_max, reduce_mean=reduce_mean, reduce_min=reduce_min,
    reduce_sum=reduce_sum, rsqrt=rsqrt, sigmoid=sigmoid, sign=sign, sqrt=sqrt, square=square, subtract=subtract,
    tanh=tanh, in_top_k=_m.in_top_k, softmax=_m.softmax, log_softmax=_m.log_softmax,
    reduce_prod=reduce_prod, reduce_logsumexp=reduce_logsumexp, squared_difference=squared_difference,
    floordiv=floordiv, floormod=floormod, top_k=_m.top_k, l2_normalize=_m.l2_normalize,
    leaky_relu=_m.leaky_relu, softplus=_m.softplus,
)

errors = _Namespace(
    "errors", FailedPreconditionError=FailedPreconditionError, InvalidArgumentError=InvalidArgumentError,
    NotFoundError=_saver.NotFoundError, OutOfRangeError=OutOfRangeError, UnsupportedError=UnsupportedError,
)

distributed = _Namespace(
    "distributed", DistributedOptimizer=_dist.DistributedOptimizer, shard=_dist.shard, allreduce=_dist.allreduce,
    rank=_dist.rank, size=_dist.size, broadcast_global_variables=_dist.broadcast_global_variables,
    BroadcastGlobalVariablesHook=_hooks.BroadcastGlobalVariablesHook,
)
BroadcastGlobalVariablesHook = _hooks.BroadcastGlobalVariablesHook
DistributedOptimizer = _dist.DistributedOptimizer

data = _Namespace(
    "data", Dataset=_data.Dataset, Iterator=_data.Iterator, TextLineDataset=_data.TextLineDataset,
    TFRecordDataset=_data.TFRecordDataset, FixedLengthRecordDataset=_data.FixedLengthRecordDataset,
    make_one_shot_iterator=_data.make_one_shot_iterator, make_initializable_iterator=_data.make_initializable_iterator,
    get_output_types=_data.get_output_types, get_output_shapes=_data.get_output_shapes,
    get_output_classes=_data.get_output_classes,
    experimental=_Namespace("data.experimental", AUTOTUNE=_data.AUTOTUNE),
)

# ``from tensorflow.examples.tutorials.mnist import input_data`` (local IDX files, never a download).
examples = _Namespace("examples", tutorials=_Namespace("examples.tutorials", mnist=_Namespace(
    "examples.tutorials.mnist", input_data=_input_data)))

metrics = _Namespace(
    "metrics", accuracy=_metrics.accuracy, mean=_metrics.mean, mean_squared_error=_metrics.mean_squared_error,
    mean_absolute_error=_metrics.mean_absolute_error, root_mean_squared_error=_metrics.root_mean_squared_error,
    precision=_metrics.precision, recall=_metrics.recall, auc=_metrics.auc,
    true_positives=_metrics.true_positives, false_positives=_metrics.false_positives,
    true_negatives=_metrics.true_negatives, false_negatives=_metrics.false_negatives,
    mean_per_class_accuracy=_metrics.mean_per_class_accuracy, mean_iou=_metrics.mean_iou,
)

app = _misc.app
flags = _misc.flags
gfile = _misc.gfile
logging = _misc.logging
summary = _Namespace(
    "summary", scalar=_summary.scalar, histogram=_summary.histogram, image=_summary.image, text=_summary.text,
    audio=_summary.audio, tensor_summary=_summary.tensor_summary, merge=_summary.merge,
    merge_all=_summary.merge_all, FileWriter=_summary.FileWriter, Summary=_summary.Summary,
)



def _as_bytes(bytes_or_text, encoding="utf-8"):
    """``tf.compat.as_bytes``: text encoded, bytes unchanged."""
    if isinstance(bytes_or_text, (bytes, bytearray)):
        return bytes(bytes_or_text)
    if isinstance(bytes_or_text, str):
        return bytes_or_text.encode(encoding)
    raise TypeError(f"Expected binary or unicode string, got {bytes_or_text!r}")


def _as_text(bytes_or_text, encoding="utf-8"):
    """``tf.compat.as_text`` / ``as_str``: bytes decoded, text unchanged."""
    if isinstance(bytes_or_text, str):
        return bytes_or_text
    if isinstance(bytes_or_text, (bytes, bytearray)):
        return bytes(bytes_or_text).decode(encoding)
    raise TypeError(f"Expected binary or unicode string, got {bytes_or_text!r}")


#: ``tf.compat.v1`` is this module itself, so TF 1.15-style code (``tf.compat.v1.placeholder``) runs;
#: ``as_bytes``/``as_text``/``as_str`` are TF1's string helpers (word2vec's data reading uses them).
compat = _Namespace("compat", v1=_sys.modules[__name__], as_bytes=_as_bytes, as_text=_as_text, as_str=_as_text,
                    as_str_any=lambda value: value.decode() if isinstance(value, bytes) else str(value))


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise _unsupported("", name, globals())
