"""The NumPy backend: a ``TrainConfig`` trained by the project's own engine.

``NumpyBackend`` builds the model of the config, reads and checks the data
(and, when resuming, the whole checkpoint) in ``prepare``, before anything
is announced; ``fit`` runs ``convnet.training.loop.fit`` with the steps
object the caller chose (``LocalSteps`` alone, ``DataParallel`` as a rank of
an MPI job), writes ``checkpoint.npz`` (and ``best.npz``) and
``history.json`` after every epoch, and reports each step and epoch as
events. Only the writer (rank 0) writes and reports; every rank calls the
same methods in the same order.
"""
from pathlib import Path

from convnet import data
from convnet.errors import TrainingDivergedError
from convnet.nn.threads import blas_threads
from convnet.nn.zoo import check_fits
from convnet.training import checkpoint as checkpoints
from convnet.training import loop, trainer
from convnet.training.events import EpochEnded, Note, RunStarted, Snapshot, StepEnded
from convnet.training.steps import LocalSteps, rule_of


class NumpyBackend:
    """A run of ``config`` (a ``TrainConfig`` whose backend is numpy) in this process.

    It follows ``convnet.training.backend.Backend``; ``prepare`` also takes
    the run's ``convnet.parallel.layout.Layout`` and ``fit`` the steps
    object, both chosen by the caller (``convnet.api``) from ``model`` and
    ``saved_rule``.

    Parameters
    ----------
    config : TrainConfig

    Raises
    ------
    BadOptionError
        The model is unknown or its spec is refused (naming the ``model`` field).
    """

    name = "numpy"
    # Every rank measures its share of each set: the evaluations are collective.
    evaluates_everywhere = True

    def __init__(self, config):
        self.config = config
        self.out = Path(config.out)
        self.checkpoint = self.out / trainer.CHECKPOINT_NAME
        self.processes = self.threads = self.shard_threads = 1
        self.micro_batch, self.slices = config.micro_batch, None
        self.saved_epoch = None
        self.is_writer = True
        self._measured = None
        self._saved = None
        self.model = trainer.new_model(config.model, seed=config.seed)

    # ------------------------------------------------------------ before the run
    def saved_state(self):
        """The whole checkpoint of the run to resume, read once (None when not resuming).

        Raises
        ------
        BadCheckpointError
            The checkpoint is missing or cannot be read.
        """
        if not self.config.resume:
            return None
        if self._saved is None:
            self._saved = trainer.read_resumable(self.checkpoint)
        return self._saved

    def saved_rule(self):
        """The rule the run to resume began with (None if there is none to read)."""
        if not (self.config.resume and self.checkpoint.exists()):
            return None
        return self.saved_state()["rule"]

    def prepare(self, layout, read_checkpoint=True):
        """Read and check the data, make the optimiser and, when resuming, load the checkpoint.

        Parameters
        ----------
        layout : Layout
            The processes sharing each step, BLAS threads per process and
            the cut of each batch (``convnet.parallel.layout``).
        read_checkpoint : bool
            Load the checkpoint to resume here (rank 0 does; it gives the
            other ranks its state).

        Raises
        ------
        UserError
            Bad or empty data, a model that does not fit it, an optimiser
            option it does not take, a checkpoint that cannot be resumed.
        """
        config, model = self.config, self.model
        self.processes, self.threads = layout.processes, layout.threads
        self.micro_batch, self.slices = layout.micro_batch, layout.slices
        self.shard_threads = layout.shard_threads
        self.rule = rule_of(layout.slices or layout.processes, layout.micro_batch,
                            model.has_batch_normalization, layout.threads)
        arrays = data.load_dataset(config.dataset, config.data, config.limit)
        self.train, self.valid, self.test = arrays[0:2], arrays[2:4], arrays[4:6]
        self.class_names = data.class_names(config.dataset, config.data)
        check_fits(model.spec, config.model, config.dataset, self.train[0].shape[1:],
                   len(self.class_names))
        trainer.check_not_empty(trainer.data_source(config.dataset, config.data),
                                [("training", self.train[0]), ("validation", self.valid[0]),
                                 ("test", self.test[0])])
        name = config.optimizer or model.spec["optimizer"] or "adam"
        self.optimizer = trainer.make_run_optimizer(model, name, config.lr, config.momentum)
        self.settings = {"seed": config.seed, "batch_size": config.batch_size,
                         "lr": self.optimizer.lr, "dataset": config.dataset,
                         "train_size": len(self.train[0]), "rule": self.rule,
                         "augment": ",".join(config.augment), "data": config.data}
        self.start_epoch, self.history = 0, None
        if config.resume and read_checkpoint:
            state = self.saved_state()
            self.start_epoch, self.history = trainer.resume_from(
                self.checkpoint, state, model, self.optimizer, self.settings)
            self.saved_epoch = self.start_epoch

    def started(self):
        """The ``RunStarted`` event of this run."""
        config = self.config
        return RunStarted(
            backend=self.name, model=self.model.spec["name"], dataset=config.dataset,
            train_size=len(self.train[0]), epochs=config.epochs, batch_size=config.batch_size,
            optimizer=self.optimizer.name, lr=self.optimizer.lr, seed=config.seed,
            spec=self.model.spec, start_epoch=self.start_epoch,
            resumed_from=str(self.checkpoint) if config.resume else None,
            processes=self.processes, threads=self.threads, shard_threads=self.shard_threads,
            micro_batch=config.micro_batch,
            augment=self.settings["augment"])

    # ------------------------------------------------------------ the run
    @property
    def train_size(self):
        """Images of the training set (after ``limit``)."""
        return len(self.train[0])

    def fit(self, on_event, steps=None):
        """Train with ``steps``; return the history.

        Parameters
        ----------
        on_event : callable
            Receives the events (the writer's only).
        steps : LocalSteps or DataParallel, optional
            Built on this backend's ``model`` and ``optimizer``; default
            ``LocalSteps`` with the cut given to ``prepare``.

        Raises
        ------
        TrainingDivergedError
            The loss or the weights stopped being finite; the message says
            which epoch the checkpoint still holds.
        """
        config, model, optimizer = self.config, self.model, self.optimizer
        if steps is None:
            steps = LocalSteps(model, optimizer, micro_batch=self.micro_batch, seed=config.seed,
                               slices=self.slices, shard_threads=self.shard_threads)
        self.steps, self.is_writer = steps, steps.is_writer
        writer = self.is_writer
        if config.resume and writer:
            # A run killed between its checkpoint and history.json left the copy behind.
            trainer.write_history(self.out, self.history)
        if config.resume and self.start_epoch >= config.epochs and writer:
            on_event(Note(f"the checkpoint has already been trained for "
                          f"{loop.epochs_text(self.start_epoch)} (asked: {config.epochs}); "
                          "nothing to train"))
        if config.serve and writer:
            on_event(Snapshot(self.start_epoch, 0, model.get_weights()))
        count = {"epoch": None, "step": 0, "run": 0}
        steps_per_epoch = -(-len(self.train[0]) // config.batch_size)

        def on_step(epoch, loss):
            if count["epoch"] != epoch:
                count["epoch"], count["step"] = epoch, 0
            count["step"] += 1
            count["run"] += 1
            if config.serve and count["run"] % config.serve_every == 0:
                on_event(Snapshot(epoch, count["run"], model.get_weights()))
            on_event(StepEnded(epoch, config.epochs, count["step"], steps_per_epoch,
                               float(loss)))

        def on_epoch_end(epoch, history):
            checkpoints.write(self.checkpoint, model, optimizer, epoch, self.settings, history,
                              self.class_names)
            self.saved_epoch = epoch
            if config.keep == "best":
                trainer.keep_if_best(self.checkpoint, epoch, history, self.out)
            trainer.write_history(self.out, history)
            if config.serve and epoch > 0:
                on_event(Snapshot(epoch, count["run"], model.get_weights()))
            seconds = history["epoch_seconds"][-1] if epoch > 0 else None
            on_event(EpochEnded(epoch, config.epochs, history["loss"][-1],
                                history["accuracy"][-1], history["val_loss"][-1],
                                history["val_accuracy"][-1], seconds))

        try:
            self.history = loop.fit(
                model, optimizer, (*self.train, *self.valid), config.epochs,
                batch_size=config.batch_size, seed=config.seed, start_epoch=self.start_epoch,
                history=self.history, on_epoch_end=on_epoch_end if writer else None,
                on_step=on_step if writer else None, steps=steps, augment=config.augment,
                threads=self.threads)
        except TrainingDivergedError as error:
            kept = ("nothing was saved" if self.saved_epoch is None else
                    f"{self.checkpoint} still holds epoch {self.saved_epoch}")
            raise TrainingDivergedError(f"{error}; {kept} (a smaller {{lr}} may help)",
                                        fields=("lr",)) from None
        self._measured = optimizer.iterations
        return self.history

    def evaluate(self, split):
        """``(loss, accuracy)`` of the trained model on ``split`` (train, valid or test).

        The validation figures of the last epoch are reused while the
        weights have not changed since.
        """
        if split == "valid" and self._measured == self.optimizer.iterations:
            return self.history["val_loss"][-1], self.history["val_accuracy"][-1]
        images = {"train": self.train, "valid": self.valid, "test": self.test}[split]
        with blas_threads(self.threads):
            [(loss, accuracy)] = self.steps.evaluate([images])
        return loss, accuracy

    def weights(self):
        """The model's weights by name (copies)."""
        return self.model.get_weights()

    def save(self, valid_accuracy=None, test_accuracy=None):
        """The files the run wrote, by kind (each epoch already wrote them)."""
        files = {"checkpoint": str(self.checkpoint)}
        if self.config.keep == "best":
            files["best"] = str(self.out / trainer.BEST_NAME)
        files["history"] = str(self.out / trainer.HISTORY_NAME)
        return files

    def plot_from(self):
        """0: the history's first entry is the untrained network."""
        return 0

    def best_epoch(self):
        """The epoch ``best.npz`` holds, or None without ``keep="best"``."""
        return trainer.best_epoch(self.history) if self.config.keep == "best" else None
