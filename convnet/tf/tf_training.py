"""The models in TensorFlow: training runs of the graph and Keras backends, weight transfer.

Every network comes from one definition, its spec (``convnet.nn.zoo``):

- the Keras backend trains the Keras twin of any spec,
  ``to_keras(Sequential(spec))`` (``convnet.tf.keras_twin``), with Keras's own
  Adam, RMSprop or SGD and its own ``fit``;
- the graph backend trains LeNet-5 as task 4 does, its graph laid out from
  the zoo's ``lenet5`` spec by ``convnet.tf.tf1_graph`` (``tf.nn`` ops,
  ``tf.compat.v1`` variables, Adam).

LeNet-5's weights travel between the engines in one format, the *exchange
format*: a list of 10 float32 arrays in the order and shapes of Keras's
``model.get_weights()``, stored in ``weights.npz`` files under
``EXCHANGE_NAMES``::

    conv1 kernel (5, 5, 1, 6),   conv1 bias (6,),
    conv2 kernel (5, 5, 6, 16),  conv2 bias (16,),
    dense1 kernel (400, 120),    dense1 bias (120,),
    dense2 kernel (120, 84),     dense2 bias (84,),
    dense3 kernel (84, 10),      dense3 bias (10,)

Weight transfer
---------------
Keras:
    ``keras_model(weights=None)`` builds and compiles the Keras LeNet-5
    (optionally loading ``weights``); ``keras_get_weights(model)`` /
    ``keras_set_weights(model, weights)`` read and write it, checking shapes.
TensorFlow graph:
    ``TF1LeNet5(weights=None, seed=0)`` builds the graph in a private
    ``tf.Graph`` with its own ``Session`` (use it as a context manager or call
    ``close()``); it has ``get_weights()``, ``set_weights(weights)``,
    ``predict_proba(X)``, ``evaluate(X, labels)`` and ``train_step(X, labels)``.
    ``tf1_get_weights(session)`` / ``tf1_set_weights(session, weights)`` do the
    same for any session whose graph holds one LeNet-5 (its 10 trainable
    variables, created in exchange order).
One-shot predictions:
    ``keras_predict_proba(weights, X)`` and ``tf1_predict_proba(weights, X)``
    return the (m, 10) softmax output of each engine for the same weights.

Every check raises ``ValueError`` naming the offending array and the shape it
should have. LeNet-5's images are ``X`` of shape (m, 28, 28, 1) (or
(m, 28, 28), which is given a channel axis); labels are integers of shape (m,).

Training
--------
``train_tf1`` and ``train_keras`` run the trainings of 4-main and 5-main
(the latter for any spec) and return their history; ``check_fits`` (from
``convnet.nn.zoo``, which checks without TensorFlow) refuses a dataset whose
images or classes do not fit the model; ``evaluate_keras``
measures a trained twin; ``weights_arrays`` gives what ``weights.npz``
holds; ``write_run`` writes a run's files. The command ``convnet train
--backend tf1|keras`` (``convnet.apps.cli.cli``) puts them together.
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from convnet import storage
from convnet.nn import zoo
from convnet.nn.sequential import Sequential, normalise_spec
from convnet.nn.zoo import check_fits  # noqa: F401 -- part of this module's interface
from convnet.tf.keras_twin import to_keras
from convnet.tf.tensorflow_import import import_tensorflow
from convnet.tf.tf1_graph import build_logits
from convnet.training.trainer import epoch_line, save_history_plot

tf = import_tensorflow()
tf1 = tf.compat.v1

LENET5 = "lenet5"
# The keys of every LeNet-5 weights file, in exchange order.
EXCHANGE_NAMES = ("conv1_kernel", "conv1_bias", "conv2_kernel", "conv2_bias",
                  "dense1_kernel", "dense1_bias", "dense2_kernel", "dense2_bias",
                  "dense3_kernel", "dense3_bias")
EVAL_BATCH = 1000
# Keras's optimizers by the names ``convnet train --optimizer`` takes.
KERAS_OPTIMIZERS = {"adam": "Adam", "rmsprop": "RMSprop", "sgd": "SGD"}


def lenet5_spec():
    """Return the canonical spec of the zoo's ``lenet5``, the one definition of LeNet-5."""
    return normalise_spec(zoo.load_spec(LENET5))


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


def _as_labels(labels, m, num_classes=NUM_CLASSES):
    """Return integer labels of shape (m,), checked against the class count."""
    labels = np.asarray(labels)
    if labels.shape != (m,):
        raise ValueError(f"labels must have shape ({m},), received {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be integers in [0, {num_classes - 1}]")
    return labels.astype(np.int64)


# ---------------------------------------------------------------- Keras
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
    model = to_keras(Sequential(lenet5_spec(), seed=seed))
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
    """Softmax output of the Keras LeNet-5 with the given weights.

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


# ---------------------------------------------------------------- TF graph
def tf1_variables(graph):
    """Return the 10 trainable variables of the one LeNet-5 in ``graph``.

    Raises
    ------
    ValueError
        If the graph does not hold exactly the 10 variables of one LeNet-5
        with the exchange shapes.
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
        A session whose graph holds one LeNet-5 (task 4's ``lenet5`` or
        ``TF1LeNet5``) with initialised variables.

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
    """LeNet-5 as task 4 builds it, laid out from the zoo's spec, in a private graph.

    The graph takes images ``x`` (m, 28, 28, 1) and integer labels (m,),
    one-hot encoded in the graph, like 4-main; its loss is the softmax
    cross-entropy of the logits and its training op Adam's. Nothing outside
    this object sees the graph, so eager execution stays on for the rest of
    the process.

    Parameters
    ----------
    weights : list of 10 ndarrays, optional
        Exchange-format weights to start from (default: He-normal).
    seed : int
        Graph-level random seed of the initialisers.
    learning_rate : float
        Adam's learning rate.
    """

    def __init__(self, weights=None, seed=0, learning_rate=1e-3):
        """Build the graph, open its session and initialise the variables."""
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(seed)
            self.x = tf1.placeholder(tf.float32, (None, *INPUT_SHAPE), name="x")
            self.labels = tf1.placeholder(tf.int64, (None,), name="labels")
            y = tf.one_hot(self.labels, NUM_CLASSES)
            logits, self.variables = build_logits(lenet5_spec(), self.x)
            self.y_pred = tf.nn.softmax(logits)
            self.loss = tf1.losses.softmax_cross_entropy(y, logits)
            self.train_op = tf1.train.AdamOptimizer(learning_rate).minimize(self.loss)
            correct = tf.equal(tf.argmax(logits, axis=1), self.labels)
            self.accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))
            tf1_variables(self.graph)
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
    """Softmax output of the TensorFlow graph with the given weights.

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
              progress=True, log=None):
    """Train LeNet-5's TensorFlow graph as 4-main does.

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
    log : callable, optional
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
            if log is not None:
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
        """Append to ``history`` and send lines to ``log`` (if not None)."""
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
        """Record the epoch's metrics and send its line."""
        logs = logs or {}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            self.history_lists[key].append(float(logs[key]))
        self.history_lists["epoch_seconds"].append(self.last_batch_end - self.epoch_start)
        if self.log is not None:
            self.log(_epoch_line(epoch + 1, self.history_lists))


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
        spec = zoo.load_spec(spec)
    model = Sequential(spec, seed=seed)
    twin = to_keras(model, seed=seed)
    name = optimizer or model.spec["optimizer"] or "adam"
    twin.compile(optimizer=keras_optimizer(name, learning_rate), loss=model.spec["loss"],
                 metrics=["accuracy"])
    return twin


def train_keras(data, epochs=5, batch_size=32, learning_rate=None, seed=0, progress=True,
                log=None, spec=LENET5, optimizer=None):
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
    spec = normalise_spec(zoo.load_spec(spec) if isinstance(spec, (str, Path)) else spec)
    input_shape = tuple(spec["layers"][0]["shape"])
    classes = 2 if spec["layers"][-1]["activation"] == "sigmoid" else spec["layers"][-1]["units"]
    X_train, Y_train, X_valid, Y_valid = data
    X_train, X_valid = as_images(X_train, input_shape), as_images(X_valid, input_shape)
    Y_train = _as_labels(Y_train, len(X_train), classes)
    Y_valid = _as_labels(Y_valid, len(X_valid), classes)
    set_seeds(seed)
    model = build_keras(spec, optimizer, learning_rate, seed)
    history = _empty_history()
    model.fit(X_train, keras_targets(spec, Y_train), batch_size=batch_size, epochs=epochs,
              validation_data=(X_valid, keras_targets(spec, Y_valid)), shuffle=True,
              verbose=1 if progress and sys.stdout.isatty() else 2 if progress else 0,
              callbacks=[_EpochRecorder(history, log)])
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
    X = as_images(X, tuple(spec["layers"][0]["shape"]))
    loss, accuracy = model.evaluate(X, keras_targets(spec, labels), batch_size=EVAL_BATCH,
                                    verbose=0)
    return float(loss), float(accuracy)


def weights_arrays(spec, weights, dataset=None, class_names=None):
    """Return what a run's ``weights.npz`` holds.

    LeNet-5 keeps the exchange format every LeNet-5 reader takes: its ten
    weights under ``EXCHANGE_NAMES``, nothing else. Any other model is
    stored self-described: ``spec`` (its canonical spec as JSON, UTF-8
    bytes in a uint8 array), every weight under its name (``conv1/kernel``,
    ``bn1/moving_mean``, ...), ``dataset`` and ``class_names`` (strings).

    Parameters
    ----------
    spec : dict
        The canonical spec.
    weights : list of ndarray
        In Keras ``get_weights()`` order.
    dataset : str, optional
    class_names : sequence of str, optional

    Returns
    -------
    dict of str to ndarray
    """
    model = Sequential(spec)
    if spec["layers"] == lenet5_spec()["layers"]:
        return dict(zip(EXCHANGE_NAMES, check_weights(weights)))
    model.set_weights(list(weights))
    arrays = {"spec": np.frombuffer(model.to_json().encode("utf-8"), dtype=np.uint8)}
    arrays.update(model.get_weights())
    if dataset is not None:
        arrays["dataset"] = np.array(dataset)
    if class_names is not None:
        arrays["class_names"] = np.array(list(class_names))
    return arrays


def write_run(out, history, run, arrays, log=None):
    """Write a run's files atomically in the folder ``out``; return their paths.

    ``history.json`` (the per-epoch lists), ``run.json`` (``run``: settings
    and final figures), ``weights.npz`` (``arrays``, see ``weights_arrays``)
    and, after at least one epoch, ``history.png`` (skipped without
    matplotlib, with a note sent to ``log`` if given; see
    ``trainer.save_history_plot``).
    """
    out = Path(out)
    storage.write_text(out / "history.json", json.dumps(history, indent=2) + "\n")
    storage.write_text(out / "run.json", json.dumps(run, indent=2) + "\n")
    storage.save_npz(out / "weights.npz", **arrays)
    written = [out / "history.json", out / "run.json", out / "weights.npz"]
    if history["epoch_seconds"]:
        # The graph's history has one more entry than epochs trained: the untrained network.
        untrained = len(history["loss"]) - len(history["epoch_seconds"])
        plot = save_history_plot(history, out / "history.png", first_epoch=1 - untrained,
                                 log=log)
        if plot is not None:
            written.append(Path(plot))
    return written
