"""HDF5 datasets read only from their own file, and only as much as the file can hold.

HDF5 lets a file point elsewhere and declare more than it stores. Reading a
dataset with h5py follows all of it, so a few kilobytes can bring another
file's bytes on this machine into the cache, or gigabytes of fill values or
inflated chunks into memory. Before a dataset is read, :func:`find_dataset`
and :func:`read_dataset` refuse:

- a name reached through an external link, directly or through a soft link
  (a soft link within the file is followed);
- a virtual dataset (its data is taken from other files) or one with external
  storage (its raw data lives in other files);
- a dtype that is not plain numbers (variable-length data is read from
  anywhere in the file, any number of times);
- a shape beyond the limits of :mod:`convnet.data.bounds`;
- contiguous or compact data larger than what the file stores for it or
  than the file itself;
- chunked data larger than :data:`~convnet.data.bounds.MAX_INFLATION` times
  what its chunks store (chunks never written read as fill values), chunks
  larger than the data, filters other than gzip, shuffle and fletcher32, and
  any gzip chunk that inflates beyond its nominal size (HDF5 grows its buffer
  for such a chunk without limit): each is inflated once, at most to that
  size, to check.
"""
import math
import zlib

import numpy as np

from convnet.data.bounds import INFLATION_ALLOWANCE, check_declared, check_inflation, describe
from convnet.data.core import DataError

# Soft links followed in a row before a name is refused as a loop.
MAX_SOFT_LINKS = 8
# The fletcher32 filter appends a 4-byte checksum to each chunk.
CHECKSUM_BYTES = 4


def find_dataset(handle, key, path):
    """The dataset stored under ``key`` in the open file ``handle``, or None.

    Parameters
    ----------
    handle : h5py.File
        The open file.
    key : str
        A name in its root group.
    path : Path
        The file, for messages.

    Returns
    -------
    h5py.Dataset or None
        None when nothing, or something other than a dataset, is found there.

    Raises
    ------
    DataError
        ``key`` leads to another file through an external link, or through
        more than ``MAX_SOFT_LINKS`` soft links in a row.
    """
    import h5py  # only where the course's files are read: h5py is an optional extra
    node = _follow(handle, handle, key, f"{path}: {key}", 0)
    return node if isinstance(node, h5py.Dataset) else None


def _follow(handle, group, name, where, depth):
    """Walk ``name`` from ``group`` (from the root when absolute), never leaving the file."""
    import h5py
    node = handle if name.startswith("/") else group
    for part in (part for part in name.split("/") if part and part != "."):
        if not isinstance(node, h5py.Group):
            return None
        link = node.get(part, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            raise DataError(f"{where} leads to {link.path} in another file, {link.filename}; "
                            f"only datasets stored in the file itself are read")
        if isinstance(link, h5py.SoftLink):
            if depth >= MAX_SOFT_LINKS:
                raise DataError(f"{where} goes through more than {MAX_SOFT_LINKS} soft links "
                                f"(a loop?); expected a dataset stored in the file")
            node = _follow(handle, node, link.path, where, depth + 1)
        elif isinstance(link, h5py.HardLink):
            node = node[part]
        else:
            raise DataError(f"{where} is a link of an unknown kind; expected a dataset stored "
                            f"in the file")
        if node is None:
            return None
    return node


def read_dataset(dataset, key, path):
    """Read a dataset found by :func:`find_dataset` after checking it against the file.

    Parameters
    ----------
    dataset : h5py.Dataset
        The dataset.
    key : str
        Its name, for messages.
    path : Path
        The file it is in.

    Returns
    -------
    ndarray
        Its values, of its declared shape and dtype.

    Raises
    ------
    DataError
        One line naming the file, the dataset and what was expected (see the
        module's description).
    """
    from h5py import h5d
    where = f"{path}: dataset {key}"
    if dataset.is_virtual:
        raise DataError(f"{where} is a virtual dataset, whose data comes from other files; "
                        f"only data stored in the file itself is read")
    if dataset.external:
        names = ", ".join(str(entry[0]) for entry in dataset.external)
        raise DataError(f"{where} keeps its data in another file ({names}); only data stored "
                        f"in the file itself is read")
    shape, dtype = dataset.shape or (), dataset.dtype
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise DataError(f"{where} has dtype {dtype}, expected plain numbers")
    size = check_declared(where, shape, dtype)
    plist = dataset.id.get_create_plist()
    stored = dataset.id.get_storage_size()
    file_size = path.stat().st_size
    if plist.get_layout() == h5d.CHUNKED:
        check_inflation(where, size, stored)
        _check_chunks(dataset, plist, size, where)
    elif size > min(stored, file_size):
        raise DataError(f"{where} declares {describe(shape, dtype)}: {size:,} bytes, but the file "
                        f"stores {stored:,} bytes for it ({file_size:,} in all)")
    return np.asarray(dataset[()])


def _check_chunks(dataset, plist, size, where):
    """Refuse unknown filters, chunks larger than the data, and chunks that over-inflate."""
    from h5py import h5z
    known = {h5z.FILTER_DEFLATE: "gzip", h5z.FILTER_SHUFFLE: "shuffle",
             h5z.FILTER_FLETCHER32: "fletcher32"}
    filters = [plist.get_filter(index)[0] for index in range(plist.get_nfilters())]
    for code in filters:
        if code not in known:
            raise DataError(f"{where} is filtered with HDF5 filter {code}; only "
                            f"{', '.join(known.values())} are read")
    chunk = math.prod(plist.get_chunk()) * dataset.dtype.itemsize
    if chunk > max(size, INFLATION_ALLOWANCE):
        raise DataError(f"{where} declares chunks of {chunk:,} bytes for {size:,} bytes of data")
    if h5z.FILTER_DEFLATE not in filters:
        return
    deflate = 1 << filters.index(h5z.FILTER_DEFLATE)
    limit = chunk + CHECKSUM_BYTES * filters.count(h5z.FILTER_FLETCHER32)
    for index in range(dataset.id.get_num_chunks()):
        offset = dataset.id.get_chunk_info(index).chunk_offset
        mask, raw = dataset.id.read_direct_chunk(offset)
        if mask & deflate:       # HDF5 stored this chunk without compressing it
            continue
        try:
            inflated = len(zlib.decompressobj().decompress(raw, limit + 1))
        except zlib.error as error:
            raise DataError(f"{where}: chunk {offset} is not valid gzip data ({error})") from None
        if inflated > limit:
            raise DataError(f"{where}: chunk {offset} inflates beyond the {chunk:,} bytes of a "
                            f"chunk")
