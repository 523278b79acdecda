"""The cached layout of the colour datasets: written once, read back within bounded memory.

CIFAR-10 and the course's HDF5 files are cached as ``.npz`` files holding the
six curriculum keys ``X_train`` ... ``Y_test``, uint8 images of shape
``(n, h, w, 3)`` and int64 labels of shape ``(n,)``, plus ``class_names``
(:func:`save_splits`). :func:`load_byte_splits` reads the six arrays back
through :func:`convnet.data.npz.read_npz` and scales the images to [0, 1].
"""
import collections
from pathlib import Path

import numpy as np

from convnet import storage
from convnet.checks import check_count
from convnet.data.core import CURRICULUM_KEYS, SPLITS, DataError, check_byte_images
from convnet.data.npz import read_npz

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
    arrays = read_npz(path, hint, CURRICULUM_KEYS)
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
