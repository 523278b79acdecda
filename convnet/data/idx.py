"""IDX files, the format of the original MNIST distribution and of Fashion-MNIST.

The format: two zero bytes, a type byte (0x08 = unsigned byte, the only type
either dataset uses), a byte giving the number of dimensions, each dimension as
a big-endian uint32, then the values in C order. A folder of the four files
(training and test images and labels) may hold each plain or gzipped.

The header is read first and checked against the limits of
:mod:`convnet.data.bounds` and against what the file can hold (a plain file's
size; a gzipped file's compressed size times the inflation limit) before any
value is read; the values are then read into an array of the declared size,
and a gzipped file is never decompressed further than that (plus a bounded
look for extra bytes).
"""
import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from convnet.data.bounds import BLOCK_BYTES, check_declared, check_inflation, read_into
from convnet.data.core import DataError

# The four files of a dataset folder, by role, without the optional ``.gz``.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
UNSIGNED_BYTE = 0x08
# At most this many bytes past the declared end are counted (a block of BLOCK_BYTES at a
# time) to say how long a padded file is.
MAX_EXTRA_COUNTED = 16 << 20
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def find_idx_file(folder, stem):
    """Return ``folder/stem`` or ``folder/stem.gz``, whichever is a file, else None."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx(path):
    """Read one IDX file (plain or gzipped) of unsigned bytes, its header checked first.

    Parameters
    ----------
    path : str or Path
        An ``*-idx1-ubyte`` (labels) or ``*-idx3-ubyte`` (images) file, optionally
        ending in ``.gz``.

    Returns
    -------
    ndarray of dtype uint8
        Shape ``(n,)`` for labels, ``(n, rows, cols)`` for images.

    Raises
    ------
    DataError
        Bad magic number, unsupported type, dimensions beyond the limits of
        :mod:`convnet.data.bounds`, or a byte count that does not match the
        dimensions (a truncated or padded file), found before the values are read.
    """
    path = Path(path)
    gzipped = path.suffix == ".gz"
    try:
        with (gzip.open if gzipped else open)(path, "rb") as handle:
            first = handle.read(4)
            if len(first) == 4 and first[:2] == b"\x00\x00":
                first += handle.read(4 * first[3])
            shape, header = parse_header(first, path)
            expected = header + math.prod(shape)
            if not gzipped and path.stat().st_size != expected:
                raise _size_error(path, path.stat().st_size, shape, expected)
            check_declared(str(path), shape, np.uint8)
            if gzipped:
                check_inflation(str(path), expected, path.stat().st_size)
            values = _read_values(handle, path, shape, header)
            if gzipped:
                extra = _count_extra(handle)
                if extra:
                    raise _size_error(path, expected + extra, shape, expected,
                                      at_least=extra >= MAX_EXTRA_COUNTED)
    except GZIP_ERRORS as error:
        raise DataError(f"{path} is not a readable gzip file (truncated?): {error}") from None
    return values


def read_bounded(path, limit):
    """The first ``limit + 1`` bytes of ``path``, decompressed when its name ends in ``.gz``.

    A result longer than ``limit`` tells the caller the file holds more than
    ``limit`` bytes, without decompressing the rest of it.
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            return handle.read(limit + 1)
    except GZIP_ERRORS as error:
        raise DataError(f"{path} is not a readable gzip file (truncated?): {error}") from None


def parse_header(content, path):
    """Check the IDX header at the start of ``content``; return ``(shape, header_bytes)``.

    Parameters
    ----------
    content : bytes
        The start of the file: at least its header, or the whole file.
    path : Path
        Where the bytes came from, for error messages.

    Returns
    -------
    shape : tuple of int
        The dimensions the header declares.
    header_bytes : int
        Length of the header, ``4 + 4 * len(shape)``.
    """
    if len(content) < 4 or content[:2] != b"\x00\x00":
        raise DataError(f"{path} does not start with an IDX magic number "
                        f"(first bytes {content[:4].hex() or 'missing'})")
    if content[2] != UNSIGNED_BYTE:
        raise DataError(f"{path} holds IDX type 0x{content[2]:02x}; only unsigned bytes "
                        f"(0x08) are supported")
    ndim = content[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(content) < header:
        raise DataError(f"{path}: IDX header announces {ndim} dimensions but is truncated")
    shape = tuple(int(size) for size in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    return shape, header


def idx_from_bytes(content, path):
    """Parse the decompressed bytes of the IDX file ``path``.

    Parameters
    ----------
    content : bytes
        The whole file, header included.
    path : Path
        Where the bytes came from, for error messages.

    Returns
    -------
    ndarray of dtype uint8
        The values, in the shape the header gives (see :func:`read_idx`).
    """
    shape, header = parse_header(content, path)
    expected = header + math.prod(shape)
    if len(content) != expected:
        raise _size_error(path, len(content), shape, expected)
    check_declared(str(path), shape, np.uint8)
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape).copy()


def _size_error(path, size, shape, expected, at_least=False):
    """The DataError for a file of ``size`` bytes whose header ``shape`` needs ``expected``."""
    held = f"at least {size}" if at_least else f"{size}"
    return DataError(f"{path} has {held} bytes, but an IDX file of shape {shape} "
                     f"needs {expected} (truncated or corrupt)")


def _read_values(handle, path, shape, header):
    """Read the ``math.prod(shape)`` values after the header into a uint8 array of ``shape``."""
    size = math.prod(shape)
    values = np.empty(size, dtype=np.uint8)
    done = read_into(handle, values)
    if done < size:
        raise _size_error(path, header + done, shape, header + size)
    return values.reshape(shape)


def _count_extra(handle):
    """Count the bytes left in ``handle``, stopping once ``MAX_EXTRA_COUNTED`` are seen."""
    extra = 0
    while extra < MAX_EXTRA_COUNTED:
        block = handle.read(min(BLOCK_BYTES, MAX_EXTRA_COUNTED - extra))
        if not block:
            break
        extra += len(block)
    return extra
