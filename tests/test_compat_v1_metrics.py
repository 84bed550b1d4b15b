"""tf.metrics (distnet/compat/v1/metrics.py): TF1's variable names, local
variables, update ops, and the numbers recorded from TensorFlow 2.21's
``tf.compat.v1.metrics`` on the same seeded batches (float32)."""
from __future__ import annotations

import numpy as np
import pytest
from mpi_util import run_mpi

import distnet.compat.v1 as tf

# Recorded from TF 2.21 (tf.compat.v1, /work/tfvenv): three batches of RandomState(0) data, see _batches.
# The update ops' values after each batch, in the order of METRICS.
TF_UPDATES = [
    [0.0, 0.0, 0.55543965, 0.60528183, 0.1142416, 0.29779577, 0.85714287, 0.747357, 0.81249964, 0.9059116,
     0.9491566],
    [0.05, 0.04587895, 0.50887185, 0.59052676, 0.16234289, 0.35560745, 0.6363636, 0.6689989, 0.6717171,
     0.58378637, 0.66092485],
    [0.13333334, 0.14685106, 0.55716115, 0.61838394, 0.16707367, 0.3946842, 0.6111111, 0.6088024, 0.5277778,
     0.4110343, 0.60452265],
]
TF_PER_CLASS_UPDATES = [[0, 0, 0, 0], [0, 0, 0, 0.11111111], [0, 0, 0.2857143, 0.15384616]]
TF_CONFUSION_FINAL = [[0, 1, 2, 1], [1, 0, 3, 2], [2, 2, 2, 1], [4, 3, 4, 2]]
TF_MEAN_PER_CLASS, TF_MEAN_IOU = 0.10989012, 0.060661763
TF_LOCAL_NAMES = [
    "accuracy/total:0", "accuracy/count:0", "accuracy_1/total:0", "accuracy_1/count:0", "mean/total:0",
    "mean/count:0", "mean_1/total:0", "mean_1/count:0", "mean_squared_error/total:0",
    "mean_squared_error/count:0", "mean_absolute_error/total:0", "mean_absolute_error/count:0",
    "precision/true_positives/count:0", "precision/false_positives/count:0", "recall/true_positives/count:0",
    "recall/false_negatives/count:0", "auc/true_positives:0", "auc/false_negatives:0", "auc/true_negatives:0",
    "auc/false_positives:0", "auc_1/true_positives:0", "auc_1/false_negatives:0", "auc_1/true_negatives:0",
    "auc_1/false_positives:0", "auc_2/true_positives:0", "auc_2/false_negatives:0", "auc_2/true_negatives:0",
    "auc_2/false_positives:0", "mean_accuracy/total:0", "mean_accuracy/count:0",
    "mean_iou/total_confusion_matrix:0",
]


def _batches():
    rs = np.random.RandomState(0)
    for _ in range(3):
        L = rs.randint(0, 4, size=10)
        P = rs.randint(0, 4, size=10)
        W = rs.rand(10).astype(np.float32)
        Yl = rs.rand(10).astype(np.float32)
        Yp = rs.rand(10).astype(np.float32)
        yield L, P, W, Yl, Yp, Yl > 0.4


def _graph():
    ph = dict(lab=tf.placeholder(tf.int64, [None]), pred=tf.placeholder(tf.int64, [None]),
              w=tf.placeholder(tf.float32, [None]), yl=tf.placeholder(tf.float32, [None]),
              yp=tf.placeholder(tf.float32, [None]), bl=tf.placeholder(tf.bool, [None]))
    m = [
        tf.metrics.accuracy(ph["lab"], ph["pred"]),
        tf.metrics.accuracy(ph["lab"], ph["pred"], weights=ph["w"]),
        tf.metrics.mean(ph["yp"]),
        tf.metrics.mean(ph["yp"], weights=ph["w"]),
        tf.metrics.mean_squared_error(ph["yl"], ph["yp"]),
        tf.metrics.mean_absolute_error(ph["yl"], ph["yp"], weights=ph["w"]),
        tf.metrics.precision(ph["bl"], ph["yp"] > 0.5),
        tf.metrics.recall(ph["bl"], ph["yp"] > 0.5, weights=ph["w"]),
        tf.metrics.auc(ph["bl"], ph["yp"]),
        tf.metrics.auc(ph["bl"], ph["yp"], weights=ph["w"], num_thresholds=50),
        tf.metrics.auc(ph["bl"], ph["yp"], curve="PR"),
    ]
    per_class = tf.metrics.mean_per_class_accuracy(ph["lab"], ph["pred"], 4)
    iou = tf.metrics.mean_iou(ph["lab"], ph["pred"], 4)
    return ph, m, per_class, iou


def _feed(ph, batch):
    L, P, W, Yl, Yp, B = batch
    return {ph["lab"]: L, ph["pred"]: P, ph["w"]: W, ph["yl"]: Yl, ph["yp"]: Yp, ph["bl"]: B}


def test_metrics_match_tf_recorded_values_and_names():
    tf.reset_default_graph()
    ph, m, per_class, iou = _graph()
    assert [v.name for v in tf.local_variables()] == TF_LOCAL_NAMES
    assert tf.global_variables() == [] and tf.trainable_variables() == []
    assert m[0][0].name == "accuracy/value:0" and m[0][1].name == "accuracy/update_op:0"
    with tf.Session() as sess:
        sess.run(tf.local_variables_initializer())
        for k, batch in enumerate(_batches()):
            ups = sess.run([u for _, u in m] + [per_class[1], iou[1]], _feed(ph, batch))
            np.testing.assert_allclose(ups[:-2], TF_UPDATES[k], rtol=2e-6, atol=1e-7)
            np.testing.assert_allclose(ups[-2], TF_PER_CLASS_UPDATES[k], rtol=2e-6)
        np.testing.assert_array_equal(ups[-1], TF_CONFUSION_FINAL)
        assert ups[-1].dtype == np.float64
        values = sess.run([v for v, _ in m] + [per_class[0], iou[0]])
        np.testing.assert_allclose(values[:-2], TF_UPDATES[-1], rtol=2e-6, atol=1e-7)
        np.testing.assert_allclose(values[-2:], [TF_MEAN_PER_CLASS, TF_MEAN_IOU], rtol=2e-6)
        assert all(np.asarray(v).dtype == np.float32 for v in values)
        # Reading the value changes nothing; the initializer resets.
        assert sess.run(m[0][0]) == values[0]
        sess.run(tf.local_variables_initializer())
        assert sess.run([m[0][0], m[2][0], m[8][0], per_class[0], iou[0]]) == [0, 0, 0, 0, 0]


def test_metric_before_initializer_is_a_failed_precondition():
    tf.reset_default_graph()
    _, up = tf.metrics.accuracy(tf.constant([1, 2]), tf.constant([1, 3]))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())   # metrics live in LOCAL_VARIABLES
        with pytest.raises(tf.errors.FailedPreconditionError, match="accuracy/total"):
            sess.run(up)
        sess.run(tf.local_variables_initializer())
        assert sess.run(up) == pytest.approx(0.5)


def test_accuracy_squeezes_a_trailing_axis_and_casts_predictions():
    tf.reset_default_graph()
    labels = tf.placeholder(tf.int32, [None])
    logits = tf.placeholder(tf.float32, [None, 3])
    _, up = tf.metrics.accuracy(labels, tf.argmax(logits, 1))         # int64 predictions, int32 labels
    _, up2 = tf.metrics.accuracy(tf.expand_dims(labels, 1), tf.argmax(logits, 1), name="acc_col")
    assert [v.op.name for v in tf.local_variables()][-2:] == ["acc_col/total", "acc_col/count"]
    with tf.Session() as sess:
        sess.run(tf.local_variables_initializer())
        feed = {labels: [0, 1, 2, 2], logits: np.eye(3, dtype=np.float32)[[0, 1, 1, 2]]}
        assert sess.run([up, up2], feed) == [0.75, 0.75]


def test_bad_inputs_say_what_was_expected():
    tf.reset_default_graph()
    with pytest.raises(ValueError, match="compatible shapes"):
        tf.metrics.accuracy(tf.constant([[1, 2, 3]]), tf.constant([[1, 2]]))
    with pytest.raises(ValueError, match="Curve must be either ROC or PR"):
        tf.metrics.auc(tf.constant([True]), tf.constant([0.5]), curve="XY")
    _, up = tf.metrics.mean(tf.constant([1.0, 2.0]), weights=tf.constant([1.0, 2.0, 3.0]))
    with tf.Session() as sess:
        sess.run(tf.local_variables_initializer())
        with pytest.raises(ValueError, match="weights can not be broadcast"):
            sess.run(up)
    tf.reset_default_graph()
    _, u = tf.metrics.auc(tf.constant([True, False]), tf.constant([0.5, 1.5]))
    with tf.Session() as sess:
        sess.run(tf.local_variables_initializer())
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"predictions must be in \[0, 1\]"):
            sess.run(u)


def test_metrics_collections():
    tf.reset_default_graph()
    v, u = tf.metrics.mean(tf.constant([1.0]), metrics_collections=["m"], updates_collections=["u"])
    assert tf.get_collection("m") == [v] and tf.get_collection("u") == [u]
    assert tf.get_collection(tf.GraphKeys.METRIC_VARIABLES) == tf.local_variables()


_GLOBAL_PROGRAM = r"""
import numpy as np
import distnet.compat.v1 as tf
rs = np.random.RandomState(1)
labels_all = rs.randint(0, 3, size=(4, 7))
preds_all = rs.randint(0, 3, size=(4, 7))
x = tf.placeholder(tf.int64, [None]); y = tf.placeholder(tf.int64, [None])
acc, up = tf.metrics.accuracy(x, y)
mpc, mpc_up = tf.metrics.mean_per_class_accuracy(x, y, 3)
local, local_up = tf.metrics.accuracy(x, y, name="unsharded")
w = tf.Variable(1.0)
opt = tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1))   # makes the graph data parallel
with tf.Session() as sess:
    sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
    for k in range(4):
        xs, ys = tf.distributed.shard(labels_all[k], preds_all[k])   # 7 rows: uneven parts on 2 and 3 ranks
        sess.run([up, mpc_up], {x: xs, y: ys})
        sess.run(local_up, {x: labels_all[k][:2], y: preds_all[k][:2]})   # not a shard: this rank only
    res = sess.run([acc, mpc, local])
    both = tf.distributed.allreduce(np.array(res[:2]), average=False)   # every rank holds the same totals
    if tf.distributed.rank() == 0:
        print("global", res[0], res[1], both[0] / tf.distributed.size(), both[1] / tf.distributed.size())
        print("local", res[2])
"""


@pytest.mark.parametrize("n", [1, 2, 3])
def test_metrics_are_global_over_ranks_when_fed_shards(tmp_path, n):
    prog = tmp_path / "metrics_global.py"
    prog.write_text(_GLOBAL_PROGRAM)
    rs = np.random.RandomState(1)
    labels_all = rs.randint(0, 3, size=(4, 7))
    preds_all = rs.randint(0, 3, size=(4, 7))
    expect_acc = np.mean(labels_all == preds_all)
    per_class = [np.mean((preds_all == labels_all)[labels_all == c]) for c in range(3)]
    expect_local = np.mean(labels_all[:, :2] == preds_all[:, :2])
    run = run_mpi(str(prog), n, timeout=240)
    assert run.returncode == 0, run.describe()
    got = [float(v) for v in run.values("global")[0].split()]
    assert got == pytest.approx([expect_acc, np.mean(per_class)] * 2, rel=1e-6)
    # A feed that is not a shard is counted on its own rank (the same rows on every rank here).
    assert float(run.values("local")[0]) == pytest.approx(expect_local, rel=1e-6)


_DATA_BATCH_PROGRAM = r"""
import numpy as np
import distnet.compat.v1 as tf
labels_all = np.array([0, 1, 2, 1, 0, 2, 2, 1])
preds_all = np.array([0, 1, 1, 1, 2, 2, 0, 1])
x = tf.placeholder(tf.int64, [None]); y = tf.placeholder(tf.int64, [None])
# What a tf.data iterator's batch is marked with (compat/v1/data.py): this rank's part of the data.
x.op._data_batch = y.op._data_batch = True
acc, up = tf.metrics.accuracy(x, y)
tf.distributed.rank()                        # the graph runs on every rank
with tf.Session() as sess:
    sess.run(tf.local_variables_initializer())
    r, n = tf.distributed.rank(), tf.distributed.size()
    sess.run(up, {x: labels_all[r::n], y: preds_all[r::n]})      # each rank its own rows, not via shard()
    if r == 0:
        print("accuracy", sess.run(acc))
"""


def test_metrics_are_global_when_ranks_read_their_own_data_batches(tmp_path):
    prog = tmp_path / "metrics_data_batch.py"
    prog.write_text(_DATA_BATCH_PROGRAM)
    run = run_mpi(str(prog), 2, timeout=240)
    assert run.returncode == 0, run.describe()
    assert float(run.values("accuracy")[0]) == pytest.approx(5 / 8)     # rank 0 alone: 1/4
