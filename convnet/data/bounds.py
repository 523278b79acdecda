"""How large a data array may be, checked from its header before any of its data is read.

A data file states the shape and dtype of each array before the values: an
``.npy`` header inside an ``.npz``, the dimensions of an IDX file, an HDF5
dataset's dataspace. A small file can state anything, so every loader
compares what a header declares with three limits and with what the file can
actually hold before it allocates or reads anything:

- :data:`MAX_IMAGES`: at most 240,000 entries along the first axis (images,
  or labels). The largest split of a real dataset is 60,000 images (the
  training files of MNIST and Fashion-MNIST; CIFAR-10's holds 50,000), so
  this is four times that.
- :data:`MAX_ARRAY_BYTES`: at most 1 GiB for one array. The largest real
  array is MNIST's training images as float32, 157 MB (CIFAR-10's as bytes
  take 138 MB); the limit leaves room for a float64 copy of the same.
- :data:`MAX_INFLATION` and :data:`INFLATION_ALLOWANCE`: compressed data may
  expand to at most 100 times its stored size, plus 4 MiB. MNIST's arrays
  deflate about 13 to 1; a stream of zeros, the usual way to build a file
  that exhausts memory, deflates 1,000 to 1. The allowance lets small and
  very regular arrays through (sorted labels deflate several hundred to 1).

Each refusal is a one-line :class:`~convnet.data.core.DataError` naming the
file, the array, what it declares and what was expected. An array that
passes is read by :func:`read_into`, a block at a time.
"""
import math

import numpy as np

from convnet.data.core import DataError

MAX_IMAGES = 240_000
MAX_ARRAY_BYTES = 1 << 30
MAX_INFLATION = 100
INFLATION_ALLOWANCE = 4 << 20
# Bytes read at a time into an array of declared size: the only buffer a reader holds
# beside that array.
BLOCK_BYTES = 1 << 20


def describe(shape, dtype):
    """``"shape (n, 28, 28) float32"``: how messages name a declared array."""
    return f"shape {tuple(shape)} {np.dtype(dtype)}"


def declared_bytes(shape, dtype):
    """Bytes an array of ``shape`` and ``dtype`` takes, as a Python int (never overflows)."""
    return math.prod(int(size) for size in shape) * np.dtype(dtype).itemsize


def check_declared(where, shape, dtype):
    """Refuse a declared array beyond :data:`MAX_IMAGES` or :data:`MAX_ARRAY_BYTES`.

    Parameters
    ----------
    where : str
        The file and array, as messages name them (``"data.npz: array X_train"``).
    shape : tuple of int
        The shape the header declares; ``shape[0]`` counts images or labels.
    dtype : numpy.dtype
        The dtype the header declares.

    Returns
    -------
    int
        The number of bytes the array takes.

    Raises
    ------
    DataError
        One line naming ``where``, the declared shape and the limit exceeded.
    """
    if len(shape) and shape[0] > MAX_IMAGES:
        raise DataError(f"{where} declares {describe(shape, dtype)}: {shape[0]:,} entries "
                        f"along its first axis, more than the {MAX_IMAGES:,} (images, labels or "
                        f"names) a data array may hold")
    size = declared_bytes(shape, dtype)
    if size > MAX_ARRAY_BYTES:
        raise DataError(f"{where} declares {describe(shape, dtype)}: {size:,} bytes, more than "
                        f"the {MAX_ARRAY_BYTES:,} a data array may take")
    return size


def check_inflation(where, size, stored):
    """Refuse compressed data that would expand beyond :data:`MAX_INFLATION` times its size.

    Parameters
    ----------
    where : str
        The file and array, for the message.
    size : int
        Bytes the data takes once expanded, as declared.
    stored : int
        Bytes it takes in the file.

    Raises
    ------
    DataError
        ``size`` exceeds ``MAX_INFLATION * stored + INFLATION_ALLOWANCE``.
    """
    limit = MAX_INFLATION * stored + INFLATION_ALLOWANCE
    if size > limit:
        raise DataError(f"{where} would expand {stored:,} stored bytes to {size:,}, more than "
                        f"the {limit:,} expected of real data ({MAX_INFLATION} to 1, plus "
                        f"{INFLATION_ALLOWANCE:,} bytes)")


def read_into(handle, raw):
    """Fill ``raw`` from the binary stream ``handle``, a block of ``BLOCK_BYTES`` at a time.

    Reading straight into the array, a block at a time, holds no copy of
    the data beside it, however large the declared array.

    Parameters
    ----------
    handle : binary file object
        Positioned at the first byte of the data.
    raw : ndarray of shape (n,), uint8
        The array to fill, already of the size the header declares.

    Returns
    -------
    int
        The bytes read: ``n``, or fewer where the stream ended first (the
        caller says what a short file means).
    """
    view = memoryview(raw)
    done = 0
    while done < raw.size:
        got = handle.readinto(view[done:done + BLOCK_BYTES])
        if not got:
            break
        done += got
    return done
