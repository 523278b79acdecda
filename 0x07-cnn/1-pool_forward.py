#!/usr/bin/env python3
"""Task 1: forward pass of a pooling layer, vectorised with NumPy."""
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


def pool_forward(A_prev, kernel_shape, stride=(1, 1), mode="max"):
    """Forward pass of a pooling layer (no padding).

    Parameters
    ----------
    A_prev : ndarray of shape (m, h_prev, w_prev, c)
    kernel_shape : tuple (kh, kw) of positive integers, the window
    stride : tuple (sh, sw) of positive integers
    mode : 'max' or 'avg', the maximum or the mean of each window

    Returns
    -------
    ndarray of shape (m, h_new, w_new, c)
        h_new = (h_prev - kh) // sh + 1, likewise w_new. Same dtype as
        A_prev, float64 for integer or bool inputs; float16 averages are
        summed in float32.
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

    dtype = A_prev.dtype if A_prev.dtype.kind == "f" else np.dtype(np.float64)
    work = np.promote_types(dtype, np.float32)
    # Entry [n, y, x] of tap (i, j) is A_prev[n, y * sh + i, x * sw + j].
    taps = [A_prev[:, i:i + sh * (h_new - 1) + 1:sh,
                   j:j + sw * (w_new - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]
    out = taps[0].astype(work)
    combine = np.maximum if mode == "max" else np.add
    for tap in taps[1:]:
        combine(out, tap, out=out)
    if mode == "avg":
        out /= kh * kw
    return out.astype(dtype, copy=False)
