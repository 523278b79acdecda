"""The Keras backend: the Keras twin of any spec, trained with Keras's own ``fit`` and optimizers.

``build_keras(spec)`` compiles ``to_keras(Sequential(spec))``
(``convnet.tf.keras_twin``) with Keras's Adam, RMSprop or SGD; ``train_keras``
trains it as 5-main trains LeNet-5; ``evaluate_keras`` measures it. For
LeNet-5, ``keras_model(weights=None)`` builds and compiles the twin
(optionally loading exchange-format weights, ``convnet.tf.exchange``) and
``keras_get_weights`` / ``keras_set_weights`` read and write it, checking
shapes. ``convnet.tf.backends.KerasBackend`` trains with them for
``convnet.train``, alone or as a worker of a cluster
(``convnet.tf.keras_cluster``).
"""
import sys
import time
from pathlib import Path

import numpy as np

from convnet.nn.sequential import Sequential, normalise_spec
from convnet.tf import exchange
from convnet.tf.keras_twin import to_keras
from convnet.training.events import EpochEnded, epoch_line
from convnet.training.trainer import model_spec

tf = exchange.tf

# Keras's optimizers by the names ``TrainConfig.optimizer`` takes.
KERAS_OPTIMIZERS = {"adam": "Adam", "rmsprop": "RMSprop", "sgd": "SGD"}


def keras_model(weights=None, seed=0):
    """Build and compile the Keras LeNet-5, the twin of the zoo's ``lenet5``.

    Parameters
    ----------
    weights : list of 10 ndarrays, optional
        Exchange-format weights; without them the model holds the NumPy
        model's seeded He-normal initial weights.
    seed : int
        Seed of those initial weights.

    Returns
    -------
    keras.Model
        Input (m, 28, 28, 1), output (m, 10) probabilities; compiled with
        Adam (Keras's defaults), categorical cross-entropy and accuracy.
    """
    model = to_keras(Sequential(exchange.lenet5_spec(), seed=seed))
    if weights is not None:
        keras_set_weights(model, weights)
    return model


def keras_get_weights(model):
    """Return a Keras LeNet-5's weights in the exchange format (10 ndarrays)."""
    return exchange.check_weights(model.get_weights())


def keras_set_weights(model, weights):
    """Load exchange-format ``weights`` into a Keras LeNet-5 (shapes checked)."""
    model.set_weights(exchange.check_weights(weights))


def keras_optimizer(name, learning_rate=None):
    """Return Keras's own optimizer ``name`` (adam, rmsprop, sgd), Keras's defaults otherwise.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if name not in KERAS_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(KERAS_OPTIMIZERS)}, "
                         f"received {name!r}")
    optimizer = getattr(tf.keras.optimizers, KERAS_OPTIMIZERS[name])
    return optimizer() if learning_rate is None else optimizer(learning_rate=learning_rate)


def keras_targets(spec, labels):
    """Keras's targets for integer ``labels`` (m,): one-hot (m, k), or (m, 1) for a sigmoid."""
    last = spec["layers"][-1]
    if last["activation"] == "sigmoid":
        return np.asarray(labels, dtype=np.float32)[:, np.newaxis]
    return np.eye(last["units"], dtype=np.float32)[labels]


class _EpochRecorder(tf.keras.callbacks.Callback):
    """Keras callback: records each epoch's figures and training time, and reports them."""

    def __init__(self, history, epochs, log=None, on_event=None):
        """Append to ``history``; send lines to ``log`` and events to ``on_event`` (if given)."""
        super().__init__()
        self.history_lists = history
        self.epochs = epochs
        self.log, self.on_event = log, on_event
        self.epoch_start = self.last_batch_end = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        """Start the epoch's clock."""
        self.epoch_start = self.last_batch_end = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        """Remember when the last training batch ended (validation excluded)."""
        self.last_batch_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        """Record the epoch's metrics and report them."""
        logs = logs or {}
        figures = [float(logs[key]) for key in ("loss", "accuracy", "val_loss", "val_accuracy")]
        for key, value in zip(("loss", "accuracy", "val_loss", "val_accuracy"), figures):
            self.history_lists[key].append(value)
        seconds = self.last_batch_end - self.epoch_start
        self.history_lists["epoch_seconds"].append(seconds)
        if self.log is not None:
            self.log(epoch_line(epoch + 1, *figures))
        if self.on_event is not None:
            self.on_event(EpochEnded(epoch + 1, self.epochs, *figures, seconds))


def build_keras(spec, optimizer=None, learning_rate=None, seed=0):
    """Return the compiled Keras twin of ``spec``, ready to ``fit``.

    Parameters
    ----------
    spec : list, dict or str
        A spec, or a zoo name or spec.json path (``convnet.nn.zoo.load_spec``).
    optimizer : str, optional
        adam, rmsprop or sgd (Keras's own); default: the spec's, else adam.
    learning_rate : float, optional
        Default: Keras's for the optimizer.
    seed : int
        Seed of the initial weights (those of ``Sequential(spec, seed)``:
        He-normal kernels, zero biases) and of the dropout masks.

    Returns
    -------
    keras.Model
        Compiled with the optimizer, the spec's loss (categorical or binary
        cross-entropy) and the accuracy metric.
    """
    if isinstance(spec, (str, Path)):
        spec = model_spec(spec)
    model = Sequential(spec, seed=seed)
    twin = to_keras(model, seed=seed)
    name = optimizer or model.spec["optimizer"] or "adam"
    twin.compile(optimizer=keras_optimizer(name, learning_rate), loss=model.spec["loss"],
                 metrics=["accuracy"])
    return twin


def train_keras(data, epochs=5, batch_size=32, learning_rate=None, seed=0, progress=True,
                log=None, spec="lenet5", optimizer=None, on_event=None):
    """Train the Keras twin of a spec with ``fit``, as 5-main trains LeNet-5.

    Parameters
    ----------
    data : tuple
        (X_train, Y_train, X_valid, Y_valid): images (m, h, w, c) of the
        spec's input shape ((m, h, w) when c is 1) and integer labels (m,),
        one-hot encoded here (0/1 targets for a sigmoid output).
    epochs, batch_size : int
    learning_rate : float, optional
        Default: Keras's for the optimizer (0.001 for Adam and RMSprop,
        0.01 for SGD).
    seed : int
        Seeds the initial weights, the dropout masks and the shuffling.
    progress : bool
        Show Keras's progress bar (``verbose=1`` on a terminal; ``verbose=2``
        otherwise).
    log : callable, optional
        Receives each per-epoch line.
    on_event : callable, optional
        Receives an ``EpochEnded`` event after every epoch.
    spec : list, dict or str
        The model (default: the zoo's ``lenet5``).
    optimizer : str, optional
        adam, rmsprop or sgd; default: the spec's, else adam.

    Returns
    -------
    history : dict
        Lists "loss", "accuracy" (running means over the epoch, as Keras
        reports them), "val_loss", "val_accuracy" and "epoch_seconds"
        (training time of each epoch without validation), one entry per
        epoch.
    model : keras.Model
    """
    spec = model_spec(spec) if isinstance(spec, (str, Path)) else normalise_spec(spec)
    input_shape = tuple(spec["layers"][0]["shape"])
    classes = 2 if spec["layers"][-1]["activation"] == "sigmoid" else spec["layers"][-1]["units"]
    X_train, Y_train, X_valid, Y_valid = exchange.as_training_data(data, input_shape, classes)
    exchange.set_seeds(seed)
    model = build_keras(spec, optimizer, learning_rate, seed)
    history = exchange.empty_history()
    model.fit(X_train, keras_targets(spec, Y_train), batch_size=batch_size, epochs=epochs,
              validation_data=(X_valid, keras_targets(spec, Y_valid)), shuffle=True,
              verbose=1 if progress and sys.stdout.isatty() else 2 if progress else 0,
              callbacks=[_EpochRecorder(history, epochs, log, on_event)])
    return history, model


def evaluate_keras(model, spec, X, labels):
    """Return ``(loss, accuracy)`` of a compiled Keras twin on images and integer labels.

    Parameters
    ----------
    model : keras.Model
    spec : dict
        Its canonical spec.
    X : ndarray of shape (m, h, w, c), or (m, h, w) when c is 1
    labels : ndarray of shape (m,)
    """
    X = exchange.as_images(X, tuple(spec["layers"][0]["shape"]))
    loss, accuracy = model.evaluate(X, keras_targets(spec, labels),
                                    batch_size=exchange.EVAL_BATCH, verbose=0)
    return float(loss), float(accuracy)
