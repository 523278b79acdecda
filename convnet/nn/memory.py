"""Memory for training: freed memory kept, buffers aligned.

**Kept.** A LeNet-5 step allocates and frees arrays of a few hundred kilobytes (the
activations and window matrices of a batch). By default glibc's ``malloc``
hands large freed blocks back to the operating system, either because they
were mapped on their own or because the free space at the top of the heap
grew past a threshold, and the next step's arrays then fault every page back
in: about 70 page faults a step at batch 32, 3 to 14 % of its time on the
development machine. Keeping that memory instead costs nothing more than
the peak a step already uses.

**Aligned.** The flat buffers the optimisers and the data-parallel steps
sweep (the parameters, gradients, moments and scratch space) start on 64-byte
boundaries: the same sweep over a buffer that started 20 bytes past a
boundary took 30 % longer.
"""
import ctypes

import numpy as np

# Alignment of the flat buffers: a cache line, and a full AVX-512 register.
ALIGNMENT = 64

# mallopt parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks below this come from the heap and are reused once freed; it is the
# largest value glibc accepts on 64-bit systems.
_MMAP_THRESHOLD_BYTES = 32 * 2 ** 20
# The heap keeps this much free space at its top before giving any back.
_TRIM_THRESHOLD_BYTES = 2 ** 30


def keep_freed_memory():
    """Make ``malloc`` keep freed blocks below 32 MiB for reuse, for the rest of the process.

    Processes forked afterwards inherit the setting. Where the C library
    has no glibc-style ``mallopt`` (macOS, Windows) nothing changes.

    Returns
    -------
    bool
        Whether the allocator accepted both settings.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return (mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) == 1
            and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) == 1)


def aligned_zeros(count, dtype):
    """Return ``count`` zeros of ``dtype`` starting on an ``ALIGNMENT``-byte boundary."""
    dtype = np.dtype(dtype)
    spare = -(-ALIGNMENT // dtype.itemsize)
    buffer = np.zeros(count + spare, dtype)
    start = (-buffer.ctypes.data % ALIGNMENT) // dtype.itemsize
    return buffer[start:start + count]


def aligned_width(width, dtype):
    """``width`` numbers of ``dtype`` rounded up to whole ``ALIGNMENT``-byte boundaries, in numbers."""
    itemsize = np.dtype(dtype).itemsize
    return -(-width * itemsize // ALIGNMENT) * ALIGNMENT // itemsize


def aligned_rows(count, width, dtype):
    """Return zeros of shape (count, width) whose every row starts on an ``ALIGNMENT``-byte boundary.

    The rows are ``aligned_width`` apart: a product written into any row
    runs as fast as into the first.
    """
    stride = aligned_width(width, dtype)
    return aligned_zeros(count * stride, dtype).reshape(count, stride)[:, :width]


def views_like(flat, arrays):
    """Split ``flat`` into consecutive views shaped like ``arrays``, in order.

    Parameters
    ----------
    flat : ndarray of shape (n,)
        A buffer at least as long as all of ``arrays`` together.
    arrays : sequence of ndarray
        Arrays whose shapes the views take.

    Returns
    -------
    list of ndarray
        Views into ``flat`` (no copies), one per array.
    """
    views, offset = [], 0
    for array in arrays:
        views.append(flat[offset:offset + array.size].reshape(array.shape))
        offset += array.size
    return views


def joined_view(arrays, writeable=False):
    """The one flat array that ``arrays`` are consecutive views of, in order; else None.

    Parameters
    ----------
    arrays : sequence of ndarray
        C-contiguous arrays of one dtype.
    writeable : bool
        Return None unless the arrays (and so the view) can be written.

    Returns
    -------
    ndarray of shape (n,) or None
        A view of the memory holding every element of ``arrays`` (n in all),
        the first array's first element first, when each array starts
        where the one before it ends inside one allocation (the views that
        :func:`views_like` makes, for instance); None otherwise, or for no
        arrays.
    """
    if not len(arrays):
        return None
    first = arrays[0]
    dtype, address = first.dtype, first.ctypes.data
    for array in arrays:
        if (not isinstance(array, np.ndarray) or array.dtype != dtype
                or not array.flags.c_contiguous or array.ctypes.data != address
                or (writeable and not array.flags.writeable)):
            return None
        address += array.nbytes
    owner = first
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    offset = first.ctypes.data - owner.ctypes.data
    if not owner.flags.c_contiguous or offset < 0 or offset + address - first.ctypes.data \
            > owner.nbytes or (writeable and not owner.flags.writeable):
        return None
    count = (address - first.ctypes.data) // dtype.itemsize
    return np.ndarray((count,), dtype, owner, offset=offset)

