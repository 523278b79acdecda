"""The layers of the NumPy LeNet-5: forward and backward side by side.

Each layer keeps, from its last ``forward`` call, only what its ``backward``
needs (overwritten on every call, never accumulated), and ``backward(dout)``
returns the gradient with respect to the layer's input after storing the
gradients of its parameters. Parameters and their gradients live in two small
dicts, ``params`` and ``grads``, with the same keys.

The convolution and pooling arithmetic is not repeated here: ``Conv2D`` and
``MaxPool2D`` call the operations of ``convnet.ops`` (tasks 0-3).
"""
import numpy as np

from convnet import ops

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


class Conv2D:
    """2-D convolution with stride 1 (``convnet.ops.conv_forward``/``conv_backward``).

    Parameters
    ----------
    name : str
        Layer name, used in ``feature_maps`` and error messages.
    kernel_size : int
        Height and width ``k`` of the square kernels.
    channels_in, channels_out : int
        Channels of the input and number of kernels.
    padding : {"same", "valid"}
        Padding mode, as in ``convnet.ops``.
    rng : numpy.random.Generator
        Draws the He-normal kernels; biases start at zero.
    dtype : numpy dtype
        Dtype of the parameters.
    input_grad : bool
        False for a first layer: ``backward`` then skips the gradient with
        respect to the images (nobody needs it) and returns None.

    Attributes
    ----------
    params, grads : dict
        ``"W"`` of shape (k, k, channels_in, channels_out), ``"b"`` of shape
        (channels_out,) (passed to the ops as a (1, 1, 1, channels_out) view).
    """

    def __init__(self, name, kernel_size, channels_in, channels_out, padding, rng,
                 dtype=np.float32, input_grad=True):
        shape = (kernel_size, kernel_size, channels_in, channels_out)
        fan_in = kernel_size * kernel_size * channels_in
        self.name = name
        self.padding = padding
        self.input_grad = input_grad
        self.params = {"W": he_normal(shape, fan_in, rng, dtype),
                       "b": np.zeros(channels_out, dtype=dtype)}
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self.x = None
        self.workspace = {}

    def _bias4(self):
        return self.params["b"].reshape(1, 1, 1, -1)

    def forward(self, x):
        """Convolve ``x`` of shape (m, h, w, channels_in); returns (m, h', w', channels_out)."""
        self.x = x
        return ops.conv_forward(x, self.params["W"], self._bias4(), _identity,
                                padding=self.padding, stride=(1, 1),
                                workspace=self.workspace)

    def backward(self, dout):
        """Take dL/dz of shape (m, h', w', channels_out); return dL/dx (or None), set grads."""
        dx, dW, db = ops.conv_backward(dout, self.x, self.params["W"], self._bias4(),
                                       padding=self.padding, stride=(1, 1),
                                       need_dA_prev=self.input_grad,
                                       workspace=self.workspace)
        self.grads["W"] = dW
        self.grads["b"] = db.reshape(-1)
        return dx


class MaxPool2D:
    """Max pooling over non-overlapping ``size`` x ``size`` windows (``convnet.ops``).

    Parameters
    ----------
    name : str
        Layer name.
    size : int
        Window height and width, also the stride.
    """

    def __init__(self, name, size=2):
        self.name = name
        self.size = size
        self.params, self.grads = {}, {}
        self.x = None
        self.workspace = {}

    def forward(self, x):
        """Pool ``x`` of shape (m, h, w, c); returns (m, h // size, w // size, c)."""
        self.x = x
        window = (self.size, self.size)
        return ops.pool_forward(x, window, stride=window, mode="max",
                                workspace=self.workspace)

    def backward(self, dout):
        """Route ``dout`` of the pooled shape back to each window's first maximum.

        ``ties="first"``: a window whose maximum occurs several times (common on
        MNIST's saturated strokes) passes its gradient to one entry, as TensorFlow
        does and as the loss's gradient requires.
        """
        window = (self.size, self.size)
        return ops.pool_backward(dout, self.x, window, stride=window, mode="max",
                                 ties="first", workspace=self.workspace)


class ReLU:
    """Element-wise ``max(x, 0)``."""

    def __init__(self, name):
        self.name = name
        self.params, self.grads = {}, {}
        self.positive = None

    def forward(self, x):
        """Return ``max(x, 0)``, same shape as ``x``."""
        self.positive = x > 0
        return np.maximum(x, 0, dtype=x.dtype)

    def backward(self, dout):
        """Pass ``dout`` through where the input was positive, zero elsewhere."""
        return np.multiply(dout, self.positive, dtype=dout.dtype)


class Flatten:
    """Reshape (m, h, w, c) to (m, h * w * c) in C order (as Keras ``Flatten`` on NHWC)."""

    def __init__(self, name):
        self.name = name
        self.params, self.grads = {}, {}
        self.shape = None

    def forward(self, x):
        """Return ``x`` of shape (m, ...) as (m, features)."""
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        """Return ``dout`` of shape (m, features) in the input's shape."""
        return dout.reshape(self.shape)


class Dense:
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

    Attributes
    ----------
    params, grads : dict
        ``"W"`` of shape (units_in, units_out), ``"b"`` of shape (units_out,).
    """

    def __init__(self, name, units_in, units_out, rng, dtype=np.float32):
        self.name = name
        self.params = {"W": he_normal((units_in, units_out), units_in, rng, dtype),
                       "b": np.zeros(units_out, dtype=dtype)}
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self.x = None

    def forward(self, x):
        """Return ``x @ W + b`` of shape (m, units_out) for ``x`` of shape (m, units_in)."""
        self.x = x
        out = x @ self.params["W"]
        out += self.params["b"]
        return out

    def backward(self, dout):
        """Take dL/dout of shape (m, units_out); return dL/dx of shape (m, units_in)."""
        np.matmul(self.x.T, dout, out=self.grads["W"])
        np.sum(dout, axis=0, out=self.grads["b"])
        return dout @ self.params["W"].T


class SoftmaxCrossEntropy:
    """Softmax followed by the mean cross-entropy against integer labels, fused.

    Fusing the two gives the simple, stable gradient ``(softmax - one_hot) / m``
    with respect to the logits.
    """

    name = "softmax"

    def __init__(self):
        self.probs = None
        self.labels = None

    @staticmethod
    def softmax(logits):
        """Row-wise softmax of ``logits`` of shape (m, k); returns (m, k)."""
        shifted = logits - logits.max(axis=1, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=1, keepdims=True)
        return shifted

    @staticmethod
    def losses(logits, labels):
        """Cross-entropy of each row: ``logsumexp(logits) - logits[label]``, shape (m,)."""
        top = logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
        return log_norm - logits[np.arange(len(labels)), labels]

    def forward(self, logits, labels):
        """Return the mean loss (float) of ``logits`` (m, k) against ``labels`` (m,) ints."""
        self.labels = labels
        self.probs = self.softmax(logits)
        return float(self.losses(logits, labels).mean())

    def backward(self):
        """Return dL/dlogits of shape (m, k) for the last ``forward``."""
        dlogits = self.probs.copy()
        dlogits[np.arange(len(self.labels)), self.labels] -= 1
        dlogits /= len(self.labels)
        return dlogits
