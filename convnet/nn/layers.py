"""The layers of the NumPy networks: forward and backward side by side.

Every layer follows :class:`convnet.nn.layer.Layer`: ``params``, ``grads``
and ``buffers`` dicts, ``output_shape``, ``forward(x, training=False)`` and
``backward(dout)``. The losses are in :mod:`convnet.nn.losses`.

The convolution and pooling arithmetic is not repeated here: ``Conv2D`` and
the pooling layers call the operations of ``convnet.nn.ops`` (tasks 0-3). Where
Keras's padding differs from the curriculum's (``'same'`` with a stride above
one, ``'same'`` pooling) the layer pads explicitly, by the amounts of
:mod:`convnet.nn.keras_padding`, and calls the ops with ``'valid'``.

Only ``BatchNormalization`` and ``Dropout`` behave differently in training;
the other layers accept the flag and ignore it.
"""
import numpy as np

from convnet.nn import ops
from convnet.nn.keras_padding import crop, keras_output_size, keras_padding, keras_pads, pad_with
from convnet.nn.layer import Layer

# Keras's HeNormal draws from a normal truncated at two standard deviations and
# divides the standard deviation by this constant (the standard deviation of a
# unit normal truncated to [-2, 2]) so the truncated draw keeps variance 2/fan_in.
TRUNCATED_NORMAL_STD = 0.87962566103423978


def he_normal(shape, fan_in, rng, dtype=np.float32):
    """He-normal initial weights, as Keras's ``HeNormal`` draws them.

    Parameters
    ----------
    shape : tuple of int
        Shape of the weight tensor.
    fan_in : int
        Number of inputs feeding each output unit.
    rng : numpy.random.Generator
        Source of randomness (the only one, so a seed fixes the result).
    dtype : numpy dtype
        Dtype of the returned array.

    Returns
    -------
    ndarray of shape ``shape``
        Normal draws with standard deviation ``sqrt(2 / fan_in) / 0.8796...``,
        redrawn until every value lies within two standard deviations.
    """
    stddev = np.sqrt(2.0 / fan_in) / TRUNCATED_NORMAL_STD
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2.0
    return (values * stddev).astype(dtype)


def _identity(z):
    """Activation that leaves the convolution's output as it is."""
    return z


def _pair(value):
    """Return an int or a pair of ints as a tuple of two ints."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    return tuple(int(item) for item in value)


class Conv2D(Layer):
    """2-D convolution (``convnet.nn.ops.conv_forward``/``conv_backward``), no activation.

    Parameters
    ----------
    name : str
        Layer name, used in ``feature_maps`` and error messages.
    kernel_size : int or tuple of two int
        Height and width ``(kh, kw)`` of the kernels (an int for square ones).
    channels_in, channels_out : int
        Channels of the input and number of kernels.
    padding : {"same", "valid"}
        Padding mode, with Keras's meaning: ``'same'`` gives
        ``ceil(h / sh)`` rows (see :func:`keras_padding`), ``'valid'``
        ``floor((h - kh) / sh) + 1``. With stride 1 both agree with
        ``convnet.nn.ops``, which then pads; a strided ``'same'`` is padded here.
    rng : numpy.random.Generator
        Draws the He-normal kernels; biases start at zero.
    dtype : numpy dtype
        Dtype of the parameters.
    input_grad : bool
        False for a first layer: ``backward`` then skips the gradient with
        respect to the images and returns None.
    stride : int or tuple of two int
        ``(sh, sw)`` (an int for both), default 1.

    Attributes
    ----------
    params, grads : dict
        ``"W"`` of shape (kh, kw, channels_in, channels_out), ``"b"`` of shape
        (channels_out,) (passed to the ops as a (1, 1, 1, channels_out) view).
    """

    def __init__(self, name, kernel_size, channels_in, channels_out, padding, rng,
                 dtype=np.float32, input_grad=True, stride=1):
        super().__init__(name, input_grad)
        self.kernel = _pair(kernel_size)
        self.stride = _pair(stride)
        shape = self.kernel + (channels_in, channels_out)
        fan_in = self.kernel[0] * self.kernel[1] * channels_in
        self.padding = padding
        # Only a strided 'same' differs from the ops' own padding.
        self.pads_here = padding == "same" and self.stride != (1, 1)
        self.add_param("W", he_normal(shape, fan_in, rng, dtype))
        self.add_param("b", np.zeros(channels_out, dtype=dtype))
        self.x = None
        self.pads = None
        self.workspace = {}

    def _bias4(self):
        return self.params["b"].reshape(1, 1, 1, -1)

    def output_shape(self, input_shape):
        """Return (h', w', channels_out) for one example of shape (h, w, channels_in)."""
        h, w = (keras_output_size(size, k, s, self.padding)
                for size, k, s in zip(input_shape[:2], self.kernel, self.stride))
        return h, w, self.params["W"].shape[3]

    def input_padding(self, input_hw):
        """Return the zeros added around an input of (h, w): ``((top, bottom), (left, right))``.

        The window of output pixel (i, j) starts at row ``i * sh`` and column
        ``j * sw`` of the input padded so.
        """
        return tuple(keras_padding(size, k, s, self.padding)
                     for size, k, s in zip(input_hw, self.kernel, self.stride))

    def forward(self, x, training=False):
        """Convolve ``x`` of shape (m, h, w, channels_in); returns (m, h', w', channels_out)."""
        padding = self.padding
        if self.pads_here:
            self.pads = keras_pads(x.shape, self.kernel, self.stride, "same")
            x = pad_with(x, self.pads, 0)
            padding = "valid"
        self.x = x
        return ops.conv_forward(x, self.params["W"], self._bias4(), _identity,
                                padding=padding, stride=self.stride,
                                workspace=self.workspace)

    def backward(self, dout):
        """Take dL/dz of shape (m, h', w', channels_out); return dL/dx (or None), set grads."""
        padding = "valid" if self.pads_here else self.padding
        dx, dW, db = ops.conv_backward(dout, self.x, self.params["W"], self._bias4(),
                                       padding=padding, stride=self.stride,
                                       need_dA_prev=self.input_grad,
                                       workspace=self.workspace)
        self.grads["W"] = dW
        self.grads["b"] = db.reshape(-1)
        if dx is not None and self.pads_here:
            dx = crop(dx, self.pads)
        return dx


class _Pool2D(Layer):
    """Pooling over ``pool`` windows moved by ``stride``, with Keras's ``padding``.

    ``'same'`` pads explicitly (see :func:`keras_padding`): with -inf for
    max pooling, so a padded cell never wins; with zeros for average pooling,
    whose sums are divided by the number of real cells of each window, so a
    padded cell never counts. Every window holds at least one real cell.
    """

    mode = None

    def __init__(self, name, size=2, stride=None, padding="valid"):
        super().__init__(name)
        self.window = _pair(size)
        self.stride = self.window if stride is None else _pair(stride)
        self.padding = padding
        self.x = None
        self.pads = None
        self.counts = None
        self._counts_of = None
        self.workspace = {}

    def output_shape(self, input_shape):
        """Return (h', w', c) for one example of shape (h, w, c)."""
        h, w = (keras_output_size(size, k, s, self.padding)
                for size, k, s in zip(input_shape[:2], self.window, self.stride))
        return h, w, input_shape[2]

    def _real_cells(self, hw, dtype, pads):
        """Return the number of real cells in each window, shape (1, h', w', 1).

        The counts depend only on the input's (h, w) and dtype, so they are
        kept for the next call.
        """
        key = (tuple(hw), dtype)
        if self._counts_of is None or self._counts_of[0] != key:
            real = np.ones((1,) + key[0] + (1,), dtype)
            area = self.window[0] * self.window[1]
            counts = area * ops.pool_forward(pad_with(real, pads, 0), self.window,
                                             self.stride, "avg")
            self._counts_of = (key, counts)
        return self._counts_of[1]

    def forward(self, x, training=False):
        """Pool ``x`` of shape (m, h, w, c); returns (m, h', w', c), sizes as in ``output_shape``."""
        pads = keras_pads(x.shape, self.window, self.stride, self.padding)
        self.pads = None if pads == ((0, 0), (0, 0)) else pads
        self.counts = None
        if self.pads is not None:
            hw = x.shape[1:3]
            x = pad_with(x, pads, -np.inf if self.mode == "max" else 0)
            if self.mode == "avg":
                self.counts = self._real_cells(hw, x.dtype, pads)
        self.x = x
        out = ops.pool_forward(x, self.window, stride=self.stride, mode=self.mode,
                               workspace=self.workspace)
        if self.counts is not None:
            out *= self.window[0] * self.window[1] / self.counts
        return out

    def backward(self, dout):
        """Route ``dout`` of the pooled shape back to the input's shape (m, h, w, c)."""
        if self.counts is not None:
            dout = dout * (self.window[0] * self.window[1] / self.counts)
        dx = ops.pool_backward(dout, self.x, self.window, stride=self.stride, mode=self.mode,
                               ties="first", workspace=self.workspace)
        return dx if self.pads is None else crop(dx, self.pads)


class MaxPool2D(_Pool2D):
    """Max pooling (``convnet.nn.ops``), by default over non-overlapping ``size`` x ``size`` windows.

    Parameters
    ----------
    name : str
        Layer name.
    size : int or tuple of two int
        Window height and width, also the stride unless ``stride`` is given.
    stride : int or tuple of two int, optional
        ``(sh, sw)``.
    padding : {'valid', 'same'}
        Keras's meaning (see :class:`_Pool2D`).

    Notes
    -----
    ``backward`` uses ``ties="first"``: a window whose maximum occurs several
    times (common on MNIST's saturated strokes) passes its gradient to one
    entry, as TensorFlow does and as the loss's gradient requires.
    """

    mode = "max"


class AveragePool2D(_Pool2D):
    """Average pooling (``convnet.nn.ops``); parameters as :class:`MaxPool2D`."""

    mode = "avg"


class ReLU(Layer):
    """Element-wise ``max(x, 0)``."""

    def __init__(self, name):
        super().__init__(name)
        self.positive = None

    def forward(self, x, training=False):
        """Return ``max(x, 0)``, same shape as ``x``."""
        self.positive = x > 0
        return np.maximum(x, 0, dtype=x.dtype)

    def backward(self, dout):
        """Pass ``dout`` through where the input was positive, zero elsewhere."""
        return np.multiply(dout, self.positive, dtype=dout.dtype)


class Flatten(Layer):
    """Reshape (m, h, w, c) to (m, h * w * c) in C order (as Keras ``Flatten`` on NHWC)."""

    def __init__(self, name):
        super().__init__(name)
        self.shape = None

    def output_shape(self, input_shape):
        """Return ``(features,)``, the product of ``input_shape``."""
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        """Return ``x`` of shape (m, ...) as (m, features)."""
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        """Return ``dout`` of shape (m, features) in the input's shape."""
        return dout.reshape(self.shape)


class Dense(Layer):
    """Fully connected layer ``x @ W + b``.

    Parameters
    ----------
    name : str
        Layer name.
    units_in, units_out : int
        Input and output features.
    rng : numpy.random.Generator
        Draws the He-normal weights; biases start at zero.
    dtype : numpy dtype
        Dtype of the parameters.
    input_grad : bool
        Whether ``backward`` returns dL/dx (see :class:`convnet.nn.layer.Layer`).

    Attributes
    ----------
    params, grads : dict
        ``"W"`` of shape (units_in, units_out), ``"b"`` of shape (units_out,).
    """

    def __init__(self, name, units_in, units_out, rng, dtype=np.float32, input_grad=True):
        super().__init__(name, input_grad)
        self.add_param("W", he_normal((units_in, units_out), units_in, rng, dtype))
        self.add_param("b", np.zeros(units_out, dtype=dtype))
        self.x = None

    def output_shape(self, input_shape):
        """Return ``(units_out,)`` for an input of shape ``(units_in,)``."""
        return (self.params["W"].shape[1],)

    def forward(self, x, training=False):
        """Return ``x @ W + b`` of shape (m, units_out) for ``x`` of shape (m, units_in)."""
        self.x = x
        out = x @ self.params["W"]
        out += self.params["b"]
        return out

    def backward(self, dout):
        """Take dL/dout of shape (m, units_out); return dL/dx of shape (m, units_in).

        Returns None instead when ``input_grad`` is False.
        """
        # NumPy's matmul multiplies a column by a row (a batch of one) in a
        # plain loop, five times slower than the BLAS product np.dot calls
        # for it (the same numbers, to the bit).
        product = np.dot if len(dout) == 1 else np.matmul
        product(self.x.T, dout, out=self.grads["W"])
        np.sum(dout, axis=0, out=self.grads["b"])
        if not self.input_grad:
            return None
        W = self.params["W"]
        if 4 * len(dout) <= W.shape[1]:
            # dout @ W.T makes BLAS copy the whole kernel, transposed, on every call; for
            # a batch short against the units, the transpose of W @ dout.T (a copy of the
            # small result) costs less: 0.44 ms against 0.60 for cifar-cnn's dense1 and a
            # batch of 16 (`convnet bench train --layers`). The same sums of products.
            return np.ascontiguousarray(np.matmul(W, dout.T).T)
        return dout @ W.T


class Activation(Layer):
    """Element-wise ``tanh`` or ``sigmoid`` (ReLU has its own layer, :class:`ReLU`).

    Parameters
    ----------
    name : str
        Layer name.
    function : {'tanh', 'sigmoid'}
        The activation; both derivatives are written in terms of the output.
    """

    FUNCTIONS = ("tanh", "sigmoid")

    def __init__(self, name, function):
        if function not in self.FUNCTIONS:
            raise ValueError(f"function must be 'tanh' or 'sigmoid', received {function!r}")
        super().__init__(name)
        self.function = function
        self.out = None

    def forward(self, x, training=False):
        """Return ``tanh(x)`` or ``sigmoid(x)``, same shape and dtype as ``x``."""
        self.out = np.tanh(x) if self.function == "tanh" else sigmoid(x)
        return self.out

    def backward(self, dout):
        """Return ``dout * f'(x)``: ``1 - y**2`` for tanh, ``y (1 - y)`` for sigmoid."""
        y = self.out
        if self.function == "tanh":
            return dout * (1 - y * y)
        return dout * (y * (1 - y))


def sigmoid(x):
    """Return ``1 / (1 + exp(-x))`` of any shape without overflow (same dtype as ``x``)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class ZeroPadding2D(Layer):
    """Rows and columns of zeros around each image, as Keras's ``ZeroPadding2D``.

    Parameters
    ----------
    name : str
        Layer name.
    pads : tuple
        ``((top, bottom), (left, right))``, non-negative ints.
    """

    def __init__(self, name, pads):
        super().__init__(name)
        self.pads = tuple(tuple(int(p) for p in pair) for pair in pads)

    def output_shape(self, input_shape):
        """Return (h + top + bottom, w + left + right, c) for an input (h, w, c)."""
        (top, bottom), (left, right) = self.pads
        h, w, c = input_shape
        return h + top + bottom, w + left + right, c

    def forward(self, x, training=False):
        """Return ``x`` (m, h, w, c) padded to (m, h + top + bottom, w + left + right, c)."""
        return pad_with(x, self.pads, 0)

    def backward(self, dout):
        """Return the interior of ``dout``, of the input's shape (m, h, w, c)."""
        return crop(dout, self.pads)


class BatchNormalization(Layer):
    """Batch normalisation over the last (channel) axis, as Keras's ``BatchNormalization``.

    Training: each channel is normalised with the batch's mean and biased
    variance over every other axis, ``y = gamma (x - mean) / sqrt(var + eps)
    + beta``, and the moving statistics move towards them,
    ``moving = momentum * moving + (1 - momentum) * batch``. Inference: the
    moving statistics replace the batch's.

    Parameters
    ----------
    name : str
        Layer name.
    channels : int
        Size ``c`` of the last axis.
    dtype : numpy dtype
        Dtype of the parameters and statistics.
    momentum, epsilon : float
        Keras's defaults, 0.99 and 1e-3.
    input_grad : bool
        Whether ``backward`` returns dL/dx (see :class:`convnet.nn.layer.Layer`).

    Attributes
    ----------
    params, grads : dict
        Trainable ``"gamma"`` (ones) and ``"beta"`` (zeros), shape (c,).
    buffers : dict
        Non-trainable ``"moving_mean"`` (zeros) and ``"moving_variance"``
        (ones), shape (c,).
    state : dict
        ``buffers`` itself, under the name that code finding the batch
        normalisation layers of a model (``hasattr(layer, "state")``) uses.
    """

    def __init__(self, name, channels, dtype=np.float32, momentum=0.99, epsilon=1e-3,
                 input_grad=True):
        super().__init__(name, input_grad)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.add_param("gamma", np.ones(channels, dtype))
        self.add_param("beta", np.zeros(channels, dtype))
        self.buffers = {"moving_mean": np.zeros(channels, dtype),
                        "moving_variance": np.ones(channels, dtype)}
        self.normalised = None
        self.inv_std = None
        self.training = False

    @property
    def state(self):
        """The moving statistics: ``buffers`` itself."""
        return self.buffers

    def forward(self, x, training=False):
        """Normalise ``x`` of shape (m, ..., c); returns the same shape.

        In training mode the moving statistics are updated as a side effect.
        """
        axes = tuple(range(x.ndim - 1))
        self.training = training
        if training:
            mean = x.mean(axis=axes)
            centred = x - mean
            variance = np.mean(centred * centred, axis=axes)
            keep = self.momentum
            for key, batch in (("moving_mean", mean), ("moving_variance", variance)):
                moving = self.buffers[key]
                moving[...] = moving * keep + batch * (1 - keep)
        else:
            centred = x - self.buffers["moving_mean"]
            variance = self.buffers["moving_variance"]
        self.inv_std = (1 / np.sqrt(variance + self.epsilon)).astype(x.dtype, copy=False)
        self.normalised = centred * self.inv_std
        return self.normalised * self.params["gamma"] + self.params["beta"]

    def backward(self, dout):
        """Take dL/dy of shape (m, ..., c); return dL/dx, set the grads of gamma and beta.

        In training mode the batch statistics depend on every input, hence
        ``dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))``
        (means over all axes but the last); in inference mode
        ``dx = gamma / sqrt(moving_var + eps) * dy``. Returns None when
        ``input_grad`` is False.
        """
        axes = tuple(range(dout.ndim - 1))
        xhat = self.normalised
        self.grads["beta"] = dout.sum(axis=axes)
        self.grads["gamma"] = (dout * xhat).sum(axis=axes)
        if not self.input_grad:
            return None
        scale = self.params["gamma"] * self.inv_std
        if not self.training:
            return dout * scale
        count = dout.size // dout.shape[-1]
        return scale * (dout - self.grads["beta"] / count
                        - xhat * (self.grads["gamma"] / count))


class Dropout(Layer):
    """Inverted dropout, as Keras's ``Dropout``: active in training only.

    In training each input is kept with probability ``1 - rate`` and scaled
    by ``1 / (1 - rate)``, so the expected output equals the input; at
    inference the layer passes its input through.

    Parameters
    ----------
    name : str
        Layer name.
    rate : float
        Fraction dropped, in [0, 1).
    rng : numpy.random.Generator
        Draws the masks (a generator of the model's own, never global state).
    """

    def __init__(self, name, rate, rng):
        super().__init__(name)
        self.rate = float(rate)
        self.rng = rng
        self.mask = None

    def forward(self, x, training=False):
        """Return ``x * mask`` (training) or ``x``; same shape as ``x``."""
        if not training or self.rate == 0:
            self.mask = None
            return x
        keep = self.rng.random(x.shape) >= self.rate
        self.mask = keep.astype(x.dtype) / x.dtype.type(1 - self.rate)
        return x * self.mask

    def backward(self, dout):
        """Return ``dout * mask`` (the last forward's mask), or ``dout`` if none was drawn."""
        return dout if self.mask is None else dout * self.mask


def pool_before_relu(layers):
    """The order the passes run the layers in: each ReLU after a max pooling that follows it.

    As in ``LeNet5``: max pooling and ReLU commute exactly (values and
    gradients, with the first maximum taking a window's gradient, and
    'same' pooling's -inf padding never winning), and ReLU then touches a
    fraction of the numbers.
    """
    order = list(layers)
    for index in range(len(order) - 1):
        if isinstance(order[index], ReLU) and isinstance(order[index + 1], MaxPool2D):
            order[index], order[index + 1] = order[index + 1], order[index]
    return order
