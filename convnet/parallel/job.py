"""The MPI job this process may belong to, and the processes a run starts.

Whether this process is a rank of a job (``in_mpi_job``), the job's
communicator (``world``), how a failing rank ends the whole job
(``abort_job_on_failure``), whether MPI is installed here
(``mpi_available``, ``mpiexec_path``), and how a started process ends with
the one that started it (``die_with_parent``).
"""
import functools
import os
import sys
from pathlib import Path

from convnet.errors import BadOptionError, UserError

# Environment variables a process manager sets in every rank: MPICH's Hydra
# (and other PMI-1/2 managers), PMIx (Open MPI 5, Slurm), Open MPI's ORTE.
_RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK")
MPI_INSTALL_HINT = "pip install mpi4py mpich"
# prctl's request to send the calling process a signal when its parent dies (Linux).
PR_SET_PDEATHSIG = 1


class DistributedJobError(UserError, RuntimeError):
    """A rank of a parallel job failed or was killed; the job was stopped."""


def in_mpi_job():
    """Return True if this process was started by an MPI process manager (``mpiexec``).

    Decided from the environment alone, without initialising MPI: Hydra
    (MPICH), PMIx and Open MPI all give every rank its rank number in a
    variable. A training run in such a process trains as that rank
    instead of starting a job of its own.
    """
    return any(name in os.environ for name in _RANK_VARIABLES)


def world():
    """Return ``MPI.COMM_WORLD`` (initialising MPI), or raise naming the packages to install."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise BadOptionError(f"training with several processes needs MPI for Python: "
                             f"{MPI_INSTALL_HINT}") from None
    return MPI.COMM_WORLD


def abort_job_on_failure(status):
    """Make a failing rank stop the whole job when this process exits.

    A rank that exits with a non-zero status while others wait for it in a
    collective would leave them waiting for ever; after this call, exiting
    calls ``MPI_Abort`` instead, which ends every rank. The command layer
    calls it with the exit status it is about to return (0 changes nothing).
    Outside an MPI job, or before MPI was imported, it does nothing.
    """
    if status and "mpi4py.MPI" in sys.modules:
        from mpi4py.run import set_abort_status
        set_abort_status(status)


def die_with_parent(signum):
    """Have this process sent ``signum`` when its parent process dies (Linux; elsewhere nothing).

    A process started by ``convnet`` calls it (or has it called between
    fork and exec) so that a ``convnet`` killed with SIGKILL leaves nothing
    running behind it.
    """
    prctl = libc_prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)


@functools.cache
def libc_prctl():
    """The C library's ``prctl``, looked up once (before any fork), or None off Linux."""
    if sys.platform != "linux":
        return None
    import ctypes
    return ctypes.CDLL(None).prctl


def mpi_available():
    """Return True if MPI for Python and the ``mpiexec`` next to this Python are installed."""
    import importlib.util
    return (importlib.util.find_spec("mpi4py") is not None
            and (Path(sys.executable).parent / "mpiexec").exists())


def mpiexec_path():
    """Return the ``mpiexec`` installed next to this Python (the ``mpich`` wheel's), or raise."""
    path = Path(sys.executable).parent / "mpiexec"
    if not path.exists():
        raise BadOptionError(f"no mpiexec next to {sys.executable}: several processes need "
                             f"MPI, installed with {MPI_INSTALL_HINT}")
    return path


