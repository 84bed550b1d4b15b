# Seed 000's snippets (../shared/seeds/000) as one program, with the import line
# changed.  (The seed's `tf.nn.l2_loss(weights).eval()()` calls the printed value,
# an error in TF1 too; here it is `.eval()`.)
import distnet.compat.v1 as tf

# Variables hold their values in the session; run() of an op returns None.
v = tf.Variable(3.0)
init = tf.global_variables_initializer()
with tf.Session() as sess:
    print('init', sess.run(init))
    print('v', sess.run(v))
    print('assign', sess.run(tf.assign(v, v + 1.0)))
    print('v', sess.run(v))

x = tf.constant([[1, 2, 3], [4, 5, 6]])
with tf.Session() as sess:
    print('reduce_sum axis0', sess.run(tf.reduce_sum(x, reduction_indices=[0])))
    print('reduce_sum axis1', sess.run(tf.reduce_sum(x, reduction_indices=[1])))
    print('reduce_sum all', sess.run(tf.reduce_sum(x)))
    print('reduce_sum keep_dims', sess.run(tf.reduce_sum(x, 1, keep_dims=True)).tolist())
    print('reduce_mean all', sess.run(tf.reduce_mean(x)))
    print('reduce_mean float', sess.run(tf.reduce_mean(tf.to_float(x), 0)))
    print('l2_loss', sess.run(tf.nn.l2_loss(tf.constant([1.0, 2.0, 3.0]))))

a = tf.Variable(tf.zeros([2]), name='a')
b = tf.Variable(tf.zeros([2]), trainable=False, name='b')
print('trainable', [t.name for t in tf.trainable_variables()])

weights = tf.constant([[1, 2, 3], [4, 5, 6]], dtype=tf.float32)
sess = tf.InteractiveSession()
# 计算的是所有元素的平方和再除以2
print('l2_loss', tf.nn.l2_loss(weights).eval())
# 等价于
print('l2_regularizer', tf.contrib.layers.l2_regularizer(1.)(weights).eval())
# output: 45.5
sess.close()
