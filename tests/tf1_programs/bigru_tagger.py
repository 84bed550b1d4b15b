# A bidirectional GRU sequence tagger in the TF 1.15 style: padded batches of
# variable-length token sequences with their lengths, word embeddings,
# tf.nn.bidirectional_dynamic_rnn over two GRUCells with sequence_length, the
# forward and backward outputs concatenated, a per-token projection, a masked
# softmax cross-entropy (padding does not count), Adam, and token accuracy.
# The task is generated here: a token's tag is its left neighbour's class for
# large tokens, its right neighbour's for small ones (so both directions count).  Weights start from
# seeded numpy arrays (a custom initializer on the model's variable scope).
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 200))
VOCAB, TAGS, MAX_LEN, EMB, HIDDEN, BATCH = 9, 3, 10, 8, 16, 24


def make_data(n, seed):
    rng = np.random.RandomState(seed)
    lengths = rng.randint(3, MAX_LEN + 1, n).astype(np.int32)
    tokens = np.zeros((n, MAX_LEN), np.int32)
    tags = np.zeros((n, MAX_LEN), np.int32)
    for i, length in enumerate(lengths):
        seq = rng.randint(1, VOCAB, length)
        tokens[i, :length] = seq
        left = np.concatenate([[0], seq[:-1]])
        right = np.concatenate([seq[1:], [0]])
        tags[i, :length] = np.where(seq > 4, left, right) % TAGS
    mask = (np.arange(MAX_LEN)[None, :] < lengths[:, None]).astype(np.float32)
    return tokens, tags, lengths, mask


train = make_data(480, 1)
test = make_data(120, 2)


class NumpyInit(object):
    def __init__(self, seed):
        self.rng = np.random.RandomState(seed)

    def __call__(self, shape, dtype=None, partition_info=None):
        return tf.constant(self.rng.uniform(-0.3, 0.3, shape).astype(np.float32))


words = tf.placeholder(tf.int32, [None, MAX_LEN], name="words")
labels = tf.placeholder(tf.int32, [None, MAX_LEN], name="labels")
seq_len = tf.placeholder(tf.int32, [None], name="sequence_length")
mask = tf.placeholder(tf.float32, [None, MAX_LEN], name="mask")

with tf.variable_scope("tagger", initializer=NumpyInit(3)):
    embeddings = tf.get_variable("embeddings", [VOCAB, EMB])
    embedded = tf.nn.embedding_lookup(embeddings, words)
    cell_fw = tf.nn.rnn_cell.GRUCell(HIDDEN)
    cell_bw = tf.nn.rnn_cell.GRUCell(HIDDEN)
    (out_fw, out_bw), _ = tf.nn.bidirectional_dynamic_rnn(cell_fw, cell_bw, embedded, sequence_length=seq_len,
                                                          dtype=tf.float32)
    output = tf.concat([out_fw, out_bw], axis=-1)
    w = tf.get_variable("proj_w", [2 * HIDDEN, TAGS])
    b = tf.get_variable("proj_b", [TAGS], initializer=tf.zeros_initializer())
    logits = tf.reshape(tf.matmul(tf.reshape(output, [-1, 2 * HIDDEN]), w) + b, [-1, MAX_LEN, TAGS])

xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
loss = tf.reduce_sum(xent * mask) / tf.reduce_sum(mask)
train_op = tf.train.AdamOptimizer(0.02).minimize(loss)
predicted = tf.cast(tf.argmax(logits, axis=-1), tf.int32)
accuracy = tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32) * mask) / tf.reduce_sum(mask)


def feed(data, start=None):
    tokens, tags, lengths, m = data
    if start is not None:
        idx = np.arange(start, start + BATCH) % len(tokens)
        tokens, tags, lengths, m = tokens[idx], tags[idx], lengths[idx], m[idx]
    return {words: tokens, labels: tags, seq_len: lengths, mask: m}


with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        _, l = sess.run([train_op, loss], feed(train, step * BATCH))
        if step % 20 == 0:
            print("step %d loss %.5f" % (step, l))
    l, acc = sess.run([loss, accuracy], feed(test))
    print("test loss %.5f accuracy %.4f" % (l, acc))
    # the padding of the outputs is zero, as TF1's dynamic_rnn gives it
    fw, bw = sess.run([out_fw, out_bw], feed(test))
    print("padding max abs %.6f" % max(np.abs(fw * (1 - test[3][..., None])).max(),
                                       np.abs(bw * (1 - test[3][..., None])).max()))
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], **{v.op.name: sess.run(v) for v in tf.trainable_variables()})
