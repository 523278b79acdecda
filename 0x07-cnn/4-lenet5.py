#!/usr/bin/env python3
"""LeNet-5 in TensorFlow graph mode, built from ``tf.nn`` ops only.

The graph uses ``tensorflow.compat.v1`` placeholders, variables and the
Adam optimiser, and no Keras at all. Kernels are drawn with
``tf.variance_scaling_initializer(scale=2.0)`` (He-normal): in compat.v1
its default distribution is a normal truncated at two standard deviations
and rescaled by 1 / 0.87962566, so the weights have a standard deviation
of exactly sqrt(2 / fan_in), the same distribution as Keras' HeNormal.
Biases start at zero.

The trainable variables are created in the order of Keras'
``model.get_weights()``: conv1 kernel (5, 5, 1, 6), conv1 bias (6,),
conv2 kernel (5, 5, 6, 16), conv2 bias (16,), dense1 kernel (400, 120),
dense1 bias (120,), dense2 kernel (120, 84), dense2 bias (84,),
dense3 kernel (84, 10), dense3 bias (10,).
"""
import tensorflow.compat.v1 as tf


def he_variables(name, kernel_shape):
    """Create a He-normal kernel and a zero bias in a fresh variable scope.

    Parameters
    ----------
    name : str
        Scope name of the layer, made unique if already taken.
    kernel_shape : tuple of int
        (kh, kw, c_prev, c_new) for a convolution, (n_prev, n_new) for a
        dense layer; the bias has shape (kernel_shape[-1],).

    Returns
    -------
    tuple of tf.Variable
        The kernel and the bias, created in that order.
    """
    with tf.variable_scope(None, default_name=name):
        kernel = tf.get_variable(
            "kernel", shape=kernel_shape, dtype=tf.float32,
            initializer=tf.variance_scaling_initializer(scale=2.0))
        bias = tf.get_variable(
            "bias", shape=kernel_shape[-1:], dtype=tf.float32,
            initializer=tf.zeros_initializer())
    return kernel, bias


def max_pool(A):
    """Max pooling with a 2x2 window and stride 2.

    Parameters
    ----------
    A : tf.Tensor of shape (m, h, w, c)

    Returns
    -------
    tf.Tensor of shape (m, h // 2, w // 2, c)
    """
    return tf.nn.max_pool2d(A, ksize=2, strides=2, padding="VALID")


def lenet5(x, y):
    """Build LeNet-5 with its loss, accuracy and Adam training op.

    Layers: conv 6 kernels 5x5 'same' -> max pool 2x2/2 -> conv 16 kernels
    5x5 'valid' -> max pool 2x2/2 -> dense 120 -> dense 84 -> dense 10
    softmax, with ReLU on every hidden layer.

    Parameters
    ----------
    x : tf.placeholder of shape (m, 28, 28, 1)
        Input images.
    y : tf.placeholder of shape (m, 10)
        One-hot labels.

    Returns
    -------
    y_pred : tf.Tensor of shape (m, 10)
        Softmax probabilities.
    train_op : tf.Operation
        One Adam step (default hyper-parameters) on the loss.
    loss : tf.Tensor, scalar
        Mean softmax cross-entropy between y and the logits.
    accuracy : tf.Tensor, scalar
        Fraction of examples whose most probable class is the label.
    """
    conv1_w, conv1_b = he_variables("conv1", (5, 5, 1, 6))
    conv2_w, conv2_b = he_variables("conv2", (5, 5, 6, 16))
    dense1_w, dense1_b = he_variables("dense1", (400, 120))
    dense2_w, dense2_b = he_variables("dense2", (120, 84))
    dense3_w, dense3_b = he_variables("dense3", (84, 10))

    A1 = tf.nn.relu(tf.nn.conv2d(x, conv1_w, 1, "SAME") + conv1_b)
    P1 = max_pool(A1)
    A2 = tf.nn.relu(tf.nn.conv2d(P1, conv2_w, 1, "VALID") + conv2_b)
    P2 = max_pool(A2)
    # C-order flattening of (5, 5, 16), the order of Keras' Flatten.
    flat = tf.reshape(P2, (-1, 400))
    A3 = tf.nn.relu(tf.matmul(flat, dense1_w) + dense1_b)
    A4 = tf.nn.relu(tf.matmul(A3, dense2_w) + dense2_b)
    logits = tf.matmul(A4, dense3_w) + dense3_b

    y_pred = tf.nn.softmax(logits)
    loss = tf.losses.softmax_cross_entropy(y, logits)
    train_op = tf.train.AdamOptimizer().minimize(loss)
    correct = tf.equal(tf.argmax(logits, axis=1), tf.argmax(y, axis=1))
    accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))
    return y_pred, train_op, loss, accuracy
