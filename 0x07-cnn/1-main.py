#!/usr/bin/env python3
"""Task 1 example: 2x2 max pooling of MNIST and its negative."""
import os

import matplotlib
import numpy as np

if not os.environ.get('DISPLAY'):
    matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

pool_forward = __import__('1-pool_forward').pool_forward


if __name__ == '__main__':
    np.random.seed(0)
    lib = np.load('MNIST.npz', allow_pickle=False)
    X_train = lib['X_train']
    m, h, w = X_train.shape
    X_train_a = X_train.reshape((-1, h, w, 1))
    X_train_b = 1 - X_train_a
    X_train_c = np.concatenate((X_train_a, X_train_b), axis=3)
    print(X_train_c.shape)

    A = pool_forward(X_train_c, (2, 2), stride=(2, 2))
    print(A.shape)

    figure, axes = plt.subplots(2, 2, figsize=(6, 6))
    for channel in range(2):
        axes[0, channel].imshow(X_train_c[0, :, :, channel])
        axes[0, channel].set_title('input channel {}'.format(channel))
        axes[1, channel].imshow(A[0, :, :, channel])
        axes[1, channel].set_title('pooled channel {}'.format(channel))
    for axis in axes.ravel():
        axis.axis('off')
    figure.savefig('1-main.png')
    if matplotlib.get_backend().lower() != 'agg':
        plt.show()
