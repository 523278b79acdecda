#!/usr/bin/env python3
"""Train task 4's LeNet-5 in TensorFlow graph mode on MNIST.

Usage: ./4-main.py [EPOCHS]   (default 10 epochs)

Prints the cost and accuracy on the full training and validation sets
before training and after every epoch, then the first validation
prediction, and saves the first validation image titled
"label : prediction" to 4-main.png (and shows it when a display exists).
"""
import os
import sys

import matplotlib
import numpy as np
import tensorflow.compat.v1 as tf

if not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

lenet5 = __import__('4-lenet5').lenet5

EVAL_BATCH = 1000


def evaluate(sess, tensors, x, y_, X, Y):
    """Return the example-weighted mean of scalar tensors over a set.

    Parameters
    ----------
    sess : tf.Session
    tensors : tuple of tf.Tensor
        Scalar means over a batch (the cost and the accuracy).
    x, y_ : tf.placeholder
        Images (m, 28, 28, 1) and integer labels (m,).
    X : ndarray of shape (m, 28, 28, 1)
    Y : ndarray of shape (m,)

    Returns
    -------
    list of float
        One mean per tensor, computed in chunks to bound memory.
    """
    totals = np.zeros(len(tensors))
    for i in range(0, len(X), EVAL_BATCH):
        feed = {x: X[i:i + EVAL_BATCH], y_: Y[i:i + EVAL_BATCH]}
        totals += np.array(sess.run(tensors, feed)) * len(feed[y_])
    return list(totals / len(X))


def main(epochs):
    """Build the graph, train for ``epochs`` epochs and show a prediction."""
    np.random.seed(0)
    tf.set_random_seed(0)
    lib = np.load('MNIST.npz', allow_pickle=False)
    X_train = lib['X_train']
    Y_train = lib['Y_train']
    X_valid = lib['X_valid']
    Y_valid = lib['Y_valid']
    m, h, w = X_train.shape
    X_train_c = X_train.reshape((-1, h, w, 1))
    X_valid_c = X_valid.reshape((-1, h, w, 1))

    x = tf.placeholder(tf.float32, (None, h, w, 1))
    y_ = tf.placeholder(tf.int32, (None,))
    y = tf.one_hot(y_, 10)
    y_pred, train_op, loss, acc = lenet5(x, y)
    batch_size = 32
    init = tf.global_variables_initializer()
    with tf.Session() as sess:
        sess.run(init)
        for epoch in range(epochs + 1):
            cost, accuracy = evaluate(sess, (loss, acc), x, y_,
                                      X_train_c, Y_train)
            valid_cost, valid_accuracy = evaluate(sess, (loss, acc), x, y_,
                                                  X_valid_c, Y_valid)
            print("After {} epochs: cost {}, accuracy {}, validation cost {}, "
                  "validation accuracy {}".format(epoch, cost, accuracy,
                                                  valid_cost, valid_accuracy),
                  flush=True)
            if epoch == epochs:
                break
            order = np.random.permutation(m)
            for start in range(0, m, batch_size):
                batch = order[start:start + batch_size]
                sess.run(train_op, {x: X_train_c[batch], y_: Y_train[batch]})
        Y_pred = sess.run(y_pred, {x: X_valid_c[:1]})
    print(Y_pred[0])
    Y_pred = np.argmax(Y_pred, 1)
    plt.imshow(X_valid[0])
    plt.title(str(Y_valid[0]) + ' : ' + str(Y_pred[0]))
    plt.savefig('4-main.png')
    if matplotlib.get_backend().lower() != 'agg':
        plt.show()


if __name__ == '__main__':
    tf.disable_eager_execution()
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
