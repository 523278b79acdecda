"""Self-describing training checkpoints, read safely even when damaged or crafted.

A checkpoint is an ``.npz`` file: a zip archive of ``.npy`` members, one per
array. ``np.load`` trusts what it reads: a small file can hold a member that
inflates to gigabytes, or one whose header claims a shape of any size. This
module first reads the ``spec`` member (the model's architecture as JSON
text, at most ``MAX_SPEC_BYTES``) and the ``optimizer`` member (its
configuration as JSON text), derives from them every other member the file
may hold (``layout``: names, shapes, dtypes), and for each one checks,
before reading any of its data:

- its name is known, and no name appears twice;
- the size the zip directory declares for it is at most what its expected
  shape and dtype need, plus a small header;
- its ``.npy`` header declares exactly the expected shape (texts and
  histories: one dimension, at most a fixed length), a dtype of the expected
  kind (never an object, structured or complex dtype), and a data size that
  agrees with the zip directory.

Only then is the member's data read, into an array of the declared size, so
reading a file never holds more than the expected arrays in memory, whatever
the file claims (those checks are ``convnet.training.npz_members``).
Weights, optimiser state and the learning rate must be finite; the run
settings must be in range; the dataset must be one of ``DATASETS``, the
class names printable and the rule one that ``RULE`` describes (those checks
are ``convnet.training.recorded``). Every refusal is a ``BadCheckpointError``
naming the file and the member.

Layout of a training checkpoint (written by ``write``):

- ``spec``: the canonical spec (``Sequential.to_json``), UTF-8 bytes as a
  uint8 array (never a pickled object);
- the weights under the model's names (``conv1/kernel``, ``conv1/bias``,
  ``bn1/moving_mean``, ...), in Keras ``get_weights`` order;
- ``optimizer``: the optimiser's ``config()`` as JSON text (uint8), and its
  state: ``optimizer_iterations`` (int scalar) and one member per state
  buffer and trainable weight, ``optimizer_<slot><i>`` (Adam: ``m0``,
  ``v0``, ...), of the shape of trainable weight ``i``;
- ``class_names``: the dataset's class names (text array, one per class);
- ``epoch`` (int scalar, epochs completed);
- the run settings ``RUN_SETTINGS``: ``seed``, ``batch_size``, ``train_size``
  (int scalars), ``lr`` (float scalar), ``dataset`` (string scalar);
- ``data_source`` (string scalar): where the data was read from, the absolute
  path given as ``data`` or ``DEFAULT_SOURCE`` for the dataset's default
  place (older checkpoints lack it: the default place);
- the history: ``history_<key>`` for each of ``HISTORY_KEYS`` (``epoch + 1``
  float64 entries, epoch 0 being the untrained network) and
  ``history_epoch_seconds`` (``epoch`` entries).

A LeNet-5 weights file of the TensorFlow and Keras trainings holds the ten
``WEIGHT_NAMES`` (the exchange format) and, beside them, its ``spec``,
``dataset``, ``class_names`` and ``data_source`` (older files hold the ten
weights alone: they read as the zoo's ``lenet5`` with no dataset).
"""
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convnet import data, storage
from convnet.errors import BadCheckpointError
from convnet.nn import optim
from convnet.nn.lenet5 import WEIGHT_NAMES
from convnet.nn.limits import spec_text_problem
from convnet.training.npz_members import (
    MAX_EPOCHS,
    MAX_NAME,
    MAX_PATH,
    Member,
    check_directory,
    read_data,
    read_header,
)
from convnet.training.recorded import (  # noqa: F401 -- read here too
    DEFAULT_SOURCE,
    RULE,
    recorded_class_names,
    recorded_dataset,
    recorded_rule,
    recorded_source,
    source_text,
)

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
RUN_SETTINGS = ("seed", "batch_size", "lr", "dataset", "train_size")
# Seeds are kept below 2**32, the range every generator of NumPy and TensorFlow accepts.
SEED_LIMIT = 2 ** 32
# Longest spec and optimizer configuration (JSON bytes): the zoo's specs take about 2 kB.
MAX_SPEC_BYTES = 1 << 16
MAX_CONFIG_BYTES = 1 << 12
# Most weights a checkpoint's spec may declare (a float32 model of 400 MB): a crafted spec
# cannot make the reader allocate more.
MAX_PARAMETERS = 100_000_000
# Most classes a model may have (and class names a checkpoint may hold).
MAX_CLASSES = 100_000


class _Missing(BadCheckpointError):
    """Required members are missing; ``missing`` lists their keys."""

    def __init__(self, path, missing):
        super().__init__(f"checkpoint {path} lacks {', '.join(missing)}")
        self.missing = missing


TEXT_MEMBERS = {"spec": Member(None, "u", max_length=MAX_SPEC_BYTES),
                "optimizer": Member(None, "u", max_length=MAX_CONFIG_BYTES)}


def _run_members():
    """The members every training checkpoint holds whatever its model: settings, history."""
    members = {}
    for key in ("optimizer_iterations", "epoch", "seed", "batch_size", "train_size"):
        members[key] = Member((), "iu")
    members["lr"] = Member((), "f", finite=True)
    members["dataset"] = Member((), "U")
    # How the steps were shared (``convnet.parallel.distributed.rule_of``); older checkpoints lack it.
    members["rule"] = Member((), "U")
    # The random changes made to the training images (``TrainConfig.augment``), joined by commas.
    members["augment"] = Member((), "U")
    members["data_source"] = Member((), "U", max_chars=MAX_PATH)
    for key in HISTORY_KEYS + ("epoch_seconds",):
        members[f"history_{key}"] = Member(None, "f")
    return members


def layout(weight_shapes, trainable, slots, num_classes):
    """Return every member a checkpoint of this model and optimiser may hold, by key.

    Parameters
    ----------
    weight_shapes : dict of str to tuple
        Every weight's name and shape, in the model's order.
    trainable : list of str
        The names of the trainable weights, in order (the optimiser's).
    slots : tuple of str
        The optimiser's state buffers per trainable weight (Adam: ``m``, ``v``).
    num_classes : int
        Entries of ``class_names``.

    Returns
    -------
    dict of str to Member
    """
    members = dict(TEXT_MEMBERS)
    members.update({name: Member(tuple(shape), "f", finite=True)
                    for name, shape in weight_shapes.items()})
    for index, name in enumerate(trainable):
        for slot in slots:
            members[f"optimizer_{slot}{index}"] = Member(tuple(weight_shapes[name]), "f",
                                                         finite=True)
    members["class_names"] = Member((num_classes,), "U")
    members.update(_run_members())
    return members


def _legacy_layout():
    """Members of an older LeNet-5 checkpoint or weights file (no ``spec``)."""
    shapes = [(5, 5, 1, 6), (6,), (5, 5, 6, 16), (16,), (400, 120), (120,), (120, 84), (84,),
              (84, 10), (10,)]
    members = {name: Member(shape, "f", finite=True)
               for name, shape in zip(WEIGHT_NAMES, shapes)}
    for index, shape in enumerate(shapes):
        members[f"adam_m{index}"] = Member(shape, "f", finite=True)
        members[f"adam_v{index}"] = Member(shape, "f", finite=True)
    members.update(_run_members())
    members["adam_iterations"] = members.pop("optimizer_iterations")
    return members


def _exchange_layout(path, spec):
    """Members of a LeNet-5 weights file with a spec: the ten ``WEIGHT_NAMES`` and what it learnt.

    Raises
    ------
    BadCheckpointError
        If the spec's weights are not LeNet-5's (their shapes, in order).
    """
    from convnet.nn.specs import spec_weights
    legacy = _legacy_layout()
    shapes = [tuple(int(side) for side in shape) for shape in spec_weights(spec)[0].values()]
    if shapes != [legacy[name].shape for name in WEIGHT_NAMES]:
        raise BadCheckpointError(f"checkpoint {path}: its weights are under LeNet-5's names "
                                 f"({WEIGHT_NAMES[0]}, ...) but its spec is not LeNet-5's")
    members = {name: legacy[name] for name in (*WEIGHT_NAMES, "dataset", "data_source")}
    members["spec"] = TEXT_MEMBERS["spec"]
    members["class_names"] = Member((shapes[-1][0],), "U")
    return members


@dataclass
class Contents:
    """What ``read`` found: the model's spec and optimiser configuration, and the arrays.

    Attributes
    ----------
    spec : dict
        The canonical spec (the zoo's ``lenet5`` for a legacy LeNet-5 file).
    optimizer : dict or None
        The optimiser's ``config()``; None for a legacy file.
    arrays : dict of str to ndarray
        The members read, weights under the model's names.
    legacy : bool
        The weights are under LeNet-5's ``WEIGHT_NAMES``: a LeNet-5 weights
        file of the TensorFlow and Keras trainings, or an older LeNet-5
        checkpoint (with no spec).
    """

    spec: dict
    optimizer: dict
    arrays: dict
    legacy: bool = False


def _json_member(path, archive, found, key, members):
    """Read and parse a JSON text member (already present in ``found``)."""
    member = members[key]
    header = read_header(path, archive, found[key], key, member)
    raw = read_data(path, archive, found[key], key, member, *header)
    try:
        text = raw.tobytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadCheckpointError(f"checkpoint {path}: member {key!r} is not JSON text "
                                 f"({error})") from None
    # A spec's bounds (its length, its nesting) are judged before the parser recurses.
    problem = spec_text_problem(text) if key == "spec" else None
    if problem is not None:
        raise BadCheckpointError(f"checkpoint {path}: member 'spec' {problem}")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        # RecursionError: brackets nested deeper than the parser goes.
        raise BadCheckpointError(f"checkpoint {path}: member {key!r} is not JSON text "
                                 f"({error})") from None


def _model_layout(path, spec, config):
    """The layout of a checkpoint whose spec and optimiser configuration were read."""
    from convnet.nn.sequential import normalise_spec, spec_weights
    try:
        spec = normalise_spec(spec)
        shapes, trainable = spec_weights(spec)
    except (ValueError, TypeError, OverflowError) as error:
        raise BadCheckpointError(f"checkpoint {path}: member 'spec' is not a valid model "
                                 f"spec ({error})") from None
    for name, shape in shapes.items():
        if not all(0 <= int(side) <= MAX_PARAMETERS for side in shape):
            raise BadCheckpointError(f"checkpoint {path}: its spec declares weight {name!r} of "
                                     f"shape {tuple(shape)}, which no checkpoint may hold")
    # In Python's integers, which a crafted spec cannot make wrap around as int64 would.
    count = sum(math.prod(int(side) for side in shape) for shape in shapes.values())
    if count > MAX_PARAMETERS:
        raise BadCheckpointError(f"checkpoint {path}: its spec declares {count:,} weights, "
                                 f"more than the {MAX_PARAMETERS:,} a checkpoint may hold")
    last = spec["layers"][-1]
    num_classes = last["units"] if last["activation"] == "softmax" else 2
    if num_classes > MAX_CLASSES:
        raise BadCheckpointError(f"checkpoint {path}: its spec declares {num_classes} classes, "
                                 f"more than {MAX_CLASSES}")
    slots = ()
    if config is not None:
        try:
            slots = optimizer_slots(config)
        except (ValueError, TypeError) as error:
            raise BadCheckpointError(f"checkpoint {path}: member 'optimizer' is not a valid "
                                     f"optimizer configuration ({error})") from None
    return spec, layout(shapes, trainable, slots, num_classes)


def optimizer_slots(config):
    """Return the state buffers per weight of the optimiser ``config`` describes.

    Parameters
    ----------
    config : dict
        ``{"name": "adam", "lr": ..., ...}`` as ``config()`` returns it.

    Raises
    ------
    ValueError, TypeError
        For an unknown optimiser or hyper-parameter, or a value out of range.
    """
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"an optimizer configuration must be a dict with a 'name', "
                         f"received {config!r}")
    hyper = {key: value for key, value in config.items() if key != "name"}
    return optim.make_optimizer(config["name"], [], **hyper).slot_names()


def read(path, keys=None, required=(), model_only=False):
    """Read members of a checkpoint after checking every member's declared shape and size.

    The spec and optimiser members are read first (size-capped), and give
    the layout every other member is checked against.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file.
    keys : iterable of str, optional
        The members to read; all members present by default. The others are
        checked from their headers but not read.
    required : iterable of str
        Members that must be present.
    model_only : bool
        Read only what using the model needs: its weights, dataset and class
        names, never the optimiser's state (``keys`` is then ignored).

    Returns
    -------
    Contents

    Raises
    ------
    BadCheckpointError
        Naming the file (and the member) if the file is missing, a folder,
        not a zip archive, or holds a member that is unknown, repeated,
        larger than expected, of the wrong shape or dtype, truncated, or
        (weights, optimiser state, learning rate) not finite; or if its
        spec or optimiser configuration is not valid.
    """
    path = Path(path)
    if path.is_dir():
        raise BadCheckpointError(f"checkpoint {path} is a folder, not a file "
                                 f"(give the .npz inside it, e.g. {path / 'checkpoint.npz'})")
    if not path.is_file():
        raise BadCheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise BadCheckpointError(f"checkpoint {path} is not an .npz file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = {info.filename for info in archive.infolist()}
            if "spec.npy" in names:
                texts = check_directory(path, archive, TEXT_MEMBERS, known_only=False)
                spec = _json_member(path, archive, texts, "spec", TEXT_MEMBERS)
                config = (_json_member(path, archive, texts, "optimizer", TEXT_MEMBERS)
                          if "optimizer" in texts else None)
                spec, members = _model_layout(path, spec, config)
                legacy = f"{WEIGHT_NAMES[0]}.npy" in names
                if legacy:
                    members = _exchange_layout(path, spec)
            else:
                from convnet.nn.zoo import load_spec
                spec, config, members, legacy = load_spec("lenet5"), None, _legacy_layout(), True
            found = check_directory(path, archive, members)
            missing = [key for key in required if key not in found]
            if missing:
                raise _Missing(path, missing)
            headers = {key: read_header(path, archive, info, key, members[key])
                       for key, info in found.items()}
            if model_only:
                from convnet.nn.specs import spec_weights
                weights = WEIGHT_NAMES if legacy else spec_weights(spec)[0]
                keys = [*weights, "dataset", "class_names"]
            wanted = found if keys is None else [key for key in keys if key in found]
            arrays = {key: read_data(path, archive, found[key], key, members[key],
                                      *headers[key])
                      for key in wanted if key not in TEXT_MEMBERS}
            return Contents(spec, config, arrays, legacy)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as error:
        if isinstance(error, BadCheckpointError):
            raise
        raise BadCheckpointError(f"checkpoint {path} is not a readable .npz file ({error})") from None


def _text_array(text):
    """UTF-8 bytes of ``text`` as a uint8 array (how JSON members are stored)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def read_model(path):
    """Read what using a model needs: its spec, weights, dataset and class names.

    Returns
    -------
    spec : dict
        The canonical spec.
    weights : dict of str to ndarray
        Every weight by the model's names (``Sequential.set_weights`` takes it).
    dataset : str or None
        The dataset the model was trained on (None for a LeNet-5 weights file
        that does not record it).
    class_names : tuple of str or None
        Its class names, in label order (None when the dataset is not
        recorded; the dataset's own when only the dataset is).

    Raises
    ------
    BadCheckpointError
        As ``read``; also if weights are missing.
    """
    from convnet.nn.sequential import spec_weights
    contents = read(path, model_only=True)
    arrays = contents.arrays
    if contents.legacy:
        _require(path, arrays, WEIGHT_NAMES, "LeNet-5 weights")
        names = list(spec_weights(contents.spec)[0])
        weights = {name: arrays[old] for name, old in zip(names, WEIGHT_NAMES)}
        if "dataset" not in arrays:
            return contents.spec, weights, None, None
        dataset = recorded_dataset(path, arrays)
        # Older LeNet-5 checkpoints record their dataset but not its class names.
        class_names = (recorded_class_names(path, arrays) if "class_names" in arrays
                       else data.class_names(dataset))
        return contents.spec, weights, dataset, class_names
    names = list(spec_weights(contents.spec)[0])
    _require(path, arrays, names + ["dataset", "class_names"], "a model")
    weights = {name: arrays[name] for name in names}
    return (contents.spec, weights, recorded_dataset(path, arrays),
            recorded_class_names(path, arrays))


def _require(path, arrays, keys, what):
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise BadCheckpointError(f"checkpoint {path}: not {what} checkpoint "
                                 f"(no {missing[0]!r})")


def read_training_state(path):
    """Read a whole training checkpoint and check that it can be resumed.

    Returns
    -------
    dict
        ``"spec"`` (canonical spec), ``"weights"`` (dict by name),
        ``"optimizer"`` (config dict), ``"optimizer_state"`` (``"iterations"``,
        ``"m0"``, ... as ``load_state`` takes it), ``"epoch"`` (int),
        ``"settings"`` (``RUN_SETTINGS`` as Python values), ``"history"``
        (dict of lists: ``HISTORY_KEYS`` with ``epoch + 1`` entries each and
        ``"epoch_seconds"``), ``"class_names"`` (tuple of str).

    Raises
    ------
    BadCheckpointError
        As ``read``; also if the training state is missing or out of range
        (a negative epoch, say), naming the file and the member.
    """
    from convnet.nn.sequential import spec_weights
    contents = read(path)
    arrays = contents.arrays
    if contents.legacy or contents.optimizer is None:
        raise BadCheckpointError(f"checkpoint {path} has no model spec or optimizer: it was "
                                 "written by an older version or another backend and cannot "
                                 "be resumed")
    shapes, trainable = spec_weights(contents.spec)
    slots = optimizer_slots(contents.optimizer)
    state = [f"optimizer_{slot}{index}" for index in range(len(trainable)) for slot in slots]
    history_keys = [f"history_{key}" for key in HISTORY_KEYS + ("epoch_seconds",)]
    scalars = list(RUN_SETTINGS) + ["epoch", "optimizer_iterations"]
    needed = list(shapes) + state + scalars + history_keys + ["class_names"]
    missing = [key for key in needed if key not in arrays]
    if missing:
        raise BadCheckpointError(f"checkpoint {path} has no training state "
                                 f"({', '.join(missing)} missing): it cannot be resumed")
    values = {key: arrays[key].item() for key in scalars}
    where = f"checkpoint {path}:"
    for key, low, high in (("epoch", 0, MAX_EPOCHS), ("optimizer_iterations", 0, None),
                           ("seed", 0, SEED_LIMIT - 1), ("batch_size", 1, None),
                           ("train_size", 1, None)):
        if values[key] < low or (high is not None and values[key] > high):
            expected = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise BadCheckpointError(f"{where} {key} is {values[key]}, expected {expected}")
    if not values["lr"] > 0:
        raise BadCheckpointError(f"{where} lr is {values['lr']}, expected a positive number")
    epoch = values["epoch"]
    history = {key: arrays[f"history_{key}"].tolist() for key in HISTORY_KEYS + ("epoch_seconds",)}
    for key, values_list in history.items():
        expected = epoch if key == "epoch_seconds" else epoch + 1
        if len(values_list) != expected:
            raise BadCheckpointError(f"{where} history_{key} has {len(values_list)} entries, "
                                     f"expected {expected} for epoch {epoch}")
    optimizer_state = {key[len("optimizer_"):]: arrays[key]
                       for key in state + ["optimizer_iterations"]}
    values["dataset"] = recorded_dataset(path, arrays)
    return {"spec": contents.spec, "weights": {name: arrays[name] for name in shapes},
            "optimizer": contents.optimizer, "optimizer_state": optimizer_state,
            "epoch": epoch, "settings": {key: values[key] for key in RUN_SETTINGS},
            "rule": recorded_rule(path, arrays),
            "augment": str(arrays["augment"].item()) if "augment" in arrays else "",
            "history": history, "class_names": recorded_class_names(path, arrays)}


def write(path, model, optimizer, epoch, settings, history, class_names):
    """Write a training checkpoint atomically, in the layout ``read_training_state`` reads.

    Parameters
    ----------
    path : str or Path
        Destination ``.npz``.
    model : Sequential
        Its spec and every weight are stored.
    optimizer : Adam, RMSprop or SGD
        Built on ``model.parameters()``: its ``config()`` and ``state()``.
    epoch : int
        Epochs completed.
    settings : dict
        The ``RUN_SETTINGS``; also ``"data"`` if known (the path the data was
        read from, None for the default place), recorded as ``data_source``.
    history : dict of str to list of float
        ``HISTORY_KEYS`` and ``"epoch_seconds"``, stored as float64 arrays.
    class_names : sequence of str
        The dataset's class names, one per class of the model.
    """
    arrays = {"spec": _text_array(model.to_json()),
              "optimizer": _text_array(json.dumps(optimizer.config()))}
    arrays.update(model.get_weights())
    arrays.update({f"optimizer_{key}": value for key, value in optimizer.state().items()})
    arrays["class_names"] = np.asarray([str(name)[:MAX_NAME] for name in class_names],
                                       dtype=f"<U{MAX_NAME}")
    arrays["epoch"] = np.int64(epoch)
    for key in RUN_SETTINGS:
        arrays[key] = np.asarray(settings[key])
    for key in ("rule", "augment"):
        if settings.get(key):
            arrays[key] = np.asarray(str(settings[key])[:MAX_NAME])
    # Without "data" the source is unknown: nothing is recorded rather than a guess.
    source = source_text(settings["data"]) if "data" in settings else None
    if source is not None:
        arrays["data_source"] = np.asarray(source)
    for key, values in history.items():
        arrays[f"history_{key}"] = np.asarray(values, dtype=np.float64)
    storage.save_npz(path, **arrays)


def write_model(path, model, dataset, class_names):
    """Write a model alone (spec, weights, dataset, class names) atomically: no training state.

    ``read_model`` reads it; it cannot be resumed.

    Parameters
    ----------
    path : str or Path
        Destination ``.npz``.
    model : Sequential
    dataset : str
        The dataset it classifies.
    class_names : sequence of str
        One name per class of the model.
    """
    arrays = {"spec": _text_array(model.to_json())}
    arrays.update(model.get_weights())
    arrays["class_names"] = np.asarray([str(name)[:MAX_NAME] for name in class_names],
                                       dtype=f"<U{MAX_NAME}")
    arrays["dataset"] = np.asarray(dataset)
    storage.save_npz(path, **arrays)
