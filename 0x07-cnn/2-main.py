#!/usr/bin/env python3
"""Task 2 example: gradients of a valid 3x3 convolution on ten images."""
import numpy as np

conv_backward = __import__('2-conv_backward').conv_backward


if __name__ == '__main__':
    np.random.seed(0)
    lib = np.load('MNIST.npz', allow_pickle=False)
    X_train = lib['X_train']
    _, h, w = X_train.shape
    X_train_c = X_train[:10].reshape((-1, h, w, 1))

    W = np.random.randn(3, 3, 1, 2)
    b = np.random.randn(1, 1, 1, 2)

    dZ = np.random.randn(10, h - 2, w - 2, 2)
    print(conv_backward(dZ, X_train_c, W, b, padding='valid'))
