#!/usr/bin/env python3
"""Task 3 example: gradient of 3x3 max pooling with stride 3."""
import numpy as np

pool_backward = __import__('3-pool_backward').pool_backward


if __name__ == '__main__':
    np.random.seed(0)
    lib = np.load('MNIST.npz', allow_pickle=False)
    X_train = lib['X_train']
    _, h, w = X_train.shape
    X_train_a = X_train[:10].reshape((-1, h, w, 1))
    X_train_b = 1 - X_train_a
    X_train_c = np.concatenate((X_train_a, X_train_b), axis=3)

    dA = np.random.randn(10, h // 3, w // 3, 2)
    dA_prev = pool_backward(dA, X_train_c, (3, 3), stride=(3, 3))
    print(dA_prev.shape)
    print(dA_prev)
