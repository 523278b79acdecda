"""Training steps shared by several processes (data parallelism).

Each batch is split into ``processes`` nearly equal slices. Every process
computes its slice's gradient and writes it, flattened, into a buffer of
shared memory; then every process averages the slices' gradients over its
own share of the flattened parameters and applies Adam to that share. The
parameters (``LeNet5`` keeps them in one flat shared buffer) and Adam's
moments (in shared memory too) are therefore updated in place by all the
processes at once.

Every process is sent the epoch's order once and walks through the same
steps; they meet twice a step, when the gradients are written and when the
update is done. At a meeting every process sends one small message to
every other before reading theirs, so it costs one message's delay, and the
same messages carry any failure, so that all processes abandon a step
together. Sharing the update and meeting instead of sending per-step
requests both matter: averaging and Adam take a tenth of a two-process step,
and each request-and-answer round costs about as much again.

This process runs the first slice and the first share and reports the
losses; children forked when ``TrainingProcesses`` is created run the rest.
"""
import multiprocessing
import signal
import time

import numpy as np

from convnet.memory import ALIGNMENT, aligned_zeros, shared_zeros
from convnet.threads import blas_threads


def _receive(connection, spin_seconds=0.01):
    """Receive from a pipe, polling without sleeping for up to spin_seconds first.

    A process that blocks between two training steps lets its processor
    idle, and waking it up again costs far more than the poll; on a
    virtual machine it can cost a large part of a step.
    """
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


class _Aborted(Exception):
    """The step was abandoned: some process failed (or, with ``stop``, the parent is gone)."""

    def __init__(self, stop=False):
        super().__init__()
        self.stop = stop


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
    model : LeNet5
    optimizer : Adam
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

    def gradient(self, indices):
        """Write the gradient of ``X[indices]`` into this process's buffer; return the loss."""
        if len(indices) == 0:   # a batch smaller than the number of processes
            self.grads[self.rank][...] = 0
            return 0.0
        loss, grads = self.model.loss_and_grads(self.X[indices], self.Y[indices])
        np.concatenate([np.ravel(grad) for grad in grads], out=self.grads[self.rank])
        return loss

    def update(self, t, weights):
        """Apply Adam step ``t`` to this share, with the slices' gradients averaged by ``weights``."""
        average, scratch, part = self._average, self._scratch, self.part
        np.multiply(self.grads[0][part], weights[0], out=average)
        for grad, weight in zip(self.grads[1:], weights[1:]):
            np.multiply(grad[part], weight, out=scratch)
            average += scratch
        self.model.flat_parameters()[part] -= self.optimizer.flat_update(average, t, part,
                                                                         out=scratch)

    def steps(self, order, batch_size, first_t, meet):
        """Take this process's part in the epoch's steps; yield each batch's mean loss and size.

        ``meet(message)`` exchanges this process's ``(status, value)`` with
        the others and returns the messages it has (every process's, in
        rank order, in the parent, whose yielded losses are the ones used),
        or raises if any process failed: after a failed gradient no process
        updates anything.
        """
        count = len(self.grads)
        for index, start in enumerate(range(0, len(order), batch_size)):
            batch = order[start:start + batch_size]
            bounds = _share_bounds(len(batch), count)
            messages = meet(_attempt(self.gradient, batch[bounds[self.rank]:bounds[self.rank + 1]]))
            weights = [(stop - begin) / len(batch) for begin, stop in zip(bounds, bounds[1:])]
            meet(_attempt(self.update, first_t + index + 1, weights))
            yield sum(weight * loss for weight, (_, loss) in zip(weights, messages)), len(batch)


def _exchange(links, message):
    """Send this process's ``(status, value)`` to every other process; return everyone's.

    ``links`` holds a pipe to each other process, in rank order, and None at
    this process's own rank. Everyone sends before anyone receives, so a
    meeting costs one message's delay. An error's value travels as text.
    Returns the messages in rank order, with None for a process that has
    stopped or is stopping the others.
    """
    status, value = message
    sent = (status, value if status == "ok" else f"{type(value).__name__}: {value}")
    for link in links:
        if link is not None:
            try:
                link.send(sent)
            except OSError:   # that process has gone: its message reads as None
                pass
    messages = []
    for link in links:
        if link is None:
            messages.append(message)
            continue
        try:
            messages.append(_receive(link))
        except (EOFError, OSError):   # closed, or reset by a process that was killed
            messages.append(None)
    return messages


def _worker(share, links, others):
    """Child process: take part in every epoch it is sent ``(order, batch_size, first_t)``.

    ``links`` are this child's pipes to every process (None at its own
    rank); ``others`` are the pipe ends it inherited but does not own, closed
    at once so that a process's end reads as closed when it stops. Stops on
    None from the parent, or when the parent has gone.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C
    for end in others:
        end.close()
    parent = links[0]

    def meet(message):
        messages = _exchange(links, message)
        if messages[0] is None:
            raise _Aborted(stop=True)
        if any(other is None or other[0] != "ok" for other in messages):
            raise _Aborted
        return messages

    with blas_threads(1):
        while True:
            try:
                request = _receive(parent)
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
    for link in links:
        if link is not None:
            link.close()


class TrainingProcesses:
    """Run the Adam training steps of an epoch in ``processes`` processes.

    ``run(order, batch_size)`` gives the same result as ``model.loss_and_grads``
    on each whole batch followed by ``optimizer.step``, up to rounding; the
    same ``processes`` always gives the same result. With ``processes=1`` it
    is exactly that, in this process. Use as a context manager, which stops
    the children.

    Parameters
    ----------
    model : LeNet5
    optimizer : Adam
        Built on ``model.parameters()``, in that order. Its ``iterations``
        counts the steps, whichever process ran them.
    X : ndarray of shape (m, 28, 28) or (m, 28, 28, 1)
        Training images (the children inherit them when forked).
    Y : ndarray of shape (m,)
        Integer labels.
    processes : int
        Total number of processes, >= 1.
    """

    def __init__(self, model, optimizer, X, Y, processes=1):
        if isinstance(processes, bool) or not isinstance(processes, (int, np.integer)) \
                or processes < 1:
            raise ValueError(f"processes must be a positive integer, received {processes!r}")
        self.model, self.optimizer, self.X, self.Y = model, optimizer, X, Y
        self.children, self._links = [], []
        if processes > 1:
            flat = model.flat_parameters()
            grads = [shared_zeros(flat.size, flat.dtype) for _ in range(processes)]
            self._share = _Share(model, optimizer, X, Y, grads, 0)
            context = multiprocessing.get_context("fork")
            # ends[r][s]: process r's end of the pipe between r and s.
            ends = [[None] * processes for _ in range(processes)]
            for first in range(processes):
                for second in range(first + 1, processes):
                    ends[first][second], ends[second][first] = context.Pipe()
            for rank in range(1, processes):
                others = [end for owner, row in enumerate(ends) if owner != rank
                          for end in row if end is not None]
                child = context.Process(
                    target=_worker, daemon=True,
                    args=(_Share(model, optimizer, X, Y, grads, rank), ends[rank], others))
                child.start()
                self.children.append(child)
            for row in ends[1:]:
                for end in row:
                    if end is not None:
                        end.close()
            self._links = ends[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Stop the children (they finish their current slice first)."""
        for link in self._links:
            if link is not None:
                try:
                    link.send(None)
                except OSError:
                    pass
                link.close()
        for child in self.children:
            child.join(timeout=5)
            if child.is_alive():
                child.terminate()
        self.children, self._links = [], []

    def run(self, order, batch_size):
        """Train one step per ``batch_size`` indices of ``order``; yield each batch's mean loss and size.

        Consume one run to its end (or close this object) before starting another.

        Raises
        ------
        ValueError, TypeError, ArithmeticError, MemoryError
            As ``loss_and_grads`` raises them for this process's slice.
        RuntimeError
            If a child failed.
        A failure while computing the gradients (bad labels, say) leaves that
        step unapplied and uncounted; the children are ready for another run.
        """
        if not self.children:
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                loss, grads = self.model.loss_and_grads(self.X[batch], self.Y[batch])
                self.optimizer.step(grads)
                yield loss, len(batch)
            return
        for link in self._links[1:]:
            try:
                link.send((order, batch_size, self.optimizer.iterations))
            except OSError:   # that process has gone: the first meeting says so
                pass
        for step in self._share.steps(order, batch_size, self.optimizer.iterations, self._meet):
            self.optimizer.iterations += 1
            yield step

    def _meet(self, message):
        """Exchange messages with the children; raise if any process failed."""
        messages = _exchange(self._links, message)
        if message[0] != "ok":
            raise message[1]
        errors = ["the process stopped" if other is None else other[1]
                  for other in messages if other is None or other[0] != "ok"]
        if errors:
            raise RuntimeError("a training process failed: " + "; ".join(errors))
        return messages
