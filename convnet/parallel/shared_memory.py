"""Memory the ranks of a job on one machine share: the exchange of a data-parallel step.

Messages between ranks on one machine go through memory anyway: MPI copies
a message into a buffer both processes map, then out of it, a piece at a
time, with a handshake per piece. Ranks that share the memory itself skip
the messages. Each writes its micro-batches' gradients into rows every
rank can read, and the weights themselves live in such memory, one copy
that each rank updates its part of in place; two barriers a step order
the writes before the reads (the figures before and after:
docs/performance.md, "Ranks that share memory").

The memory is MPI's own (``MPI.Win.Allocate_shared``), so it needs no
name in the file system and goes away with the job, however it ends.
"""
import numpy as np

from convnet.nn.memory import ALIGNMENT, aligned_width


def on_one_machine(comm):
    """True if every rank of ``comm`` runs on this machine (they can share memory)."""
    from mpi4py import MPI
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        alone = node.Get_size() == comm.Get_size()
    finally:
        node.Free()
    # Every rank must take the same road, even if the machines were mixed.
    return comm.allreduce(alone, op=MPI.LAND)


class SharedRows:
    """An array of ``rows`` x ``width`` numbers, and ``rows`` x ``tail`` doubles, every rank maps.

    Collective: every rank of ``comm`` (all on one machine, see
    ``on_one_machine``) creates it with the same arguments.

    Parameters
    ----------
    comm : mpi4py communicator
        The ranks sharing the memory.
    rows, width : int
        Shape of ``values``.
    dtype : numpy dtype
        Of ``values``.
    tail : int
        Doubles per row in ``tails`` (0: none).

    Attributes
    ----------
    values : ndarray of shape (rows, width)
    tails : ndarray of shape (rows, tail), float64
    """

    def __init__(self, comm, rows, width, dtype, tail=0):
        from mpi4py import MPI
        self.comm = comm
        dtype = np.dtype(dtype)
        # Rank 0 holds it all (the values first, then the tails); the others map rank
        # 0's. Each row starts on a boundary of ALIGNMENT bytes, as rank 0 sees the
        # memory (every rank maps it at the same offset within a page), so a product
        # written into any row runs as fast as into the first.
        items = aligned_width(width, dtype)
        head = rows * items * dtype.itemsize
        size = ALIGNMENT + head + rows * tail * 8
        self._window = MPI.Win.Allocate_shared(size if comm.Get_rank() == 0 else 0, 1,
                                               comm=comm)
        memory, _ = self._window.Shared_query(0)
        start = np.frombuffer(memory, np.uint8, 1).ctypes.data
        start = comm.bcast(-start % ALIGNMENT if comm.Get_rank() == 0 else None, root=0)
        self.values = np.frombuffer(memory, dtype, rows * items, start).reshape(
            rows, items)[:, :width]
        self.tails = np.frombuffer(memory, np.float64, rows * tail,
                                   start + head).reshape(rows, tail)
        # One passive epoch for the life of the window: ``wait`` orders the accesses.
        self._window.Lock_all(MPI.MODE_NOCHECK)

    @property
    def rows(self):
        """Number of rows of ``values``."""
        return self.values.shape[0]

    def wait(self):
        """Barrier: every rank's writes before it are seen by every rank's reads after it."""
        self._window.Sync()
        self.comm.Barrier()
        self._window.Sync()

    def free(self):
        """Give the memory back (collective); the arrays must not be used after it."""
        if self._window is None:
            return
        self.values = self.tails = None
        self._window.Unlock_all()
        self._window.Free()
        self._window = None
