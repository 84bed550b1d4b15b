"""Record known values of batch normalization, average pooling and transposed
convolution from real TensorFlow 2.21 (``tf.compat.v1``), for the unit tests.

Run with an interpreter that has TensorFlow (never one of distnet's
dependencies)::

    TF_USE_LEGACY_KERAS=1 /path/to/tf-venv/bin/python tests/tf_reference/record_nn.py

It writes ``tests/tf_reference/nn_values.json``: every input is drawn here
from ``numpy.random.RandomState(seed)`` exactly as the tests draw it, and the
outputs and gradients (of ``sum(y * r)``, ``r`` drawn the same way) are
stored as float32 lists.
"""
import json
import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

v1 = tf.compat.v1
v1.disable_v2_behavior()


def draw(seed, *shape, scale=1.0, shift=0.0):
    return (np.random.RandomState(seed).randn(*shape) * scale + shift).astype(np.float32)


def lists(d):
    return {k: np.asarray(v, np.float32).tolist() for k, v in d.items()}


def run(build, then=()):
    """Fetch what ``build()`` returns in one run, then the names in ``then`` in a second run."""
    v1.reset_default_graph()
    fetch = build()
    with v1.Session() as s:
        s.run(v1.global_variables_initializer())
        names = [k for k in fetch if k not in then]
        res = dict(zip(names, s.run([fetch[k] for k in names])))
        if then:
            res.update(zip(then, s.run([fetch[k] for k in then])))
    return res


out = {}

# -- batch normalization ------------------------------------------------------------
for case, shape in (("bn4", (4, 3, 3, 2)), ("bn2", (6, 3))):
    x = draw(1, *shape, scale=2.0, shift=1.0)
    r = draw(2, *shape)
    c = shape[-1]
    gamma, beta = draw(3, c) * 0.5 + 1.0, draw(4, c)

    def layer():
        xt = tf.constant(x)
        y = v1.layers.batch_normalization(xt, training=True, momentum=0.9, epsilon=1e-3,
                                          gamma_initializer=v1.constant_initializer(gamma),
                                          beta_initializer=v1.constant_initializer(beta))
        g = v1.get_default_graph()
        gv = {v.op.name.split("/")[-1]: v for v in v1.global_variables()}
        with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
            loss = tf.reduce_sum(y * r)
        dx, dg, db = tf.gradients(loss, [xt, gv["gamma"], gv["beta"]])
        with tf.control_dependencies([loss]):
            mm, mv = tf.identity(gv["moving_mean"]), tf.identity(gv["moving_variance"])
        y_inf = v1.layers.batch_normalization(xt, training=False, momentum=0.9, epsilon=1e-3, name="batch_normalization",
                                              reuse=True)
        del g
        return {"y": y, "dx": dx, "dgamma": dg, "dbeta": db, "moving_mean": mm, "moving_variance": mv,
                "y_inference_after_one_update": y_inf}

    res = run(layer, then=("y_inference_after_one_update",))
    out[case] = {"shape": list(shape), "layer": lists(res)}

    def by_hand():
        xt = tf.constant(x)
        axes = list(range(len(shape) - 1))
        m, v = v1.nn.moments(xt, axes)
        mk, vk = v1.nn.moments(xt, axes, keep_dims=True)
        y = v1.nn.batch_normalization(xt, m, v, tf.constant(beta), tf.constant(gamma), 1e-3)
        dx = tf.gradients(tf.reduce_sum(y * r), [xt])[0]
        return {"mean": m, "variance": v, "mean_keep": mk, "variance_keep": vk, "y": y, "dx": dx}

    out[case]["nn"] = lists(run(by_hand))

    if len(shape) == 4:
        def fused():
            xt = tf.constant(x)
            y, m, v = v1.nn.fused_batch_norm(xt, tf.constant(gamma), tf.constant(beta), epsilon=1e-3,
                                             is_training=True)
            yi, _, _ = v1.nn.fused_batch_norm(xt, tf.constant(gamma), tf.constant(beta), mean=m, variance=v,
                                              epsilon=1e-3, is_training=False)
            dx = tf.gradients(tf.reduce_sum(y * r), [xt])[0]
            return {"y": y, "mean": m, "variance": v, "dx": dx, "y_inference": yi}

        out[case]["fused"] = lists(run(fused))

# Which batch variance feeds the moving variance: TF's fused kernel (4-D, axis 1 or 3) the unbiased one.
choice = []
xv = draw(10, 4, 3, 5, 2, scale=2.0, shift=1.0)
for axis, fused in ((2, None), (3, False), (1, None), (-1, None)):
    def moving():
        y = v1.layers.batch_normalization(tf.constant(xv), axis=axis, training=True, momentum=0.5, fused=fused)
        with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
            y = tf.identity(y)
        with tf.control_dependencies([y]):
            return {"moving_variance": tf.identity([v for v in v1.global_variables()
                                                     if "moving_variance" in v.name][0])}

    choice.append({"axis": axis, "fused": fused, **lists(run(moving))})
out["bn_moving_variance_choice"] = choice

# -- average pooling ----------------------------------------------------------------
pools = []
for shape, k, s, pad in (((2, 5, 5, 3), 2, 2, "SAME"), ((2, 5, 5, 3), 2, 2, "VALID"),
                         ((1, 6, 5, 2), 3, 1, "SAME"), ((2, 7, 6, 1), 3, 2, "SAME"),
                         ((2, 7, 6, 1), (3, 2), (2, 1), "VALID")):
    x = draw(5, *shape)

    def pool():
        xt = tf.constant(x)
        kk = [k, k] if isinstance(k, int) else list(k)
        ss = [s, s] if isinstance(s, int) else list(s)
        y = v1.nn.avg_pool(xt, [1] + kk + [1], [1] + ss + [1], pad)
        r = draw(6, *[int(d) for d in y.shape])
        return {"y": y, "dx": tf.gradients(tf.reduce_sum(y * r), [xt])[0]}

    pools.append({"shape": list(shape), "ksize": k, "strides": s, "padding": pad, **lists(run(pool))})
out["avg_pool"] = pools

# -- transposed convolution -------------------------------------------------------------
convs = []
for in_shape, fshape, out_shape, s, pad in (
        ((2, 3, 3, 4), (3, 3, 2, 4), (2, 6, 6, 2), 2, "SAME"),
        ((2, 3, 3, 4), (3, 3, 2, 4), (2, 5, 5, 2), 2, "SAME"),
        ((2, 3, 3, 4), (3, 3, 2, 4), (2, 7, 7, 2), 2, "VALID"),
        ((1, 4, 5, 3), (2, 3, 2, 3), (1, 4, 5, 2), 1, "SAME"),
        ((1, 4, 5, 3), (5, 5, 1, 3), (1, 8, 10, 1), 2, "SAME")):
    x, w = draw(7, *in_shape), draw(8, *fshape)
    r = draw(9, *out_shape)

    def deconv():
        xt, wt = tf.constant(x), tf.constant(w)
        y = v1.nn.conv2d_transpose(xt, wt, list(out_shape), [1, s, s, 1], pad)
        dx, dw = tf.gradients(tf.reduce_sum(y * r), [xt, wt])
        return {"y": y, "dx": dx, "dw": dw}

    convs.append({"input_shape": list(in_shape), "filter_shape": list(fshape), "output_shape": list(out_shape),
                  "strides": s, "padding": pad, **lists(run(deconv))})
out["conv2d_transpose"] = convs

# tf.layers.conv2d_transpose's output size (Keras' deconv_output_length).
sizes = []
for h, k, s, pad in ((7, 3, 2, "same"), (7, 3, 2, "valid"), (4, 5, 2, "same"), (4, 2, 2, "valid"), (5, 4, 3, "valid")):
    v1.reset_default_graph()
    y = v1.layers.conv2d_transpose(tf.zeros([1, h, h, 1]), 2, k, s, padding=pad)
    sizes.append([h, k, s, pad, int(y.shape[1])])
out["conv2d_transpose_layer_sizes"] = sizes
out["recorded_with"] = f"tensorflow {tf.__version__}"

Path(__file__).with_name("nn_values.json").write_text(json.dumps(out) + "\n")
print("wrote", Path(__file__).with_name("nn_values.json"))
