"""Model specs: the format, its checks, shape inference, the weights and the summary.

A spec is a list of layer entries (dicts), or a dict holding that list under
``"layers"`` with an optional ``"name"``, ``"loss"`` and ``"optimizer"``;
either can be read from JSON. The first entry gives the input shape, e.g.::

    [{"layer": "Input", "shape": [28, 28, 1]},
     {"layer": "Conv2D", "name": "conv1", "filters": 6, "kernel": 5,
      "padding": "same", "activation": "relu"},
     {"layer": "MaxPool2D", "pool": 2},
     {"layer": "Flatten"},
     {"layer": "Dense", "units": 10, "activation": "softmax"}]

Layers and their fields (defaults in brackets), with Keras's meanings:

- ``Input``: ``shape`` (h, w, c), first and only first;
- ``ZeroPadding2D``: ``padding`` [1], an int, ``[rows, columns]`` or
  ``[[top, bottom], [left, right]]``;
- ``Conv2D``: ``filters``, ``kernel`` (int or pair), ``stride`` [1],
  ``padding`` ['valid'] ('same' gives ``ceil(h / stride)`` rows),
  ``activation`` [none];
- ``MaxPool2D``, ``AveragePool2D``: ``pool`` [2], ``stride`` [the pool],
  ``padding`` ['valid'];
- ``BatchNormalization``: ``momentum`` [0.99], ``epsilon`` [0.001];
- ``ReLU``, ``Flatten``: no fields;
- ``Dense``: ``units``, ``activation`` [none];
- ``Dropout``: ``rate`` in [0, 1).

Every entry may carry a ``name`` (default: the kind and a number, e.g.
``conv2``; ``input``, ``softmax`` and ``sigmoid`` are reserved; 1 to 64 of
``A-Z a-z 0-9 _ . -``, a letter or digit first); weights are named after their layer (``conv1/kernel``,
``conv1/bias``, ``bn1/gamma``, ``bn1/moving_mean``, ...). Activations are
``relu``, ``tanh``, ``sigmoid`` and ``softmax``. The last entry is a Dense
layer with ``softmax`` (k >= 2 classes, categorical cross-entropy) or one
unit with ``sigmoid`` (binary cross-entropy); the activation is fused with
the loss, so ``forward`` returns logits.

:func:`normalise_spec` checks a spec, infers every layer's output shape,
checks what the model would need against the bounds of
:mod:`convnet.nn.limits` (memory budget, checkpoint limits, layer names)
before anything is allocated, and returns a :class:`CanonicalSpec`, which it
returns as it is when given one again: a spec is checked once, wherever it
goes next (``Sequential``, the weights listing, checkpoints, the TensorFlow
twins). ``convnet.nn.zoo`` resolves a zoo name or a JSON file to a canonical
spec. :func:`spec_summary` counts a spec's layers into the
:class:`~convnet.nn.summary.Summary` that ``convnet.nn.summary`` prints as a table.
"""
import json
import numbers

import numpy as np

from convnet.checks import check_count
from convnet.errors import UserError
from convnet.nn import limits
from convnet.nn.keras_padding import keras_output_size
from convnet.nn.summary import Summary, SummaryRow, summary_text  # noqa: F401 -- summary_text: re-exported


class BadSpecError(UserError, ValueError):
    """A model spec that is not well formed, or whose layers do not fit their inputs."""


ACTIVATIONS = ("relu", "tanh", "sigmoid", "softmax")
PADDINGS = ("valid", "same")
LOSSES = {"softmax": "categorical_crossentropy", "sigmoid": "binary_crossentropy"}
_REQUIRED = object()
# Fields of each layer kind and their defaults (_REQUIRED: no default).
FIELDS = {
    "Input": {"shape": _REQUIRED},
    "ZeroPadding2D": {"padding": 1},
    "Conv2D": {"filters": _REQUIRED, "kernel": _REQUIRED, "stride": 1, "padding": "valid",
               "activation": None},
    "MaxPool2D": {"pool": 2, "stride": None, "padding": "valid"},
    "AveragePool2D": {"pool": 2, "stride": None, "padding": "valid"},
    "BatchNormalization": {"momentum": 0.99, "epsilon": 1e-3},
    "ReLU": {},
    "Flatten": {},
    "Dense": {"units": _REQUIRED, "activation": None},
    "Dropout": {"rate": _REQUIRED},
}
# Default name of each kind: this prefix and the kind's running count.
NAME_PREFIXES = {"ZeroPadding2D": "pad", "Conv2D": "conv", "MaxPool2D": "pool",
                 "AveragePool2D": "pool", "BatchNormalization": "bn", "ReLU": "relu",
                 "Flatten": "flatten", "Dense": "dense", "Dropout": "dropout"}
# What Keras calls each kind (its class names), for summaries.
KERAS_CLASSES = {"ZeroPadding2D": "ZeroPadding2D", "Conv2D": "Conv2D",
                 "MaxPool2D": "MaxPooling2D", "AveragePool2D": "AveragePooling2D",
                 "BatchNormalization": "BatchNormalization", "ReLU": "ReLU",
                 "Flatten": "Flatten", "Dense": "Dense", "Dropout": "Dropout"}
# The names Keras gives each parameter key of the layers.
WEIGHT_SUFFIXES = {"W": "kernel", "b": "bias", "gamma": "gamma", "beta": "beta",
                   "moving_mean": "moving_mean", "moving_variance": "moving_variance"}
SPEC_KEYS = ("name", "layers", "loss", "optimizer")
# Names of the images and of the probabilities in ``Sequential.outputs``.
RESERVED_NAMES = ("input", "softmax", "sigmoid")


class CanonicalSpec(dict):
    """A spec checked and in canonical form; only :func:`normalise_spec` makes them.

    It is the plain dict ``{"name", "layers", "loss", "optimizer"}`` (JSON
    text of it reads back equal) with one attribute more, ``shapes``: the
    output shape of every entry without the batch axis, the Input's being
    the input shape. Treat it as a value: ``normalise_spec`` trusts it
    without checking again, so an edited spec must be rebuilt from plain
    dicts and normalised anew.
    """

    shapes = ()


# ---------------------------------------------------------------- the checks
class _Entry:
    """Error messages for one layer entry: ``layer 3 ('conv2', Conv2D): ...``."""

    def __init__(self, index, entry):
        """Remember the entry's position and content for the messages."""
        self.index = index
        self.entry = entry

    @property
    def where(self):
        """The entry as messages name it: ``layer 3 ('conv2', Conv2D)``."""
        kind = self.entry.get("layer")
        name = self.entry.get("name")
        label = ", ".join(limits.shown(part) if part is name else str(part)
                          for part in (name, kind) if part is not None)
        return f"layer {self.index}" + (f" ({label})" if label else "")

    def error(self, message):
        """Return a :class:`BadSpecError` saying ``message`` about this entry."""
        return BadSpecError(f"{self.where}: {message}")

    def count(self, field, value, minimum=1):
        """Return ``value`` as an int at least ``minimum``, or raise naming ``field``."""
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            what = "a positive" if minimum == 1 else "a non-negative"
            raise self.error(f"{field} must be {what} integer, received {limits.shown(value)}")
        return int(value)

    def pair(self, field, value, minimum=1):
        """Return an int or two as a list of two ints at least ``minimum``, or raise."""
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise self.error(f"{field} must be an integer or two, received {limits.shown(value)}")
            return [self.count(field, item, minimum) for item in value]
        value = self.count(field, value, minimum)
        return [value, value]

    def choice(self, field, value, choices):
        """Return ``value`` if it is one of ``choices``, or raise naming ``field``."""
        if value not in choices:
            raise self.error(f"{field} must be one of {', '.join(map(repr, choices))}, "
                             f"received {limits.shown(value)}")
        return value

    def number(self, field, value, low, high, high_open):
        """Return ``value`` as a float in [low, high] (or [low, high)), or raise."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
                low <= value and (value < high if high_open else value <= high)):
            bracket = ")" if high_open else "]"
            raise self.error(f"{field} must be a number in [{low}, {high}{bracket}, "
                             f"received {limits.shown(value)}")
        return float(value)


def _normalise_field(check, kind, field, value):
    """Return one field's value checked and in canonical form (pairs as lists)."""
    if field == "shape":
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            raise check.error(f"shape must be three positive integers (h, w, c), "
                              f"received {limits.shown(value)}")
        return [check.count("shape", item) for item in value]
    if field in ("filters", "units"):
        return check.count(field, value)
    if field in ("kernel", "pool"):
        return check.pair(field, value)
    if field == "stride":
        return check.pair(field, value)
    if field == "padding" and kind == "ZeroPadding2D":
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(
                isinstance(item, (list, tuple)) for item in value):
            return [check.pair("padding", item, minimum=0) for item in value]
        return [[amount, amount] for amount in check.pair("padding", value, minimum=0)]
    if field == "padding":
        return check.choice(field, value, PADDINGS)
    if field == "activation":
        if value in (None, "linear"):
            return None
        return check.choice(field, value, ACTIVATIONS)
    if field == "rate":
        return check.number(field, value, 0, 1, high_open=True)
    if field == "momentum":
        return check.number(field, value, 0, 1, high_open=False)
    # epsilon
    if check.number(field, value, 0, float("inf"), high_open=True) <= 0:
        raise check.error(f"epsilon must be a positive number, received {limits.shown(value)}")
    return float(value)


def normalise_spec(spec):
    """Check a spec and return it in canonical form; a canonical spec is returned as it is.

    Parameters
    ----------
    spec : list of dict, dict or CanonicalSpec
        The layer entries, or ``{"layers": [...], "name": ..., "loss": ...,
        "optimizer": ...}``.

    Returns
    -------
    CanonicalSpec
        ``{"name": str, "layers": [...], "loss": str, "optimizer": str or None}``
        with every field of every layer present (defaults filled in, pairs as
        lists of two ints, names given), the loss derived from the last
        layer, and ``shapes`` the output shape of every entry.

    Raises
    ------
    BadSpecError
        A ``ValueError`` naming the layer (index, name and kind) and the bad
        field, the layer that does not fit its input, or the one at which the
        model outgrows the bounds of :mod:`convnet.nn.limits` (memory budget
        for one float32 image, weights, classes and JSON size a checkpoint
        holds).
    """
    if isinstance(spec, CanonicalSpec):
        return spec
    if isinstance(spec, dict):
        unknown = sorted(map(str, set(spec) - set(SPEC_KEYS)))
        if unknown:
            raise BadSpecError(f"spec has unknown keys {limits.shown(unknown)}; expected some of "
                               f"{list(SPEC_KEYS)}")
        if "layers" not in spec:
            raise BadSpecError("spec must hold its list of layers under 'layers'")
        header = spec
        entries = spec["layers"]
    else:
        header, entries = {}, spec
    if not isinstance(entries, (list, tuple)) or not entries:
        raise BadSpecError(f"a spec's layers must be a non-empty list of dicts, "
                           f"received {limits.shown(entries)}")
    layers, used_names, counts = [], set(), {}
    for index, entry in enumerate(entries):
        check = _Entry(index, entry if isinstance(entry, dict) else {})
        if not isinstance(entry, dict):
            raise check.error(f"must be a dict with a 'layer' key, received {limits.shown(entry)}")
        kind = entry.get("layer")
        if not isinstance(kind, str) or kind not in FIELDS:
            raise check.error(f"layer must be one of {', '.join(FIELDS)}, received {limits.shown(kind)}")
        if (kind == "Input") != (index == 0):
            raise check.error("the first layer, and only the first, must be Input")
        fields = FIELDS[kind]
        unknown = sorted(set(entry) - set(fields) - {"layer", "name"})
        if unknown:
            raise check.error(f"unknown field {limits.shown(unknown[0])}; {kind} takes "
                              f"{', '.join(['name'] + list(fields)) or 'no fields'}")
        canonical = {"layer": kind}
        name = entry.get("name")
        if kind != "Input":
            if name is None:
                prefix = NAME_PREFIXES[kind]
                while name is None or name in used_names:
                    counts[prefix] = counts.get(prefix, 0) + 1
                    name = f"{prefix}{counts[prefix]}"
            if not isinstance(name, str) or not limits.LAYER_NAME.fullmatch(name):
                raise check.error(f"name must be {limits.LAYER_NAME_RULE}, "
                                  f"received {limits.shown(name)}")
            if name in RESERVED_NAMES:
                raise check.error(f"name {name!r} is reserved: it names the images or the "
                                  "probabilities among a model's outputs")
            if name in used_names:
                raise check.error(f"name {name!r} is used by an earlier layer")
            used_names.add(name)
            canonical["name"] = name
        for field, default in fields.items():
            if field not in entry and default is _REQUIRED:
                raise check.error(f"{kind} needs the field {field!r}")
            value = entry.get(field, default)
            # A pool's stride defaults to its window; a convolution's must be given.
            pool_default = value is None and field == "stride" and kind != "Conv2D"
            canonical[field] = None if pool_default else _normalise_field(check, kind, field,
                                                                          value)
        if kind in ("MaxPool2D", "AveragePool2D") and canonical["stride"] is None:
            canonical["stride"] = list(canonical["pool"])
        layers.append(canonical)
    if len(layers) < 2:
        raise BadSpecError("a spec needs at least one layer after Input")
    last = _Entry(len(layers) - 1, layers[-1])
    if layers[-1]["layer"] != "Dense" or layers[-1]["activation"] not in ("softmax", "sigmoid"):
        raise last.error("the last layer must be Dense with activation 'softmax' (categorical "
                         "cross-entropy) or 'sigmoid' with one unit (binary cross-entropy)")
    if layers[-1]["activation"] == "sigmoid" and layers[-1]["units"] != 1:
        raise last.error(f"a sigmoid output must have 1 unit, received {layers[-1]['units']}")
    if layers[-1]["activation"] == "softmax" and layers[-1]["units"] < 2:
        raise last.error("a softmax output needs at least 2 units")
    for index, layer in enumerate(layers[:-1]):
        if layer.get("activation") == "softmax":
            raise _Entry(index, layer).error("softmax is only allowed on the last layer")
    loss = LOSSES[layers[-1]["activation"]]
    if header.get("loss", loss) != loss:
        raise BadSpecError(f"spec's loss must be {loss!r} for a {layers[-1]['activation']} "
                           f"output, received {limits.shown(header['loss'])}")
    name = header.get("name", "sequential")
    optimizer = header.get("optimizer")
    for key, value in (("name", name), ("optimizer", optimizer)):
        if value is not None and not isinstance(value, str):
            raise BadSpecError(f"spec's {key} must be a string, received {limits.shown(value)}")
    if not 0 < len(name) <= limits.MAX_MODEL_NAME or not name.isprintable() or "/" in name:
        raise BadSpecError(f"spec's name must be 1 to {limits.MAX_MODEL_NAME} printable "
                           f"characters without '/', received {limits.shown(name)}")
    classes = layers[-1]["units"]
    if classes > limits.MAX_CLASSES:
        raise last.error(f"{classes:,} classes are more than the {limits.MAX_CLASSES:,} a "
                         "checkpoint may hold")
    canonical = CanonicalSpec(name=name, layers=layers, loss=loss, optimizer=optimizer)
    canonical.shapes = _infer_shapes(layers)
    _check_memory(layers, canonical.shapes, batch_size=1, itemsize=4)
    size = len(spec_json(canonical).encode("utf-8"))
    if size > limits.MAX_SPEC_BYTES:
        raise BadSpecError(f"spec takes {size:,} bytes as JSON ({len(layers):,} layers); a "
                           f"checkpoint holds at most {limits.MAX_SPEC_BYTES:,}")
    return canonical


def spec_json(spec):
    """Return a canonical spec as the JSON text checkpoints store (``Sequential.to_json``)."""
    return json.dumps(spec, indent=1)


def _infer_shapes(layers):
    """Check that each layer fits its input; return the output shape of each entry (a tuple)."""
    shape = tuple(layers[0]["shape"])
    shapes = [shape]
    for index, layer in enumerate(layers[1:], start=1):
        kind = layer["layer"]
        check = _Entry(index, layer)
        if kind in ("ZeroPadding2D", "Conv2D", "MaxPool2D", "AveragePool2D") and len(shape) != 3:
            raise check.error(f"{kind} needs an input of shape (h, w, c), received {shape} "
                              "(after a Flatten)")
        if kind == "Dense" and len(shape) != 1:
            raise check.error(f"Dense needs a flat input, received shape {shape}; "
                              "add a Flatten layer before it")
        if kind == "ZeroPadding2D":
            (top, bottom), (left, right) = layer["padding"]
            shape = (shape[0] + top + bottom, shape[1] + left + right, shape[2])
        elif kind in ("Conv2D", "MaxPool2D", "AveragePool2D"):
            window = layer["kernel"] if kind == "Conv2D" else layer["pool"]
            if layer["padding"] == "valid" and (window[0] > shape[0] or window[1] > shape[1]):
                field = "kernel" if kind == "Conv2D" else "pool"
                raise check.error(f"{field} {tuple(window)} is larger than its input "
                                  f"{shape[:2]} with 'valid' padding")
            hw = tuple(keras_output_size(size, k, s, layer["padding"])
                       for size, k, s in zip(shape[:2], window, layer["stride"]))
            shape = hw + ((layer["filters"],) if kind == "Conv2D" else (shape[2],))
        elif kind == "Flatten":
            shape = (limits.elements(shape),)
        elif kind == "Dense":
            shape = (layer["units"],)
        shapes.append(shape)
    return tuple(shapes)


def _entry_weights(entry, input_shape):
    """Return ``(trained, kept)``: the weight shapes of one entry by suffix (``kernel``, ...)."""
    kind = entry["layer"]
    if kind == "Conv2D":
        return {"kernel": tuple(entry["kernel"]) + (input_shape[2], entry["filters"]),
                "bias": (entry["filters"],)}, {}
    if kind == "Dense":
        return {"kernel": (input_shape[0], entry["units"]), "bias": (entry["units"],)}, {}
    if kind == "BatchNormalization":
        channels = (input_shape[-1],)
        return ({"gamma": channels, "beta": channels},
                {"moving_mean": channels, "moving_variance": channels})
    return {}, {}


# ---------------------------------------------------------------- memory
def _check_memory(layers, shapes, batch_size, itemsize):
    """Raise naming the first layer at which the model outgrows its bounds; return the need."""
    rows = []
    for index, (entry, shape) in enumerate(zip(layers, shapes)):
        learned, kept = _entry_weights(entry, shapes[index - 1] if index else None)
        # Kept for the backward pass: the output, and its gradient; a second array of its
        # shape for the normalised input, the dropout mask or a hidden activation's input.
        second = (entry["layer"] in ("BatchNormalization", "Dropout")
                  or entry.get("activation") is not None and index < len(layers) - 1)
        weights = (*learned.values(), *kept.values())
        rows.append((sum(map(limits.elements, weights)),
                     (3 if second else 2) * limits.elements(shape)))
    total = sum(parameters for parameters, _ in rows)
    if total > limits.MAX_PARAMETERS:
        largest = max(range(len(rows)), key=lambda index: rows[index][0])
        raise BadSpecError(f"spec declares {total:,} weights, more than the "
                           f"{limits.MAX_PARAMETERS:,} a checkpoint may hold "
                           f"({_Entry(largest, layers[largest]).where} has {rows[largest][0]:,})")
    need, fault = limits.tally_memory(rows, batch_size, itemsize)
    if fault is not None:
        raise _Entry(fault[0], layers[fault[0]]).error(fault[1])
    return need


def check_memory(spec, batch_size=1, dtype=np.float32):
    """Check that a model of ``spec`` fits the memory budget when trained on ``batch_size`` images.

    ``normalise_spec`` checks one float32 image; training, which knows its
    batch (the micro-batch if smaller), checks it before building anything.

    Parameters
    ----------
    spec : list of dict, dict or CanonicalSpec
    batch_size : int
        Images per forward and backward pass.
    dtype : numpy dtype
        Of the weights and activations.

    Returns
    -------
    convnet.nn.limits.MemoryNeed

    Raises
    ------
    BadSpecError
        Naming the first layer at which the weights and activations
        (estimated as :mod:`convnet.nn.limits` says) exceed
        ``convnet.nn.limits.memory_budget()``, the bytes needed and the budget.
    """
    spec = normalise_spec(spec)
    check_count("batch_size", batch_size)
    return _check_memory(spec["layers"], spec.shapes, int(batch_size), np.dtype(dtype).itemsize)


def spec_weights(spec):
    """Return the names and shapes of a spec's weights without building the model.

    Parameters
    ----------
    spec : list of dict, dict or CanonicalSpec
        A spec (checked by :func:`normalise_spec` unless canonical).

    Returns
    -------
    shapes : dict of str to tuple
        Every weight's name and shape, in Keras ``get_weights`` order (as
        ``Sequential.get_weights``): ``conv1/kernel`` (kh, kw, c_in, filters),
        ``conv1/bias`` (filters,), ``bn1/gamma``, ``bn1/beta``,
        ``bn1/moving_mean``, ``bn1/moving_variance`` (c,), ``dense1/kernel``
        (units_in, units), ``dense1/bias`` (units,).
    trainable : list of str
        The names of the trainable weights, in ``Sequential.parameters`` order.
    """
    spec = normalise_spec(spec)
    shapes, trainable = {}, []
    for entry, input_shape in zip(spec["layers"][1:], spec.shapes[:-1]):
        learned, fixed = _entry_weights(entry, input_shape)
        for suffix, shape in list(learned.items()) + list(fixed.items()):
            shapes[f"{entry['name']}/{suffix}"] = shape
        trainable += [f"{entry['name']}/{suffix}" for suffix in learned]
    return shapes, trainable


# ---------------------------------------------------------------- the summary
def _stride_text(stride):
    """Return a stride as '2', or '2x1' when the two axes differ."""
    return str(stride[0]) if stride[0] == stride[1] else f"{stride[0]}x{stride[1]}"


def _entry_row(entry, input_shape, output_shape):
    """Return the :class:`SummaryRow` of one entry after Input."""
    kind = entry["layer"]
    learned, fixed = _entry_weights(entry, input_shape)
    params = sum(map(limits.elements, (*learned.values(), *fixed.values())))
    activation = entry.get("activation") or "linear"
    formula, description = "", ""
    if kind == "Conv2D":
        (kh, kw), filters = entry["kernel"], entry["filters"]
        formula = f"({kh}*{kw}*{input_shape[2]}+1)*{filters}"
        description = (f"{filters} kernels {kh}x{kw}, stride {_stride_text(entry['stride'])}, "
                       f"{entry['padding']}, {activation}")
    elif kind == "Dense":
        formula = f"({input_shape[0]}+1)*{entry['units']}"
        units = entry["units"]
        description = f"{units} unit{'s' if units > 1 else ''}, {activation}"
    elif kind == "BatchNormalization":
        formula = f"4*{input_shape[-1]}"
        description = (f"momentum {entry['momentum']:g}, epsilon {entry['epsilon']:g}; "
                       "moving mean and variance not trained")
    elif kind in ("MaxPool2D", "AveragePool2D"):
        (ph, pw), mode = entry["pool"], "max" if kind == "MaxPool2D" else "avg"
        description = f"{mode} {ph}x{pw}, stride {_stride_text(entry['stride'])}"
        description += ", same" if entry["padding"] == "same" else ""
    elif kind == "ZeroPadding2D":
        (top, bottom), (left, right) = entry["padding"]
        description = f"zeros: {top}+{bottom} rows, {left}+{right} columns"
    elif kind == "Dropout":
        description = f"rate {entry['rate']:g} (training only)"
    else:
        description = {"ReLU": "max(x, 0)", "Flatten": "C order"}[kind]
    return SummaryRow(entry["name"], KERAS_CLASSES[kind], tuple(output_shape), params,
                      formula, description)


def spec_summary(spec, name=None):
    """Return the :class:`Summary` of a spec, computed without building the model.

    Parameters
    ----------
    spec : list of dict, dict or CanonicalSpec
    name : str, optional
        Display name (default: the spec's).

    Returns
    -------
    Summary
        One row per entry after Input; counts as Keras's: a convolution
        ``kh * kw * c_in * filters + filters``, a dense layer
        ``units_in * units + units``, batch normalisation ``4 c`` of which
        ``2 c`` (the moving statistics) not trainable.
    """
    spec = normalise_spec(spec)
    rows = [_entry_row(entry, shape_in, shape_out) for entry, shape_in, shape_out
            in zip(spec["layers"][1:], spec.shapes[:-1], spec.shapes[1:])]
    weights, trainable_names = spec_weights(spec)
    sizes = {key: limits.elements(shape) for key, shape in weights.items()}
    trainable = sum(sizes[key] for key in trainable_names)
    total = sum(sizes.values())
    return Summary(name or spec["name"], rows, total, trainable, total - trainable,
                   tuple(spec.shapes[0]))
