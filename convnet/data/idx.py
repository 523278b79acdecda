"""IDX files, the format of the original MNIST distribution and of Fashion-MNIST.

The format: two zero bytes, a type byte (0x08 = unsigned byte, the only type
either dataset uses), a byte giving the number of dimensions, each dimension as
a big-endian uint32, then the values in C order. A folder of the four files
(training and test images and labels) may hold each plain or gzipped.
"""
import gzip
import zlib
from pathlib import Path

import numpy as np

from convnet.data.core import DataError

# The four files of a dataset folder, by role, without the optional ``.gz``.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_file(folder, stem):
    """Return ``folder/stem`` or ``folder/stem.gz``, whichever is a file, else None."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx(path):
    """Read one IDX file (plain or gzipped) of unsigned bytes.

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
        Bad magic number, unsupported type, or a byte count that does not match
        the dimensions (a truncated or padded file).
    """
    path = Path(path)
    return idx_from_bytes(read_maybe_gzipped(path), path)


def read_maybe_gzipped(path):
    """Return the bytes of ``path``, decompressed when its name ends in ``.gz``."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            return handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{path} is not a readable gzip file (truncated?): {error}") from None


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
    if len(content) < 4 or content[:2] != b"\x00\x00":
        raise DataError(f"{path} does not start with an IDX magic number "
                        f"(first bytes {content[:4].hex() or 'missing'})")
    if content[2] != 0x08:
        raise DataError(f"{path} holds IDX type 0x{content[2]:02x}; only unsigned bytes "
                        f"(0x08) are supported")
    ndim = content[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(content) < header:
        raise DataError(f"{path}: IDX header announces {ndim} dimensions but is truncated")
    shape = tuple(int(size) for size in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(content) != expected:
        raise DataError(f"{path} has {len(content)} bytes, but an IDX file of shape {shape} "
                        f"needs {expected} (truncated or corrupt)")
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape).copy()
