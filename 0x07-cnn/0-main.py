#!/usr/bin/env python3
"""Task 0 example: convolve MNIST with two random 3x3 kernels and a ReLU."""
import os

import matplotlib
import numpy as np

if not os.environ.get('DISPLAY'):
    matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

conv_forward = __import__('0-conv_forward').conv_forward


def relu(Z):
    """Rectified linear unit."""
    return np.maximum(Z, 0)


if __name__ == '__main__':
    np.random.seed(0)
    lib = np.load('MNIST.npz', allow_pickle=False)
    X_train = lib['X_train']
    m, h, w = X_train.shape
    X_train_c = X_train.reshape((-1, h, w, 1))

    W = np.random.randn(3, 3, 1, 2)
    b = np.random.randn(1, 1, 1, 2)

    A = conv_forward(X_train_c, W, b, relu, padding='valid')
    print(A.shape)

    figure, axes = plt.subplots(1, 3, figsize=(9, 3))
    panels = (X_train[0], A[0, :, :, 0], A[0, :, :, 1])
    titles = ('image', 'feature map 0', 'feature map 1')
    for axis, panel, title in zip(axes, panels, titles):
        axis.imshow(panel)
        axis.set_title(title)
        axis.axis('off')
    figure.savefig('0-main.png')
    if matplotlib.get_backend().lower() != 'agg':
        plt.show()
