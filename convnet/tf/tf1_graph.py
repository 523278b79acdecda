"""A model spec as a TensorFlow graph (``tensorflow.compat.v1``), from ``tf.nn`` ops only.

``build_logits(spec, x)`` lays out the layers of a spec (see
``convnet.nn.sequential``) on an input tensor the way task 4 writes LeNet-5 by
hand: ``tf.compat.v1`` variables, ``tf.nn`` ops, no Keras. Each layer with
weights gets a variable scope named after it, holding ``kernel`` (He-normal:
``variance_scaling_initializer(scale=2.0)``, whose compat.v1 default is a
normal truncated at two standard deviations and rescaled so the weights
have a standard deviation of sqrt(2 / fan_in), the distribution of Keras's
HeNormal) and ``bias`` (zeros), created in that order, so the trainable
variables come in the order of Keras's ``get_weights()``.

Supported layers: ``ZeroPadding2D``, ``Conv2D`` (any stride; 'same' gives
``ceil(h / stride)`` rows as in Keras), ``MaxPool2D`` and ``AveragePool2D``
('same' padding never selects or counts a padded cell, as in Keras),
``ReLU``, ``Flatten`` (C order, as Keras's) and ``Dense``; activations
relu, tanh, sigmoid, and the output's softmax or sigmoid, which is left
to the loss (the function returns logits). BatchNormalization and Dropout
change between training and inference, which a plain graph of this kind
does not model: a spec holding one is refused with a ``ValueError``.
"""
import math

SUPPORTED = ("ZeroPadding2D", "Conv2D", "MaxPool2D", "AveragePool2D", "ReLU", "Flatten", "Dense")
_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}


def check_supported(spec):
    """Raise ValueError naming the first layer of the canonical ``spec`` the graph lacks."""
    for index, entry in enumerate(spec["layers"][1:], start=1):
        if entry["layer"] not in SUPPORTED:
            raise ValueError(f"layer {index} ({entry['name']!r}, {entry['layer']}) has no "
                             f"TensorFlow graph equivalent here; the graph builder supports "
                             f"{', '.join(SUPPORTED)}")


def _variables(tf, name, kernel_shape, dtype):
    """Create a He-normal ``kernel`` and a zero ``bias`` in the variable scope ``name``."""
    with tf.variable_scope(name):
        kernel = tf.get_variable("kernel", shape=kernel_shape, dtype=dtype,
                                 initializer=tf.variance_scaling_initializer(scale=2.0))
        bias = tf.get_variable("bias", shape=kernel_shape[-1:], dtype=dtype,
                               initializer=tf.zeros_initializer())
    return kernel, bias


def _activate(tf, Z, activation):
    """Apply a hidden activation (None leaves Z as it is)."""
    if activation is None:
        return Z
    return getattr(tf.nn, _ACTIVATIONS[activation])(Z)


def build_logits(spec, x):
    """Lay out the layers of ``spec`` on ``x``; return the logits and the variables.

    Parameters
    ----------
    spec : dict
        A canonical spec (``convnet.nn.sequential.normalise_spec``), of layers
        listed in ``SUPPORTED``.
    x : tf.Tensor of shape (m, h, w, c)
        The input images, of the spec's input shape (m may be None).

    Returns
    -------
    logits : tf.Tensor of shape (m, k)
        The output Dense layer before its softmax (k classes) or sigmoid
        (k = 1).
    variables : list of tf.Variable
        Kernel then bias of each Conv2D and Dense layer, in layer order.

    Raises
    ------
    ValueError
        For a layer the graph does not support (see ``check_supported``).
    """
    from convnet.tf.tensorflow_import import import_tensorflow
    tf = import_tensorflow().compat.v1
    check_supported(spec)
    out, variables = x, []
    last = spec["layers"][-1]
    for entry in spec["layers"][1:]:
        kind, name = entry["layer"], entry["name"]
        if kind == "ZeroPadding2D":
            out = tf.pad(out, [[0, 0], *entry["padding"], [0, 0]], name=name)
        elif kind == "Conv2D":
            kh, kw = entry["kernel"]
            kernel, bias = _variables(tf, name, (kh, kw, int(out.shape[-1]), entry["filters"]),
                                      x.dtype)
            variables += [kernel, bias]
            out = tf.nn.conv2d(out, kernel, [1, *entry["stride"], 1],
                               entry["padding"].upper()) + bias
            out = _activate(tf, out, entry["activation"])
        elif kind in ("MaxPool2D", "AveragePool2D"):
            pool = tf.nn.max_pool2d if kind == "MaxPool2D" else tf.nn.avg_pool2d
            out = pool(out, ksize=entry["pool"], strides=entry["stride"],
                       padding=entry["padding"].upper(), name=name)
        elif kind == "ReLU":
            out = tf.nn.relu(out, name=name)
        elif kind == "Flatten":
            size = math.prod(int(dim) for dim in out.shape[1:])
            out = tf.reshape(out, (-1, size), name=name)
        else:
            kernel, bias = _variables(tf, name, (int(out.shape[-1]), entry["units"]), x.dtype)
            variables += [kernel, bias]
            out = tf.matmul(out, kernel) + bias
            if entry is not last:
                out = _activate(tf, out, entry["activation"])
    return out, variables
