# A word-level language model in the style of TF 1.x's PTB tutorial: the word
# stream cut into batch_size rows and walked num_steps at a time, the LSTM's
# final state of one window fed back as the initial state of the next
# (truncated backpropagation through time), inputs as a list of time steps
# (static_rnn), tf.contrib.legacy_seq2seq.sequence_loss_by_example, cost per
# batch, plain SGD, and perplexity per epoch.  The word stream is generated
# here (a Markov chain over 12 words); the weights start from seeded numpy
# arrays (the variable scope's custom initializer).
import os

import numpy as np
import tensorflow as tf

STEPS = int(os.environ.get("STEPS", 60))

vocab_size, hidden_size, num_layers, batch_size, num_steps = 12, 24, 2, 8, 8
init_scale = 0.5
rng = np.random.RandomState(0)
transition = rng.dirichlet(np.full(vocab_size, 0.1), size=vocab_size)
words = [0]
for _ in range(3000):
    words.append(rng.choice(vocab_size, p=transition[words[-1]]))
raw = np.array(words, np.int32)
batch_len = len(raw) // batch_size
data = raw[:batch_size * batch_len].reshape(batch_size, batch_len)
epoch_size = (batch_len - 1) // num_steps


class NumpyInit(object):
    """uniform(-init_scale, init_scale) from a seeded numpy generator."""

    def __init__(self, seed):
        self.rng = np.random.RandomState(seed)

    def __call__(self, shape, dtype=None, partition_info=None):
        return tf.constant(self.rng.uniform(-init_scale, init_scale, shape).astype(np.float32))


input_data = tf.placeholder(tf.int32, [batch_size, num_steps])
targets = tf.placeholder(tf.int32, [batch_size, num_steps])
with tf.variable_scope("Model", initializer=NumpyInit(7)):
    cell = tf.contrib.rnn.MultiRNNCell([tf.contrib.rnn.BasicLSTMCell(hidden_size, forget_bias=0.0)
                                        for _ in range(num_layers)])
    initial_state = cell.zero_state(batch_size, tf.float32)
    embedding = tf.get_variable("embedding", [vocab_size, hidden_size])
    inputs = tf.nn.embedding_lookup(embedding, input_data)
    inputs = tf.unstack(inputs, num=num_steps, axis=1)
    outputs, state = tf.contrib.rnn.static_rnn(cell, inputs, initial_state=initial_state)
    output = tf.reshape(tf.concat(outputs, 1), [-1, hidden_size])
    softmax_w = tf.get_variable("softmax_w", [hidden_size, vocab_size])
    softmax_b = tf.get_variable("softmax_b", [vocab_size])
    logits = tf.matmul(output, softmax_w) + softmax_b
    loss = tf.contrib.legacy_seq2seq.sequence_loss_by_example(
        [logits], [tf.reshape(targets, [-1])], [tf.ones([batch_size * num_steps], dtype=tf.float32)])
    cost = tf.reduce_sum(loss) / batch_size
    final_state = state
    train_op = tf.train.GradientDescentOptimizer(1.0).minimize(cost)


def run_epoch(session, steps, train=True):
    costs, iters = 0.0, 0
    state = session.run(initial_state)
    for step in range(steps):
        i = step % epoch_size
        x = data[:, i * num_steps:(i + 1) * num_steps]
        y = data[:, i * num_steps + 1:(i + 1) * num_steps + 1]
        feed_dict = {input_data: x, targets: y}
        for k, (c, h) in enumerate(initial_state):
            feed_dict[c] = state[k].c
            feed_dict[h] = state[k].h
        fetches = [cost, final_state] + ([train_op] if train else [])
        result = session.run(fetches, feed_dict)
        costs += result[0]
        iters += num_steps
        state = result[1]
        if train and step % 10 == 0:
            print("step %d perplexity %.4f" % (step, np.exp(costs / iters)))
    return np.exp(costs / iters)


with tf.Session() as session:
    session.run(tf.global_variables_initializer())
    print("Train Perplexity: %.4f" % run_epoch(session, STEPS))
    print("Valid Perplexity: %.4f" % run_epoch(session, 20, train=False))
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], **{v.op.name: session.run(v) for v in tf.trainable_variables()})
