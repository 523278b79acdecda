"""A chain of layers built from a declarative spec: any small CNN in NumPy.

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
``conv2``); weights are named after their layer (``conv1/kernel``,
``conv1/bias``, ``bn1/gamma``, ``bn1/moving_mean``, ...). Activations are
``relu``, ``tanh``, ``sigmoid`` and ``softmax``. The last entry is a Dense
layer with ``softmax`` (k >= 2 classes, categorical cross-entropy) or one
unit with ``sigmoid`` (binary cross-entropy); the activation is fused with
the loss, so ``forward`` returns logits.
"""
import json
import numbers
from typing import NamedTuple

import numpy as np

from convnet.checks import check_count
from convnet.nn import layers as L
from convnet.nn.memory import aligned_zeros

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


# ---------------------------------------------------------------- the spec
class _Entry:
    """Error messages for one layer entry: ``layer 3 ('conv2', Conv2D): ...``."""

    def __init__(self, index, entry):
        """Remember the entry's position and content for the messages."""
        self.index = index
        self.entry = entry

    def error(self, message):
        """Return a ValueError saying ``message`` about this entry."""
        kind = self.entry.get("layer")
        name = self.entry.get("name")
        label = ", ".join(repr(part) if part is name else str(part)
                          for part in (name, kind) if part is not None)
        where = f"layer {self.index}" + (f" ({label})" if label else "")
        return ValueError(f"{where}: {message}")

    def count(self, field, value, minimum=1):
        """Return ``value`` as an int at least ``minimum``, or raise naming ``field``."""
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            what = "a positive" if minimum == 1 else "a non-negative"
            raise self.error(f"{field} must be {what} integer, received {value!r}")
        return int(value)

    def pair(self, field, value, minimum=1):
        """Return an int or two as a list of two ints at least ``minimum``, or raise."""
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise self.error(f"{field} must be an integer or two, received {value!r}")
            return [self.count(field, item, minimum) for item in value]
        value = self.count(field, value, minimum)
        return [value, value]

    def choice(self, field, value, choices):
        """Return ``value`` if it is one of ``choices``, or raise naming ``field``."""
        if value not in choices:
            raise self.error(f"{field} must be one of {', '.join(map(repr, choices))}, "
                             f"received {value!r}")
        return value

    def number(self, field, value, low, high, high_open):
        """Return ``value`` as a float in [low, high] (or [low, high)), or raise."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
                low <= value and (value < high if high_open else value <= high)):
            bracket = ")" if high_open else "]"
            raise self.error(f"{field} must be a number in [{low}, {high}{bracket}, "
                             f"received {value!r}")
        return float(value)


def _normalise_field(check, kind, field, value):
    """Return one field's value checked and in canonical form (pairs as lists)."""
    if field == "shape":
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            raise check.error(f"shape must be three positive integers (h, w, c), "
                              f"received {value!r}")
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
        raise check.error(f"epsilon must be a positive number, received {value!r}")
    return float(value)


def normalise_spec(spec):
    """Check a spec and return it in canonical form.

    Parameters
    ----------
    spec : list of dict, or dict
        The layer entries, or ``{"layers": [...], "name": ..., "loss": ...,
        "optimizer": ...}``.

    Returns
    -------
    dict
        ``{"name": str, "layers": [...], "loss": str, "optimizer": str or None}``
        with every field of every layer present (defaults filled in, pairs as
        lists of two ints, names given), the loss derived from the last layer.

    Raises
    ------
    ValueError
        Naming the layer (index, name and kind) and the bad field.
    """
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        if unknown:
            raise ValueError(f"spec has unknown keys {unknown}; expected some of {list(SPEC_KEYS)}")
        if "layers" not in spec:
            raise ValueError("spec must hold its list of layers under 'layers'")
        header = spec
        entries = spec["layers"]
    else:
        header, entries = {}, spec
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ValueError(f"a spec's layers must be a non-empty list of dicts, received {entries!r}")
    layers, used_names, counts = [], set(), {}
    for index, entry in enumerate(entries):
        check = _Entry(index, entry if isinstance(entry, dict) else {})
        if not isinstance(entry, dict):
            raise check.error(f"must be a dict with a 'layer' key, received {entry!r}")
        kind = entry.get("layer")
        if kind not in FIELDS:
            raise check.error(f"layer must be one of {', '.join(FIELDS)}, received {kind!r}")
        if (kind == "Input") != (index == 0):
            raise check.error("the first layer, and only the first, must be Input")
        fields = FIELDS[kind]
        unknown = sorted(set(entry) - set(fields) - {"layer", "name"})
        if unknown:
            raise check.error(f"unknown field {unknown[0]!r}; {kind} takes "
                              f"{', '.join(['name'] + list(fields)) or 'no fields'}")
        canonical = {"layer": kind}
        name = entry.get("name")
        if kind != "Input":
            if name is None:
                prefix = NAME_PREFIXES[kind]
                while name is None or name in used_names:
                    counts[prefix] = counts.get(prefix, 0) + 1
                    name = f"{prefix}{counts[prefix]}"
            if not isinstance(name, str) or not name or "/" in name:
                raise check.error(f"name must be a non-empty string without '/', "
                                  f"received {name!r}")
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
        raise ValueError("a spec needs at least one layer after Input")
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
        raise ValueError(f"spec's loss must be {loss!r} for a {layers[-1]['activation']} "
                         f"output, received {header['loss']!r}")
    name = header.get("name", "sequential")
    optimizer = header.get("optimizer")
    for key, value in (("name", name), ("optimizer", optimizer)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"spec's {key} must be a string, received {value!r}")
    return {"name": name, "layers": layers, "loss": loss, "optimizer": optimizer}


def _infer_shapes(layers):
    """Check that each layer fits its input; return the output shape of each entry."""
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
            hw = tuple(L.keras_output_size(size, k, s, layer["padding"])
                       for size, k, s in zip(shape[:2], window, layer["stride"]))
            shape = hw + ((layer["filters"],) if kind == "Conv2D" else (shape[2],))
        elif kind == "Flatten":
            shape = (int(np.prod(shape)),)
        elif kind == "Dense":
            shape = (layer["units"],)
        shapes.append(shape)
    return shapes


def spec_weights(spec):
    """Return the names and shapes of a spec's weights without building the model.

    Parameters
    ----------
    spec : list of dict or dict
        A spec (checked by :func:`normalise_spec`).

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
    layers = spec["layers"]
    shapes, trainable = {}, []
    for entry, input_shape in zip(layers[1:], _infer_shapes(layers)[:-1]):
        name, kind = entry["name"], entry["layer"]
        if kind == "Conv2D":
            learned = {"kernel": tuple(entry["kernel"]) + (input_shape[2], entry["filters"]),
                       "bias": (entry["filters"],)}
            fixed = {}
        elif kind == "Dense":
            learned = {"kernel": (input_shape[0], entry["units"]), "bias": (entry["units"],)}
            fixed = {}
        elif kind == "BatchNormalization":
            channels = (input_shape[-1],)
            learned = {"gamma": channels, "beta": channels}
            fixed = {"moving_mean": channels, "moving_variance": channels}
        else:
            continue
        for suffix, shape in list(learned.items()) + list(fixed.items()):
            shapes[f"{name}/{suffix}"] = shape
        trainable += [f"{name}/{suffix}" for suffix in learned]
    return shapes, trainable


# ---------------------------------------------------------------- summaries
class SummaryRow(NamedTuple):
    """One layer of a summary: its name, Keras class, output shape and parameter count."""
    name: str
    kind: str
    output_shape: tuple
    params: int


class Summary(NamedTuple):
    """A model's layers and parameter totals, as Keras's ``summary()`` reports them."""
    name: str
    rows: list
    total: int
    trainable: int
    non_trainable: int


def summary_text(summary):
    """Return ``summary`` as a Keras-style text table.

    One row per layer (name and Keras class, output shape with ``None`` as
    the batch axis, parameter count), then the trainable and non-trainable
    counts, and last the line ``Total params: 220,234`` (thousands separated).
    """
    names = [f"{row.name} ({row.kind})" for row in summary.rows]
    widths = (max([32] + [len(name) + 2 for name in names]), 24, 12)
    rule_width = sum(widths)
    lines = [f'Model: "{summary.name}"', "_" * rule_width,
             "Layer (type)".ljust(widths[0]) + "Output Shape".ljust(widths[1])
             + "Param #".rjust(widths[2]), "=" * rule_width]
    for name, row in zip(names, summary.rows):
        shape = "(None, " + ", ".join(str(size) for size in row.output_shape) + ")"
        lines.append(name.ljust(widths[0]) + shape.ljust(widths[1])
                     + f"{row.params:,}".rjust(widths[2]))
    lines += ["=" * rule_width,
              f"Trainable params: {summary.trainable:,}",
              f"Non-trainable params: {summary.non_trainable:,}",
              f"Total params: {summary.total:,}"]
    return "\n".join(lines)


# ---------------------------------------------------------------- the model
class Sequential:
    """A NumPy network built from a spec (see the module's docstring).

    Parameters
    ----------
    spec : list of dict or dict
        The layers, checked by :func:`normalise_spec`.
    seed : int
        Seeds the generator that draws the He-normal kernels (in layer
        order, so the ``lenet5`` spec draws exactly ``LeNet5``'s weights)
        and, through a spawned generator, the dropout masks.
    dtype : numpy dtype
        Dtype of weights and activations: float32 for training, float64 for
        gradient checks.
    micro_batch : int, optional
        As ``LeNet5``'s: ``loss_and_grads`` runs larger batches this many
        images at a time and adds up their gradients. Not allowed with
        BatchNormalization, whose batch statistics need the whole batch.

    Attributes
    ----------
    spec : dict
        The canonical spec (see :func:`normalise_spec`).
    input_shape : tuple of int
        (h, w, c) of one image.
    layers : list
        The computing layers in spec order; a Conv2D or Dense entry with a
        hidden activation becomes two (the activation named ``conv1/relu``).
    loss_layer : SoftmaxCrossEntropy or SigmoidBinaryCrossEntropy
    """

    def __init__(self, spec, seed=0, dtype=np.float32, micro_batch=None):
        self.spec = normalise_spec(spec)
        self.dtype = np.dtype(dtype)
        entries = self.spec["layers"]
        self._shapes = _infer_shapes(entries)
        self.input_shape = self._shapes[0]
        if micro_batch is not None:
            check_count("micro_batch", micro_batch)
            if any(entry["layer"] == "BatchNormalization" for entry in entries):
                raise ValueError("micro_batch cannot be used with BatchNormalization: its "
                                 "batch statistics need the whole batch")
        self.micro_batch = micro_batch
        self.seed = seed
        rng = np.random.default_rng(seed)
        self._dropout_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        self._blocks = []   # (entry, computing layers) for every entry after Input
        for entry, shape in zip(entries[1:], self._shapes[:-1]):
            self._blocks.append((entry, self._build(entry, shape, rng)))
        self.layers = [layer for _, block in self._blocks for layer in block]
        last = entries[-1]["activation"]
        self.loss_layer = (L.SoftmaxCrossEntropy() if last == "softmax"
                           else L.SigmoidBinaryCrossEntropy())
        self.num_classes = entries[-1]["units"] if last == "softmax" else 2
        self._pass = _pool_before_relu(self.layers)
        # Layers before the first one with parameters need no backward pass.
        self._backward_stop = next(index for index, layer in enumerate(self._pass)
                                   if layer.params)
        self._backward_pass = self._pass[self._backward_stop:][::-1]
        first = self._pass[self._backward_stop]
        if isinstance(first, (L.Conv2D, L.Dense)):
            first.input_grad = False
        self._join_parameters()
        self._grad_sums = [np.zeros_like(param) for param in self.parameters()]

    def _build(self, entry, input_shape, rng):
        """Return the computing layers of one spec entry for inputs of ``input_shape``."""
        kind, name, dtype = entry["layer"], entry["name"], self.dtype
        if kind == "ZeroPadding2D":
            return [L.ZeroPadding2D(name, entry["padding"])]
        if kind == "Conv2D":
            layer = L.Conv2D(name, tuple(entry["kernel"]), input_shape[2], entry["filters"],
                             entry["padding"], rng, dtype, stride=tuple(entry["stride"]))
        elif kind in ("MaxPool2D", "AveragePool2D"):
            pool = L.MaxPool2D if kind == "MaxPool2D" else L.AveragePool2D
            return [pool(name, tuple(entry["pool"]), tuple(entry["stride"]), entry["padding"])]
        elif kind == "BatchNormalization":
            return [L.BatchNormalization(name, input_shape[-1], dtype, entry["momentum"],
                                         entry["epsilon"])]
        elif kind == "ReLU":
            return [L.ReLU(name)]
        elif kind == "Flatten":
            return [L.Flatten(name)]
        elif kind == "Dropout":
            return [L.Dropout(name, entry["rate"], self._dropout_rng)]
        else:
            layer = L.Dense(name, input_shape[0], entry["units"], rng, dtype)
        activation = entry["activation"]
        # The output's softmax or sigmoid is fused with the loss.
        if activation is None or entry is self.spec["layers"][-1]:
            return [layer]
        if activation == "relu":
            return [layer, L.ReLU(f"{name}/relu")]
        return [layer, L.Activation(f"{name}/{activation}", activation)]

    @property
    def has_dropout(self):
        """True if a layer draws random masks in training."""
        return any(isinstance(layer, L.Dropout) and layer.rate > 0 for layer in self.layers)

    @property
    def has_batch_normalization(self):
        """True if a layer keeps batch statistics (training then needs whole batches)."""
        return any(isinstance(layer, L.BatchNormalization) for layer in self.layers)

    def _join_parameters(self):
        """Make every trainable parameter a view of one flat, aligned buffer.

        Whole-model checks (all weights finite) and exchanges (one message
        for every gradient) then handle one array instead of one per layer.
        """
        params = self.parameters()
        flat = aligned_zeros(sum(param.size for param in params), self.dtype)
        offset = 0
        for (layer, key), param in zip(self._param_slots(), params):
            view = flat[offset:offset + param.size].reshape(param.shape)
            view[...] = param
            layer.params[key] = view
            offset += param.size
        self._flat = flat

    # ------------------------------------------------------------ parameters
    def _param_slots(self):
        """(layer, key) of every trainable parameter, in Keras ``get_weights`` order."""
        return [(layer, key) for layer in self.layers for key in layer.params]

    def _weight_slots(self):
        """(name, dict, key) of every weight, trainable or not, in Keras order."""
        slots = []
        for layer in self.layers:
            for store in (layer.params, getattr(layer, "state", {})):
                slots += [(f"{layer.name}/{WEIGHT_SUFFIXES[key]}", store, key) for key in store]
        return slots

    def parameter_names(self):
        """Return the names of the trainable parameters (``conv1/kernel``, ...), in order."""
        return [f"{layer.name}/{WEIGHT_SUFFIXES[key]}" for layer, key in self._param_slots()]

    def parameters(self):
        """Return the trainable parameter arrays themselves (not copies), in Keras order."""
        return [layer.params[key] for layer, key in self._param_slots()]

    @property
    def dropout_generator(self):
        """The generator the Dropout layers draw their masks from; None without Dropout.

        Assigning a ``numpy.random.Generator`` makes every Dropout layer draw
        from it from then on: a caller that needs masks independent of which
        process computes a batch (``convnet.parallel.distributed``) gives each batch a
        generator of its own.
        """
        dropouts = [layer for layer in self.layers if isinstance(layer, L.Dropout)]
        return dropouts[0].rng if dropouts else None

    @dropout_generator.setter
    def dropout_generator(self, rng):
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"dropout_generator must be a numpy.random.Generator, "
                            f"received {type(rng).__name__}")
        self._dropout_rng = rng
        for layer in self.layers:
            if isinstance(layer, L.Dropout):
                layer.rng = rng

    def flat_parameters(self):
        """Return the one flat buffer every trainable parameter is a view of."""
        return self._flat

    def gradients(self):
        """Return the gradients of the last ``loss_and_grads``, in ``parameters`` order."""
        return [layer.grads[key] for layer, key in self._param_slots()]

    def get_weights(self):
        """Return copies of every weight by name, in Keras ``get_weights()`` order.

        Returns
        -------
        dict of str to ndarray
            ``conv1/kernel`` (kh, kw, c_in, filters), ``conv1/bias`` (filters,),
            ``bn1/gamma``, ``bn1/beta``, ``bn1/moving_mean``,
            ``bn1/moving_variance`` (c,), ``dense1/kernel`` (units_in, units),
            ``dense1/bias`` (units,), ...; ``list(weights.values())`` is the
            list Keras's ``get_weights()`` gives for the twin.
        """
        return {name: store[key].copy() for name, store, key in self._weight_slots()}

    def set_weights(self, weights):
        """Copy ``weights`` into the model.

        Parameters
        ----------
        weights : dict of str to ndarray, or list of ndarray
            By name, every name of ``get_weights`` exactly once; or a list in
            ``get_weights`` order.

        Raises
        ------
        ValueError
            For a missing, unknown or extra weight, or one of the wrong shape.
        """
        slots = self._weight_slots()
        names = [name for name, _, _ in slots]
        if isinstance(weights, dict):
            missing = [name for name in names if name not in weights]
            unknown = [name for name in weights if name not in names]
            if missing or unknown:
                raise ValueError(f"weights must hold exactly {names}; missing {missing}, "
                                 f"unknown {unknown}")
            values = [weights[name] for name in names]
        else:
            values = list(weights)
            if len(values) != len(slots):
                raise ValueError(f"weights must be a list of {len(slots)} arrays, "
                                 f"received {len(values)}")
        for (name, store, key), value in zip(slots, values):
            value = np.asarray(value)
            if value.shape != store[key].shape:
                raise ValueError(f"weight {name} must have shape {store[key].shape}, "
                                 f"received {value.shape}")
            store[key][...] = value

    def summary(self):
        """Return the model's :class:`Summary`: one row per layer after Input, and the totals.

        Counts as Keras's: a convolution ``kh * kw * c_in * filters + filters``,
        a dense layer ``units_in * units + units``, batch normalisation
        ``4 c`` of which ``2 c`` (the moving statistics) not trainable.
        """
        rows, trainable, non_trainable = [], 0, 0
        for (entry, block), shape in zip(self._blocks, self._shapes[1:]):
            learned = sum(param.size for layer in block for param in layer.params.values())
            fixed = sum(value.size for layer in block
                        for value in getattr(layer, "state", {}).values())
            rows.append(SummaryRow(entry["name"], KERAS_CLASSES[entry["layer"]], shape,
                                   learned + fixed))
            trainable += learned
            non_trainable += fixed
        return Summary(self.spec["name"], rows, trainable + non_trainable, trainable,
                       non_trainable)

    def to_json(self):
        """Return the canonical spec as JSON text; ``Sequential.from_json`` rebuilds the model."""
        return json.dumps(self.spec, indent=1)

    @classmethod
    def from_json(cls, text, **kwargs):
        """Return a model (fresh weights) built from the JSON text of a spec."""
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"spec is not valid JSON: {error}") from None
        return cls(spec, **kwargs)

    # ------------------------------------------------------------ computation
    def _images(self, X):
        """Check images and return them as (m, h, w, c) in the model's dtype."""
        X = np.asarray(X)
        h, w, c = self.input_shape
        if X.ndim == 3 and c == 1:
            X = X[..., np.newaxis]
        if X.ndim != 4 or X.shape[1:] != self.input_shape:
            gray = f"(m, {h}, {w}) or " if c == 1 else ""
            raise ValueError(f"X must have shape {gray}(m, {h}, {w}, {c}), received {X.shape}")
        return X.astype(self.dtype, copy=False)

    def _labels(self, Y, count):
        """Check integer labels for ``count`` images; return them as int64 (count,)."""
        Y = np.asarray(Y)
        if Y.shape != (count,):
            raise ValueError(f"Y must have shape ({count},) (one integer label per image), "
                             f"received {Y.shape}")
        if Y.dtype.kind not in "iu":
            raise TypeError(f"Y must hold integer labels, received dtype {Y.dtype}")
        if count and (Y.min() < 0 or Y.max() >= self.num_classes):
            raise ValueError(f"Y must hold labels 0-{self.num_classes - 1}, "
                             f"received values from {Y.min()} to {Y.max()}")
        return Y.astype(np.int64, copy=False)

    def forward(self, X, training=False):
        """Return the logits (before the output's softmax or sigmoid) for images ``X``.

        Parameters
        ----------
        X : ndarray of shape (m, h, w, c) (or (m, h, w) when c is 1)
            Images of the spec's input shape.
        training : bool
            Batch statistics (and moving-statistics updates) in
            BatchNormalization, random masks in Dropout.

        Returns
        -------
        ndarray of shape (m, k)
            Logits: k classes for a softmax output, 1 for a sigmoid output.
        """
        out = self._images(X)
        for layer in self._pass:
            out = layer.forward(out, training)
        return out

    def loss_and_grads(self, X, Y, training=True):
        """Forward and backward pass on one batch.

        Parameters
        ----------
        X : ndarray of shape (m, h, w, c)
            Images.
        Y : ndarray of shape (m,)
            Integer labels, 0 to k - 1 (0 or 1 for a sigmoid output).
        training : bool
            The mode of the forward pass (see ``forward``).

        Returns
        -------
        loss : float
            Mean cross-entropy of the batch.
        grads : list of ndarray
            Gradient of the loss for every trainable parameter, in
            ``parameters`` order (the arrays belong to the model: use them
            before the next call).
        """
        X = self._images(X)
        labels = self._labels(Y, len(X))
        count = len(X)
        if self.micro_batch is None or count <= self.micro_batch:
            return self._backpropagate(X, labels, training), self.gradients()
        total_loss = 0.0
        for sums in self._grad_sums:
            sums[...] = 0
        for start in range(0, count, self.micro_batch):
            stop = min(start + self.micro_batch, count)
            weight = (stop - start) / count
            total_loss += weight * self._backpropagate(X[start:stop], labels[start:stop],
                                                       training)
            for sums, grad in zip(self._grad_sums, self.gradients()):
                grad *= weight
                sums += grad
        return total_loss, self._grad_sums

    def _backpropagate(self, X, labels, training):
        """Forward and backward pass of checked images and labels; return the mean loss."""
        out = X
        for layer in self._pass:
            out = layer.forward(out, training)
        loss = self.loss_layer.forward(out, labels)
        dout = self.loss_layer.backward()
        for layer in self._backward_pass:
            dout = layer.backward(dout)
        return loss

    def predict_proba(self, X, batch_size=500):
        """Return probabilities, ``batch_size`` images at a time (inference mode).

        Parameters
        ----------
        X : ndarray of shape (m, h, w, c)
            Images.
        batch_size : int
            Images per forward pass: bounds the memory of the intermediate maps.

        Returns
        -------
        ndarray of shape (m, k), or (m, 1) for a sigmoid output
            Class probabilities (rows sum to 1), or the probability of class 1.
        """
        check_count("batch_size", batch_size)
        X = self._images(X)
        chunks = [self.loss_layer.probabilities(self.forward(X[start:start + batch_size]))
                  for start in range(0, len(X), batch_size)]
        if not chunks:
            return np.zeros((0, self.spec["layers"][-1]["units"]), dtype=self.dtype)
        return np.concatenate(chunks)

    def evaluate(self, X, Y, batch_size=500):
        """Return ``(mean loss, accuracy)`` on ``X`` (m, h, w, c), ``Y`` (m,) (inference mode)."""
        total_loss, correct = self.evaluation_sums(X, Y, batch_size)
        if len(X) == 0:
            raise ValueError("cannot evaluate on an empty set of images")
        return total_loss / len(X), correct / len(X)

    def evaluation_sums(self, X, Y, batch_size=500):
        """Return ``(summed loss, number correct)`` on ``X``, ``Y`` (both 0 if empty).

        A sigmoid output predicts class 1 where its probability exceeds 0.5,
        as Keras's binary accuracy does.
        """
        check_count("batch_size", batch_size)
        X = self._images(X)
        labels = self._labels(Y, len(X))
        total_loss, correct = 0.0, 0
        for start in range(0, len(X), batch_size):
            logits = self.forward(X[start:start + batch_size])
            chunk_labels = labels[start:start + batch_size]
            total_loss += float(self.loss_layer.losses(logits, chunk_labels)
                                .sum(dtype=np.float64))
            if logits.shape[1] == 1:
                predicted = (logits[:, 0] > 0).astype(np.int64)
            else:
                predicted = logits.argmax(axis=1)
            correct += int((predicted == chunk_labels).sum())
        return total_loss, correct

    def feature_maps(self, X):
        """Return every computing layer's output for images ``X`` (inference mode), in order.

        Returns
        -------
        list of (str, ndarray)
            ``("input", X as (m, h, w, c))``, then ``(layer.name, output)`` for
            each computing layer in spec order, finally the probabilities
            under the output activation's name (``"softmax"`` or ``"sigmoid"``).
        """
        out = self._images(X)
        maps = [("input", out)]
        for layer in self.layers:
            out = layer.forward(out)
            maps.append((layer.name, out))
        maps.append((self.loss_layer.name, self.loss_layer.probabilities(out)))
        return maps


def _pool_before_relu(layers):
    """The order the passes run the layers in: each ReLU after a max pooling that follows it.

    As in ``LeNet5``: max pooling and ReLU commute exactly (values and
    gradients, with the first maximum taking a window's gradient, and
    'same' pooling's -inf padding never winning), and ReLU then touches a
    fraction of the numbers.
    """
    order = list(layers)
    for index in range(len(order) - 1):
        if isinstance(order[index], L.ReLU) and isinstance(order[index + 1], L.MaxPool2D):
            order[index], order[index + 1] = order[index + 1], order[index]
    return order
