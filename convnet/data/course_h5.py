"""The step-by-step course's HDF5 files, ``happy`` and ``signs``, checked and cached.

They cannot be downloaded here: the user brings the two files of each
(``train_happy.h5`` and ``test_happy.h5``, ``train_signs.h5`` and
``test_signs.h5``). :func:`cache_course_h5` reads them with h5py, checks every
array and writes ``happy.npz`` or ``signs.npz`` (uint8 images, see
:func:`convnet.data.splits.save_splits`) to the cache folder. Each dataset is
checked before it is read (see :mod:`convnet.data.hdf5`): stored in the file
itself, and no larger than what the file holds.
"""
from pathlib import Path

import numpy as np

from convnet.checks import check_count
from convnet.data.core import DataError, cache_folder, check_byte_images, default_data_dir
from convnet.data.hdf5 import find_dataset, read_dataset
from convnet.data.splits import load_byte_splits, save_splits
from convnet.errors import BadOptionError, MissingDataError

# Two files each, 64x64x3 uint8 images; "validation" is how many of the last
# training images form the validation split (the course keeps none).
COURSE_H5 = {
    "happy": {"files": {"train": "train_happy.h5", "test": "test_happy.h5"},
              "classes": ("not happy", "happy"), "validation": 100},
    "signs": {"files": {"train": "train_signs.h5", "test": "test_signs.h5"},
              "classes": ("0", "1", "2", "3", "4", "5"), "validation": 120},
}
COURSE_H5_SHAPE = (64, 64, 3)


def _course_info(name):
    """The entry of :data:`COURSE_H5` for ``name``; BadOptionError for any other name."""
    if name not in COURSE_H5:
        raise BadOptionError(f"name must be one of {', '.join(COURSE_H5)}, received {name!r}")
    return COURSE_H5[name]


def _course_hint(name):
    """How to make the cache of ``name``, for the messages about a missing file."""
    files = " and ".join(COURSE_H5[name]["files"].values())
    return f"bring {files} and run `convnet data {name} --from DIR`"


def read_course_h5(name, folder):
    """Read the step-by-step course's two HDF5 files of ``name`` from ``folder``.

    Parameters
    ----------
    name : str
        ``"happy"`` (``train_happy.h5``, ``test_happy.h5``; 2 classes) or
        ``"signs"`` (``train_signs.h5``, ``test_signs.h5``; 6 classes).
    folder : str or Path
        Folder holding both files. Each has ``{split}_set_x`` uint8 of shape
        (n, 64, 64, 3), ``{split}_set_y`` integers of shape (n,) and
        ``list_classes``, with ``split`` ``train`` or ``test``.

    Returns
    -------
    dict of ndarray
        ``X_train`` (n_train, 64, 64, 3) uint8, ``Y_train`` (n_train,) int64,
        ``X_test``, ``Y_test`` likewise.

    Raises
    ------
    FileNotFoundError
        The folder or a file is missing.
    DataError
        Not an HDF5 file, a key missing, a dataset whose data lies in another
        file or that declares more than the file holds, or wrong shapes,
        dtypes or labels.
    ImportError
        h5py is not installed.
    """
    info = _course_info(name)
    try:
        import h5py
    except ImportError:
        raise ImportError("reading the course's HDF5 files needs h5py: "
                          "pip install h5py (or the project's `hdf5` extra)") from None
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise MissingDataError(f"folder {folder} not found: {_course_hint(name)}")
    num_classes = len(info["classes"])
    arrays = {}
    for split, filename in info["files"].items():
        path = folder / filename
        if not path.is_file():
            raise MissingDataError(f"{path} not found: {_course_hint(name)}")
        keys = (f"{split}_set_x", f"{split}_set_y", "list_classes")
        try:
            with h5py.File(path, "r") as handle:
                found = {key: find_dataset(handle, key, path) for key in keys}
                missing = [key for key, dataset in found.items() if dataset is None]
                if missing:
                    raise DataError(f"{path} lacks the datasets {', '.join(missing)} "
                                    f"(it has {', '.join(sorted(handle)) or 'none'})")
                images, labels = (read_dataset(found[key], key, path) for key in keys[:2])
                # Only the number of class names is checked, so they are never read.
                classes = found["list_classes"].shape or ()
        except OSError as error:
            raise DataError(f"{path} is not a readable HDF5 file: {error}") from None
        where = f"{path}"
        check_byte_images(images, labels, COURSE_H5_SHAPE, num_classes, where)
        if classes != (num_classes,):
            raise DataError(f"{where}: list_classes has shape {classes}, expected "
                            f"({num_classes},)")
        arrays["X_" + split], arrays["Y_" + split] = images, labels.astype(np.int64)
    return arrays


def cache_course_h5(name, folder, directory=None, validation_size=None):
    """Read the course's HDF5 files of ``name`` and cache them as ``{name}.npz``.

    Parameters
    ----------
    name : str
        ``"happy"`` or ``"signs"``.
    folder : str or Path
        Folder holding the two files (see :func:`read_course_h5`).
    directory : str or Path, optional
        Cache folder. Default: :func:`~convnet.data.core.default_data_dir`.
    validation_size : int, optional
        The **last** ``validation_size`` training images form the validation split
        (the course keeps none). Default: 100 for happy (500 / 100 / 150), 120 for
        signs (960 / 120 / 120).

    Returns
    -------
    CacheReport
    """
    info = _course_info(name)
    arrays = read_course_h5(name, folder)
    validation_size = info["validation"] if validation_size is None else validation_size
    return save_splits(cache_folder(directory) / f"{name}.npz",
                       (arrays["X_train"], arrays["Y_train"]),
                       (arrays["X_test"], arrays["Y_test"]), validation_size,
                       info["classes"], first=False)


def load_course_h5(name, path=None, limit=None):
    """Load ``"happy"`` or ``"signs"`` as six arrays.

    Parameters
    ----------
    name : str
        ``"happy"`` or ``"signs"``.
    path : str or Path, optional
        The cache written by :func:`cache_course_h5` (default
        ``default_data_dir() / "{name}.npz"``), or a folder holding the two HDF5
        files, read directly and split the same way.
    limit : int, optional
        Keep only the first ``limit`` training images.

    Returns
    -------
    X_train : ndarray of shape (n_train, 64, 64, 3), float32 in [0, 1] (bytes / 255)
    Y_train : ndarray of shape (n_train,), int64 (0-1 for happy, 0-5 for signs)
    X_valid, Y_valid : the last 100 (happy) or 120 (signs) training images, likewise
    X_test, Y_test : the test file's images and labels, likewise
    """
    info = _course_info(name)
    if limit is not None:
        check_count("limit", limit)
    path = default_data_dir() / f"{name}.npz" if path is None else Path(path).expanduser()
    if path.is_dir():
        arrays = read_course_h5(name, path)
        cut = len(arrays["X_train"]) - info["validation"]
        if cut < 1:
            raise DataError(f"{path}: {len(arrays['X_train'])} training images cannot give a "
                            f"validation split of {info['validation']}")
        train = slice(0, cut if limit is None else min(cut, limit))
        splits = [(arrays["X_train"][train], arrays["Y_train"][train]),
                  (arrays["X_train"][cut:], arrays["Y_train"][cut:]),
                  (arrays["X_test"], arrays["Y_test"])]
        return tuple(item for images, labels in splits
                     for item in (images.astype(np.float32) / np.float32(255), labels))
    return load_byte_splits(path, COURSE_H5_SHAPE, len(info["classes"]), limit,
                            _course_hint(name))
