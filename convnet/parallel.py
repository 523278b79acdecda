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
update is done, by exchanging one small message each with this process.
Sharing the update and meeting instead of sending per-step requests both
matter: averaging and Adam take a tenth of a two-process step, and each
request-and-answer round costs about as much again.

This process runs the first slice and the first share and reports the
losses; children forked when ``TrainingProcesses`` is created run the rest.
"""
import multiprocessing
import signal
import time

import numpy as np

from convnet.memory import aligned_bounds, aligned_zeros, shared_zeros
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


def _slice_bounds(count, parts):
    """Start of each of ``parts`` nearly equal slices of ``count`` items, and the end.

    The first ``count % parts`` slices have one item more, as in ``np.array_split``.
    """
    size, extra = divmod(count, parts)
    return [rank * size + min(rank, extra) for rank in range(parts + 1)]


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
        bounds = aligned_bounds(grads[0].size, len(grads), grads[0].itemsize)
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
            bounds = _slice_bounds(len(batch), count)
            messages = meet(_attempt(self.gradient, batch[bounds[self.rank]:bounds[self.rank + 1]]))
            weights = [(stop - begin) / len(batch) for begin, stop in zip(bounds, bounds[1:])]
            meet(_attempt(self.update, first_t + index + 1, weights))
            yield sum(weight * loss for weight, (_, loss) in zip(weights, messages)), len(batch)


def _worker(share, connection):
    """Child process: take part in every epoch it is sent ``(order, batch_size, first_t)``.

    Stops on None, or when the parent has gone.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C

    def meet(message):
        status, value = message
        try:
            connection.send((status, value if status == "ok" else
                             f"{type(value).__name__}: {value}"))
            verdict = _receive(connection)
        except (OSError, EOFError):   # the parent has gone (interrupted)
            raise _Aborted(stop=True) from None
        if verdict is None:
            raise _Aborted(stop=True)
        if verdict != "go":
            raise _Aborted
        return [message]

    with blas_threads(1):
        while True:
            try:
                request = _receive(connection)
            except EOFError:
                break
            if request is None:
                break
            try:
                for _ in share.steps(*request, meet):
                    pass
            except _Aborted as aborted:
                if aborted.stop:
                    break
    connection.close()


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
        self.children = []
        if processes > 1:
            flat = model.flat_parameters()
            grads = [shared_zeros(flat.size, flat.dtype) for _ in range(processes)]
            self._share = _Share(model, optimizer, X, Y, grads, 0)
            context = multiprocessing.get_context("fork")
            for rank in range(1, processes):
                parent_end, child_end = context.Pipe()
                child = context.Process(
                    target=_worker, daemon=True,
                    args=(_Share(model, optimizer, X, Y, grads, rank), child_end))
                child.start()
                child_end.close()
                self.children.append((child, parent_end))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Stop the children (they finish their current slice first)."""
        for child, connection in self.children:
            try:
                connection.send(None)
            except OSError:
                pass
            connection.close()
        for child, _ in self.children:
            child.join(timeout=5)
            if child.is_alive():
                child.terminate()
        self.children = []

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
        for _, connection in self.children:
            connection.send((order, batch_size, self.optimizer.iterations))
        for step in self._share.steps(order, batch_size, self.optimizer.iterations, self._meet):
            self.optimizer.iterations += 1
            yield step

    def _meet(self, message):
        """Collect every child's message, tell them all whether to go on; return the messages."""
        messages = [message] + [self._answer(connection) for _, connection in self.children]
        failed = any(status != "ok" for status, _ in messages)
        for _, connection in self.children:
            connection.send("stop" if failed else "go")
        if message[0] != "ok":
            raise message[1]
        if failed:
            raise RuntimeError("a training process failed: " + "; ".join(
                value for status, value in messages if status != "ok"))
        return messages

    @staticmethod
    def _answer(connection):
        """Wait for one child's ``(status, value)`` message."""
        try:
            return _receive(connection)
        except EOFError:
            return "error", "the process stopped"
