"""The interface every training backend offers ``convnet.train``.

Three classes follow it: ``convnet.training.numpy_backend.NumpyBackend``
(the project's engine), ``convnet.tf.backends.GraphBackend`` (task 4's
TensorFlow graph) and ``convnet.tf.backends.KerasBackend`` (the Keras twin).
``convnet.api`` picks one by ``TrainConfig.backend`` and drives it: prepare,
announce, fit, evaluate, save.
"""
from typing import Protocol

from convnet.training.config import TrainConfig
from convnet.training.events import RunStarted


class Backend(Protocol):
    """A training run of one engine, in this process.

    Attributes
    ----------
    name : str
        The ``TrainConfig.backend`` it serves.
    config : TrainConfig
    is_writer : bool
        This process reports and writes (rank 0, the Keras chief).
    evaluates_everywhere : bool
        Every process of the run measures its share of each set (the MPI
        ranks of the NumPy engine); otherwise the writer alone measures.
    train_size : int
        Images of the training set.
    """

    name: str
    config: TrainConfig
    is_writer: bool
    evaluates_everywhere: bool
    train_size: int

    def prepare(self):
        """Read and check everything the run needs; announce and write nothing."""

    def started(self) -> RunStarted:
        """The event that opens the run."""

    def fit(self, on_event) -> dict:
        """Train, sending the run's events to ``on_event``; return the history.

        The history maps ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``
        and ``epoch_seconds`` to one float per epoch.
        """

    def evaluate(self, split) -> tuple:
        """``(loss, accuracy)`` of the trained model on ``split`` (train, valid or test)."""

    def weights(self):
        """The trained weights (by name, or in Keras ``get_weights`` order)."""

    def save(self, valid_accuracy, test_accuracy) -> dict:
        """Write what is left of the run's files; return every file written, by kind."""

    def best_epoch(self):
        """The epoch a kept best checkpoint holds, or None."""

    def plot_from(self):
        """The epoch of the history's first entry, or None when nothing is worth a picture."""
