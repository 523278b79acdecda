"""Atomic file writes: a crash never leaves a partial file under the final name.

Every file the project writes (the MNIST cache, checkpoints, histories, figures)
goes through these helpers: the bytes are written to a temporary file in the
destination's folder, flushed to disk, then renamed over the final name, which
POSIX guarantees to be atomic.
"""
import contextlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from convnet.errors import StorageError

# Temporary files are named ".<final name>.<random>.tmp<final suffix>": the
# pattern below finds the ones a killed process left behind.
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]*)?$")


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
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                                   dir=path.parent)
        os.close(fd)
        tmp = Path(tmp)
        # mkstemp creates files readable by the owner only; give the final file the
        # permissions an ordinary open() would have.
        os.chmod(tmp, 0o666 & ~_current_umask())
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if isinstance(error, StorageError):
            raise
        # The system's message ("[Errno 28] No space left on device") names no file.
        failure = StorageError(f"cannot write {path}: {error.strerror or error}")
        failure.errno = error.errno
        raise failure from error
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def stale_temporary_files(folder):
    """Return the temporary files ``atomic_path`` left in ``folder`` (a killed write's).

    Parameters
    ----------
    folder : str or Path
        A folder files are written into; need not exist.

    Returns
    -------
    list of Path
        Sorted. Only call this while no other process writes into ``folder``
        (``convnet.training.runfolder`` holds its lock), or a write in progress is listed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(entry for entry in folder.iterdir()
                  if _TEMPORARY.match(entry.name) and entry.is_file())


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
