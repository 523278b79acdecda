"""NumPy models and their training checkpoints: build, save, load and resume.

A checkpoint (``checkpoint.npz``, layout in ``convnet.training.checkpoint``)
describes itself: the model's spec, its weights by name, the optimiser's
configuration and state, the dataset and its class names, the epoch, the
settings of the run and its history; a run rewrites it atomically after
every epoch. ``history.json`` is a copy of the checkpoint's history, written
after it (and again when a run is resumed), so the two cannot disagree for
long. With ``keep="best"`` a copy of the best validation epoch's checkpoint
is kept as ``best.npz``, as Keras's ``ModelCheckpoint(save_best_only=True)``
does.

The training loop itself is ``convnet.training.loop`` (``fit``,
``train_epoch``, ``epoch_order``), read here too by earlier callers.
"""
import json
import shutil
from pathlib import Path

import numpy as np

from convnet import data, storage
from convnet.errors import BadCheckpointError, BadDataError, BadOptionError
from convnet.nn import zoo
from convnet.nn.lenet5 import MICRO_BATCH
from convnet.nn.optim import make_optimizer
from convnet.nn.sequential import Sequential, normalise_spec
from convnet.training import checkpoint as checkpoints
from convnet.training.checkpoint import HISTORY_KEYS, RUN_SETTINGS  # noqa: F401 -- read here too
from convnet.training.loop import (  # noqa: F401 -- read here by earlier callers
    augment_batch,
    epoch_line,
    epoch_order,
    epochs_text,
    fit,
    train_epoch,
)
from convnet.training.steps import check_same_rule

CHECKPOINT_NAME = "checkpoint.npz"
BEST_NAME = "best.npz"
HISTORY_NAME = "history.json"
# A checkpoint is written by ``convnet.training.checkpoint.write``; earlier callers know it
# by this name.
save_checkpoint = checkpoints.write


# ---------------------------------------------------------------- models and checkpoints
def model_spec(name):
    """The canonical spec of ``model`` NAME (a zoo name or a spec.json); refusals name the field."""
    try:
        return normalise_spec(zoo.load_spec(name))
    except ValueError as error:
        raise BadOptionError(f"{{model}} {name}: {error}", fields=("model",)) from None


def build_model(spec, seed=0, dtype=np.float32):
    """Return a ``Sequential`` of ``spec`` ready to train.

    A model with a convolution runs its steps ``MICRO_BATCH`` images at a
    time (the convolutions' buffers stay small), unless it has
    BatchNormalization, whose statistics need each batch whole; a model of
    dense layers only runs whole batches, its products faster on more rows.
    """
    model = Sequential(spec, seed=seed, dtype=dtype)
    convolutional = any(entry["layer"] == "Conv2D" for entry in model.spec["layers"])
    if convolutional and not model.has_batch_normalization:
        model.micro_batch = MICRO_BATCH
    return model


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
        The dataset it was trained on (None for a bare LeNet-5 exchange
        file of an earlier version, which does not say: see
        ``convnet.training.provenance``).
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
            raise BadOptionError("{momentum} is used with {optimizer} sgd or rmsprop, not adam",
                                 fields=("momentum", "optimizer"))
        hyper["momentum"] = float(momentum)
    try:
        return make_optimizer(name, model.parameters(), **hyper)
    except ValueError as error:
        raise BadOptionError(str(error)) from None


def new_model(name, seed=0):
    """The ``Sequential`` of ``model`` NAME (a zoo name or a spec.json), ready to train.

    Raises
    ------
    BadOptionError
        The name is unknown or the spec is refused (naming the ``model`` field).
    """
    spec = model_spec(name)
    try:
        return build_model(spec, seed=seed)
    except ValueError as error:
        raise BadOptionError(f"{{model}} {name}: {error}", fields=("model",)) from None


def read_resumable(path):
    """The whole training state of the checkpoint at ``path``, which a run resumes from.

    Raises
    ------
    BadCheckpointError
        The file is missing (naming ``resume`` and ``out``) or cannot be read.
    """
    if not Path(path).exists():
        raise BadCheckpointError(f"cannot resume: checkpoint {path} does not exist "
                                 "(train without {resume} first, or pass the right {out})",
                                 fields=("resume", "out"))
    return checkpoints.read_training_state(path)


def resume_from(path, state, model, optimizer, settings):
    """Load ``state`` (``read_resumable(path)``) into ``model``/``optimizer``; return (epoch, history).

    Raises
    ------
    BadOptionError
        If the checkpoint's model, optimiser or run settings differ from this run's.
    """
    saved_model = Sequential(state["spec"], seed=0)
    saved_model.set_weights(state["weights"])
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
                             + "; pass the same settings, or choose another {out} to start "
                               "afresh", fields=("out",))
    check_same_rule(state["rule"], settings.get("rule"))
    saved_augment, augment = state["augment"], settings.get("augment", "")
    if saved_augment != augment:
        raise BadOptionError(f"cannot resume from {path}: it was trained with {{augment}} "
                             f"{saved_augment or 'none'} (this run: {augment or 'none'}); pass "
                             "the same {augment}, or choose another {out} to start afresh",
                             fields=("augment", "out"))
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


def data_source(dataset, path=None):
    """Where ``dataset`` is read from, for messages: ``path`` (``data``), else its default place."""
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
