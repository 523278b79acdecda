"""Training and evaluating as library calls: ``convnet.train`` and ``convnet.evaluate``.

A notebook trains a network as the ``convnet train`` command does::

    import convnet
    config = convnet.TrainConfig(model="lenet5", data="MNIST.npz", epochs=1, limit=512,
                                 out="runs/notebook", processes=1)
    events = []
    run = convnet.train(config, on_event=events.append)
    run.valid_accuracy, run.test_accuracy, run.files["checkpoint"]
    convnet.evaluate(run.files["checkpoint"], split="valid").accuracy

``train`` picks the backend by ``config.backend`` (``NumpyBackend``,
``GraphBackend`` or ``KerasBackend``: prepare, fit, evaluate, save), holds
the run folder (``convnet.training.runfolder``), asks
``convnet.parallel.layout`` how the NumPy engine's steps are spread, and,
when there are several processes, starts them
as the ranks of an MPI job running ``python -m convnet.worker`` with the
config as JSON: the ranks' events and errors come back as lines of JSON
and reach ``on_event`` and the caller as if the run were local. Keras's
workers (``workers > 1``) are started alike.

The library never prints: what a run has to say reaches ``on_event`` as
events (``convnet.training.events``); what goes wrong is a ``UserError``
naming the fields at fault.
"""
import dataclasses
import json
import os
from pathlib import Path

from convnet import data as datasets
from convnet import errors
from convnet.nn.threads import blas_threads
from convnet.nn.zoo import check_fits
from convnet.parallel import distributed
from convnet.parallel import layout as spread
from convnet.parallel.distributed import DataParallel, DistributedJobError
from convnet.training import checkpoint as checkpoints
from convnet.training import provenance, runfolder, trainer
from convnet.training.config import TrainConfig
from convnet.training.events import (
    EpochEnded,
    Note,
    RunFinished,
    RunStarted,
    Snapshot,
    StepEnded,
    from_line,
)
from convnet.training.numpy_backend import NumpyBackend
from convnet.training.steps import LocalSteps

__all__ = ["EpochEnded", "Evaluation", "Note", "RunFinished", "RunStarted", "Snapshot",
           "StepEnded", "TrainConfig", "evaluate", "train"]

# Set for the ranks of a job that ``train`` starts: the run folder it already holds for
# them, so that rank 0 writes there without claiming it again.
LAUNCHED_RUN = "CONVNET_LAUNCHED_RUN"
# What each process of a spread run runs, with the config as JSON.
WORKER_PROGRAM = ("-m", "convnet.worker")
# The first characters of the line in which a rank reports its failure.
FAILURE_MARK = '{"failure": '
# The errors a rank may report, by class name.
_ERROR_CLASSES = {cls.__name__: cls for cls in (
    errors.UserError, errors.BadOptionError, errors.BadDataError, errors.MissingDataError,
    errors.BadCheckpointError, errors.BadImageError, errors.RunFolderBusyError,
    errors.StorageError, errors.TrainingDivergedError, DistributedJobError)}


def _ignore(event):
    """The ``on_event`` of a caller who wants none."""


# ---------------------------------------------------------------- train
def train(config, on_event=None, progress=False):
    """Train the network ``config`` describes; return its ``RunFinished`` event.

    Parameters
    ----------
    config : TrainConfig
    on_event : callable, optional
        Receives every event of the run, in order (see
        ``convnet.training.events``), in this process, whichever process
        trains.
    progress : bool
        Let Keras's ``fit`` print its own progress lines (the Keras backend
        without workers; the other backends report every step as events).

    Returns
    -------
    RunFinished or None
        The final figures and files; None in a process that is not the
        run's writer (an MPI rank other than 0, a Keras worker other than
        the chief).

    Raises
    ------
    UserError
        Before anything is announced or written where it can be: a bad
        option for this machine, bad data, a model that does not fit it, a
        checkpoint that cannot be resumed, a run folder in use. Later: a
        diverged training (``TrainingDivergedError``), a failed process of
        the run (``DistributedJobError``, ``WorkerError``), a file the system
        refused (``StorageError``).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, received {type(config).__name__}")
    on_event = _ignore if on_event is None else on_event
    if config.backend == "numpy":
        return _train_numpy(config, on_event)
    return _train_tf(config, on_event, progress)


def _train_numpy(config, on_event):
    """``train`` for the NumPy engine: alone, as a rank, or as the launcher of ranks."""
    if distributed.in_mpi_job():
        return _train_as_rank(config, on_event)
    if config.processes is not None:
        spread.check_processes(config.processes)
    with runfolder.claim(config.out, resume=config.resume, overwrite=config.overwrite,
                         on_event=on_event):
        backend = NumpyBackend(config)
        layout = spread.choose(backend.model.spec, config.batch_size, config.processes,
                               config.micro_batch, backend.saved_rule())
        if layout.processes > 1:
            del backend   # the ranks load their own copy of the data
            return _launch_ranks(config, layout.processes, on_event)
        backend.prepare(layout)
        steps = LocalSteps(backend.model, backend.optimizer, micro_batch=layout.micro_batch,
                           seed=config.seed, slices=layout.slices,
                           shard_threads=layout.shard_threads)
        return _drive(backend, on_event, steps)


def job_position():
    """(rank, size) of this process in its MPI job, or (0, 1) outside one (or before MPI starts)."""
    if not distributed.in_mpi_job():
        return 0, 1
    comm = distributed.world()
    return comm.Get_rank(), comm.Get_size()


def _train_as_rank(config, on_event):
    """``train`` in a rank of an MPI job: share the steps; rank 0 writes.

    Rank 0 claims the run folder, unless the ``train`` that started the job
    holds it already (``LAUNCHED_RUN``); the other ranks never write.
    """
    comm = distributed.world()
    rank, size = comm.Get_rank(), comm.Get_size()
    if config.processes is not None and config.processes != size:
        raise errors.BadOptionError(
            f"{{processes}} {config.processes} differs from the {size} ranks of this MPI "
            "job: leave {processes} out under mpiexec", fields=("processes",))
    launched = os.environ.get(LAUNCHED_RUN) == str(Path(config.out).resolve())
    if rank != 0 or launched:
        return _train_ranks(config, comm, on_event)
    with runfolder.claim(config.out, resume=config.resume, overwrite=config.overwrite,
                         on_event=on_event):
        return _train_ranks(config, comm, on_event)


def _train_ranks(config, comm, on_event):
    """Train as one of the ranks of ``comm``: rank 0 decides the cut, every rank shares it."""
    backend = NumpyBackend(config)
    rank, size = comm.Get_rank(), comm.Get_size()
    # Rank 0 alone may hold the run folder (the other ranks may run on other hosts).
    layout = (spread.cut(backend.model.spec, config.batch_size, config.micro_batch,
                         backend.saved_rule(), size) if rank == 0 else None)
    layout = comm.bcast(layout, root=0) if size > 1 else layout
    backend.prepare(layout, read_checkpoint=rank == 0)
    if size > 1:
        backend.start_epoch, backend.history = comm.bcast(
            (backend.start_epoch, backend.history), root=0)
        if config.resume:
            backend.saved_epoch = backend.start_epoch
    steps = DataParallel(backend.model, backend.optimizer, comm=comm,
                         micro_batch=layout.micro_batch, seed=config.seed, slices=layout.slices)
    return _drive(backend, on_event, steps)


def kept_text(checkpoint, epoch):
    """What a stopped NumPy run leaves: the ``epoch`` its checkpoint holds, and how to go on.

    ``epoch`` None: nothing was saved.
    """
    if epoch is None:
        return "nothing was saved yet: run the command again"
    return f"{checkpoint} holds epoch {epoch}: train again with {{resume}} to continue from there"


def _saved_epoch(checkpoint):
    """The epoch a checkpoint holds, or None if there is none to read."""
    try:
        return checkpoints.read_training_state(checkpoint)["epoch"]
    except errors.BadCheckpointError:
        return None


def _drive(backend, on_event, steps=None):
    """Run a prepared backend (the NumPy one with ``steps``); the writer reports and returns.

    Every process of the run calls it alike; only the writer (rank 0, the
    Keras chief) sends events, writes the run's last files and returns the
    ``RunFinished`` event.
    """
    writer = backend.is_writer if steps is None else steps.is_writer
    emit = on_event if writer else _ignore
    emit(backend.started())
    if steps is None:
        history = backend.fit(emit)
    else:
        try:
            history = backend.fit(emit, steps)
        except DistributedJobError as error:
            kept = kept_text(backend.checkpoint, backend.saved_epoch)
            raise DistributedJobError(f"{error}; {kept}", fields=("resume",)) from None
    if not (writer or backend.evaluates_everywhere):
        return None
    _, valid_accuracy = backend.evaluate("valid")
    _, test_accuracy = backend.evaluate("test")
    if not writer:
        return None
    finished = RunFinished(backend=backend.name, history=history,
                           valid_accuracy=float(valid_accuracy),
                           test_accuracy=float(test_accuracy),
                           train_size=backend.train_size, batch_size=backend.config.batch_size,
                           files=backend.save(valid_accuracy, test_accuracy),
                           best_epoch=backend.best_epoch(), plot_from=backend.plot_from())
    emit(finished)
    return finished


# ---------------------------------------------------------------- TensorFlow
def _workers(config):
    """(workers of the run, this process's ``(index, workers)`` in a TF_CONFIG cluster or None).

    Raises
    ------
    BadOptionError
        ``workers`` disagrees with TF_CONFIG's cluster, or is more than this
        machine runs at once.
    """
    from convnet.tf import keras_workers
    task = keras_workers.cluster_task()
    if task is not None:
        if config.workers is not None and config.workers != task[1]:
            raise errors.BadOptionError(
                f"{{workers}} {config.workers} does not match TF_CONFIG, whose cluster has "
                f"{task[1]} workers", fields=("workers",))
        return task[1], task
    workers = config.workers or 1
    processors = distributed.available_processors()
    limit = max(processors, 2)
    if workers > limit:
        raise errors.BadOptionError(
            f"{{workers}} {workers} is more than this machine can run at once: {processors} "
            f"processor{'s' if processors > 1 else ''} available, so at most {limit} (use "
            "TF_CONFIG to train on several machines)", fields=("workers",))
    return workers, None


def _train_tf(config, on_event, progress):
    """``train`` for the graph and Keras backends (Keras alone, as a worker, or as launcher)."""
    from convnet.tf import keras_workers
    workers, task = _workers(config) if config.backend == "keras" else (1, None)
    if config.backend == "keras" and not keras_workers.claims_run_folder():
        return _run_tf(config, workers, task, on_event, progress)   # a worker of a cluster
    with runfolder.claim(config.out, resume=config.resume, overwrite=config.overwrite,
                         on_event=on_event):
        return _run_tf(config, workers, task, on_event, progress)


def _run_tf(config, workers, task, on_event, progress):
    from convnet.tf.backends import GraphBackend, KerasBackend
    backend = (GraphBackend(config) if config.backend == "tf1" else
               KerasBackend(config, workers, task, progress))
    backend.prepare()
    if config.backend == "keras" and task is None and workers > 1:
        return _launch_workers(config, workers, on_event)
    try:
        return _drive(backend, on_event)
    finally:
        backend.close()


def _launch_workers(config, workers, on_event):
    """Run ``config`` as a cluster of ``workers`` Keras workers on loopback; relay the chief."""
    from convnet.tf import keras_workers
    relay = EventRelay(on_event)
    keras_workers.run_workers(keras_workers.worker_command(config), workers, log=relay.line)
    if relay.failure is not None:
        raise relay.failure
    return relay.finished


# ---------------------------------------------------------------- ranks in other processes
def failure_line(error, rank=0, size=1):
    """The line in which a process of a spread run reports the ``UserError`` that stopped it."""
    kind = type(error).__name__ if type(error).__name__ in _ERROR_CLASSES else "UserError"
    return json.dumps({"failure": {"kind": kind, "template": getattr(error, "template",
                                                                     str(error)),
                                   "fields": list(getattr(error, "fields", ())),
                                   "rank": rank, "size": size}})


def _failure_from(line):
    """The error a ``failure_line`` holds, or None."""
    if not line.startswith(FAILURE_MARK):
        return None
    try:
        record = json.loads(line)["failure"]
        kind = _ERROR_CLASSES[record["kind"]]
        template, fields = str(record["template"]), tuple(record["fields"])
        rank, size = int(record["rank"]), int(record["size"])
    except (ValueError, KeyError, TypeError):
        return None
    if rank != 0:
        template = f"rank {rank} of {size}: {template}"
    return kind(template, fields=fields)


class EventRelay:
    """A binary output for the processes of a spread run: their lines become events again.

    Each complete line is decoded: an event goes to ``on_event`` (a
    ``RunFinished`` is also kept as ``finished``), a failure report is kept
    as ``failure`` (the first one), and any other line is passed on as a
    ``Note``.
    """

    def __init__(self, on_event):
        self.on_event = on_event
        self.finished = self.failure = None
        self._pending = b""

    def write(self, chunk):
        """Take some of the processes' output."""
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self.line(line.decode(errors="replace").rstrip("\r"))

    def flush(self):
        """Nothing to do: every complete line is handled as it comes."""

    def close(self):
        """Handle a last line without its newline."""
        if self._pending:
            pending, self._pending = self._pending, b""
            self.line(pending.decode(errors="replace"))

    def line(self, text):
        """Handle one line of output (without its newline)."""
        failure = _failure_from(text)
        if failure is not None:
            self.failure = self.failure or failure
            return
        event = from_line(text)
        if event is None:
            if text:
                self.on_event(Note(text))
            return
        if isinstance(event, RunFinished):
            self.finished = event
        self.on_event(event)


def _launch_ranks(config, processes, on_event):
    """Run ``config`` as an MPI job of ``processes`` ranks; relay their events; wait."""
    distributed.mpiexec_path()   # says what to install before anything starts
    relay = EventRelay(on_event)
    checkpoint = Path(config.out) / trainer.CHECKPOINT_NAME
    try:
        status = distributed.launch([config.to_json()], processes, output=relay,
                                    program=WORKER_PROGRAM, ends_job_itself=True,
                                    env={LAUNCHED_RUN: str(Path(config.out).resolve())})
    except DistributedJobError as error:
        if relay.failure is not None:
            raise relay.failure from None
        raise DistributedJobError(f"{error}; {kept_text(checkpoint, _saved_epoch(checkpoint))}",
                                  fields=("resume",)) from None
    relay.close()
    if relay.failure is not None:
        raise relay.failure
    if status != 0 or relay.finished is None:
        raise DistributedJobError(f"the {processes} ranks ended with exit status {status} "
                                  f"without finishing; "
                                  f"{kept_text(checkpoint, _saved_epoch(checkpoint))}",
                                  fields=("resume",))
    return relay.finished


# ---------------------------------------------------------------- evaluate
@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The loss and accuracy of a checkpoint's model on ``images`` images of a split."""

    checkpoint: str
    dataset: str
    split: str
    images: int
    loss: float
    accuracy: float


def load_split(model, dataset, split, data=None):
    """Images (m, h, w, c) and labels (m,) of ``split`` of ``dataset``, checked against ``model``.

    Raises
    ------
    UserError
        Bad or empty data, or data whose images or classes the model does not take.
    """
    first = {"train": 0, "valid": 2, "test": 4}[split]
    arrays = datasets.load_dataset(dataset, data)
    images, labels = arrays[first:first + 2]
    check_fits(model.spec, model.spec["name"], dataset, arrays[0].shape[1:],
               len(datasets.class_names(dataset)))
    trainer.check_not_empty(trainer.data_source(dataset, data), [(split, images)])
    return images, labels


def evaluate(checkpoint, split="test", dataset=None, data=None):
    """Measure a checkpoint's model on a split of the dataset it was trained on.

    Parameters
    ----------
    checkpoint : str or Path
        A ``checkpoint.npz`` or ``best.npz`` of the NumPy engine, or a
        LeNet-5 ``weights.npz`` of the TensorFlow and Keras trainings.
    split : str
        train, valid or test.
    dataset : str, optional
        Must agree with the checkpoint's own (an older LeNet-5 weights file
        does not say: its run.json's, else mnist, with a note on stderr).
    data : str, optional
        Read the dataset from this path instead of where the checkpoint
        says it was read from (by default its default place).

    Returns
    -------
    Evaluation

    Raises
    ------
    UserError
        A missing or damaged checkpoint, another dataset than the
        checkpoint's, bad or empty data.
    """
    if split not in ("train", "valid", "test"):
        raise errors.BadOptionError(f"{{split}} must be train, valid or test, received "
                                    f"{split!r}", fields=("split",))
    model, _, _ = trainer.load_model(checkpoint)
    dataset, data, _ = provenance.data_to_use(checkpoint, dataset, data)
    images, labels = load_split(model, dataset, split, data)
    with blas_threads(1):
        loss, accuracy = model.evaluate(images, labels)
    return Evaluation(str(checkpoint), dataset, split, len(images), float(loss), float(accuracy))
