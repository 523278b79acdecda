"""Training runs of the TensorFlow LeNet-5s and weight transfer between engines.

The three LeNet-5s of the project (the NumPy ``convnet.model.LeNet5``, task 4's
graph in ``convnet.lenet5_tf1`` and task 5's Keras model in
``convnet.lenet5_keras``) share one weight format, the *exchange format*: a
list of 10 float32 arrays in the order and shapes of Keras'
``model.get_weights()``::

    conv1 kernel (5, 5, 1, 6),   conv1 bias (6,),
    conv2 kernel (5, 5, 6, 16),  conv2 bias (16,),
    dense1 kernel (400, 120),    dense1 bias (120,),
    dense2 kernel (120, 84),     dense2 bias (84,),
    dense3 kernel (84, 10),      dense3 bias (10,)

Weight transfer
---------------
Keras:
    ``keras_model(weights=None)`` builds and compiles task 5's model (optionally
    loading ``weights``); ``keras_get_weights(model)`` /
    ``keras_set_weights(model, weights)`` read and write it, checking shapes.
TensorFlow graph (task 4):
    ``TF1LeNet5(weights=None, seed=0)`` builds task 4's graph in a private
    ``tf.Graph`` with its own ``Session`` (use it as a context manager or call
    ``close()``); it has ``get_weights()``, ``set_weights(weights)``,
    ``predict_proba(X)``, ``evaluate(X, labels)`` and ``train_step(X, labels)``.
    ``tf1_get_weights(session)`` / ``tf1_set_weights(session, weights)`` do the
    same for any session whose graph holds one task-4 LeNet-5 (its 10
    trainable variables, created in exchange order).
One-shot predictions:
    ``keras_predict_proba(weights, X)`` and ``tf1_predict_proba(weights, X)``
    return the (m, 10) softmax output of each engine for the same weights, so
    ``LeNet5().get_weights()`` from NumPy can be run through either engine and
    the results compared with ``LeNet5.predict_proba``; weights trained in
    either engine go back with ``LeNet5.set_weights``.

Every check raises ``ValueError`` naming the offending array and the shape it
should have. Images are ``X`` of shape (m, 28, 28, 1) (or (m, 28, 28), which
is given a channel axis); labels are integers of shape (m,).

Training
--------
``train_cli(args)`` runs ``convnet train --backend tf1|keras``: the trainings
of 4-main and 5-main with the command's epochs, batch size, learning rate,
seed, dataset and ``--limit``; it prints one line per epoch in task 4's
format, the final validation and test accuracy, and writes ``history.json``,
``run.json``, ``weights.npz`` and ``history.png`` in ``--out``.
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from convnet import data, storage
from convnet.model import WEIGHT_NAMES
from convnet.trainer import check_not_empty, epoch_line, epochs_text, save_history_plot

tf1 = tf.compat.v1

# The keys of every LeNet-5 weights file, in exchange order (see convnet.model).
EXCHANGE_NAMES = WEIGHT_NAMES
EXCHANGE_SHAPES = (
    (5, 5, 1, 6), (6,), (5, 5, 6, 16), (16,),
    (400, 120), (120,), (120, 84), (84,), (84, 10), (10,),
)
NUM_CLASSES = 10
EVAL_BATCH = 1000


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


def as_images(X):
    """Return images as float32 of shape (m, 28, 28, 1).

    Parameters
    ----------
    X : array-like of shape (m, 28, 28) or (m, 28, 28, 1)

    Raises
    ------
    ValueError
        If the shape is neither.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 3:
        X = X[..., np.newaxis]
    if X.ndim != 4 or X.shape[1:] != (28, 28, 1):
        raise ValueError("X must have shape (m, 28, 28) or (m, 28, 28, 1), "
                         f"received {X.shape}")
    return X


def _as_labels(labels, m):
    """Return integer labels of shape (m,), checked against the class count."""
    labels = np.asarray(labels)
    if labels.shape != (m,):
        raise ValueError(f"labels must have shape ({m},), received {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"labels must be integers in [0, {NUM_CLASSES - 1}]")
    return labels.astype(np.int64)


# ---------------------------------------------------------------- Keras
def keras_model(weights=None):
    """Build task 5's compiled LeNet-5, optionally loading exchange weights.

    Parameters
    ----------
    weights : list of 10 ndarrays, optional
        Exchange-format weights; without them the model keeps its seeded
        He-normal initial weights.

    Returns
    -------
    keras.Model
        Input (m, 28, 28, 1), output (m, 10) probabilities.
    """
    from convnet.lenet5_keras import lenet5
    model = lenet5(tf.keras.Input((28, 28, 1)))
    if weights is not None:
        keras_set_weights(model, weights)
    return model


def keras_get_weights(model):
    """Return a Keras LeNet-5's weights in the exchange format (10 ndarrays)."""
    return check_weights(model.get_weights())


def keras_set_weights(model, weights):
    """Load exchange-format ``weights`` into a Keras LeNet-5 (shapes checked)."""
    model.set_weights(check_weights(weights))


def keras_predict_proba(weights, X, batch_size=EVAL_BATCH):
    """Softmax output of task 5's model with the given weights.

    Parameters
    ----------
    weights : list of 10 ndarrays
        Exchange format.
    X : ndarray of shape (m, 28, 28, 1) or (m, 28, 28)

    Returns
    -------
    ndarray of shape (m, 10)
    """
    model = keras_model(weights)
    return model.predict(as_images(X), batch_size=batch_size, verbose=0)


# ---------------------------------------------------------------- TF graph
def tf1_variables(graph):
    """Return the 10 trainable variables of the one LeNet-5 in ``graph``.

    Raises
    ------
    ValueError
        If the graph does not hold exactly the 10 variables of one task-4
        LeNet-5 with the exchange shapes.
    """
    variables = graph.get_collection(tf1.GraphKeys.TRAINABLE_VARIABLES)
    shapes = [tuple(variable.shape.as_list()) for variable in variables]
    if shapes != list(EXCHANGE_SHAPES):
        raise ValueError("the session's graph must hold exactly one LeNet-5 "
                         f"(10 trainable variables of shapes {list(EXCHANGE_SHAPES)}), "
                         f"found {shapes}")
    return variables


def tf1_get_weights(session):
    """Read the LeNet-5 variables of ``session`` in the exchange format.

    Parameters
    ----------
    session : tf.compat.v1.Session
        A session whose graph was built by task 4's ``lenet5`` (once) and
        whose variables are initialised.

    Returns
    -------
    list of 10 ndarrays (float32)
    """
    return [np.asarray(value) for value in session.run(tf1_variables(session.graph))]


def tf1_set_weights(session, weights):
    """Assign exchange-format ``weights`` to the LeNet-5 variables of ``session``.

    Feeds the variables' own initialiser ops, so repeated calls add nothing
    to the graph.

    Parameters
    ----------
    session : tf.compat.v1.Session
        As for ``tf1_get_weights``.
    weights : list of 10 ndarrays
        Exchange format; shapes are checked first.
    """
    weights = check_weights(weights)
    variables = tf1_variables(session.graph)
    feeds = {variable.initializer.inputs[1]: value
             for variable, value in zip(variables, weights)}
    session.run([variable.initializer for variable in variables], feed_dict=feeds)


class TF1LeNet5:
    """Task 4's LeNet-5 in a private graph and session.

    The graph takes images ``x`` (m, 28, 28, 1) and integer labels (m,),
    one-hot encoded in the graph, like 4-main. Nothing outside this object
    sees the graph, so eager execution stays on for the rest of the process.

    Parameters
    ----------
    weights : list of 10 ndarrays, optional
        Exchange-format weights to start from (default: He-normal).
    seed : int
        Graph-level random seed of the initialisers.
    learning_rate : float
        Adam's learning rate; task 4's own training op (default 0.001) is
        used when it is 0.001.
    """

    def __init__(self, weights=None, seed=0, learning_rate=1e-3):
        """Build the graph, open its session and initialise the variables."""
        from convnet.lenet5_tf1 import lenet5
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(seed)
            self.x = tf1.placeholder(tf.float32, (None, 28, 28, 1), name="x")
            self.labels = tf1.placeholder(tf.int64, (None,), name="labels")
            y = tf.one_hot(self.labels, NUM_CLASSES)
            self.y_pred, self.train_op, self.loss, self.accuracy = lenet5(self.x, y)
            self.variables = tf1_variables(self.graph)
            if learning_rate != 1e-3:
                self.train_op = tf1.train.AdamOptimizer(learning_rate).minimize(
                    self.loss, var_list=self.variables)
            init = tf1.global_variables_initializer()
        self.session = tf1.Session(graph=self.graph)
        self.session.run(init)
        if weights is not None:
            self.set_weights(weights)

    def __enter__(self):
        """Return self; the session is closed on exit."""
        return self

    def __exit__(self, *exc_info):
        """Close the session."""
        self.close()

    def close(self):
        """Release the session."""
        self.session.close()

    def get_weights(self):
        """Return the weights in the exchange format (10 float32 ndarrays)."""
        return tf1_get_weights(self.session)

    def set_weights(self, weights):
        """Assign exchange-format weights (shapes checked)."""
        tf1_set_weights(self.session, weights)

    def predict_proba(self, X, batch_size=EVAL_BATCH):
        """Softmax output, computed in chunks of ``batch_size``.

        Parameters
        ----------
        X : ndarray of shape (m, 28, 28, 1) or (m, 28, 28)

        Returns
        -------
        ndarray of shape (m, 10)
        """
        X = as_images(X)
        chunks = [self.session.run(self.y_pred, {self.x: X[i:i + batch_size]})
                  for i in range(0, len(X), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, NUM_CLASSES), np.float32)

    def evaluate(self, X, labels, batch_size=EVAL_BATCH):
        """Mean cross-entropy and accuracy over a whole set, in chunks.

        Parameters
        ----------
        X : ndarray of shape (m, 28, 28, 1) or (m, 28, 28)
        labels : ndarray of shape (m,), integers in [0, 9]

        Returns
        -------
        tuple of float
            (cost, accuracy), each the example-weighted mean over chunks.
        """
        X = as_images(X)
        labels = _as_labels(labels, len(X))
        if len(X) == 0:
            raise ValueError("cannot evaluate on an empty set")
        cost = correct = 0.0
        for i in range(0, len(X), batch_size):
            feed = {self.x: X[i:i + batch_size], self.labels: labels[i:i + batch_size]}
            batch_cost, batch_accuracy = self.session.run([self.loss, self.accuracy], feed)
            size = len(feed[self.labels])
            cost += batch_cost * size
            correct += batch_accuracy * size
        return cost / len(X), correct / len(X)

    def train_step(self, X, labels):
        """Run one Adam step on a batch; return the batch's loss before the step."""
        feed = {self.x: as_images(X), self.labels: _as_labels(labels, len(X))}
        _, loss = self.session.run([self.train_op, self.loss], feed)
        return float(loss)


def tf1_predict_proba(weights, X, batch_size=EVAL_BATCH):
    """Softmax output of task 4's graph with the given weights.

    Parameters
    ----------
    weights : list of 10 ndarrays
        Exchange format.
    X : ndarray of shape (m, 28, 28, 1) or (m, 28, 28)

    Returns
    -------
    ndarray of shape (m, 10)
    """
    with TF1LeNet5(weights) as network:
        return network.predict_proba(X, batch_size)


# ---------------------------------------------------------------- training
def set_seeds(seed):
    """Seed NumPy, Python and TensorFlow's global generators."""
    np.random.seed(seed)
    tf.keras.utils.set_random_seed(seed)
    tf.random.set_seed(seed)


def _epoch_line(epoch, history):
    """Format the per-epoch line of task 4 (rounded) from the last history entries."""
    return epoch_line(epoch, history["loss"][-1], history["accuracy"][-1],
                      history["val_loss"][-1], history["val_accuracy"][-1])


def _empty_history():
    """Return a history dict with the keys plot_history reads, plus epoch times."""
    return {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": [],
            "epoch_seconds": []}


def train_tf1(data, epochs=5, batch_size=32, learning_rate=1e-3, seed=0,
              progress=True, log=print):
    """Train task 4's graph as 4-main does.

    Each epoch shuffles the training set, runs Adam on batches of
    ``batch_size``, then evaluates cost and accuracy on the full training and
    validation sets. The line for epoch 0 is the untrained network, as in
    the curriculum's 4-main.

    Parameters
    ----------
    data : tuple
        (X_train, Y_train, X_valid, Y_valid): images (m, 28, 28[, 1]) and
        integer labels (m,).
    epochs, batch_size : int
    learning_rate : float
    seed : int
        Seeds the initial weights and the shuffling.
    progress : bool
        Show a tqdm bar per epoch (on a terminal).
    log : callable
        Receives each per-epoch line.

    Returns
    -------
    history : dict
        Lists "loss", "accuracy", "val_loss", "val_accuracy" (epochs + 1
        entries, the first before training) and "epoch_seconds" (epochs
        entries, training time of each epoch without the evaluations).
    network : TF1LeNet5
        The trained network; the caller closes it.
    """
    X_train, Y_train, X_valid, Y_valid = data
    X_train, X_valid = as_images(X_train), as_images(X_valid)
    Y_train = _as_labels(Y_train, len(X_train))
    Y_valid = _as_labels(Y_valid, len(X_valid))
    set_seeds(seed)
    rng = np.random.default_rng(seed)
    network = TF1LeNet5(seed=seed, learning_rate=learning_rate)
    history = _empty_history()
    try:
        for epoch in range(epochs + 1):
            if epoch > 0:
                order = rng.permutation(len(X_train))
                starts = range(0, len(X_train), batch_size)
                start_time = time.perf_counter()
                for start in _progress(starts, f"epoch {epoch}/{epochs}", progress):
                    batch = order[start:start + batch_size]
                    network.session.run(network.train_op, {network.x: X_train[batch],
                                                           network.labels: Y_train[batch]})
                history["epoch_seconds"].append(time.perf_counter() - start_time)
            cost, accuracy = network.evaluate(X_train, Y_train)
            val_cost, val_accuracy = network.evaluate(X_valid, Y_valid)
            for key, value in zip(("loss", "accuracy", "val_loss", "val_accuracy"),
                                  (cost, accuracy, val_cost, val_accuracy)):
                history[key].append(float(value))
            log(_epoch_line(epoch, history))
    except BaseException:
        network.close()
        raise
    return history, network


def _progress(iterable, description, enabled):
    """Wrap ``iterable`` in a tqdm bar if asked and tqdm is installed."""
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=description, unit="batch", leave=False, file=sys.stderr,
                disable=None, mininterval=0.5)


class _EpochRecorder(tf.keras.callbacks.Callback):
    """Keras callback: per-epoch line in task 4's format and training time."""

    def __init__(self, history, log):
        """Append to ``history`` and send lines to ``log``."""
        super().__init__()
        self.history_lists = history
        self.log = log
        self.epoch_start = self.last_batch_end = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        """Start the epoch's clock."""
        self.epoch_start = self.last_batch_end = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        """Remember when the last training batch ended (validation excluded)."""
        self.last_batch_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        """Record the epoch's metrics and print its line."""
        logs = logs or {}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            self.history_lists[key].append(float(logs[key]))
        self.history_lists["epoch_seconds"].append(self.last_batch_end - self.epoch_start)
        self.log(_epoch_line(epoch + 1, self.history_lists))


def train_keras(data, epochs=5, batch_size=32, learning_rate=1e-3, seed=0,
                progress=True, log=print):
    """Train task 5's model as 5-main does.

    Parameters
    ----------
    data : tuple
        (X_train, Y_train, X_valid, Y_valid): images (m, 28, 28[, 1]) and
        integer labels (m,), one-hot encoded here.
    epochs, batch_size : int
    learning_rate : float
        Adam's learning rate (the model is recompiled when it is not 0.001).
    seed : int
        Seeds the shuffling; the initial weights come from the model's own
        HeNormal(seed=0) initialisers.
    progress : bool
        Show Keras' progress bar (``verbose=1``; ``verbose=2`` otherwise).
    log : callable
        Receives each per-epoch line.

    Returns
    -------
    history : dict
        Lists "loss", "accuracy" (running means over the epoch, as Keras
        reports them), "val_loss", "val_accuracy" and "epoch_seconds"
        (training time of each epoch without validation), one entry per
        epoch.
    model : keras.Model
    """
    X_train, Y_train, X_valid, Y_valid = data
    X_train, X_valid = as_images(X_train), as_images(X_valid)
    Y_train = _as_labels(Y_train, len(X_train))
    Y_valid = _as_labels(Y_valid, len(X_valid))
    set_seeds(seed)
    model = keras_model()
    if learning_rate != 1e-3:
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                      loss="categorical_crossentropy", metrics=["accuracy"])
    history = _empty_history()
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)
    model.fit(X_train, one_hot[Y_train], batch_size=batch_size, epochs=epochs,
              validation_data=(X_valid, one_hot[Y_valid]), shuffle=True,
              verbose=1 if progress and sys.stdout.isatty() else 2,
              callbacks=[_EpochRecorder(history, log)])
    return history, model


def train_cli(args):
    """Run ``convnet train --backend tf1|keras``.

    ``args`` has backend ("tf1" or "keras"), dataset, data, epochs,
    batch_size, lr, seed, out and limit. Prints the per-epoch lines and the
    final validation and test accuracy; writes in ``args.out``:
    ``history.json`` (the per-epoch lists), ``run.json`` (settings and final
    figures), ``weights.npz`` (exchange format, keys EXCHANGE_NAMES) and
    ``history.png``.
    """
    if args.backend not in ("tf1", "keras"):
        raise ValueError(f"backend must be 'tf1' or 'keras', received {args.backend!r}")
    X_train, Y_train, X_valid, Y_valid, X_test, Y_test = data.load_dataset(
        args.dataset, args.data, args.limit)
    check_not_empty(args, [("training", X_train), ("validation", X_valid), ("test", X_test)])
    out = Path(args.out)
    print(f"training LeNet-5 ({args.backend}) on {len(X_train)} {args.dataset} images, "
          f"{epochs_text(args.epochs)}, batch {args.batch_size}, lr {args.lr}, seed {args.seed}",
          flush=True)

    def log(line):
        print(line, flush=True)

    train = train_tf1 if args.backend == "tf1" else train_keras
    history, network = train((X_train, Y_train, X_valid, Y_valid), epochs=args.epochs,
                             batch_size=args.batch_size, learning_rate=args.lr,
                             seed=args.seed, log=log)
    if args.backend == "tf1":
        with network:
            _, valid_accuracy = network.evaluate(X_valid, Y_valid)
            _, test_accuracy = network.evaluate(X_test, Y_test)
            weights = network.get_weights()
    else:
        one_hot = np.eye(NUM_CLASSES, dtype=np.float32)
        _, valid_accuracy = network.evaluate(as_images(X_valid), one_hot[Y_valid],
                                             batch_size=EVAL_BATCH, verbose=0)
        _, test_accuracy = network.evaluate(as_images(X_test), one_hot[Y_test],
                                            batch_size=EVAL_BATCH, verbose=0)
        weights = keras_get_weights(network)
    print(f"validation accuracy {valid_accuracy:.4f}, test accuracy {test_accuracy:.4f}")
    seconds = history["epoch_seconds"]
    if seconds:
        print(f"training time {np.mean(seconds):.1f} s per epoch "
              f"({len(X_train)} images, batch {args.batch_size})")

    run = {"backend": args.backend, "dataset": args.dataset, "train_size": len(X_train),
           "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
           "seed": args.seed, "valid_accuracy": float(valid_accuracy),
           "test_accuracy": float(test_accuracy), "epoch_seconds": seconds,
           "tensorflow": tf.__version__}
    storage.write_text(out / "history.json", json.dumps(history, indent=2) + "\n")
    storage.write_text(out / "run.json", json.dumps(run, indent=2) + "\n")
    storage.save_npz(out / "weights.npz", **dict(zip(EXCHANGE_NAMES, weights)))
    written = [out / "history.json", out / "run.json", out / "weights.npz"]
    if args.epochs > 0:
        # tf1's history has one more entry than epochs trained: the untrained network.
        untrained = len(history["loss"]) - len(history["epoch_seconds"])
        plot = save_history_plot(history, out / "history.png", first_epoch=1 - untrained)
        if plot is not None:
            written.append(Path(plot))
    print("wrote " + ", ".join(str(path) for path in written))
