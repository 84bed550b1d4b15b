# A word-level LSTM language model trained with tf.nn.sampled_softmax_loss,
# in the TF 1.15 style of the large-vocabulary tutorials: word ids, an
# embedding, tf.nn.dynamic_rnn over an LSTMCell, the last output predicting the
# next word; training on a sampled softmax (the output weights stored
# [vocabulary, hidden] as sampled_softmax_loss wants them), evaluation on the
# full softmax.  The text is generated here (a Zipfian word stream with a
# repeated-bigram structure).  The negative classes are drawn with numpy from
# TF1's log-uniform distribution and passed as sampled_values, with their
# expected counts, so both frameworks train on the same draws; the weights
# start from seeded numpy arrays.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 200))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
if DISTRIBUTED and tf.distributed.rank() != 0:
    print = lambda *args, **kwargs: None  # noqa: E731  (rank 0 prints)

VOCAB, EMB, HIDDEN, CONTEXT, BATCH, NUM_SAMPLED = 200, 16, 32, 6, 32, 16

rng = np.random.RandomState(0)
zipf = 1.0 / np.arange(1, VOCAB + 1)
stream = [0]
for _ in range(4000):
    # a word follows its predecessor's partner half of the time, else a Zipfian draw
    stream.append((stream[-1] * 7 + 3) % VOCAB if rng.rand() < 0.5 else rng.choice(VOCAB, p=zipf / zipf.sum()))
stream = np.array(stream, np.int32)


def batch(step, size=BATCH):
    starts = (step * 131 + np.arange(size) * 37) % (len(stream) - CONTEXT - 1)
    x = np.stack([stream[s:s + CONTEXT] for s in starts])
    y = stream[starts + CONTEXT].reshape(-1, 1).astype(np.int64)
    return x, y


def log_uniform_sample(sampler, labels):
    """TF1's log_uniform_candidate_sampler(unique=True) with numpy: classes and expected counts."""
    picked, tries = [], 0
    while len(picked) < NUM_SAMPLED:
        k = int(np.exp(sampler.rand() * np.log(VOCAB + 1))) - 1
        tries += 1
        if k not in picked:
            picked.append(k)

    def expected(c):
        p = np.log((c + 2.0) / (c + 1.0)) / np.log(VOCAB + 1.0)
        return (p * NUM_SAMPLED if tries == NUM_SAMPLED else -np.expm1(tries * np.log1p(-p))).astype(np.float32)

    picked = np.array(picked, np.int64)
    return picked, expected(labels.astype(np.float64)), expected(picked.astype(np.float64))


init = np.random.RandomState(1)
words = tf.placeholder(tf.int32, [None, CONTEXT])
next_word = tf.placeholder(tf.int64, [None, 1])
sampled = tf.placeholder(tf.int64, [NUM_SAMPLED])
true_expected = tf.placeholder(tf.float32, [None, 1])
sampled_expected = tf.placeholder(tf.float32, [NUM_SAMPLED])

embedding = tf.Variable(init.uniform(-0.1, 0.1, (VOCAB, EMB)).astype(np.float32), name="embedding")
with tf.variable_scope("lstm", initializer=tf.constant_initializer(
        init.uniform(-0.1, 0.1, (EMB + HIDDEN, 4 * HIDDEN)).astype(np.float32))):
    cell = tf.nn.rnn_cell.LSTMCell(HIDDEN)
    outputs, state = tf.nn.dynamic_rnn(cell, tf.nn.embedding_lookup(embedding, words), dtype=tf.float32)
last = outputs[:, -1, :]
softmax_w = tf.Variable(init.uniform(-0.1, 0.1, (VOCAB, HIDDEN)).astype(np.float32), name="softmax_w")
softmax_b = tf.Variable(np.zeros(VOCAB, np.float32), name="softmax_b")

loss = tf.reduce_mean(tf.nn.sampled_softmax_loss(
    weights=softmax_w, biases=softmax_b, labels=next_word, inputs=last, num_sampled=NUM_SAMPLED,
    num_classes=VOCAB, sampled_values=(sampled, true_expected, sampled_expected)))
full_logits = tf.matmul(last, softmax_w, transpose_b=True) + softmax_b
full_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=next_word[:, 0],
                                                                          logits=full_logits))
optimizer = tf.train.AdagradOptimizer(0.3)
if DISTRIBUTED:
    optimizer = tf.DistributedOptimizer(optimizer)
train_op = optimizer.minimize(loss)

sampler = np.random.RandomState(2)
eval_x, eval_y = batch(999, 256)
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    print("initial full loss %.5f" % sess.run(full_loss, {words: eval_x, next_word: eval_y}))
    for step in range(STEPS):
        x, y = batch(step)
        s, te, se = log_uniform_sample(sampler, y)     # one draw for the global batch
        if DISTRIBUTED:
            x, y, te = tf.distributed.shard(x, y, te)
        _, l = sess.run([train_op, loss], {words: x, next_word: y, sampled: s, true_expected: te,
                                           sampled_expected: se})
        if step % 20 == 0:
            print("step %d sampled loss %.5f" % (step, l))
    full = sess.run(full_loss, {words: eval_x, next_word: eval_y})
    print("final full loss %.5f perplexity %.3f" % (full, np.exp(full)))
    if os.environ.get("OUT") and (not DISTRIBUTED or tf.distributed.rank() == 0):
        np.savez(os.environ["OUT"], **{v.op.name: sess.run(v) for v in tf.trainable_variables()})
