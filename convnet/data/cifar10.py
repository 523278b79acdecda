"""CIFAR-10: the user's official archive, checked by MD5, read in memory and cached.

CIFAR-10 cannot be downloaded here: the user brings ``cifar-10-binary.tar.gz``
or ``cifar-10-python.tar.gz``. :func:`cache_cifar10` checks its MD5, reads it
without extracting anything to disk and writes ``cifar10.npz`` (uint8 images,
see :func:`convnet.data.core.save_splits`) to the cache folder. The python
archive is read with an unpickler that admits nothing but dicts, lists, bytes,
numbers and NumPy arrays.
"""
import hashlib
import io
import pickle
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from convnet.checks import check_count
from convnet.data.core import (
    ArrayUnpickler,
    DataError,
    cache_folder,
    check_labels,
    default_data_dir,
    digest_file,
)
from convnet.data.npz import read_npz
from convnet.data.splits import load_byte_splits, save_splits
from convnet.errors import MissingDataError

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

# Largest archive member read: four times a real batch (31 MB). A tar header
# states each member's size, so a larger one is refused before it is read.
CIFAR10_MAX_MEMBER_BYTES = 128 << 20

CIFAR10_HINT = ("run `convnet data cifar10 --from PATH` with your copy of "
                "cifar-10-binary.tar.gz or cifar-10-python.tar.gz")


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
        raise MissingDataError(f"CIFAR-10 archive {path} not found: {CIFAR10_HINT}")
    # MD5 is what the CIFAR-10 page publishes; it names the archive, it guards nothing.
    actual = digest_file(path, hashlib.md5(usedforsecurity=False))
    for layout, info in CIFAR10_ARCHIVES.items():
        if actual == info["md5"]:
            return layout
    expected = " or ".join(f"{info['md5']} ({info['file']})" for info in CIFAR10_ARCHIVES.values())
    raise DataError(f"checksum mismatch for {path}: expected md5 {expected}, got {actual}; "
                    "refusing to use it (a re-packed copy you trust: {skip_checksum} reads it, "
                    "checking its layout only)", fields=("skip_checksum",))


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
        Not a gzipped tar file, a member missing or larger than
        :data:`CIFAR10_MAX_MEMBER_BYTES`, or a batch with the wrong layout,
        or a pickle that asks for anything outside that format.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError(f"CIFAR-10 archive {path} not found: {CIFAR10_HINT}")
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
                    if member.size > CIFAR10_MAX_MEMBER_BYTES:
                        raise DataError(f"{path}: {member.name} declares {member.size:,} "
                                        f"bytes, more than the {CIFAR10_MAX_MEMBER_BYTES:,} "
                                        f"a CIFAR-10 batch may take")
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
    check_labels(labels, len(CIFAR10_CLASSES), where)
    return np.ascontiguousarray(images), labels


def _cifar_binary_batch(content, where):
    """Parse a binary batch of 3,073-byte records into images (n, 32, 32, 3) and labels (n,)."""
    record = 1 + int(np.prod(CIFAR10_SHAPE))
    if not content or len(content) % record:
        raise DataError(f"{where} has {len(content)} bytes, not a whole number of "
                        f"{record}-byte records (truncated or corrupt)")
    records = np.frombuffer(content, dtype=np.uint8).reshape(-1, record)
    return _cifar_images(records[:, 1:], records[:, 0], where)


def _cifar_python_batch(content, where):
    """Parse a pickled batch into images (n, 32, 32, 3) uint8 and labels (n,) int64."""
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
    """Return ``names`` as a tuple, or raise DataError unless it holds ten non-empty names."""
    names = tuple(names)
    if len(names) != len(CIFAR10_CLASSES) or not all(names):
        raise DataError(f"{where} lists {len(names)} class names {names}, expected "
                        f"{len(CIFAR10_CLASSES)} non-empty names")
    return names


def _cifar_binary_names(content, where):
    """Class names of ``batches.meta.txt``: one a line, blank lines skipped."""
    try:
        lines = content.decode("ascii").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"{where} is not ASCII text: {error}") from None
    return _cifar_class_names((line.strip() for line in lines if line.strip()), where)


def _cifar_python_names(content, where):
    """Class names of the pickled ``batches.meta``: its ``b'label_names'``."""
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


class _CifarUnpickler(ArrayUnpickler):
    """``ArrayUnpickler`` whose refusals can be told apart from a damaged pickle."""

    def find_class(self, module, name):
        """Resolve NumPy's array globals; raise _RefusedGlobal for any other."""
        if (module, name) not in self.ALLOWED:
            raise _RefusedGlobal(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def _unpickle_cifar(content, where):
    """Unpickle one file of the python archive, refusing anything outside its format.

    Only NumPy's array-rebuilding globals are resolved (``ArrayUnpickler``), so a
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
        Cache folder. Default: :func:`~convnet.data.core.default_data_dir`.
    check_md5 : bool
        Check the archive's MD5 first (:func:`check_cifar10_md5`). Skipped for an
        archive whose bytes differ from the published ones (re-packed, another
        mirror's, or built for tests): its layout is still checked as it is read.
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
    return save_splits(cache_folder(directory) / CIFAR10_FILE,
                       (arrays["X_train"], arrays["Y_train"]),
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
    return load_byte_splits(path, CIFAR10_SHAPE, len(CIFAR10_CLASSES), limit, CIFAR10_HINT)


def cached_class_names(path=None):
    """The class names stored in a cached ``cifar10.npz``, else the official ones.

    Parameters
    ----------
    path : str or Path, optional
        A file written by :func:`cache_cifar10` (its names come from the archive's
        ``batches.meta``). Default: ``default_data_dir() / "cifar10.npz"``.

    Returns
    -------
    tuple of str
        The file's ``class_names`` if the file exists and holds them, else
        :data:`CIFAR10_CLASSES`.
    """
    path = default_data_dir() / CIFAR10_FILE if path is None else Path(path).expanduser()
    if not path.is_file():
        return CIFAR10_CLASSES
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a readable .npz file: no zip directory found "
                        f"(truncated, corrupt, or another format)")
    # Only this one array is read, and like every other, checked from its header first.
    arrays = read_npz(path, CIFAR10_HINT, ("class_names",))
    if "class_names" in arrays:
        return tuple(str(item) for item in arrays["class_names"])
    return CIFAR10_CLASSES
