#!/usr/bin/env python3
"""Task 3: backward pass of a pooling layer, vectorised with NumPy."""
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


def pool_backward(dA, A_prev, kernel_shape, stride=(1, 1), mode="max"):
    """Backward pass of a pooling layer (no padding).

    Parameters
    ----------
    dA : ndarray of shape (m, h_new, w_new, c)
        Gradient of the loss with respect to the pooling output.
    A_prev : ndarray of shape (m, h_prev, w_prev, c), the layer input
    kernel_shape : tuple (kh, kw) of positive integers, the window
    stride : tuple (sh, sw) of positive integers
    mode : 'max' or 'avg'
        'max': a window's gradient goes to every entry equal to the
        window's maximum (all tied entries receive it in full). 'avg':
        every entry of the window receives dA / (kh * kw). Overlapping
        windows add up.

    Returns
    -------
    ndarray of shape (m, h_prev, w_prev, c)
        Gradient with respect to A_prev, of dtype np.result_type(dA,
        A_prev) (float64 for integer or bool inputs; float16 summed in
        float32). Entries that no window covers are zero.
    """
    A_prev = _array("A_prev", A_prev, "(m, h_prev, w_prev, c)")
    kh, kw = _pair("kernel_shape", kernel_shape, 1)
    sh, sw = _pair("stride", stride, 1)
    if not isinstance(mode, str):
        raise TypeError(f"mode must be 'max' or 'avg', received {mode!r}")
    if mode not in ("max", "avg"):
        raise ValueError(f"mode must be 'max' or 'avg', received {mode!r}")
    m, h_prev, w_prev, c = A_prev.shape
    if min(h_prev, w_prev, c) < 1:
        raise ValueError("A_prev must have a positive height, width and number"
                         f" of channels, received shape {A_prev.shape}")
    if kh > h_prev or kw > w_prev:
        raise ValueError(f"kernel_shape {(kh, kw)} is larger than the input "
                         f"{(h_prev, w_prev)}")
    h_new, w_new = (h_prev - kh) // sh + 1, (w_prev - kw) // sw + 1
    dA = _array("dA", dA, "(m, h_new, w_new, c)")
    if dA.shape != (m, h_new, w_new, c):
        raise ValueError("dA must have the shape of the forward output "
                         f"{(m, h_new, w_new, c)}, received {dA.shape}")
    dtype = np.result_type(dA, A_prev)
    dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
    work = np.promote_types(dtype, np.float32)
    # Entry [n, y, x] of tap (i, j) is A_prev[n, y * sh + i, x * sw + j].
    taps = [(slice(i, i + sh * (h_new - 1) + 1, sh),
             slice(j, j + sw * (w_new - 1) + 1, sw))
            for i in range(kh) for j in range(kw)]
    dA = dA.astype(work)
    if mode == "max":
        maxima = A_prev[:, taps[0][0], taps[0][1]].astype(work)
        for rows, cols in taps[1:]:
            np.maximum(maxima, A_prev[:, rows, cols], out=maxima)
    dA_prev = np.zeros(A_prev.shape, work)
    for rows, cols in taps:
        if mode == "max":
            is_max = A_prev[:, rows, cols] == maxima
            dA_prev[:, rows, cols] += np.where(is_max, dA, 0)
        else:
            dA_prev[:, rows, cols] += dA / (kh * kw)
    return dA_prev.astype(dtype, copy=False)
