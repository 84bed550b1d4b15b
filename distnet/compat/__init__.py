"""Front ends that run programs written for other frameworks on distnet.

``import distnet.compat.v1 as tf`` runs TensorFlow 1.x graph-mode programs
(placeholders, ``Session.run``, ``tf.train.*``) on distnet's ops and autodiff;
see docs/tf1.md.
"""
