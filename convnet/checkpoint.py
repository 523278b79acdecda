"""Reading checkpoints and weights files that may have been damaged or crafted.

A checkpoint is an ``.npz`` file: a zip archive of ``.npy`` members, one per
array. ``np.load`` trusts what it reads: a small file can hold a member that
inflates to gigabytes, or one whose header claims a shape of any size. This
module reads only the members a LeNet-5 file may hold (``layout``), and for
each one checks, before reading any of its data:

- its name is known, and no name appears twice;
- the size the zip directory declares for it is at most what its expected
  shape and dtype need, plus a small header;
- its ``.npy`` header declares exactly the expected shape (histories: one
  dimension, at most ``MAX_EPOCHS + 1`` entries), a dtype of the expected kind
  (never an object, structured or complex dtype), and a data size that agrees
  with the zip directory.

Only then is the member's data read, into an array of the declared size, so
reading a file never holds more than the expected arrays in memory, whatever
the file claims. Weights, optimiser state and the learning rate must be
finite; the run settings must be in range. Every refusal is a
``BadCheckpointError`` naming the file and the member.

Layout of a training checkpoint (written by ``write``):

- the weights, under the model's names (``conv1_kernel``, ``conv1_bias``, ...);
- Adam's state: ``adam_iterations`` (int scalar), ``adam_m<i>`` and
  ``adam_v<i>`` (the shape of weight ``i``);
- ``epoch`` (int scalar, epochs completed);
- the run settings ``RUN_SETTINGS``: ``seed``, ``batch_size``, ``train_size``
  (int scalars), ``lr`` (float scalar), ``dataset`` (string scalar);
- the history: ``history_<key>`` for each of ``HISTORY_KEYS`` (``epoch + 1``
  float64 entries, epoch 0 being the untrained network) and
  ``history_epoch_seconds`` (``epoch`` entries).

A weights file (``convnet train --backend tf1|keras``) holds only the weights.
"""
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convnet import storage
from convnet.errors import BadCheckpointError

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
RUN_SETTINGS = ("seed", "batch_size", "lr", "dataset", "train_size")
# A history longer than this is refused unread: 100,000 epochs of five float64 lists
# are 4 MB, more than any real run needs and far less than a crafted header could claim.
MAX_EPOCHS = 100_000
# Seeds are kept below 2**32, the range every generator of NumPy and TensorFlow accepts.
SEED_LIMIT = 2 ** 32
# Longest dataset name stored (in characters).
MAX_NAME = 64
# An .npy header written by NumPy is 128 bytes or a few multiples of 64; anything
# much longer is not a NumPy header.
MAX_HEADER = 4096
# Bytes read at a time: the zip reader holds one such chunk beside the array it fills.
READ_CHUNK = 1 << 16


class _Missing(BadCheckpointError):
    """Required members are missing; ``missing`` lists their keys."""

    def __init__(self, path, missing):
        super().__init__(f"checkpoint {path} lacks {', '.join(missing)}")
        self.missing = missing


@dataclass(frozen=True)
class Member:
    """What one member of a checkpoint may hold.

    Attributes
    ----------
    shape : tuple of int, or None
        The exact shape expected; None for a history (one dimension of at
        most ``MAX_EPOCHS + 1`` entries).
    kinds : str
        Allowed dtype kinds (``"f"`` float, ``"iu"`` integers, ``"U"`` text).
    finite : bool
        Refuse NaN and infinite values.
    """

    shape: tuple
    kinds: str
    finite: bool = False

    def max_items(self):
        """Largest number of elements the member may hold."""
        return MAX_EPOCHS + 1 if self.shape is None else int(np.prod(self.shape, dtype=np.int64))

    def max_itemsize(self):
        """Largest item size in bytes (float64, int64, or ``MAX_NAME`` characters)."""
        return 4 * MAX_NAME if self.kinds == "U" else 8


def layout(weight_shapes):
    """Return every member a checkpoint of these weights may hold, by key.

    Parameters
    ----------
    weight_shapes : dict of str to tuple
        The model's weight names and shapes, in the model's order.

    Returns
    -------
    dict of str to Member
    """
    members = {name: Member(tuple(shape), "f", finite=True) for name, shape in weight_shapes.items()}
    for index, shape in enumerate(weight_shapes.values()):
        members[f"adam_m{index}"] = Member(tuple(shape), "f", finite=True)
        members[f"adam_v{index}"] = Member(tuple(shape), "f", finite=True)
    for key in ("adam_iterations", "epoch", "seed", "batch_size", "train_size"):
        members[key] = Member((), "iu")
    members["lr"] = Member((), "f", finite=True)
    members["dataset"] = Member((), "U")
    for key in HISTORY_KEYS + ("epoch_seconds",):
        members[f"history_{key}"] = Member(None, "f")
    return members


def read(path, weight_shapes, keys=None, required=()):
    """Read members of a checkpoint after checking every member's declared shape and size.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file.
    weight_shapes : dict of str to tuple
        The model's weight names and shapes (see ``layout``).
    keys : iterable of str, optional
        The members to read; all members present by default. The others are
        checked from their headers but not read.
    required : iterable of str
        Members that must be present.

    Returns
    -------
    dict of str to ndarray
        The members read, with the shapes ``layout`` gives them.

    Raises
    ------
    BadCheckpointError
        Naming the file (and the member) if the file is missing, a folder,
        not a zip archive, or holds a member that is unknown, repeated,
        larger than expected, of the wrong shape or dtype, truncated, or
        (weights, optimiser state, learning rate) not finite.
    """
    path = Path(path)
    if path.is_dir():
        raise BadCheckpointError(f"checkpoint {path} is a folder, not a file "
                                 f"(give the .npz inside it, e.g. {path / 'checkpoint.npz'})")
    if not path.is_file():
        raise BadCheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise BadCheckpointError(f"checkpoint {path} is not an .npz file (not a zip archive)")
    members = layout(weight_shapes)
    try:
        with zipfile.ZipFile(path) as archive:
            found = _check_directory(path, archive, members)
            missing = [key for key in required if key not in found]
            if missing:
                raise _Missing(path, missing)
            headers = {key: _read_header(path, archive, info, key, members[key])
                       for key, info in found.items()}
            wanted = found if keys is None else [key for key in keys if key in found]
            return {key: _read_data(path, archive, found[key], key, members[key], *headers[key])
                    for key in wanted}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as error:
        if isinstance(error, BadCheckpointError):
            raise
        raise BadCheckpointError(f"checkpoint {path} is not a readable .npz file ({error})") from None


def _check_directory(path, archive, members):
    """Return ``{key: ZipInfo}`` after checking every member's name and declared size."""
    found = {}
    for info in archive.infolist():
        key = info.filename[:-len(".npy")] if info.filename.endswith(".npy") else None
        if key not in members:
            raise BadCheckpointError(f"checkpoint {path}: not a LeNet-5 checkpoint (unknown "
                                     f"member {info.filename!r})")
        if key in found:
            raise BadCheckpointError(f"checkpoint {path} holds {info.filename!r} twice")
        member = members[key]
        limit = MAX_HEADER + member.max_items() * member.max_itemsize()
        if info.file_size > limit:
            raise BadCheckpointError(f"checkpoint {path}: member {key!r} declares {info.file_size} "
                                     f"bytes, more than the {limit} it can need")
        found[key] = info
    return found


def _read_header(path, archive, info, key, member):
    """Check member ``key``'s .npy header; return ``(dtype, shape, fortran_order, offset)``."""
    with archive.open(info) as handle:
        try:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(
                    handle, max_header_size=MAX_HEADER)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(
                    handle, max_header_size=MAX_HEADER)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except ValueError as error:
            raise BadCheckpointError(f"checkpoint {path}: member {key!r} is not a valid "
                                     f".npy array ({error})") from None
        offset = handle.tell()
    where = f"checkpoint {path}: member {key!r}"
    if dtype.kind not in member.kinds or dtype.fields is not None or dtype.subdtype is not None \
            or dtype.itemsize > member.max_itemsize():
        raise BadCheckpointError(f"{where} has dtype {dtype}, expected "
                                 f"{_kind_names(member.kinds)}")
    if member.shape is None:
        if len(shape) != 1 or shape[0] > MAX_EPOCHS + 1:
            raise BadCheckpointError(f"{where} has shape {shape}, expected (n,) with "
                                     f"n <= {MAX_EPOCHS + 1}")
    elif tuple(shape) != member.shape:
        raise BadCheckpointError(f"{where} has shape {tuple(shape)}, expected {member.shape}")
    size = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != info.file_size:
        raise BadCheckpointError(f"{where} holds {info.file_size} bytes, but its header "
                                 f"announces {size} (truncated or padded)")
    return dtype, tuple(shape), fortran_order, offset


def _kind_names(kinds):
    names = {"f": "floating point", "i": "integer", "u": "integer", "U": "text"}
    return " or ".join(dict.fromkeys(names[kind] for kind in kinds))


def _read_data(path, archive, info, key, member, dtype, shape, fortran_order, offset):
    """Read member ``key``'s data (already checked) into an array of its declared shape."""
    count = int(np.prod(shape, dtype=np.int64))
    flat = np.empty(count, dtype=dtype)
    view = memoryview(flat).cast("B")
    with archive.open(info) as handle:
        handle.read(offset)
        done = 0
        while done < len(view):
            got = handle.readinto(view[done:done + READ_CHUNK])
            if not got:
                raise BadCheckpointError(f"checkpoint {path}: member {key!r} is truncated")
            done += got
    array = flat.reshape(shape, order="F" if fortran_order else "C")
    if member.finite and not np.isfinite(array).all():
        raise BadCheckpointError(f"checkpoint {path}: member {key!r} holds NaN or infinite "
                                 "values")
    return array


def read_weights(path, weight_shapes):
    """Read only the weights of a checkpoint or weights file.

    Returns
    -------
    list of ndarray
        The weights in the order of ``weight_shapes``, with those shapes.
    """
    names = list(weight_shapes)
    try:
        arrays = read(path, weight_shapes, keys=names, required=names)
    except _Missing as error:
        raise BadCheckpointError(f"checkpoint {path}: not a LeNet-5 checkpoint "
                                 f"(no {error.missing[0]!r})") from None
    return [arrays[name] for name in names]


def read_training_state(path, weight_shapes):
    """Read a whole training checkpoint and check that it can be resumed.

    Returns
    -------
    weights : list of ndarray
        In the order of ``weight_shapes``.
    optimizer_state : dict
        ``"iterations"``, ``"m0"``, ``"v0"``, ... as ``Adam.load_state`` takes it.
    epoch : int
        Epochs completed.
    settings : dict
        The ``RUN_SETTINGS`` as Python values.
    history : dict of str to list of float
        ``HISTORY_KEYS`` (``epoch + 1`` entries each) and ``"epoch_seconds"``.

    Raises
    ------
    BadCheckpointError
        As ``read``; also if the training state is missing or out of range
        (a negative epoch, say), naming the file and the member.
    """
    names = list(weight_shapes)
    state = [f"adam_{kind}{index}" for index in range(len(names)) for kind in "mv"]
    history_keys = [f"history_{key}" for key in HISTORY_KEYS + ("epoch_seconds",)]
    scalars = list(RUN_SETTINGS) + ["epoch", "adam_iterations"]
    try:
        arrays = read(path, weight_shapes, required=names + state + scalars + history_keys)
    except _Missing as error:
        raise BadCheckpointError(f"checkpoint {path} has no training state "
                                 f"({', '.join(error.missing)} missing): it cannot be "
                                 "resumed") from None
    values = {key: arrays[key].item() for key in scalars}
    where = f"checkpoint {path}:"
    for key, low, high in (("epoch", 0, MAX_EPOCHS), ("adam_iterations", 0, None),
                           ("seed", 0, SEED_LIMIT - 1), ("batch_size", 1, None),
                           ("train_size", 1, None)):
        if values[key] < low or (high is not None and values[key] > high):
            expected = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise BadCheckpointError(f"{where} {key} is {values[key]}, expected {expected}")
    if not values["lr"] > 0:
        raise BadCheckpointError(f"{where} lr is {values['lr']}, expected a positive number")
    epoch = values["epoch"]
    history = {key: arrays[f"history_{key}"].tolist() for key in HISTORY_KEYS + ("epoch_seconds",)}
    for key, values_list in history.items():
        expected = epoch if key == "epoch_seconds" else epoch + 1
        if len(values_list) != expected:
            raise BadCheckpointError(f"{where} history_{key} has {len(values_list)} entries, "
                                     f"expected {expected} for epoch {epoch}")
    optimizer_state = {key[len("adam_"):]: arrays[key] for key in state + ["adam_iterations"]}
    settings = {key: values[key] for key in RUN_SETTINGS}
    return [arrays[name] for name in names], optimizer_state, epoch, settings, history


def write(path, weights, optimizer_state, epoch, settings, history):
    """Write a training checkpoint atomically, in the layout ``read_training_state`` reads.

    Parameters
    ----------
    path : str or Path
        Destination ``.npz``.
    weights : dict of str to ndarray
        The model's weights by name, in the model's order.
    optimizer_state : dict of str to ndarray
        ``Adam.state()``: ``"iterations"``, ``"m0"``, ``"v0"``, ...
    epoch : int
        Epochs completed.
    settings : dict
        The ``RUN_SETTINGS``.
    history : dict of str to list of float
        ``HISTORY_KEYS`` and ``"epoch_seconds"``, stored as float64 arrays.
    """
    arrays = dict(weights)
    arrays.update({f"adam_{key}": value for key, value in optimizer_state.items()})
    arrays["epoch"] = np.int64(epoch)
    for key in RUN_SETTINGS:
        arrays[key] = np.asarray(settings[key])
    for key, values in history.items():
        arrays[f"history_{key}"] = np.asarray(values, dtype=np.float64)
    storage.save_npz(path, **arrays)
