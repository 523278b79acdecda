"""Data-parallel training over MPI, with the same weights whatever the number of processes.

The algorithm of one step, on a batch of ``m`` images:

1. The batch is cut into shards (micro-batches): of ``micro_batch`` images
   (the last may be smaller), or, for a run resumed under an older rule,
   ``slices`` nearly equal slices. The cut depends on the batch alone,
   never on the number of processes.
2. The shards are dealt out to the ranks in contiguous runs (rank ``r`` of
   ``p`` takes shards ``floor(n r / p)`` to ``floor(n (r + 1) / p) - 1`` of
   ``n``; uneven counts are fine, a rank may get none). Each rank computes
   each of its shards' mean-loss gradient with ``model.loss_and_grads``; a
   model with Dropout first receives a generator seeded from ``(seed, step,
   shard index)``, so its masks do not depend on the rank either.
3. Every rank gets every shard's loss (and whether a rank failed). The
   flattened parameters are cut into one part per rank, and rank ``r``
   gets every shard's gradient of part ``r``: ranks on one machine read
   them from memory they share (``convnet.parallel.shared_memory``), others
   receive them (``Allgatherv``, ``Alltoallv``).
4. Each rank adds its part's gradients up in shard order, each weighted by
   its share of the batch (``m_i / m``), and steps the optimiser on that
   part alone (``optimizer.step_part``): every formula of the optimisers
   is element-wise, so the parts make the numbers one ``optimizer.step``
   on the whole sum makes. Every rank then sees every updated part: ranks
   on one machine keep the weights themselves in memory they share, others
   gather the parts (``Allgatherv``). Each rank keeps only its part's optimiser state
   current; at the end of each epoch (``share_optimizer_state``) every
   rank receives the rest, so rank 0 can write checkpoints alone. The ranks
   share the optimiser's work and its memory traffic instead of each
   repeating it.

A single process (no MPI job, or a job of one rank) computes the same
shards (one after the other, or on threads) and adds them alike, with the
same ``optimizer.step_part`` on every parameter, so 1, 2 or 3 ranks give
bit-identical weights for one seed on one machine (every rank must run the
same NumPy and BLAS on the same kind of processor, with BLAS on one thread:
see ``convnet.nn.threads.blas_threads``).

``convnet train`` cuts every batch so unless told otherwise: shards of
``default_micro_batch(batch_size)`` images, a function of the batch size
and the model alone, while the number of processes follows how idle the
processors are (``default_processes``, ``default_layout``) and changes the
speed only. ``micro_batch=None`` without ``slices`` keeps one slice per
rank (the layouts of older versions, which the benchmarks compare with).
``DataParallel.rule`` names the rule in force; a checkpoint records it and
``check_same_rule`` refuses to resume under another.

Models with BatchNormalization cannot be cut without changing their batch
statistics: they train whole batches, on one process only.

The model and the optimiser know nothing of this: the mechanism uses
``model.parameters()``, ``model.loss_and_grads``, the optional
``model.dropout_generator``, ``optimizer.step`` and ``optimizer.step_part``
(on several ranks ``flat_slots`` too, plus ``state`` and ``load_state``
once, to start every rank from rank 0's). The gradients go into the rows
they are added up from with ``model.place_gradients``, when the model has
it. Ranks that share memory move the weights into it with
``model.place_parameters`` and tell the optimiser (``optimizer.follow``).

``DataParallel`` is a steps object of the training loop
(``convnet.training.steps``): one process runs ``LocalSteps``'s own code,
several share it as above. Starting a job is ``convnet.parallel.launch``;
the job itself ``convnet.parallel.job``.
"""
import hashlib
import math
import os
import time

import numpy as np

from convnet.checks import check_count
from convnet.errors import BadOptionError
from convnet.nn.memory import aligned_rows, joined_view
from convnet.parallel.job import (  # noqa: F401 -- callers read them here too
    MPI_INSTALL_HINT,
    DistributedJobError,
    abort_job_on_failure,
    die_with_parent,
    in_mpi_job,
    mpi_available,
    mpiexec_path,
    world,
)
from convnet.parallel.launch import launch, launch_command  # noqa: F401 -- read here too
from convnet.parallel.shared_memory import SharedRows, on_one_machine
from convnet.training.steps import (  # noqa: F401 -- callers read them here too
    LocalSteps,
    check_same_rule,
    default_micro_batch,
    even_runs,
    layout_of_rule,
    rule_of,
)


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
    least 1, and at most the number of shards in a batch (more processes
    would have nothing to do). The count changes the speed only: every
    process computes whole shards, so the weights are the same whatever it
    is.

    Parameters
    ----------
    batch_size : int
        Images per step.
    micro_batch : int or None
        Images per shard; None: ``default_micro_batch(batch_size)``, the
        cut of a run that does not ask for one.

    Returns
    -------
    int
        On a quiet 2-core machine 2 for LeNet-5 at batch 32; with another
        job holding a core, 1.
    """
    check_count("batch_size", batch_size)
    if micro_batch is None:
        micro_batch = default_micro_batch(batch_size)
    check_count("micro_batch", micro_batch)
    available = available_processors()
    limit = -(-batch_size // micro_batch)
    if min(available, limit) == 1:
        return 1
    return processes_for(idle_processors(window), available, limit)


def default_layout(dense_only, batch_size=32, micro_batch=None, window=0.3):
    """Return (processes, BLAS threads per process) likely to train fastest now.

    ``default_processes`` says how many processes share the shards:
    ``micro_batch``'s, else ``default_micro_batch``'s for the model (a model
    of dense layers only, ``dense_only``, takes short batches whole, so it
    trains them in one process). BLAS runs on one thread always: a second
    thread adds a product's terms in another order (the MLP's 784-long
    sums), and the weights must not depend on how idle the processors are.
    """
    shard = micro_batch or default_micro_batch(batch_size, not dense_only)
    return default_processes(batch_size, shard, window), 1


class DataParallel(LocalSteps):
    """Training steps shared by the ranks of an MPI job, or run by this process alone.

    Every rank of the job builds the same model and optimiser and calls
    ``step`` with the same batches in the same order; every rank ends each
    step with the same parameters, and each epoch (``share_optimizer_state``)
    with the same optimiser state. One process (no
    job, or a job of one rank) runs ``LocalSteps``'s steps.

    Parameters
    ----------
    model : Sequential
        Anything with ``parameters()`` (arrays updated in place, one dtype;
        on several ranks, consecutive views of one buffer, as a
        ``Sequential``'s are) and ``loss_and_grads(X, Y) -> (mean loss,
        gradients)``; a ``dropout_generator`` property is used when present.
        Ranks sharing memory move its weights into it (see ``shared_memory``).
    optimizer : Adam, RMSprop or SGD
        Built on ``model.parameters()``, in that order; its ``iterations``
        numbers the steps.
    comm : mpi4py communicator, optional
        The ranks sharing the work. Default: ``MPI.COMM_WORLD`` inside an
        MPI job (see ``in_mpi_job``), else this process alone, without MPI.
    micro_batch : int or None
        Images per shard: the same weights for any number of ranks (see the
        module docstring; changing it changes the rounding of the gradient
        sums). None: ``slices`` slices, or one slice of each batch per rank,
        the same weights for the same number of ranks only.
    seed : int
        Seeds the Dropout masks, with the step's and micro-batch's numbers.
    slices : int or None
        With ``micro_batch`` None: this many nearly equal slices of each
        batch, whatever the number of ranks (an older run's ``"processes
        N"`` rule, resumed on another number of processes).
    shard_threads : int
        Threads computing this process's shards at once (see ``LocalSteps``);
        used by a process alone (the ranks of a job compute theirs in turn).
    shared_memory : bool
        Ranks that all run on one machine keep the weights and the
        gradients in memory they share (``convnet.parallel.shared_memory``)
        instead of exchanging messages, if the model has
        ``place_parameters`` and ``place_gradients`` (a ``Sequential``
        has): its parameters are then views of that memory, and the
        optimiser follows them. False sends messages always. The same
        numbers either way.

    Raises
    ------
    BadOptionError
        Several ranks for a model with BatchNormalization.
    """

    def __init__(self, model, optimizer, comm=None, micro_batch=None, seed=0, slices=None,
                 shard_threads=1, shared_memory=True):
        super().__init__(model, optimizer, micro_batch=micro_batch, seed=seed, slices=slices,
                         shard_threads=shard_threads)
        if comm is None and in_mpi_job():
            comm = world()
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        if self.whole_batches and self.size > 1:
            raise BadOptionError(
                f"a model with BatchNormalization trains on one process only: its batch "
                f"statistics need each batch whole, and this job has {self.size} processes; "
                f"use {{processes}} 1", fields=("processes",))
        # Each rank steps the optimiser on one part of the flattened parameters
        # (``parts[rank]`` to ``parts[rank + 1]``), whole blocks of 16 numbers.
        units = -(-self._size // 16)
        self.parts = [min(self._size, 16 * unit) for unit in even_runs(units, self.size)]
        self._shared, self._mine = False, aligned_rows(0, self._size, self.dtype)
        self._received = np.zeros((0, 0), self.dtype)
        if self.size > 1:
            from mpi4py import MPI
            from mpi4py.util.dtlib import from_numpy_dtype
            self._mpi_type, self._mpi_double = from_numpy_dtype(self.dtype), MPI.DOUBLE
            self._in_place = MPI.IN_PLACE
            # What a rank without a micro-batch names as its (empty) message.
            self._nothing = np.zeros(self._size, self.dtype)
            self._flat_params = joined_view(self.params, writeable=True)
            if self._flat_params is None:
                raise ValueError("DataParallel on several ranks needs parameters that are "
                                 "consecutive views of one buffer (a Sequential model's are)")
            self._synchronise()
            # Ranks on one machine exchange through memory they share (``SharedRows``).
            self._shared = (shared_memory and hasattr(model, "place_parameters")
                            and on_one_machine(comm))
            self._rows = None
            if self._shared:
                self._share_weights()

    def _share_weights(self):
        """Move the weights into memory every rank maps: one copy, each part updated in place.

        Each rank writes its own part there, and after the wait every rank's
        model computes with the whole of it: no rank copies another's part.
        """
        self._weights = SharedRows(self.comm, 1, self._size, self.dtype)
        start, stop = self.parts[self.rank], self.parts[self.rank + 1]
        shared = self._weights.values[0]
        shared[start:stop] = self._flat_params[start:stop]
        self._weights.wait()
        self.model.place_parameters(shared, copy=False)
        self.params = list(self.model.parameters())
        self.optimizer.follow(self.params)
        self._flat_params = shared

    @property
    def shares_memory(self):
        """True if the ranks exchange through shared memory (several, all on this machine)."""
        return self._shared

    def _synchronise(self):
        """Give every rank rank 0's parameters and optimiser state (say, a resumed run's)."""
        for param in self.params:
            self.comm.Bcast(param, root=0)
        state = self.comm.bcast(self.optimizer.state() if self.rank == 0 else None, root=0)
        if self.rank != 0:
            self.optimizer.load_state(state)

    def share(self, value):
        """Rank 0's ``value`` on every rank (a resumed run's epoch and history, say)."""
        return value if self.size == 1 else self.comm.bcast(value, root=0)

    def _train(self, X, Y, batches, weights, step):
        if self.size == 1:
            return super()._train(X, Y, batches, weights, step)
        return self._shared_train(X, Y, batches, weights, step)

    def _shared_train(self, X, Y, batches, weights, step):
        """Several ranks: each computes its micro-batches, then updates its part of the weights.

        The ranks exchange every micro-batch's loss and a failure flag, then
        the gradients by part: rank r reads every micro-batch's gradient of
        part r, adds them in micro-batch order, each weighted by its share
        of the batch, and steps the optimiser on that part alone; the
        optimiser's state stays with the part's rank until
        ``share_optimizer_state``. Ranks on one machine share one copy of
        the weights, which each updates in place, and read the gradients
        from shared rows; others exchange messages and gather the parts:
        the same numbers either way.
        """
        count, size, rank = len(batches), self.size, self.rank
        runs = even_runs(count, size)
        grads, tails = self._gradient_rows(count, runs)
        error = None
        for index in range(runs[rank], runs[rank + 1]):
            row = index if self._shared else index - runs[rank]
            try:
                loss = self._gradient_into(grads[row], X, Y, batches[index], step, index)
            except (ValueError, TypeError, ArithmeticError, MemoryError) as caught:
                error, tails[index] = caught, (0.0, 1.0)
                continue
            tails[index] = (loss, 0.0)   # the mean loss, and 1 if the rank failed
        if self._shared:
            self._rows.wait()
        else:
            # Each rank's losses are already in place in the receiving buffer.
            counts = [2 * (runs[r + 1] - runs[r]) for r in range(size)]
            offsets = [2 * runs[r] for r in range(size)]
            self.comm.Allgatherv(self._in_place, [tails, counts, offsets, self._mpi_double])
        if error is not None:
            raise error
        if tails[:count, 1].any():
            failed = int(np.flatnonzero(tails[:count, 1])[0])
            owner = next(r for r in range(size) if runs[r + 1] > failed)
            raise DistributedJobError(f"rank {owner} of {size} failed to compute "
                                      f"micro-batch {failed} of step {step}; no rank updated")
        start, stop = self.parts[rank], self.parts[rank + 1]
        received = (grads[:count, start:stop] if self._shared
                    else self._exchange_parts(runs, count, stop - start))
        loss = 0.0
        for index, weight in enumerate(weights):
            loss += weight * float(tails[index, 0])
        if count == 1:
            # A weight of 1 multiplies exactly: the gradient is the one micro-batch's.
            self.optimizer.step_part(received[0], slice(start, stop))
        else:
            self.optimizer.step_part(received, slice(start, stop), weights)
        if self._shared:
            # Every part updated before any rank reads the weights again; this also orders
            # this step's reads of the gradient rows before the next step's writes.
            self._weights.wait()
        else:
            self._gather_parts(self._flat_params)
        return loss

    def _gradient_rows(self, count, runs):
        """Where this rank writes its micro-batches' gradients and their losses.

        Returns (rows, tails): on one machine the shared rows of all
        ``count`` micro-batches (row = micro-batch), else this rank's own
        (row = its micro-batches in order) and a fresh array of every
        micro-batch's (loss, failed) pair.
        """
        if self._shared:
            if self._rows is None or self._rows.rows < count:
                if self._rows is not None:
                    # No gradient may stay placed in the memory freed.
                    self._placed.clear()
                    self._rows.free()
                self._rows = SharedRows(self.comm, count, self._size, self.dtype, tail=2)
            return self._rows.values, self._rows.tails
        mine = runs[self.rank + 1] - runs[self.rank]
        if self._mine.shape[0] < mine:
            self._mine = aligned_rows(mine, self._size, self.dtype)
        return self._mine, np.zeros((count, 2))

    def _exchange_parts(self, runs, count, width):
        """Every micro-batch's gradient of this rank's part: an array of shape (count, width).

        One exchange per row of the ranks' rows: in exchange j, each rank
        that has a j-th micro-batch sends every rank that rank's part of it.
        """
        size, rank = self.size, self.rank
        if self._received.shape != (count, width):
            self._received = np.zeros((count, width), self.dtype)
        received = self._received
        lengths = [self.parts[r + 1] - self.parts[r] for r in range(size)]
        for j in range(max(runs[r + 1] - runs[r] for r in range(size))):
            sending = runs[rank] + j < runs[rank + 1]
            source = self._mine[j] if sending else self._nothing   # nothing is read
            send_counts = lengths if sending else [0] * size
            has_row = [runs[r] + j < runs[r + 1] for r in range(size)]
            receive_counts = [width if has else 0 for has in has_row]
            receive_offsets = [(runs[r] + j) * width if has else 0
                               for r, has in zip(range(size), has_row)]
            self.comm.Alltoallv([source, (send_counts, self.parts[:-1]), self._mpi_type],
                                [received, (receive_counts, receive_offsets), self._mpi_type])
        return received

    def _gather_parts(self, flat):
        """Give every rank every part of ``flat`` (an array of the parameters' length), in place."""
        counts = [self.parts[r + 1] - self.parts[r] for r in range(self.size)]
        self.comm.Allgatherv(self._in_place, [flat, counts, self.parts[:-1], self._mpi_type])

    def share_optimizer_state(self):
        """Give every rank the optimiser state of every part (the training loop's epoch end).

        Each rank steps the optimiser on its own part of the parameters, so
        between steps each holds only that part's state up to date; after
        this every rank holds all of it, the same bit for bit (a checkpoint
        saves it; the loop checks it is finite).
        """
        if self.size == 1:
            return
        for flat in self.optimizer.flat_slots().values():
            self._gather_parts(flat)

    # ------------------------------------------------------------ evaluation
    def evaluate(self, sets, batch_size=500):
        """``LocalSteps.evaluate`` with the images shared by the ranks; the same figures on each.

        Each set is cut at multiples of ``batch_size`` into nearly equal
        shares, one per rank, so the model sees the chunks of a one-process
        evaluation; the chunks' summed losses are then added in chunk order,
        as one process adds them: the same figures bit for bit.
        """
        if self.size == 1:
            return super().evaluate(sets, batch_size)
        self.check_sets(sets, batch_size)
        mine = []
        for X, Y in sets:
            chunks = -(-len(X) // batch_size)
            runs = even_runs(chunks, self.size)
            starts = range(runs[self.rank] * batch_size, runs[self.rank + 1] * batch_size,
                           batch_size)
            mine.append([self.model.evaluation_sums(X[start:start + batch_size],
                                                    Y[start:start + batch_size], batch_size)
                         for start in starts if start < len(X)])
        everyone = self.comm.allgather(mine)
        results = []
        for index, (X, _) in enumerate(sets):
            loss, correct = 0.0, 0
            for share in everyone:
                for chunk_loss, chunk_correct in share[index]:
                    loss += chunk_loss
                    correct += chunk_correct
            results.append((loss / len(X), correct / len(X)))
        return results

    def parameters_agree(self):
        """Return True if every rank holds bit for bit the same parameters (a check)."""
        if self.size == 1:
            return True
        digest = hashlib.sha256(b"".join(param.tobytes() for param in self.params)).hexdigest()
        return len(set(self.comm.allgather(digest))) == 1

