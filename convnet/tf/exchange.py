"""What the TensorFlow backends share: LeNet-5's exchange format, images, labels, run files.

Every network comes from one definition, its spec (``convnet.nn.zoo``).
LeNet-5's weights travel between the engines in one format, the *exchange
format*: a list of 10 float32 arrays in the order and shapes of Keras's
``model.get_weights()``, stored in ``weights.npz`` files under
``EXCHANGE_NAMES``::

    conv1 kernel (5, 5, 1, 6),   conv1 bias (6,),
    conv2 kernel (5, 5, 6, 16),  conv2 bias (16,),
    dense1 kernel (400, 120),    dense1 bias (120,),
    dense2 kernel (120, 84),     dense2 bias (84,),
    dense3 kernel (84, 10),      dense3 bias (10,)

A run's ``weights.npz`` also records, beside those ten arrays, what the
weights are: ``spec``, ``dataset``, ``class_names`` and ``data_source``
(see ``weights_arrays``); every reader of the exchange format takes the ten
arrays by name and leaves the rest.

Every check raises ``ValueError`` naming the offending array and the shape it
should have. LeNet-5's images are ``X`` of shape (m, 28, 28, 1) (or
(m, 28, 28), which is given a channel axis); labels are integers of shape (m,).
"""
import json
from pathlib import Path

import numpy as np

from convnet import data, storage
from convnet.nn.lenet5 import WEIGHT_NAMES
from convnet.nn.sequential import Sequential
from convnet.nn.zoo import check_fits
from convnet.tf.tensorflow_import import import_tensorflow
from convnet.training import checkpoint, trainer
from convnet.training.trainer import model_spec

tf = import_tensorflow()

LENET5 = "lenet5"
# The keys of every LeNet-5 weights file, in exchange order.
EXCHANGE_NAMES = WEIGHT_NAMES
EVAL_BATCH = 1000


def lenet5_spec():
    """Return the canonical spec of the zoo's ``lenet5``, the one definition of LeNet-5."""
    return model_spec(LENET5)


def _spec_weight_shapes(spec):
    """Shapes of every weight of ``spec``, in Keras ``get_weights`` order."""
    return tuple(array.shape for array in Sequential(spec).get_weights().values())


EXCHANGE_SHAPES = _spec_weight_shapes(lenet5_spec())
NUM_CLASSES = EXCHANGE_SHAPES[-1][0]
INPUT_SHAPE = tuple(lenet5_spec()["layers"][0]["shape"])


# ---------------------------------------------------------------- checks
def check_weights(weights):
    """Check a LeNet-5 weight list and return it as float32 arrays.

    Parameters
    ----------
    weights : sequence of 10 array-likes
        The exchange format (see the module docstring).

    Returns
    -------
    list of ndarray
        Copies as float32, in the same order.

    Raises
    ------
    ValueError
        If there are not 10 arrays or one has the wrong shape.
    """
    if isinstance(weights, np.ndarray) or not hasattr(weights, "__len__"):
        raise ValueError("weights must be a list of 10 arrays (LeNet-5 exchange format), "
                         f"received {type(weights).__name__}")
    if len(weights) != len(EXCHANGE_SHAPES):
        raise ValueError(f"weights must be a list of {len(EXCHANGE_SHAPES)} arrays "
                         f"(LeNet-5 exchange format), received {len(weights)}")
    checked = []
    for name, shape, array in zip(EXCHANGE_NAMES, EXCHANGE_SHAPES, weights):
        array = np.asarray(array)
        if array.shape != shape:
            raise ValueError(f"weights[{len(checked)}] ({name}) must have shape {shape}, "
                             f"received {array.shape}")
        checked.append(array.astype(np.float32))
    return checked


def as_images(X, input_shape=INPUT_SHAPE):
    """Return images as float32 of shape (m, h, w, c).

    Parameters
    ----------
    X : array-like of shape (m, h, w, c), or (m, h, w) when c is 1
    input_shape : tuple of int
        The model's (h, w, c); LeNet-5's (28, 28, 1) by default.

    Raises
    ------
    ValueError
        If the shape is neither.
    """
    X = np.asarray(X, dtype=np.float32)
    h, w, c = input_shape
    if X.ndim == 3 and c == 1:
        X = X[..., np.newaxis]
    if X.ndim != 4 or X.shape[1:] != tuple(input_shape):
        gray = f"(m, {h}, {w}) or " if c == 1 else ""
        raise ValueError(f"X must have shape {gray}(m, {h}, {w}, {c}), received {X.shape}")
    return X


def as_labels(labels, m, num_classes=NUM_CLASSES):
    """Return integer labels of shape (m,), checked against the class count."""
    labels = np.asarray(labels)
    if labels.shape != (m,):
        raise ValueError(f"labels must have shape ({m},), received {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be integers in [0, {num_classes - 1}]")
    return labels.astype(np.int64)


def as_training_data(data, input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES):
    """Return a run's training and validation sets checked as ``as_images`` and ``as_labels`` do.

    Parameters
    ----------
    data : tuple
        (X_train, Y_train, X_valid, Y_valid): images (m, h, w, c), or
        (m, h, w) when c is 1, and integer labels (m,).
    input_shape : tuple of int
        The model's (h, w, c); LeNet-5's by default.
    num_classes : int
        How many classes the labels may name.

    Returns
    -------
    tuple of ndarray
        X_train (m, h, w, c) float32, Y_train (m,) int64, X_valid, Y_valid likewise.
    """
    X_train, Y_train, X_valid, Y_valid = data
    X_train, X_valid = as_images(X_train, input_shape), as_images(X_valid, input_shape)
    return (X_train, as_labels(Y_train, len(X_train), num_classes),
            X_valid, as_labels(Y_valid, len(X_valid), num_classes))

def set_seeds(seed):
    """Seed NumPy, Python and TensorFlow's global generators."""
    np.random.seed(seed)
    tf.keras.utils.set_random_seed(seed)
    tf.random.set_seed(seed)


def empty_history():
    """Return a history dict with the keys plot_history reads, plus epoch times."""
    return {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": [],
            "epoch_seconds": []}


def weights_arrays(spec, weights, dataset=None, class_names=None, data_source=None):
    """Return what a run's ``weights.npz`` holds: the weights and what they are.

    Every model is stored self-described: ``spec`` (its canonical spec as
    JSON, UTF-8 bytes in a uint8 array), ``dataset`` and ``class_names``
    (strings) and ``data_source`` (a string: the absolute path the data was
    read from, or ``checkpoint.DEFAULT_SOURCE``), the layout
    ``convnet.training.checkpoint`` reads. The weights of LeNet-5 keep the
    exchange format every LeNet-5 reader takes: its ten weights under
    ``EXCHANGE_NAMES``, first and in order (readers take them by name and
    leave the other members). Any other model's weights are under their
    names (``conv1/kernel``, ``bn1/moving_mean``, ...).

    Parameters
    ----------
    spec : dict
        The canonical spec.
    weights : list of ndarray
        In Keras ``get_weights()`` order.
    dataset : str, optional
    class_names : sequence of str, optional
        One per class of the model.
    data_source : str, optional
        What ``checkpoint.source_text`` returns for the run's data.

    Returns
    -------
    dict of str to ndarray
    """
    model = Sequential(spec)
    if spec["layers"] == lenet5_spec()["layers"]:
        arrays = dict(zip(EXCHANGE_NAMES, check_weights(weights)))
    else:
        model.set_weights(list(weights))
        arrays = dict(model.get_weights())
    arrays = {**arrays, "spec": np.frombuffer(model.to_json().encode("utf-8"), dtype=np.uint8)}
    if dataset is not None:
        arrays["dataset"] = np.array(dataset)
    if class_names is not None:
        arrays["class_names"] = np.array([str(name)[:checkpoint.MAX_NAME]
                                          for name in class_names])
    if data_source is not None:
        arrays["data_source"] = np.array(data_source)
    return arrays


def write_run(out, history, run, arrays):
    """Write a run's files atomically in the folder ``out``; return their paths.

    ``history.json`` (the per-epoch lists), ``run.json`` (``run``: settings
    and final figures) and ``weights.npz`` (``arrays``, see ``weights_arrays``).
    """
    out = Path(out)
    storage.write_text(out / "history.json", json.dumps(history, indent=2) + "\n")
    storage.write_text(out / "run.json", json.dumps(run, indent=2) + "\n")
    storage.save_npz(out / "weights.npz", **arrays)
    return [out / "history.json", out / "run.json", out / "weights.npz"]


def plot_from(history):
    """The epoch of a trained history's first entry (0 when it starts untrained); else None."""
    if not history["epoch_seconds"]:
        return None
    # The graph's history has one more entry than epochs trained: the untrained network.
    return 1 - (len(history["loss"]) - len(history["epoch_seconds"]))


def load_checked_data(config, spec):
    """The splits of ``config``'s data by name, and its class names, checked against ``spec``.

    Raises
    ------
    UserError
        Bad or empty data, or images or classes the model does not take.
    """
    X_train, Y_train, X_valid, Y_valid, X_test, Y_test = data.load_dataset(
        config.dataset, config.data, config.limit)
    trainer.check_not_empty(trainer.data_source(config.dataset, config.data),
                            [("training", X_train), ("validation", X_valid), ("test", X_test)])
    class_names = data.class_names(config.dataset, config.data)
    check_fits(spec, config.model, config.dataset, X_train.shape[1:], len(class_names))
    splits = {"train": (X_train, Y_train), "valid": (X_valid, Y_valid), "test": (X_test, Y_test)}
    return splits, class_names


def save_run(config, spec, history, weights, optimizer, class_names, train_size,
             valid_accuracy, test_accuracy, workers=None):
    """Write ``history.json``, ``run.json`` and ``weights.npz`` of a TensorFlow run; return them."""
    run = {"backend": config.backend, "model": spec["name"], "dataset": config.dataset,
           "train_size": train_size, "epochs": config.epochs, "batch_size": config.batch_size,
           "optimizer": optimizer, "lr": config.lr, "seed": config.seed,
           "valid_accuracy": float(valid_accuracy), "test_accuracy": float(test_accuracy),
           "epoch_seconds": history["epoch_seconds"], "tensorflow": tf.__version__}
    if workers is not None:
        run["workers"] = workers
    arrays = weights_arrays(spec, weights, config.dataset, class_names,
                            checkpoint.source_text(config.data))
    paths = write_run(Path(config.out), history, run, arrays)
    return dict(zip(("history", "run", "weights"), map(str, paths)))
