#!/usr/bin/env python3
"""LeNet-5 in Keras, compiled and ready to ``fit``.

Every kernel uses ``HeNormal(seed=0)``: a normal truncated at two standard
deviations and rescaled so the weights have a standard deviation of
sqrt(2 / fan_in). Because the seed is a fixed integer, two builds give
identical initial weights; it also means every layer draws from the same
random stream, scaled by its own fan-in, which does no harm to training.
``model.get_weights()`` lists conv1 kernel (5, 5, 1, 6), conv1 bias (6,),
conv2 kernel (5, 5, 6, 16), conv2 bias (16,), dense1 kernel (400, 120),
dense1 bias (120,), dense2 (120, 84), (84,), dense3 (84, 10), (10,).
"""
import tensorflow.keras as K


def lenet5(X):
    """Build and compile LeNet-5 on top of the input tensor X.

    Layers: conv 6 kernels 5x5 'same' -> max pool 2x2/2 -> conv 16 kernels
    5x5 'valid' -> max pool 2x2/2 -> dense 120 -> dense 84 -> dense 10
    softmax, with ReLU on every hidden layer; 61,706 trainable parameters.

    Parameters
    ----------
    X : K.Input of shape (m, 28, 28, 1)
        The input images (the batch dimension m is left open).

    Returns
    -------
    K.Model
        Compiled with Adam (default hyper-parameters), categorical
        cross-entropy on one-hot labels of shape (m, 10), and the
        'accuracy' metric.
    """
    init = K.initializers.HeNormal(seed=0)
    A = K.layers.Conv2D(6, 5, padding="same", activation="relu",
                        kernel_initializer=init, name="conv1")(X)
    A = K.layers.MaxPooling2D(2, strides=2, name="pool1")(A)
    A = K.layers.Conv2D(16, 5, padding="valid", activation="relu",
                        kernel_initializer=init, name="conv2")(A)
    A = K.layers.MaxPooling2D(2, strides=2, name="pool2")(A)
    A = K.layers.Flatten(name="flatten")(A)
    A = K.layers.Dense(120, activation="relu", kernel_initializer=init,
                       name="dense1")(A)
    A = K.layers.Dense(84, activation="relu", kernel_initializer=init,
                       name="dense2")(A)
    Y = K.layers.Dense(10, activation="softmax", kernel_initializer=init,
                       name="dense3")(A)
    model = K.Model(inputs=X, outputs=Y)
    model.compile(optimizer=K.optimizers.Adam(),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model
