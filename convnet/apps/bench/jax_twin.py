"""A spec's network in JAX, with a NumPy model's weights, trained by one compiled step.

:func:`jax_network` turns a normalised spec into a pure function of the
weights, the batch statistics and a random key (NHWC throughout, as the
NumPy engine: the weights need no reordering), with Keras's meanings of
``'same'`` padding. :class:`JaxTrainer` compiles the whole training step
(forward, gradients and the optimizer's update) with ``jax.jit``; the
optimizers are Keras's formulas, written out as ``convnet.nn.optim`` does.

Importing this module imports JAX (an optional dependency: ``make
bench-frameworks`` installs it); the benchmark imports it only in the
process that trains with it.
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convnet.apps.bench.twin_layout import conv_geometry, pool_geometry
from convnet.apps.bench.twin_training import is_binary, keras_hyper_parameters, logits_accuracy

_ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}


def _conv(weights, x, geometry):
    """Correlate ``x`` (m, h, w, c_in) with ``kernel`` (kh, kw, c_in, c_out), add ``bias``."""
    out = lax.conv_general_dilated(x, weights["kernel"], geometry.stride, list(geometry.pads),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return out + weights["bias"]


def _pool(x, entry, geometry):
    """Max or average of the windows of ``x`` (m, h, w, c); padded cells never count."""
    window, stride = (1, *geometry.window, 1), (1, *geometry.stride, 1)
    pads = ((0, 0), *geometry.pads, (0, 0))
    if entry["layer"] == "MaxPool2D":
        return lax.reduce_window(x, -jnp.inf, lax.max, window, stride, pads)
    sums = lax.reduce_window(x, 0.0, lax.add, window, stride, pads)
    return sums / jnp.asarray(geometry.counts[None, :, :, None], x.dtype)


def _batch_norm(weights, statistics, x, entry, training):
    """Normalise over every axis but the last; return the output and the new statistics."""
    axes = tuple(range(x.ndim - 1))
    if not training:
        mean, variance = statistics["moving_mean"], statistics["moving_variance"]
    else:
        mean = x.mean(axis=axes)
        variance = jnp.mean(jnp.square(x - mean), axis=axes)
        keep = entry["momentum"]
        statistics = {"moving_mean": statistics["moving_mean"] * keep + mean * (1 - keep),
                      "moving_variance": statistics["moving_variance"] * keep
                      + variance * (1 - keep)}
    out = (x - mean) * lax.rsqrt(variance + entry["epsilon"]) * weights["gamma"]
    return out + weights["beta"], statistics


def _dropout(x, rate, key):
    """Keep each entry of ``x`` with probability ``1 - rate``, scaled by ``1 / (1 - rate)``."""
    keep = jax.random.bernoulli(key, 1 - rate, x.shape)
    return jnp.where(keep, x / (1 - rate), 0.0)


def jax_network(spec):
    """The forward pass of a normalised spec as a pure function.

    Returns
    -------
    callable
        ``forward(weights, statistics, x, key, training) -> (logits,
        statistics)``: ``weights`` and ``statistics`` are dicts by layer name
        (as :func:`split_weights` makes them), ``x`` is (m, h, w, c), ``key``
        a JAX random key for the dropout masks; the logits are (m, k), or
        (m, 1) for a sigmoid output (the output's activation is left to the
        loss).
    """
    entries = spec["layers"]
    shape = tuple(entries[0]["shape"])
    plan = []
    for index, entry in enumerate(entries[1:], start=1):
        kind = entry["layer"]
        geometry = None
        if kind == "Conv2D":
            geometry = conv_geometry(entry, shape)
            shape = geometry.output_shape
        elif kind in ("MaxPool2D", "AveragePool2D"):
            geometry = pool_geometry(entry, shape)
            shape = geometry.output_shape
        elif kind == "ZeroPadding2D":
            (top, bottom), (left, right) = entry["padding"]
            shape = (shape[0] + top + bottom, shape[1] + left + right, shape[2])
        elif kind == "Flatten":
            shape = (int(np.prod(shape)),)
        elif kind == "Dense":
            shape = (entry["units"],)
        plan.append((entry, geometry, index == len(entries) - 1))

    def forward(weights, statistics, x, key, training):
        statistics = dict(statistics)
        for entry, geometry, last in plan:
            kind, name = entry["layer"], entry["name"]
            if kind == "ZeroPadding2D":
                x = jnp.pad(x, ((0, 0), *map(tuple, entry["padding"]), (0, 0)))
            elif kind == "Conv2D":
                x = _conv(weights[name], x, geometry)
            elif kind in ("MaxPool2D", "AveragePool2D"):
                x = _pool(x, entry, geometry)
            elif kind == "BatchNormalization":
                x, statistics[name] = _batch_norm(weights[name], statistics[name], x, entry,
                                                  training)
            elif kind == "ReLU":
                x = jax.nn.relu(x)
            elif kind == "Flatten":
                x = x.reshape(x.shape[0], -1)
            elif kind == "Dropout":
                if training and entry["rate"] > 0:
                    key, mask_key = jax.random.split(key)
                    x = _dropout(x, entry["rate"], mask_key)
            else:
                x = x @ weights[name]["kernel"] + weights[name]["bias"]
            activation = entry.get("activation")
            if kind in ("Conv2D", "Dense") and activation is not None and not last:
                x = _ACTIVATIONS[activation](x)
        return x, statistics

    return forward


def split_weights(weights):
    """Split ``Sequential.get_weights()`` into trainable weights and batch statistics.

    Returns
    -------
    trainable, statistics : dict of str to dict of str to jax.Array
        By layer name, then by weight name (``kernel``, ``bias``, ``gamma``,
        ``beta``; ``moving_mean``, ``moving_variance``).
    """
    trainable, statistics = {}, {}
    for full_name, value in weights.items():
        layer, key = full_name.rsplit("/", 1)
        store = statistics if key.startswith("moving_") else trainable
        store.setdefault(layer, {})[key] = jnp.asarray(value, jnp.float32)
    return trainable, statistics


def _loss(logits, labels, binary):
    """Mean cross-entropy of logits (m, k) against integer labels (m,); binary from a logit."""
    if binary:
        z = logits[:, 0]
        y = labels.astype(z.dtype)
        return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))
    log_probabilities = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probabilities, labels[:, None], axis=1))


def keras_update(name):
    """Keras's update rule of optimizer ``name``, with its default hyper-parameters.

    The formulas are ``convnet.nn.optim``'s, on trees of JAX arrays; the
    hyper-parameters are :func:`~convnet.apps.bench.twin_training.keras_hyper_parameters`.

    Returns
    -------
    init : callable
        ``init(weights) -> state``.
    update : callable
        ``update(weights, grads, state, t) -> (weights, state)``, t the step
        number from 1 (a traced scalar).
    """
    tree_map = jax.tree_util.tree_map
    hyper = keras_hyper_parameters(name)
    lr = hyper["lr"]
    if name == "adam":
        beta1, beta2, epsilon = hyper["beta1"], hyper["beta2"], hyper["epsilon"]

        def update(weights, grads, state, t):
            m, v = state
            m = tree_map(lambda m, g: m + (g - m) * (1 - beta1), m, grads)
            v = tree_map(lambda v, g: v + (g * g - v) * (1 - beta2), v, grads)
            alpha = lr * jnp.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
            weights = tree_map(lambda w, m, v: w - alpha * m / (jnp.sqrt(v) + epsilon),
                               weights, m, v)
            return weights, (m, v)

        return (lambda weights: (tree_map(jnp.zeros_like, weights),
                                 tree_map(jnp.zeros_like, weights))), update
    if name == "rmsprop":
        rho, epsilon = hyper["rho"], hyper["epsilon"]

        def update(weights, grads, velocity, t):
            velocity = tree_map(lambda v, g: rho * v + (1 - rho) * g * g, velocity, grads)
            weights = tree_map(lambda w, g, v: w - lr * g / jnp.sqrt(v + epsilon),
                               weights, grads, velocity)
            return weights, velocity

        return (lambda weights: tree_map(jnp.zeros_like, weights)), update

    # sgd, the one name left: keras_hyper_parameters refused any other.
    def update(weights, grads, state, t):
        return tree_map(lambda w, g: w - lr * g, weights, grads), state

    return (lambda weights: ()), update


class JaxTrainer:
    """A spec's JAX network and Keras's optimizer of a name, trained by a compiled step.

    Parameters
    ----------
    spec : dict
        A normalised spec, turned into a pure function by :func:`jax_network`.
    weights : dict of str to ndarray
        ``Sequential.get_weights()``, split into the trained weights and the
        batch statistics (:func:`split_weights`); JAX arrays need no reordering.
    optimizer : str
        adam, rmsprop or sgd: Keras's update written out (:func:`keras_update`)
        and compiled into the step.
    seed : int
        Seeds the dropout masks.
    """

    def __init__(self, spec, weights, optimizer, seed=0):
        self.forward = jax_network(spec)
        self.binary = is_binary(spec)
        self.weights, self.statistics = split_weights(weights)
        init, update = keras_update(optimizer)
        self.state = init(self.weights)
        self.key = jax.random.PRNGKey(seed)
        self.t = 0
        forward, binary = self.forward, self.binary

        def train_step(weights, statistics, state, key, t, x, labels):
            key, step_key = jax.random.split(key)

            def loss_of(weights):
                logits, new_statistics = forward(weights, statistics, x, step_key, True)
                return _loss(logits, labels, binary), new_statistics

            (loss, statistics), grads = jax.value_and_grad(loss_of, has_aux=True)(weights)
            weights, state = update(weights, grads, state, t)
            return weights, statistics, state, key, loss

        self._step = jax.jit(train_step, donate_argnums=(0, 1, 2))
        self._logits = jax.jit(lambda weights, statistics, x: forward(
            weights, statistics, x, jax.random.PRNGKey(0), False)[0])

    def step(self, X, Y):
        """Train on images ``X`` (m, h, w, c) and integer labels ``Y`` (m,); return the loss.

        The loss is returned as a JAX array, not waited for: steps are
        dispatched while earlier ones still run (see :meth:`wait`).
        """
        self.t += 1
        self.weights, self.statistics, self.state, self.key, loss = self._step(
            self.weights, self.statistics, self.state, self.key, jnp.float32(self.t),
            jnp.asarray(X, jnp.float32), jnp.asarray(Y, jnp.int32))
        return loss

    def wait(self):
        """Block until every dispatched step has finished."""
        jax.block_until_ready(self.weights)

    def logits(self, X, batch_size=500):
        """Inference-mode logits of images ``X`` (m, h, w, c): ndarray (m, k)."""
        return np.concatenate([np.asarray(self._logits(self.weights, self.statistics,
                                                       jnp.asarray(X[start:start + batch_size],
                                                                   jnp.float32)))
                               for start in range(0, len(X), batch_size)])

    def accuracy(self, X, Y):
        """Fraction of images ``X`` whose predicted class is their label ``Y``."""
        return logits_accuracy(self.logits(X), Y, self.binary)

