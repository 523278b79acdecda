"""What a model file says it learnt from, and the dataset and data it is then used on.

Checkpoints and weights files record the dataset a model learnt, its class
names and where the data was read from (``data_source``, see
``convnet.training.checkpoint``). The commands that use a model (evaluate,
show, predict, serve, summary) take those when their user gives none:

- the dataset: the recorded one. ``dataset`` may be given too, but only the
  same: two datasets can share an image size and a class count (MNIST and
  Fashion-MNIST do) and still mean different classes, so another one is
  refused, naming both;
- the data: ``data`` when given, else the recorded path (refused, naming it
  and the ``data`` field, when it no longer exists), else the dataset's
  default place.

A LeNet-5 weights file written before weights files recorded their dataset
has the ``run.json`` of its run beside it, which names the dataset; without
one, MNIST is assumed, and a note says so.
"""
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from convnet.data import DATASETS
from convnet.errors import BadCheckpointError, BadOptionError, MissingDataError
from convnet.training import checkpoint as checkpoints

RUN_JSON = "run.json"
# A run.json holds a few settings and figures (a few kB); a larger one is not read.
MAX_RUN_JSON = 1 << 20


@dataclass(frozen=True)
class Origin:
    """What a model file records about its data.

    Attributes
    ----------
    dataset : str or None
        The dataset it learnt; None when nothing records it.
    class_names : tuple of str or None
        Its class names as recorded (None when not recorded).
    data_source : str or None
        ``checkpoints.DEFAULT_SOURCE``, the absolute path the data was read
        from, or None when not recorded (the default place).
    recorded_in : str or None
        ``"checkpoint"``, ``"run.json"`` (a LeNet-5 weights file's run) or None.
    """

    dataset: str = None
    class_names: tuple = None
    data_source: str = None
    recorded_in: str = None

    @property
    def data_path(self):
        """The recorded path the data was read from; None for the default place."""
        return None if self.data_source in (None, checkpoints.DEFAULT_SOURCE) else \
            self.data_source


def read_origin(path):
    """Read what the model file ``path`` records about its data, and none of its weights.

    Raises
    ------
    BadCheckpointError
        As ``convnet.training.checkpoint.read``.
    """
    contents = checkpoints.read(path, keys=("dataset", "class_names", "data_source"))
    arrays = contents.arrays
    if not contents.legacy:
        # A model's own checkpoint always records both; read_model refuses it without them.
        missing = [key for key in ("dataset", "class_names") if key not in arrays]
        if missing:
            raise BadCheckpointError(f"checkpoint {path}: not a model checkpoint "
                                     f"(no {missing[0]!r})")
    if "dataset" not in arrays:
        dataset = run_json_dataset(path)
        return Origin(dataset, None, None, None if dataset is None else RUN_JSON)
    names = (checkpoints.recorded_class_names(path, arrays) if "class_names" in arrays
             else None)
    return Origin(checkpoints.recorded_dataset(path, arrays), names,
                  checkpoints.recorded_source(path, arrays), "checkpoint")


def run_json_dataset(path):
    """The dataset the ``run.json`` beside ``path`` names; None without a readable one."""
    run = Path(path).parent / RUN_JSON
    try:
        if run.stat().st_size > MAX_RUN_JSON:
            return None
        settings = json.loads(run.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    dataset = settings.get("dataset") if isinstance(settings, dict) else None
    return dataset if dataset in DATASETS else None


def data_to_use(path, dataset=None, data=None, note=None):
    """The dataset and data the model file ``path`` is used on (see the module docstring).

    Parameters
    ----------
    path : str or Path
        A checkpoint or weights file.
    dataset : str, optional
        The dataset asked for; must be the recorded one.
    data : str, optional
        Read the dataset from here (wins over the recorded path).
    note : callable, optional
        Receives one line when the dataset is assumed (not recorded anywhere);
        by default it is a ``UserWarning``.

    Returns
    -------
    dataset : str
    data : str or None
        The path to read the dataset from; None for its default place.
    origin : Origin

    Raises
    ------
    BadOptionError
        ``dataset`` differs from the recorded one (field ``dataset``).
    MissingDataError
        No ``data`` given and the recorded path no longer exists (field ``data``).
    BadCheckpointError
        The file is missing or not a model file.
    """
    origin = read_origin(path)
    recorded = origin.dataset
    if recorded is None:
        if dataset is None:
            line = (f"{path} does not record the dataset it learnt (a LeNet-5 weights file "
                    f"with no {RUN_JSON} beside it): MNIST is assumed")
            if note is None:
                warnings.warn(line, stacklevel=2)
            else:
                note(line)
        return dataset or "mnist", data, origin
    if dataset is not None and dataset != recorded:
        says = "" if origin.recorded_in == "checkpoint" else f" (says the {RUN_JSON} beside it)"
        raise BadOptionError(
            f"checkpoint {path} was trained on {recorded}, not {dataset}{says}: leave out "
            f"{{dataset}} (the checkpoint's own is used) or pass a checkpoint trained on "
            f"{dataset}", fields=("dataset",))
    source = origin.data_path
    if data is None and source is not None:
        if not os.path.exists(source):
            raise MissingDataError(
                f"checkpoint {path} was trained on {recorded} read from {source}, which no "
                f"longer exists: pass {{data}} PATH (the folder or file to read {recorded} "
                "from)", fields=("data",))
        data = source
    return recorded, data, origin
