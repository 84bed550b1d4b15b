# A character-level RNN language model as TF 1.x tutorials wrote it: the text
# turned into integer ids, an embedding matrix looked up with
# tf.nn.embedding_lookup, a MultiRNNCell of BasicLSTMCells unrolled by
# tf.nn.dynamic_rnn from cell.zero_state, a softmax projection of every output,
# tf.contrib.seq2seq.sequence_loss, Adam, and perplexity.  The text is
# generated here (sentences from a small grammar); the weights start from
# seeded numpy arrays (a custom initializer on the model's variable scope).
import os

import numpy as np
import tensorflow as tf

STEPS = int(os.environ.get("STEPS", 300))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
if DISTRIBUTED and tf.distributed.rank() != 0:
    print = lambda *args, **kwargs: None  # noqa: E731  (rank 0 prints)

rng = np.random.RandomState(0)
subjects, verbs, objects = ["the cat", "a dog", "my bird"], ["sees", "eats", "likes"], ["fish.", "a bone.", "seeds."]
text = " ".join("%s %s %s" % (rng.choice(subjects), rng.choice(verbs), rng.choice(objects)) for _ in range(150))
chars = sorted(set(text))
vocab_size = len(chars)
char_to_ix = {c: i for i, c in enumerate(chars)}
data = np.array([char_to_ix[c] for c in text], dtype=np.int32)
print("data has %d characters, %d unique" % (len(data), vocab_size))

batch_size = 16
num_steps = 20
hidden_size = 32
num_layers = 2
embedding_size = 16


def get_batch(step):
    """batch_size windows of num_steps characters and the characters that follow them."""
    span = len(data) - num_steps - 1
    starts = (step * 97 + np.arange(batch_size) * (span // batch_size)) % span
    x = np.stack([data[s:s + num_steps] for s in starts])
    y = np.stack([data[s + 1:s + num_steps + 1] for s in starts])
    return x, y


class NumpyInit(object):
    """The model's initial weights: uniform(-0.1, 0.1) from a seeded numpy generator."""

    def __init__(self, seed):
        self.rng = np.random.RandomState(seed)

    def __call__(self, shape, dtype=None, partition_info=None):
        return tf.constant(self.rng.uniform(-0.1, 0.1, shape).astype(np.float32))


inputs = tf.placeholder(tf.int32, [None, num_steps], name="inputs")
targets = tf.placeholder(tf.int32, [None, num_steps], name="targets")

with tf.variable_scope("model", initializer=NumpyInit(1)):
    embedding = tf.get_variable("embedding", [vocab_size, embedding_size])
    emb = tf.nn.embedding_lookup(embedding, inputs)
    cells = [tf.nn.rnn_cell.BasicLSTMCell(hidden_size, forget_bias=1.0) for _ in range(num_layers)]
    cell = tf.nn.rnn_cell.MultiRNNCell(cells, state_is_tuple=True)
    initial_state = cell.zero_state(tf.shape(inputs)[0], tf.float32)
    outputs, final_state = tf.nn.dynamic_rnn(cell, emb, initial_state=initial_state)
    softmax_w = tf.get_variable("softmax_w", [hidden_size, vocab_size])
    softmax_b = tf.get_variable("softmax_b", [vocab_size], initializer=tf.zeros_initializer())
    logits = tf.reshape(tf.matmul(tf.reshape(outputs, [-1, hidden_size]), softmax_w) + softmax_b,
                        [-1, num_steps, vocab_size])

loss = tf.contrib.seq2seq.sequence_loss(logits, targets, tf.ones_like(tf.cast(targets, tf.float32)),
                                        average_across_timesteps=True, average_across_batch=True)
optimizer = tf.train.AdamOptimizer(0.01)
if DISTRIBUTED:
    optimizer = tf.DistributedOptimizer(optimizer)
train_op = optimizer.minimize(loss)

eval_x, eval_y = get_batch(1000)
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        x, y = get_batch(step)
        if DISTRIBUTED:
            x, y = tf.distributed.shard(x, y)
        _, cost = sess.run([train_op, loss], feed_dict={inputs: x, targets: y})
        if step % 10 == 0:
            print("step %d loss %.5f" % (step, cost))
    cost = sess.run(loss, feed_dict={inputs: eval_x, targets: eval_y})
    print("eval perplexity %.4f" % np.exp(cost))
    # the last layer's final state on the evaluation batch (one number per state part)
    state = sess.run(final_state, feed_dict={inputs: eval_x})
    print("final state norms %.5f %.5f" % (np.linalg.norm(state[-1].c), np.linalg.norm(state[-1].h)))
    if os.environ.get("OUT") and (not DISTRIBUTED or tf.distributed.rank() == 0):
        np.savez(os.environ["OUT"], **{v.op.name: sess.run(v) for v in tf.trainable_variables()})
