"""What one training run is asked to do: ``TrainConfig``, checked once when it is made.

The fields are the options of ``convnet train`` without their dashes. Every
check that needs nothing but the values themselves happens in the
constructor, so a config that exists is one the library can start; what
depends on the machine or the files (free processors, the data, a
checkpoint to resume) is checked when the run is prepared, before anything
is announced or written.

A refusal is a ``BadOptionError`` whose message names the fields as
``{field}`` markers (see ``convnet.errors.UserError``): ``str(error)`` reads
``batch_size must be a positive integer, received 0``, and the command line
shows the same line with ``--batch-size``.

A config travels to the other processes of a run (MPI ranks, Keras
workers) as JSON: ``to_json`` / ``from_json``.
"""
import dataclasses
import json
import math
from pathlib import Path

from convnet.data import DATASETS
from convnet.errors import BadOptionError
from convnet.nn.zoo import NAMES as ZOO_NAMES

BACKENDS = ("numpy", "tf1", "keras")
# The graph backend lays out LeNet-5 on 28x28 grey images only.
TF1_DATASETS = ("mnist", "fashion-mnist")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
AUGMENTATIONS = ("flip", "shift")
KEEP = ("last", "best")
# Seeds are stored in checkpoints and passed to NumPy and TensorFlow, which all take 32 bits.
SEED_LIMIT = 2 ** 32
# Options only the NumPy engine uses, with the value that means "not given".
NUMPY_ONLY = (("momentum", None), ("keep", "last"), ("augment", ()), ("processes", None),
              ("micro_batch", None))
# Task 4's optimizer, and Adam's default rate, for the graph backend.
TF1_LEARNING_RATE = 1e-3


def _refuse(message, *fields):
    raise BadOptionError(message, fields=fields)


def _check_int(name, value, minimum, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _refuse(f"{{{name}}} must be a {what} integer, received {value!r}", name)


def _check_choice(name, value, choices, optional=False):
    if optional and value is None:
        return
    if value not in choices:
        _refuse(f"{{{name}}} must be one of {', '.join(choices)}, received {value!r}", name)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run: the model, the data, the engine, the schedule and the run folder.

    Attributes
    ----------
    model : str
        A zoo name (``lenet5``, ``mlp``, ``mnist-cnn``, ``cifar-cnn``, ...)
        or the path of a spec ``.json``.
    dataset : str
        mnist, fashion-mnist, cifar10, happy or signs.
    data : str or None
        Read the dataset from this file or folder instead of its default place.
    backend : str
        ``numpy`` (the project's engine), ``tf1`` (task 4's TensorFlow graph
        of LeNet-5) or ``keras`` (the Keras twin of the model).
    epochs, batch_size : int
        Epochs of the whole run (a resumed run counts those done), images per step.
    optimizer : str or None
        adam, rmsprop or sgd, with Keras's defaults; None: the spec's own, else adam.
    lr, momentum : float or None
        Learning rate (> 0); momentum of sgd or rmsprop, in [0, 1) (numpy only).
    augment : tuple of str
        Random changes to the training images (numpy only): ``flip``, ``shift``.
    keep : str
        ``last``, or ``best`` to also keep ``best.npz`` (numpy only).
    seed : int
        From 0 to 2**32 - 1.
    out : str
        The run folder; by default ``runs/MODEL-BACKEND``.
    resume, overwrite : bool
        Continue the run in ``out`` (numpy only), or replace it.
    limit : int or None
        Train on the first ``limit`` training images only.
    processes, micro_batch : int or None
        MPI processes sharing each step, and images per shard of a batch
        (numpy only). ``processes`` None: as many as processors are idle when
        the run starts; ``micro_batch`` None: ``default_micro_batch``'s
        shards, which depend on the batch size and the model only. The
        weights depend on the shards, never on the number of processes (see
        ``convnet.parallel.distributed``).
    workers : int or None
        Keras workers (keras only; None: one, or the TF_CONFIG cluster's).
    serve : bool
        Send ``Snapshot`` events of the weights every ``serve_every`` steps and
        after every epoch (numpy only), for a page to show the training
        (``convnet train --serve`` serves it on ``serve_port``).
    serve_port, serve_every : int

    Raises
    ------
    BadOptionError
        A value out of range, or an option the chosen backend does not use;
        the message names the fields.
    """

    model: str = "lenet5"
    dataset: str = "mnist"
    data: str | None = None
    backend: str = "numpy"
    epochs: int = 5
    batch_size: int = 32
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    augment: tuple = ()
    keep: str = "last"
    seed: int = 0
    out: str | None = None
    resume: bool = False
    overwrite: bool = False
    limit: int | None = None
    processes: int | None = None
    micro_batch: int | None = None
    workers: int | None = None
    serve: bool = False
    serve_port: int = 8000
    serve_every: int = 50

    def __post_init__(self):
        self._check_values()
        self._check_backend_options()
        # Settled once here, so that every process of the run reads the same values.
        object.__setattr__(self, "augment", tuple(sorted(set(self.augment))))
        object.__setattr__(self, "model", str(self.model))
        if self.data is not None:
            object.__setattr__(self, "data", str(self.data))
        if self.out is None:
            name = self.model if self.model in ZOO_NAMES else Path(self.model).stem
            object.__setattr__(self, "out", f"runs/{name}-{self.backend}")
        object.__setattr__(self, "out", str(self.out))
        if self.backend == "tf1" and self.lr is None:
            object.__setattr__(self, "lr", TF1_LEARNING_RATE)

    def _check_values(self):
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS, optional=True)
        _check_choice("keep", self.keep, KEEP)
        if not isinstance(self.model, (str, Path)) or not str(self.model):
            _refuse(f"{{model}} must be a zoo name or a spec file, received {self.model!r}",
                    "model")
        _check_int("epochs", self.epochs, 0, "non-negative")
        for name in ("batch_size", "serve_port", "serve_every"):
            _check_int(name, getattr(self, name), 1, "positive")
        for name in ("limit", "processes", "micro_batch", "workers"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1, "positive")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) \
                or not 0 <= self.seed < SEED_LIMIT:
            _refuse(f"{{seed}} must be an integer from 0 to {SEED_LIMIT - 1}, "
                    f"received {self.seed!r}", "seed")
        if self.lr is not None and not (_is_number(self.lr) and 0 < self.lr < math.inf):
            _refuse(f"{{lr}} must be a positive number, received {self.lr!r}", "lr")
        if self.momentum is not None and not (_is_number(self.momentum)
                                              and 0 <= self.momentum < 1):
            _refuse(f"{{momentum}} must be a number in [0, 1), received {self.momentum!r}",
                    "momentum")
        if isinstance(self.augment, str) or not all(kind in AUGMENTATIONS
                                                    for kind in self.augment):
            _refuse(f"{{augment}} must be a sequence of {', '.join(AUGMENTATIONS)}, received "
                    f"{self.augment!r}", "augment")
        if self.resume and self.overwrite:
            _refuse("{resume} continues the run in the folder and {overwrite} replaces it: "
                    "give one of them", "resume", "overwrite")

    def _check_backend_options(self):
        backend = self.backend
        if self.resume and backend != "numpy":
            _refuse("{resume} is available with {backend} numpy only", "resume", "backend")
        if self.serve and backend != "numpy":
            _refuse("{serve} is available with {backend} numpy only", "serve", "backend")
        unused = list(NUMPY_ONLY) + ([("optimizer", None)] if backend == "tf1" else [])
        for name, unset in unused:
            value = getattr(self, name)
            if backend != "numpy" and value != unset and not (name == "augment" and not value):
                _refuse(f"{{{name}}} is not available with {backend}: {{backend}} {backend} "
                        "does not use it", name, "backend")
        if backend == "tf1":
            if str(self.model) != "lenet5":
                _refuse(f"{{backend}} tf1 trains lenet5 only, received {{model}} {self.model} "
                        "({backend} numpy or keras trains any model)", "backend", "model")
            if self.dataset not in TF1_DATASETS:
                _refuse(f"{{dataset}} {self.dataset} is not available with {{backend}} tf1, "
                        "which trains LeNet-5 on 28x28x1 images", "dataset", "backend")
        if self.workers is not None and backend != "keras":
            _refuse(f"{{workers}} is available with {{backend}} keras only, received "
                    f"{{backend}} {backend}", "workers", "backend")

    # ------------------------------------------------------------ travelling
    def to_json(self):
        """The config as JSON text (``from_json`` reads it back equal)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """Rebuild a config from ``to_json``'s text (checked again)."""
        values = json.loads(text)
        values["augment"] = tuple(values.get("augment", ()))
        return cls(**values)

    def replace(self, **changes):
        """A copy with ``changes`` (checked as a new config)."""
        return dataclasses.replace(self, **changes)
