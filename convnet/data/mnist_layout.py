"""The layout MNIST and Fashion-MNIST share, and the three forms it is read from.

Both are 28x28 grey images in ten classes. The loaders return
``(X_train, Y_train, X_valid, Y_valid, X_test, Y_test)``: images float32 of shape
``(n, 28, 28)`` with values in ``[0, 1)``, labels int64 of shape ``(n,)`` in 0-9.
They read:

- the curriculum's ``MNIST.npz`` (the six keys above, already in that layout);
- a Keras-style ``mnist.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``;
  uint8 images);
- a folder of the four IDX files (see :mod:`convnet.data.idx`).

Sources stored as bytes are divided by 256, not 255, so their range
``[0, 255/256]`` matches the curriculum's file exactly. Sources with a 60,000 /
10,000 train / test split give their **last** :data:`VALIDATION_SIZE` training
images as the validation split, which is how the curriculum's 50k/10k/10k split
was made.
"""
import numpy as np

from convnet.data.core import CURRICULUM_KEYS, SPLITS, DataError, refuse_non_finite
from convnet.data.idx import IDX_FILES, find_idx_file, read_idx
from convnet.data.npz import npz_keys, read_npz
from convnet.errors import MissingDataError

MNIST_FILE = "MNIST.npz"
KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")
VALIDATION_SIZE = 10000
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


def load_source(path, hint):
    """Load the six arrays from any of the three forms (see the module's description).

    Parameters
    ----------
    path : Path
        An ``.npz`` file, a folder of IDX files, or a folder holding ``MNIST.npz``.
    hint : str
        How to obtain the data, for the message when ``path`` is missing.

    Returns
    -------
    tuple of ndarray
        ``(X_train, Y_train, X_valid, Y_valid, X_test, Y_test)``: images float32 of
        shape ``(n, 28, 28)`` in ``[0, 1)``, labels int64 of shape ``(n,)``.
    """
    if path.is_dir():
        if find_idx_file(path, IDX_FILES["train_images"]) is None and (path / MNIST_FILE).exists():
            return load_npz_source(path / MNIST_FILE, hint)
        return load_idx_folder(path, hint)
    if not path.exists():
        raise MissingDataError(f"data file {path} not found: {hint}")
    return load_npz_source(path, hint)


def load_npz_source(path, hint):
    """Load the curriculum's or Keras' ``.npz``; see :func:`load_source`.

    Only the arrays of the layout found are read, so other arrays the file
    may hold cost nothing.
    """
    keys = npz_keys(path, hint)
    if all(key in keys for key in CURRICULUM_KEYS):
        arrays = read_npz(path, hint, CURRICULUM_KEYS)
        check_splits(arrays, path)
        return tuple(arrays[key] for key in CURRICULUM_KEYS)
    if all(key in keys for key in KERAS_KEYS):
        arrays = read_npz(path, hint, KERAS_KEYS)
        splits = {"X_train": arrays["x_train"], "Y_train": arrays["y_train"],
                  "X_test": arrays["x_test"], "Y_test": arrays["y_test"]}
        return from_train_test(splits, path)
    raise DataError(f"{path} has keys {sorted(keys)}; expected the curriculum's "
                    f"{', '.join(CURRICULUM_KEYS)} or Keras' {', '.join(KERAS_KEYS)}")


def load_idx_folder(folder, hint):
    """Load a folder of the four IDX files; see :func:`load_source`."""
    if not folder.exists():
        raise MissingDataError(f"data folder {folder} not found: {hint}")
    files = {}
    for role, stem in IDX_FILES.items():
        found = find_idx_file(folder, stem)
        if found is None:
            raise MissingDataError(f"{folder / stem}[.gz] not found: {hint}")
        files[role] = found
    arrays = {
        "X_train": read_idx(files["train_images"]), "Y_train": read_idx(files["train_labels"]),
        "X_test": read_idx(files["test_images"]), "Y_test": read_idx(files["test_labels"]),
    }
    return from_train_test(arrays, folder)


def from_train_test(arrays, path):
    """Scale byte images and carve the validation split off the end of the training split.

    Parameters
    ----------
    arrays : dict of ndarray
        ``X_train`` uint8 (n_train, 28, 28), ``Y_train`` (n_train,), ``X_test``
        uint8 (n_test, 28, 28), ``Y_test`` (n_test,).
    path : Path
        Where they came from, for error messages.

    Returns
    -------
    tuple of ndarray
        The six arrays (see :func:`load_source`); the validation split is the last
        :data:`VALIDATION_SIZE` training images.
    """
    validation_size = VALIDATION_SIZE
    for kind in ("train", "test"):
        images = arrays["X_" + kind]
        if images.dtype != np.uint8:
            raise DataError(f"{path}: {kind} images have dtype {images.dtype}, expected uint8")
        check_pair(images, arrays["Y_" + kind], f"{path} ({kind})")
    X_train, Y_train = arrays["X_train"], arrays["Y_train"]
    if len(X_train) <= validation_size:
        raise DataError(f"{path}: {len(X_train)} training images cannot give a validation "
                        f"split of {validation_size}")
    cut = len(X_train) - validation_size
    splits = {
        "X_train": X_train[:cut], "Y_train": Y_train[:cut],
        "X_valid": X_train[cut:], "Y_valid": Y_train[cut:],
        "X_test": arrays["X_test"], "Y_test": arrays["Y_test"],
    }
    result = {}
    for key, array in splits.items():
        if key.startswith("X_"):
            result[key] = array.astype(np.float32) / np.float32(256)
        else:
            result[key] = array.astype(np.int64)
    return tuple(result[key] for key in CURRICULUM_KEYS)


def check_pair(images, labels, where):
    """Check one split's shapes, label dtype and label range (not the image dtype).

    ``images`` must have shape (n, 28, 28) and ``labels`` shape (n,), integers in 0-9.
    """
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{where}: images have shape {images.shape}, expected (n, 28, 28)")
    if labels.shape != (len(images),):
        raise DataError(f"{where}: labels have shape {labels.shape}, expected "
                        f"({len(images)},) to match the images")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels have dtype {labels.dtype}, expected integers")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{where}: labels range from {labels.min()} to {labels.max()}, "
                        f"expected 0 to {NUM_CLASSES - 1}")


def check_splits(arrays, path):
    """Check the curriculum layout in place; casts labels to int64 and images to float32.

    Parameters
    ----------
    arrays : dict of ndarray
        The six curriculum keys: images of shape (n, 28, 28), floating, finite, in
        ``[0, 1)``; labels of shape (n,), integers in 0-9. Replaced by their cast copies.
    path : str or Path
        Where they came from, for error messages.
    """
    for split in SPLITS:
        images, labels = arrays["X_" + split], arrays["Y_" + split]
        where = f"{path} ({split})"
        check_pair(images, labels, where)
        if not np.issubdtype(images.dtype, np.floating):
            raise DataError(f"{where}: images have dtype {images.dtype}, expected float32")
        refuse_non_finite(images, path, "X_" + split)
        if images.size and (images.min() < 0 or images.max() >= 1):
            raise DataError(f"{where}: pixel values range from {images.min()} to "
                            f"{images.max()}, expected [0, 1)")
        arrays["X_" + split] = images.astype(np.float32, copy=False)
        arrays["Y_" + split] = labels.astype(np.int64, copy=False)
