"""tf.summary.image / text / audio through distnet's TensorBoard writer, read
back with TensorBoard's EventAccumulator; the image pixels are those TF 2.21's
``tf.compat.v1.summary.image`` wrote for the same arrays (decoded PNGs,
recorded); and scalar summaries of fed data are global under ``mpiexec``."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image  # Pillow comes with matplotlib
from tensorboard.backend.event_processing import event_accumulator  # the test extra

import distnet.compat.v1 as tf
from mpi_util import run_mpi


FLOATS = np.array([[[0.0, 0.25, 0.5], [0.75, 1.0, 0.3]], [[-1.0, 0.0, 0.5], [0.2, 2.0, -0.4]],
                   [[0, 0, 0], [0, 0, 0]]], np.float32)[..., None]
# TF 2.21 tf.compat.v1.summary.image(..., max_outputs=2) of FLOATS: channel 0 of the decoded PNGs.
TF_FLOAT_PIXELS = [[[0, 63, 127], [191, 255, 76]], [[64, 128, 159], [140, 255, 102]]]
UINT8 = (np.arange(3 * 12).reshape(3, 2, 2, 3) * 7 % 256).astype(np.uint8)


def _read(logdir):
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0,
                                                                          "images": 0, "audio": 0})
    acc.Reload()
    return acc


def _pixels(event):
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))


def test_image_text_audio_summaries_are_written_with_tf1_tags_and_pixels(tmp_path):
    tf.reset_default_graph()
    x = tf.placeholder(tf.float32, [None, 2, 3, 1])
    u = tf.placeholder(tf.uint8, [None, 2, 2, 3])
    tf.summary.image("imgs", x, max_outputs=2)
    tf.summary.image("one", x, max_outputs=1)
    tf.summary.image("rgb", u)
    with tf.name_scope("sc"):
        tf.summary.text("notes", tf.constant("hello *world*"))
        tf.summary.text("many", tf.constant([["a", "b"], ["c", "d"]]))
        tf.summary.tensor_summary("t", tf.constant([[1.5, 2.0], [3.0, -1.0]]))
        tf.summary.tensor_summary("i", tf.constant([1, 2, 3], tf.int64), summary_description="ids")
    tf.summary.audio("tone", tf.constant(np.sin(np.arange(800) / 8.0).reshape(1, 800).astype(np.float32)), 8000)
    merged = tf.summary.merge_all()
    with tf.Session() as sess:
        summary = sess.run(merged, {x: FLOATS, u: UINT8})
        writer = tf.summary.FileWriter(str(tmp_path))
        writer.add_summary(summary, 7)
        writer.close()
    acc = _read(tmp_path)
    assert sorted(acc.Tags()["images"]) == ["imgs/image/0", "imgs/image/1", "one/image", "rgb/image/0",
                                            "rgb/image/1", "rgb/image/2"]
    for i in range(2):
        (ev,) = acc.Images(f"imgs/image/{i}")
        assert (ev.step, ev.height, ev.width) == (7, 2, 3)
        np.testing.assert_array_equal(_pixels(ev)[..., 0], TF_FLOAT_PIXELS[i])
    np.testing.assert_array_equal(_pixels(acc.Images("one/image")[0])[..., 0], TF_FLOAT_PIXELS[0])
    for i in range(3):
        np.testing.assert_array_equal(_pixels(acc.Images(f"rgb/image/{i}")[0]), UINT8[i])
    from tensorboard.util import tensor_util

    (notes,) = acc.Tensors("sc/notes")
    assert tensor_util.make_ndarray(notes.tensor_proto).tolist() == b"hello *world*"
    assert acc.SummaryMetadata("sc/notes").plugin_data.plugin_name == "text"
    many = tensor_util.make_ndarray(acc.Tensors("sc/many")[0].tensor_proto)
    assert many.tolist() == [[b"a", b"b"], [b"c", b"d"]]
    # tensor_summary: TF 2.21 writes the same tags, values, dtypes and description
    t = tensor_util.make_ndarray(acc.Tensors("sc/t")[0].tensor_proto)
    assert t.dtype == np.float32 and t.tolist() == [[1.5, 2.0], [3.0, -1.0]]
    ids = tensor_util.make_ndarray(acc.Tensors("sc/i")[0].tensor_proto)
    assert ids.dtype == np.int64 and ids.tolist() == [1, 2, 3]
    assert acc.SummaryMetadata("sc/i").summary_description == "ids"
    (clip,) = acc.Audio("tone/audio/0")
    assert clip.sample_rate == 8000 and clip.step == 7 and clip.length_frames == 800


def test_a_second_summary_of_the_same_name_gets_a_unique_tag_as_in_tf1():
    tf.reset_default_graph()
    with tf.name_scope("train"):
        a = tf.summary.scalar("loss", tf.constant(1.0))
        b = tf.summary.scalar("loss", tf.constant(2.0))
    with tf.Session() as sess:
        assert [v[1] for v in sess.run(tf.summary.merge([a, b])).values] == ["train/loss", "train/loss_1"]


def test_image_non_finite_pixels_are_red_and_bad_shapes_are_refused():
    tf.reset_default_graph()
    img = np.zeros((1, 1, 2, 3), np.float32)
    img[0, 0, 0] = [np.nan, 0.5, 0.5]
    img[0, 0, 1] = [1.0, 0.5, 0.0]
    s = tf.summary.image("bad", tf.constant(img), max_outputs=1)
    with tf.Session() as sess:
        (kind, tag, pixels), = sess.run(s).values
    assert (kind, tag) == ("image", "bad/image")
    assert pixels.tolist() == [[[255, 0, 0], [255, 127, 0]]]
    with pytest.raises(ValueError, match=r"Expect: a tensor \[batch, height, width, 1\|3\|4\]"):
        tf.summary.image("x", tf.zeros([2, 2, 2]))
    with pytest.raises(TypeError, match="Expect: a string tensor"):
        tf.summary.text("t", tf.zeros([2]))


_SCALAR_PROGRAM = r"""
import os, sys
import numpy as np
import distnet.compat.v1 as tf
rs = np.random.RandomState(0)
X = rs.randn(7, 3).astype(np.float32)
Y = rs.randn(7, 1).astype(np.float32)
x = tf.placeholder(tf.float32, [None, 3]); y = tf.placeholder(tf.float32, [None, 1])
w = tf.Variable(np.full((3, 1), 0.1, np.float32))
loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - y))
tf.summary.scalar("loss", loss)
tf.summary.scalar("lr", tf.constant(0.1) * 1.0)     # no fed data: written as it is
opt = tf.train.GradientDescentOptimizer(0.1)
if os.environ.get("DISTRIBUTED") == "1":
    opt = tf.DistributedOptimizer(opt)
train = opt.minimize(loss)
merged = tf.summary.merge_all()
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    writer = tf.summary.FileWriter(sys.argv[1])
    for step in range(3):
        xs, ys = (tf.distributed.shard(X, Y) if os.environ.get("DISTRIBUTED") == "1" else (X, Y))
        summary, _ = sess.run([merged, train], {x: xs, y: ys})
        writer.add_summary(summary, step)
    writer.close()
"""


@pytest.mark.parametrize("n", [2, 3])
def test_scalar_summary_of_a_loss_is_the_global_loss_on_n_ranks(tmp_path, n):
    prog = tmp_path / "summary_global.py"
    prog.write_text(_SCALAR_PROGRAM)
    import subprocess
    import sys

    from mpi_util import mpi_env

    one = subprocess.run([sys.executable, str(prog), str(tmp_path / "one")], capture_output=True, text=True,
                         timeout=300, env=mpi_env())
    assert one.returncode == 0, one.stderr
    run = run_mpi(str(prog), n, str(tmp_path / "many"), timeout=300, env={"DISTRIBUTED": "1"})
    assert run.returncode == 0, run.describe()
    a, b = _read(tmp_path / "one"), _read(tmp_path / "many")
    one_loss = [e.value for e in a.Scalars("loss")]
    many_loss = [e.value for e in b.Scalars("loss")]
    assert len(one_loss) == 3 and one_loss[0] != one_loss[1]
    # 7 rows on n ranks: the weighted mean of the shards' losses is the whole batch's loss.
    np.testing.assert_allclose(many_loss, one_loss, rtol=1e-5)
    assert [e.value for e in b.Scalars("lr")] == pytest.approx([0.1] * 3)
