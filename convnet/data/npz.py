"""``.npz`` files read within bounded memory: each array checked from its header first.

An ``.npz`` file is a zip archive of ``.npy`` members, one per array.
``np.load`` believes what a member declares: a few megabytes of deflated
zeros can declare a million images and inflate to gigabytes before any check
runs. :func:`read_npz` reads only the arrays asked for, and for each one,
before allocating anything:

- the zip directory: no array twice, no more stored bytes than the file has,
  a stored (uncompressed) member as large as its expanded size, a compressed
  one expanding at most :data:`~convnet.data.bounds.MAX_INFLATION` times;
- the ``.npy`` header (a few hundred bytes, read through the member's stream):
  a plain dtype (no objects, which would need pickle, nor records), a shape
  within :data:`~convnet.data.bounds.MAX_IMAGES` and
  :data:`~convnet.data.bounds.MAX_ARRAY_BYTES`, and no more data than the
  member holds.

Only then is the data read, in blocks, into an array of the declared size.
Nothing is ever unpickled.
"""
import contextlib
import zipfile
import zlib

import numpy as np

from convnet.data.bounds import check_declared, check_inflation, describe, read_into
from convnet.data.core import DataError
from convnet.errors import MissingDataError

SUFFIX = ".npy"
# NumPy writes headers of a few hundred bytes; np.load itself refuses longer than this.
MAX_HEADER_BYTES = 10_000
# What a damaged archive raises while it is read; DataError is a ValueError, so it is
# let through first wherever these are caught.
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError, RuntimeError,
               NotImplementedError)


def npz_keys(path, hint):
    """The names of the arrays an ``.npz`` file holds, from its zip directory alone.

    Parameters
    ----------
    path : Path
        The ``.npz`` file; only its zip directory is read, no array.
    hint : str
        What the message of a missing file tells the user to do to obtain it.

    Returns
    -------
    tuple of str
        The member names ending in ``.npy``, without that suffix, in file order.
    """
    with _opened(path, hint) as archive:
        return tuple(_members(path, archive))


def read_npz(path, hint, keys=None):
    """Read arrays of an ``.npz`` file, each checked from its header before its data.

    Parameters
    ----------
    path : Path
        The file.
    hint : str
        How to obtain the file, appended to the message when it is missing.
    keys : iterable of str, optional
        The arrays to read; the others are neither checked nor read. Default:
        every array of the file.

    Returns
    -------
    dict of ndarray
        The arrays asked for that the file holds, by key, each of the shape
        and dtype its header declares; nothing is unpickled.

    Raises
    ------
    FileNotFoundError
        No such file (a ``MissingDataError`` naming ``hint``).
    DataError
        Not a zip file, damaged, or an array that declares more than the
        limits of :mod:`convnet.data.bounds` or than its member holds.
    """
    with _opened(path, hint) as archive:
        members = _members(path, archive)
        wanted = members if keys is None else [key for key in keys if key in members]
        with _failures_as_data_error(path):
            return {key: _read_member(path, archive, key, members[key]) for key in wanted}


@contextlib.contextmanager
def _opened(path, hint):
    """``with _opened(path, hint) as archive``: the zip archive, its failures as DataError."""
    if not path.exists():
        raise MissingDataError(f"data file {path} not found: {hint}")
    # np.load guesses the format from the first bytes and blames pickles for anything else.
    if path.is_dir() or not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not an .npz file: no zip directory found "
                        f"(truncated, corrupt, or another format)")
    with _failures_as_data_error(path):
        archive = zipfile.ZipFile(path)
    with archive:
        yield archive


@contextlib.contextmanager
def _failures_as_data_error(path):
    """``with _failures_as_data_error(path)``: what reading a damaged ``path`` raises, as DataError.

    The DataErrors of the checks pass unchanged; the zip module's and the
    decompressor's errors (``READ_ERRORS``) and the system's (``OSError``)
    become one line naming ``path``.
    """
    try:
        yield
    except DataError:
        raise
    except READ_ERRORS as error:
        raise DataError(f"{path} is not a readable .npz file (corrupt or truncated?): "
                        f"{error}") from None
    except OSError as error:
        raise DataError(f"{path} could not be read as an .npz file: {error}") from None


def _members(path, archive):
    """``{key: ZipInfo}`` of the file's arrays, after checking the zip directory.

    The stored sizes the directory declares must fit in the file (members that
    overlap, to be read many times over, do not), and a member stored
    uncompressed must declare the same size twice.
    """
    members, stored = {}, 0
    for info in archive.infolist():
        stored += info.compress_size
        if not info.filename.endswith(SUFFIX):
            continue
        key = info.filename[:-len(SUFFIX)]
        if key in members:
            raise DataError(f"{path} holds the array {key} twice")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise DataError(f"{path}: array {key} is stored uncompressed in "
                            f"{info.compress_size:,} bytes but declares {info.file_size:,}")
        members[key] = info
    size = path.stat().st_size
    if stored > size:
        raise DataError(f"{path}: its zip directory declares {stored:,} stored bytes, more than "
                        f"the file's {size:,} (members overlap, or the file is truncated)")
    return members


def _read_header(handle, where):
    """Read a member's ``.npy`` header; return ``(shape, fortran_order, dtype)``."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(handle, max_header_size=MAX_HEADER_BYTES)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(handle, max_header_size=MAX_HEADER_BYTES)
    except ValueError as error:
        raise DataError(f"{where} is not a .npy array: {error}") from None
    raise DataError(f"{where} is in .npy format version {version[0]}.{version[1]}; "
                    f"versions 1.0 and 2.0 are read")


def _read_member(path, archive, key, info):
    """Check member ``key`` from its directory entry and header, then read its data.

    Returns
    -------
    ndarray
        Of the shape and dtype the header declares.
    """
    where = f"{path}: array {key}"
    with archive.open(info) as handle:
        # The header is the first few hundred bytes, whatever the member declares.
        shape, fortran_order, dtype = _read_header(handle, where)
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise DataError(f"{where} has dtype {dtype}, expected numbers or text (objects "
                            f"would need pickle, which is never used)")
        size = check_declared(where, shape, dtype)
        if info.compress_type != zipfile.ZIP_STORED:
            check_inflation(where, info.file_size, info.compress_size)
        held = info.file_size - handle.tell()
        if size > held:
            raise DataError(f"{where} declares {describe(shape, dtype)}: {size:,} bytes, but its "
                            f"member holds {held:,} (truncated, or built to exhaust memory)")
        return _read_data(handle, shape, fortran_order, dtype, size, where)


def _read_data(handle, shape, fortran_order, dtype, size, where):
    """Fill an array of the declared ``shape`` and ``dtype`` from ``handle``, a block at a time."""
    if dtype.itemsize == 0:
        return np.empty(shape, dtype=dtype)
    raw = np.empty(size, dtype=np.uint8)
    done = read_into(handle, raw)
    if done < size:
        raise DataError(f"{where} ends after {done:,} of its {size:,} bytes (truncated)")
    return raw.view(dtype).reshape(shape, order="F" if fortran_order else "C")
