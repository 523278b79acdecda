#!/usr/bin/env python3
"""Task 2: backward pass of a convolutional layer, vectorised with NumPy."""
import numpy as np


def _pair(name, value, minimum):
    """Return value as two integers >= minimum, or raise naming it."""
    ints = isinstance(value, (tuple, list)) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        for v in value)
    if ints and len(value) == 2 and min(value) >= minimum:
        return int(value[0]), int(value[1])
    kind = "positive" if minimum else "non-negative"
    raise (ValueError if ints else TypeError)(
        f"{name} must be two {kind} integers, received {value!r}")


def _array(name, value, layout):
    """Return value as a 4-D array of real numbers, or raise naming it."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers, "
                        f"received dtype {array.dtype}")
    if array.ndim != 4:
        raise ValueError(f"{name} must be a 4-D array of shape {layout}, "
                         f"received shape {array.shape}")
    return array


def _pads(size, kernel, stride, padding):
    """Return the zeros added (before, after) along one spatial axis."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        total = max((size - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2
    return padding, padding


def conv_backward(dZ, A_prev, W, b, padding="same", stride=(1, 1)):
    """Backward pass of a convolutional layer.

    Parameters
    ----------
    dZ : ndarray of shape (m, h_new, w_new, c_new)
        Gradient of the loss with respect to the unactivated output.
    A_prev : ndarray of shape (m, h_prev, w_prev, c_prev), the layer input
    W : ndarray of shape (kh, kw, c_prev, c_new), the kernels
    b : ndarray of shape (1, 1, 1, c_new), the biases
    padding : 'same', 'valid' or a tuple (ph, pw), as in conv_forward
        'same' pads (h_prev - 1) * sh + kh - h_prev rows in all (never
        negative), the smaller half on top, likewise for columns.
    stride : tuple (sh, sw) of positive integers

    Returns
    -------
    tuple (dA_prev, dW, db)
        Gradients with the shapes of A_prev, W and b, of dtype
        np.result_type(dZ, A_prev, W, b) (float64 for integer or bool
        inputs; float16 is summed in float32).
    """
    A_prev, W, b = (_array("A_prev", A_prev, "(m, h_prev, w_prev, c_prev)"),
                    _array("W", W, "(kh, kw, c_prev, c_new)"),
                    _array("b", b, "(1, 1, 1, c_new)"))
    dZ = _array("dZ", dZ, "(m, h_new, w_new, c_new)")
    (m, h_prev, w_prev, c_prev), (kh, kw, _, c_new) = A_prev.shape, W.shape
    if min(h_prev, w_prev, c_prev) < 1:
        raise ValueError("A_prev must have a positive height, width and number"
                         f" of channels, received shape {A_prev.shape}")
    if W.shape[2] != c_prev:
        raise ValueError(f"W must have A_prev's {c_prev} channels on axis 2, "
                         f"received W of shape {W.shape}")
    if min(kh, kw, c_new) < 1:
        raise ValueError(f"W must have a non-empty kernel, received {W.shape}")
    if b.shape != (1, 1, 1, c_new):
        raise ValueError(f"b must have shape {(1, 1, 1, c_new)}, "
                         f"received {b.shape}")
    if isinstance(padding, str) and padding not in ("same", "valid"):
        raise ValueError("padding must be 'same', 'valid' or two non-negative"
                         f" integers, received {padding!r}")
    pad_h, pad_w = ((padding, padding) if isinstance(padding, str)
                    else _pair("padding", padding, 0))
    sh, sw = _pair("stride", stride, 1)
    (top, bottom), (left, right) = (_pads(h_prev, kh, sh, pad_h),
                                    _pads(w_prev, kw, sw, pad_w))
    padded = (h_prev + top + bottom, w_prev + left + right)
    if kh > padded[0] or kw > padded[1]:
        raise ValueError(f"W's kernel {(kh, kw)} is larger than the padded "
                         f"input {padded}")
    h_new, w_new = (padded[0] - kh) // sh + 1, (padded[1] - kw) // sw + 1
    if dZ.shape != (m, h_new, w_new, c_new):
        raise ValueError("dZ must have the shape of the forward output "
                         f"{(m, h_new, w_new, c_new)}, received {dZ.shape}")
    dtype = np.result_type(dZ, A_prev, W, b)
    dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
    work = np.promote_types(dtype, np.float32)
    A = np.pad(A_prev.astype(work, copy=False),
               ((0, 0), (top, bottom), (left, right), (0, 0)))
    dZ, W = dZ.astype(work), W.astype(work)
    dA, dW = np.zeros(A.shape, work), np.zeros(W.shape, work)
    for i in range(kh):
        for j in range(kw):
            # What kernel tap (i, j) reads for every output position.
            rows = slice(i, i + sh * (h_new - 1) + 1, sh)
            cols = slice(j, j + sw * (w_new - 1) + 1, sw)
            dA[:, rows, cols] += np.tensordot(dZ, W[i, j], axes=([3], [1]))
            tap = A[:, rows, cols]
            dW[i, j] = np.tensordot(tap, dZ, axes=([0, 1, 2], [0, 1, 2]))
    db = dZ.sum(axis=(0, 1, 2), keepdims=True)
    dA_prev = dA[:, top:top + h_prev, left:left + w_prev]
    return (dA_prev.astype(dtype), dW.astype(dtype, copy=False),
            db.astype(dtype, copy=False))
