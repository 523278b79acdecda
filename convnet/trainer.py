"""Training, evaluating and using the NumPy LeNet-5: the library behind the CLI.

``fit`` is the training loop: Adam on mini-batches, the training set reshuffled
every epoch with a permutation derived from ``(seed, epoch)`` alone, so a run
resumed from a checkpoint draws exactly the batches the uninterrupted run
would have drawn, without storing any random-generator state.

After every epoch the cost and accuracy of the *whole* training set (not a
running average over the epoch's batches) and of the validation set are
measured with the epoch's final weights, in bounded chunks, and printed in
task 4's format. The line for epoch 0 is the untrained network, as in task 4.

``train_cli``, ``evaluate_cli`` and ``predict_cli`` implement
``convnet train --backend numpy``, ``convnet evaluate`` and ``convnet predict``.
A checkpoint (``checkpoint.npz``, layout in ``convnet.checkpoint``) holds the
weights (keys ``conv1_kernel``, ``conv1_bias``, ... as in every LeNet-5 weights
file of the project, so ``LeNet5.load`` reads it), Adam's state, the epoch, the
settings of the run and its history; it is rewritten atomically after every
epoch. ``history.json`` is a copy of the checkpoint's history, written after
it (and again when a run is resumed), so the two cannot disagree for long.

A run never saves a model that is not finite: the loss of every step and,
before each checkpoint, every weight and Adam moment are checked, and the
run stops with ``TrainingDivergedError`` leaving the last good checkpoint
as it was.

Training and evaluation run with NumPy's BLAS limited to one thread
(``convnet.threads.blas_threads``): a LeNet-5 step's matrix products are small
(a few thousand rows at most), so waking a second thread for each costs more
than it saves, and on a busy machine spinning BLAS threads make a step several
times slower.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

from convnet import checkpoint as checkpoints
from convnet import data, parallel, storage
from convnet.checkpoint import HISTORY_KEYS, RUN_SETTINGS
from convnet.errors import BadCheckpointError, BadDataError, BadOptionError, TrainingDivergedError
from convnet.memory import keep_freed_memory
from convnet.model import LeNet5
from convnet.optim import Adam
from convnet.parallel import TrainingProcesses
from convnet.threads import blas_threads

EPOCH_LINE = ("After {epoch} {epochs}: cost {c:.4f}, accuracy {a:.4f}, "
              "validation cost {vc:.4f}, validation accuracy {va:.4f}")
CHECKPOINT_NAME = "checkpoint.npz"
HISTORY_NAME = "history.json"
# RUN_SETTINGS (from convnet.checkpoint): the settings a resumed run must share
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
                description=None, processes=1, on_step=None):
    """Run one epoch of mini-batch Adam steps.

    Parameters
    ----------
    model : LeNet5
    optimizer : Adam
        Built on ``model.parameters()``.
    X : ndarray of shape (m, 28, 28) or (m, 28, 28, 1)
        Training images, float32.
    Y : ndarray of shape (m,)
        Integer labels.
    batch_size : int
        Images per step; the last batch of the epoch may be smaller.
    seed, epoch : int
        Select the epoch's shuffling (see ``epoch_order``).
    progress : bool
        Show a tqdm bar.
    processes : int
        Processes sharing each step (see ``convnet.parallel``).
    on_step : callable, optional
        Called as ``on_step(epoch, loss)`` after every step, with that
        batch's mean loss (``convnet train --serve`` streams them).

    Returns
    -------
    float
        Mean of the batch losses over the epoch.

    Raises
    ------
    TrainingDivergedError
        As soon as a step's loss is not a finite number (the weights are
        then no longer usable; nothing is saved by this function).

    Notes
    -----
    NumPy's BLAS is limited to one thread meanwhile (see ``blas_threads``),
    and the process's allocator keeps the memory a step frees for the next
    one (see ``convnet.memory``).
    """
    keep_freed_memory()
    order = epoch_order(seed, epoch, len(X))
    total_loss = 0.0
    # A diverging run overflows on its way to NaN: the loss check below reports it in one
    # line instead of NumPy's warnings.
    with blas_threads(1), np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
            TrainingProcesses(model, optimizer, X, Y, processes) as training:
        steps = training.run(order, batch_size)
        for step, (loss, count) in enumerate(_progress(steps, description or f"epoch {epoch}",
                                                       -(-len(X) // batch_size), progress)):
            if not np.isfinite(loss):
                raise TrainingDivergedError(f"training diverged: the loss became {loss} at "
                                            f"step {step + 1} of epoch {epoch}")
            total_loss += loss * count
            if on_step is not None:
                on_step(epoch, loss)
    return total_loss / max(len(X), 1)


def empty_history():
    """Return a history dict: per-epoch lists of the four metrics and epoch times."""
    return {key: [] for key in HISTORY_KEYS + ("epoch_seconds",)}


def _record(model, data, epoch, history, log, processes):
    """Measure the four metrics with the current weights, append them, log the line."""
    X_train, Y_train, X_valid, Y_valid = data
    (cost, accuracy), (val_cost, val_accuracy) = parallel.evaluate(
        model, [(X_train, Y_train), (X_valid, Y_valid)], processes)
    for key, value in zip(HISTORY_KEYS, (cost, accuracy, val_cost, val_accuracy)):
        history[key].append(float(value))
    log(epoch_line(epoch, cost, accuracy, val_cost, val_accuracy))


def fit(model, optimizer, data, epochs, batch_size=32, seed=0, start_epoch=0, history=None,
        on_epoch_end=None, log=print, progress=True, processes=1, on_step=None):
    """Train ``model`` up to ``epochs`` epochs, measuring it after each one.

    Parameters
    ----------
    model : LeNet5
    optimizer : Adam
    data : tuple
        ``(X_train, Y_train, X_valid, Y_valid)``: images (m, 28, 28) and
        integer labels (m,).
    epochs : int
        Total number of epochs of the run (a resumed run counts those done).
    batch_size : int
        Images per Adam step.
    seed : int
        Seed of the per-epoch shuffling.
    start_epoch : int
        Epochs already done. A run whose history is still empty first
        records the untrained network as epoch 0.
    history : dict, optional
        History to extend (from a checkpoint); a fresh one otherwise.
    on_epoch_end : callable, optional
        Called as ``on_epoch_end(epoch, history)`` after each epoch's
        measurements (and after epoch 0 of a fresh run), once the weights
        and Adam's moments are known to be finite: saves checkpoints.
    log : callable
        Receives each per-epoch line.
    progress : bool
        Show a tqdm bar per epoch on stderr.
    processes : int
        Processes sharing each step (see ``convnet.parallel``), and each
        evaluation.
    on_step : callable, optional
        Passed to :func:`train_epoch`: called after every step.

    Returns
    -------
    dict
        The history: ``"loss"``, ``"accuracy"``, ``"val_loss"``,
        ``"val_accuracy"`` (one entry per epoch, epoch 0 included) and
        ``"epoch_seconds"`` (training time of each epoch, measurements excluded).

    Raises
    ------
    TrainingDivergedError
        If a step's loss, or after an epoch a weight or an Adam moment, is
        not finite; ``on_epoch_end`` is not called for that epoch.

    Notes
    -----
    NumPy's BLAS is limited to one thread meanwhile (see ``blas_threads``).
    """
    with blas_threads(1):
        return _fit(model, optimizer, data, epochs, batch_size, seed, start_epoch, history,
                    on_epoch_end, log, progress, processes, on_step)


def _fit(model, optimizer, data, epochs, batch_size, seed, start_epoch, history, on_epoch_end,
         log, progress, processes, on_step=None):
    """The loop of ``fit`` (same parameters)."""
    X_train, Y_train = data[0], data[1]
    history = empty_history() if history is None else history
    if start_epoch == 0 and not history["loss"]:
        _record(model, data, 0, history, log, processes)
        if on_epoch_end is not None:
            on_epoch_end(0, history)
    for epoch in range(start_epoch + 1, epochs + 1):
        started = time.perf_counter()
        train_epoch(model, optimizer, X_train, Y_train, batch_size, seed, epoch,
                    progress=progress, description=f"epoch {epoch}/{epochs}",
                    processes=processes, on_step=on_step)
        history["epoch_seconds"].append(time.perf_counter() - started)
        _check_finite(model, optimizer, epoch)
        _record(model, data, epoch, history, log, processes)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    return history


def _check_finite(model, optimizer, epoch):
    """Raise TrainingDivergedError unless every weight and Adam moment is finite."""
    arrays = [("weights", model.flat_parameters())]
    arrays += [(f"Adam moment {name}", value) for name, value in optimizer.state().items()
               if name != "iterations"]
    for name, values in arrays:
        if not np.isfinite(values).all():
            raise TrainingDivergedError(f"training diverged: the {name} are no longer finite "
                                        f"after epoch {epoch}" if name == "weights" else
                                        f"training diverged: {name} is no longer finite "
                                        f"after epoch {epoch}")


# ---------------------------------------------------------------- checkpoints
def save_checkpoint(path, model, optimizer, epoch, settings, history):
    """Write a training checkpoint atomically (layout: ``convnet.checkpoint``).

    Parameters
    ----------
    path : str or Path
        Destination ``.npz``.
    model : LeNet5
    optimizer : Adam
    epoch : int
        Epochs completed.
    settings : dict
        The run's ``RUN_SETTINGS`` (seed, batch_size, lr, dataset, train_size).
    history : dict
        Lists of numbers, stored as float64 arrays under ``history_<key>``.
    """
    weights = dict(zip(model.weight_shapes(), model.parameters()))
    checkpoints.write(path, weights, optimizer.state(), epoch, settings, history)


def load_checkpoint(path):
    """Read a training checkpoint written by ``save_checkpoint``, checking all of it.

    Returns
    -------
    model : LeNet5
        With the checkpoint's weights.
    state : dict
        ``"optimizer"`` (Adam's state), ``"epoch"`` (int), ``"settings"``
        (``RUN_SETTINGS`` as Python values) and ``"history"`` (dict of lists).

    Raises
    ------
    BadCheckpointError
        Naming the file (and the member at fault) if it is missing, a
        folder, corrupt, crafted, or not a resumable training checkpoint.
    """
    model = LeNet5(seed=0)
    weights, optimizer, epoch, settings, history = checkpoints.read_training_state(
        path, model.weight_shapes())
    model.set_weights(weights)
    return model, {"optimizer": optimizer, "epoch": epoch, "settings": settings,
                   "history": history}


def _resume(path, model, optimizer, settings):
    """Load the checkpoint at ``path`` into ``model``/``optimizer``; return (epoch, history)."""
    if not Path(path).exists():
        raise BadCheckpointError(f"cannot resume: checkpoint {path} does not exist "
                                 "(train without --resume first, or pass the right --out)")
    saved_model, state = load_checkpoint(path)
    saved = state["settings"]
    different = [f"{key} {saved[key]!r} (this run: {settings[key]!r})"
                 for key in RUN_SETTINGS if saved[key] != settings[key]]
    if different:
        raise BadOptionError(f"cannot resume from {path}: it was trained with "
                             + ", ".join(different)
                             + "; pass the same settings, or choose another --out to start afresh")
    model.set_weights(saved_model.get_weights())
    optimizer.load_state(state["optimizer"])
    return state["epoch"], state["history"]


def write_history(folder, history):
    """Write ``history`` (a checkpoint's) to ``folder/history.json`` atomically; return the path."""
    path = Path(folder) / HISTORY_NAME
    storage.write_text(path, json.dumps(history, indent=2) + "\n")
    return path


# ---------------------------------------------------------------- command line
def save_history_plot(history, path, first_epoch):
    """Draw a history's curves; return the PNG path, or None without matplotlib.

    Shared by every backend of ``convnet train``; matplotlib is an optional
    dependency, so a missing one skips the figure with a note, not an error.
    """
    try:
        from convnet.plots import plot_history
    except ImportError as error:
        print(f"history plot skipped: {error}", file=sys.stderr)
        return None
    return plot_history({key: history[key] for key in HISTORY_KEYS}, path,
                        first_epoch=first_epoch)


def data_source(args):
    """Where ``args.dataset`` is read from, for messages: ``--data`` or the default place."""
    if args.data is not None:
        return str(args.data)
    if args.dataset == "mnist":
        return str(data.default_mnist_path())
    return str(data.FASHION_MNIST_DIR)


def check_not_empty(args, splits):
    """Raise BadDataError naming the first empty split of ``splits`` (name, images)."""
    for name, images in splits:
        if len(images) == 0:
            raise BadDataError(f"the {name} split of {data_source(args)} is empty: "
                               "it needs at least one image")


def train_cli(args, progress=True):
    """Run ``convnet train --backend numpy``.

    ``args`` has dataset, data, epochs, batch_size, lr, seed, out, resume,
    limit and processes. Everything the run reads (data, and with ``resume``
    the whole checkpoint) is checked before the first line is printed.
    Prints one line per epoch in task 4's format, the final validation and
    test accuracy and where the files are. Writes in ``args.out``, after
    every epoch and atomically: ``checkpoint.npz``, then ``history.json``
    (a copy of the checkpoint's history); at the end ``history.png``.

    Raises
    ------
    TrainingDivergedError
        If the loss or the weights stop being finite; the checkpoint then
        still holds the last finite epoch.
    """
    X_train, Y_train, X_valid, Y_valid, X_test, Y_test = data.load_dataset(
        args.dataset, args.data, args.limit)
    check_not_empty(args, [("training", X_train), ("validation", X_valid), ("test", X_test)])
    out = Path(args.out)
    checkpoint = out / CHECKPOINT_NAME
    settings = {"seed": args.seed, "batch_size": args.batch_size, "lr": float(args.lr),
                "dataset": args.dataset, "train_size": len(X_train)}
    processes = args.processes
    model = LeNet5(seed=args.seed)
    optimizer = Adam(model.parameters(), lr=args.lr)
    start_epoch, history = 0, None
    if args.resume:
        start_epoch, history = _resume(checkpoint, model, optimizer, settings)
        # A run killed between its checkpoint and history.json left the copy behind.
        write_history(out, history)
        print(f"resuming from {checkpoint} after epoch {start_epoch}", flush=True)
    print(f"training LeNet-5 (numpy) on {len(X_train)} {args.dataset} images, "
          f"{epochs_text(args.epochs)}, batch {args.batch_size}, lr {args.lr}, seed {args.seed}, "
          f"{processes} process{'es' if processes > 1 else ''}", flush=True)
    if start_epoch >= args.epochs and args.resume:
        print(f"the checkpoint has already been trained for {epochs_text(start_epoch)} "
              f"(asked: {args.epochs}); nothing to train", flush=True)
    saved = {"epoch": start_epoch if args.resume else None}

    def save(epoch, history):
        save_checkpoint(checkpoint, model, optimizer, epoch, settings, history)
        saved["epoch"] = epoch
        write_history(out, history)
        if server is not None and epoch > 0:
            on_step.publish(epoch)   # the page shows each epoch's final weights

    on_step, server = None, None
    if getattr(args, "serve", False):
        from convnet import serve
        on_step, server = serve.watch_training(model, X_valid, Y_valid, port=args.serve_port,
                                               every=args.serve_every)
        print(f"watch the training on {server.url} (Watch training)", flush=True)
    try:
        history = fit(model, optimizer, (X_train, Y_train, X_valid, Y_valid), args.epochs,
                      batch_size=args.batch_size, seed=args.seed, start_epoch=start_epoch,
                      history=history, on_epoch_end=save,
                      log=lambda line: print(line, flush=True), progress=progress,
                      processes=processes, on_step=on_step)
    except TrainingDivergedError as error:
        kept = ("nothing was saved" if saved["epoch"] is None else
                f"{checkpoint} still holds epoch {saved['epoch']}")
        raise TrainingDivergedError(f"{error}; {kept} (a smaller --lr may help)") from None
    except parallel.TrainingProcessError as error:
        if saved["epoch"] is None:
            kept = "nothing was saved yet: run the command again"
        else:
            kept = (f"{checkpoint} holds epoch {saved['epoch']}: train again with --resume "
                    "to continue from there")
        raise parallel.TrainingProcessError(f"{error.reason}; {kept}") from None
    finally:
        if server is not None:
            server.stop()
    # The first entry of the history is the untrained network (epoch 0).
    plot = save_history_plot(history, out / "history.png", first_epoch=0)
    valid_accuracy = history["val_accuracy"][-1]
    with blas_threads(1):
        _, test_accuracy = model.evaluate(X_test, Y_test)
    print(f"validation accuracy {valid_accuracy:.4f}, test accuracy {test_accuracy:.4f}")
    seconds = history["epoch_seconds"]
    if seconds:
        print(f"training time {np.mean(seconds):.1f} s per epoch "
              f"({len(X_train)} images, batch {args.batch_size})")
    where = f"checkpoint: {checkpoint}, history: {out / HISTORY_NAME}"
    print(where + (f", plot: {plot}" if plot is not None else ""))


def evaluate_cli(args):
    """Run ``convnet evaluate``: print the loss and accuracy of a checkpoint on a split.

    ``args`` has checkpoint, split ("train", "valid" or "test"), dataset and data.
    """
    model = LeNet5.load(args.checkpoint)
    first = {"train": 0, "valid": 2, "test": 4}[args.split]
    images, labels = data.load_dataset(args.dataset, args.data)[first:first + 2]
    check_not_empty(args, [(args.split, images)])
    with blas_threads(1):
        loss, accuracy = model.evaluate(images, labels)
    print(f"{args.checkpoint} on the {args.dataset} {args.split} split ({len(images)} images): "
          f"accuracy {accuracy:.4f}, loss {loss:.4f}")


def predict_cli(args):
    """Run ``convnet predict``: print the digit and top probabilities for each image file.

    ``args`` has images (paths), checkpoint and top (how many probabilities);
    with ``show`` true it also draws each prepared 28x28 input and its
    probabilities into the folder ``out`` and prints the PNG paths.
    """
    from convnet.images import load_digit_image
    model = LeNet5.load(args.checkpoint)
    images = np.stack([load_digit_image(path) for path in args.images])
    probabilities = model.predict_proba(images)
    top = min(args.top, probabilities.shape[1])
    for path, probs in zip(args.images, probabilities):
        ranked = np.argsort(probs)[::-1][:top]
        shown = ", ".join(f"{digit}: {probs[digit]:.4f}" for digit in ranked)
        print(f"{path}: {ranked[0]} ({shown})")
    if getattr(args, "show", False):
        from convnet.plots import draw_input_and_probabilities, input_picture_names
        for path, name, image, probs in zip(args.images, input_picture_names(args.images),
                                            images, probabilities):
            print(draw_input_and_probabilities(image, probs, Path(args.out) / name,
                                               title=f"What the network saw: {path}"))
