"""Fashion-MNIST: Debian's IDX files, verified by SHA-256, optionally cached.

Debian's ``dataset-fashion-mnist`` package installs the four IDX files under
``/usr/share/datasets/fashion-mnist/``; the SHA-256 of each decompressed file is
checked before it is used. The data has MNIST's layout (28x28 grey images, ten
classes, a 60,000 / 10,000 train / test split) and loads the same way (see
:mod:`convnet.data.mnist_layout`).
"""
import hashlib
from pathlib import Path

import numpy as np

from convnet import storage
from convnet.data import mnist_layout
from convnet.data.core import DataError, cache_folder, default_data_dir
from convnet.data.idx import IDX_FILES, find_idx_file, idx_from_bytes, read_bounded
from convnet.data.splits import CacheReport
from convnet.errors import MissingDataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILE = "fashion-mnist.npz"
# SHA-256 of the decompressed IDX files of Debian's dataset-fashion-mnist
# 0.0~git20200523.55506a9-1 (the .gz files' own hashes are in docs/data.md;
# gzip headers differ between distributions, the decompressed bytes do not).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
# Their decompressed sizes: a file is never read further than its size, so a
# corrupt or crafted one cannot take more memory than Debian's does.
FASHION_MNIST_SIZES = {
    "train-images-idx3-ubyte": 16 + 60000 * 28 * 28,
    "train-labels-idx1-ubyte": 8 + 60000,
    "t10k-images-idx3-ubyte": 16 + 10000 * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + 10000,
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

FASHION_HINT = ("install it with `apt-get install dataset-fashion-mnist`, "
                "or pass `--data PATH` pointing at a folder of its IDX files")


def verify_fashion_mnist(folder=None):
    """Check the SHA-256 of the four decompressed Fashion-MNIST IDX files.

    Parameters
    ----------
    folder : str or Path, optional
        Folder of ``train-images-idx3-ubyte`` ... ``t10k-labels-idx1-ubyte``, each
        plain or gzipped. Default: ``/usr/share/datasets/fashion-mnist/``.

    Returns
    -------
    dict of bytes
        The decompressed contents of each file, by file name without ``.gz``.

    Raises
    ------
    FileNotFoundError
        A file is missing (the message names the Debian package).
    DataError
        A file is longer than Debian's (:data:`FASHION_MNIST_SIZES`; the rest is
        not read), its checksum does not match :data:`FASHION_MNIST_SHA256`, or it
        is not gzip.
    """
    folder = FASHION_MNIST_DIR if folder is None else Path(folder).expanduser()
    files = {stem: find_idx_file(folder, stem) for stem in FASHION_MNIST_SHA256}
    for stem, found in files.items():
        if found is None:
            raise MissingDataError(f"{folder / stem}[.gz] not found: {FASHION_HINT}")
    contents = {}
    for stem, expected in FASHION_MNIST_SHA256.items():
        found = files[stem]
        content = read_bounded(found, FASHION_MNIST_SIZES[stem])
        if len(content) > FASHION_MNIST_SIZES[stem]:
            raise DataError(f"{found} holds more than the {FASHION_MNIST_SIZES[stem]:,} bytes of "
                            f"Debian's file (decompressed); refusing to use it (reinstall it with "
                            f"`apt-get install --reinstall dataset-fashion-mnist`)")
        actual = hashlib.sha256(content).hexdigest()
        if actual != expected:
            raise DataError(f"checksum mismatch for {found} (decompressed): expected sha256 "
                            f"{expected}, got {actual}; refusing to use it (reinstall it with "
                            f"`apt-get install --reinstall dataset-fashion-mnist`)")
        contents[stem] = content
    return contents


def _verified_arrays(folder):
    """The four verified IDX arrays under the keys ``X_train``, ``Y_train``, ``X_test``, ``Y_test``.

    Images are uint8 of shape (n, 28, 28), labels uint8 of shape (n,).
    """
    contents = verify_fashion_mnist(folder)
    keys = {"train_images": "X_train", "train_labels": "Y_train",
            "test_images": "X_test", "test_labels": "Y_test"}
    return {key: idx_from_bytes(contents[IDX_FILES[role]], folder / IDX_FILES[role])
            for role, key in keys.items()}


def cache_fashion_mnist(source=None, directory=None):
    """Verify Fashion-MNIST's IDX files and cache them as ``fashion-mnist.npz``.

    Parameters
    ----------
    source : str or Path, optional
        Folder of the IDX files. Default: ``/usr/share/datasets/fashion-mnist/``.
    directory : str or Path, optional
        Cache folder. Default: :func:`~convnet.data.core.default_data_dir`.

    Returns
    -------
    CacheReport
        The file holds Keras's layout (``x_train`` (60000, 28, 28) uint8,
        ``y_train``, ``x_test``, ``y_test``) and ``class_names``;
        :func:`load_fashion_mnist` reads it first and splits it as usual.
    """
    folder = FASHION_MNIST_DIR if source is None else Path(source).expanduser()
    if not folder.is_dir():
        raise MissingDataError(f"Fashion-MNIST folder {folder} not found: {FASHION_HINT}")
    arrays = _verified_arrays(folder)
    for kind in ("train", "test"):
        mnist_layout.check_pair(arrays["X_" + kind], arrays["Y_" + kind], f"{folder} ({kind})")
    validation_size = mnist_layout.VALIDATION_SIZE
    if len(arrays["X_train"]) <= validation_size:
        raise DataError(f"{folder}: {len(arrays['X_train'])} training images cannot give a "
                        f"validation split of {validation_size}")
    target = cache_folder(directory) / FASHION_MNIST_FILE
    storage.save_npz(target, x_train=arrays["X_train"], y_train=arrays["Y_train"],
                     x_test=arrays["X_test"], y_test=arrays["Y_test"],
                     class_names=np.array(FASHION_MNIST_CLASSES, dtype=str))
    sizes = {"train": len(arrays["X_train"]) - validation_size, "valid": validation_size,
             "test": len(arrays["X_test"])}
    return CacheReport(target, sizes, FASHION_MNIST_CLASSES)


def load_fashion_mnist(path=None):
    """Load Fashion-MNIST as six arrays, in the same layout as MNIST.

    Parameters
    ----------
    path : str or Path, optional
        Folder of the four IDX files (plain or gzipped), whose decompressed
        SHA-256 must match :data:`FASHION_MNIST_SHA256`, or any source
        :func:`convnet.data.mnist.load_mnist` reads. Default: the verified cache
        ``default_data_dir() / "fashion-mnist.npz"`` written by
        :func:`cache_fashion_mnist` if it exists, else
        ``/usr/share/datasets/fashion-mnist/``, where Debian's
        ``dataset-fashion-mnist`` package installs the files.

    Returns
    -------
    tuple of ndarray
        ``(X_train, Y_train, X_valid, Y_valid, X_test, Y_test)``: 50,000 / 10,000 /
        10,000 images of shape (28, 28), float32 in [0, 1), labels int64 in 0-9;
        the validation split is the last 10,000 of the 60,000 training images.

    Raises
    ------
    DataError
        A file's checksum does not match (the message names the file), or the
        layout is wrong.
    """
    if path is None:
        cached = default_data_dir() / FASHION_MNIST_FILE
        path = cached if cached.is_file() else FASHION_MNIST_DIR
    else:
        path = Path(path).expanduser()
    if path.is_dir() and find_idx_file(path, IDX_FILES["train_images"]) is not None:
        return mnist_layout.from_train_test(_verified_arrays(path), path)
    return mnist_layout.load_source(path, FASHION_HINT)
