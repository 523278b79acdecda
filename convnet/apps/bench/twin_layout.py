"""Keras's geometry of a spec's convolutions and poolings, for the PyTorch and JAX builders.

Both builders, and the FLOP count, need the same three facts of a window
layer on a given input: its padding (Keras's ``'same'`` gives ``ceil(size /
stride)`` outputs, the smaller half of the padding first: the NumPy layers'
own amounts, :mod:`convnet.nn.keras_padding`), its output shape, and, for
average pooling with padding, how many real cells each window holds.
"""
from typing import NamedTuple

import numpy as np

from convnet.nn.keras_padding import keras_output_size, keras_padding


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


def _geometry(window, stride, padding, shape, channels):
    window, stride = tuple(window), tuple(stride)
    axes = list(zip(shape[:2], window, stride))
    pads = tuple(keras_padding(size, k, s, padding) for size, k, s in axes)
    hw = tuple(keras_output_size(size, k, s, padding) for size, k, s in axes)
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
