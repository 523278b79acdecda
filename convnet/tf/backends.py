"""The TensorFlow backends of ``convnet.train``: ``GraphBackend`` (tf1) and ``KerasBackend``.

Each follows ``convnet.training.backend.Backend``: ``prepare`` reads and checks
the data before anything is announced, ``started`` describes the run,
``fit(on_event)`` trains and reports, then ``evaluate(split)``,
``weights()`` and ``save(valid_accuracy, test_accuracy)`` (``history.json``,
``run.json`` and ``weights.npz`` in the run folder, see
``convnet.tf.exchange``); ``close`` releases what the engine holds.
"""
from convnet.tf import keras_cluster
from convnet.tf.exchange import as_images, lenet5_spec, load_checked_data, plot_from, save_run
from convnet.tf.graph_training import train_tf1
from convnet.tf.keras_training import evaluate_keras, keras_targets, train_keras
from convnet.tf.keras_workers import check_spec
from convnet.training.events import RunStarted
from convnet.training.trainer import model_spec


class _TensorFlowBackend:
    """What both TensorFlow backends share: the data, the run's description and its files.

    A subclass sets ``name``, ``spec``, ``optimizer`` and ``workers`` and
    implements ``fit``, ``evaluate`` and ``close``.
    """

    evaluates_everywhere = False
    is_writer = True
    workers = None

    def prepare(self):
        """Read the data and check it against the model (before anything is announced)."""
        self.splits, self.class_names = load_checked_data(self.config, self.spec)

    @property
    def train_size(self):
        """Images of the training set (after ``limit``)."""
        return len(self.splits["train"][0])

    def started(self):
        """The ``RunStarted`` event of this run."""
        config = self.config
        return RunStarted(backend=self.name, model=self.spec["name"], dataset=config.dataset,
                          train_size=self.train_size, epochs=config.epochs,
                          batch_size=config.batch_size, optimizer=self.optimizer,
                          lr=config.lr, seed=config.seed, spec=self.spec,
                          workers=self._cluster_workers())

    def _cluster_workers(self):
        """The workers named in ``RunStarted``: None outside a cluster."""

    def weights(self):
        """The weights in the exchange format (Keras ``get_weights`` order for Keras)."""
        return self.network.get_weights()

    def save(self, valid_accuracy, test_accuracy):
        """Write the run's files; return them by kind."""
        return save_run(self.config, self.spec, self.history, self.weights(), self.optimizer,
                        self.class_names, self.train_size, valid_accuracy, test_accuracy,
                        workers=self.workers)

    def plot_from(self):
        """The epoch of the history's first entry, or None with nothing trained."""
        return plot_from(self.history)

    def best_epoch(self):
        """None: both engines keep their last weights only."""


class GraphBackend(_TensorFlowBackend):
    """``TrainConfig(backend="tf1")``: LeNet-5's graph trained as task 4 does.

    ``prepare`` reads and checks the data; ``fit`` trains (events: steps and
    epochs); ``evaluate``, ``weights`` and ``save`` (``history.json``,
    ``run.json``, ``weights.npz`` in the run folder) follow; ``close``
    releases the session.
    """

    name = "tf1"
    optimizer = "adam"

    def __init__(self, config):
        self.config = config
        self.spec = lenet5_spec()
        self.network = self.history = None

    def fit(self, on_event):
        """Train; return the history (entry 0 is the untrained network)."""
        config = self.config
        self.history, self.network = train_tf1(
            (*self.splits["train"], *self.splits["valid"]), epochs=config.epochs,
            batch_size=config.batch_size, learning_rate=config.lr, seed=config.seed,
            on_event=on_event)
        return self.history

    def evaluate(self, split):
        """``(loss, accuracy)`` on ``split`` (train, valid or test)."""
        return self.network.evaluate(*self.splits[split])

    def close(self):
        """Release the session."""
        if self.network is not None:
            self.network.close()


class KerasBackend(_TensorFlowBackend):
    """``TrainConfig(backend="keras")``: the Keras twin of the config's model.

    Outside a cluster it trains with Keras's ``fit``; as a worker of the
    ``TF_CONFIG`` cluster (``task`` given) with ``keras_cluster.train_cluster``,
    where only the chief (worker 0) reports and writes.

    Parameters
    ----------
    config : TrainConfig
    workers : int
        Workers of the run (1 outside a cluster).
    task : tuple of int, optional
        ``(index, workers)`` of this process in the cluster.
    progress : bool
        Let Keras's ``fit`` print its progress lines.
    """

    name = "keras"

    def __init__(self, config, workers=1, task=None, progress=False):
        self.config, self.workers, self.task, self.progress = config, workers, task, progress
        self.spec = model_spec(config.model)
        self.is_writer = task is None or task[0] == 0
        self.optimizer = config.optimizer or self.spec["optimizer"] or "adam"
        self.network = self.history = None

    def prepare(self):
        """Read the data, check it against the model and the workers against the model."""
        super().prepare()
        check_spec(self.spec, self.workers)

    def _cluster_workers(self):
        return None if self.task is None else self.workers

    def fit(self, on_event):
        """Train; return the history (one entry per epoch)."""
        config = self.config
        data = (*self.splits["train"], *self.splits["valid"])
        if self.task is None:
            self.history, self.network = train_keras(
                data, epochs=config.epochs, batch_size=config.batch_size,
                learning_rate=config.lr, seed=config.seed, progress=self.progress,
                spec=self.spec, optimizer=self.optimizer, on_event=on_event)
            return self.history
        self.history, self.network, index = keras_cluster.train_cluster(
            data, self.spec, epochs=config.epochs, batch_size=config.batch_size,
            optimizer=self.optimizer, learning_rate=config.lr, seed=config.seed,
            on_event=on_event if self.is_writer else None)
        keras_cluster.write_worker_weights(self.network, index)
        return self.history

    def evaluate(self, split):
        """``(loss, accuracy)`` on ``split`` (train, valid or test)."""
        X, labels = self.splits[split]
        if self.task is None:
            return evaluate_keras(self.network, self.spec, X, labels)
        return keras_cluster.evaluate(
            self.network, self.spec, as_images(X, tuple(self.spec["layers"][0]["shape"])),
            keras_targets(self.spec, labels))

    def close(self):
        """Nothing to release: Keras's model is freed with it."""
