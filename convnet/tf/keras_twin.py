"""The Keras twin of a Sequential NumPy model, and back, weights included.

``to_keras(model)`` builds the same chain of layers in Keras (its Sequential
API, or the Functional API with ``functional=True``), copies every weight
by name (``conv1/kernel`` is the kernel of the Keras layer ``conv1``) and
compiles it with the spec's loss and optimizer. ``from_keras(keras_model)``
reads a Keras chain of the supported layers (Sequential or Functional) into
a spec and a ``Sequential`` holding the same weights.

The two agree layer for layer: Keras's 'same' padding (``ceil(h / s)``
outputs) is what ``convnet.nn.layers`` implements, and a softmax or sigmoid
output is Keras's activation on the last Dense layer.
"""
import numpy as np

from convnet.nn.sequential import KERAS_CLASSES, Sequential, normalise_spec
from convnet.tf.tensorflow_import import import_tensorflow

_SPEC_KINDS = {keras_name: kind for kind, keras_name in KERAS_CLASSES.items()}


def _keras():
    """Return ``tf.keras``, importing TensorFlow only when a twin is asked for."""
    return import_tensorflow().keras


def _activation(name):
    """Keras's name of a spec activation (``None`` is Keras's ``'linear'``)."""
    return name or "linear"


def _keras_layer(K, entry, dtype, seed):
    """Return the Keras layer of one canonical spec entry."""
    kind, name = entry["layer"], entry["name"]
    common = {"name": name, "dtype": dtype}
    if kind == "ZeroPadding2D":
        return K.layers.ZeroPadding2D(tuple(map(tuple, entry["padding"])), **common)
    if kind == "Conv2D":
        return K.layers.Conv2D(entry["filters"], tuple(entry["kernel"]),
                               strides=tuple(entry["stride"]), padding=entry["padding"],
                               activation=_activation(entry["activation"]),
                               kernel_initializer=K.initializers.HeNormal(seed=seed), **common)
    if kind in ("MaxPool2D", "AveragePool2D"):
        pool = K.layers.MaxPooling2D if kind == "MaxPool2D" else K.layers.AveragePooling2D
        return pool(tuple(entry["pool"]), strides=tuple(entry["stride"]),
                    padding=entry["padding"], **common)
    if kind == "BatchNormalization":
        return K.layers.BatchNormalization(axis=-1, momentum=entry["momentum"],
                                           epsilon=entry["epsilon"], **common)
    if kind == "ReLU":
        return K.layers.ReLU(**common)
    if kind == "Flatten":
        return K.layers.Flatten(**common)
    if kind == "Dropout":
        return K.layers.Dropout(entry["rate"], seed=seed, **common)
    return K.layers.Dense(entry["units"], activation=_activation(entry["activation"]),
                          kernel_initializer=K.initializers.HeNormal(seed=seed), **common)


def _variable_name(variable):
    """``kernel`` for a Keras variable whose path is ``conv1/kernel``."""
    return variable.path.split("/")[-1].split(":")[0]


def to_keras(model, functional=False, dtype=None, seed=0):
    """Build the Keras twin of a ``Sequential`` model, with its weights.

    Parameters
    ----------
    model : convnet.nn.sequential.Sequential
        The NumPy model.
    functional : bool
        Build with Keras's Functional API (``K.Model(inputs, outputs)``)
        instead of ``K.Sequential``; the layers are the same.
    dtype : str or numpy dtype, optional
        The twin's dtype (default: the model's), e.g. float64 for
        gradient checks.
    seed : int
        Seed of the initializers and dropout masks of the twin's layers
        (the weights are then overwritten by the model's).

    Returns
    -------
    keras.Model
        Named after the spec, compiled with its loss, its optimizer (Adam
        when the spec names none) and the ``accuracy`` metric. Its
        ``get_weights()`` equals ``list(model.get_weights().values())``.
    """
    K = _keras()
    dtype = np.dtype(dtype or model.dtype).name
    spec = model.spec
    inputs = K.Input(shape=tuple(model.input_shape), dtype=dtype, name="input")
    layers = [_keras_layer(K, entry, dtype, seed) for entry in spec["layers"][1:]]
    if functional:
        outputs = inputs
        for layer in layers:
            outputs = layer(outputs)
        twin = K.Model(inputs=inputs, outputs=outputs, name=spec["name"])
    else:
        twin = K.Sequential([inputs] + layers, name=spec["name"])
    weights = model.get_weights()
    for layer in layers:
        for variable in layer.weights:
            variable.assign(weights[f"{layer.name}/{_variable_name(variable)}"].astype(dtype))
    twin.compile(optimizer=spec["optimizer"] or "adam", loss=spec["loss"], metrics=["accuracy"])
    return twin


def _pair(value):
    """Return a Keras int or tuple as a list of two ints."""
    value = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    return [int(item) for item in value]


def _unsupported(layer, what):
    """Return the error for a Keras layer option the NumPy model does not have."""
    return ValueError(f"Keras layer {layer.name!r} ({type(layer).__name__}): {what} has no "
                      "NumPy equivalent")


def _spec_entry(layer):
    """Return the spec entry of one Keras layer, or raise for what the NumPy model lacks."""
    keras_name = type(layer).__name__
    aliases = {"MaxPool2D": "MaxPooling2D", "AvgPool2D": "AveragePooling2D"}
    kind = _SPEC_KINDS.get(aliases.get(keras_name, keras_name))
    if kind is None:
        raise ValueError(f"Keras layer {layer.name!r}: {keras_name} is not supported; the NumPy "
                         f"model has {', '.join(sorted(_SPEC_KINDS))}")
    config = layer.get_config()
    entry = {"layer": kind, "name": layer.name}
    if config.get("data_format", "channels_last") != "channels_last":
        raise _unsupported(layer, "data_format channels_first")
    if kind in ("Conv2D", "Dense") and not config.get("use_bias", True):
        raise _unsupported(layer, "use_bias=False")
    if kind == "ZeroPadding2D":
        entry["padding"] = [list(pair) for pair in config["padding"]]
    elif kind == "Conv2D":
        if _pair(config["dilation_rate"]) != [1, 1] or config.get("groups", 1) != 1:
            raise _unsupported(layer, "dilation or groups")
        entry.update(filters=config["filters"], kernel=_pair(config["kernel_size"]),
                     stride=_pair(config["strides"]), padding=config["padding"],
                     activation=config["activation"])
    elif kind in ("MaxPool2D", "AveragePool2D"):
        entry.update(pool=_pair(config["pool_size"]),
                     stride=_pair(config["strides"] or config["pool_size"]),
                     padding=config["padding"])
    elif kind == "BatchNormalization":
        axis = config["axis"]
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if axis not in (-1, len(layer.input.shape) - 1) or not (config["center"]
                                                                and config["scale"]):
            raise _unsupported(layer, "normalisation over another axis than the last, "
                                      "or without center and scale,")
        entry.update(momentum=config["momentum"], epsilon=config["epsilon"])
    elif kind == "ReLU":
        if (config.get("max_value") is not None or config.get("negative_slope", 0)
                or config.get("threshold", 0)):
            raise _unsupported(layer, "a capped, leaky or thresholded ReLU")
    elif kind == "Dropout":
        if config.get("noise_shape") is not None:
            raise _unsupported(layer, "a noise_shape")
        entry["rate"] = config["rate"]
    elif kind == "Dense":
        entry.update(units=config["units"], activation=config["activation"])
    return entry


def from_keras(keras_model, dtype=np.float32):
    """Return the ``Sequential`` NumPy twin of a Keras chain of layers, weights included.

    Parameters
    ----------
    keras_model : keras.Model
        A ``K.Sequential`` or a Functional model whose layers form one
        chain, each of a kind the NumPy model has (Conv2D, MaxPooling2D,
        AveragePooling2D, ZeroPadding2D, BatchNormalization, ReLU, Flatten,
        Dense, Dropout), on images of shape (h, w, c).
    dtype : numpy dtype
        Dtype of the NumPy model.

    Returns
    -------
    Sequential
        Named after the Keras model, whose weights (moving statistics
        included) it holds; its spec's optimizer is left unset.

    Raises
    ------
    ValueError
        For a layer with no NumPy equivalent, a model that is not one chain,
        or a spec the NumPy model rejects (e.g. an output that is not a
        softmax or a single sigmoid).
    """
    K = _keras()
    if len(keras_model.inputs) != 1 or len(keras_model.outputs) != 1:
        raise ValueError("the Keras model must have one input and one output")
    layers = [layer for layer in keras_model.layers
              if not isinstance(layer, K.layers.InputLayer)]
    if not isinstance(keras_model, K.Sequential):
        previous = keras_model.inputs[0]
        for layer in layers:
            if layer.input is not previous:
                raise ValueError(f"the Keras model is not one chain of layers: {layer.name!r} "
                                 "does not read the previous layer's output")
            previous = layer.output
    input_shape = [int(size) for size in keras_model.inputs[0].shape[1:]]
    spec = normalise_spec({"name": keras_model.name, "layers": [
        {"layer": "Input", "shape": input_shape}] + [_spec_entry(layer) for layer in layers]})
    model = Sequential(spec, dtype=dtype)
    model.set_weights({f"{layer.name}/{_variable_name(variable)}": np.asarray(variable.numpy())
                       for layer in layers for variable in layer.weights})
    return model


def keras_loss_and_grads(twin, X, labels, training=True):
    """Return the twin's mean loss and its gradients, computed by TensorFlow's GradientTape.

    The last Dense layer's output before its softmax or sigmoid is taken as
    the logits of TensorFlow's own fused cross-entropies, as the NumPy model
    does, so the figures compare like with like.

    Parameters
    ----------
    twin : keras.Model
        A chain of layers ending in a Dense layer (as ``to_keras`` builds).
    X : ndarray of shape (m, h, w, c)
        Images, in the twin's dtype.
    labels : ndarray of shape (m,)
        Integer labels.
    training : bool
        Mode of the layers (batch statistics, dropout).

    Returns
    -------
    loss : float
    grads : dict of str to ndarray
        The gradient of every trainable weight, by name (``conv1/kernel``, ...).
    """
    tf = import_tensorflow()
    layers = [layer for layer in twin.layers if not isinstance(layer, tf.keras.layers.InputLayer)]
    with tf.GradientTape() as tape:
        out = tf.constant(X)
        for layer in layers[:-1]:
            out = layer(out, training=training)
        logits = tf.matmul(out, layers[-1].kernel) + layers[-1].bias
        if logits.shape[1] == 1:
            losses = tf.nn.sigmoid_cross_entropy_with_logits(
                labels=tf.constant(np.asarray(labels)[:, None], logits.dtype), logits=logits)
        else:
            losses = tf.nn.softmax_cross_entropy_with_logits(
                labels=tf.one_hot(labels, logits.shape[1], dtype=logits.dtype), logits=logits)
        loss = tf.reduce_mean(losses)
    variables = twin.trainable_variables
    grads = tape.gradient(loss, variables)
    return float(loss), {"/".join(variable.path.split("/")[-2:]): grad.numpy()
                         for variable, grad in zip(variables, grads)}
