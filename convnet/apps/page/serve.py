"""``convnet serve``: a local web page that shows what the network computes.

The page (``convnet/apps/page/web/``: plain HTML, CSS and JavaScript, nothing fetched
from elsewhere) has five views: Draw (a digit drawn with the mouse or a
finger, every layer's output and the ten probabilities), Inspect (the
arithmetic of one pixel of a convolution's output), Back-propagate (the
gradient of the loss with respect to every layer's output and to the first
layer's kernels), Browse (the confusion matrix and the images of each cell)
and Watch training (loss, accuracy and first-layer filters streamed by
``convnet train --serve``).

Every number comes from the project's NumPy engine, through a
:class:`NetworkView`: a small adapter that names the layers, runs them one by
one and back-propagates through them, so any model whose layers follow the
``convnet.nn.layers`` protocol (``name``, ``params``, ``forward``, ``backward``)
can be served.

The server is stateless: each request carries the drawn image (PNG or JPEG
bytes), which goes through the same preparation and checks as
``convnet predict`` (:func:`convnet.data.images.load_digit_image`). Request bodies
are limited to ``MAX_BODY_BYTES``; only the page's own files, read into
memory once from a fixed table of names, are served, so no path taken from a
request reaches the file system.

:func:`build_app` returns the ASGI application; it prints nothing.
"""
import asyncio
import base64
import io
import json
import threading
from pathlib import Path

import numpy as np

from convnet.checks import check_count
from convnet.data.images import load_digit_image
from convnet.errors import BadCheckpointError, StorageError
from convnet.nn import ops
from convnet.nn.layers import Activation, Conv2D, ReLU

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# A 280x280 canvas is about 10 kB as a PNG; a phone photo a few MB.
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096
# Decimals kept for the first-layer kernels streamed while training (drawn
# only). Maps and gradients are sent as one byte per value (``drawing_codes``);
# the Inspect view's numbers are sent exact.
DRAWN_DECIMALS = 5
BROWSE_SPLITS = ("valid", "test")
BROWSE_LIMIT = 100
WEB_DIR = Path(__file__).with_name("web")
# The only files the server sends: URL name -> (file in convnet/web, media type).
ASSETS = {
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "style.css": ("style.css", "text/css; charset=utf-8"),
}
PAGE = "index.html"
# The page loads its own script and style sheet and talks to this server only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
# Names by which a server on the loopback interface is reached.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def host_warning(host):
    """Return a warning for a ``host`` other than the loopback interface, else None."""
    if host in LOOPBACK_HOSTS:
        return None
    return (f"warning: serving on {host}, not {DEFAULT_HOST}: other machines that reach this "
            "address can use the page (it has no password)")


# ---------------------------------------------------------------- the network adapter
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
    model : object
        A model with ``layers`` (objects with ``name``, ``params`` and
        ``forward``/``backward`` as in ``convnet.nn.layers``), ``loss_layer``
        (the output's activation fused with its loss, as
        ``SoftmaxCrossEntropy``), an ``input_shape`` of (28, 28, 1) (the
        Draw view's digits) and a ``dtype``, such as a
        :class:`convnet.nn.sequential.Sequential` model of 28x28 grey images with
        a convolution. Its convolutions can be inspected; dense layers are
        drawn as bars.
    class_names : sequence of str
        Display names of the output classes.

    Attributes
    ----------
    lock : threading.Lock
        Held while the network runs: the layers keep state between
        ``forward`` and ``backward``, so one request at a time runs it. Hold
        it to change the weights of the model served.
    """

    def __init__(self, model, class_names=tuple(str(digit) for digit in range(10))):
        self.model = model
        self.layers = list(model.layers)
        self.class_names = tuple(class_names)
        self.dtype = np.dtype(getattr(model, "dtype", np.float32))
        self.lock = threading.Lock()
        self.dataset = None
        input_shape = tuple(getattr(model, "input_shape", (28, 28, 1)))
        if input_shape != (28, 28, 1):
            raise ValueError(f"the page draws 28x28 grey digits, so it shows models of input "
                             f"(28, 28, 1); this model takes {input_shape}")
        convs = [layer for layer in self.layers if isinstance(layer, Conv2D)]
        if not convs:
            raise ValueError("the model has no convolutional layer to show")
        self.first_conv = convs[0]
        self._loss_class = type(model.loss_layer)

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
        """Names of the outputs drawn: ``"input"``, every layer, then ``"softmax"``.

        ``"softmax"`` names the probabilities whatever the output's
        activation (the page's name for them).
        """
        return ["input"] + [layer.name for layer in self.layers] + ["softmax"]

    def describe(self):
        """Return a JSON-ready list of the layers: name, type, output shape, inspectable.

        A layer is inspectable when a pixel of its output is the result of a
        convolution: the convolution itself and the activation after it.
        """
        maps = self.forward(np.zeros((28, 28), dtype=self.dtype))
        rows = []
        for index, (name, activation) in enumerate(maps):
            layer = self.layers[index - 1] if 0 < index <= len(self.layers) else None
            rows.append({"name": name, "type": type(layer).__name__ if layer else name,
                         "shape": list(activation.shape), "kind": _kind(activation),
                         "inspectable": self._conv_behind(name) is not None})
        return rows

    # ------------------------------------------------------------ forward
    def _images(self, image):
        image = np.asarray(image, dtype=self.dtype)
        if image.shape != (28, 28):
            raise ValueError(f"image must have shape (28, 28), received {image.shape}")
        return image[np.newaxis, :, :, np.newaxis]

    def _forward_locked(self, image):
        out = self._images(image)
        maps = [("input", out)]
        for layer in self.layers:
            out = layer.forward(out)
            maps.append((layer.name, out))
        maps.append(("softmax", self._loss_class.probabilities(out)))
        return maps

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
            image ((h, w, c) maps or (n,) vectors) and ``("softmax", (10,))``.
        """
        with self.lock:
            maps = self._forward_locked(image)
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
            the convolution's value as :func:`convnet.nn.ops.conv_forward`
            computed it during the forward pass; ``activation`` (its name or
            None) and ``activated``, the value after it.

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
        with self.lock:
            maps = dict(self._forward_locked(image))
        names = self.layer_names()
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
        sh, sw = getattr(conv, "stride", (1, 1))
        h_in, w_in = conv_input.shape[:2]
        top, bottom = ops.padding_amounts(h_in, kh, sh, conv.padding)
        left, right = ops.padding_amounts(w_in, kw, sw, conv.padding)
        padded = np.pad(conv_input, ((top, bottom), (left, right), (0, 0)))
        inside = np.pad(np.ones((h_in, w_in), dtype=bool), ((top, bottom), (left, right)))
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
        loss_layer = self._loss_class()
        with self.lock:
            maps = self._forward_locked(image)
            loss = loss_layer.forward(maps[-2][1], np.array([label]))
            dout = loss_layer.backward()
            gradients = []
            for index in range(len(self.layers) - 1, -1, -1):
                layer = self.layers[index]
                gradients.append((layer.name, dout))
                dinput = layer.backward(dout)
                if dinput is None and isinstance(layer, Conv2D):
                    # A first layer skips its input gradient during training.
                    dinput = ops.conv_backward(dout, maps[index][1], layer.params["W"],
                                               layer.params["b"].reshape(1, 1, 1, -1),
                                               padding=layer.padding)[0]
                dout = dinput
            gradients.append(("input", dout))
            kernel_gradient = self.first_conv.grads["W"].copy()
        gradients = [(name, gradient[0].copy()) for name, gradient in reversed(gradients)]
        return loss, maps[-1][1][0].copy(), gradients, kernel_gradient


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


# ---------------------------------------------------------------- training stream
class TrainingFeed:
    """Training progress published by the trainer and streamed to every open page.

    ``publish`` may be called from any thread; each page listening on
    ``/api/train/events`` receives every event as a server-sent event.
    Events are kept (the last ``keep``) so a page opened late draws the
    curve from the start.
    """

    def __init__(self, keep=2000):
        self._events = []
        self._keep = keep
        self._condition = threading.Condition()
        self._count = 0

    def publish(self, event):
        """Add ``event`` (a JSON-ready dict) and wake the listeners."""
        with self._condition:
            self._events.append(event)
            del self._events[:-self._keep]
            self._count += 1
            self._condition.notify_all()

    def since(self, count, timeout):
        """Return ``(events after the first count published, new count)``, waiting up to ``timeout`` s."""
        with self._condition:
            if self._count <= count:
                self._condition.wait(timeout)
            new = self._count - count
            events = self._events[-new:] if new > 0 else []
            return events[-self._keep:], self._count


def training_event(step, epoch, loss, accuracy, kernels):
    """Return the event published every few steps: numbers and conv1's kernels.

    Parameters
    ----------
    step, epoch : int
    loss : float
        Mean training loss over the steps since the previous event.
    accuracy : float or None
        Accuracy on a fixed slice of the validation split.
    kernels : ndarray of shape (kh, kw, 1, c_new)
        The first layer's kernels now.
    """
    kernels = np.asarray(kernels, dtype=np.float64)
    return {"step": int(step), "epoch": int(epoch), "loss": float(loss),
            "accuracy": None if accuracy is None else float(accuracy),
            "kernels": _channels_first(kernels[:, :, 0, :]),
            "kernel_shape": list(kernels.shape)}


class TrainingWatcher:
    """The trainer's per-step callback behind ``convnet train --serve``.

    Every ``every`` steps it copies the trained weights into the served
    model (so the Draw view shows the network as it learns), measures the
    accuracy on a fixed slice of the validation split and publishes the
    mean loss of those steps, that accuracy and conv1's kernels to ``feed``.

    Parameters
    ----------
    model : Sequential
        The model being trained (only read, between steps).
    view : NetworkView
        The served network: a separate model, so that requests never touch
        the layers the trainer is using.
    feed : TrainingFeed
    X_valid : ndarray of shape (m, 28, 28)
    Y_valid : ndarray of shape (m,)
        The validation slice whose accuracy is reported.
    every : int
        Steps between two events.
    """

    def __init__(self, model, view, feed, X_valid, Y_valid, every=50):
        check_count("every", every)
        self.model = model
        self.view = view
        self.feed = feed
        self.X_valid, self.Y_valid = X_valid, Y_valid
        self.every = every
        self.step = 0
        self._losses = []

    def __call__(self, epoch, loss):
        """Record one step's mean loss; publish an event every ``every`` steps."""
        self.step += 1
        self._losses.append(float(loss))
        if self.step % self.every == 0:
            self.publish(epoch)

    def publish(self, epoch):
        """Copy the weights into the served model and publish an event now."""
        with self.view.lock:
            self.view.model.set_weights(self.model.get_weights())
            accuracy = None
            if len(self.X_valid):
                _, accuracy = self.view.model.evaluate(self.X_valid, self.Y_valid)
            kernels = self.view.first_conv.params["W"].copy()
        loss = float(np.mean(self._losses)) if self._losses else float("nan")
        self._losses = []
        self.feed.publish(training_event(self.step, epoch, loss, accuracy, kernels))


class ServerThread:
    """An ASGI application served by uvicorn in a background thread.

    Parameters
    ----------
    app : ASGI application
    host : str
    port : int
        0 picks a free port; ``url`` tells which.
    """

    def __init__(self, app, host=DEFAULT_HOST, port=0):
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"

    def start(self, timeout=20.0):
        """Start serving; return once the server listens.

        Raises
        ------
        OSError
            If it has not started within ``timeout`` seconds (port in use, say).
        """
        import time

        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise StorageError(f"the server could not start on {self.url} (is the port "
                                   "already in use?)")
            time.sleep(0.02)
        return self

    def stop(self, timeout=10.0):
        """Stop serving and wait for the thread (at most ``timeout`` seconds)."""
        self._server.should_exit = True
        self._thread.join(timeout)


def watch_training(model, X_valid, Y_valid, host=DEFAULT_HOST, port=DEFAULT_PORT, every=50,
                   sample=500):
    """Serve the page for a training run; return ``(on_step callback, server thread)``.

    The callback is a :class:`TrainingWatcher` reporting the accuracy on the
    first ``sample`` validation images; the server is already listening.
    """
    from convnet.nn.sequential import Sequential

    view = NetworkView(Sequential(model.spec, seed=0, dtype=model.dtype))
    view.model.set_weights(model.get_weights())
    feed = TrainingFeed()
    watcher = TrainingWatcher(model, view, feed, X_valid[:sample], Y_valid[:sample], every)
    app = build_app(view, feed=feed, checkpoint="(training)",
                    allowed_hosts=LOOPBACK_NAMES if host in LOOPBACK_HOSTS else None)
    server = ServerThread(app, host, port)
    return watcher, server.start()


# ---------------------------------------------------------------- JSON helpers
def _channels_first(activation):
    """(h, w, c) -> list of c flat lists of h * w numbers, rounded for drawing."""
    rounded = np.round(np.asarray(activation, dtype=np.float64), DRAWN_DECIMALS)
    return [rounded[:, :, k].ravel().tolist() for k in range(rounded.shape[2])]


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


# ---------------------------------------------------------------- the application
class RequestError(ValueError):
    """A request the server refuses, with its HTTP status."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def _read_assets():
    """Read the page's files into memory: {URL name: (bytes, media type)}."""
    assets = {name: ((WEB_DIR / filename).read_bytes(), media)
              for name, (filename, media) in ASSETS.items()}
    assets[PAGE] = ((WEB_DIR / PAGE).read_bytes(), "text/html; charset=utf-8")
    return assets


def _int_query(request, name, required=True):
    """Read query parameter ``name`` as an int (None when absent and not required)."""
    text = request.query_params.get(name)
    if text is None:
        if required:
            raise RequestError(f"query parameter {name} is required")
        return None
    try:
        return int(text)
    except ValueError:
        raise RequestError(f"query parameter {name} must be an integer, received {text!r}") \
            from None


async def _read_image(request, max_bytes):
    """Read the request body (an image file) and prepare it as ``convnet predict`` does."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(f"request body is {declared} bytes; the limit is {max_bytes}", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestError(f"request body is larger than the limit of {max_bytes} bytes",
                               413)
    if not body:
        raise RequestError("the request must carry an image (PNG or JPEG bytes) as its body")
    return load_digit_image(io.BytesIO(bytes(body)), max_pixels=MAX_IMAGE_PIXELS,
                            label="in the request body")


def build_app(view, browser=None, feed=None, checkpoint=None, max_body_bytes=MAX_BODY_BYTES,
              allowed_hosts=None):
    """Return the Starlette application of ``convnet serve``.

    Parameters
    ----------
    view : NetworkView
        The network shown.
    browser : SplitBrowser, optional
        Serves the Browse view; without it that view says no data was given.
    feed : TrainingFeed, optional
        Source of the Watch-training stream (``convnet train --serve``).
    checkpoint : str, optional
        Shown on the page.
    max_body_bytes : int
        Largest request body accepted (413 beyond).
    allowed_hosts : sequence of str, optional
        Host names the requests must be addressed to (400 otherwise), e.g.
        ``LOOPBACK_NAMES`` for a server on 127.0.0.1: a web page elsewhere
        that renames its own address to 127.0.0.1 (DNS rebinding) then
        cannot read the answers. None accepts any.

    Every answer forbids the browser to load anything from elsewhere
    (``Content-Security-Policy``) or to guess content types.

    Routes
    ------
    ``GET /`` the page; ``GET /assets/{name}`` its script and style sheet;
    ``GET /api/model``; ``POST /api/predict``, ``POST /api/inspect?layer=&row=&col=&channel=``,
    ``POST /api/backprop?label=`` with an image as the body;
    ``GET /api/browse?split=``, ``GET /api/browse/images?split=&true=&predicted=``
    (either may be left out) and ``GET /api/browse/mistakes?split=``;
    ``GET /api/train/events`` (server-sent events).
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    assets = _read_assets()

    def asset(name):
        content, media = assets[name]
        return Response(content, media_type=media, headers={"Cache-Control": "no-cache"})

    def api(handler):
        async def endpoint(request):
            try:
                result = await handler(request)
            except RequestError as error:
                return JSONResponse({"error": str(error)}, status_code=error.status)
            except (ValueError, FileNotFoundError) as error:
                return JSONResponse({"error": str(error)}, status_code=400)
            return JSONResponse(result)
        return endpoint

    async def page(request):
        return asset(PAGE)

    async def static(request):
        name = request.path_params["name"]
        if name not in ASSETS:
            return JSONResponse({"error": "not found"}, status_code=404)
        return asset(name)

    async def model_info(request):
        return {"layers": await run_in_threadpool(view.describe),
                "class_names": list(view.class_names), "checkpoint": checkpoint,
                "browse": browser is not None, "training": feed is not None}

    async def predict(request):
        image = await _read_image(request, max_body_bytes)
        return await run_in_threadpool(predict_payload, view, image)

    async def inspect(request):
        layer = request.query_params.get("layer")
        if layer is None:
            raise RequestError("query parameter layer is required")
        row, col, channel = (_int_query(request, name) for name in ("row", "col", "channel"))
        image = await _read_image(request, max_body_bytes)
        return await run_in_threadpool(view.inspect, image, layer, row, col, channel)

    async def backprop(request):
        label = _int_query(request, "label")
        image = await _read_image(request, max_body_bytes)
        return await run_in_threadpool(backprop_payload, view, image, label)

    def _browser():
        if browser is None:
            raise RequestError("no data set was loaded: start `convnet serve` with MNIST "
                               "cached (`convnet data`) or --data PATH", 404)
        return browser

    async def browse(request):
        split = request.query_params.get("split", "valid")
        return await run_in_threadpool(_browser().summary, split)

    async def browse_images(request):
        split = request.query_params.get("split", "valid")
        true, predicted = _int_query(request, "true", False), _int_query(request, "predicted",
                                                                           False)
        return await run_in_threadpool(_browser().cell, split, true, predicted)

    async def browse_mistakes(request):
        split = request.query_params.get("split", "valid")
        return await run_in_threadpool(_browser().mistakes, split)

    async def train_events(request):
        if feed is None:
            return JSONResponse({"error": "no training is running: start one with "
                                          "`convnet train --serve`"}, status_code=404)

        async def stream():
            count = 0
            yield "retry: 2000\n\n"
            while True:
                if await request.is_disconnected():
                    break
                events, count = await run_in_threadpool(feed.since, count, 1.0)
                for event in events:
                    yield f"data: {json.dumps(event)}\n\n"
                if not events:
                    yield ": waiting\n\n"
                    await asyncio.sleep(0)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    routes = [
        Route("/", page),
        Route("/assets/{name}", static),
        Route("/api/model", api(model_info)),
        Route("/api/predict", api(predict), methods=["POST"]),
        Route("/api/inspect", api(inspect), methods=["POST"]),
        Route("/api/backprop", api(backprop), methods=["POST"]),
        Route("/api/browse", api(browse)),
        Route("/api/browse/images", api(browse_images)),
        Route("/api/browse/mistakes", api(browse_mistakes)),
        Route("/api/train/events", train_events),
    ]
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    middleware = [Middleware(_SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    return Starlette(routes=routes, middleware=middleware)


class _SecurityHeaders:
    """ASGI middleware adding ``SECURITY_HEADERS`` to every answer."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(name.encode("latin-1"), value.encode("latin-1"))
                            for name, value in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def browser_for(view, dataset="mnist", data_path=None):
    """Return a :class:`SplitBrowser` reading ``dataset`` (from ``data_path``) on first use."""
    from convnet import data

    return SplitBrowser(view, lambda: data.load_dataset(dataset, data_path))


def run(app, host=DEFAULT_HOST, port=DEFAULT_PORT):
    """Serve ``app`` with uvicorn until interrupted."""
    import uvicorn
    uvicorn.run(app, host=host, port=port, log_level="warning")
