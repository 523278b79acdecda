"""Members of an ``.npz`` file read with bounded memory, whatever the file claims.

``np.load`` trusts what it reads: a small file can hold a member that
inflates to gigabytes, or one whose header claims a shape of any size. Here
each member is described beforehand (``Member``: its exact shape or longest
length, the dtype kinds it may have), and ``check_directory``,
``read_header`` and ``read_data`` check the zip directory's declared size,
then the ``.npy`` header, against that description before any of the data
is read, into an array of the declared size.
"""
from dataclasses import dataclass

import numpy as np

from convnet.errors import BadCheckpointError

# A history longer than this is refused unread: 100,000 epochs of five float64 lists
# are 4 MB, more than any real run needs and far less than a crafted header could claim.
MAX_EPOCHS = 100_000
# Longest dataset or class name stored (in characters).
MAX_NAME = 64
# Longest path stored (in characters): Linux's PATH_MAX, longer than any path a system opens.
MAX_PATH = 4096
# An .npy header written by NumPy is 128 bytes or a few multiples of 64; anything
# much longer is not a NumPy header.
MAX_HEADER = 4096
# Bytes read at a time: the zip reader holds one such chunk beside the array it fills.
READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class Member:
    """What one member of an ``.npz`` file may hold.

    Attributes
    ----------
    shape : tuple of int, or None
        The exact shape expected; None for one dimension of at most
        ``max_length`` entries (histories, texts).
    kinds : str
        Allowed dtype kinds (``"f"`` float, ``"iu"`` integers, ``"U"`` text).
    finite : bool
        Refuse NaN and infinite values.
    max_length : int
        Longest length of a one-dimensional member (``shape`` None).
    max_chars : int
        Longest text of a text member (kind ``"U"``), in characters.
    """

    shape: tuple
    kinds: str
    finite: bool = False
    max_length: int = MAX_EPOCHS + 1
    max_chars: int = MAX_NAME

    def max_items(self):
        """Largest number of elements the member may hold."""
        return self.max_length if self.shape is None else int(np.prod(self.shape,
                                                                     dtype=np.int64))

    def max_itemsize(self):
        """Largest item size in bytes (float64, int64, uint8, or ``max_chars`` characters)."""
        return {"U": 4 * self.max_chars, "u": 1}.get(self.kinds, 8)


def check_directory(path, archive, members, known_only=True):
    """Return ``{key: ZipInfo}`` after checking every member's name and declared size.

    With ``known_only`` false, members not in ``members`` are skipped (left
    to a later check against the full layout) instead of refused.
    """
    found = {}
    for info in archive.infolist():
        key = info.filename[:-len(".npy")] if info.filename.endswith(".npy") else None
        if key not in members and not known_only:
            continue
        if key not in members:
            raise BadCheckpointError(f"checkpoint {path}: not a checkpoint of this model "
                                     f"(unknown member {info.filename!r})")
        if key in found:
            raise BadCheckpointError(f"checkpoint {path} holds {info.filename!r} twice")
        member = members[key]
        limit = MAX_HEADER + member.max_items() * member.max_itemsize()
        if info.file_size > limit:
            raise BadCheckpointError(f"checkpoint {path}: member {key!r} declares {info.file_size} "
                                     f"bytes, more than the {limit} it can need")
        found[key] = info
    return found


def read_header(path, archive, info, key, member):
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
                                 f"{kind_names(member.kinds)}")
    if member.shape is None:
        if len(shape) != 1 or shape[0] > member.max_length:
            raise BadCheckpointError(f"{where} has shape {shape}, expected (n,) with "
                                     f"n <= {member.max_length}")
    elif tuple(shape) != member.shape:
        raise BadCheckpointError(f"{where} has shape {tuple(shape)}, expected {member.shape}")
    size = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != info.file_size:
        raise BadCheckpointError(f"{where} holds {info.file_size} bytes, but its header "
                                 f"announces {size} (truncated or padded)")
    return dtype, tuple(shape), fortran_order, offset


def kind_names(kinds):
    names = {"f": "floating point", "i": "integer", "u": "unsigned bytes", "U": "text"}
    return " or ".join(dict.fromkeys(names[kind] for kind in kinds))


def read_data(path, archive, info, key, member, dtype, shape, fortran_order, offset):
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
