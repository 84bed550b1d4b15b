"""Run under mpiexec by tests/test_compat_v1.py: the TF1 front end's
DistributedOptimizer on uneven shards, against one process's gradient of
the whole global batch computed on every rank.

Prints ``check <name> <max abs difference>`` lines (rank 0) and raises on a
failed check.
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import expect, say, script_args  # noqa: E402

import distnet.compat.v1 as tf  # noqa: E402

out_dir = script_args()[0]
rank, size = tf.distributed.rank(), tf.distributed.size()
rng = np.random.RandomState(0)
X = rng.rand(7, 3).astype(np.float32)          # 7 rows: uneven shards on 2 or 3 ranks
Y = rng.rand(7, 1).astype(np.float32)
W0 = rng.randn(3, 1).astype(np.float32)


def model(reduction: str, distributed: bool, seed_by_rank: bool):
    """A graph whose variables start at rank-dependent values (broadcast must fix them)."""
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [None, 3])
        y_ = tf.placeholder(tf.float32, [None, 1])
        start = W0 + (rank if seed_by_rank else 0)
        w = tf.Variable(start)
        b = tf.Variable(tf.zeros([1]))
        err = tf.matmul(x, w) + b - y_
        data = tf.reduce_mean(tf.square(err)) if reduction == "mean" else tf.reduce_sum(tf.square(err))
        loss = data + 0.5 * tf.nn.l2_loss(w) - 0.1 * tf.reduce_sum(b)
        opt = tf.train.GradientDescentOptimizer(0.1)
        if distributed:
            opt = tf.DistributedOptimizer(opt, loss_reduction=reduction)
        gv = opt.compute_gradients(loss, [w, b])
        train = opt.apply_gradients(gv)
    return g, x, y_, w, b, gv, train


for reduction in ("mean", "sum"):
    # The reference: one process's gradient of the whole batch (no communication).
    g1, x1, y1, w1, b1, gv1, train1 = model(reduction, distributed=False, seed_by_rank=False)
    with tf.Session(graph=g1) as s1:
        s1.run(tf.variables_initializer([w1, b1]))
        ref = s1.run([g for g, _ in gv1], {x1: X, y1: Y})
        s1.run(train1, {x1: X, y1: Y})
        ref_w = s1.run(w1)
    g2, x2, y2, w2, b2, gv2, train2 = model(reduction, distributed=True, seed_by_rank=True)
    with g2.as_default():
        init = tf.global_variables_initializer()
    with tf.Session(graph=g2) as s2:
        s2.run(init)
        expect(np.array_equal(s2.run(w2), W0), f"rank {rank}: variables take rank 0's value at initialization")
        with g2.as_default():
            xs, ys = tf.distributed.shard(X, Y)
        expect(len(xs) in (7 // size, 7 // size + 1), f"shard of {len(xs)} rows")
        got = s2.run([g for g, _ in gv2], {x2: xs, y2: ys})
        for a, b in zip(got, ref):
            diff = float(np.max(np.abs(a - b)))
            expect(diff < 1e-5 * (1 + float(np.max(np.abs(b)))), f"{reduction}: gradient differs by {diff}")
        s2.run(train2, {x2: xs, y2: ys})
        diff = float(np.max(np.abs(s2.run(w2) - ref_w)))
        expect(diff < 1e-6, f"{reduction}: weights after one step differ by {diff}")
        if rank == 0:
            say(f"check {reduction} {diff:.3g}")

# A loss of the weights alone (seed 002's (w + 1)^2): nothing to sum, every rank takes the same step.
with tf.Graph().as_default():
    w = tf.Variable(5.0)
    step = tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1)).minimize(tf.square(w + 1))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(2):
            sess.run(step)
        expect(abs(float(sess.run(w)) - 2.84) < 1e-5, f"weights-only loss: w = {sess.run(w)}")  # 5 - 1.2 - 0.96

# A printed metric made global: the weighted mean of per-rank values.
with tf.Graph().as_default():
    mean = tf.distributed.allreduce(float(rank), weight=rank + 1)
    expected = sum(r * (r + 1) for r in range(size)) / sum(r + 1 for r in range(size))
    expect(abs(mean - expected) < 1e-12, f"allreduce gave {mean}, expected {expected}")
    total = tf.distributed.allreduce(np.array([1.0, 2.0]), average=False)
    expect(np.allclose(total, [size, 2 * size]), f"allreduce sum gave {total}")

# Saver writes on rank 0 only, and everyone can restore (rank 0 reads and broadcasts).
with tf.Graph().as_default():
    v = tf.Variable(np.arange(4, dtype=np.float32) + rank)
    step = tf.train.get_or_create_global_step()
    opt = tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1))
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = saver.save(sess, os.path.join(out_dir, "model.ckpt"), global_step=step)
        expect(sorted(os.listdir(out_dir)) == ["checkpoint", "model.ckpt-0"], f"files {os.listdir(out_dir)}")
        sess.run(tf.assign(v, np.full(4, -1.0, np.float32)))
        saver.restore(sess, tf.train.latest_checkpoint(out_dir))
        expect(np.array_equal(sess.run(v), np.arange(4, dtype=np.float32)), "restored rank 0's values")
if rank == 0:
    say(f"check saver {path}")

# Horovod's explicit broadcast, after ranks have drifted apart on purpose.
with tf.Graph().as_default():
    v = tf.Variable(np.zeros(3, np.float32))
    tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1))
    bcast = tf.distributed.broadcast_global_variables(0)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(tf.assign(v, np.full(3, float(rank + 1), np.float32)))
        sess.run(bcast)
        expect(np.array_equal(sess.run(v), np.ones(3, np.float32)), f"rank {rank}: broadcast gave {sess.run(v)}")
# Summaries: rank 0 alone writes the event file.
with tf.Graph().as_default():
    tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1))
    s = tf.summary.scalar("rank", tf.constant(float(rank)))
    tb_dir = os.path.join(out_dir, "tb")
    with tf.Session() as sess:
        writer = tf.summary.FileWriter(tb_dir)
        writer.add_summary(sess.run(s), 0)
        writer.close()
    tf.distributed.allreduce(0.0)          # every rank has written (or not) before rank 0 looks
    if rank == 0:
        files = os.listdir(tb_dir)
        expect(len(files) == 1 and files[0].startswith("events.out.tfevents"), f"event files {files}")
        say(f"check summaries {len(files)}")

say(f"done rank {rank}")
