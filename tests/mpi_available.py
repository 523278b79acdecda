"""The mark of tests that start MPI ranks: skipped, with the install command, where they cannot."""
import sys
from pathlib import Path

import pytest


def mpi_missing():
    """Why MPI ranks cannot run here, or None."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed: pip install mpi4py mpich"
    if not (Path(sys.executable).parent / "mpiexec").exists():
        return f"no mpiexec next to {sys.executable}: pip install mpi4py mpich"
    return None


needs_mpi = pytest.mark.skipif(mpi_missing() is not None, reason=str(mpi_missing()))
