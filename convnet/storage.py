"""Atomic file writes: a crash never leaves a partial file under the final name.

Every file the project writes (the MNIST cache, checkpoints, histories, figures)
goes through these helpers: the bytes are written to a temporary file in the
destination's folder, flushed to disk, then renamed over the final name, which
POSIX guarantees to be atomic.
"""
import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path that is renamed to ``path`` if the block succeeds.

    Parameters
    ----------
    path : str or Path
        Final destination. Its parent folder is created if missing.

    Yields
    ------
    Path
        A fresh temporary file name beside ``path`` (same suffix, so tools that
        look at the extension, like ``np.savez`` or matplotlib, behave). If the
        block raises, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp creates files readable by the owner only; give the final file the
    # permissions an ordinary open() would have.
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text):
    """Write ``text`` (str, UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def save_npz(path, compressed=False, **arrays):
    """Save named arrays to an ``.npz`` file atomically (never pickled objects).

    Parameters
    ----------
    path : str or Path
        Destination file name, normally ending in ``.npz``.
    compressed : bool
        Use ``np.savez_compressed`` instead of ``np.savez``.
    **arrays : ndarray
        The arrays to store, by key. Object arrays are refused, so the file can
        always be read back with ``allow_pickle=False``.
    """
    for key, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {key!r} has dtype object, which would need pickle")
    saver = np.savez_compressed if compressed else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        saver(handle, **arrays)
