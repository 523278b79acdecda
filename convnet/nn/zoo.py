"""The model zoo: the curriculum's and the course's networks as Sequential specs.

Each spec gives its input shape (the ``Input`` entry), its loss (from the
output activation) and the optimizer the course trained it with. Parameter
counts, as Keras's ``summary()`` reports them:

=================  ====================  ==============================
name               input                 parameters
=================  ====================  ==============================
``lenet5``         28x28x1, 10 classes   61,706
``lenet5-classic`` 28x28x1, 10 classes   61,706
``mlp``            28x28x1, 10 classes   669,706
``mnist-cnn``      28x28x1, 10 classes   220,234
``cifar-cnn``      32x32x3, 10 classes   541,094
``happy-model``    64x64x3, binary       37,633 (37,569 trainable)
``signs-cnn``      64x64x3, 6 classes    1,310
=================  ====================  ==============================
"""
from pathlib import Path

from convnet.errors import BadOptionError
from convnet.nn.limits import MAX_SPEC_BYTES, parse_spec_text
from convnet.nn.specs import normalise_spec

DEFAULT_MODEL = "lenet5"


def _lenet5(name, activation, pool):
    """LeNet-5's shapes with ``activation`` on the hidden layers and ``pool`` pooling."""
    return {"name": name, "optimizer": "adam", "layers": [
        {"layer": "Input", "shape": [28, 28, 1]},
        {"layer": "Conv2D", "name": "conv1", "filters": 6, "kernel": 5, "padding": "same",
         "activation": activation},
        {"layer": pool, "name": "pool1", "pool": 2, "stride": 2},
        {"layer": "Conv2D", "name": "conv2", "filters": 16, "kernel": 5, "padding": "valid",
         "activation": activation},
        {"layer": pool, "name": "pool2", "pool": 2, "stride": 2},
        {"layer": "Flatten", "name": "flatten"},
        {"layer": "Dense", "name": "dense1", "units": 120, "activation": activation},
        {"layer": "Dense", "name": "dense2", "units": 84, "activation": activation},
        {"layer": "Dense", "name": "dense3", "units": 10, "activation": "softmax"},
    ]}


def _conv(name, filters, kernel, padding="same", activation="relu"):
    """A Conv2D entry: the zoo's convolutions are 'same' and ReLU unless said otherwise."""
    return {"layer": "Conv2D", "name": name, "filters": filters, "kernel": kernel,
            "padding": padding, "activation": activation}


def _conv_pool(index, filters):
    """Keras's small-CNN block: a 3x3 'same' ReLU convolution, then 2x2 max pooling."""
    return [_conv(f"conv{index}", filters, 3),
            {"layer": "MaxPool2D", "name": f"pool{index}", "pool": 2}]


ZOO = {
    "lenet5": _lenet5("lenet5", "relu", "MaxPool2D"),
    "lenet5-classic": _lenet5("lenet5-classic", "tanh", "AveragePool2D"),
    "mlp": {"name": "mlp", "optimizer": "rmsprop", "layers": [
        {"layer": "Input", "shape": [28, 28, 1]},
        {"layer": "Flatten", "name": "flatten"},
        {"layer": "Dense", "name": "dense1", "units": 512, "activation": "relu"},
        {"layer": "Dense", "name": "dense2", "units": 512, "activation": "relu"},
        {"layer": "Dense", "name": "dense3", "units": 10, "activation": "softmax"},
    ]},
    "mnist-cnn": {"name": "mnist-cnn", "optimizer": "rmsprop", "layers": [
        {"layer": "Input", "shape": [28, 28, 1]},
        *_conv_pool(1, 32),
        *_conv_pool(2, 64),
        {"layer": "Flatten", "name": "flatten"},
        {"layer": "Dense", "name": "dense1", "units": 64, "activation": "relu"},
        {"layer": "Dense", "name": "dense2", "units": 10, "activation": "softmax"},
    ]},
    "cifar-cnn": {"name": "cifar-cnn", "optimizer": "rmsprop", "layers": [
        {"layer": "Input", "shape": [32, 32, 3]},
        *_conv_pool(1, 16),
        *_conv_pool(2, 32),
        *_conv_pool(3, 64),
        {"layer": "Dropout", "name": "dropout1", "rate": 0.3},
        {"layer": "Flatten", "name": "flatten"},
        {"layer": "Dense", "name": "dense1", "units": 500, "activation": "relu"},
        {"layer": "Dropout", "name": "dropout2", "rate": 0.4},
        {"layer": "Dense", "name": "dense2", "units": 10, "activation": "softmax"},
    ]},
    "happy-model": {"name": "happy-model", "optimizer": "adam", "layers": [
        {"layer": "Input", "shape": [64, 64, 3]},
        {"layer": "ZeroPadding2D", "name": "pad1", "padding": 3},
        _conv("conv1", 32, 7, padding="valid", activation=None),
        {"layer": "BatchNormalization", "name": "bn1", "momentum": 0.99, "epsilon": 1e-3},
        {"layer": "ReLU", "name": "relu1"},
        {"layer": "MaxPool2D", "name": "pool1", "pool": 2, "stride": 2},
        {"layer": "Flatten", "name": "flatten"},
        {"layer": "Dense", "name": "dense1", "units": 1, "activation": "sigmoid"},
    ]},
    "signs-cnn": {"name": "signs-cnn", "optimizer": "adam", "layers": [
        {"layer": "Input", "shape": [64, 64, 3]},
        _conv("conv1", 8, 4, activation=None),
        {"layer": "ReLU", "name": "relu1"},
        {"layer": "MaxPool2D", "name": "pool1", "pool": 8, "stride": 8, "padding": "same"},
        _conv("conv2", 16, 2, activation=None),
        {"layer": "ReLU", "name": "relu2"},
        {"layer": "MaxPool2D", "name": "pool2", "pool": 4, "stride": 4, "padding": "same"},
        {"layer": "Flatten", "name": "flatten"},
        {"layer": "Dense", "name": "dense1", "units": 6, "activation": "softmax"},
    ]},
}
NAMES = tuple(ZOO)


def load_spec(name_or_path):
    """Return the canonical spec of a zoo model or of a JSON file: the one way in for specs.

    Parameters
    ----------
    name_or_path : str or Path
        A zoo name (``lenet5``, ``lenet5-classic``, ``mlp``, ``mnist-cnn``,
        ``cifar-cnn``, ``happy-model``, ``signs-cnn``) or the path of a JSON
        file holding a spec (a list of layer entries, or a dict with
        ``"layers"``; see :mod:`convnet.nn.specs`).

    Returns
    -------
    CanonicalSpec
        A fresh, checked spec (see ``convnet.nn.specs.normalise_spec``): no
        later step checks it again. A file's spec without a ``"name"`` is
        named after the file.

    Raises
    ------
    BadOptionError
        A ``ValueError`` for an unknown name (listing the zoo), a missing or
        unreadable file, a file longer than ``convnet.nn.limits.MAX_SPEC_BYTES``
        or nesting brackets deeper than ``MAX_JSON_DEPTH``, a file that is
        not JSON, or a spec that ``normalise_spec`` refuses (naming the file).
    """
    text = str(name_or_path)
    if text in ZOO:
        return normalise_spec(ZOO[text])
    path = Path(text)
    if path.suffix.lower() != ".json" and not path.exists():
        raise BadOptionError(f"model must be one of {', '.join(NAMES)} or a .json spec file, "
                         f"received {text!r}")
    if not path.is_file():
        raise BadOptionError(f"spec file {path} does not exist")
    try:
        with path.open("rb") as stream:
            # One byte more than a spec may take tells a longer file without reading it all.
            text = stream.read(MAX_SPEC_BYTES + 1)
        if len(text) > MAX_SPEC_BYTES:
            raise BadOptionError(f"spec file {path} is longer than {MAX_SPEC_BYTES:,} bytes, "
                                 "the most a spec may take")
        text = text.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BadOptionError(f"spec file {path} cannot be read ({error})") from None
    spec = parse_spec_text(text, f"spec file {path}", BadOptionError)
    if isinstance(spec, list):
        spec = {"name": path.stem, "layers": spec}
    elif isinstance(spec, dict):
        spec.setdefault("name", path.stem)
    try:
        return normalise_spec(spec)
    except (TypeError, ValueError) as error:
        raise BadOptionError(f"spec file {path}: {error}") from None


def check_fits(spec, model_name, dataset, image_shape, num_classes):
    """Refuse a dataset whose images or classes do not fit the model, before training.

    Parameters
    ----------
    spec : dict
        The model's canonical spec.
    model_name, dataset : str
        As the user gave them, for the message.
    image_shape : tuple of int
        The dataset's image shape without the batch axis: (h, w) for grey
        images, (h, w, c) otherwise.
    num_classes : int
        How many classes the dataset has.

    Raises
    ------
    BadOptionError
        One line naming the model, the dataset and what differs.
    """
    h, w, c = spec["layers"][0]["shape"]
    shape = tuple(image_shape) + ((1,) if len(image_shape) == 2 else ())
    if shape != (h, w, c):
        raise BadOptionError(f"--model {model_name} takes {h}x{w}x{c} images, but --dataset "
                             f"{dataset} has {'x'.join(map(str, shape))} images")
    last = spec["layers"][-1]
    classes = 2 if last["activation"] == "sigmoid" else last["units"]
    if classes != num_classes:
        output = ("one sigmoid unit (2 classes)" if last["activation"] == "sigmoid"
                  else f"{classes} classes")
        raise BadOptionError(f"--model {model_name} has {output}, but --dataset {dataset} has "
                             f"{num_classes} classes")
