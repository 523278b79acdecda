#!/usr/bin/env python3
"""Train task 5's LeNet-5 in Keras on MNIST.

Usage: ./5-main.py [EPOCHS]   (default 5 epochs)

Fits with batch 32 and the 10,000 validation images, prints the first
validation prediction, and saves the first validation image titled
"label : prediction" to 5-main.png (and shows it when a display exists).
"""
import os
import sys

import matplotlib
import numpy as np
import tensorflow.keras as K

if not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

lenet5 = __import__('5-lenet5').lenet5


def main(epochs):
    """Build the model, fit it for ``epochs`` epochs and show a prediction."""
    K.utils.set_random_seed(0)
    lib = np.load('MNIST.npz', allow_pickle=False)
    X_train = lib['X_train']
    Y_train = lib['Y_train']
    X_valid = lib['X_valid']
    Y_valid = lib['Y_valid']
    m, h, w = X_train.shape
    X_train_c = X_train.reshape((-1, h, w, 1))
    X_valid_c = X_valid.reshape((-1, h, w, 1))
    Y_train_oh = K.utils.to_categorical(Y_train, num_classes=10)
    Y_valid_oh = K.utils.to_categorical(Y_valid, num_classes=10)

    X = K.Input(shape=(h, w, 1))
    model = lenet5(X)
    batch_size = 32
    model.fit(X_train_c, Y_train_oh, batch_size=batch_size, epochs=epochs,
              verbose=1 if sys.stdout.isatty() else 2,
              validation_data=(X_valid_c, Y_valid_oh))
    Y_pred = model.predict(X_valid_c, verbose=0)
    print(Y_pred[0])
    Y_pred = np.argmax(Y_pred, 1)
    plt.imshow(X_valid[0])
    plt.title(str(Y_valid[0]) + ' : ' + str(Y_pred[0]))
    plt.savefig('5-main.png')
    if matplotlib.get_backend().lower() != 'agg':
        plt.show()


if __name__ == '__main__':
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
