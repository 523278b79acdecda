"""The graph backend: task 4's LeNet-5 as a TensorFlow graph (``tf.compat.v1``), trained with Adam.

``TF1LeNet5(weights=None, seed=0)`` builds the graph in a private
``tf.Graph`` with its own ``Session`` (use it as a context manager or call
``close()``): ``get_weights()``, ``set_weights(weights)``,
``predict_proba(X)``, ``evaluate(X, labels)`` and ``train_step(X, labels)``,
weights in the exchange format (``convnet.tf.exchange``).
``tf1_get_weights(session)`` / ``tf1_set_weights(session, weights)`` do the
same for any session whose graph holds one LeNet-5 (its 10 trainable
variables, created in exchange order). The graph is laid out from the zoo's
``lenet5`` spec by ``convnet.tf.tf1_graph``.

``train_tf1`` runs 4-main's training (``convnet.tf.backends.GraphBackend``
runs it for ``convnet.train``).
"""
import time

import numpy as np

from convnet.tf import exchange
from convnet.tf.tf1_graph import build_logits
from convnet.training.events import EpochEnded, StepEnded, epoch_line

tf = exchange.tf
tf1 = tf.compat.v1


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
    if shapes != list(exchange.EXCHANGE_SHAPES):
        raise ValueError("the session's graph must hold exactly one LeNet-5 "
                         f"(10 trainable variables of shapes "
                         f"{list(exchange.EXCHANGE_SHAPES)}), "
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
    weights = exchange.check_weights(weights)
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
            self.x = tf1.placeholder(tf.float32, (None, *exchange.INPUT_SHAPE), name="x")
            self.labels = tf1.placeholder(tf.int64, (None,), name="labels")
            y = tf.one_hot(self.labels, exchange.NUM_CLASSES)
            logits, self.variables = build_logits(exchange.lenet5_spec(), self.x)
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

    def predict_proba(self, X, batch_size=exchange.EVAL_BATCH):
        """Softmax output, computed in chunks of ``batch_size``.

        Parameters
        ----------
        X : ndarray of shape (m, 28, 28, 1) or (m, 28, 28)

        Returns
        -------
        ndarray of shape (m, 10)
        """
        X = exchange.as_images(X)
        chunks = [self.session.run(self.y_pred, {self.x: X[i:i + batch_size]})
                  for i in range(0, len(X), batch_size)]
        if not chunks:
            return np.zeros((0, exchange.NUM_CLASSES), np.float32)
        return np.concatenate(chunks)

    def evaluate(self, X, labels, batch_size=exchange.EVAL_BATCH):
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
        X = exchange.as_images(X)
        labels = exchange.as_labels(labels, len(X))
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
        feed = {self.x: exchange.as_images(X), self.labels: exchange.as_labels(labels, len(X))}
        _, loss = self.session.run([self.train_op, self.loss], feed)
        return float(loss)


def train_tf1(data, epochs=5, batch_size=32, learning_rate=1e-3, seed=0,
              progress=False, log=None, on_event=None):
    """Train LeNet-5's TensorFlow graph as 4-main does.

    Each epoch shuffles the training set, runs Adam on batches of
    ``batch_size``, then evaluates cost and accuracy on the full training and
    validation sets. The entry for epoch 0 is the untrained network, as in
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
        Accepted for callers of earlier versions; progress reaches ``on_event``.
    log : callable, optional
        Receives each per-epoch line.
    on_event : callable, optional
        Receives a ``StepEnded`` event after every step and an ``EpochEnded``
        event after every epoch's measurements.

    Returns
    -------
    history : dict
        Lists "loss", "accuracy", "val_loss", "val_accuracy" (epochs + 1
        entries, the first before training) and "epoch_seconds" (epochs
        entries, training time of each epoch without the evaluations).
    network : TF1LeNet5
        The trained network; the caller closes it.
    """
    X_train, Y_train, X_valid, Y_valid = exchange.as_training_data(data)
    exchange.set_seeds(seed)
    rng = np.random.default_rng(seed)
    network = TF1LeNet5(seed=seed, learning_rate=learning_rate)
    history = exchange.empty_history()
    steps = -(-len(X_train) // batch_size)
    try:
        for epoch in range(epochs + 1):
            if epoch > 0:
                order = rng.permutation(len(X_train))
                start_time = time.perf_counter()
                for step, start in enumerate(range(0, len(X_train), batch_size), start=1):
                    batch = order[start:start + batch_size]
                    _, loss = network.session.run(
                        [network.train_op, network.loss],
                        {network.x: X_train[batch], network.labels: Y_train[batch]})
                    if on_event is not None:
                        on_event(StepEnded(epoch, epochs, step, steps, float(loss)))
                history["epoch_seconds"].append(time.perf_counter() - start_time)
            cost, accuracy = network.evaluate(X_train, Y_train)
            val_cost, val_accuracy = network.evaluate(X_valid, Y_valid)
            for key, value in zip(("loss", "accuracy", "val_loss", "val_accuracy"),
                                  (cost, accuracy, val_cost, val_accuracy)):
                history[key].append(float(value))
            if log is not None:
                log(epoch_line(epoch, cost, accuracy, val_cost, val_accuracy))
            if on_event is not None:
                on_event(EpochEnded(epoch, epochs, float(cost), float(accuracy),
                                    float(val_cost), float(val_accuracy),
                                    history["epoch_seconds"][-1] if epoch else None))
    except BaseException:
        network.close()
        raise
    return history, network
