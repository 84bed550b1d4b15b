"""A float64 gradient check for distnet.compat.v1 graphs: ``tf.gradients`` of a
random projection of an op's output against central differences of the same
graph run with the inputs moved by +-eps (the graph counterpart of
distnet.gradcheck.check_gradients)."""
from __future__ import annotations

import numpy as np

import distnet.compat.v1 as tf


def check_graph_gradients(build, arrays, eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7, seed: int = 0):
    """``build(*placeholders) -> tensor``; arrays are float64 inputs. Raises AssertionError if wrong."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    graph = tf.Graph()
    with graph.as_default():
        phs = [tf.placeholder(tf.float64, a.shape) for a in arrays]
        out = build(*phs)
        with tf.Session() as probe:
            shape = np.shape(probe.run(out, dict(zip(phs, arrays))))
        proj = np.random.RandomState(seed).uniform(-1, 1, size=shape)
        loss = tf.reduce_sum(out * tf.constant(proj))
        grads = tf.gradients(loss, phs)
        with tf.Session() as sess:
            feed = dict(zip(phs, arrays))
            analytic = sess.run([g if g is not None else tf.zeros_like(p) for g, p in zip(grads, phs)], feed)
            for k, a in enumerate(arrays):
                num = np.zeros_like(a)
                flat = a.reshape(-1)
                for i in range(flat.size):
                    saved = flat[i]
                    flat[i] = saved + eps
                    up = sess.run(loss, {**feed, phs[k]: a})
                    flat[i] = saved - eps
                    down = sess.run(loss, {**feed, phs[k]: a})
                    flat[i] = saved
                    num.reshape(-1)[i] = (up - down) / (2 * eps)
                np.testing.assert_allclose(analytic[k], num, rtol=rtol, atol=atol,
                                           err_msg=f"gradient of input {k}")
    return analytic
