"""Training, evaluating and using a NumPy ``Sequential`` model: the library behind the CLI.

``fit`` is the training loop: an optimiser (Adam, RMSprop or SGD) on
mini-batches, the training set reshuffled
every epoch with a permutation derived from ``(seed, epoch)`` alone, so a run
resumed from a checkpoint draws exactly the batches the uninterrupted run
would have drawn, without storing any random-generator state.

After every epoch the cost and accuracy of the *whole* training set (not a
running average over the epoch's batches) and of the validation set are
measured with the epoch's final weights, in bounded chunks, and printed in
task 4's format. The line for epoch 0 is the untrained network, as in task 4.

A checkpoint (``checkpoint.npz``, layout in ``convnet.training.checkpoint``) describes
itself: the model's spec, its weights by name, the optimiser's configuration
and state, the dataset and its class names, the epoch, the settings of the
run and its history; it is rewritten atomically after every epoch.
``history.json`` is a copy of the checkpoint's history, written after it (and
again when a run is resumed), so the two cannot disagree for long. With
``keep_best`` a copy of the best validation epoch's checkpoint is kept as
``best.npz``, as Keras's ``ModelCheckpoint(save_best_only=True)`` does.

A run never saves a model that is not finite: the loss of every step and,
before each checkpoint, every weight and optimiser buffer are checked, and the
run stops with ``TrainingDivergedError`` leaving the last good checkpoint
as it was.

Training and evaluation run with NumPy's BLAS limited to one thread by default
(``convnet.nn.threads.blas_threads``): a LeNet-5 step's matrix products are small
(a few thousand rows at most for the convolutional models), so waking a second
thread for each costs more than it saves, and on a busy machine spinning BLAS
threads make a step several times slower. ``threads`` raises the limit where
processors are known to be free and the products are large (the MLP's: see
``convnet.parallel.distributed.default_layout``).
"""
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from convnet import data, storage
from convnet.errors import BadCheckpointError, BadDataError, BadOptionError, TrainingDivergedError
from convnet.nn.memory import keep_freed_memory
from convnet.nn.optim import make_optimizer
from convnet.nn.sequential import Sequential
from convnet.nn.threads import blas_threads
from convnet.parallel.distributed import DataParallel, check_same_rule
from convnet.training import checkpoint as checkpoints
from convnet.training.checkpoint import HISTORY_KEYS, RUN_SETTINGS

EPOCH_LINE = ("After {epoch} {epochs}: cost {c:.4f}, accuracy {a:.4f}, "
              "validation cost {vc:.4f}, validation accuracy {va:.4f}")
CHECKPOINT_NAME = "checkpoint.npz"
BEST_NAME = "best.npz"
HISTORY_NAME = "history.json"
# Images per micro-batch of a training step (see ``Sequential``'s ``micro_batch``): each
# slice's maps stay in the processor's caches from layer to layer.
MICRO_BATCH = 32
# Random changes ``augment_batch`` can make to the training images, and the largest shift.
AUGMENTATIONS = ("flip", "shift")
SHIFT = 2
# RUN_SETTINGS (from convnet.training.checkpoint): the settings a resumed run must share
# with the checkpoint to continue it exactly.


def epochs_text(count):
    """``"1 epoch"``, ``"2 epochs"``, ``"0 epochs"``."""
    return f"{count} epoch{'' if count == 1 else 's'}"


def epoch_line(epoch, cost, accuracy, val_cost, val_accuracy):
    """The per-epoch line of task 4's format, numbers rounded to 4 decimals.

    ``"After 1 epoch: cost 0.2345, accuracy 0.9312, validation cost 0.2101,
    validation accuracy 0.9400"`` (task 4's own main prints every digit).
    """
    return EPOCH_LINE.format(epoch=epoch, epochs="epoch" if epoch == 1 else "epochs",
                             c=cost, a=accuracy, vc=val_cost, va=val_accuracy)


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


def _progress(iterable, description, total, enabled):
    """Wrap ``iterable`` in a tqdm bar on stderr when asked and available."""
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=description, total=total, unit="batch", leave=False,
                file=sys.stderr, mininterval=0.5)


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
    progress : bool
        Show a tqdm bar.
    description : str, optional
        The bar's label (default ``"epoch N"``).
    on_step : callable, optional
        Called as ``on_step(epoch, loss)`` after every step, with that
        batch's mean loss (``convnet train --serve`` streams them).
    steps : DataParallel, optional
        Runs each step: alone, or shared by the ranks of an MPI job (see
        ``convnet.parallel.distributed``). Default: this process alone, whole batches.
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
    steps = DataParallel(model, optimizer, seed=seed) if steps is None else steps
    order = epoch_order(seed, epoch, len(X))
    starts = range(0, len(X), batch_size)
    total_loss = 0.0
    # A diverging run overflows on its way to NaN: the loss check below reports it in one
    # line instead of NumPy's warnings.
    with blas_threads(threads), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for step, start in enumerate(_progress(starts, description or f"epoch {epoch}",
                                               len(starts), progress)):
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
    log(epoch_line(epoch, cost, accuracy, val_cost, val_accuracy))


def fit(model, optimizer, data, epochs, batch_size=32, seed=0, start_epoch=0, history=None,
        on_epoch_end=None, log=print, progress=True, on_step=None, steps=None, augment=(),
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
    log : callable
        Receives each per-epoch line.
    progress : bool
        Show a tqdm bar per epoch on stderr.
    on_step : callable, optional
        Passed to :func:`train_epoch`: called after every step.
    steps : DataParallel, optional
        Runs every step and evaluation: alone, or shared by the ranks of an
        MPI job, which all call ``fit`` alike (see ``convnet.parallel.distributed``).
        Default: this process alone, whole batches.
    augment : sequence of str
        Passed to :func:`train_epoch`: random changes to the training images.
    threads : int
        Threads of NumPy's BLAS for the training and the evaluations: 1
        unless processors are known to be free (``convnet.parallel.distributed.default_layout``).

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
    steps = DataParallel(model, optimizer, seed=seed) if steps is None else steps
    with blas_threads(threads):
        return _fit(model, optimizer, data, epochs, batch_size, seed, start_epoch, history,
                    on_epoch_end, log, progress, on_step, steps, tuple(augment), threads)


def _fit(model, optimizer, data, epochs, batch_size, seed, start_epoch, history, on_epoch_end,
         log, progress, on_step, steps, augment, threads):
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
                    progress=progress, description=f"epoch {epoch}/{epochs}",
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


# ---------------------------------------------------------------- models and checkpoints
def build_model(spec, seed=0, dtype=np.float32):
    """Return a ``Sequential`` of ``spec`` ready to train: micro-batches unless it has BatchNormalization."""
    model = Sequential(spec, seed=seed, dtype=dtype)
    if not model.has_batch_normalization:
        model.micro_batch = MICRO_BATCH
    return model


def check_model_fits(model, dataset, image_shape, num_classes):
    """Raise BadOptionError unless ``model`` takes the dataset's images and classes.

    Parameters
    ----------
    model : Sequential
    dataset : str
        Its name, for the message.
    image_shape : tuple of int
        (h, w) or (h, w, c) of one image of the dataset.
    num_classes : int
        Classes of the dataset.
    """
    shape = tuple(image_shape) + ((1,) if len(image_shape) == 2 else ())
    name = model.spec["name"]
    if shape != tuple(model.input_shape):
        raise BadOptionError(f"model {name} takes images of shape {tuple(model.input_shape)}, "
                             f"but {dataset}'s are {shape}: choose a model for this dataset "
                             "(--model) or another --dataset")
    if num_classes != model.num_classes:
        output = ("one sigmoid unit (2 classes)" if model.num_classes == 2
                  and model.spec["layers"][-1]["activation"] == "sigmoid"
                  else f"{model.num_classes} classes")
        raise BadOptionError(f"model {name} predicts {output}, but {dataset} has "
                             f"{num_classes} classes: choose a model for this dataset "
                             "(--model) or another --dataset")


def save_checkpoint(path, model, optimizer, epoch, settings, history, class_names):
    """Write a training checkpoint atomically (layout: ``convnet.training.checkpoint``).

    Parameters
    ----------
    path : str or Path
        Destination ``.npz``.
    model : Sequential
    optimizer : Adam, RMSprop or SGD
    epoch : int
        Epochs completed.
    settings : dict
        The run's ``RUN_SETTINGS`` (seed, batch_size, lr, dataset, train_size).
    history : dict
        Lists of numbers, stored as float64 arrays under ``history_<key>``.
    class_names : sequence of str
        The dataset's class names.
    """
    checkpoints.write(path, model, optimizer, epoch, settings, history, class_names)


def save_model(path, model, dataset="mnist", class_names=None):
    """Write ``model`` alone (no training state) atomically; ``load_model`` reads it.

    ``class_names`` defaults to the dataset's.
    """
    names = data.class_names(dataset) if class_names is None else class_names
    checkpoints.write_model(path, model, dataset, names)


def load_model(path, dtype=np.float32):
    """Return the model of a checkpoint (or LeNet-5 weights file) and what it was trained on.

    Returns
    -------
    model : Sequential
        Built from the checkpoint's spec, with its weights.
    dataset : str or None
        The dataset it was trained on (None for a TensorFlow/Keras LeNet-5
        weights file, which does not say).
    class_names : tuple of str or None

    Raises
    ------
    BadCheckpointError
        Naming the file (and the member at fault).
    """
    spec, weights, dataset, class_names = checkpoints.read_model(path)
    model = Sequential(spec, seed=0, dtype=dtype)
    model.set_weights(weights)
    return model, dataset, class_names


def load_checkpoint(path):
    """Read a training checkpoint written by ``save_checkpoint``, checking all of it.

    Returns
    -------
    model : Sequential
        With the checkpoint's weights.
    state : dict
        What ``convnet.training.checkpoint.read_training_state`` returns.

    Raises
    ------
    BadCheckpointError
        Naming the file (and the member at fault) if it is missing, a
        folder, corrupt, crafted, or not a resumable training checkpoint.
    """
    state = checkpoints.read_training_state(path)
    model = Sequential(state["spec"], seed=0)
    model.set_weights(state["weights"])
    return model, state


def make_run_optimizer(model, name, lr=None, momentum=None):
    """Return optimiser ``name`` on ``model``'s parameters: Keras's defaults, ``lr``/``momentum`` if given.

    Raises
    ------
    BadOptionError
        For ``momentum`` with Adam, which has none.
    """
    hyper = {} if lr is None else {"lr": float(lr)}
    if momentum is not None:
        if name == "adam":
            raise BadOptionError("--momentum is used with --optimizer sgd or rmsprop, not adam")
        hyper["momentum"] = float(momentum)
    try:
        return make_optimizer(name, model.parameters(), **hyper)
    except ValueError as error:
        raise BadOptionError(str(error)) from None


def resume(path, model, optimizer, settings):
    """Load the checkpoint at ``path`` into ``model``/``optimizer``; return (epoch, history).

    Raises
    ------
    BadCheckpointError
        If the file is missing or unreadable.
    BadOptionError
        If the checkpoint's model, optimiser or run settings differ from this run's.
    """
    if not Path(path).exists():
        raise BadCheckpointError(f"cannot resume: checkpoint {path} does not exist "
                                 "(train without --resume first, or pass the right --out)")
    saved_model, state = load_checkpoint(path)
    saved = state["settings"]
    different = [f"{key} {saved[key]!r} (this run: {settings[key]!r})"
                 for key in RUN_SETTINGS if saved[key] != settings[key]]
    if saved_model.spec != model.spec:
        different.insert(0, f"model {saved_model.spec['name']!r} (this run: "
                            f"{model.spec['name']!r}, or another spec)")
    if state["optimizer"] != optimizer.config():
        different.append(f"optimizer {state['optimizer']} (this run: {optimizer.config()})")
    if different:
        raise BadOptionError(f"cannot resume from {path}: it was trained with "
                             + ", ".join(different)
                             + "; pass the same settings, or choose another --out to start afresh")
    check_same_rule(state["rule"], settings.get("rule"))
    saved_augment, augment = state["augment"], settings.get("augment", "")
    if saved_augment != augment:
        raise BadOptionError(f"cannot resume from {path}: it was trained with --augment "
                             f"{saved_augment or 'none'} (this run: {augment or 'none'}); pass "
                             "the same --augment, or choose another --out to start afresh")
    model.set_weights(saved_model.get_weights())
    optimizer.load_state(state["optimizer_state"])
    return state["epoch"], state["history"]


def best_epoch(history):
    """Return the epoch (index into the history) with the highest validation accuracy.

    Ties go to the earliest epoch, as Keras's ``ModelCheckpoint`` keeps a
    file until an epoch strictly improves on it.
    """
    return int(np.argmax(history["val_accuracy"]))


def keep_if_best(checkpoint, epoch, history, folder):
    """Copy ``checkpoint`` to ``folder/best.npz`` atomically if ``epoch`` is the best so far.

    Returns
    -------
    Path or None
        ``best.npz`` when it was written.
    """
    if best_epoch(history) != epoch:
        return None
    best = Path(folder) / BEST_NAME
    with storage.atomic_path(best) as tmp:
        shutil.copyfile(checkpoint, tmp)
    return best


def write_history(folder, history):
    """Write ``history`` (a checkpoint's) to ``folder/history.json`` atomically; return the path."""
    path = Path(folder) / HISTORY_NAME
    storage.write_text(path, json.dumps(history, indent=2) + "\n")
    return path


# ---------------------------------------------------------------- pictures and data
def save_history_plot(history, path, first_epoch, log=None):
    """Draw a history's curves; return the PNG path, or None without matplotlib.

    Shared by every backend of ``convnet train``; matplotlib is an optional
    dependency, so a missing one skips the figure with a note, not an error.

    Parameters
    ----------
    log : callable, optional
        Receives the note (one line) when the figure is skipped; None: no note.
    """
    try:
        from convnet.apps.pictures.plots import plot_history
    except ImportError as error:
        if log is not None:
            log(f"history plot skipped: {error}")
        return None
    return plot_history({key: history[key] for key in HISTORY_KEYS}, path,
                        first_epoch=first_epoch)


def data_source(dataset, path=None):
    """Where ``dataset`` is read from, for messages: ``path`` (``--data``) or the default place."""
    if path is not None:
        return str(path)
    if dataset == "mnist":
        return str(data.default_mnist_path())
    if dataset == "fashion-mnist":
        return str(data.FASHION_MNIST_DIR)
    return f"the cached {dataset} data"


def check_not_empty(source, splits):
    """Raise BadDataError naming the first empty split of ``splits`` (name, images).

    ``source`` (str) names where the data came from, e.g. what
    :func:`data_source` returns.
    """
    for name, images in splits:
        if len(images) == 0:
            raise BadDataError(f"the {name} split of {source} is empty: "
                               "it needs at least one image")
