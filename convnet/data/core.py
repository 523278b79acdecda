"""What every dataset shares: the error, the cache folder, checksums and the checks.

Each dataset module (:mod:`convnet.data.mnist`, :mod:`~convnet.data.fashion_mnist`,
:mod:`~convnet.data.cifar10`, :mod:`~convnet.data.course_h5`) verifies its source
with the helpers here, writes its cache through :func:`convnet.storage.save_npz`
(atomic, never pickled) and reads every ``.npz`` back through
:func:`convnet.data.npz.read_npz`, which checks each array's header before its
data. Pickles, where a source has them, are opened only with
:class:`ArrayUnpickler`, which rebuilds NumPy arrays and nothing else.
"""
import os
import pickle
from pathlib import Path

import numpy as np

from convnet.errors import BadDataError

SPLITS = ("train", "valid", "test")
CURRICULUM_KEYS = ("X_train", "Y_train", "X_valid", "Y_valid", "X_test", "Y_test")


class DataError(BadDataError):
    """A data file exists but is unreadable, corrupt, or not the expected layout."""


# ---------------------------------------------------------------- locations
def default_data_dir():
    """Folder of the dataset caches.

    Returns
    -------
    Path
        ``$CONVNET_DATA_DIR`` if set and not empty, else ``$XDG_CACHE_HOME/convnet``,
        else ``~/.cache/convnet``.
    """
    explicit = os.environ.get("CONVNET_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "convnet"
    return Path.home() / ".cache" / "convnet"


def cache_folder(directory):
    """``directory`` as a Path (``~`` expanded), or :func:`default_data_dir` when None."""
    return Path(directory).expanduser() if directory is not None else default_data_dir()


def say(log, line):
    """Send ``line`` to ``log`` unless it is None (the library prints nothing itself)."""
    if log is not None:
        log(line)


# ---------------------------------------------------------------- checksums
def digest_file(path, digest):
    """Feed the bytes of ``path`` to the hashlib object ``digest``; return its hex digest.

    Read in blocks, so an archive of hundreds of megabytes is never held whole.
    """
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(name, actual, expected):
    """Raise DataError naming ``name`` and both digests unless ``actual == expected``."""
    if actual != expected:
        raise DataError(f"checksum mismatch for {name}: expected sha256 {expected}, "
                        f"got {actual}; refusing to use it")


# ---------------------------------------------------------------- reading
class ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild NumPy arrays and nothing else."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Protocol-2 pickles written by Python 3 spell byte strings with this call.
        ("_codecs", "encode"),
    })

    def find_class(self, module, name):
        """Resolve only the few NumPy globals an array pickle needs."""
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module == "numpy.core.multiarray":
            # NumPy 2 renamed numpy.core to numpy._core; old pickles still name the former.
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


# ---------------------------------------------------------------- checks
def refuse_non_finite(array, path, key):
    """Raise DataError naming ``path``, ``key`` and the first index holding NaN or infinity.

    A single NaN pixel would make every weight NaN within an epoch of training.
    """
    finite = np.isfinite(array)
    if not finite.all():
        index = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise DataError(f"{path}: {key}[{', '.join(map(str, index))}] is "
                        f"{array[index]}; images must hold finite numbers")


def check_labels(labels, num_classes, where):
    """Raise DataError unless ``labels`` are integers of shape (n,) in 0 .. num_classes - 1."""
    if labels.ndim != 1:
        raise DataError(f"{where}: labels have shape {labels.shape}, expected (n,)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels have dtype {labels.dtype}, expected integers")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: labels range from {labels.min()} to {labels.max()}, "
                        f"expected 0 to {num_classes - 1}")


def check_byte_images(images, labels, shape, num_classes, where):
    """Raise DataError unless ``images`` is uint8 of shape (n, *shape) with n labels in range."""
    if images.dtype != np.uint8:
        raise DataError(f"{where}: images have dtype {images.dtype}, expected uint8")
    if images.ndim != 1 + len(shape) or images.shape[1:] != tuple(shape):
        raise DataError(f"{where}: images have shape {images.shape}, expected "
                        f"(n, {', '.join(map(str, shape))})")
    check_labels(labels, num_classes, where)
    if len(labels) != len(images):
        raise DataError(f"{where}: {len(labels)} labels for {len(images)} images")
