"""Training steps shared by several processes (data parallelism).

Each batch is split into ``processes`` nearly equal slices. Every process
computes its slice's gradient and writes it, flattened, into a buffer of
shared memory; then every process averages the slices' gradients over its
own share of the flattened parameters and applies the optimiser to that
share. The parameters (a ``Sequential`` model keeps them in one flat shared
buffer) and the optimiser's buffers (in shared memory too) are therefore
updated in place by all the processes at once. Dropout masks of step ``t``
in the process of rank ``r`` come from the stream ``(seed, t, r)`` (see
``Sequential.seed_dropout``), so no two processes draw the same masks.
A model with BatchNormalization trains in one process: its batch
statistics need the whole batch.

Every process is sent the epoch's order once and walks through the same
steps; they meet twice a step, when the gradients are written and when the
update is done (see ``_Meeting``: shared memory and semaphores, no system
call when nobody has to sleep). A process that fails to compute its part
says so at the meeting, so that all processes abandon the step together.
Sharing the update and meeting cheaply both matter: averaging and Adam take
about a twentieth of a two-process step, and the step's two meetings, when
they went through pipes, cost about as much again.

This process runs the first slice and the first share and reports the
losses; children forked when ``TrainingProcesses`` is created run the rest.
"""
import itertools
import multiprocessing
import os
import signal
import time

import numpy as np

from convnet.checks import check_count
from convnet.memory import ALIGNMENT, aligned_zeros, shared_zeros
from convnet.threads import blas_threads

# Spinning this long before sleeping keeps a waiting process's processor
# awake: waking a sleeping process costs a large part of a step on a
# virtual machine, and the other processes rarely keep it waiting longer.
# Only when every process has a processor of its own: otherwise a spinning
# process holds up the one it waits for.
SPIN_SECONDS = 0.01
# A process kept waiting longer checks this often that the others still run.
CHECK_SECONDS = 0.05


def available_processors():
    """Number of processors this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _spin_seconds(processes):
    """How long a waiting process polls before sleeping: ``SPIN_SECONDS`` if each has a processor."""
    return SPIN_SECONDS if processes <= available_processors() else 0.0


def _receive(connection, spin_seconds):
    """Receive from a pipe, polling without sleeping for up to ``spin_seconds`` first."""
    deadline = time.perf_counter() + spin_seconds
    while not connection.poll() and time.perf_counter() < deadline:
        pass
    return connection.recv()


def _share_bounds(count, parts, step=1):
    """Bounds of ``parts`` nearly equal shares of ``count`` items.

    Returns ``parts + 1`` increasing offsets from 0 to ``count``; each is
    the multiple of ``step`` nearest to its even share, except the last.
    Shares of a batch use a step of 1; shares of the flattened parameters a
    step of ``ALIGNMENT // itemsize``, so that a share of an aligned buffer
    starts aligned.
    """
    inner = [min(step * ((2 * count * rank + parts * step) // (2 * parts * step)), count)
             for rank in range(1, parts)]
    return [0] + inner + [count]


class TrainingProcessError(RuntimeError):
    """A child training process failed or stopped; the message says how."""

    def __init__(self, reason):
        super().__init__(f"a training process failed: {reason}")
        self.reason = reason


def _stopped(kind, rank, processes, child):
    """Say which child stopped and how: ``"training process 2 of 2 (pid 7) stopped: ..."``.

    Processes are numbered from 1, the parent, which runs the first share.
    """
    code = child.exitcode
    if code is None:
        how = "its pipe closed"
    elif code < 0:
        try:
            how = f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exit status {code}"
    return f"{kind} process {rank} of {processes} (pid {child.pid}) stopped: {how}"


class _Aborted(Exception):
    """The step was abandoned: some process failed (or, with ``stop``, the parent is gone)."""

    def __init__(self, stop=False):
        super().__init__()
        self.stop = stop


def _join(children, seconds=5):
    """Wait for child processes to end, terminating any still running after ``seconds``."""
    for child in children:
        child.join(timeout=seconds)
        if child.is_alive():
            child.terminate()


def _error_text(error):
    """How a child reports an error to the parent: its type and message."""
    return f"{type(error).__name__}: {error}"


def _attempt(function, *args):
    """Return ``("ok", result)``, or ``("error", exception)`` for a computing error."""
    try:
        return "ok", function(*args)
    except (ValueError, TypeError, ArithmeticError, MemoryError) as error:
        return "error", error


class _Share:
    """One process's part of every step: a batch slice's gradient, then a share of the update.

    Parameters
    ----------
    model : Sequential
    optimizer : Adam, RMSprop or SGD
        Built on ``model.parameters()``.
    X, Y : ndarray
        Training images and labels.
    grads : list of ndarray of shape (n,)
        Every process's flat gradient buffer (shared memory).
    rank : int
        This process's index into ``grads`` and into the shares of the parameters.
    """

    def __init__(self, model, optimizer, X, Y, grads, rank):
        self.model, self.optimizer, self.X, self.Y = model, optimizer, X, Y
        self.grads, self.rank = grads, rank
        bounds = _share_bounds(grads[0].size, len(grads), max(ALIGNMENT // grads[0].itemsize, 1))
        self.part = slice(bounds[rank], bounds[rank + 1])
        self._average = aligned_zeros(self.part.stop - self.part.start, grads[0].dtype)
        self._scratch = aligned_zeros(self.part.stop - self.part.start, grads[0].dtype)

    def gradient(self, indices, t):
        """Write the gradient of ``X[indices]`` (step ``t``) into this process's buffer; return the loss."""
        if len(indices) == 0:   # a batch smaller than the number of processes
            self.grads[self.rank][...] = 0
            return 0.0
        self.model.seed_dropout(t, self.rank)
        loss, grads = self.model.loss_and_grads(self.X[indices], self.Y[indices])
        np.concatenate([np.ravel(grad) for grad in grads], out=self.grads[self.rank])
        return loss

    def update(self, t, weights):
        """Apply optimiser step ``t`` to this share, with the slices' gradients averaged by ``weights``."""
        average, scratch, part = self._average, self._scratch, self.part
        np.multiply(self.grads[0][part], weights[0], out=average)
        for grad, weight in zip(self.grads[1:], weights[1:]):
            np.multiply(grad[part], weight, out=scratch)
            average += scratch
        self.model.flat_parameters()[part] -= self.optimizer.flat_update(average, t, part,
                                                                         out=scratch)

    def steps(self, order, batch_size, first_t, meet):
        """Take this process's part in the epoch's steps; yield each batch's mean loss and size.

        ``meet(kind, outcome)`` reports this process's ``(status, value)``
        at meeting ``kind`` (0 after the gradients, 1 after the update) and
        returns every process's value, in rank order, or raises if any
        process failed: after a failed gradient no process updates anything.
        """
        count = len(self.grads)
        for index, start in enumerate(range(0, len(order), batch_size)):
            batch = order[start:start + batch_size]
            bounds = _share_bounds(len(batch), count)
            losses = meet(0, _attempt(self.gradient, batch[bounds[self.rank]:bounds[self.rank + 1]],
                                      first_t + index + 1))
            weights = [(stop - begin) / len(batch) for begin, stop in itertools.pairwise(bounds)]
            meet(1, _attempt(self.update, first_t + index + 1, weights))
            yield float(np.dot(weights, losses)), len(batch)


def _worker(share, meeting, parent, others):
    """Child process: take part in every epoch it is sent ``(order, batch_size, first_t)``.

    ``parent`` is this child's pipe to the parent, which sends requests and
    receives the text of this child's errors; ``others`` are the pipe ends
    it inherited but does not own, closed at once so that the parent's end
    reads as closed when the parent stops. Stops on None from the parent,
    when the parent has gone, or when the meeting is stopped.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C
    for end in others:
        end.close()
    parent_id = os.getppid()

    def check():
        if meeting.stopping or os.getppid() != parent_id:
            raise _Aborted(stop=True)

    def meet(kind, outcome):
        status, value = outcome
        if status != "ok":
            try:
                parent.send(_error_text(value))   # sent before the post below
            except OSError:   # the parent has gone
                raise _Aborted(stop=True) from None
        failed, values = meeting.meet(share.rank, kind, outcome, check)
        if failed.any():
            raise _Aborted
        return values

    with blas_threads(1):
        while True:
            try:
                request = _receive(parent, meeting.spin_seconds)
            except (EOFError, OSError):
                break
            if request is None:
                break
            try:
                for _ in share.steps(*request, meet):
                    pass
            except _Aborted as aborted:
                if aborted.stop:
                    break
    parent.close()


class _Meeting:
    """Where the processes meet twice a step: shared outcomes and a semaphore per ordered pair.

    At a meeting each process writes its outcome (failed or not, and a
    number: its slice's loss) into shared memory, posts the semaphore it
    shares with every other process, then takes the one every other process
    posted to it, and reads everyone's outcome. Posting and taking a
    semaphore synchronise memory (POSIX), so what a process wrote before
    posting, its gradient or its share of the update, is what the others
    read after taking. Neither needs a system call unless a process has to
    sleep; a message through a pipe costs about 10 microseconds each way.

    The two meetings of a step write different slots: a process may reach
    the next meeting while another is still reading the last one, and it
    cannot get two meetings ahead, since each needs everyone's post.

    Parameters
    ----------
    processes : int
    context : multiprocessing context
        The one the processes are forked from.
    """

    def __init__(self, processes, context):
        self.failed = shared_zeros(2 * processes, np.int64).reshape(2, processes)
        self.values = shared_zeros(2 * processes, np.float64).reshape(2, processes)
        self._stopping = shared_zeros(1, np.int64)
        self.spin_seconds = _spin_seconds(processes)
        # _posts[giver][taker]: posted by process giver for process taker.
        self._posts = [[context.Semaphore(0) if giver != taker else None
                        for taker in range(processes)] for giver in range(processes)]

    @property
    def stopping(self):
        """True once ``stop`` was called: the processes are to leave."""
        return bool(self._stopping[0])

    def stop(self):
        """Tell every process waiting at a meeting, now or later, to leave."""
        self._stopping[0] = 1

    def meet(self, rank, kind, outcome, check):
        """Report this process's ``(status, value)`` at meeting ``kind``; return everyone's.

        A value that is not a number (an error, or the update's None) is
        recorded as 0. Returns ``(failed, values)``, arrays of shape
        (processes,). While
        waiting longer than ``spin_seconds`` for another process, calls
        ``check()`` every ``CHECK_SECONDS``; it raises to stop waiting.
        """
        status, value = outcome
        failed = status != "ok"
        self.failed[kind, rank] = failed
        self.values[kind, rank] = 0.0 if failed or value is None else value
        for post in self._posts[rank]:
            if post is not None:
                post.release()
        for giver, posts in enumerate(self._posts):
            if giver != rank:
                self._take(posts[rank], check, self.spin_seconds)
        return self.failed[kind].copy(), self.values[kind].copy()

    @staticmethod
    def _take(semaphore, check, spin_seconds):
        deadline = time.perf_counter() + spin_seconds
        while not semaphore.acquire(False):
            if time.perf_counter() > deadline:
                while not semaphore.acquire(timeout=CHECK_SECONDS):
                    check()
                return


class TrainingProcesses:
    """Run the optimiser steps of an epoch in ``processes`` processes.

    ``run(order, batch_size)`` gives the same result as ``model.loss_and_grads``
    on each whole batch followed by ``optimizer.step``, up to rounding; the
    same ``processes`` always gives the same result. With ``processes=1`` it
    is exactly that, in this process. Use as a context manager, which stops
    the children.

    Parameters
    ----------
    model : Sequential
    optimizer : Adam, RMSprop or SGD
        Built on ``model.parameters()``, in that order. Its ``iterations``
        counts the steps, whichever process ran them.
    X : ndarray of shape (m, h, w, c) (or (m, h, w) when c is 1)
        Training images (the children inherit them when forked).
    Y : ndarray of shape (m,)
        Integer labels.
    processes : int
        Total number of processes, >= 1.
    """

    def __init__(self, model, optimizer, X, Y, processes=1):
        check_count("processes", processes)
        if processes > 1 and model.has_batch_normalization:
            raise ValueError("a model with BatchNormalization trains in one process (its batch "
                             f"statistics need the whole batch), received processes={processes}")
        self.model, self.optimizer, self.X, self.Y = model, optimizer, X, Y
        self.children, self._links = [], []
        if processes > 1:
            flat = model.flat_parameters()
            grads = [shared_zeros(flat.size, flat.dtype) for _ in range(processes)]
            self._share = _Share(model, optimizer, X, Y, grads, 0)
            context = multiprocessing.get_context("fork")
            self._meeting = _Meeting(processes, context)
            pipes = [context.Pipe() for _ in range(1, processes)]
            for rank, (_, child_end) in enumerate(pipes, start=1):
                others = [end for pipe in pipes for end in pipe if end is not child_end]
                child = context.Process(
                    target=_worker, daemon=True,
                    args=(_Share(model, optimizer, X, Y, grads, rank), self._meeting, child_end,
                          others))
                child.start()
                self.children.append(child)
            for _, child_end in pipes:
                child_end.close()
            self._links = [parent_end for parent_end, _ in pipes]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Stop the children (they finish their current slice first)."""
        if self.children:
            self._meeting.stop()
        for link in self._links:
            try:
                link.send(None)
            except OSError:
                pass
            link.close()
        _join(self.children)
        self.children, self._links = [], []

    def run(self, order, batch_size):
        """Train one step per ``batch_size`` indices of ``order``; yield each batch's mean loss and size.

        Consume one run to its end (or close this object) before starting another.

        Raises
        ------
        ValueError, TypeError, ArithmeticError, MemoryError
            As ``loss_and_grads`` raises them for this process's slice.
        TrainingProcessError
            If a child failed.
        A failure while computing the gradients (bad labels, say) leaves that
        step unapplied and uncounted; the children are ready for another run.
        """
        if not self.children:
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                self.model.seed_dropout(self.optimizer.iterations + 1, 0)
                loss, grads = self.model.loss_and_grads(self.X[batch], self.Y[batch])
                self.optimizer.step(grads)
                yield loss, len(batch)
            return
        self._check_children()
        for link in self._links:
            try:
                link.send((order, batch_size, self.optimizer.iterations))
            except OSError:   # that child has just stopped: the first meeting finds out
                pass
        for step in self._share.steps(order, batch_size, self.optimizer.iterations, self._meet):
            self.optimizer.iterations += 1
            yield step

    def _check_children(self):
        """Raise if a child has stopped, naming it; the others are then told to stop too."""
        for rank, child in enumerate(self.children, start=2):   # this process is 1
            if not child.is_alive():
                self._meeting.stop()
                child.join(timeout=1)   # its exit status
                raise TrainingProcessError(_stopped("training", rank, len(self.children) + 1,
                                                    child))

    def _meet(self, kind, outcome):
        """Meet the children; raise if any process failed, else return the values."""
        status, value = outcome
        failed, values = self._meeting.meet(0, kind, outcome, self._check_children)
        errors = [self._links[rank - 1].recv() for rank in np.flatnonzero(failed[1:]) + 1]
        if status != "ok":
            raise value
        if errors:
            raise TrainingProcessError("; ".join(errors))
        return values


def _evaluate_share(model, sets, rank, processes, batch_size):
    """This process's ``(summed loss, number correct)`` on its share of each set."""
    sums = []
    for X, Y in sets:
        bounds = _share_bounds(len(X), processes, batch_size)
        part = slice(bounds[rank], bounds[rank + 1])
        sums.append(model.evaluation_sums(X[part], Y[part], batch_size))
    return sums


def _evaluation_worker(connection, model, sets, rank, processes, batch_size):
    """Child process: send this share's sums, or the text of the error that stopped it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C
    with blas_threads(1):
        status, value = _attempt(_evaluate_share, model, sets, rank, processes, batch_size)
        try:
            connection.send((status, value if status == "ok" else _error_text(value)))
        except OSError:   # the parent has stopped listening
            pass
    connection.close()


def evaluate(model, sets, processes=1, batch_size=500):
    """``model.evaluate`` on each ``(X, Y)`` of ``sets``, the images shared by ``processes``.

    Each set is cut at multiples of ``batch_size`` into nearly equal shares;
    children forked for the call evaluate all shares but the first, so the
    model sees exactly the chunks of a one-process evaluation: the same
    accuracy, and the same mean loss up to float64 rounding.

    Parameters
    ----------
    model : Sequential
    sets : list of (ndarray of shape (m, h, w, c), ndarray of shape (m,))
        Images and integer labels; each set must be non-empty.
    processes : int
        Total number of processes, >= 1.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    list of (float, float)
        ``(mean loss, accuracy)`` of each set.

    Raises
    ------
    ValueError, TypeError
        As ``model.evaluate`` raises them.
    TrainingProcessError
        If a child failed or stopped.
    """
    check_count("processes", processes)
    if processes == 1:
        with blas_threads(1):
            return [model.evaluate(X, Y, batch_size) for X, Y in sets]
    for X, _ in sets:
        if len(X) == 0:
            raise ValueError("cannot evaluate on an empty set of images")
    context = multiprocessing.get_context("fork")
    children, links = [], []
    try:
        for rank in range(1, processes):
            link, child_end = context.Pipe()
            child = context.Process(target=_evaluation_worker, daemon=True,
                                    args=(child_end, model, sets, rank, processes, batch_size))
            child.start()
            child_end.close()
            children.append(child)
            links.append(link)
        with blas_threads(1):   # as in the children: one thread count, one rounding
            shares = [_evaluate_share(model, sets, 0, processes, batch_size)]
        for rank, (link, child) in enumerate(zip(links, children), start=2):
            try:
                status, value = link.recv()
            except (EOFError, OSError):
                child.join(timeout=1)   # its exit status
                raise TrainingProcessError(_stopped("evaluation", rank, processes, child)) \
                    from None
            if status != "ok":
                raise TrainingProcessError(value)
            shares.append(value)
    except BaseException:   # Ctrl-C, say: the children's work is no longer wanted
        for child in children:
            child.terminate()
        raise
    finally:
        for link in links:
            link.close()
        _join(children)
    results = []
    for index, (X, _) in enumerate(sets):
        loss = sum(share[index][0] for share in shares)
        correct = sum(share[index][1] for share in shares)
        results.append((loss / len(X), correct / len(X)))
    return results
