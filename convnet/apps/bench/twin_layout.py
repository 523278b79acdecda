"""Keras's geometry of a spec's convolutions and poolings, for the PyTorch and JAX builders.

Both builders, and the FLOP count, need the same three facts of a window
layer on a given input: its padding (Keras's ``'same'`` gives ``ceil(size /
stride)`` outputs, the smaller half of the padding first), its output shape,
and, for average pooling with padding, how many real cells each window holds.
"""
from typing import NamedTuple

import numpy as np


class Geometry(NamedTuple):
    """Where a window layer reads.

    ``window`` and ``stride`` are (rows, columns); ``pads`` is
    ``((top, bottom), (left, right))``; ``output_shape`` is (h, w, c);
    ``counts`` (pooling only, else None) is an ndarray of shape (h, w):
    the real cells of each window.
    """

    window: tuple
    stride: tuple
    pads: tuple
    output_shape: tuple
    counts: object = None


def keras_extent(size, kernel, stride, padding):
    """Output length along one axis: ``ceil(size / stride)`` for 'same', else valid windows."""
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def keras_pads(size, kernel, stride, padding):
    """``(before, after)`` Keras pads along one axis: the smaller half first."""
    if padding == "valid":
        return 0, 0
    total = max((keras_extent(size, kernel, stride, padding) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _geometry(window, stride, padding, shape, channels):
    window, stride = tuple(window), tuple(stride)
    pads = tuple(keras_pads(size, k, s, padding) for size, k, s in zip(shape[:2], window, stride))
    hw = tuple(keras_extent(size, k, s, padding) for size, k, s in zip(shape[:2], window, stride))
    return Geometry(window, stride, pads, hw + (channels,))


def conv_geometry(entry, shape):
    """The :class:`Geometry` of a normalised Conv2D entry on inputs of ``shape`` (h, w, c)."""
    return _geometry(entry["kernel"], entry["stride"], entry["padding"], shape,
                     entry["filters"])


def pool_geometry(entry, shape):
    """The :class:`Geometry` of a normalised pooling entry on inputs of ``shape`` (h, w, c)."""
    geometry = _geometry(entry["pool"], entry["stride"], entry["padding"], shape, shape[2])
    (top, bottom), (left, right) = geometry.pads
    real = np.zeros((shape[0] + top + bottom, shape[1] + left + right))
    real[top:top + shape[0], left:left + shape[1]] = 1
    (kh, kw), (sh, sw) = geometry.window, geometry.stride
    h, w = geometry.output_shape[:2]
    counts = np.array([[real[y * sh:y * sh + kh, x * sw:x * sw + kw].sum() for x in range(w)]
                       for y in range(h)])
    return geometry._replace(counts=counts)
