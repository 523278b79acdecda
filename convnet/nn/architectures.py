"""The networks of the AlexNet review: layer tables, output shapes, parameter counts.

Task 6's review compares AlexNet (Krizhevsky, Sutskever & Hinton, 2012) with
this project's LeNet-5 and with the fully connected 784-512-512-10 network.
LeNet-5 and the MLP are the zoo's specs (``convnet.nn.zoo``: ``lenet5`` and
``mlp``): their rows, shapes and counts are :func:`convnet.nn.specs.spec_summary`'s.

AlexNet keeps a description of its own, :class:`Architecture`, because the
spec format cannot express it: local response normalisation, convolutions
whose kernels see one group of the input channels (the two-GPU split),
explicit zero padding of a given width and the split across devices that
the diagram draws. It is never built or trained, only counted: each
layer's output shape comes from ``convnet.nn.ops.output_size`` (the
curriculum's padding arithmetic) and its parameter count from its
formula. :func:`architecture_summary` turns it into the same
:class:`convnet.nn.summary.Summary` as the specs, so one table formatter
(:func:`convnet.nn.summary.summary_text`) prints all three, and the Markdown
tables of ``0x07-cnn/6-alexnet.md`` are made from summaries alike.
Shapes are NHWC without the batch dimension: ``(h, w, c)`` for images,
``(n,)`` after flattening.
"""
from dataclasses import dataclass, field

from convnet.nn.ops import output_size, padding_amounts
from convnet.nn.specs import spec_summary
from convnet.nn.summary import Summary, SummaryRow, summary_text
from convnet.nn.zoo import load_spec

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

    ``layer`` is the spec; ``input_shape`` and ``output_shape`` (tuples of
    int) are its shapes without the batch dimension; ``params`` (int) counts
    its trainable weights and biases, and ``formula`` (str) shows how, e.g.
    ``(5*5*1+1)*6`` (empty when ``params`` is 0).
    """

    layer: Layer
    input_shape: tuple
    output_shape: tuple
    params: int
    formula: str


# ---------------------------------------------------------------- the three networks
# LeNet-5 and the MLP are the zoo's models; only the display names are set here.
LENET5 = spec_summary(load_spec("lenet5"), "LeNet-5")
MLP = spec_summary(load_spec("mlp"), "MLP 784-512-512-10")


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


def architecture_summary(architecture):
    """Return the :class:`convnet.nn.summary.Summary` of an :class:`Architecture`.

    One row per layer, its Keras class name (``LocalResponseNorm`` for
    LRN), output shape and parameter count, with the formula of the count
    and the layer's hyper-parameters (:func:`describe`); every parameter is
    trainable.
    """
    rows = []
    for report in analyse(architecture):
        layer = report.layer
        kind = _KERAS_NAMES[layer.kind]
        if layer.kind == "pool" and layer.mode == "avg":
            kind = "AveragePooling2D"
        rows.append(SummaryRow(layer.name, kind, report.output_shape, report.params,
                               report.formula, describe(layer)))
    total = sum(row.params for row in rows)
    return Summary(architecture.name, rows, total, total, 0, tuple(architecture.input_shape))


def _as_summary(model):
    """Return ``model`` (a Summary or an Architecture) as a Summary."""
    return model if isinstance(model, Summary) else architecture_summary(model)


def total_params(model):
    """Return the number of parameters of a :class:`Summary` or an :class:`Architecture`."""
    return _as_summary(model).total


def neuron_count(model):
    """Return the number of neurons, the outputs of every conv and dense layer.

    ``model`` is a :class:`Summary` or an :class:`Architecture`.
    """
    count = 0
    for row in _as_summary(model).rows:
        if row.kind in ("Conv2D", "Dense"):
            size = 1
            for dim in row.output_shape:
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


def _markdown(header, rows, align):
    """Return a Markdown table; ``align`` has one 'l' or 'r' per column."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _times(shape):
    """Return a shape as '55×55×96'."""
    return "×".join(str(dim) for dim in shape)


def markdown_table(model):
    """Return a Markdown table of a network's layers, shapes and parameters.

    ``model`` is a :class:`Summary` or an :class:`Architecture`. Columns:
    layer, what it does, output shape (without batch dimension),
    parameters, the formula behind them and their share of the total. The
    last row gives the total.
    """
    summary = _as_summary(model)
    total = summary.total
    rows = [["input", "", _times(summary.input_shape), "0", "", ""]]
    for row in summary.rows:
        share = f"{100 * row.params / total:.1f} %" if row.params else ""
        formula = f"`{row.formula}`" if row.formula else ""
        rows.append([row.name, row.description, _times(row.output_shape), f"{row.params:,}",
                     formula, share])
    rows.append(["**total**", "", "", f"**{total:,}**", "", "100 %"])
    return _markdown(["layer", "hyper-parameters", "output", "parameters", "computed as", "share"],
                     rows, "lllrlr")


def comparison_table(models):
    """Return a Markdown table comparing networks side by side.

    Parameters
    ----------
    models : sequence of (str, Summary or Architecture)
        A label for each row and the network it describes.
    """
    rows = []
    for label, model in models:
        summary = _as_summary(model)
        total = summary.total
        convs = [row for row in summary.rows if row.kind == "Conv2D"]
        denses = [row for row in summary.rows if row.kind == "Dense"]
        first = _times(convs[0].output_shape) if convs else "—"
        largest = max(summary.rows, key=lambda row: row.params)
        rows.append([label, _times(summary.input_shape), first, str(len(convs)),
                     str(len(denses)), f"{neuron_count(summary):,}", f"{total:,}",
                     f"{largest.name} ({100 * largest.params / total:.0f} %)"])
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
    """Return the generated tables of ``0x07-cnn/6-alexnet.md``, by name.

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
    parts = [summary_text(LENET5, details=True), "", summary_text(MLP, details=True), "",
             (f"LeNet-5: {lenet_total:,} parameters; {MLP.name}: {mlp_total:,}, "
             f"{mlp_total / lenet_total:.1f} times as many."),
             ("Why fewer: a convolution reuses one small kernel at every position of the image "
             "(weight sharing),\nand each output sees only a 5x5 neighbourhood (local "
             "connectivity), whereas a dense layer\ngives every input pixel its own weight "
             "to every unit.")]
    if alexnet:
        parts += ["", summary_text(architecture_summary(ALEXNET), details=True),
                  (f"AlexNet: {neuron_count(ALEXNET):,} neurons; input read as 227x227x3 "
                  "(the paper's 224 with 11x11 stride 4 and no padding would give 54x54, "
                  "not 55x55).")]
    return "\n".join(parts)


if __name__ == "__main__":
    # ``python -m convnet.nn.architectures`` prints the tables to paste into 0x07-cnn/6-alexnet.md.
    for table_name, table in doc_tables().items():
        print(f"<!-- {table_name} -->\n{table}\n")
