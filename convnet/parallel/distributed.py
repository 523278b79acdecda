"""Data-parallel training over MPI, with the same weights whatever the number of processes.

The algorithm of one step, on a batch of ``m`` images:

1. The batch is cut into micro-batches of ``micro_batch`` images (the last
   may be smaller): ``n = ceil(m / micro_batch)`` of them. The cut depends on
   the batch alone, never on the number of processes.
2. The micro-batches are dealt out to the ranks in contiguous runs (rank
   ``r`` of ``p`` takes micro-batches ``floor(n r / p)`` to
   ``floor(n (r + 1) / p) - 1``; uneven counts are fine, a rank may get
   none). Each rank computes each of its micro-batches' mean-loss gradient
   with ``model.loss_and_grads``; a model with Dropout first receives a
   generator seeded from ``(seed, step, micro-batch index)``, so its masks
   do not depend on the rank either.
3. One ``Allgatherv`` gives every rank every micro-batch's flattened
   gradient and loss, in micro-batch order.
4. Every rank adds them up in that order, each weighted by its share of the
   batch (``m_i / m``), and applies the same ``optimizer.step`` to the
   same sum: the parameters and the optimiser's state stay identical on
   every rank, and rank 0 can write checkpoints alone.

A single process (no MPI job, or a job of one rank) runs the same steps
with nothing to exchange, so 1, 2 or 3 ranks give bit-identical weights for
one seed on one machine (every rank must run the same NumPy and BLAS on
the same kind of processor, with BLAS on one thread: see
``convnet.nn.threads.blas_threads``).

That rule has a price on one process: LeNet-5 at batch 32 cut into two
micro-batches of 16 takes a quarter to a third longer per step than the
whole batch at once (smaller matrix products, twice the calls). So
``micro_batch=None`` is offered too, and is the default: the batch is cut
into one nearly equal slice per rank, a single process runs whole batches
at full speed, and the weights are bit-identical for the same number of
processes only. ``DataParallel.rule`` names the rule in force; a checkpoint
records it and ``check_same_rule`` refuses to resume under another.

Models with BatchNormalization cannot be cut into micro-batches without
changing their batch statistics: they train whole batches, on one process
only.

The model and the optimiser know nothing of this: the mechanism uses
``model.parameters()``, ``model.loss_and_grads``, the optional
``model.dropout_generator`` and ``optimizer.step`` (plus ``state`` and
``load_state`` once, to start every rank from rank 0's).

Also here: starting a job on this machine (``launch``), telling whether
this process is a rank of one (``in_mpi_job``), and choosing the number of
processes (``default_processes``).
"""
import functools
import hashlib
import itertools
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from convnet.checks import check_count
from convnet.errors import BadOptionError, UserError
from convnet.nn.memory import views_like

# The micro-batch to ask for when the weights must not depend on the number of
# processes: LeNet-5's batch of 32 makes two, one per rank of a two-rank job
# (one process then pays a quarter to a third more: docs/distributed.md).
DEFAULT_MICRO_BATCH = 16
# The fewest images per rank worth a process of its own: a slice of 16 already
# costs about a quarter more per image than a whole batch of 32.
MIN_SLICE = 16
# Environment variables a process manager sets in every rank: MPICH's Hydra
# (and other PMI-1/2 managers), PMIx (Open MPI 5, Slurm), Open MPI's ORTE.
_RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK")
MPI_INSTALL_HINT = "pip install mpi4py mpich"


class DistributedJobError(UserError, RuntimeError):
    """A rank of a parallel job failed or was killed; the job was stopped."""


# ---------------------------------------------------------------- the job
def in_mpi_job():
    """Return True if this process was started by an MPI process manager (``mpiexec``).

    Decided from the environment alone, without initialising MPI: Hydra
    (MPICH), PMIx and Open MPI all give every rank its rank number in a
    variable. ``convnet train`` in such a process trains as that rank
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


# prctl's request to send the calling process a signal when its parent dies (Linux).
PR_SET_PDEATHSIG = 1


def die_with_parent(signum):
    """Have this process sent ``signum`` when its parent process dies (Linux; elsewhere nothing).

    A process started by ``convnet`` calls it (or has it called between
    fork and exec) so that a ``convnet`` killed with SIGKILL leaves nothing
    running behind it.
    """
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)


@functools.cache
def _prctl():
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


def launch_command(argv, processes, program=None):
    """Return the command that runs ``convnet *argv`` (or ``program``) as ``processes`` MPI ranks.

    ``convnet`` itself decides how a failing rank ends the job (see
    ``abort_job_on_failure``). Any other ``program`` (``("-m", module)`` or
    a script's path) runs under ``python -m mpi4py``, so that a rank stopped
    by an uncaught error ends the whole job (``MPI_Abort``) instead of
    leaving the others waiting.
    """
    check_count("processes", processes)
    runner = ["-m", "convnet"] if program is None else ["-m", "mpi4py", *map(str, program)]
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


def launch(argv, processes, output=None, program=None, env=None):
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
    command = launch_command(argv, processes, program)
    environment = None if env is None else dict(os.environ, **env)
    # A group of its own: when a rank dies, mpiexec ends its whole process group, which
    # must not include this process; and mpiexec ends with this process, however it ends.
    _prctl()   # looked up here: between fork and exec the child only calls it
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


# ---------------------------------------------------------------- the default
def _cpu_times():
    """Return (idle, total) jiffies of all processors from /proc/stat, or None."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
    # guest time is already counted in user time
    return idle, sum(fields[:8])


def idle_processors(window=0.3):
    """Return how many processors were idle, on average, over the next ``window`` seconds.

    Read from /proc/stat (Linux); where it is missing, the 1-minute load
    average stands in (``cpu_count - loadavg``), and failing that every
    processor is taken as idle.
    """
    processors = os.cpu_count() or 1
    before = _cpu_times()
    if before is None:
        try:
            return max(0.0, processors - os.getloadavg()[0])
        except OSError:
            return float(processors)
    time.sleep(window)
    after = _cpu_times()
    total = after[1] - before[1]
    if total <= 0:
        return float(processors)
    return processors * (after[0] - before[0]) / total


def available_processors():
    """Return how many processors this process may run on (its affinity, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def processes_for(idle, available, limit):
    """The rule of ``default_processes``: one process per processor at least 3/4 idle.

    Returns ``floor(idle + 1/4)`` clamped to ``[1, min(available, limit)]``.
    A process sharing its processor with another job waits for it at every
    step, and then every rank waits: on two processors with one held by
    another job, two processes train two to three times slower than one.
    """
    return int(max(1, min(available, limit, math.floor(idle + 0.25))))


def default_processes(batch_size=32, micro_batch=None, window=0.3):
    """Return the number of processes likely to train fastest on this machine now.

    One per processor this process may use that was at least three quarters
    idle over the last ``window`` seconds (measured from /proc/stat), at
    least 1, and at most the number of micro-batches in a batch (more ranks
    would have nothing to do); without ``micro_batch``, at most one per
    ``MIN_SLICE`` images of a batch (thinner slices cost more than they
    save). On a quiet 2-core machine that is 2 for LeNet-5 at batch 32;
    with another job holding a core, 1.
    """
    check_count("batch_size", batch_size)
    if micro_batch is not None:
        check_count("micro_batch", micro_batch)
    available = available_processors()
    if micro_batch is None:
        limit = max(1, batch_size // MIN_SLICE)
    else:
        limit = -(-batch_size // micro_batch)
    if min(available, limit) == 1:
        return 1
    return processes_for(idle_processors(window), available, limit)


# ---------------------------------------------------------------- training
def _uses_batch_statistics(model):
    """True if the model has a layer whose training output depends on the whole batch."""
    spec = getattr(model, "spec", None)
    layers = spec.get("layers", []) if isinstance(spec, dict) else []
    return any(entry.get("layer") == "BatchNormalization" for entry in layers)


def _runs(count, parts):
    """Bounds of ``parts`` contiguous runs of ``count`` items: ``parts + 1`` offsets."""
    return [count * part // parts for part in range(parts + 1)]


def rule_of(processes, micro_batch=None, whole_batches=False, threads=1):
    """What makes two runs of one seed agree bit for bit, as a string for a checkpoint.

    ``"micro-batch 16"``: any number of ranks with that micro-batch;
    ``"processes 2"``: that number of processes (``micro_batch=None``);
    ``"processes 1, threads 2"``: one process whose BLAS runs on 2 threads
    (they add a product's terms in another order than one thread);
    ``"whole batches"``: a model with BatchNormalization, one process.
    """
    if whole_batches:
        return "whole batches"
    if micro_batch is None:
        return f"processes {processes}" + (f", threads {threads}" if threads > 1 else "")
    return f"micro-batch {micro_batch}"


def layout_of_rule(rule):
    """(processes, BLAS threads) a rule of ``rule_of`` fixes, or None if it fixes none."""
    found = re.fullmatch(r"processes (\d+)(?:, threads (\d+))?", rule or "")
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2) or 1)


def default_layout(dense_only, batch_size=32, micro_batch=None, window=0.3):
    """Return (processes, BLAS threads per process) likely to train fastest now.

    ``default_processes`` says how many processors to use. A model of dense
    layers only, cut into one slice per process (``micro_batch`` None),
    gets them as BLAS threads of one process: its step is a few large
    matrix products, which threads share well, while ranks would each
    repeat its optimiser step and exchange all its gradients (the MLP's
    669,706 parameters: two ranks were slower than one process, two threads
    1.8 times faster). Any other model gets them as ranks: a convolution's
    step is many small products and reshapes, which threads barely speed up.
    """
    count = default_processes(batch_size, micro_batch, window)
    if dense_only and micro_batch is None and count > 1:
        return 1, count
    return count, 1


def check_same_rule(saved, current):
    """Raise unless a run saved under rule ``saved`` may resume under rule ``current``.

    Both are ``DataParallel.rule`` strings; a checkpoint without one
    (``saved`` None) resumes under any rule.

    Raises
    ------
    BadOptionError
        Naming both rules and how to resume alike.
    """
    if saved is not None and saved != current:
        raise BadOptionError(
            f"this run was trained with {saved!r} and would resume with {current!r}: the "
            f"weights would match neither uninterrupted run; resume with the same number of "
            f"processes (or the same --micro-batch)")


class DataParallel:
    """Training steps shared by the ranks of an MPI job, or run by this process alone.

    Every rank of the job builds the same model and optimiser and calls
    ``step`` with the same batches in the same order; every rank ends each
    step with the same parameters and optimiser state.

    Parameters
    ----------
    model : Sequential
        Anything with ``parameters()`` (arrays updated in place, one dtype)
        and ``loss_and_grads(X, Y) -> (mean loss, gradients)``; a
        ``dropout_generator`` property is used when present.
    optimizer : Adam, RMSprop or SGD
        Built on ``model.parameters()``, in that order; its ``iterations``
        numbers the steps.
    comm : mpi4py communicator, optional
        The ranks sharing the work. Default: ``MPI.COMM_WORLD`` inside an
        MPI job (see ``in_mpi_job``), else this process alone, without MPI.
    micro_batch : int or None
        Images per micro-batch: the same weights for any number of ranks
        (see the module docstring; changing it changes the rounding of the
        gradient sums). None: one slice of each batch per rank, the same
        weights for the same number of ranks only.
    seed : int
        Seeds the Dropout masks, with the step's and micro-batch's numbers.

    Raises
    ------
    BadOptionError
        Several ranks for a model with BatchNormalization.
    """

    def __init__(self, model, optimizer, comm=None, micro_batch=None, seed=0):
        if micro_batch is not None:
            check_count("micro_batch", micro_batch)
        if comm is None and in_mpi_job():
            comm = world()
        self.model, self.optimizer, self.comm, self.seed = model, optimizer, comm, int(seed)
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self.whole_batches = _uses_batch_statistics(model)
        if self.whole_batches and self.size > 1:
            raise BadOptionError(
                f"a model with BatchNormalization trains on one process only: its batch "
                f"statistics need each batch whole, and this job has {self.size} processes; "
                f"use --processes 1")
        self.micro_batch = micro_batch
        self.params = list(model.parameters())
        dtypes = {param.dtype for param in self.params}
        if len(dtypes) != 1:
            raise ValueError(f"the model's parameters must share one dtype, received "
                             f"{sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop()
        self._uses_dropout = getattr(model, "dropout_generator", None) is not None
        self._size = sum(param.size for param in self.params)
        self._total = np.zeros(self._size, self.dtype)
        self._scratch = np.zeros(self._size, self.dtype)
        self._total_views = views_like(self._total, self.params)
        self._scratch_views = views_like(self._scratch, self.params)
        # A row per micro-batch: the flat gradient, padding to 8 bytes, then
        # two float64 numbers (the mean loss, and 1 if the rank failed).
        itemsize = self.dtype.itemsize
        self._grad_width = -(-self._size * itemsize // 8) * 8 // itemsize
        self._row = self._grad_width + 16 // itemsize
        self._rows = np.zeros((0, self._row), self.dtype)
        if self.size > 1:
            from mpi4py import MPI
            from mpi4py.util.dtlib import from_numpy_dtype
            self._mpi_type = from_numpy_dtype(self.dtype)
            self._in_place = MPI.IN_PLACE
            self._synchronise()

    def _synchronise(self):
        """Give every rank rank 0's parameters and optimiser state (say, a resumed run's)."""
        for param in self.params:
            self.comm.Bcast(param, root=0)
        state = self.comm.bcast(self.optimizer.state() if self.rank == 0 else None, root=0)
        if self.rank != 0:
            self.optimizer.load_state(state)

    # ------------------------------------------------------------ one step
    @property
    def rule(self):
        """What makes two runs of one seed agree bit for bit (see ``rule_of``)."""
        return rule_of(self.size, self.micro_batch, self.whole_batches)

    def micro_batches(self, count):
        """Bounds of the micro-batches of a batch of ``count`` images: a list of (start, stop)."""
        if self.whole_batches:
            return [(0, count)]
        if self.micro_batch is None:
            runs = _runs(count, self.size)
            return [(start, stop) for start, stop in itertools.pairwise(runs) if stop > start]
        width = self.micro_batch
        return [(start, min(start + width, count)) for start in range(0, count, width)]

    def _dropout_generator(self, step, index):
        return np.random.default_rng([self.seed, step, index])

    def _gradient(self, X, Y, bounds, step, index):
        """Mean loss and gradients of micro-batch ``index``, whichever rank computes it."""
        if self._uses_dropout:
            self.model.dropout_generator = self._dropout_generator(step, index)
        start, stop = bounds
        return self.model.loss_and_grads(X[start:stop], Y[start:stop])

    def step(self, X, Y):
        """Train on one batch: the same update on every rank; return the batch's mean loss.

        Parameters
        ----------
        X : ndarray of shape (m, h, w, c)
            The batch's images, the same on every rank.
        Y : ndarray of shape (m,)
            Their integer labels.

        Returns
        -------
        float
            Mean loss of the batch before the update (the micro-batches'
            losses weighted by their sizes, added in order).

        Raises
        ------
        DistributedJobError
            Another rank failed to compute its micro-batches; no rank
            updated anything.
        ValueError, TypeError, ArithmeticError
            As ``loss_and_grads`` raises them on this rank.
        """
        count = len(X)
        if count == 0:
            raise ValueError("X must hold at least one image, received an empty batch")
        if len(Y) != count:
            raise ValueError(f"Y must have one label per image: X has {count}, Y has {len(Y)}")
        step = self.optimizer.iterations + 1
        batches = self.micro_batches(count)
        weights = [(stop - start) / count for start, stop in batches]
        if self.size == 1:
            loss, grads = self._local_sum(X, Y, batches, weights, step)
        else:
            loss, grads = self._shared_sum(X, Y, batches, weights, step)
        self.optimizer.step(grads)
        return loss

    def _local_sum(self, X, Y, batches, weights, step):
        """One process: the batch's loss and its micro-batches' gradients added in order."""
        if len(batches) == 1:
            # A weight of 1 multiplies exactly: the gradients are the sum.
            return self._gradient(X, Y, batches[0], step, 0)
        loss = 0.0
        for index, (bounds, weight) in enumerate(zip(batches, weights)):
            part, grads = self._gradient(X, Y, bounds, step, index)
            loss += weight * part
            for total, scratch, grad in zip(self._total_views, self._scratch_views, grads):
                if index == 0:
                    np.multiply(grad, weight, out=total)
                else:
                    np.multiply(grad, weight, out=scratch)
                    total += scratch
        return loss, self._total_views

    def _shared_sum(self, X, Y, batches, weights, step):
        """Several ranks: exchange the micro-batches' gradients, add them in order; as above."""
        count, width = len(batches), self._row
        runs = _runs(count, self.size)
        if self._rows.shape[0] < count:
            self._rows = np.zeros((count, width), self.dtype)
        rows = self._rows[:count]
        mine = range(runs[self.rank], runs[self.rank + 1])
        error = None
        for index in mine:
            row = rows[index]
            tail = row[self._grad_width:].view(np.float64)
            try:
                loss, grads = self._gradient(X, Y, batches[index], step, index)
            except (ValueError, TypeError, ArithmeticError, MemoryError) as caught:
                error, tail[:] = caught, (0.0, 1.0)
                continue
            np.concatenate([np.ravel(grad) for grad in grads], out=row[:self._size])
            tail[:] = (loss, 0.0)
        counts = [(runs[rank + 1] - runs[rank]) * width for rank in range(self.size)]
        offsets = [runs[rank] * width for rank in range(self.size)]
        # Each rank's rows are already in place in the receiving buffer.
        self.comm.Allgatherv(self._in_place, [rows, counts, offsets, self._mpi_type])
        tails = rows[:, self._grad_width:].view(np.float64)
        if error is not None:
            raise error
        if tails[:, 1].any():
            failed = int(np.flatnonzero(tails[:, 1])[0])
            owner = next(rank for rank in range(self.size) if runs[rank + 1] > failed)
            raise DistributedJobError(f"rank {owner} of {self.size} failed to compute "
                                      f"micro-batch {failed} of step {step}; no rank updated")
        loss = 0.0
        for index, weight in enumerate(weights):
            loss += weight * float(tails[index, 0])
            gradient = rows[index, :self._size]
            if count == 1:
                self._total[...] = gradient
            elif index == 0:
                np.multiply(gradient, weight, out=self._total)
            else:
                np.multiply(gradient, weight, out=self._scratch)
                self._total += self._scratch
        return loss, self._total_views

    # ------------------------------------------------------------ evaluation
    def evaluate(self, sets, batch_size=500):
        """``model.evaluate`` on each ``(X, Y)`` of ``sets``, the images shared by the ranks.

        Each set is cut at multiples of ``batch_size`` into nearly equal
        shares, one per rank, so the model sees the chunks of a one-process
        evaluation: the same accuracy, the same mean loss up to float64
        rounding.

        Parameters
        ----------
        sets : list of (ndarray of shape (m, h, w, c), ndarray of shape (m,))
            Images and integer labels; each set non-empty.
        batch_size : int
            Images per forward pass.

        Returns
        -------
        list of (float, float)
            ``(mean loss, accuracy)`` of each set, the same on every rank.
        """
        check_count("batch_size", batch_size)
        for X, _ in sets:
            if len(X) == 0:
                raise ValueError("cannot evaluate on an empty set of images")
        if self.size == 1:
            return [self.model.evaluate(X, Y, batch_size) for X, Y in sets]
        sums = []
        for X, Y in sets:
            chunks = -(-len(X) // batch_size)
            runs = _runs(chunks, self.size)
            part = slice(runs[self.rank] * batch_size, runs[self.rank + 1] * batch_size)
            sums.append(self.model.evaluation_sums(X[part], Y[part], batch_size)
                        if part.start < len(X) else (0.0, 0))
        everyone = self.comm.allgather(sums)
        results = []
        for index, (X, _) in enumerate(sets):
            loss = sum(share[index][0] for share in everyone)
            correct = sum(share[index][1] for share in everyone)
            results.append((loss / len(X), correct / len(X)))
        return results

    def parameters_agree(self):
        """Return True if every rank holds bit for bit the same parameters (a check)."""
        if self.size == 1:
            return True
        digest = hashlib.sha256(b"".join(param.tobytes() for param in self.params)).hexdigest()
        return len(set(self.comm.allgather(digest))) == 1

    @property
    def is_writer(self):
        """True on the one rank that writes files (checkpoints, logs): rank 0."""
        return self.rank == 0

