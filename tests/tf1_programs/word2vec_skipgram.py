# Word2vec (skip-gram) as the TF 1.x "basic word2vec" programs wrote it: a
# vocabulary of the most common words, (center, context) pairs from a window,
# embeddings initialised with tf.random_uniform, tf.nn.embedding_lookup,
# tf.nn.nce_loss with its default (log-uniform) negative sampler, plain SGD,
# and cosine similarities of the normalized embeddings.  The corpus is
# generated here (words that co-occur within topics).
#
# Judged by properties, not against TensorFlow's numbers: the negative
# classes come from the sampler's random draws (and the initial embeddings
# from tf.random_uniform), whose generators differ from TensorFlow's.  With a
# graph seed every rank draws the same negatives for the whole global batch,
# so 2 ranks end with the weights of 1 rank.
import collections
import math
import os

import numpy as np
import tensorflow as tf

STEPS = int(os.environ.get("STEPS", 400))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
if DISTRIBUTED and tf.distributed.rank() != 0:
    print = lambda *args, **kwargs: None  # noqa: E731  (rank 0 prints)

topics = [["king", "queen", "crown", "throne", "royal"], ["cat", "dog", "pet", "fur", "paw"],
          ["sun", "moon", "star", "sky", "night"], ["bread", "milk", "cheese", "butter", "food"]]
rng = np.random.RandomState(0)
words = []
for _ in range(600):
    topic = topics[rng.randint(len(topics))]
    words.extend(rng.choice(topic, 4))
    words.append(rng.choice(["the", "a", "and", "of"]))

count = collections.Counter(words).most_common()
dictionary = {w: i for i, (w, _) in enumerate(count)}
reverse_dictionary = {i: w for w, i in dictionary.items()}
data = [dictionary[w] for w in words]
vocabulary_size = len(dictionary)

batch_size = 64
embedding_size = 16
skip_window = 1
num_sampled = 8


def generate_batch(step):
    centers, contexts = [], []
    pos = (step * batch_size // 2) % (len(data) - 2 * skip_window)
    while len(centers) < batch_size:
        i = pos + skip_window
        for j in (i - 1, i + 1):
            centers.append(data[i])
            contexts.append(data[j])
        pos = (pos + 1) % (len(data) - 2 * skip_window)
    return np.array(centers, np.int32), np.array(contexts, np.int64).reshape(-1, 1)


graph = tf.Graph()
with graph.as_default():
    tf.set_random_seed(1)
    train_inputs = tf.placeholder(tf.int32, shape=[None])
    train_labels = tf.placeholder(tf.int64, shape=[None, 1])
    embeddings = tf.Variable(tf.random_uniform([vocabulary_size, embedding_size], -1.0, 1.0))
    embed = tf.nn.embedding_lookup(embeddings, train_inputs)
    nce_weights = tf.Variable(tf.truncated_normal([vocabulary_size, embedding_size],
                                                  stddev=1.0 / math.sqrt(embedding_size)))
    nce_biases = tf.Variable(tf.zeros([vocabulary_size]))
    loss = tf.reduce_mean(tf.nn.nce_loss(weights=nce_weights, biases=nce_biases, labels=train_labels,
                                         inputs=embed, num_sampled=num_sampled, num_classes=vocabulary_size))
    optimizer = tf.train.GradientDescentOptimizer(1.0)
    if DISTRIBUTED:
        optimizer = tf.DistributedOptimizer(optimizer)
    train_op = optimizer.minimize(loss)

    norm = tf.sqrt(tf.reduce_sum(tf.square(embeddings), 1, keep_dims=True))
    normalized_embeddings = embeddings / norm
    similarity = tf.matmul(normalized_embeddings, normalized_embeddings, transpose_b=True)
    init = tf.global_variables_initializer()

with tf.Session(graph=graph) as session:
    init.run()
    average_loss = 0
    for step in range(1, STEPS + 1):
        batch_inputs, batch_labels = generate_batch(step)
        if DISTRIBUTED:
            batch_inputs, batch_labels = tf.distributed.shard(batch_inputs, batch_labels)
        _, loss_val = session.run([train_op, loss], feed_dict={train_inputs: batch_inputs,
                                                                train_labels: batch_labels})
        average_loss += loss_val
        if step % 50 == 0:
            print("Average loss at step", step, ":", "%f" % (average_loss / 50))
            average_loss = 0
    sim = similarity.eval()
    # how much closer words of one topic are than words of different topics
    same, other = [], []
    for t, topic in enumerate(topics):
        for w in topic:
            for u in (x for tp in topics for x in tp):
                if u != w:
                    (same if u in topic else other).append(sim[dictionary[w], dictionary[u]])
    print("topic similarity %.4f other similarity %.4f" % (np.mean(same), np.mean(other)))
    nearest = (-sim[dictionary["king"], :]).argsort()[1:4]
    print("Nearest to king:", ", ".join(reverse_dictionary[k] for k in nearest))
    if os.environ.get("OUT") and (not DISTRIBUTED or tf.distributed.rank() == 0):
        np.savez(os.environ["OUT"], embeddings=embeddings.eval(), nce_weights=nce_weights.eval(),
                 nce_biases=nce_biases.eval())
