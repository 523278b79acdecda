"""One training run at a time in a run folder (``TrainConfig.out``).

``claim(folder)`` takes an exclusive lock on ``folder/.lock`` (``flock``,
released by the system when the process ends, however it ends) and writes
the process id into it, so that a second run into the same folder is refused
at once, with a message naming the process that holds it. While the lock is
held, the folder is checked for an earlier run's files (training into it
again needs ``resume`` or ``overwrite``), and temporary files that a killed
write left behind (see ``convnet.storage.atomic_path``) are removed: no
other process writes there meanwhile.

The lock file is removed on release. A process that opened it just before
then locks a file no longer in the folder, so every claim checks, once
locked, that its file is still the one in the folder, and tries again if not.
"""
import contextlib
import fcntl
import os
from pathlib import Path

from convnet import storage
from convnet.errors import BadOptionError, RunFolderBusyError, StorageError
from convnet.training.events import Note

LOCK_NAME = ".lock"
# The files a finished or interrupted run leaves: their presence means the folder holds a run.
RUN_FILES = ("checkpoint.npz", "weights.npz", "history.json", "run.json")


@contextlib.contextmanager
def claim(folder, resume=False, overwrite=False, on_event=None):
    """Hold ``folder`` for one training run; yield the stale temporary files removed.

    Parameters
    ----------
    folder : str or Path
        The run folder; created if missing.
    resume : bool
        The run continues the one in the folder.
    overwrite : bool
        The run may replace the one in the folder (its files are replaced
        one by one as the new run writes them).
    on_event : callable, optional
        Receives a ``Note`` saying how many stale files were removed, if any.

    Yields
    ------
    list of Path
        Temporary files of interrupted writes, found and removed.

    Raises
    ------
    RunFolderBusyError
        Another process holds the folder (the message names it), or the
        folder holds a run and neither ``resume`` nor ``overwrite`` is given.
    BadOptionError
        Both ``resume`` and ``overwrite`` are given.
    StorageError
        The folder or its lock file cannot be created.
    """
    if resume and overwrite:
        raise BadOptionError("{resume} continues the run in the folder and {overwrite} "
                             "replaces it: give one of them", fields=("resume", "overwrite"))
    folder = Path(folder)
    descriptor = _lock(folder)
    lock_path = folder / LOCK_NAME
    try:
        present = [name for name in RUN_FILES if (folder / name).exists()]
        if present and not (resume or overwrite):
            raise RunFolderBusyError(
                f"{folder} already holds a run ({', '.join(present)}): add {{resume}} to "
                "continue it, {overwrite} to replace it, or choose another {out}",
                fields=("resume", "overwrite", "out"))
        stale = storage.stale_temporary_files(folder)
        for path in stale:
            path.unlink(missing_ok=True)
        if stale and on_event is not None:
            on_event(Note(f"removed {len(stale)} temporary file{'s' if len(stale) > 1 else ''} "
                          f"left in {folder} by an interrupted write"))
        yield stale
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()
        os.close(descriptor)   # releases the lock


def _lock(folder):
    """Create and lock ``folder/.lock``; write this process's id in it; return its descriptor."""
    lock_path = folder / LOCK_NAME
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StorageError(f"cannot use {folder} as the run folder: "
                               f"{error.strerror or error}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(descriptor)
            os.close(descriptor)
            who = f"process {holder}" if holder else "another process"
            raise RunFolderBusyError(f"{folder} is in use by {who} (another convnet train "
                                     "writing there): wait for it to end, or choose another "
                                     "{out}", fields=("out",)) from None
        try:
            still_there = os.stat(lock_path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            still_there = False
        if still_there:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
            return descriptor
        os.close(descriptor)   # its holder removed it as we locked it: try again


def _read_holder(descriptor):
    """The process id written in a lock file, or None if there is none yet."""
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
