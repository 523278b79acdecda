"""The four layer operations written as plain loops over every index.

The slowest and most literal version of tasks 0-3: every loop is explicit
(examples, output positions, channels), so that each function can be checked
by eye against the definitions in the curriculum. The tests hold both the
readable task files (``0x07-cnn/0-conv_forward.py`` ... ``3-pool_backward.py``)
and the fast engine (``convnet/nn/ops.py``) to these results. Nothing here is
shared with either; the padding rule is restated independently.

Dtypes: every sum is taken in float64 and the result cast to the output
dtype, ``np.result_type`` of the inputs, or float64 when all inputs are
integers or booleans.
"""
import numpy as np


def reference_dtype(*arrays):
    """Output dtype: NumPy's promotion of the inputs, float64 for integers or bools."""
    dtype = np.result_type(*arrays)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


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
    A = np.zeros((m, h + top + bottom, w + left + right, c), np.float64)
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
    W64, b64 = np.asarray(W, np.float64), np.asarray(b, np.float64)
    Z = np.zeros((m, h_new, w_new, c_new), np.float64)
    for n in range(m):
        for y in range(h_new):
            for x in range(w_new):
                for k in range(c_new):
                    window = A[n, y * sh:y * sh + kh, x * sw:x * sw + kw, :]
                    Z[n, y, x, k] = np.sum(window * W64[:, :, :, k]) + \
                        b64[0, 0, 0, k]
    return np.asarray(activation(Z)).astype(reference_dtype(A_prev, W, b))


def reference_conv_backward(dZ, A_prev, W, b, padding="same",
                            stride=(1, 1)):
    """Convolution backward pass with one loop per index."""
    kh, kw, _, c_new = W.shape
    A, (top, left) = _padded(A_prev, kh, kw, padding, stride)
    sh, sw = stride
    m, h_new, w_new, _ = dZ.shape
    dtype = reference_dtype(dZ, A_prev, W, b)
    dZ, W = np.asarray(dZ, np.float64), np.asarray(W, np.float64)
    dA = np.zeros(A.shape, np.float64)
    dW = np.zeros(W.shape, np.float64)
    db = np.zeros(b.shape, np.float64)
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
    return (dA[:, top:top + h, left:left + w].astype(dtype), dW.astype(dtype),
            db.astype(dtype))


def reference_pool_forward(A_prev, kernel_shape, stride=(1, 1), mode="max"):
    """Pooling forward pass with one loop per index."""
    m, h, w, c = A_prev.shape
    kh, kw = kernel_shape
    sh, sw = stride
    h_new, w_new = (h - kh) // sh + 1, (w - kw) // sw + 1
    dtype = reference_dtype(A_prev)
    A_prev = np.asarray(A_prev, np.float64)
    out = np.zeros((m, h_new, w_new, c), np.float64)
    for n in range(m):
        for y in range(h_new):
            for x in range(w_new):
                for k in range(c):
                    window = A_prev[n, y * sh:y * sh + kh,
                                    x * sw:x * sw + kw, k]
                    out[n, y, x, k] = (window.max() if mode == "max"
                                       else window.mean())
    return out.astype(dtype)


def reference_pool_backward(dA, A_prev, kernel_shape, stride=(1, 1),
                            mode="max", ties="all"):
    """Pooling backward pass with one loop per index.

    ``ties="all"``: every entry equal to the window's maximum gets dA;
    ``ties="first"``: only the first of them in row-major order within the
    window. Every other entry gets exactly 0, even when dA is inf or NaN. A window holding a NaN has no entry equal to its maximum (NaN):
    under either rule none of its entries receives its gradient.
    """
    m, h_new, w_new, c = dA.shape
    kh, kw = kernel_shape
    sh, sw = stride
    dtype = reference_dtype(dA, A_prev)
    dA, A_prev = np.asarray(dA, np.float64), np.asarray(A_prev, np.float64)
    dA_prev = np.zeros(A_prev.shape, np.float64)
    for n in range(m):
        for y in range(h_new):
            for x in range(w_new):
                for k in range(c):
                    rows = slice(y * sh, y * sh + kh)
                    cols = slice(x * sw, x * sw + kw)
                    window = A_prev[n, rows, cols, k]
                    if mode == "max" and ties == "first":
                        share = np.zeros(window.shape)
                        maxima = np.argwhere(window == window.max())
                        if len(maxima):  # none when the window holds a NaN
                            share[tuple(maxima[0])] = dA[n, y, x, k]
                    elif mode == "max":
                        share = np.where(window == window.max(),
                                         dA[n, y, x, k], 0.0)
                    else:
                        share = np.full(window.shape, dA[n, y, x, k] / (kh * kw))
                    dA_prev[n, rows, cols, k] += share
    return dA_prev.astype(dtype)
