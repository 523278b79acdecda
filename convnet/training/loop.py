"""The NumPy training loop: epochs of optimiser steps on shuffled mini-batches.

``fit`` trains up to a number of epochs; the training set is reshuffled
every epoch with a permutation derived from ``(seed, epoch)`` alone, so a run
resumed from a checkpoint draws exactly the batches the uninterrupted run
would have drawn, without storing any random-generator state.

After every epoch the cost and accuracy of the *whole* training set (not a
running average over the epoch's batches) and of the validation set are
measured with the epoch's final weights, in bounded chunks. The entry for
epoch 0 is the untrained network, as in task 4.

A run never continues with a model that is not finite: the loss of every
step and, after each epoch, every weight and optimiser buffer are checked,
and the loop stops with ``TrainingDivergedError`` before ``on_epoch_end``
(which saves checkpoints) sees that epoch.

How each batch's gradient is computed and applied is the job of a *steps*
object (``convnet.training.steps``): ``LocalSteps`` in this process, or
``convnet.parallel.distributed.DataParallel`` over the ranks of an MPI job.

Training and evaluation run with NumPy's BLAS limited to one thread by
default (``convnet.nn.threads.blas_threads``): a LeNet-5 step's matrix
products are small, so waking a second thread for each costs more than it
saves, and on a busy machine spinning BLAS threads make a step several times
slower. ``threads`` raises the limit where processors are known to be free
and the products are large (the MLP's).
"""
import time

import numpy as np

from convnet.errors import TrainingDivergedError
from convnet.nn.memory import keep_freed_memory
from convnet.nn.threads import blas_threads
from convnet.training.checkpoint import HISTORY_KEYS
from convnet.training.config import AUGMENTATIONS
from convnet.training.events import epoch_line, epochs_text  # noqa: F401 -- read here too
from convnet.training.steps import LocalSteps

# The largest move ``augment_batch``'s shift makes, in pixels.
SHIFT = 2


def epoch_order(seed, epoch, count):
    """Return the order in which epoch ``epoch`` (1-based) visits ``count`` examples.

    The permutation depends only on ``(seed, epoch)``, which is what makes a
    resumed run identical to an uninterrupted one.
    """
    return np.random.default_rng([seed, epoch]).permutation(count)


def augment_batch(X, kinds, rng):
    """Return a randomly altered copy of a batch of images (Keras's random image layers).

    Parameters
    ----------
    X : ndarray of shape (m, h, w, c)
        The batch (left unchanged).
    kinds : sequence of str
        Any of ``AUGMENTATIONS``: ``"flip"`` mirrors each image left to right
        with probability 1/2 (``RandomFlip("horizontal")``); ``"shift"`` moves
        each image by a whole number of pixels drawn from -``SHIFT`` to
        ``SHIFT`` along each axis, filling with zeros (``RandomTranslation``
        with ``fill_mode="constant"``).
    rng : numpy.random.Generator
        Draws the changes; the same generator state gives the same batch.

    Returns
    -------
    ndarray of shape (m, h, w, c)
    """
    unknown = sorted(set(kinds) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"kinds must be among {', '.join(AUGMENTATIONS)}, received {unknown}")
    X = np.array(X, copy=True)
    m, h, w = X.shape[:3]
    if "flip" in kinds:
        mirrored = rng.random(m) < 0.5
        X[mirrored] = X[mirrored, :, ::-1]
    if "shift" in kinds:
        moves = rng.integers(-SHIFT, SHIFT + 1, size=(m, 2))
        moved = np.zeros_like(X)
        for image, (dy, dx) in enumerate(moves):
            moved[image, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
                X[image, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        X = moved
    return X


def train_epoch(model, optimizer, X, Y, batch_size, seed, epoch, progress=False,
                description=None, on_step=None, steps=None, augment=(), threads=1):
    """Run one epoch of mini-batch optimiser steps.

    Parameters
    ----------
    model : Sequential
    optimizer : Adam, RMSprop or SGD
        Built on ``model.parameters()``.
    X : ndarray of shape (m, h, w, c) (or (m, h, w) when c is 1)
        Training images, float32.
    Y : ndarray of shape (m,)
        Integer labels.
    batch_size : int
        Images per step; the last batch of the epoch may be smaller.
    seed, epoch : int
        Select the epoch's shuffling (see ``epoch_order``).
    progress, description
        Accepted for callers of earlier versions, which drew a progress bar
        here; the loop draws nothing (``on_step`` tells each step).
    on_step : callable, optional
        Called as ``on_step(epoch, loss)`` after every step, with that
        batch's mean loss.
    steps : LocalSteps or DataParallel, optional
        Runs each step (see ``convnet.training.steps``): this process alone,
        or shared by the ranks of an MPI job. Default: ``LocalSteps``, whole
        batches.
    augment : sequence of str
        Random changes to each batch's images (see ``augment_batch``), drawn
        from ``(seed, epoch, step)``: the same on every rank and in a
        resumed run.
    threads : int
        Threads of NumPy's BLAS meanwhile (see ``convnet.nn.threads``).

    Returns
    -------
    float
        Mean of the batch losses over the epoch.

    Raises
    ------
    TrainingDivergedError
        As soon as a step's loss is not a finite number (the weights are
        then no longer usable; nothing is saved by this function). Every
        rank of a job raises it at the same step.

    Notes
    -----
    NumPy's BLAS runs on ``threads`` threads meanwhile (see ``blas_threads``),
    and the process's allocator keeps the memory a step frees for the next
    one (see ``convnet.nn.memory``).
    """
    keep_freed_memory()
    steps = LocalSteps(model, optimizer, seed=seed) if steps is None else steps
    order = epoch_order(seed, epoch, len(X))
    starts = range(0, len(X), batch_size)
    total_loss = 0.0
    # A diverging run overflows on its way to NaN: the loss check below reports it in one
    # line instead of NumPy's warnings.
    with blas_threads(threads), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for step, start in enumerate(starts):
            batch = order[start:start + batch_size]
            images = X[batch]
            if augment:
                images = augment_batch(images, augment,
                                       np.random.default_rng([seed, epoch, step]))
            loss = steps.step(images, Y[batch])
            if not np.isfinite(loss):
                raise TrainingDivergedError(f"training diverged: the loss became {loss} at "
                                            f"step {step + 1} of epoch {epoch}")
            total_loss += loss * len(batch)
            if on_step is not None:
                on_step(epoch, loss)
    steps.share_optimizer_state()
    return total_loss / max(len(X), 1)


def empty_history():
    """Return a history dict: per-epoch lists of the four metrics and epoch times."""
    return {key: [] for key in HISTORY_KEYS + ("epoch_seconds",)}


def _record(data, epoch, history, log, steps):
    """Measure the four metrics with the current weights, append them, log the line."""
    X_train, Y_train, X_valid, Y_valid = data
    (cost, accuracy), (val_cost, val_accuracy) = steps.evaluate(
        [(X_train, Y_train), (X_valid, Y_valid)])
    for key, value in zip(HISTORY_KEYS, (cost, accuracy, val_cost, val_accuracy)):
        history[key].append(float(value))
    if log is not None:
        log(epoch_line(epoch, cost, accuracy, val_cost, val_accuracy))


def fit(model, optimizer, data, epochs, batch_size=32, seed=0, start_epoch=0, history=None,
        on_epoch_end=None, log=None, progress=False, on_step=None, steps=None, augment=(),
        threads=1):
    """Train ``model`` up to ``epochs`` epochs, measuring it after each one.

    Parameters
    ----------
    model : Sequential
    optimizer : Adam, RMSprop or SGD
    data : tuple
        ``(X_train, Y_train, X_valid, Y_valid)``: images (m, h, w, c) and
        integer labels (m,).
    epochs : int
        Total number of epochs of the run (a resumed run counts those done).
    batch_size : int
        Images per optimiser step.
    seed : int
        Seed of the per-epoch shuffling (and of Dropout's masks).
    start_epoch : int
        Epochs already done. A run whose history is still empty first
        records the untrained network as epoch 0.
    history : dict, optional
        History to extend (from a checkpoint); a fresh one otherwise.
    on_epoch_end : callable, optional
        Called as ``on_epoch_end(epoch, history)`` after each epoch's
        measurements (and after epoch 0 of a fresh run), once the weights
        and the optimiser's state are known to be finite: saves checkpoints.
    log : callable, optional
        Receives each per-epoch line (see ``epoch_line``).
    progress : bool
        Accepted for callers of earlier versions; the loop draws nothing.
    on_step : callable, optional
        Passed to :func:`train_epoch`: called after every step.
    steps : LocalSteps or DataParallel, optional
        Runs every step and evaluation: alone, or shared by the ranks of an
        MPI job, which all call ``fit`` alike. Default: ``LocalSteps``, whole
        batches.
    augment : sequence of str
        Passed to :func:`train_epoch`: random changes to the training images.
    threads : int
        Threads of NumPy's BLAS for the training and the evaluations: 1
        unless processors are known to be free.

    Returns
    -------
    dict
        The history: ``"loss"``, ``"accuracy"``, ``"val_loss"``,
        ``"val_accuracy"`` (one entry per epoch, epoch 0 included) and
        ``"epoch_seconds"`` (training time of each epoch, measurements excluded).

    Raises
    ------
    TrainingDivergedError
        If a step's loss, or after an epoch a weight or an optimiser buffer,
        is not finite; ``on_epoch_end`` is not called for that epoch.

    Notes
    -----
    NumPy's BLAS runs on ``threads`` threads meanwhile (see ``blas_threads``).
    """
    steps = LocalSteps(model, optimizer, seed=seed) if steps is None else steps
    with blas_threads(threads):
        return _fit(model, optimizer, data, epochs, batch_size, seed, start_epoch, history,
                    on_epoch_end, log, on_step, steps, tuple(augment), threads)


def _fit(model, optimizer, data, epochs, batch_size, seed, start_epoch, history, on_epoch_end,
         log, on_step, steps, augment, threads):
    """The loop of ``fit`` (same parameters)."""
    X_train, Y_train = data[0], data[1]
    history = empty_history() if history is None else history
    if start_epoch == 0 and not history["loss"]:
        _record(data, 0, history, log, steps)
        if on_epoch_end is not None:
            on_epoch_end(0, history)
    for epoch in range(start_epoch + 1, epochs + 1):
        started = time.perf_counter()
        train_epoch(model, optimizer, X_train, Y_train, batch_size, seed, epoch,
                    on_step=on_step, steps=steps, augment=augment, threads=threads)
        history["epoch_seconds"].append(time.perf_counter() - started)
        _check_finite(model, optimizer, epoch)
        _record(data, epoch, history, log, steps)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    return history


def _check_finite(model, optimizer, epoch):
    """Raise TrainingDivergedError unless every weight and optimiser buffer is finite."""
    arrays = [("weights", model.flat_parameters())]
    arrays += [(f"{optimizer.name} buffer {name}", value)
               for name, value in optimizer.state().items() if name != "iterations"]
    arrays += [(f"weight {name}", value) for name, value in model.get_weights().items()
               if name.endswith(("/moving_mean", "/moving_variance"))]
    for name, values in arrays:
        if not np.isfinite(values).all():
            raise TrainingDivergedError(f"training diverged: the {name} are no longer finite "
                                        f"after epoch {epoch}" if name == "weights" else
                                        f"training diverged: {name} is no longer finite "
                                        f"after epoch {epoch}")
