"""What the page shows of a network: the views behind the Draw, Inspect, Back-propagate and Browse tabs.

Every number comes from the model itself: :class:`NetworkView` asks a
:class:`convnet.nn.sequential.Sequential` for every layer's output
(``Sequential.outputs``) and for the gradient of the loss with respect to
the image and every layer's output (``Sequential.output_gradients``); it
only names, checks and reshapes. :class:`SplitBrowser` holds the model's
predictions on a split for the Browse view. The payload functions turn
those arrays into the JSON the page draws.
"""
import base64
import threading
from pathlib import Path

import numpy as np

from convnet.errors import BadCheckpointError
from convnet.nn.layers import Activation, Conv2D, ReLU

BROWSE_SPLITS = ("valid", "test")
BROWSE_LIMIT = 100
# The page draws 28x28 grey digits.
IMAGE_SHAPE = (28, 28)
# The page's name for the output probabilities, whatever the output's activation.
PROBABILITIES = "softmax"


def _kind(activation):
    """``"maps"`` for an (h, w, c) activation of one image, ``"vector"`` for (n,)."""
    return "maps" if activation.ndim == 3 else "vector"


def _activation_name(layer):
    """Name of an element-wise activation layer, or None for other layers."""
    if isinstance(layer, ReLU):
        return "relu"
    return layer.function if isinstance(layer, Activation) else None


class NetworkView:
    """What the page needs from a model: its layers' outputs, kernels and gradients.

    Parameters
    ----------
    model : Sequential
        A model of 28x28 grey images, ``input_shape`` (28, 28, 1), with at
        least one convolution. The view runs a copy of it built to
        back-propagate down to the image (``input_gradient=True``), so the
        requests never touch the caller's layers; the weights served are
        those of ``view.model``. Its convolutions can be inspected; dense
        layers are drawn as bars.
    class_names : sequence of str
        Display names of the output classes.

    Attributes
    ----------
    model : Sequential
        The copy served.
    first_conv : convnet.nn.layers.Conv2D
        Its first convolution, whose kernels the page draws.
    lock : threading.Lock
        Held while the network runs: the layers keep state between
        ``forward`` and ``backward``, so one request at a time runs it. Hold
        it to change the weights of the model served.
    """

    def __init__(self, model, class_names=tuple(str(digit) for digit in range(10))):
        input_shape = tuple(model.input_shape)
        if input_shape != IMAGE_SHAPE + (1,):
            raise ValueError(f"the page draws 28x28 grey digits, so it shows models of input "
                             f"(28, 28, 1); this model takes {input_shape}")
        if not any(isinstance(layer, Conv2D) for layer in model.layers):
            raise ValueError("the model has no convolutional layer to show")
        self.model = model.copy(input_gradient=True)
        self.layers = list(self.model.layers)
        self.first_conv = next(layer for layer in self.layers if isinstance(layer, Conv2D))
        self.class_names = tuple(class_names)
        self.dtype = self.model.dtype
        self.lock = threading.Lock()
        self.dataset = None

    @classmethod
    def from_checkpoint(cls, path, class_names=None):
        """Load a checkpoint written by ``convnet train`` (or a LeNet-5 weights file).

        ``class_names`` defaults to the display names of the checkpoint's
        dataset; ``dataset`` is set to that dataset (None if not recorded).

        Raises
        ------
        BadCheckpointError
            If ``path`` does not exist (with how to make one), is not a
            checkpoint, or its model is not one the page can show (a 28x28x1
            input and a convolution).
        """
        from convnet.data import class_names as display_names
        from convnet.training.trainer import load_model
        path = Path(path)
        if not path.is_file():
            raise BadCheckpointError(f"checkpoint {path} not found: train one with "
                                     "`convnet train` (or `make demo`), or pass --checkpoint PATH")
        model, dataset, stored = load_model(path)
        names = (display_names(dataset, stored=stored, short=True) if class_names is None
                 else class_names)
        try:
            view = cls(model, names)
        except ValueError as error:
            raise BadCheckpointError(f"checkpoint {path} holds {model.spec['name']}, which "
                                     f"the page cannot show: {error}") from None
        view.dataset = dataset
        return view

    def layer_names(self):
        """Names of the outputs drawn: ``"input"``, every layer, then ``"softmax"``."""
        return ["input"] + [layer.name for layer in self.layers] + [PROBABILITIES]

    def describe(self):
        """Return a JSON-ready list of the layers: name, type, output shape, inspectable.

        A layer is inspectable when a pixel of its output is the result of a
        convolution: the convolution itself and the activation after it.
        """
        maps = self.forward(np.zeros(IMAGE_SHAPE, dtype=self.dtype))
        rows = []
        for index, (name, activation) in enumerate(maps):
            layer = self.layers[index - 1] if 0 < index <= len(self.layers) else None
            rows.append({"name": name, "type": type(layer).__name__ if layer else name,
                         "shape": list(activation.shape), "kind": _kind(activation),
                         "inspectable": self._conv_behind(name) is not None})
        return rows

    # ------------------------------------------------------------ forward
    def _images(self, image):
        """Check one image (28, 28) and return it as a batch (1, 28, 28, 1) of the model's dtype."""
        image = np.asarray(image, dtype=self.dtype)
        if image.shape != IMAGE_SHAPE:
            raise ValueError(f"image must have shape (28, 28), received {image.shape}")
        return image[np.newaxis, :, :, np.newaxis]

    def forward(self, image):
        """Run one image through every layer.

        Parameters
        ----------
        image : ndarray of shape (28, 28)
            An MNIST-like image, values in [0, 1).

        Returns
        -------
        list of (str, ndarray)
            ``("input", (28, 28, 1))``, then each layer's output for this
            image ((h, w, c) maps or (n,) vectors) and ``("softmax", (k,))``.
        """
        batch = self._images(image)
        with self.lock:
            maps = list(self.model.outputs(batch).items())
        maps[-1] = (PROBABILITIES, maps[-1][1])
        return [(name, activation[0]) for name, activation in maps]

    # ------------------------------------------------------------ inspect
    def _conv_behind(self, name):
        """Return ``(conv_layer, activation_layer_or_None)`` computing output ``name``, or None."""
        for index, layer in enumerate(self.layers):
            if layer.name != name:
                continue
            if isinstance(layer, Conv2D):
                following = self.layers[index + 1] if index + 1 < len(self.layers) else None
                return layer, following if _activation_name(following) else None
            if _activation_name(layer) and index > 0 and isinstance(self.layers[index - 1],
                                                                     Conv2D):
                return self.layers[index - 1], layer
        return None

    def inspect(self, image, layer_name, row, col, channel):
        """Show how one output pixel of a convolution is computed.

        Parameters
        ----------
        image : ndarray of shape (28, 28)
            The input image.
        layer_name : str
            A convolution, or the activation layer right after one.
        row, col, channel : int
            The output pixel.

        Returns
        -------
        dict
            ``window``, ``kernel`` and ``products``, each of shape
            (kh, kw, c_prev) as nested lists (``padding`` (kh, kw) marks the
            window cells outside the input, zeros of the padding);
            ``sum`` of the products, ``bias``, ``sum_plus_bias``; ``output``,
            the convolution's value as the model computed it in its forward
            pass; ``activation`` (its name or None) and ``activated``, the
            value after it.

        Raises
        ------
        ValueError
            For an unknown or non-convolutional layer, or a pixel outside the output.
        """
        behind = self._conv_behind(layer_name)
        if behind is None:
            names = [layer.name for layer in self.layers if self._conv_behind(layer.name)]
            raise ValueError(f"layer must be one of {', '.join(names)} (a convolution or the "
                             f"activation after it), received {layer_name!r}")
        conv, activation = behind
        batch = self._images(image)
        with self.lock:
            maps = self.model.outputs(batch)
        names = list(maps)
        conv_input = maps[names[names.index(conv.name) - 1]][0]
        output = maps[conv.name][0]
        h_out, w_out, c_out = output.shape
        for name, value, size in (("row", row, h_out), ("col", col, w_out),
                                  ("channel", channel, c_out)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not 0 <= value < size:
                raise ValueError(f"{name} must be an integer from 0 to {size - 1} for "
                                 f"{layer_name}, received {value!r}")
        W = conv.params["W"]
        kh, kw = W.shape[:2]
        sh, sw = conv.stride
        h_in, w_in = conv_input.shape[:2]
        pads = conv.input_padding((h_in, w_in))
        padded = np.pad(conv_input, pads + ((0, 0),))
        inside = np.pad(np.ones((h_in, w_in), dtype=bool), pads)
        window = padded[row * sh:row * sh + kh, col * sw:col * sw + kw, :]
        kernel = W[:, :, :, channel]
        products = window * kernel
        bias = conv.params["b"].reshape(-1)[channel]
        total = float(products.sum(dtype=np.float64))
        activated = None
        if activation is not None:
            activated = float(maps[activation.name][0][row, col, channel])
        return {
            "layer": layer_name, "conv": conv.name, "row": int(row), "col": int(col),
            "channel": int(channel), "padding_mode": conv.padding,
            "window": window.tolist(), "kernel": kernel.tolist(), "products": products.tolist(),
            "padding": (~inside[row * sh:row * sh + kh, col * sw:col * sw + kw]).tolist(),
            "sum": total, "bias": float(bias), "sum_plus_bias": total + float(bias),
            "output": float(output[row, col, channel]),
            "activation": _activation_name(activation) if activation is not None else None,
            "activated": activated,
        }

    # ------------------------------------------------------------ back-propagate
    def backward(self, image, label):
        """Back-propagate the cross-entropy of one image against ``label``.

        Parameters
        ----------
        image : ndarray of shape (28, 28)
        label : int
            The true class, 0 to ``len(class_names) - 1``.

        Returns
        -------
        loss : float
            Cross-entropy of the prediction against ``label``.
        probabilities : ndarray of shape (n_classes,)
        gradients : list of (str, ndarray)
            ``(name, dL/d output)`` for the input and every layer, in
            forward order, without the batch axis.
        kernel_gradient : ndarray of shape (kh, kw, c_prev, c_new)
            dL/dW of the first convolutional layer.
        """
        n_classes = len(self.class_names)
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) \
                or not 0 <= label < n_classes:
            raise ValueError(f"label must be an integer from 0 to {n_classes - 1}, "
                             f"received {label!r}")
        batch = self._images(image)
        with self.lock:
            result = self.model.output_gradients(batch, np.array([label]))
            kernel_gradient = self.first_conv.grads["W"].copy()
        probabilities = result.outputs[self.model.loss_layer.name][0].copy()
        gradients = [(name, gradient[0].copy()) for name, gradient in result.gradients.items()]
        return result.value, probabilities, gradients, kernel_gradient


# ---------------------------------------------------------------- browsing a split
class SplitBrowser:
    """The model's predictions on the validation and test splits, computed once each.

    Parameters
    ----------
    view : NetworkView
    load : callable
        Returns ``(X_train, Y_train, X_valid, Y_valid, X_test, Y_test)``;
        called on the first request only.
    """

    def __init__(self, view, load):
        self.view = view
        self._load = load
        self._splits = {}
        self._lock = threading.Lock()

    def split(self, name):
        """Return ``(images (m, 28, 28), labels (m,), predictions (m,), probabilities (m, k))``."""
        if name not in BROWSE_SPLITS:
            raise ValueError(f"split must be one of {', '.join(BROWSE_SPLITS)}, received {name!r}")
        with self._lock:
            if name not in self._splits:
                arrays = self._load()
                images, labels = arrays[2:4] if name == "valid" else arrays[4:6]
                model = self.view.model
                with self.view.lock:
                    probabilities = model.predict_proba(images)
                self._splits[name] = (images, labels, probabilities.argmax(axis=1),
                                      probabilities)
            return self._splits[name]

    def summary(self, name):
        """Confusion matrix (true x predicted), accuracy and size of split ``name``."""
        from convnet.apps.pictures.plots import confusion_matrix
        _, labels, predictions, _ = self.split(name)
        matrix = confusion_matrix(labels, predictions, n_classes=len(self.view.class_names))
        return {"split": name, "count": len(labels), "matrix": matrix.tolist(),
                "accuracy": float(np.trace(matrix) / max(len(labels), 1)),
                "mistakes": int(len(labels) - np.trace(matrix)),
                "class_names": list(self.view.class_names)}

    def cell(self, name, true, predicted, limit=BROWSE_LIMIT):
        """The first ``limit`` images of true class ``true`` predicted as ``predicted``.

        ``true`` or ``predicted`` None means any class; both None with
        ``mistakes`` is :meth:`mistakes`.
        """
        images, labels, predictions, probabilities = self.split(name)
        n_classes = len(self.view.class_names)
        for argument, value in (("true", true), ("predicted", predicted)):
            if value is not None and not 0 <= value < n_classes:
                raise ValueError(f"{argument} must be a class from 0 to {n_classes - 1}, "
                                 f"received {value}")
        chosen = np.ones(len(labels), dtype=bool)
        if true is not None:
            chosen &= labels == true
        if predicted is not None:
            chosen &= predictions == predicted
        return self._rows(name, np.flatnonzero(chosen), limit, images, labels, predictions,
                          probabilities)

    def mistakes(self, name, limit=BROWSE_LIMIT):
        """The first ``limit`` wrongly predicted images of split ``name``, in index order."""
        images, labels, predictions, probabilities = self.split(name)
        return self._rows(name, np.flatnonzero(labels != predictions), limit, images, labels,
                          predictions, probabilities)

    @staticmethod
    def _rows(name, indices, limit, images, labels, predictions, probabilities):
        shown = indices[:limit]
        return {"split": name, "total": len(indices), "images": [
            {"index": int(i), "label": int(labels[i]), "predicted": int(predictions[i]),
             "confidence": round(float(probabilities[i, predictions[i]]), 4),
             "pixels": np.round(images[i].astype(np.float64), 3).ravel().tolist()}
            for i in shown]}


def browser_for(view, dataset="mnist", data_path=None):
    """Return a :class:`SplitBrowser` reading ``dataset`` (from ``data_path``) on first use."""
    from convnet import data

    return SplitBrowser(view, lambda: data.load_dataset(dataset, data_path))


# ---------------------------------------------------------------- JSON payloads
def drawing_codes(activation, low, high):
    """Quantise values for drawing: one byte each, channels first, in base64.

    Parameters
    ----------
    activation : ndarray of shape (h, w, c) or (n,)
    low, high : float
        The smallest and largest value (the layer's colour scale).

    Returns
    -------
    str
        Base64 of ``round(255 * (value - low) / (high - low))`` as unsigned
        bytes, channel 0's h * w values first (all zeros when high == low).
        A value is recovered within ``(high - low) / 510``: far finer than
        the eye tells colours apart, at a tenth of the size and encoding
        time of JSON numbers.
    """
    values = np.asarray(activation, dtype=np.float64)
    if values.ndim == 3:
        values = values.transpose(2, 0, 1)
    span = high - low
    scaled = np.zeros(values.shape) if span <= 0 else (values - low) * (255.0 / span)
    codes = np.rint(scaled).clip(0, 255).astype(np.uint8)
    return base64.b64encode(codes.tobytes()).decode("ascii")


def _drawn(name, activation):
    """JSON-ready description of one layer's output (or gradient) for drawing.

    ``codes`` holds the values quantised by :func:`drawing_codes` between
    ``min`` and ``max``; the page decodes them into one array per channel.
    """
    activation = np.asarray(activation, dtype=np.float64)
    low, high = float(activation.min()), float(activation.max())
    return {"name": name, "kind": _kind(activation), "shape": list(activation.shape),
            "min": low, "max": high, "codes": drawing_codes(activation, low, high)}


def predict_payload(view, image):
    """Everything the Draw view draws for ``image`` (28, 28): a JSON-ready dict."""
    maps = view.forward(image)
    probabilities = maps[-1][1]
    return {"image": np.asarray(image, dtype=np.float64).ravel().tolist(),
            "layers": [_drawn(name, activation) for name, activation in maps[1:-1]],
            "probabilities": probabilities.astype(np.float64).tolist(),
            "prediction": int(probabilities.argmax()),
            "class_names": list(view.class_names)}


def backprop_payload(view, image, label):
    """Everything the Back-propagate view draws: a JSON-ready dict."""
    loss, probabilities, gradients, kernel_gradient = view.backward(image, label)
    kernels = view.first_conv.params["W"]
    return {"label": int(label), "loss": loss,
            "probabilities": probabilities.astype(np.float64).tolist(),
            "prediction": int(probabilities.argmax()),
            "gradients": [_drawn(name, gradient) for name, gradient in gradients],
            "kernel_gradient": _drawn("d" + view.first_conv.name + "_kernel",
                                      kernel_gradient[:, :, 0, :]),
            "kernels": _drawn(view.first_conv.name + "_kernel", kernels[:, :, 0, :])}
