"""Records tests/tf1_reference/ops_extra.json from real TensorFlow (run with /work/tfvenv/bin/python:
``python tests/tf1_reference/record_ops_extra.py > tests/tf1_reference/ops_extra.json``); the numbers
tests/test_compat_v1_ops_extra.py compares distnet.compat.v1 with."""
import json
import numpy as np
import tensorflow.compat.v1 as tf
tf.disable_v2_behavior()
out = {}
a = np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.5]], np.float32)
b = np.array([4.0, -1.0], np.float32)
A, B = tf.constant(a), tf.constant(b)
cl, n = tf.clip_by_global_norm([A, None, B], 2.0)
cl2, n2 = tf.clip_by_global_norm([A, B], 2.0, use_norm=tf.constant(10.0))
cl3, n3 = tf.clip_by_global_norm([A, B], 100.0)
x = tf.placeholder(tf.float64, [2, 3])
ops = {
    "cgn": [cl[0], cl[2], n], "cgn_use": [cl2[0], cl2[1], n2], "cgn_big": [cl3[0], n3],
    "cbn": tf.clip_by_norm(A, 2.0), "cbn_axes": tf.clip_by_norm(A, 2.0, axes=[1]), "cbn_zero": tf.clip_by_norm(tf.zeros([3]), 1.0),
    "lse": tf.reduce_logsumexp(A), "lse_ax": tf.reduce_logsumexp(A, axis=1), "lse_keep": tf.reduce_logsumexp(A, 0, keepdims=True),
    "lse_inf": tf.reduce_logsumexp(tf.constant([-np.inf, -np.inf])),
    "prod": tf.reduce_prod(A), "prod_ax": tf.reduce_prod(A, 1), "prod_ax0": tf.reduce_prod(A, 0, keep_dims=True),
    "lrelu": tf.nn.leaky_relu(A), "lrelu_a": tf.nn.leaky_relu(A, alpha=0.01),
    "tile": tf.tile(A, [2, 2]),
    "split3": tf.split(tf.reshape(tf.range(12.0), [2, 6]), 3, axis=1),
    "splitsz": tf.split(tf.reshape(tf.range(12.0), [6, 2]), [1, -1, 2], 0),
    "topk": tf.nn.top_k(tf.constant([[1.0, 3.0, 3.0, 2.0], [5.0, 4.0, 6.0, 5.0]]), 3),
    "gnd": tf.gather_nd(A, [[1, 0], [0, 2]]), "gnd_rows": tf.gather_nd(A, [[1], [0]]),
    "gnd3": tf.gather_nd(tf.reshape(tf.range(24.0), [2, 3, 4]), [[[0, 1], [1, 2]]]),
    "sqd": tf.squared_difference(A, B[:1]),
    "l2n": tf.nn.l2_normalize(A, axis=1), "l2n_dim": tf.nn.l2_normalize(A, dim=0), "l2n_all": tf.nn.l2_normalize(A),
    "l2n_eps": tf.nn.l2_normalize(tf.constant([1e-4, 0.0]), epsilon=1e-6),
    "argmax_old": tf.arg_max(A, 1), "argmin_old": tf.arg_min(A, 0),
}
# gradients (float64)
xv = np.array([[1.0, -2.0, 0.0], [0.5, 0.0, -1.5]])
grads = {
    "g_prod": tf.gradients(tf.reduce_prod(x, 1), x)[0],
    "g_prod_all": tf.gradients(tf.reduce_prod(x + 1.0), x)[0],
    "g_lrelu": tf.gradients(tf.nn.leaky_relu(x), x)[0],
    "g_lse": tf.gradients(tf.reduce_logsumexp(x, 1), x)[0],
    "g_cbn": tf.gradients(tf.reduce_sum(tf.clip_by_norm(x, 1.0) * tf.constant(np.arange(6.0).reshape(2, 3))), x)[0],
    "g_l2n": tf.gradients(tf.reduce_sum(tf.nn.l2_normalize(x, 1) * tf.constant(np.arange(6.0).reshape(2, 3))), x)[0],
}
# Adadelta: 3 steps on f(w) = sum((w - t)^2 * c)
w = tf.Variable(np.array([1.0, -2.0, 0.5], np.float32))
loss = tf.reduce_sum(tf.square(w - tf.constant([0.3, 0.1, -0.2])) * tf.constant([1.0, 2.0, 3.0]))
step = tf.train.AdadeltaOptimizer().minimize(loss)
w2 = tf.Variable(np.array([1.0, -2.0, 0.5], np.float32))
loss2 = tf.reduce_sum(tf.square(w2 - tf.constant([0.3, 0.1, -0.2])) * tf.constant([1.0, 2.0, 3.0]))
step2 = tf.train.AdadeltaOptimizer(learning_rate=1.0, rho=0.9, epsilon=1e-6).minimize(loss2)
with tf.Session() as s:
    s.run(tf.global_variables_initializer())
    for k, v in ops.items():
        r = s.run(v)
        out[k] = [np.asarray(e).tolist() for e in r] if isinstance(r, (list, tuple)) else np.asarray(r).tolist()
    for k, v in grads.items():
        out[k] = s.run(v, {x: xv}).tolist()
    ws = []
    for i in range(3):
        s.run(step)
        ws.append(s.run(w).tolist())
    out["adadelta_default"] = ws
    ws = []
    for i in range(3):
        s.run(step2)
        ws.append(s.run(w2).tolist())
    out["adadelta_custom"] = ws
print(json.dumps(out))
