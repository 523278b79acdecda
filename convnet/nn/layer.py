"""The protocol every layer of the NumPy networks follows.

A layer owns three dicts of arrays and three methods:

- ``params``: the trained arrays (a convolution's ``"W"`` and ``"b"``);
- ``grads``: their gradients from the last ``backward``, same keys and shapes;
- ``buffers``: arrays that are part of the model but not trained, such as
  batch normalisation's moving mean and variance (saved and loaded with
  the weights, never given to an optimizer);
- ``output_shape(input_shape)``: the shape of one example's output (no
  batch axis) for one example's input, for shape inference;
- ``forward(x, training=False)``: the output for a batch ``x``, keeping
  what ``backward`` needs (overwritten by every call, never accumulated);
- ``backward(dout)``: given dL/d(output) of the last ``forward``, stores the
  parameters' gradients in ``grads`` and returns dL/d(input).

Whether a layer returns dL/d(input) is fixed when it is built
(``input_grad``): the first layer with parameters of a network is built
without it, since nobody needs the gradient of the images and it is often
half of that layer's backward work.

The losses (:mod:`convnet.nn.losses`) follow the same base with the labels
as a second input: ``forward(logits, labels)`` returns the mean loss and
``backward()`` returns dL/d(logits).
"""
import numpy as np


class Layer:
    """Base of every layer: a name, ``params``/``grads``/``buffers`` and the three methods.

    Parameters
    ----------
    name : str
        Unique within a network: names the layer's output and its weights
        (``conv1/kernel``).
    input_grad : bool
        Whether ``backward`` returns dL/d(input); when False it returns
        None and skips that work.

    Attributes
    ----------
    params, grads : dict of str to ndarray
        Trained arrays and their gradients, same keys and shapes.
    buffers : dict of str to ndarray
        Arrays kept with the weights but not trained.
    """

    def __init__(self, name, input_grad=True):
        self.name = name
        self.input_grad = input_grad
        self.params = {}
        self.grads = {}
        self.buffers = {}

    def add_param(self, key, value):
        """Register a trained array ``value`` under ``key``, with a zero gradient of its shape."""
        self.params[key] = value
        self.grads[key] = np.zeros_like(value)

    def output_shape(self, input_shape):
        """Return one example's output shape; element-wise layers keep ``input_shape``."""
        return tuple(input_shape)

    def forward(self, x, training=False):
        """Return the output for a batch ``x`` of shape (m, ...); ``training`` as in the subclass."""
        raise NotImplementedError

    def backward(self, dout):
        """Take dL/d(output) of the last ``forward``; set ``grads``, return dL/d(input) or None."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"
