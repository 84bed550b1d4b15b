"""Run under mpiexec by tests/test_compat_v1.py: the TF1 DistributedOptimizer
on the package's strategies, against one process on the whole global batch.

usage: compat_distributed_strategies.py OUT_DIR

Checks, on uneven shards (7 rows):

* ``replicated`` / ``zero1`` (``sharded=True``) / ``overlap`` / ``float16``:
  Adam for 4 steps gives the one-process weights (float16 to its rounding);
  under ZeRO-1 ``get_slot`` and the Saver's checkpoint hold full slots;
* the global gradient: a global-norm clip written with TF ops between
  ``compute_gradients`` and ``apply_gradients`` clips the summed gradient,
  so N ranks take the one-process clipped step (also under ZeRO-1);
* the finite-step guard: a NaN fed on one rank skips that step on every rank
  (weights and ``global_step`` unchanged), the next step applies.

Prints ``check <name> <max abs difference>`` (rank 0) and ``done rank <r>``.
"""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import expect, say, script_args  # noqa: E402

import distnet.compat.v1 as tf  # noqa: E402

out_dir = script_args()[0]
rank, size = tf.distributed.rank(), tf.distributed.size()
rng = np.random.RandomState(1)
X = rng.rand(7, 3).astype(np.float32)
Y = rng.rand(7, 2).astype(np.float32)
W0 = rng.randn(3, 2).astype(np.float32)


def program(distributed: dict | None, clip: float | None = None):
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [None, 3])
        y_ = tf.placeholder(tf.float32, [None, 2])
        w = tf.Variable(W0)
        b = tf.Variable(tf.zeros([2]))
        loss = tf.reduce_mean(tf.square(tf.matmul(x, w) + b - y_)) + 0.01 * tf.nn.l2_loss(w)
        step = tf.train.get_or_create_global_step()
        opt = tf.train.AdamOptimizer(0.05)
        if distributed is not None:
            opt = tf.DistributedOptimizer(opt, **distributed)
        gv = opt.compute_gradients(loss, [w, b])
        if clip is not None:   # tf.clip_by_global_norm, written out
            norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(gr)) for gr, _ in gv]))
            scale = clip / tf.maximum(norm, clip)
            gv = [(gr * scale, v) for gr, v in gv]
        train = opt.apply_gradients(gv, global_step=step)
        init = tf.global_variables_initializer()
    return g, x, y_, w, b, step, opt, gv, train, init


def train(distributed, clip=None, steps=4, feed_nan_at=None):
    g, x, y_, w, b, step, opt, gv, train_op, init = program(distributed, clip)
    with tf.Session(graph=g) as sess:
        sess.run(init)
        xs, ys = (tf.distributed.shard(X, Y) if distributed is not None else (X, Y))
        grads0 = sess.run([gr for gr, _ in gv], {x: xs, y_: ys})
        for k in range(steps):
            xk = xs.copy()
            if k == feed_nan_at and rank == size - 1:
                xk[0, 0] = np.nan
            sess.run(train_op, {x: xk, y_: ys})
        slots = {name: sess.run(opt.get_slot(w, name)) for name in ("m", "v")}
        out = {"w": sess.run(w), "b": sess.run(b), "step": int(sess.run(step)), "grads0": grads0, **slots}
        if distributed is not None and distributed.get("sharded"):
            saver = tf.train.Saver()
            out["path"] = saver.save(sess, os.path.join(out_dir, "zero1.ckpt"), global_step=step)
    return out


def diff(a: dict, b: dict, keys=("w", "b", "m", "v")) -> float:
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - b[k]))) for k in keys)


one = train(None)
for label, options, tol in (("replicated", {}, 2e-6), ("zero1", {"sharded": True}, 2e-6),
                            ("overlap", {"overlap": True, "bucket_bytes": 16}, 2e-6),
                            ("float16", {"compression": "float16"}, 3e-2)):
    got = train(options)
    d = diff(got, one)
    expect(d <= tol, f"{label}: differs from one process by {d}")
    expect(got["step"] == 4, f"{label}: global_step {got['step']}")
    gd = max(float(np.max(np.abs(a - b))) for a, b in zip(got["grads0"], one["grads0"]))
    expect(gd <= (2e-3 if label == "float16" else 1e-6), f"{label}: compute_gradients is not the global gradient ({gd})")
    expect(got["m"].shape == W0.shape, f"{label}: get_slot shape {got['m'].shape}")
    if label == "zero1":
        import h5py

        with h5py.File(got["path"], "r") as f:
            shapes = {k: f["optimizer"]["m"][k].shape for k in f["optimizer"]["m"]}
        expect(sorted(shapes.values()) == [(2,), (3, 2)], f"zero1: checkpoint slots {shapes}")
    if rank == 0:
        say(f"check {label} {d:.3g}")

# The global gradient, clipped between compute_gradients and apply_gradients.
one_clip = train(None, clip=0.05)
expect(diff(one_clip, one) > 1e-3, "the clip must act for this check to mean anything")
for label, options in (("replicated", {}), ("zero1", {"sharded": True})):
    d = diff(train(options, clip=0.05), one_clip)
    expect(d <= 2e-6, f"clip {label}: differs from one process by {d}")
    if rank == 0:
        say(f"check clip_{label} {d:.3g}")

# The finite-step guard: a NaN on one rank at step 1 is skipped by every rank.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for label, options in (("replicated", {}), ("zero1", {"sharded": True})):
        got = train(options, steps=4, feed_nan_at=1)
        want = train(options, steps=3)
        expect(got["step"] == 3, f"guard {label}: global_step {got['step']} after a skipped step")
        expect(all(np.isfinite(got[k]).all() for k in ("w", "b", "m", "v")), f"guard {label}: NaN applied")
        d = diff(got, want)
        expect(d == 0.0, f"guard {label}: differs from the run without the bad step by {d}")
        if rank == 0:
            say(f"check guard_{label} {d:.3g}")
say(f"done rank {rank}")
