"""What every dataset shares: the cache folder, checksums, safe reading and the cached layout.

Each dataset module (:mod:`convnet.data.mnist`, :mod:`~convnet.data.fashion_mnist`,
:mod:`~convnet.data.cifar10`, :mod:`~convnet.data.course_h5`) verifies its source
with the helpers here, writes its cache through :func:`convnet.storage.save_npz`
(atomic, never pickled) and reads every ``.npz`` back with ``allow_pickle=False``
through :func:`read_npz`. Pickles, where a source has them, are opened only with
:class:`ArrayUnpickler`, which rebuilds NumPy arrays and nothing else.

The cached layout of the colour datasets (:func:`save_splits`,
:func:`load_byte_splits`): the six curriculum keys ``X_train`` ... ``Y_test``
with uint8 images of shape ``(n, h, w, 3)`` and int64 labels of shape ``(n,)``,
plus ``class_names``.
"""
import collections
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from convnet import storage
from convnet.checks import check_count
from convnet.errors import BadDataError, MissingDataError

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
def read_npz(path, hint):
    """Read every array of an ``.npz`` file, turning any read failure into DataError.

    Parameters
    ----------
    path : Path
        The file.
    hint : str
        How to obtain the file, appended to the message when it is missing.

    Returns
    -------
    dict of ndarray
        Every array of the file by key; nothing is unpickled.
    """
    if not path.exists():
        raise MissingDataError(f"data file {path} not found: {hint}")
    # np.load guesses the format from the first bytes and blames pickles for anything else.
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not an .npz file: no zip directory found "
                        f"(truncated, corrupt, or another format)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError) as error:
        raise DataError(f"{path} is not a readable .npz file (corrupt or truncated?): "
                        f"{error}") from None
    except OSError as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise DataError(f"{path} could not be read as an .npz file: {error}") from None


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


# ---------------------------------------------------------------- the cached layout
CacheReport = collections.namedtuple("CacheReport", "path sizes class_names")
CacheReport.__doc__ = """What a ``cache_*`` function wrote.

path : Path
    The ``.npz`` file written.
sizes : dict
    Number of images in each split: ``{"train": n, "valid": n, "test": n}``.
class_names : tuple of str
    The names of the classes, in the order of the labels.
"""


def save_splits(target, train, test, validation_size, names, first):
    """Carve a validation split off ``train`` and write the six arrays with the class names.

    Parameters
    ----------
    target : Path
        The ``.npz`` file to write (atomically).
    train, test : tuple of ndarray
        ``(images, labels)``: uint8 images of shape (n, h, w, c), labels of shape (n,).
    validation_size : int
        Number of training images moved to the validation split.
    names : sequence of str
        The class names, stored as ``class_names``.
    first : bool
        Take the validation images from the start of the training split,
        otherwise from its end.

    Returns
    -------
    CacheReport
    """
    check_count("validation_size", validation_size)
    (X, Y), (X_test, Y_test) = train, test
    if len(X) <= validation_size:
        raise DataError(f"{len(X)} training images cannot give a validation split of "
                        f"{validation_size}")
    cut = validation_size if first else len(X) - validation_size
    valid = slice(0, cut) if first else slice(cut, None)
    kept = slice(cut, None) if first else slice(0, cut)
    # Images stay uint8 in the cache: a quarter of float32's size.
    storage.save_npz(target, X_train=X[kept], Y_train=Y[kept], X_valid=X[valid],
                     Y_valid=Y[valid], X_test=X_test, Y_test=Y_test,
                     class_names=np.array(names, dtype=str))
    sizes = {"train": len(X) - validation_size, "valid": validation_size, "test": len(X_test)}
    return CacheReport(Path(target), sizes, tuple(names))


def load_byte_splits(path, shape, num_classes, limit, hint):
    """Read a cache written by :func:`save_splits` as float32 images in [0, 1] (bytes / 255).

    Parameters
    ----------
    path : Path
        The cached ``.npz``.
    shape : tuple of int
        Shape of one image, ``(h, w, c)``.
    num_classes : int
        Labels must lie in ``0 .. num_classes - 1``.
    limit : int or None
        Keep only the first ``limit`` training images (converted alone, to save memory).
    hint : str
        How to make the file, for the message when it is missing.

    Returns
    -------
    tuple of ndarray
        ``(X_train, Y_train, X_valid, Y_valid, X_test, Y_test)``: images float32 of
        shape ``(n, *shape)``, labels int64 of shape ``(n,)``.
    """
    if not path.exists():
        raise MissingDataError(f"data file {path} not found: {hint}")
    arrays = read_npz(path, hint)
    missing = [key for key in CURRICULUM_KEYS if key not in arrays]
    if missing:
        raise DataError(f"{path} lacks the keys {', '.join(missing)}")
    result = []
    for split in SPLITS:
        images, labels = arrays["X_" + split], arrays["Y_" + split]
        check_byte_images(images, labels, shape, num_classes, f"{path} ({split})")
        if split == "train" and limit is not None:
            images, labels = images[:limit], labels[:limit]
        # uint8 images are finite and in [0, 255] by construction, so these lie in [0, 1].
        result += [images.astype(np.float32) / np.float32(255), labels.astype(np.int64)]
    return tuple(result)
