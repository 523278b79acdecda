"""Keras's padding, where it differs from the curriculum's: how much, and padding an array.

The curriculum's ``'same'`` (``convnet.nn.ops.padding_amounts``) keeps the
input's size at every stride. Keras's gives ``ceil(size / stride)`` outputs,
the smaller half of the padding before: with a stride above one the two
differ. The layers of :mod:`convnet.nn.layers` pad explicitly by Keras's
amounts (:func:`keras_pads`, :func:`pad_with`) and call the operations with
``'valid'``; the gradient comes back through :func:`crop`. The spec checks
and the benchmarks' PyTorch and JAX twins read the same amounts.
"""
import numpy as np

from convnet.nn import ops


def keras_padding(size, kernel, stride, padding):
    """Return the padding Keras adds before and after one spatial axis.

    Parameters
    ----------
    size, kernel, stride : int
        Input length, window length and stride along the axis.
    padding : {'same', 'valid'}
        Keras's padding mode.

    Returns
    -------
    tuple of int
        ``(before, after)``. ``'valid'``: ``(0, 0)``, output
        ``floor((size - kernel) / stride) + 1``. ``'same'``: output
        ``ceil(size / stride)``, total padding
        ``max((ceil(size / stride) - 1) * stride + kernel - size, 0)`` split
        with the smaller half before. With stride 1 this is the curriculum's
        ``'same'`` (``convnet.nn.ops.padding_amounts``); with a larger stride
        the curriculum keeps the input's size instead.
    """
    if padding == "valid":
        return 0, 0
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def keras_output_size(size, kernel, stride, padding):
    """Return the output length along one axis under Keras's padding (see :func:`keras_padding`)."""
    before, after = keras_padding(size, kernel, stride, padding)
    return ops.output_size(size + before + after, kernel, stride, "valid")


def keras_pads(shape, window, stride, padding):
    """Return ``((top, bottom), (left, right))`` of :func:`keras_padding` for inputs (m, h, w, c).

    Written out axis by axis: this runs on every forward pass.
    """
    return (keras_padding(shape[1], window[0], stride[0], padding),
            keras_padding(shape[2], window[1], stride[1], padding))


def pad_with(x, pads, fill):
    """Return ``x`` (m, h, w, c) with ``pads = ((top, bottom), (left, right))`` cells of ``fill``.

    Returns
    -------
    ndarray of shape (m, h + top + bottom, w + left + right, c)
        A new array of ``x``'s dtype.
    """
    (top, bottom), (left, right) = pads
    m, h, w, c = x.shape
    padded = np.full((m, h + top + bottom, w + left + right, c), fill, dtype=x.dtype)
    padded[:, top:top + h, left:left + w] = x
    return padded


def crop(padded, pads):
    """Return the interior of ``padded`` (m, h', w', c): the inverse of :func:`pad_with`.

    Returns
    -------
    ndarray of shape (m, h' - top - bottom, w' - left - right, c)
        A view of ``padded``.
    """
    (top, bottom), (left, right) = pads
    return padded[:, top:padded.shape[1] - bottom, left:padded.shape[2] - right]
