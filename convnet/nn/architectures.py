"""Network architectures as data: layer stacks, output shapes, parameter counts.

A network is described declaratively, as an input shape and a list of layer
specifications (convolution, pooling, local response normalisation, flatten,
dense, dropout). Everything else is computed from that description by code:
each layer's output shape (through ``convnet.nn.ops.output_size``, the one place
the project does padding and output-size arithmetic), its parameter count and
the formula behind it, Keras-like summary tables and the Markdown tables of
``docs/alexnet.md``.

Three networks are described: LeNet-5 as this project builds it (task 4/5),
the fully connected 784-512-512-10 network it is compared with, both read
from their zoo specs (``convnet.nn.zoo``: ``lenet5`` and ``mlp``), and AlexNet
(Krizhevsky, Sutskever & Hinton, 2012), written out here. Shapes are NHWC without the batch
dimension: ``(h, w, c)`` for images, ``(n,)`` after flattening.
"""
from dataclasses import dataclass, field

from convnet.nn.ops import output_size, padding_amounts

KINDS = ("conv", "pool", "lrn", "flatten", "dense", "dropout")

# Keras class names, so the summary reads like ``model.summary()``.
_KERAS_NAMES = {"conv": "Conv2D", "pool": "MaxPooling2D", "lrn": "LocalResponseNorm",
                "flatten": "Flatten", "dense": "Dense", "dropout": "Dropout"}


@dataclass(frozen=True)
class Layer:
    """One layer of a stack, described by its hyper-parameters only.

    Attributes
    ----------
    name : str
        Layer name, unique within its network.
    kind : str
        One of ``KINDS``.
    units : int
        Number of kernels (conv) or of neurons (dense); 0 otherwise.
    kernel : tuple of int
        ``(kh, kw)`` window of a conv or pool layer.
    stride : tuple of int
        ``(sh, sw)`` of a conv or pool layer.
    padding : str or int
        ``'valid'``, ``'same'`` or zeros added on every side (conv only;
        pooling never pads).
    groups : int
        Conv only: the input channels and the kernels are split into this
        many groups, and each kernel sees only its own group's channels
        (AlexNet's two-GPU layout). Divides both channel counts.
    activation : str or None
        Activation applied after the layer (for display only).
    mode : str
        Pooling mode, ``'max'`` or ``'avg'``.
    rate : float
        Dropout rate.
    options : tuple of (str, object)
        Any other hyper-parameter, for display (e.g. the LRN constants).
    """

    name: str
    kind: str
    units: int = 0
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: object = "valid"
    groups: int = 1
    activation: object = None
    mode: str = "max"
    rate: float = 0.0
    options: tuple = ()


def conv(name, filters, kernel, stride=1, padding="valid", groups=1, activation="relu"):
    """Return a convolution layer spec; ``kernel`` and ``stride`` may be single ints."""
    return Layer(name, "conv", units=filters, kernel=_pair(kernel), stride=_pair(stride),
                 padding=padding, groups=groups, activation=activation)


def pool(name, size, stride, mode="max"):
    """Return a pooling layer spec (no padding, as in ``convnet.nn.ops.pool_forward``)."""
    return Layer(name, "pool", kernel=_pair(size), stride=_pair(stride), mode=mode)


def lrn(name, n=5, k=2, alpha=1e-4, beta=0.75):
    """Return a local response normalisation spec (no parameters, shape unchanged).

    Each activation is divided by ``(k + alpha * sum of squares) ** beta``,
    the sum running over ``n`` neighbouring channels at the same position.
    """
    return Layer(name, "lrn", options=(("n", n), ("k", k), ("alpha", alpha), ("beta", beta)))


def flatten(name="flatten"):
    """Return a flatten layer spec: ``(h, w, c)`` to ``(h * w * c,)`` in C order."""
    return Layer(name, "flatten")


def dense(name, units, activation="relu"):
    """Return a fully connected layer spec."""
    return Layer(name, "dense", units=units, activation=activation)


def dropout(name, rate):
    """Return a dropout layer spec (no parameters, shape unchanged)."""
    return Layer(name, "dropout", rate=rate)


def _pair(value):
    """Return ``value`` as a tuple of two, repeating a single int."""
    return (value, value) if isinstance(value, int) else tuple(value)


@dataclass(frozen=True)
class Architecture:
    """A network: a name, an input shape and a stack of layers.

    Attributes
    ----------
    name : str
        Display name.
    input_shape : tuple of int
        ``(h, w, c)`` of one example, without the batch dimension.
    layers : tuple of Layer
        The stack, in order.
    devices : int
        How many devices the layers are split across (2 for AlexNet, whose
        kernels and neurons are shared half and half between two GPUs).
        It changes no shape and no parameter count; the diagram uses it.
    """

    name: str
    input_shape: tuple
    layers: tuple = field(default_factory=tuple)
    devices: int = 1


@dataclass(frozen=True)
class LayerReport:
    """What code computes for one layer of an :class:`Architecture`.

    Attributes
    ----------
    layer : Layer
        The spec.
    input_shape, output_shape : tuple of int
        Shapes without the batch dimension.
    params : int
        Trainable parameters (weights and biases).
    formula : str
        How ``params`` is obtained, e.g. ``(5*5*1+1)*6``; empty if 0.
    """

    layer: Layer
    input_shape: tuple
    output_shape: tuple
    params: int
    formula: str


# ---------------------------------------------------------------- the three networks
def from_spec(spec, name=None):
    """Return the Architecture of a model spec (``convnet.nn.zoo``, ``convnet.nn.sequential``).

    Parameters
    ----------
    spec : list, dict or str
        A spec, or a zoo name or spec.json path (``convnet.nn.zoo.load_spec``).
        Its layers must have a counterpart here: Conv2D, 'valid' MaxPool2D
        and AveragePool2D, Flatten, Dense and Dropout.
    name : str, optional
        Display name (default: the spec's).

    Raises
    ------
    ValueError
        For a layer with no counterpart (padding, batch normalisation, a
        separate ReLU, 'same' pooling).
    """
    from convnet.nn.sequential import normalise_spec
    from convnet.nn.zoo import load_spec
    spec = normalise_spec(load_spec(spec) if isinstance(spec, str) else spec)
    layers = []
    for entry in spec["layers"][1:]:
        kind, label = entry["layer"], entry["name"]
        if kind == "Conv2D":
            layers.append(conv(label, entry["filters"], entry["kernel"], entry["stride"],
                               entry["padding"], activation=entry["activation"]))
        elif kind in ("MaxPool2D", "AveragePool2D") and entry["padding"] == "valid":
            layers.append(pool(label, entry["pool"], entry["stride"],
                               "max" if kind == "MaxPool2D" else "avg"))
        elif kind == "Flatten":
            layers.append(flatten(label))
        elif kind == "Dense":
            layers.append(dense(label, entry["units"], entry["activation"]))
        elif kind == "Dropout":
            layers.append(dropout(label, entry["rate"]))
        else:
            raise ValueError(f"layer {label!r} ({kind}) has no counterpart in these tables")
    return Architecture(name or spec["name"], tuple(spec["layers"][0]["shape"]), tuple(layers))


# LeNet-5 and the MLP are the zoo's models; only the display names are set here.
LENET5 = from_spec("lenet5", "LeNet-5")
MLP = from_spec("mlp", "MLP 784-512-512-10")


def alexnet(input_size=227, conv1_padding="valid", grouped=True):
    """Return AlexNet (Krizhevsky, Sutskever & Hinton, 2012) as an Architecture.

    The paper states a 224x224x3 input and 11x11 kernels at stride 4, yet its
    first feature maps are 55x55: with no padding, floor((224 - 11) / 4) + 1
    is 54. The usual reading, taken here by default, is a 227x227 input,
    for which (227 - 11) / 4 + 1 = 55 exactly; 224 with 2 zeros on each side
    also gives 55. Everything after conv1 follows from its 55x55 output.

    Parameters
    ----------
    input_size : int
        Height and width of the input image (227 by default, 224 to take the
        paper's text literally).
    conv1_padding : str or int
        Padding of conv1 (``'valid'`` by default; ``2`` with ``input_size=224``
        is the other reading that gives 55x55).
    grouped : bool
        Model the two-GPU split: conv2, conv4 and conv5 have two groups, so
        their kernels are 5x5x48, 3x3x192 and 3x3x192 as in the paper. With
        ``False`` every kernel sees every input channel (a one-device
        AlexNet), which adds about 1.4 million parameters.
    """
    groups = 2 if grouped else 1
    return Architecture("AlexNet", (input_size, input_size, 3), (
        # conv1: each GPU holds 48 of the 96 kernels, but both read the whole image.
        conv("conv1", 96, 11, stride=4, padding=conv1_padding),
        lrn("norm1"),
        pool("pool1", 3, 2),
        # conv2, conv4, conv5 see only the 48/192/192 channels on their own GPU.
        conv("conv2", 256, 5, padding="same", groups=groups),
        lrn("norm2"),
        pool("pool2", 3, 2),
        # conv3 and the dense layers are where the two GPUs exchange activations.
        conv("conv3", 384, 3, padding="same"),
        conv("conv4", 384, 3, padding="same", groups=groups),
        conv("conv5", 256, 3, padding="same", groups=groups),
        pool("pool5", 3, 2),
        flatten("flatten"),
        dense("fc6", 4096),
        dropout("dropout6", 0.5),
        dense("fc7", 4096),
        dropout("dropout7", 0.5),
        dense("fc8", 1000, activation="softmax"),
    ), devices=2 if grouped else 1)


ALEXNET = alexnet()


# ---------------------------------------------------------------- shapes and counts
def layer_report(layer, input_shape):
    """Compute one layer's output shape and parameter count.

    Parameters
    ----------
    layer : Layer
        The spec.
    input_shape : tuple of int
        ``(h, w, c)`` for conv, pool, lrn and flatten; ``(n,)`` for dense.
        Dropout accepts either.

    Returns
    -------
    LayerReport

    Raises
    ------
    ValueError
        If the layer does not fit its input (a window larger than the map,
        channels not divisible by the groups, a dense layer on a 3-D input).
    """
    kind = layer.kind
    if kind not in KINDS:
        raise ValueError(f"layer {layer.name!r}: kind must be one of {KINDS}, received {kind!r}")
    if kind in ("conv", "pool", "lrn", "flatten") and len(input_shape) != 3:
        raise ValueError(f"layer {layer.name!r} ({kind}) needs an (h, w, c) input, "
                         f"received {input_shape}")
    if kind == "dense" and len(input_shape) != 1:
        raise ValueError(f"layer {layer.name!r} (dense) needs a flat (n,) input, "
                         f"received {input_shape}; add a flatten layer first")
    if kind in ("lrn", "dropout"):
        return LayerReport(layer, input_shape, input_shape, 0, "")
    if kind == "flatten":
        h, w, c = input_shape
        return LayerReport(layer, input_shape, (h * w * c,), 0, "")
    if kind == "dense":
        (n_in,) = input_shape
        params = (n_in + 1) * layer.units
        return LayerReport(layer, input_shape, (layer.units,), params,
                           f"({n_in}+1)*{layer.units}")
    h, w, c = input_shape
    padding = layer.padding if kind == "conv" else "valid"
    spatial = []
    for size, k, s in zip((h, w), layer.kernel, layer.stride):
        out = output_size(size, k, s, padding)
        if out < 1:
            raise ValueError(f"layer {layer.name!r}: window {layer.kernel} does not fit "
                             f"a {h}x{w} input with padding {padding!r}")
        spatial.append(out)
    if kind == "pool":
        return LayerReport(layer, input_shape, (*spatial, c), 0, "")
    if c % layer.groups or layer.units % layer.groups:
        raise ValueError(f"layer {layer.name!r}: groups={layer.groups} must divide the "
                         f"{c} input channels and the {layer.units} kernels")
    kh, kw = layer.kernel
    c_seen = c // layer.groups
    params = (kh * kw * c_seen + 1) * layer.units
    return LayerReport(layer, input_shape, (*spatial, layer.units), params,
                       f"({kh}*{kw}*{c_seen}+1)*{layer.units}")


def analyse(architecture):
    """Return one :class:`LayerReport` per layer of ``architecture``, in order."""
    reports = []
    shape = tuple(architecture.input_shape)
    for layer in architecture.layers:
        report = layer_report(layer, shape)
        reports.append(report)
        shape = report.output_shape
    return reports


def total_params(architecture):
    """Return the total number of trainable parameters of ``architecture``."""
    return sum(report.params for report in analyse(architecture))


def neuron_count(architecture):
    """Return the number of neurons: outputs of every conv and dense layer."""
    count = 0
    for report in analyse(architecture):
        if report.layer.kind in ("conv", "dense"):
            size = 1
            for dim in report.output_shape:
                size *= dim
            count += size
    return count


# ---------------------------------------------------------------- text tables
def describe(layer):
    """Return a short human description of a layer's hyper-parameters."""
    if layer.kind == "conv":
        text = f"{layer.units} kernels {layer.kernel[0]}x{layer.kernel[1]}"
        text += f", stride {_stride_text(layer.stride)}, {_padding_text(layer.padding)}"
        if layer.groups > 1:
            text += f", {layer.groups} groups"
        return text + f", {layer.activation}"
    if layer.kind == "pool":
        return (f"{layer.mode} {layer.kernel[0]}x{layer.kernel[1]}, "
                f"stride {_stride_text(layer.stride)}")
    if layer.kind == "dense":
        return f"{layer.units} units, {layer.activation}"
    if layer.kind == "dropout":
        return f"rate {layer.rate:g} (training only)"
    if layer.kind == "lrn":
        return ", ".join(f"{key}={value:g}" for key, value in layer.options)
    return "C order"


def _stride_text(stride):
    """Return a stride as '4', or '2x1' when the two axes differ."""
    return str(stride[0]) if stride[0] == stride[1] else f"{stride[0]}x{stride[1]}"


def _padding_text(padding):
    """Return 'same', 'valid' or 'pad N'."""
    return padding if isinstance(padding, str) else f"pad {padding}"


def _shape_text(shape):
    """Return a shape as Keras prints it, with None for the batch dimension."""
    return "(None, " + ", ".join(str(dim) for dim in shape) + ")"


def summary_table(architecture):
    """Return a ``model.summary()``-like table of ``architecture`` as text.

    One row per layer: name and kind, output shape with ``None`` as the
    batch dimension, parameter count and how it is obtained; then the
    totals, e.g. ``Total params: 61,706``.
    """
    widths = (26, 22, 12)
    rule = "_" * 96
    header = ("Layer (type)".ljust(widths[0]) + "Output Shape".ljust(widths[1])
              + "Param #".rjust(widths[2]) + "   Computed as / hyper-parameters")
    lines = [f'Model: "{architecture.name}"', rule, header, "=" * len(rule),
             "input".ljust(widths[0]) + _shape_text(architecture.input_shape).ljust(widths[1])
             + "0".rjust(widths[2])]
    for report in analyse(architecture):
        layer = report.layer
        name = f"{layer.name} ({_KERAS_NAMES[layer.kind]})"
        how = f"{report.formula}: {describe(layer)}" if report.formula else describe(layer)
        lines.append(name.ljust(widths[0]) + _shape_text(report.output_shape).ljust(widths[1])
                     + f"{report.params:,}".rjust(widths[2]) + "   " + how)
    total = total_params(architecture)
    lines += ["=" * len(rule), f"Total params: {total:,}", f"Trainable params: {total:,}",
              "Non-trainable params: 0", rule]
    return "\n".join(lines)


def _markdown(header, rows, align):
    """Return a Markdown table; ``align`` has one 'l' or 'r' per column."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _times(shape):
    """Return a shape as '55×55×96'."""
    return "×".join(str(dim) for dim in shape)


def markdown_table(architecture):
    """Return a Markdown table of a network's layers, shapes and parameters.

    Columns: layer, what it does, output shape (without batch dimension),
    parameters, the formula behind them and their share of the total. The
    last row gives the total.
    """
    total = total_params(architecture)
    rows = [["input", "", _times(architecture.input_shape), "0", "", ""]]
    for report in analyse(architecture):
        share = f"{100 * report.params / total:.1f} %" if report.params else ""
        formula = f"`{report.formula}`" if report.formula else ""
        rows.append([report.layer.name, describe(report.layer), _times(report.output_shape),
                     f"{report.params:,}", formula, share])
    rows.append(["**total**", "", "", f"**{total:,}**", "", "100 %"])
    return _markdown(["layer", "hyper-parameters", "output", "parameters", "computed as", "share"],
                     rows, "lllrlr")


def comparison_table(architectures):
    """Return a Markdown table comparing networks side by side.

    Parameters
    ----------
    architectures : sequence of (str, Architecture)
        A label for each row and the network it describes.
    """
    rows = []
    for label, architecture in architectures:
        reports = analyse(architecture)
        total = total_params(architecture)
        convs = [r for r in reports if r.layer.kind == "conv"]
        denses = [r for r in reports if r.layer.kind == "dense"]
        first = _times(convs[0].output_shape) if convs else "—"
        largest = max(reports, key=lambda r: r.params)
        rows.append([label, _times(architecture.input_shape), first, str(len(convs)),
                     str(len(denses)), f"{neuron_count(architecture):,}", f"{total:,}",
                     f"{largest.layer.name} ({100 * largest.params / total:.0f} %)"])
    return _markdown(["network", "input", "conv1 output", "conv layers", "dense layers",
                      "neurons", "parameters", "largest layer"], rows, "lllrrrrl")


def conv1_readings():
    """Return a Markdown table of AlexNet's conv1 output under the three readings."""
    conv1 = ALEXNET.layers[0]
    (kernel, _), (stride, _) = conv1.kernel, conv1.stride
    rows = []
    for size, padding in ((224, "valid"), (227, "valid"), (224, 2)):
        out = output_size(size, kernel, stride, padding)
        pads = sum(padding_amounts(size, kernel, stride, padding))
        rows.append([f"{size}×{size}", _padding_text(padding),
                     f"⌊({size} + {pads} − {kernel}) / {stride}⌋ + 1", f"{out}×{out}"])
    return _markdown(["input", "padding", "arithmetic", "conv1 output"], rows, "llll")


def doc_tables():
    """Return the generated tables of ``docs/alexnet.md``, by name.

    The document contains each of them verbatim; a test checks it, so the
    numbers in the review are always the ones this module computes.
    """
    return {
        "conv1": conv1_readings(),
        "alexnet": markdown_table(ALEXNET),
        "lenet5": markdown_table(LENET5),
        "comparison": comparison_table([
            ("AlexNet, 227×227 input, two groups", ALEXNET),
            ("AlexNet on one device (no groups)", alexnet(grouped=False)),
            ("AlexNet read literally (224×224, valid)", alexnet(input_size=224)),
            ("LeNet-5 (this project)", LENET5),
            ("MLP 784-512-512-10", MLP),
        ]),
    }


# ---------------------------------------------------------------- command line
def summary_report(alexnet=False):
    """Return the text of ``convnet summary``: LeNet-5's table, the MLP's and their ratio.

    Parameters
    ----------
    alexnet : bool
        Also give AlexNet's table and neuron count.
    """
    lenet_total = total_params(LENET5)
    mlp_total = total_params(MLP)
    parts = [summary_table(LENET5), "", summary_table(MLP), "",
             (f"LeNet-5: {lenet_total:,} parameters; {MLP.name}: {mlp_total:,}, "
             f"{mlp_total / lenet_total:.1f} times as many."),
             ("Why fewer: a convolution reuses one small kernel at every position of the image "
             "(weight sharing),\nand each output sees only a 5x5 neighbourhood (local "
             "connectivity), whereas a dense layer\ngives every input pixel its own weight "
             "to every unit.")]
    if alexnet:
        parts += ["", summary_table(ALEXNET),
                  (f"AlexNet: {neuron_count(ALEXNET):,} neurons; input read as 227x227x3 "
                  "(the paper's 224 with 11x11 stride 4 and no padding would give 54x54, "
                  "not 55x55).")]
    return "\n".join(parts)


if __name__ == "__main__":
    # ``python -m convnet.nn.architectures`` prints the tables to paste into docs/alexnet.md.
    for table_name, table in doc_tables().items():
        print(f"<!-- {table_name} -->\n{table}\n")
