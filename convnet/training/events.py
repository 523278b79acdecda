"""What a training run reports while it runs: events, passed to the caller's ``on_event``.

The library never prints. A run sends, in order:

- ``RunStarted``: what is about to be trained, and how;
- ``Snapshot`` (only with ``TrainConfig.serve``): the weights at the start,
  every ``serve_every`` steps and after every epoch, for a live view;
- ``StepEnded`` after every training step (NumPy and graph backends);
- ``EpochEnded`` after each epoch's measurements (and, for the NumPy
  engine, once its checkpoint is written; epoch 0 is the untrained network);
- ``Note``: anything else worth a line (stale files removed, say);
- ``RunFinished``: the final figures and the files written, also what
  ``convnet.train`` returns.

Each event is a frozen dataclass of plain values (numbers, strings, lists,
dicts, NumPy arrays), so that a rank or worker in another process can send
it as one line of JSON (``to_line`` / ``from_line``).
"""
import base64
import dataclasses
import json

import numpy as np

EPOCH_LINE = ("After {epoch} {epochs}: cost {c:.4f}, accuracy {a:.4f}, "
              "validation cost {vc:.4f}, validation accuracy {va:.4f}")


def epochs_text(count):
    """``"1 epoch"``, ``"2 epochs"``, ``"0 epochs"``."""
    return f"{count} epoch{'' if count == 1 else 's'}"


def epoch_line(epoch, cost, accuracy, val_cost, val_accuracy):
    """The per-epoch line of task 4's format, numbers rounded to 4 decimals.

    ``"After 1 epoch: cost 0.2345, accuracy 0.9312, validation cost 0.2101,
    validation accuracy 0.9400"`` (task 4's own main prints every digit).
    """
    return EPOCH_LINE.format(epoch=epoch, epochs="epoch" if epoch == 1 else "epochs",
                             c=cost, a=accuracy, vc=val_cost, va=val_accuracy)


@dataclasses.dataclass(frozen=True)
class RunStarted:
    """A run is about to train (everything it reads has been checked).

    ``lr`` is the optimizer's rate, or None for Keras's default;
    ``start_epoch`` the epochs a resumed run has done (``resumed_from`` its
    checkpoint); ``processes``/``threads``/``shard_threads``/``micro_batch``/
    ``augment`` tell how the NumPy engine shares its steps; ``workers`` is the size of a Keras
    cluster (None outside one); ``spec`` the model's canonical spec.
    """

    backend: str
    model: str
    dataset: str
    train_size: int
    epochs: int
    batch_size: int
    optimizer: str
    lr: float | None
    seed: int
    spec: dict
    start_epoch: int = 0
    resumed_from: str | None = None
    processes: int = 1
    threads: int = 1
    shard_threads: int = 1
    micro_batch: int | None = None
    augment: str = ""
    workers: int | None = None


@dataclasses.dataclass(frozen=True)
class StepEnded:
    """Step ``step`` of ``steps`` (1-based) of epoch ``epoch`` of ``epochs`` ended with ``loss``."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The weights after ``step`` steps of this run, in epoch ``epoch``.

    ``weights`` maps each weight's name to a copy of it (shapes as
    ``Sequential.get_weights``).
    """

    epoch: int
    step: int
    weights: dict


@dataclasses.dataclass(frozen=True)
class EpochEnded:
    """The measurements after epoch ``epoch`` (0: the untrained network).

    ``loss``/``accuracy`` are those of the training set, ``val_*`` of the
    validation set; ``seconds`` the epoch's training time (None for epoch 0).
    """

    epoch: int
    epochs: int
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float | None = None

    def line(self):
        """Task 4's line for this epoch."""
        return epoch_line(self.epoch, self.loss, self.accuracy, self.val_loss,
                          self.val_accuracy)


@dataclasses.dataclass(frozen=True)
class Note:
    """Something worth one line that is not a figure: ``text``."""

    text: str


@dataclasses.dataclass(frozen=True)
class RunFinished:
    """The run is over: its figures and files.

    Attributes
    ----------
    backend : str
    history : dict of str to list of float
        ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` and
        ``epoch_seconds``, one entry per epoch.
    valid_accuracy, test_accuracy : float
    train_size, batch_size : int
    files : dict of str to str
        What was written, by kind: ``checkpoint``, ``best``, ``history``
        (NumPy); ``history``, ``run``, ``weights`` (graph and Keras).
    best_epoch : int or None
        The epoch ``best.npz`` holds (NumPy with ``keep="best"``).
    plot_from : int or None
        The epoch of the history's first entry, for a picture of its curves;
        None when there is nothing worth drawing.
    """

    backend: str
    history: dict
    valid_accuracy: float
    test_accuracy: float
    train_size: int
    batch_size: int
    files: dict
    best_epoch: int | None = None
    plot_from: int | None = None

    @property
    def seconds_per_epoch(self):
        """Mean training time of an epoch, or None if no epoch was trained."""
        seconds = self.history.get("epoch_seconds") or []
        return float(np.mean(seconds)) if seconds else None


EVENTS = {cls.__name__: cls for cls in (RunStarted, StepEnded, Snapshot, EpochEnded, Note,
                                        RunFinished)}
# The first characters of an event's line: anything else a process prints is not one.
LINE_MARK = '{"event": '


def _plain(value):
    """JSON-ready copy of a value: arrays as base64 of their bytes, dtype and shape."""
    if isinstance(value, np.ndarray):
        return {"__array__": base64.b64encode(np.ascontiguousarray(value).tobytes()).decode(),
                "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _restored(value):
    if isinstance(value, dict):
        if "__array__" in value:
            flat = np.frombuffer(base64.b64decode(value["__array__"]), dtype=value["dtype"])
            return flat.reshape(value["shape"]).copy()
        return {key: _restored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_restored(item) for item in value]
    return value


def to_line(event):
    """One line of JSON (no newline) holding ``event``; ``from_line`` reads it back."""
    fields = {field.name: _plain(getattr(event, field.name))
              for field in dataclasses.fields(event)}
    return json.dumps({"event": type(event).__name__, "fields": fields})


def from_line(line):
    """The event a ``to_line`` line holds, or None if the line holds none."""
    if not line.startswith(LINE_MARK):
        return None
    try:
        record = json.loads(line)
        kind = EVENTS[record["event"]]
    except (ValueError, KeyError, TypeError):
        return None
    return kind(**_restored(record["fields"]))
