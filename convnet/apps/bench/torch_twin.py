"""A spec's network in PyTorch, with a NumPy model's weights, to train beside the NumPy engine.

:func:`torch_model` lays a normalised spec out as ``torch.nn`` modules with
Keras's meanings (``'same'`` padding gives ``ceil(h / s)`` outputs, the
smaller half of the padding first) and copies the weights of a
``Sequential``'s ``get_weights()`` into them. Images stay NHWC in memory:
a batch ``(m, h, w, c)`` is viewed as PyTorch's ``(m, c, h, w)`` in the
channels-last layout (no copy), the layout oneDNN's convolutions prefer on
a CPU. :class:`TorchTrainer` trains it with PyTorch's own optimizer of the
spec's name, given Keras's hyper-parameters.

Importing this module imports PyTorch (an optional dependency: ``make
bench-frameworks`` installs it); the benchmark imports it only in the
process that trains with it.
"""
import numpy as np
import torch
from torch import nn

from convnet.apps.bench.twin_layout import conv_geometry, pool_geometry
from convnet.apps.bench.twin_training import is_binary, keras_hyper_parameters, logits_accuracy


class FlattenNHWC(nn.Module):
    """Flatten ``(m, c, h, w)`` in NHWC order, as Keras's ``Flatten`` and the NumPy engine do.

    On a channels-last tensor the permutation is a view of contiguous
    memory, so this costs no copy; the Dense weights then need no reordering.
    """

    def forward(self, x):
        """Return ``x`` of shape (m, c, h, w) as (m, h * w * c); 2-D inputs pass unchanged."""
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        return x.reshape(x.shape[0], -1)


class AveragePoolSame(nn.Module):
    """Average pooling over zero-padded windows, each divided by its number of real cells.

    Parameters
    ----------
    window, stride : pair of int
    pads : ((top, bottom), (left, right))
    counts : ndarray of shape (h_out, w_out)
        Real cells of each window.
    """

    def __init__(self, window, stride, pads, counts):
        super().__init__()
        (top, bottom), (left, right) = pads
        self.pad = nn.ZeroPad2d((left, right, top, bottom))
        self.pool = nn.AvgPool2d(window, stride, divisor_override=1)
        self.register_buffer("counts", torch.from_numpy(np.asarray(counts, np.float32)))

    def forward(self, x):
        """Return the window means of ``x`` (m, c, h, w) over real cells only."""
        return self.pool(self.pad(x)) / self.counts


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def _activation(name, last):
    """The module of a hidden activation; none for the output's, which the loss takes."""
    if name is None or last:
        return []
    return [_ACTIVATIONS[name]()]


def _pool(entry, shape):
    """The modules of a pooling entry on inputs of ``shape`` (h, w, c); and its output shape."""
    geometry = pool_geometry(entry, shape)
    (top, bottom), (left, right) = geometry.pads
    padded = top or bottom or left or right
    if entry["layer"] == "MaxPool2D":
        modules = [nn.ConstantPad2d((left, right, top, bottom), -np.inf)] if padded else []
        modules.append(nn.MaxPool2d(geometry.window, geometry.stride))
    elif padded:
        modules = [AveragePoolSame(geometry.window, geometry.stride, geometry.pads,
                                   geometry.counts)]
    else:
        modules = [nn.AvgPool2d(geometry.window, geometry.stride)]
    return modules, geometry.output_shape


def build_modules(spec):
    """Lay a normalised spec out as PyTorch modules.

    Returns
    -------
    modules : list of torch.nn.Module
        In order; the output's softmax or sigmoid is left to the loss.
    weighted : dict of int to dict
        Index in ``modules`` of each module with weights, to its spec entry.
    """
    entries = spec["layers"]
    shape = tuple(entries[0]["shape"])
    modules, weighted = [], {}
    for index, entry in enumerate(entries[1:], start=1):
        kind, last = entry["layer"], index == len(entries) - 1
        if kind == "ZeroPadding2D":
            (top, bottom), (left, right) = entry["padding"]
            modules.append(nn.ZeroPad2d((left, right, top, bottom)))
            shape = (shape[0] + top + bottom, shape[1] + left + right, shape[2])
        elif kind == "Conv2D":
            geometry = conv_geometry(entry, shape)
            (top, bottom), (left, right) = geometry.pads
            symmetric = top == bottom and left == right
            if not symmetric:
                modules.append(nn.ZeroPad2d((left, right, top, bottom)))
            weighted[len(modules)] = entry
            modules.append(nn.Conv2d(shape[2], entry["filters"], geometry.window,
                                     stride=geometry.stride,
                                     padding=(top, left) if symmetric else 0))
            modules += _activation(entry["activation"], last)
            shape = geometry.output_shape
        elif kind in ("MaxPool2D", "AveragePool2D"):
            pooling, shape = _pool(entry, shape)
            modules += pooling
        elif kind == "BatchNormalization":
            norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            weighted[len(modules)] = entry
            modules.append(norm(shape[-1], eps=entry["epsilon"], momentum=1 - entry["momentum"]))
        elif kind == "ReLU":
            modules.append(nn.ReLU())
        elif kind == "Flatten":
            modules.append(FlattenNHWC())
            shape = (int(np.prod(shape)),)
        elif kind == "Dropout":
            modules.append(nn.Dropout(entry["rate"]))
        else:
            weighted[len(modules)] = entry
            modules.append(nn.Linear(shape[0], entry["units"]))
            modules += _activation(entry["activation"], last)
            shape = (entry["units"],)
    return modules, weighted


def torch_model(spec, weights):
    """Build the PyTorch network of ``spec`` holding ``weights``.

    Parameters
    ----------
    spec : dict
        A normalised spec.
    weights : dict of str to ndarray
        ``Sequential.get_weights()``: ``conv1/kernel`` (kh, kw, c_in, c_out),
        ``dense1/kernel`` (n_in, n_out), biases, batch normalisation's four.

    Returns
    -------
    torch.nn.Sequential
        float32, channels-last; it takes ``(m, c, h, w)`` tensors (see
        :func:`as_tensor`) and returns logits (m, k), or (m, 1) for a
        sigmoid output.
    """
    modules, weighted = build_modules(spec)
    with torch.no_grad():
        for index, entry in weighted.items():
            module, name = modules[index], entry["name"]
            if entry["layer"] == "Conv2D":
                kernel = weights[f"{name}/kernel"].transpose(3, 2, 0, 1)
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
                module.bias.copy_(torch.from_numpy(weights[f"{name}/bias"]))
            elif entry["layer"] == "Dense":
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(
                    weights[f"{name}/kernel"].T)))
                module.bias.copy_(torch.from_numpy(weights[f"{name}/bias"]))
            else:
                for key, target in (("gamma", module.weight), ("beta", module.bias),
                                    ("moving_mean", module.running_mean),
                                    ("moving_variance", module.running_var)):
                    target.copy_(torch.from_numpy(weights[f"{name}/{key}"]))
    return nn.Sequential(*modules).float().to(memory_format=torch.channels_last)


def as_tensor(X):
    """View NHWC images ``(m, h, w, c)`` as a channels-last ``(m, c, h, w)`` tensor (no copy)."""
    return torch.from_numpy(np.ascontiguousarray(X, np.float32)).permute(0, 3, 1, 2)


def torch_optimizer(name, parameters):
    """PyTorch's optimizer of ``name`` (adam, rmsprop, sgd) with Keras's default hyper-parameters.

    Adam: learning rate 0.001, betas 0.9 and 0.999, epsilon 1e-7; RMSprop:
    0.001, rho (PyTorch's ``alpha``) 0.9, epsilon 1e-7; SGD: 0.01. PyTorch
    adds epsilon after the square root and to the bias-corrected moment,
    Keras before it and to the uncorrected one: steps differ in the last
    digits, not in what is learnt.
    """
    hyper = keras_hyper_parameters(name)
    parameters = list(parameters)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=hyper["lr"], betas=(hyper["beta1"], hyper["beta2"]),
                                eps=hyper["epsilon"], foreach=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=hyper["lr"], alpha=hyper["rho"],
                                   eps=hyper["epsilon"], foreach=True)
    # sgd, the one name left: keras_hyper_parameters refused any other.
    return torch.optim.SGD(parameters, lr=hyper["lr"], foreach=True)


class TorchTrainer:
    """A spec's PyTorch network and optimizer, trained one batch at a time.

    Parameters
    ----------
    spec : dict
        A normalised spec, laid out as ``torch.nn`` modules (:func:`torch_model`).
    weights : dict of str to ndarray
        ``Sequential.get_weights()``, copied into the modules' parameters.
    optimizer : str
        adam, rmsprop or sgd: PyTorch's own class of that name
        (:func:`torch_optimizer`).
    """

    def __init__(self, spec, weights, optimizer):
        self.model = torch_model(spec, weights)
        self.optimizer = torch_optimizer(optimizer, self.model.parameters())
        self.binary = is_binary(spec)
        self.loss = nn.BCEWithLogitsLoss() if self.binary else nn.CrossEntropyLoss()

    def _targets(self, Y):
        labels = torch.from_numpy(np.asarray(Y, np.int64))
        return labels.float()[:, None] if self.binary else labels

    def step(self, X, Y):
        """Train on images ``X`` (m, h, w, c) and integer labels ``Y`` (m,); return the loss."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.model(as_tensor(X)), self._targets(Y))
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def logits(self, X, batch_size=500):
        """Inference-mode logits of images ``X`` (m, h, w, c): ndarray (m, k)."""
        self.model.eval()
        with torch.no_grad():
            return np.concatenate([self.model(as_tensor(X[start:start + batch_size])).numpy()
                                   for start in range(0, len(X), batch_size)])

    def accuracy(self, X, Y):
        """Fraction of images ``X`` whose predicted class is their label ``Y``."""
        return logits_accuracy(self.logits(X), Y, self.binary)
