"""``tf.metrics``: streaming metrics with local accumulators and update ops.

Each metric returns ``(value, update_op)``.  Its accumulators are local
variables (``LOCAL_VARIABLES`` and ``METRIC_VARIABLES``, not trainable,
zeros), named as TF1 names them (``accuracy/total``, ``accuracy/count``,
``precision/true_positives/count``, ``auc/true_positives``, ...), so
``tf.local_variables_initializer()`` resets them.  ``update_op`` adds one
batch to the accumulators and gives the metric over everything seen so far;
``value`` reads the accumulators without changing them.  The numbers are
TF1's (float32 accumulators, ``div_no_nan`` divisions, AUC by TF1's
thresholds approximation).

Under data parallelism the metrics are **global**: when a run's data is a
rank's part of a global batch (a feed made by ``tf.distributed.shard``, a
``tf.data`` batch; see :mod:`distnet.compat.v1.global_values`) and the
graph runs on more than one rank, ``update_op`` sums each batch's increments over
the ranks (one all-reduce per update) before adding them, so every rank's
accumulators hold the totals of the whole global batch and ``value`` is
the number one process computes on the whole data.  Every rank must then
run the update ops together (as it runs the training step).  A feed that is
not a shard (each rank, or rank 0 alone, evaluating the whole data) is
counted on its own rank only, with no communication.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from distnet.compat.v1.errors import FailedPreconditionError
from distnet.compat.v1.global_values import reducing_comm, sum_over_ranks
from distnet.compat.v1.graph import (
    GraphKeys,
    Tensor,
    TensorShape,
    convert_to_tensor,
    get_default_graph,
    leaf,
    probes_for,
)
from distnet.compat.v1.variables import get_variable, variable_scope, zeros_initializer
from distnet.tensor import Tensor as EagerTensor

_F32 = np.float32


def _div_no_nan(a, b):
    """TF's ``div_no_nan(a, maximum(b, 0))``: 0 where the denominator is 0."""
    a, b = np.asarray(a), np.maximum(np.asarray(b), 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(b == 0, np.zeros((), a.dtype), a / np.where(b == 0, np.ones((), b.dtype), b))
    return out.astype(a.dtype)


def _global_increments(run, graph, arrays: list) -> list:
    """``arrays`` summed over the ranks when this run's data is a rank's part of a global batch."""
    comm = reducing_comm(run, graph)
    return arrays if comm is None else sum_over_ranks(comm, arrays)


def _streaming(default_name: str, name: str | None, accumulators: Sequence[tuple], inputs: Sequence[Tensor],
               increments: Callable, result: Callable, update_result: Callable | None = None,
               value_shape: Sequence[int] = (), value_dtype: Any = _F32, update_shape: Sequence[int] | None = None,
               update_dtype: Any = None, metrics_collections: Any = None, updates_collections: Any = None):
    """``(value, update_op)`` of a metric whose state is ``accumulators`` (``[(name, shape, dtype)]``).

    ``increments(*input arrays)`` gives what one batch adds to each accumulator;
    ``result(*accumulators)`` the metric; ``update_result`` what the update op
    gives (default: the metric)."""
    g = get_default_graph()
    with variable_scope(name, default_name=default_name):
        accs = []
        for acc_name, shape, dtype in accumulators:
            accs.append(get_variable(acc_name, list(shape), dtype=dtype, initializer=zeros_initializer(dtype),
                                     trainable=False,
                                     collections=[GraphKeys.LOCAL_VARIABLES, GraphKeys.METRIC_VARIABLES]))
        def stores(run):
            # The accumulators' storage itself (not a read of it): the update writes it in place.
            out = [a._storage(run.session) for a in accs]
            for a, st in zip(accs, out):
                if st is None:
                    raise FailedPreconditionError(
                        f"Attempting to use uninitialized value {a.op.name}: Expect: "
                        "sess.run(tf.local_variables_initializer()) before using a tf.metrics op")
            return out

        def read(st_values):
            return [np.asarray(st.data) for st in st_values]

        def value_compute(run, values):
            return EagerTensor._from_op(np.asarray(result(*read(stores(run))), value_dtype), None, ())

        def update_compute(run, values):
            in_arrays = [np.asarray(v.data) for v in values]
            sts = stores(run)
            incs = _global_increments(run, g, [np.asarray(x, st.data.dtype)
                                               for x, st in zip(increments(*in_arrays), sts)])
            for st, inc in zip(sts, incs):
                st.assign(st.data + inc)
            out = (update_result or result)(*read(sts))
            return EagerTensor._from_op(np.asarray(out, update_dtype or value_dtype), None, ())

        vshape = TensorShape(list(value_shape))
        value = leaf("MetricValue", value_compute, value_dtype, vshape, probes_for(vshape, value_dtype),
                     name="value")
        ushape = TensorShape(list(update_shape if update_shape is not None else value_shape))
        udtype = update_dtype or value_dtype
        update = leaf("MetricUpdate", update_compute, udtype, ushape, probes_for(ushape, udtype),
                      name="update_op", inputs=list(inputs))
    for c in metrics_collections or []:
        g.add_to_collection(c, value)
    for c in updates_collections or []:
        g.add_to_collection(c, update)
    return value, update


# -- inputs ------------------------------------------------------------------------------

def _squeeze_pair(a: np.ndarray, b: np.ndarray) -> tuple:
    """TF's ``remove_squeezable_dimensions``: drop a trailing size-1 axis that makes the ranks differ by one."""
    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        a = a[..., 0]
    elif b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        b = b[..., 0]
    return a, b


def _weights(weights: np.ndarray | None, values: np.ndarray, metric: str) -> np.ndarray:
    """``weights`` broadcast to ``values`` (ones when None)."""
    if weights is None:
        return np.ones(values.shape, _F32)
    w = np.asarray(weights, _F32)
    if w.ndim == values.ndim + 1 and w.shape[-1] == 1:
        w = w[..., 0]
    try:
        return np.broadcast_to(w, values.shape)
    except ValueError:
        raise ValueError(f"tf.metrics.{metric}: weights can not be broadcast to values. Expect: weights of shape "
                         f"{list(values.shape)} (or a scalar, or size-1 axes) Actual: {list(w.shape)}") from None


def _check_shapes(a: Tensor, b: Tensor, metric: str, what: str = "labels and predictions") -> None:
    sa, sb = a.shape, b.shape
    if sa.ndims is not None and sb.ndims is not None and abs(sa.ndims - sb.ndims) == 1:
        return   # a trailing size-1 axis is squeezed at run time
    if not sa.is_compatible_with(sb):
        raise ValueError(f"tf.metrics.{metric}: {what} must have compatible shapes; Expect: equal shapes "
                         f"Actual: {sa} and {sb}")


def _inputs(metric: str, *tensors) -> list:
    return [convert_to_tensor(t) for t in tensors if t is not None]


# -- the metrics ---------------------------------------------------------------------------

def mean(values, weights=None, metrics_collections=None, updates_collections=None, name=None):
    """The (weighted) mean of every value seen: accumulators ``mean/total`` and ``mean/count``."""
    ins = _inputs("mean", values, weights)

    def inc(v, w=None):
        v = np.asarray(v, _F32)
        if w is None:
            return [np.sum(v, dtype=_F32), _F32(v.size)]
        v, w = _squeeze_pair(v, np.asarray(w, _F32))
        w = _weights(w, v, "mean")
        return [np.sum(v * w, dtype=_F32), np.sum(w, dtype=_F32)]

    return _streaming("mean", name, [("total", [], _F32), ("count", [], _F32)], ins, inc, _div_no_nan,
                      metrics_collections=metrics_collections, updates_collections=updates_collections)


def _mean_of(metric: str, per_element: Callable, labels, predictions, weights, metrics_collections,
             updates_collections, name, finish: Callable = _div_no_nan):
    """A mean of ``per_element(labels, predictions)``, e.g. accuracy (``labels == predictions``)."""
    ins = _inputs(metric, labels, predictions, weights)
    _check_shapes(ins[0], ins[1], metric)

    def inc(lab, pred, w=None):
        lab, pred = _squeeze_pair(np.asarray(lab), np.asarray(pred))
        if lab.shape != pred.shape:
            raise ValueError(f"tf.metrics.{metric}: Expect: labels and predictions of one shape "
                             f"Actual: {list(lab.shape)} and {list(pred.shape)}")
        v = np.asarray(per_element(lab, pred), _F32)
        if w is None:
            return [np.sum(v, dtype=_F32), _F32(v.size)]
        w = _weights(_squeeze_pair(v, np.asarray(w, _F32))[1], v, metric)
        return [np.sum(v * w, dtype=_F32), np.sum(w, dtype=_F32)]

    return _streaming(metric, name, [("total", [], _F32), ("count", [], _F32)], ins, inc, finish,
                      metrics_collections=metrics_collections, updates_collections=updates_collections)


def accuracy(labels, predictions, weights=None, metrics_collections=None, updates_collections=None, name=None):
    """How often ``predictions`` equals ``labels`` (TF1: predictions are cast to the labels' dtype)."""
    def equal(lab, pred):
        return lab == pred.astype(lab.dtype) if lab.dtype != pred.dtype else lab == pred

    return _mean_of("accuracy", equal, labels, predictions, weights, metrics_collections, updates_collections,
                    name)


def mean_squared_error(labels, predictions, weights=None, metrics_collections=None, updates_collections=None,
                       name=None):
    return _mean_of("mean_squared_error", lambda a, b: np.square(np.asarray(a, _F32) - np.asarray(b, _F32)),
                    labels, predictions, weights, metrics_collections, updates_collections, name)


def mean_absolute_error(labels, predictions, weights=None, metrics_collections=None, updates_collections=None,
                        name=None):
    return _mean_of("mean_absolute_error", lambda a, b: np.abs(np.asarray(b, _F32) - np.asarray(a, _F32)),
                    labels, predictions, weights, metrics_collections, updates_collections, name)


def root_mean_squared_error(labels, predictions, weights=None, metrics_collections=None, updates_collections=None,
                            name=None):
    return _mean_of("root_mean_squared_error",
                    lambda a, b: np.square(np.asarray(a, _F32) - np.asarray(b, _F32)),
                    labels, predictions, weights, metrics_collections, updates_collections, name,
                    finish=lambda t, c: np.sqrt(_div_no_nan(t, c)))


# -- counts of a confusion: true/false positives/negatives, precision, recall --------------

_CONDITIONS = {
    "true_positives": lambda lab, pred: lab & pred,
    "false_positives": lambda lab, pred: ~lab & pred,
    "true_negatives": lambda lab, pred: ~lab & ~pred,
    "false_negatives": lambda lab, pred: lab & ~pred,
}


def _bools(lab, pred, w, metric):
    lab, pred = _squeeze_pair(np.asarray(lab).astype(bool), np.asarray(pred).astype(bool))
    if lab.shape != pred.shape:
        raise ValueError(f"tf.metrics.{metric}: Expect: labels and predictions of one shape "
                         f"Actual: {list(lab.shape)} and {list(pred.shape)}")
    return lab, pred, _weights(w, lab, metric)


def _ratio(metric: str, numerator: str, other: str, labels, predictions, weights, metrics_collections,
           updates_collections, name):
    """``n / (n + o)`` (0 when both are 0) of two condition counts: precision, recall."""
    ins = _inputs(metric, labels, predictions, weights)
    _check_shapes(ins[0], ins[1], metric)

    def inc(lab, pred, w=None):
        lab, pred, w = _bools(lab, pred, w, metric)
        return [np.sum(w * _CONDITIONS[c](lab, pred), dtype=_F32) for c in (numerator, other)]

    def ratio(n, o):
        return n / (n + o) if n + o > 0 else _F32(0)

    return _streaming(metric, name, [(f"{numerator}/count", [], _F32), (f"{other}/count", [], _F32)], ins, inc,
                      ratio, metrics_collections=metrics_collections, updates_collections=updates_collections)


def precision(labels, predictions, weights=None, metrics_collections=None, updates_collections=None, name=None):
    """``tp / (tp + fp)`` of boolean (cast) labels and predictions."""
    return _ratio("precision", "true_positives", "false_positives", labels, predictions, weights,
                  metrics_collections, updates_collections, name)


def recall(labels, predictions, weights=None, metrics_collections=None, updates_collections=None, name=None):
    """``tp / (tp + fn)`` of boolean (cast) labels and predictions."""
    return _ratio("recall", "true_positives", "false_negatives", labels, predictions, weights,
                  metrics_collections, updates_collections, name)


def _count(condition: str):
    def metric(labels, predictions, weights=None, metrics_collections=None, updates_collections=None, name=None):
        ins = _inputs(condition, labels, predictions, weights)
        _check_shapes(ins[0], ins[1], condition)

        def inc(lab, pred, w=None):
            lab, pred, w = _bools(lab, pred, w, condition)
            return [np.sum(w * _CONDITIONS[condition](lab, pred), dtype=_F32)]

        return _streaming(condition, name, [("count", [], _F32)], ins, inc, lambda c: c,
                          metrics_collections=metrics_collections, updates_collections=updates_collections)

    metric.__name__ = condition
    metric.__doc__ = f"The (weighted) number of {condition.replace('_', ' ')} of boolean labels and predictions."
    return metric


true_positives = _count("true_positives")
false_positives = _count("false_positives")
true_negatives = _count("true_negatives")
false_negatives = _count("false_negatives")


# -- AUC (TF1's thresholds approximation) --------------------------------------------------

def auc(labels, predictions, weights=None, num_thresholds=200, metrics_collections=None, updates_collections=None,
        curve="ROC", name=None, summation_method="trapezoidal", thresholds=None):
    """The area under the ROC or PR curve, from confusion counts at ``num_thresholds``
    thresholds (TF1: evenly spaced in (0, 1) plus ``-1e-7`` and ``1 + 1e-7``).
    ``predictions`` must lie in [0, 1]."""
    if curve not in ("ROC", "PR"):
        raise ValueError(f"Curve must be either ROC or PR. Curve {curve} is unknown.")
    if summation_method not in ("trapezoidal", "careful_interpolation", "minoring", "majoring"):
        raise ValueError(f"Invalid summation_method: {summation_method!r}; Expect: trapezoidal, "
                         "careful_interpolation, minoring or majoring")
    kepsilon = 1e-7
    if thresholds is not None:
        inner = sorted(float(t) for t in thresholds)
    else:
        if num_thresholds < 2:
            raise ValueError(f"tf.metrics.auc: Expect: num_thresholds > 1 Actual: {num_thresholds}")
        inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    thr = np.array([0.0 - kepsilon] + inner + [1.0 + kepsilon], _F32)
    n = len(thr)
    ins = _inputs("auc", labels, predictions, weights)
    _check_shapes(ins[0], ins[1], "auc")

    def inc(lab, pred, w=None):
        lab, _, w = _bools(lab, np.zeros(np.shape(pred), bool), w, "auc")
        pred = _squeeze_pair(np.asarray(pred, _F32), lab)[0]
        if pred.size and (pred.min() < 0 or pred.max() > 1):
            from distnet.errors import InvalidArgumentError

            raise InvalidArgumentError(f"tf.metrics.auc: predictions must be in [0, 1]; Actual: values in "
                                       f"[{pred.min()}, {pred.max()}]")
        lab, pred, w = lab.reshape(-1), pred.reshape(-1), w.reshape(-1)
        pos = pred[None, :] > thr[:, None]            # [thresholds, samples]
        out = []
        for cond in ("true_positives", "false_negatives", "true_negatives", "false_positives"):
            out.append(np.sum(w[None, :] * _CONDITIONS[cond](lab[None, :], pos), axis=1, dtype=_F32))
        return out

    epsilon = _F32(1.0e-6)

    def area(tp, fn, tn, fp):
        if curve == "PR" and summation_method == "careful_interpolation":
            return _interpolate_pr_auc(tp, fp, fn, n)
        rec = (tp + epsilon) / (tp + fn + epsilon)
        if curve == "ROC":
            x, y = fp / (fp + tn + epsilon), rec
        else:
            x, y = rec, (tp + epsilon) / (tp + fp + epsilon)
        dx = x[:n - 1] - x[1:]
        if summation_method in ("trapezoidal", "careful_interpolation"):
            return np.sum(dx * ((y[:n - 1] + y[1:]) / _F32(2.0)), dtype=_F32)
        pick = np.minimum if summation_method == "minoring" else np.maximum
        return np.sum(dx * pick(y[:n - 1], y[1:]), dtype=_F32)

    return _streaming("auc", name, [(c, [n], _F32) for c in ("true_positives", "false_negatives",
                                                               "true_negatives", "false_positives")],
                      ins, inc, area, metrics_collections=metrics_collections,
                      updates_collections=updates_collections)


def _interpolate_pr_auc(tp, fp, fn, n):
    """TF1's PR-AUC by interpolating precision between thresholds (Davis & Goadrich, 2006)."""
    dtp = tp[:n - 1] - tp[1:]
    p = tp + fp
    slope = _div_no_nan(dtp, p[:n - 1] - p[1:])
    intercept = tp[1:] - slope * p[1:]
    both = (p[:n - 1] > 0) & (p[1:] > 0)
    ratio = np.where(both, _div_no_nan(p[:n - 1], p[1:]), np.ones_like(p[1:]))
    with np.errstate(divide="ignore"):
        logs = np.log(np.where(ratio > 0, ratio, 1)).astype(_F32)
    return np.sum(_div_no_nan(slope * (dtp + intercept * logs), tp[1:] + fn[1:]), dtype=_F32)


# -- per-class metrics -------------------------------------------------------------------

def _class_ids(lab, pred, w, metric, num_classes):
    lab, pred = _squeeze_pair(np.asarray(lab).astype(np.int64), np.asarray(pred).astype(np.int64))
    w = _weights(w, lab, metric).reshape(-1)
    lab, pred = lab.reshape(-1), pred.reshape(-1)
    for what, ids in (("labels", lab), ("predictions", pred)):
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            from distnet.errors import InvalidArgumentError

            raise InvalidArgumentError(f"tf.metrics.{metric}: {what}: Expect: class ids in [0, {num_classes}) "
                                       f"Actual: values in [{ids.min()}, {ids.max()}]")
    return lab, pred, w


def mean_per_class_accuracy(labels, predictions, num_classes, weights=None, metrics_collections=None,
                            updates_collections=None, name=None):
    """The mean over classes of each class's accuracy (a class never seen counts 0, as in TF1);
    ``update_op`` gives the per-class accuracies (TF1)."""
    ins = _inputs("mean_per_class_accuracy", labels, predictions, weights)

    def inc(lab, pred, w=None):
        lab, pred, w = _class_ids(lab, pred, w, "mean_per_class_accuracy", num_classes)
        total = np.zeros(num_classes, _F32)
        count = np.zeros(num_classes, _F32)
        np.add.at(total, lab, w)
        np.add.at(count, lab, w * (lab == pred))
        return [total, count]

    return _streaming("mean_accuracy", name, [("total", [num_classes], _F32), ("count", [num_classes], _F32)],
                      ins, inc, lambda total, count: np.mean(_div_no_nan(count, total), dtype=_F32),
                      update_result=lambda total, count: _div_no_nan(count, total), update_shape=[num_classes],
                      metrics_collections=metrics_collections, updates_collections=updates_collections)


def mean_iou(labels, predictions, num_classes, weights=None, metrics_collections=None, updates_collections=None,
             name=None):
    """The mean over classes of intersection over union, from a float64 confusion matrix
    ``mean_iou/total_confusion_matrix`` (rows: labels); classes absent from both are left out;
    ``update_op`` gives the confusion matrix (TF1)."""
    ins = _inputs("mean_iou", labels, predictions, weights)

    def inc(lab, pred, w=None):
        lab, pred, w = _class_ids(lab, pred, w, "mean_iou", num_classes)
        cm = np.zeros((num_classes, num_classes), np.float64)
        np.add.at(cm, (lab, pred), w.astype(np.float64))
        return [cm]

    def iou(cm):
        cm = cm.astype(_F32)
        diag = np.diag(cm)
        denominator = cm.sum(axis=0) + cm.sum(axis=1) - diag
        valid = np.sum(denominator != 0, dtype=_F32)
        denominator = np.where(denominator > 0, denominator, _F32(1))
        return np.sum(diag / denominator, dtype=_F32) / valid if valid > 0 else _F32(0)

    return _streaming("mean_iou", name, [("total_confusion_matrix", [num_classes, num_classes], np.float64)],
                      ins, inc, iou, update_result=lambda cm: cm, update_shape=[num_classes, num_classes],
                      update_dtype=np.float64, metrics_collections=metrics_collections,
                      updates_collections=updates_collections)
