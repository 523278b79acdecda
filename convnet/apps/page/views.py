"""What the page shows of a network: the views behind the Draw, Inspect, Back-propagate and Browse tabs.

Every number comes from the model itself: :class:`NetworkView` asks a
:class:`convnet.nn.sequential.Sequential` for every layer's output
(``Sequential.outputs``) and for the gradient of the loss with respect to
the image and every layer's output (``Sequential.output_gradients``); it
only names, checks and reshapes. Any model the engine trains is shown:
grey or colour inputs of any size, convolutions of any stride and padding,
networks without convolution, softmax or sigmoid outputs (a sigmoid's
probability p of class 1 is shown as the two class probabilities 1 - p and
p). Pictures sent by the page are prepared for the model's input as
``convnet predict`` prepares them (:meth:`NetworkView.prepare`). The
payload functions turn those arrays into the JSON the page draws; the Browse
view's split is ``convnet.apps.page.browse``.
"""
import base64
import threading
from pathlib import Path

import numpy as np

from convnet.errors import BadCheckpointError
from convnet.nn.layers import Activation, Conv2D, ReLU

# Datasets whose pictures the page invites to draw, and what it calls them.
DRAWN_THINGS = {"mnist": "a digit", "fashion-mnist": "a piece of clothing"}


def _kind(activation):
    """``"maps"`` for an (h, w, c) activation of one image, ``"vector"`` for (n,)."""
    return "maps" if activation.ndim == 3 else "vector"


def _activation_name(layer):
    """Name of an element-wise activation layer, or None for other layers."""
    if isinstance(layer, ReLU):
        return "relu"
    return layer.function if isinstance(layer, Activation) else None


def two_classes(probabilities):
    """A sigmoid's (1,) probability of class 1 as (1 - p, p); other outputs as they are."""
    probabilities = np.asarray(probabilities)
    if probabilities.shape[-1] == 1:
        return np.concatenate([1 - probabilities, probabilities], axis=-1)
    return probabilities


class NetworkView:
    """What the page needs from a model: its layers' outputs, kernels and gradients.

    Parameters
    ----------
    model : Sequential
        Any model: input (h, w, 1) or (h, w, 3), with or without
        convolutions, a softmax or a sigmoid output. The view runs a copy
        of it built to back-propagate down to the image
        (``input_gradient=True``), so the requests never touch the caller's
        layers; the weights served are those of ``view.model``. Its
        convolutions can be inspected; vectors are drawn as bars.
    class_names : sequence of str
        Display names of the output classes (two for a sigmoid output).

    Attributes
    ----------
    model : Sequential
        The copy served.
    input_shape : tuple of int
        (h, w, c) of one image.
    first_conv : convnet.nn.layers.Conv2D or None
        Its first convolution, whose kernels the page draws (None for a
        network without convolution).
    dataset : str or None
        The dataset the model learnt, when known (set by :meth:`from_checkpoint`).
    lock : threading.Lock
        Held while the network runs: the layers keep state between
        ``forward`` and ``backward``, so one request at a time runs it. Hold
        it to change the weights of the model served.
    """

    def __init__(self, model, class_names=tuple(str(digit) for digit in range(10))):
        self.model = model.copy(input_gradient=True)
        self.layers = list(self.model.layers)
        self.input_shape = tuple(int(size) for size in self.model.input_shape)
        self.first_conv = next((layer for layer in self.layers if isinstance(layer, Conv2D)),
                               None)
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
            If ``path`` does not exist (with how to make one) or is not a
            checkpoint.
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
        view = cls(model, names)
        view.dataset = dataset
        return view

    @property
    def output_name(self):
        """Name of the output's probabilities: ``"softmax"`` or ``"sigmoid"``."""
        return self.model.loss_layer.name

    def layer_names(self):
        """Names of the outputs drawn: ``"input"``, every layer, then the probabilities."""
        return ["input"] + [layer.name for layer in self.layers] + [self.output_name]

    def describe(self):
        """Return a JSON-ready list of the layers: name, type, output shape, inspectable.

        A layer is inspectable when a pixel of its output is the result of a
        convolution: the convolution itself and the activation after it.
        """
        maps = self.forward(np.zeros(self.input_shape, dtype=self.dtype))
        rows = []
        for index, (name, activation) in enumerate(maps):
            layer = self.layers[index - 1] if 0 < index <= len(self.layers) else None
            rows.append({"name": name, "type": type(layer).__name__ if layer else name,
                         "shape": list(activation.shape), "kind": _kind(activation),
                         "inspectable": self._conv_behind(name) is not None})
        return rows

    def about(self):
        """Return what the page shows of the model before any image: a JSON-ready dict.

        ``layers`` (:meth:`describe`), ``class_names``, ``dataset`` (or None),
        ``output`` (softmax or sigmoid) and ``input``: its ``shape``,
        ``colour`` (three channels), ``drawable`` (grey: the page offers a
        canvas to draw on), ``thing`` (what the page asks to draw, e.g.
        "a digit") and ``rule`` (how pictures are prepared, in words).
        """
        from convnet.data.images import preparation_rule
        h, w, c = self.input_shape
        return {"layers": self.describe(), "class_names": list(self.class_names),
                "dataset": self.dataset, "output": self.output_name,
                "input": {"shape": [h, w, c], "colour": c == 3, "drawable": c == 1,
                          "thing": DRAWN_THINGS.get(self.dataset or "mnist", "a picture"),
                          "rule": preparation_rule(self.input_shape)}}

    # ------------------------------------------------------------ forward
    def prepare(self, file, *, max_pixels=None, label=None):
        """Prepare a picture file for the model's input, as ``convnet predict`` does.

        Parameters
        ----------
        file : str, Path or binary file object
            Any picture Pillow reads.
        max_pixels : int, optional
            Largest width times height read (default: the images module's).
        label : str, optional
            What messages call the picture.

        Returns
        -------
        ndarray of shape (h, w, c), float32
            See ``convnet.data.images.prepare_image``.
        """
        from convnet.data.images import MAX_PIXELS, prepare_image
        return prepare_image(file, self.input_shape,
                             max_pixels=MAX_PIXELS if max_pixels is None else max_pixels,
                             label=label)

    def _images(self, image):
        """Check one image (h, w, c) (or (h, w) when grey) and return it as a batch (1, h, w, c)."""
        image = np.asarray(image, dtype=self.dtype)
        h, w, c = self.input_shape
        if image.ndim == 2 and c == 1:
            image = image[:, :, np.newaxis]
        if image.shape != self.input_shape:
            grey = f"({h}, {w}) or " if c == 1 else ""
            raise ValueError(f"image must have shape {grey}{self.input_shape}, received "
                             f"{image.shape}")
        return image[np.newaxis]

    def forward(self, image):
        """Run one image through every layer.

        Parameters
        ----------
        image : ndarray of shape (h, w, c) (or (h, w) for a grey model)
            An image of the model's input shape.

        Returns
        -------
        list of (str, ndarray)
            ``("input", (h, w, c))``, then each layer's output for this
            image ((h, w, c) maps or (n,) vectors) and the class
            probabilities ``(output name, (k,))`` (k = 2 for a sigmoid).
        """
        batch = self._images(image)
        with self.lock:
            maps = list(self.model.outputs(batch).items())
        name, probabilities = maps[-1]
        maps[-1] = (name, two_classes(probabilities))
        return [(name, activation[0]) for name, activation in maps]

    def first_kernels(self):
        """The first convolution's kernels (kh, kw, c_in, c_out), a copy; None without one."""
        return None if self.first_conv is None else self.first_conv.params["W"].copy()

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
        image : ndarray of shape (h, w, c) (or (h, w) for a grey model)
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
            if not names:
                raise ValueError(f"layer {layer_name!r} cannot be inspected: this network has "
                                 "no convolution")
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
        image : ndarray of shape (h, w, c) (or (h, w) for a grey model)
        label : int
            The true class, 0 to ``len(class_names) - 1`` (0 or 1 for a sigmoid).

        Returns
        -------
        loss : float
            Cross-entropy of the prediction against ``label`` (binary for a sigmoid).
        probabilities : ndarray of shape (n_classes,)
            One per class (1 - p and p for a sigmoid).
        gradients : list of (str, ndarray)
            ``(name, dL/d output)`` for the input and every layer, in
            forward order, without the batch axis.
        kernel_gradient : ndarray of shape (kh, kw, c_prev, c_new), or None
            dL/dW of the first convolutional layer (None without one).
        """
        n_classes = len(self.class_names)
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) \
                or not 0 <= label < n_classes:
            raise ValueError(f"label must be an integer from 0 to {n_classes - 1}, "
                             f"received {label!r}")
        batch = self._images(image)
        with self.lock:
            result = self.model.output_gradients(batch, np.array([label]))
            kernel_gradient = (None if self.first_conv is None
                               else self.first_conv.grads["W"].copy())
        probabilities = two_classes(result.outputs[self.output_name][0])
        gradients = [(name, gradient[0].copy()) for name, gradient in result.gradients.items()]
        return result.value, probabilities, gradients, kernel_gradient


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


def sign_codes(values):
    """Each value's sign as one byte, in base64: 0 below zero, 1 for zero, 2 above.

    Parameters
    ----------
    values : ndarray of shape (n,)

    Returns
    -------
    str
        Base64 of n unsigned bytes, ``sign(value) + 1``.
    """
    signs = np.sign(np.asarray(values, dtype=np.float64)) + 1
    return base64.b64encode(signs.astype(np.uint8).tobytes()).decode("ascii")


def _drawn(name, activation):
    """JSON-ready description of one layer's output (or gradient) for drawing.

    ``codes`` holds the values quantised by :func:`drawing_codes` between
    ``min`` and ``max``; the page decodes them into one array per channel.
    A vector also carries ``signs`` (:func:`sign_codes`): its bars take their
    colour and direction from the sign, and 256 levels between ``min`` and
    ``max`` cannot keep the sign of a value within half a level of zero (the
    gradient p of a class the network rules out, say), nor draw a zero as
    no bar, unless zero happens to fall on a level.
    """
    activation = np.asarray(activation, dtype=np.float64)
    low, high = float(activation.min()), float(activation.max())
    drawn = {"name": name, "kind": _kind(activation), "shape": list(activation.shape),
             "min": low, "max": high, "codes": drawing_codes(activation, low, high)}
    if drawn["kind"] == "vector":
        drawn["signs"] = sign_codes(activation)
    return drawn


def _drawn_kernels(name, kernels):
    """JSON-ready first-layer kernels (kh, kw, c_in, c_out), or their gradient, for drawing.

    One input channel: ``kind`` "maps" of shape (kh, kw, c_out), as
    :func:`_drawn`. Three (a colour model): ``kind`` "colours", shape (kh, kw,
    3, c_out), ``codes`` the bytes of ``0.5 + W / (2 * limit)`` (``limit``
    the largest magnitude, ``min`` -limit and ``max`` limit) in the order
    (c_out, kh, kw, 3): each kernel a colour patch, grey where a weight is 0.
    Other channel counts: every (input channel, kernel) pair as one map.
    """
    kernels = np.asarray(kernels, dtype=np.float64)
    kh, kw, c_in, c_out = kernels.shape
    if c_in == 1:
        return _drawn(name, kernels[:, :, 0, :])
    if c_in != 3:
        return _drawn(name, kernels.reshape(kh, kw, c_in * c_out))
    limit = float(np.abs(kernels).max()) or 1.0
    return {"name": name, "kind": "colours", "shape": [kh, kw, 3, c_out],
            "min": -limit, "max": limit,
            "codes": drawing_codes(kernels.transpose(3, 0, 1, 2), -limit, limit)}


def _input_fields(view, image):
    """The image the network saw: ``image`` (h * w * c values, channel last) and its ``image_shape``."""
    image = np.asarray(image, dtype=np.float64).reshape(view.input_shape)
    return {"image": image.ravel().tolist(), "image_shape": list(image.shape)}


def predict_payload(view, image):
    """Everything the Draw view draws for ``image`` (h, w, c): a JSON-ready dict."""
    maps = view.forward(image)
    probabilities = maps[-1][1]
    return {**_input_fields(view, image),
            "layers": [_drawn(name, activation) for name, activation in maps[1:-1]],
            "probabilities": probabilities.astype(np.float64).tolist(),
            "prediction": int(probabilities.argmax()),
            "class_names": list(view.class_names)}


def backprop_payload(view, image, label):
    """Everything the Back-propagate view draws: a JSON-ready dict.

    ``kernels`` and ``kernel_gradient`` (see :func:`_drawn_kernels`) are None
    for a network without convolution.
    """
    loss, probabilities, gradients, kernel_gradient = view.backward(image, label)
    answer = {"label": int(label), "loss": loss,
              "probabilities": probabilities.astype(np.float64).tolist(),
              "prediction": int(probabilities.argmax()),
              "gradients": [_drawn(name, gradient) for name, gradient in gradients],
              "kernel_gradient": None, "kernels": None}
    if view.first_conv is not None:
        name = view.first_conv.name
        answer["kernel_gradient"] = _drawn_kernels("d" + name + "_kernel", kernel_gradient)
        answer["kernels"] = _drawn_kernels(name + "_kernel", view.first_conv.params["W"])
    return answer
