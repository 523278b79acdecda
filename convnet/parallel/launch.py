"""Starting an MPI job on this machine and telling how it ended.

``launch`` runs a program as N ranks under the ``mpiexec`` of the ``mpich``
wheel, passes their output on as it comes, and turns the banner ``mpiexec``
prints when a rank dies into one line (``DistributedJobError``).
"""
import functools
import os
import re
import signal
import subprocess
import sys

from convnet.checks import check_count
from convnet.parallel.job import DistributedJobError, die_with_parent, libc_prctl, mpiexec_path


def launch_command(argv, processes, program=None, ends_job_itself=False):
    """Return the command that runs ``convnet *argv`` (or ``program``) as ``processes`` MPI ranks.

    ``convnet`` itself decides how a failing rank ends the job (see
    ``abort_job_on_failure``), and so does a ``program`` with
    ``ends_job_itself``. Any other ``program`` (``("-m", module)`` or a
    script's path) runs under ``python -m mpi4py``, so that a rank stopped
    by an uncaught error ends the whole job (``MPI_Abort``) instead of
    leaving the others waiting.
    """
    check_count("processes", processes)
    if program is None:
        runner = ["-m", "convnet"]
    elif ends_job_itself:
        runner = list(map(str, program))
    else:
        runner = ["-m", "mpi4py", *map(str, program)]
    return [str(mpiexec_path()), "-n", str(processes), sys.executable, *runner,
            *map(str, argv)]


# The banner Hydra prints when a rank dies, and the parts of it worth a line.
_BANNER = re.compile(rb"^=+\r?\n=\s+BAD TERMINATION", re.MULTILINE)
_BANNER_TITLE = b"=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES"
_EXIT_STRING = re.compile(rb"EXIT STRING: (.+?)\s*$", re.MULTILINE)
_EXIT_CODE = re.compile(rb"EXIT CODE: (\d+)")
_PID = re.compile(rb"PID (\d+)")


def _unsure_from(kept):
    """Where the output may hold the unfinished start of the banner (else its length).

    The banner opens with a line of ``=`` and then its title: a last
    unfinished line of ``=`` only, or such a line followed by a beginning of
    the title, is held back until more output shows what it is.
    """
    last = kept.rfind(b"\n") + 1
    before = kept.rfind(b"\n", 0, max(last - 1, 0)) + 1
    if last > 0 and kept[before:last - 1].rstrip(b"\r").strip(b"=") == b"" \
            and kept[before:before + 1] == b"=" and _BANNER_TITLE.startswith(kept[last:]):
        return before
    if kept[last:].strip(b"=") == b"":
        return last
    return len(kept)


def _forward(chunks, out):
    """Write the chunks of bytes to ``out`` as they come, up to Hydra's banner; return the banner.

    Returns b"" when no banner came.
    """
    kept, banner = b"", b""
    for chunk in chunks:
        if banner:
            banner += chunk
            continue
        kept += chunk
        found = _BANNER.search(kept)
        if found:
            banner = kept[found.start():]
            kept = kept[:found.start()]
        cut = _unsure_from(kept)
        out.write(kept[:cut])
        out.flush()
        kept = kept[cut:]
    out.write(kept)
    out.flush()
    return banner


def _describe_failure(banner, status):
    """One line saying how a job ended, from Hydra's banner and mpiexec's exit status."""
    how = _EXIT_STRING.search(banner)
    code = _EXIT_CODE.search(banner)
    pid = _PID.search(banner)
    what = how.group(1).decode(errors="replace") if how else (
        f"exit status {code.group(1).decode()}" if code else f"mpiexec exit status {status}")
    who = f"a rank (pid {pid.group(1).decode()})" if pid else "a rank"
    return f"{who} stopped: {what}; every rank of the job was stopped"


def launch(argv, processes, output=None, program=None, env=None, ends_job_itself=False):
    """Run ``convnet *argv`` as ``processes`` MPI ranks on this machine; wait for the end.

    The ranks' output is passed on as it comes, except the banner ``mpiexec``
    prints when a rank dies, which becomes the error's one line. Their
    standard error is this process's.

    Parameters
    ----------
    argv : list of str
        The command's arguments, e.g. ``["train", "--epochs", "1"]``.
    processes : int
        Number of ranks, >= 1.
    output : binary file, optional
        Where the ranks' output goes (default: this process's standard output).
    program : tuple of str, optional
        What each rank runs instead of ``convnet`` (see ``launch_command``).
    ends_job_itself : bool
        ``program`` ends the job itself when a rank fails (see ``launch_command``).
    env : dict of str, optional
        Variables added to this process's environment for the ranks.

    Returns
    -------
    int
        The job's exit status when every rank ended on its own (0, or the
        status of a command that failed the same way on every rank).

    Raises
    ------
    DistributedJobError
        A rank was killed or crashed; ``mpiexec`` stopped every other rank.
    """
    out = output if output is not None else sys.stdout.buffer
    command = launch_command(argv, processes, program, ends_job_itself)
    environment = None if env is None else dict(os.environ, **env)
    # A group of its own: when a rank dies, mpiexec ends its whole process group, which
    # must not include this process; and mpiexec ends with this process, however it ends.
    libc_prctl()   # looked up here: between fork and exec the child only calls it
    with subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          env=environment, process_group=0,
                          preexec_fn=functools.partial(  # noqa: PLW1509 -- see above
                              die_with_parent, signal.SIGTERM)) as job:
        try:
            banner = _forward(iter(lambda: job.stdout.read1(65536), b""), out)
        except BaseException:   # Ctrl-C, say: Hydra passes it on to every rank
            job.terminate()
            raise
    if banner or job.returncode < 0 or job.returncode > 2:
        raise DistributedJobError(_describe_failure(banner, job.returncode))
    return job.returncode


