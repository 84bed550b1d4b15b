"""distnet.compat.v1's input pipelines: tf.data, the queue era, input_data (issue 20).

The expected elements, shapes and errors are those TensorFlow 2.21's
``tf.compat.v1`` gives for the same pipelines (recorded by running them
there); the shuffles are distnet's own draws, so they are checked by their
properties (every element once per epoch, the buffer's reach, seeds).
"""
from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pytest

import distnet.compat.v1 as tf
from distnet.compat.v1 import input_data
from distnet.compat.v1.errors import FailedPreconditionError, OutOfRangeError, UnsupportedError
from distnet.data import write_idx
from distnet.errors import DataError, DTypeError, InvalidArgumentError
from mpi_util import mpi_env, run_mpi

D = tf.data.Dataset


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def drain(sess, fetch, limit=100) -> list:
    """Every value ``fetch`` gives until OutOfRangeError (which must come)."""
    out = []
    for _ in range(limit):
        try:
            v = sess.run(fetch)
        except OutOfRangeError:
            return out
        out.append(v.tolist() if hasattr(v, "tolist") else v)
    raise AssertionError(f"no OutOfRangeError after {limit} runs")


def elements(ds) -> list:
    t = tf.data.make_one_shot_iterator(ds).get_next()
    with tf.Session() as sess:
        return drain(sess, t)


# -- datasets: TF's elements and shapes --------------------------------------------------------

def test_slices_of_a_tuple_batch_and_end_where_tf_ends():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    ds = D.from_tensor_slices((x, np.arange(5))).map(lambda a, b: (a * 2, b + 1)).batch(2)
    assert ds.output_types == (np.float32, np.int64)              # numpy int64 stays int64, as in TF
    assert [s.as_list() for s in ds.output_shapes] == [[None, 2], [None]]
    a, b = ds.make_one_shot_iterator().get_next()
    with tf.Session() as sess:
        first = sess.run([a, b])
        np.testing.assert_array_equal(first[0], [[0, 2], [4, 6]])
        np.testing.assert_array_equal(first[1], [1, 2])
        assert sess.run(b).tolist() == [3, 4]
        assert sess.run(a).tolist() == [[16, 18]]                 # the last, smaller batch
        for _ in range(2):                                         # and then the end, on every run
            with pytest.raises(OutOfRangeError, match="End of sequence"):
                sess.run(a)


@pytest.mark.parametrize("make, expected", [
    (lambda: D.range(1, 6).map(lambda i: tf.range(tf.cast(i, tf.int32))).padded_batch(2, padded_shapes=[None]),
     [[[0, 0], [0, 1]], [[0, 1, 2, 0], [0, 1, 2, 3]], [[0, 1, 2, 3, 4]]]),
    (lambda: D.range(1, 4).map(lambda i: tf.range(tf.cast(i, tf.int32))).padded_batch(2, [5], padding_values=-1),
     [[[0, -1, -1, -1, -1], [0, 1, -1, -1, -1]], [[0, 1, 2, -1, -1]]]),
    (lambda: D.range(10).shard(3, 1), [1, 4, 7]),
    (lambda: D.range(10).skip(3).take(4), [3, 4, 5, 6]),
    (lambda: D.range(5).repeat(2).batch(4), [[0, 1, 2, 3], [4, 0, 1, 2], [3, 4]]),
    (lambda: D.range(5).batch(4).repeat(2), [[0, 1, 2, 3], [4], [0, 1, 2, 3], [4]]),
    (lambda: D.range(10).filter(lambda x: tf.logical_or(tf.less(x, 2), tf.greater(x, 7))), [0, 1, 8, 9]),
    (lambda: D.range(2).concatenate(D.range(5, 7)), [0, 1, 5, 6]),
    (lambda: D.from_tensor_slices(np.arange(6, dtype=np.float32)).batch(3).map(tf.reduce_sum), [3.0, 12.0]),
    (lambda: D.range(7).batch(3, drop_remainder=True), [[0, 1, 2], [3, 4, 5]]),
    (lambda: D.range(4).prefetch(tf.data.experimental.AUTOTUNE).take(-1).skip(0), [0, 1, 2, 3]),
    (lambda: D.range(3).repeat(0), []),
])
def test_elements_are_tfs(make, expected):
    assert elements(make()) == expected


def test_flat_map_interleave_unbatch_are_tfs():
    # TF1's own documentation example of interleave's order.
    ds = D.range(1, 6).interleave(lambda x: D.from_tensors(x).repeat(6), cycle_length=2, block_length=4)
    assert elements(ds) == [1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 3, 3, 4, 4, 5, 5, 5, 5, 5, 5]
    assert elements(D.range(1, 4).flat_map(lambda x: D.range(x))) == [0, 0, 1, 0, 1, 2]
    assert elements(D.range(6).batch(4).unbatch()) == [0, 1, 2, 3, 4, 5]
    assert elements(D.from_tensor_slices(["a", "b\u00e9"])) == [b"a", b"b\xc3\xa9"]       # strings are bytes


def test_csv_files_through_list_files_interleave_and_decode_csv(tmp_path):
    for i in range(3):
        (tmp_path / f"f{i}.csv").write_text(f"header\n{i},1\n{i},2\n")
    lines = D.list_files(str(tmp_path / "*.csv"), shuffle=False) \
        .interleave(lambda f: tf.data.TextLineDataset(f).skip(1), cycle_length=2)
    assert elements(lines) == [b"0,1", b"1,1", b"0,2", b"1,2", b"2,1", b"2,2"]          # TF 2.21's order
    pairs = lines.map(lambda line: tf.decode_csv(line, [[0], [0]]))
    assert [s.as_list() for s in pairs.output_shapes] == [[], []]
    assert elements(pairs.map(lambda a, b: a * 10 + b)) == [1, 11, 2, 12, 21, 22]
    shuffled = elements(D.list_files(str(tmp_path / "*.csv"), seed=3))
    assert sorted(shuffled) == sorted(str(tmp_path / f"f{i}.csv").encode() for i in range(3))
    with pytest.raises(InvalidArgumentError, match="No files matched pattern"):
        D.list_files(str(tmp_path / "*.tfrecord"))


def test_static_shapes_are_tfs():
    assert D.range(1, 6).map(lambda i: tf.range(tf.cast(i, tf.int32))).padded_batch(2, [None]) \
        .output_shapes.as_list() == [None, None]
    assert D.range(7).batch(3, drop_remainder=True).output_shapes.as_list() == [3]
    ds = D.from_tensors((np.zeros((2, 3), np.float32), 1.5))
    assert ds.output_types == (np.float32, np.float32)
    assert [s.as_list() for s in ds.output_shapes] == [[2, 3], []]
    ds = D.from_tensor_slices({"a": [1, 2], "b": [[1.0], [2.0]]})
    assert ds.output_types == {"a": np.int32, "b": np.float32}
    assert {k: v.as_list() for k, v in ds.output_shapes.items()} == {"a": [], "b": [1]}
    assert ds.output_classes == {"a": tf.Tensor, "b": tf.Tensor}
    # A size that depends on the element's values is unknown, as TF traces it.
    cut = D.from_tensor_slices((np.zeros((4, 5), np.int32), np.arange(4, dtype=np.int32))).map(lambda a, n: a[:n])
    assert cut.output_shapes.as_list() == [None]
    assert D.range(3).map(lambda i: tf.range(tf.cast(i, tf.int32))).output_shapes.as_list() == [None]


def test_zip_and_dicts_give_their_structure():
    z = tf.data.make_one_shot_iterator(D.zip((D.range(3), D.range(10, 20)))).get_next()
    d = D.from_tensor_slices({"x": np.eye(2, dtype=np.float32), "y": np.array([3, 4])}).make_one_shot_iterator()
    e = d.get_next()
    with tf.Session() as sess:
        assert [tuple(int(v) for v in pair) for pair in drain(sess, z)] == [(0, 10), (1, 11), (2, 12)]
        got = sess.run(e)
        assert sorted(got) == ["x", "y"] and got["x"].tolist() == [1.0, 0.0] and got["y"] == 3


def test_one_element_per_run_for_every_fetch_and_a_new_one_per_get_next_call():
    it = D.range(100).make_one_shot_iterator()
    a = it.get_next()
    b = a * 10
    other = it.get_next()                # a second op takes its own element
    with tf.Session() as sess:
        assert sess.run([a, b, a]) == [0, 0, 0]
        assert sess.run([a, b]) == [1, 10]
        assert sorted(sess.run([a, other])) == [2, 3]
    with tf.Session() as sess:             # the position is the session's
        assert sess.run(a) == 0


def test_from_generator_and_text_lines(tmp_path):
    ds = D.from_generator(lambda: iter([[1, 2], [3, 4, 5]]), tf.int64, tf.TensorShape([None]))
    assert elements(ds) == [[1, 2], [3, 4, 5]]
    f1, f2 = tmp_path / "a.txt", tmp_path / "b.txt"
    f1.write_bytes(b"one\r\ntwo\n")
    f2.write_bytes(b"three")
    assert elements(tf.data.TextLineDataset([str(f1), str(f2)])) == [b"one", b"two", b"three"]


def test_map_runs_per_element_and_sees_the_current_weights():
    w = tf.Variable(2.0)
    nxt = D.from_tensor_slices(np.array([1.0, 2.0, 3.0], np.float32)).map(lambda v: v * w) \
        .make_one_shot_iterator().get_next()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(nxt) == 2.0
        sess.run(tf.assign(w, 5.0))
        assert sess.run(nxt) == 10.0


def test_cache_replays_the_first_pass():
    noisy = D.range(3).map(lambda i: tf.cast(i, tf.float32) + tf.random_uniform([], seed=1)).cache().repeat(2)
    got = elements(noisy)
    assert len(got) == 6 and got[:3] == got[3:]
    fresh = elements(D.range(3).map(lambda i: tf.cast(i, tf.float32) + tf.random_uniform([], seed=1)).repeat(2))
    assert fresh[:3] != fresh[3:]


# -- shuffle -----------------------------------------------------------------------------------

def test_shuffle_is_a_permutation_per_epoch_reshuffled_each_epoch():
    tf.set_random_seed(4)
    got = elements(D.range(20).shuffle(20).repeat(3))
    epochs = [got[i * 20:(i + 1) * 20] for i in range(3)]
    for e in epochs:
        assert sorted(e) == list(range(20))
    assert epochs[0] != list(range(20)) and epochs[0] != epochs[1]
    same = elements(D.range(20).shuffle(20, seed=3, reshuffle_each_iteration=False).repeat(2))
    assert same[:20] == same[20:] and sorted(same[:20]) == list(range(20))


def test_shuffle_buffer_reach_and_buffer_of_one():
    assert elements(D.range(10).shuffle(1)) == list(range(10))
    for seed in range(20):
        tf.reset_default_graph()
        got = elements(D.range(50).shuffle(3, seed=seed))
        # With a buffer of 3 the k-th element out is one of the first k + 3 in.
        assert all(v < k + 3 for k, v in enumerate(got)) and sorted(got) == list(range(50))


def test_a_seeded_shuffle_restarts_in_the_same_order_on_reinitialization():
    ph = tf.placeholder(tf.float32, [None])
    it = D.from_tensor_slices(ph).shuffle(3, seed=4).make_initializable_iterator()
    n = it.get_next()
    with tf.Session() as sess:
        orders = []
        for _ in range(2):
            sess.run(it.initializer, {ph: np.arange(6.0)})
            orders.append([float(sess.run(n)) for _ in range(6)])
    assert orders[0] == orders[1] and sorted(orders[0]) == [0, 1, 2, 3, 4, 5]


# -- iterators -----------------------------------------------------------------------------------

def test_initializable_iterator_takes_placeholders_and_restarts():
    x = tf.placeholder(tf.float32, [None, 2])
    it = D.from_tensor_slices(x).batch(2).make_initializable_iterator()
    batch = it.get_next()
    total = tf.reduce_sum(batch)
    with tf.Session() as sess:
        with pytest.raises(FailedPreconditionError, match="not been initialized"):
            sess.run(batch)
        sess.run(it.initializer, feed_dict={x: np.ones((3, 2))})
        assert drain(sess, total) == [4.0, 2.0]
        sess.run(it.initializer, feed_dict={x: np.full((2, 2), 3.0)})
        assert drain(sess, total) == [12.0]


def test_a_function_reads_the_placeholders_fed_to_the_initializer():
    scale = tf.placeholder(tf.float32, [])
    it = D.range(3).map(lambda i: tf.cast(i, tf.float32) * scale).make_initializable_iterator()
    nxt = it.get_next()
    with tf.Session() as sess:
        sess.run(it.initializer, {scale: 10.0})
        assert drain(sess, nxt) == [0.0, 10.0, 20.0]
        sess.run(it.initializer, {scale: -1.0})
        assert drain(sess, nxt) == [0.0, -1.0, -2.0]


def test_reinitializable_iterator_switches_datasets():
    train = D.range(5).batch(2)
    valid = D.range(100, 103).batch(2)
    it = tf.data.Iterator.from_structure(train.output_types, train.output_shapes)
    nxt = it.get_next()
    to_train, to_valid = it.make_initializer(train), it.make_initializer(valid)
    with tf.Session() as sess:
        sess.run(to_train)
        assert sess.run(nxt).tolist() == [0, 1]
        sess.run(to_valid)
        assert drain(sess, nxt) == [[100, 101], [102]]
        sess.run(to_train)
        assert drain(sess, nxt) == [[0, 1], [2, 3], [4]]
    with pytest.raises(TypeError, match="Expected output types"):
        it.make_initializer(D.from_tensor_slices(np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match="does not have an initializer"):
        D.range(2).make_one_shot_iterator().initializer  # noqa: B018 (the access raises)


def test_bad_pipelines_say_what_is_wrong():
    ph = tf.placeholder(tf.float32, [None])
    with pytest.raises(ValueError, match="one-shot iterator.*placeholder"):
        D.from_tensor_slices(ph).make_one_shot_iterator()
    with pytest.raises(InvalidArgumentError, match="same first size"):
        D.from_tensor_slices((np.zeros(3), np.zeros(4)))
    with pytest.raises(InvalidArgumentError, match="index between 0 and 2"):
        D.range(5).shard(3, 3)
    with pytest.raises(InvalidArgumentError, match="batch_size: Expect: an int >= 1"):
        D.range(5).batch(0)
    with pytest.raises(DTypeError, match="scalar tf.bool"):
        D.range(5).filter(lambda x: x + 1)
    with pytest.raises(InvalidArgumentError, match="Cannot batch tensors with different shapes"):
        elements(D.range(1, 4).map(lambda i: tf.range(tf.cast(i, tf.int32))).batch(3))
    with pytest.raises(UnsupportedError, match="TFRecordDataset"):
        tf.data.TFRecordDataset("x.tfrecord")
    with pytest.raises(RuntimeError, match="make_one_shot_iterator"):
        iter(D.range(3))


def test_a_one_process_distributed_optimizer_counts_the_iterators_batch():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = x @ np.array([[1.0], [-1.0]], np.float32)
    xb, yb = D.from_tensor_slices((x, y)).batch(4).make_one_shot_iterator().get_next()
    w = tf.Variable(np.zeros((2, 1), np.float32))
    loss = tf.reduce_mean(tf.square(tf.matmul(xb, w) - yb))
    step = tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.01)).minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(step)
        g = 2 * x[:4].T @ (x[:4] @ np.zeros((2, 1)) - y[:4]) / 4
        np.testing.assert_allclose(sess.run(w), -0.01 * g, rtol=1e-6)
        sess.run(step)                      # the batch of 2 that ends the data
        with pytest.raises(OutOfRangeError):
            sess.run(step)


SHARDED_PROGRAM = """
import os
import numpy as np
import distnet.compat.v1 as tf

ranks = int(os.environ["RANKS"])
rs = np.random.RandomState(0)
x = rs.randn(int(os.environ["ROWS"]), 3).astype(np.float32)
y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
tf.set_random_seed(7)
ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x))
if ranks == 1:
    ds = ds.take(int(os.environ.get("TAKE", len(x))))
if ranks > 1:
    ds = ds.shard(tf.distributed.size(), tf.distributed.rank())
ds = ds.batch(6 // ranks)
xb, yb = ds.make_one_shot_iterator().get_next()
w = tf.Variable(np.zeros((3, 1), np.float32))
loss = tf.reduce_mean(tf.square(tf.matmul(xb, w) - yb))
opt = tf.train.GradientDescentOptimizer(0.1)
if ranks > 1:
    opt = tf.DistributedOptimizer(opt)
step = opt.minimize(loss)
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    steps = 0
    while True:
        try:
            sess.run(step)
        except tf.errors.OutOfRangeError:
            break
        steps += 1
    if ranks == 1 or tf.distributed.rank() == 0:
        print("steps", steps)
        np.save(os.environ["OUT"], sess.run(w))
"""


@pytest.mark.mpi
@pytest.mark.parametrize("rows, take, steps", [(23, 23, 4), (20, 18, 3)])
def test_three_ranks_on_uneven_shards_take_one_process_steps(tmp_path, rows, take, steps):
    # 23 shuffled elements in steps of 6: one process batches 6, 6, 6, 5; on 3 ranks shard(3)
    # then batch(2) gives each step the same elements, in parts of 2/2/2 and, last, 2/2/1: the
    # weighting by each rank's batch size must make it one process's step.
    # 20 elements: the last step would be 1/1/0 -- the third rank has no batch, and all three
    # end together after 3 steps (one process's first 18 elements) instead of hanging.
    prog = tmp_path / "sharded.py"
    prog.write_text(SHARDED_PROGRAM)
    env = {"ROWS": str(rows)}
    one = subprocess.run([sys.executable, str(prog)], capture_output=True, text=True, timeout=300,
                         env=mpi_env({**env, "RANKS": "1", "TAKE": str(take), "OUT": str(tmp_path / "one.npy")}))
    assert one.returncode == 0, one.stdout + one.stderr
    assert f"steps {steps}" in one.stdout
    run = run_mpi(str(prog), 3, timeout=120, env={**env, "RANKS": "3", "OUT": str(tmp_path / "three.npy")})
    assert run.returncode == 0, run.describe()
    assert f"steps {steps}" in run.stdout
    np.testing.assert_allclose(np.load(tmp_path / "three.npy"), np.load(tmp_path / "one.npy"), rtol=1e-5, atol=1e-7)


UNSEEDED_PROGRAM = """
import numpy as np
import distnet.compat.v1 as tf

part = tf.data.Dataset.range(40).shuffle(40).shard(tf.distributed.size(), tf.distributed.rank())
nxt = part.make_one_shot_iterator().get_next()
seen = np.zeros(40)
with tf.Session() as sess:
    try:
        while True:
            seen[sess.run(nxt)] += 1
    except tf.errors.OutOfRangeError:
        pass
counts = tf.distributed.allreduce(seen, average=False)
if tf.distributed.rank() == 0:
    print("counts", sorted(set(counts.tolist())), "shuffled", bool((np.flatnonzero(seen) != np.arange(0, 40, 2)).any()))
"""


@pytest.mark.mpi
def test_an_unseeded_shuffle_walks_one_order_on_every_rank(tmp_path):
    # No seed anywhere: rank 0's draw is every rank's, so the shards still cover each element once.
    prog = tmp_path / "unseeded.py"
    prog.write_text(UNSEEDED_PROGRAM)
    run = run_mpi(str(prog), 2, timeout=300)
    assert run.returncode == 0, run.describe()
    assert "counts [1.0] shuffled True" in run.stdout


# -- the queue era --------------------------------------------------------------------------------

def csv_file(tmp_path, text: str, name: str = "data.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_text_lines_decode_csv_and_batch_end_with_the_epochs(tmp_path):
    path = csv_file(tmp_path, "a,b,c\n1,2.5,x\n3,,yy\n5,6.5,z\n")
    queue = tf.train.string_input_producer([path], num_epochs=2, shuffle=False)
    key, value = tf.TextLineReader(skip_header_lines=1).read(queue)
    cols = tf.decode_csv(value, record_defaults=[[0], [1.0], ["?"]])
    assert [c.dtype for c in cols] == [np.int32, np.float32, np.bytes_]
    batch = tf.train.batch(cols, batch_size=4)
    assert [b.shape.as_list() for b in batch] == [[4], [4], [4]]
    with tf.Session() as sess:
        sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
        coord = tf.train.Coordinator()
        threads = tf.train.start_queue_runners(sess=sess, coord=coord)
        assert sess.run([key, value]) == [f"{path}:2".encode(), b"1,2.5,x"]     # lines counted from 1
        got = []
        try:
            while not coord.should_stop():
                got.append(sess.run(batch))
        except tf.errors.OutOfRangeError:
            pass
        finally:
            coord.request_stop()
        coord.join(threads)
    # 5 records remain of 2 epochs x 3: one batch of 4, then too few for another.
    assert len(got) == 1
    assert got[0][0].tolist() == [3, 5, 1, 3] and got[0][1].tolist() == [1.0, 6.5, 2.5, 1.0]
    assert got[0][2].tolist() == [b"yy", b"z", b"x", b"yy"]


def test_decode_csv_fields_are_tfs():
    rec = tf.constant(['1,"a,b",2.5', '7,,', '3,c,'])
    cols = tf.decode_csv(rec, record_defaults=[[0], ["z"], [0.5]])
    with tf.Session() as sess:
        got = sess.run(cols)
    assert [c.tolist() for c in got] == [[1, 7, 3], [b"a,b", b"z", b"c"], [2.5, 0.5, 0.5]]   # TF 2.21's
    rec = tf.constant(["x|1|2.5|NA", "y|NA|3|4"])
    delimited = tf.decode_csv(rec, [[""], [7], [0.0], [9.0]], field_delim="|", na_value="NA")
    selected = tf.decode_csv(rec, [[""], [0.0]], field_delim="|", select_cols=[0, 2])
    quoted = tf.decode_csv(tf.constant([['1 "q w"', "2 z"]]), [[0], [""]], field_delim=" ")
    with tf.Session() as sess:                                     # TF 2.21's values, each
        assert [c.tolist() for c in sess.run(delimited)] == [[b"x", b"y"], [1, 7], [2.5, 3.0], [9.0, 4.0]]
        assert [c.tolist() for c in sess.run(selected)] == [[b"x", b"y"], [2.5, 3.0]]
        assert [c.tolist() for c in sess.run(quoted)] == [[[1, 2]], [[b"q w", b"z"]]]
    bad = tf.decode_csv(tf.constant(["1,2"]), record_defaults=[[0], [0], [0]])
    required = tf.decode_csv(tf.constant([",2"]), record_defaults=[tf.constant([], tf.int32), [0]])
    not_int = tf.decode_csv(tf.constant(["x,2"]), record_defaults=[[0], [0]])
    with tf.Session() as sess:
        with pytest.raises(InvalidArgumentError, match="Expect 3 fields but have 2 in record 0"):
            sess.run(bad)
        with pytest.raises(InvalidArgumentError, match="Field 0 is required but missing in record 0"):
            sess.run(required)
        with pytest.raises(InvalidArgumentError, match="Field 0 in record 0 is not a valid int32: x"):
            sess.run(not_int)


def test_shuffled_producer_over_matched_files_reads_every_line_once_per_epoch(tmp_path):
    for i in range(3):
        csv_file(tmp_path, f"{i}0\n{i}1\n", name=f"part{i}.csv")
    names = tf.train.match_filenames_once(str(tmp_path / "part*.csv"))
    queue = tf.train.string_input_producer(names, num_epochs=2, shuffle=True, seed=5)
    _, value = tf.TextLineReader().read(queue)
    with tf.Session() as sess:
        assert [n.decode() for n in sess.run(names)] == [str(tmp_path / f"part{i}.csv") for i in range(3)]
        lines = drain(sess, value)
    assert len(lines) == 12 and sorted(lines[:6]) == sorted(lines[6:]) == sorted(f"{i}{j}".encode() for i in range(3)
                                                                                  for j in range(2))
    files_in_order = [line[:1] for line in lines[::2]]
    assert all(lines[2 * k][:1] == lines[2 * k + 1][:1] for k in range(6))     # a file is read to its end
    assert files_in_order[:3] != [b"0", b"1", b"2"] or files_in_order[3:] != [b"0", b"1", b"2"]


def test_allow_smaller_final_batch_and_a_single_tensor(tmp_path):
    path = csv_file(tmp_path, "1\n2\n3\n")
    queue = tf.train.string_input_producer([path], num_epochs=1, shuffle=False)
    _, value = tf.TextLineReader().read(queue)
    number, = tf.decode_csv(value, [[0]])
    batch = tf.train.batch([number], batch_size=2, allow_smaller_final_batch=True)
    assert isinstance(batch, tf.Tensor) and batch.shape.as_list() == [None]     # TF1: one tensor, not a list
    with tf.Session() as sess:
        assert drain(sess, batch) == [[1, 2], [3]]


def test_shuffle_batch_and_slice_input_producer():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    row_x, row_y = tf.train.slice_input_producer([x, y], num_epochs=2, shuffle=True, seed=1)
    bx, by = tf.train.shuffle_batch([row_x, row_y], batch_size=4, capacity=20, min_after_dequeue=5, seed=2)
    assert bx.shape.as_list() == [4, 2] and by.shape.as_list() == [4]
    with tf.Session() as sess:
        seen_x, seen_y = [], []
        try:
            while True:
                a, b = sess.run([bx, by])
                seen_x.extend(a.tolist())
                seen_y.extend(b.tolist())
        except OutOfRangeError as err:
            assert "RandomShuffleQueue" in str(err) and "requested 4, current size 0" in str(err)
    # 20 rows (2 epochs), 5 batches of 4: each row twice, rows and labels kept together.
    assert sorted(seen_y) == sorted(list(range(10)) * 2)
    assert all(row == [2 * label, 2 * label + 1] for row, label in zip(seen_x, seen_y))
    assert seen_y != sorted(seen_y)


QUEUE_RANKS_PROGRAM = """
import os
import numpy as np
import distnet.compat.v1 as tf

rank = tf.distributed.rank()
path = os.path.join(os.environ["DIR"], "part%d.csv" % rank)
with open(path, "w") as f:                       # rank 0 has 10 rows, rank 1 has 6
    f.writelines("%d,%d\\n" % (i, 2 * i) for i in range(10 if rank == 0 else 6))
queue = tf.train.string_input_producer([path], num_epochs=1, shuffle=False)
_, line = tf.TextLineReader().read(queue)
x, y = tf.decode_csv(line, [[0.0], [0.0]])
xb, yb = tf.train.batch([x, y], batch_size=2)
w = tf.Variable(0.0)
step = tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.001)).minimize(tf.reduce_mean(tf.square(w * xb - yb)))
with tf.Session() as sess:
    sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
    coord = tf.train.Coordinator()
    threads = tf.train.start_queue_runners(sess=sess, coord=coord)
    steps = 0
    try:
        while not coord.should_stop():
            sess.run(step)
            steps += 1
    except tf.errors.OutOfRangeError:
        pass
    finally:
        coord.request_stop()
    coord.join(threads)
# A file per rank: the ranks' stdout lines can interleave in mpiexec's output.
with open(os.path.join(os.environ["DIR"], "steps%d.txt" % rank), "w") as f:
    f.write("rank %d steps %d" % (rank, steps))
"""


@pytest.mark.mpi
def test_queue_batches_of_unequal_files_end_on_every_rank_together(tmp_path):
    # Rank 1's file gives 3 batches, rank 0's 5: both stop after 3 steps instead of rank 0
    # waiting in the all-reduce for ever.
    prog = tmp_path / "queues.py"
    prog.write_text(QUEUE_RANKS_PROGRAM)
    run = run_mpi(str(prog), 2, timeout=120, env={"DIR": str(tmp_path)})
    assert run.returncode == 0, run.describe()
    assert [(tmp_path / f"steps{r}.txt").read_text() for r in (0, 1)] == ["rank 0 steps 3", "rank 1 steps 3"]


def test_coordinator_keeps_the_stop_and_its_exception():
    coord = tf.train.Coordinator()
    assert not coord.should_stop()
    coord.request_stop(tf.errors.OutOfRangeError("end"))     # a clean stop
    assert coord.should_stop()
    coord.join([])
    coord.clear_stop()
    with coord.stop_on_exception():
        raise ValueError("bad record")
    assert coord.should_stop()
    with pytest.raises(ValueError, match="bad record"):
        coord.join(tf.train.start_queue_runners())


def test_missing_queue_pieces_are_one_clear_error(tmp_path):
    for name in ("FixedLengthRecordReader", "TFRecordReader", "FIFOQueue", "decode_raw"):
        with pytest.raises(UnsupportedError, match=f"tf.{name} is not supported"):
            getattr(tf, name)(1)
    with pytest.raises(UnsupportedError, match="shuffle_batch_join"):
        tf.train.shuffle_batch_join([], 1, 2, 1)
    queue = tf.train.string_input_producer([str(tmp_path / "missing.csv")])
    _, value = tf.TextLineReader().read(queue)
    with tf.Session() as sess:
        with pytest.raises(tf.errors.NotFoundError, match="missing.csv"):
            sess.run(value)


# -- input_data --------------------------------------------------------------------------------

def idx_dir(tmp_path, n_train=30, n_test=8, gz=True):
    rng = np.random.RandomState(0)
    d = tmp_path / "mnist"
    d.mkdir()
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(d / f"{stem}-images-idx3-ubyte{suffix}", images, compress=gz)
        write_idx(d / f"{stem}-labels-idx1-ubyte{suffix}", labels, compress=gz)
    return d


@pytest.mark.parametrize("gz", [True, False])
def test_read_data_sets_reads_the_directorys_files(tmp_path, capsys, gz):
    d = idx_dir(tmp_path, gz=gz)
    data = input_data.read_data_sets(str(d), one_hot=True, validation_size=10)
    line = capsys.readouterr().out.strip()
    assert line == f"input_data: read the IDX files in {str(d)!r}, no download: 20 train, 10 validation, 8 test images"
    assert data.train.images.shape == (20, 784) and data.train.images.dtype == np.float32
    assert 0.0 <= data.train.images.min() and data.train.images.max() <= 1.0
    assert data.train.labels.shape == (20, 10) and data.train.labels.dtype == np.float64
    assert data.validation.num_examples == 10 and data.test.num_examples == 8
    stored = gzip.open(d / "train-images-idx3-ubyte.gz").read() if gz else (d / "train-images-idx3-ubyte").read_bytes()
    first_validation = np.frombuffer(stored[16:16 + 784], np.uint8)
    np.testing.assert_array_equal(data.validation.images[0], first_validation.astype(np.float32) * np.float32(1 / 255))
    raw = input_data.read_data_sets(str(d), dtype=tf.uint8, reshape=False, validation_size=0)
    assert raw.train.images.shape == (30, 28, 28, 1) and raw.train.images.dtype == np.uint8
    assert raw.train.labels.dtype == np.uint8 and raw.train.labels[:3].tolist() == [0, 1, 2]


def test_read_data_sets_falls_back_to_fashion_mnist_and_never_downloads(tmp_path, capsys):
    data = input_data.read_data_sets(str(tmp_path / "MNIST_data"))
    line = capsys.readouterr().out.strip()
    assert line.startswith("input_data: read fashion_mnist (") and "no download" in line
    n = data.train.num_examples + data.validation.num_examples
    assert line.endswith(f"{data.train.num_examples} train, 5000 validation, {data.test.num_examples} test images")
    assert n in (10000, 60000) and data.train.images.shape[1] == 784
    assert not (tmp_path / "MNIST_data").exists()
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        input_data.read_data_sets(str(partial))
    with pytest.raises(ValueError, match="Validation size should be between 0 and 30"):
        input_data.read_data_sets(str(idx_dir(tmp_path)), validation_size=31)


def test_next_batch_follows_tfs_epochs(tmp_path):
    data = input_data.read_data_sets(str(idx_dir(tmp_path, n_train=10)), validation_size=0)
    train = data.train
    firsts = [train.next_batch(4)[1] for _ in range(2)]
    assert train.epochs_completed == 0
    third = train.next_batch(4)[1]                  # the epoch's last 2, then the next epoch's first 2
    assert train.epochs_completed == 1
    epoch_one = np.concatenate(firsts + [third[:2]])
    assert sorted(epoch_one.tolist()) == sorted((np.arange(10) % 10).tolist())
    assert epoch_one.tolist() != list(range(10))    # shuffled
    rest = np.concatenate([third[2:], train.next_batch(4)[1], train.next_batch(4)[1][:0]])
    assert len(set(rest.tolist())) == len(rest)     # still within the second epoch: no repeats
    again = input_data.read_data_sets(str(tmp_path / "mnist"), validation_size=0).train
    assert again.next_batch(4)[1].tolist() == firsts[0].tolist()     # the same order on every rank
    plain = input_data.read_data_sets(str(tmp_path / "mnist"), validation_size=0).train
    assert plain.next_batch(3, shuffle=False)[1].tolist() == [0, 1, 2]


def test_input_data_is_where_tf1_programs_import_it():
    assert tf.examples.tutorials.mnist.input_data.read_data_sets is input_data.read_data_sets


@pytest.mark.parametrize("n,buffer,batch,drop,reshuffle", [
    (50, 10, 7, False, True), (50, 10, 7, True, False), (50, 100, 4, False, True), (7, 3, 1, False, True),
    (13, 1, 5, True, True), (1, 5, 3, False, False), (40, 40, 40, False, True), (40, 39, 41, False, True)])
def test_batches_of_rows_are_the_batches_of_elements(monkeypatch, n, buffer, batch, drop, reshuffle):
    """from_tensor_slices -> shuffle -> batch gathers rows per batch (data.py's _rows); the batches,
    their order and the draws left for the next pass are those of the element by element path."""
    import importlib

    data_mod = importlib.import_module("distnet.compat.v1.data")

    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3) * 0.5
    y = np.arange(n, dtype=np.int64) * 3 + 1

    def batches(rows: bool) -> list:
        if not rows:
            monkeypatch.setattr(data_mod._Slices, "_rows", lambda self, ctx: None)
        tf.reset_default_graph()
        ds = D.from_tensor_slices((x, y)).shuffle(buffer, seed=5, reshuffle_each_iteration=reshuffle) \
            .batch(batch, drop_remainder=drop).repeat(3)
        nxt = ds.make_one_shot_iterator().get_next()
        with tf.Session() as sess:
            out = drain(sess, nxt, limit=1000)
        monkeypatch.undo()
        return out

    fast, slow = batches(True), batches(False)
    assert len(fast) == len(slow) > 0 or (drop and n < batch)
    for (fx, fy), (sx, sy) in zip(fast, slow):
        assert fx.dtype == sx.dtype and fy.dtype == sy.dtype
        np.testing.assert_array_equal(fx, sx)
        np.testing.assert_array_equal(fy, sy)
    # the order is a shuffle: every row once per pass (when no remainder is dropped)
    if not drop:
        assert sorted(np.concatenate([b[1] for b in fast]).tolist()) == sorted(y.tolist() * 3)
