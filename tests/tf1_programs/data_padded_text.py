# Variable-length sequences through tf.data, as TF 1.x text-classification
# programs fed them: token ids stored padded with their lengths, a map that
# cuts each row back to its real length, a filter that drops sequences too
# short to judge, padded_batch that pads each batch to its longest member,
# then an embedding lookup averaged over the real tokens (a mask from the
# padding id 0) and a logistic output.  Data parallel: each worker takes
# its shard of the sequences and a part of the global batch.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

EPOCHS = int(os.environ.get("EPOCHS", 3))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
VOCAB, DIM, MAX_LEN, GLOBAL_BATCH = 30, 6, 12, 8

rs = np.random.RandomState(9)
lengths = rs.randint(1, MAX_LEN + 1, size=120).astype(np.int32)
tokens = np.zeros((120, MAX_LEN), np.int32)
for i, n in enumerate(lengths):
    tokens[i, :n] = rs.randint(1, VOCAB, size=n)
# A sequence is "positive" when it holds more high ids (>= 15) than low ones.
positive = np.array([(tokens[i, :n] >= 15).sum() > (tokens[i, :n] < 15).sum() for i, n in enumerate(lengths)],
                    np.float32)

dataset = tf.data.Dataset.from_tensor_slices((tokens, lengths, positive))
dataset = dataset.map(lambda ids, n, label: (ids[:n], label), num_parallel_calls=2)
dataset = dataset.filter(lambda ids, label: tf.size(ids) >= 3)
if DISTRIBUTED:
    dataset = dataset.shard(tf.distributed.size(), tf.distributed.rank())
per_worker = GLOBAL_BATCH // (tf.distributed.size() if DISTRIBUTED else 1)
dataset = dataset.padded_batch(per_worker, padded_shapes=([None], []), drop_remainder=True)
dataset = dataset.repeat(EPOCHS).prefetch(1)
ids, labels = dataset.make_one_shot_iterator().get_next()

embedding = tf.Variable(rs.randn(VOCAB, DIM).astype(np.float32) * 0.3, name="embedding")
out_w = tf.Variable(rs.randn(DIM, 1).astype(np.float32) * 0.3, name="out_w")
out_b = tf.Variable(np.zeros(1, np.float32), name="out_b")
mask = tf.cast(tf.not_equal(ids, 0), tf.float32)
vectors = tf.nn.embedding_lookup(embedding, ids)
mean = tf.reduce_sum(vectors * tf.expand_dims(mask, 2), axis=1) / tf.reduce_sum(mask, axis=1, keepdims=True)
logits = tf.squeeze(tf.matmul(mean, out_w) + out_b, axis=1)
loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
hits = tf.reduce_sum(tf.cast(tf.equal(tf.cast(logits > 0, tf.float32), labels), tf.float32))

optimizer = tf.train.AdamOptimizer(0.05)
if DISTRIBUTED:
    optimizer = tf.DistributedOptimizer(optimizer)
train_op = optimizer.minimize(loss)

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    step, right, seen = 0, 0.0, 0
    while True:
        try:
            _, value, h, n = sess.run([train_op, loss, hits, tf.shape(ids)[0]])
        except tf.errors.OutOfRangeError:
            break
        if DISTRIBUTED:
            value = tf.distributed.allreduce(value, weight=n)
            h, n = tf.distributed.allreduce([h, n], average=False)
        right, seen = right + h, seen + n
        if step % 10 == 0 and (not DISTRIBUTED or tf.distributed.rank() == 0):
            print("step %d loss %.6f" % (step, value))
        step += 1
    if not DISTRIBUTED or tf.distributed.rank() == 0:
        print("steps %d examples %d training accuracy %.4f" % (step, seen, right / seen))
        if os.environ.get("OUT"):
            np.savez(os.environ["OUT"], embedding=sess.run(embedding), out_w=sess.run(out_w), out_b=sess.run(out_b))
