"""Naive loop implementations of the four layer operations, for tests only.

Every loop is explicit (examples, output positions, channels) so that these
functions are easy to check by eye; they share no code with ``convnet.ops``
except the documented padding rule, which is restated here independently.
"""
import numpy as np


def reference_pads(size, kernel, stride, padding):
    """Return (before, after) padding of one axis, written out by hand."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        total = (size - 1) * stride + kernel - size
        total = max(0, total)
        return total // 2, total - total // 2
    return padding, padding


def _padded(A_prev, kh, kw, padding, stride):
    """Return the zero-padded input and the padding amounts per axis."""
    if isinstance(padding, str):
        pad_h = pad_w = padding
    else:
        pad_h, pad_w = padding
    top, bottom = reference_pads(A_prev.shape[1], kh, stride[0], pad_h)
    left, right = reference_pads(A_prev.shape[2], kw, stride[1], pad_w)
    m, h, w, c = A_prev.shape
    A = np.zeros((m, h + top + bottom, w + left + right, c),
                 np.result_type(A_prev))
    A[:, top:top + h, left:left + w] = A_prev
    return A, (top, left)


def reference_conv_forward(A_prev, W, b, activation, padding="same",
                           stride=(1, 1)):
    """Convolution forward pass with one loop per index."""
    kh, kw, _, c_new = W.shape
    A, _ = _padded(A_prev, kh, kw, padding, stride)
    sh, sw = stride
    h_new = (A.shape[1] - kh) // sh + 1
    w_new = (A.shape[2] - kw) // sw + 1
    m = A.shape[0]
    Z = np.zeros((m, h_new, w_new, c_new), np.result_type(A_prev, W, b))
    for n in range(m):
        for y in range(h_new):
            for x in range(w_new):
                for k in range(c_new):
                    window = A[n, y * sh:y * sh + kh, x * sw:x * sw + kw, :]
                    Z[n, y, x, k] = np.sum(window * W[:, :, :, k]) + \
                        b[0, 0, 0, k]
    return activation(Z)


def reference_conv_backward(dZ, A_prev, W, b, padding="same",
                            stride=(1, 1)):
    """Convolution backward pass with one loop per index."""
    kh, kw, _, c_new = W.shape
    A, (top, left) = _padded(A_prev, kh, kw, padding, stride)
    sh, sw = stride
    m, h_new, w_new, _ = dZ.shape
    dtype = np.result_type(dZ, A_prev, W, b)
    dA = np.zeros(A.shape, dtype)
    dW = np.zeros(W.shape, dtype)
    db = np.zeros(b.shape, dtype)
    for n in range(m):
        for y in range(h_new):
            for x in range(w_new):
                for k in range(c_new):
                    g = dZ[n, y, x, k]
                    rows = slice(y * sh, y * sh + kh)
                    cols = slice(x * sw, x * sw + kw)
                    dA[n, rows, cols, :] += g * W[:, :, :, k]
                    dW[:, :, :, k] += g * A[n, rows, cols, :]
                    db[0, 0, 0, k] += g
    h, w = A_prev.shape[1:3]
    return dA[:, top:top + h, left:left + w], dW, db


def reference_pool_forward(A_prev, kernel_shape, stride=(1, 1), mode="max"):
    """Pooling forward pass with one loop per index."""
    m, h, w, c = A_prev.shape
    kh, kw = kernel_shape
    sh, sw = stride
    h_new, w_new = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.zeros((m, h_new, w_new, c), np.result_type(A_prev))
    for n in range(m):
        for y in range(h_new):
            for x in range(w_new):
                for k in range(c):
                    window = A_prev[n, y * sh:y * sh + kh,
                                    x * sw:x * sw + kw, k]
                    out[n, y, x, k] = (window.max() if mode == "max"
                                       else window.mean())
    return out


def reference_pool_backward(dA, A_prev, kernel_shape, stride=(1, 1),
                            mode="max", ties="all"):
    """Pooling backward pass with one loop per index.

    ``ties="all"``: every entry equal to the window's maximum gets dA;
    ``ties="first"``: only ``np.argmax``'s pick, the first maximum in
    row-major order within the window.
    """
    m, h_new, w_new, c = dA.shape
    kh, kw = kernel_shape
    sh, sw = stride
    dA_prev = np.zeros(A_prev.shape, np.result_type(dA, A_prev))
    for n in range(m):
        for y in range(h_new):
            for x in range(w_new):
                for k in range(c):
                    rows = slice(y * sh, y * sh + kh)
                    cols = slice(x * sw, x * sw + kw)
                    window = A_prev[n, rows, cols, k]
                    if mode == "max" and ties == "first":
                        share = np.zeros(window.shape)
                        first = np.unravel_index(np.argmax(window),
                                                 window.shape)
                        share[first] = dA[n, y, x, k]
                    elif mode == "max":
                        share = (window == window.max()) * dA[n, y, x, k]
                    else:
                        share = np.full(window.shape, dA[n, y, x, k] / (kh * kw))
                    dA_prev[n, rows, cols, k] += share
    return dA_prev


def numerical_gradient(loss, x, eps=1e-6):
    """Centred finite differences of loss() with respect to every entry of x.

    x is perturbed in place, one entry at a time, and restored.
    """
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + eps
        up = loss()
        x[index] = saved - eps
        down = loss()
        x[index] = saved
        gradient[index] = (up - down) / (2 * eps)
    return gradient
