#!/usr/bin/env python3
"""Task 0: forward pass of a convolutional layer, vectorised with NumPy."""
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


def conv_forward(A_prev, W, b, activation, padding="same", stride=(1, 1)):
    """Forward pass of a convolutional layer (cross-correlation, no flip).

    Parameters
    ----------
    A_prev : ndarray of shape (m, h_prev, w_prev, c_prev)
    W : ndarray of shape (kh, kw, c_prev, c_new), the kernels
    b : ndarray of shape (1, 1, 1, c_new), the biases
    activation : callable applied element-wise to the biased sums
    padding : 'same', 'valid' or a tuple (ph, pw) of zeros on each side
        'same' keeps h_prev x w_prev outputs at every stride: the total
        (h_prev - 1) * sh + kh - h_prev rows (never negative) are split
        with the smaller half on top, likewise for columns; TensorFlow's
        'SAME' agrees at stride 1 only (it gives ceil(h_prev / sh)).
    stride : tuple (sh, sw) of positive integers

    Returns
    -------
    ndarray of shape (m, h_new, w_new, c_new)
        h_new = (h_prev + top + bottom - kh) // sh + 1, likewise w_new.
        dtype np.result_type(A_prev, W, b), float64 for integer or bool
        inputs; float16 is summed in float32.
    """
    if not callable(activation):
        raise TypeError(f"activation must be callable, received "
                        f"{activation!r}")
    A_prev, W, b = (_array("A_prev", A_prev, "(m, h_prev, w_prev, c_prev)"),
                    _array("W", W, "(kh, kw, c_prev, c_new)"),
                    _array("b", b, "(1, 1, 1, c_new)"))
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
    dtype = np.result_type(A_prev, W, b)
    dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
    work = np.promote_types(dtype, np.float32)
    W = W.astype(work)[..., None, None, None]   # each kernel entry (c_new,)
    Z = np.empty((m, h_new, w_new, c_new), dtype)
    # A few examples at a time: the sums stay small enough for the cache.
    step = max(1, 2 ** 17 // (h_new * w_new * c_new))
    for start in range(0, m, step):
        A = np.pad(A_prev[start:start + step].astype(work, copy=False),
                   ((0, 0), (top, bottom), (left, right), (0, 0)))
        # Channels first, so that every addition runs along output rows.
        sums = np.empty((c_new, len(A), h_new, w_new), work)
        sums[...] = b.reshape(c_new, 1, 1, 1)
        for i in range(kh):
            for j in range(kw):
                tap = A[:, i:i + sh * (h_new - 1) + 1:sh,
                        j:j + sw * (w_new - 1) + 1:sw]
                for c in range(c_prev):
                    sums += W[i, j, c] * tap[..., c]
        sums = np.moveaxis(sums, 0, -1)
        activated = activation(sums)
        if np.shape(activated) != sums.shape:
            raise ValueError("activation must return an array of the shape "
                             f"it receives, {sums.shape}, returned shape "
                             f"{np.shape(activated)}")
        Z[start:start + step] = activated
    return Z
