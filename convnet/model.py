"""LeNet-5 in NumPy: the network of tasks 4 and 5, trainable without TensorFlow.

Layers: conv 6@5x5 same + ReLU -> max pool 2x2/2 -> conv 16@5x5 valid + ReLU ->
max pool 2x2/2 -> flatten -> dense 120 + ReLU -> dense 84 + ReLU -> dense 10,
then softmax. Weights travel in the Keras ``get_weights()`` order and shapes,
so a model trained here loads into the Keras and TensorFlow versions and back.
"""
import numpy as np

from convnet import checkpoint, storage
from convnet.checks import check_count
from convnet.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCrossEntropy
from convnet.memory import shared_zeros

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
# Names of the 10 weight arrays in exchange order: the keys of every LeNet-5
# weights file the project writes (NumPy checkpoints and the TensorFlow and
# Keras trainings' weights.npz alike), so any of them loads anywhere.
WEIGHT_NAMES = ("conv1_kernel", "conv1_bias", "conv2_kernel", "conv2_bias",
                "dense1_kernel", "dense1_bias", "dense2_kernel", "dense2_bias",
                "dense3_kernel", "dense3_bias")
NUM_WEIGHTS = len(WEIGHT_NAMES)


class LeNet5:
    """LeNet-5 with He-normal kernels and zero biases.

    Parameters
    ----------
    seed : int
        Seed of the ``np.random.Generator`` that draws the initial weights;
        the same seed gives identical weights.
    dtype : numpy dtype
        Dtype of weights and activations: float32 for training, float64 for
        gradient checks.
    micro_batch : int
        ``loss_and_grads`` runs larger batches through the network this many
        images at a time and adds up their gradients (weighted by size): the
        same gradient, but each slice's activations and window matrices stay
        in the processor's caches from layer to layer, which makes a batch of
        128 about a quarter faster than one pass over the whole batch.

    Attributes
    ----------
    layers : list
        The layers in order; each has a ``name``, ``params`` and ``grads``.
    loss_layer : SoftmaxCrossEntropy
        The fused softmax + cross-entropy applied to the last layer's logits.
    """

    def __init__(self, seed=0, dtype=np.float32, micro_batch=32):
        check_count("micro_batch", micro_batch)
        self.dtype = np.dtype(dtype)
        self.micro_batch = int(micro_batch)
        rng = np.random.default_rng(seed)
        self.layers = [
            Conv2D("conv1", 5, 1, 6, "same", rng, self.dtype, input_grad=False),
            ReLU("relu1"),
            MaxPool2D("pool1", 2),
            Conv2D("conv2", 5, 6, 16, "valid", rng, self.dtype),
            ReLU("relu2"),
            MaxPool2D("pool2", 2),
            Flatten("flatten"),
            Dense("dense1", 400, 120, rng, self.dtype),
            ReLU("relu3"),
            Dense("dense2", 120, 84, rng, self.dtype),
            ReLU("relu4"),
            Dense("dense3", 84, NUM_CLASSES, rng, self.dtype),
        ]
        self.loss_layer = SoftmaxCrossEntropy()
        self._pass = _pool_before_relu(self.layers)
        self._move_parameters_to_shared_memory()
        self._grad_sums = [np.zeros_like(param) for param in self.parameters()]

    def _move_parameters_to_shared_memory(self):
        """Put every parameter in one flat buffer of anonymous shared memory.

        Processes forked from this one (``convnet.parallel``'s training
        processes) then see every update of the weights without copying them.
        """
        params = self.parameters()
        flat = shared_zeros(sum(param.size for param in params), self.dtype)
        offset = 0
        for (layer, key), param in zip(self._param_slots(), params):
            view = flat[offset:offset + param.size].reshape(param.shape)
            view[...] = param
            layer.params[key] = view
            offset += param.size
        self._flat = flat

    # ------------------------------------------------------------ parameters
    def _param_slots(self):
        """(layer, key) of every parameter, in the weights exchange order."""
        return [(layer, key) for layer in self.layers for key in ("W", "b") if key in layer.params]

    def parameters(self):
        """Return the parameter arrays themselves (not copies), in exchange order."""
        return [layer.params[key] for layer, key in self._param_slots()]

    def flat_parameters(self):
        """Return the one flat buffer every parameter is a view of (exchange order)."""
        return self._flat

    def gradients(self):
        """Return the gradients of the last ``loss_and_grads``, in exchange order."""
        return [layer.grads[key] for layer, key in self._param_slots()]

    def get_weights(self):
        """Return copies of the 10 weight arrays in Keras ``get_weights()`` order.

        Returns
        -------
        list of ndarray
            conv1 kernel (5, 5, 1, 6), bias (6,), conv2 kernel (5, 5, 6, 16),
            bias (16,), dense kernels (400, 120), (120, 84), (84, 10) each
            followed by its bias.
        """
        return [param.copy() for param in self.parameters()]

    def set_weights(self, weights):
        """Copy ``weights`` (the list ``get_weights`` returns) into the model.

        Raises
        ------
        ValueError
            If the list has the wrong length or an array the wrong shape.
        """
        weights = list(weights)
        if len(weights) != NUM_WEIGHTS:
            raise ValueError(f"weights must be a list of {NUM_WEIGHTS} arrays, "
                             f"received {len(weights)}")
        for index, (param, value) in enumerate(zip(self.parameters(), weights)):
            value = np.asarray(value)
            if value.shape != param.shape:
                raise ValueError(f"weights[{index}] must have shape {param.shape}, "
                                 f"received {value.shape}")
            param[...] = value

    # ------------------------------------------------------------ computation
    def _images(self, X):
        """Check images and return them as (m, 28, 28, 1) in the model's dtype."""
        X = np.asarray(X)
        if X.ndim == 3:
            X = X[..., np.newaxis]
        if X.ndim != 4 or X.shape[1:] != IMAGE_SHAPE + (1,):
            raise ValueError("X must have shape (m, 28, 28) or (m, 28, 28, 1), "
                             f"received {X.shape}")
        return X.astype(self.dtype, copy=False)

    def forward(self, X):
        """Return the logits (before softmax) for images ``X``.

        Parameters
        ----------
        X : ndarray of shape (m, 28, 28) or (m, 28, 28, 1)
            Images, values in [0, 1).

        Returns
        -------
        ndarray of shape (m, 10)
            Logits; ``predict_proba`` applies the softmax.
        """
        out = self._images(X)
        for layer in self._pass:
            out = layer.forward(out)
        return out

    def loss_and_grads(self, X, Y):
        """Forward and backward pass on one batch.

        Parameters
        ----------
        X : ndarray of shape (m, 28, 28) or (m, 28, 28, 1)
            Images.
        Y : ndarray of shape (m,)
            Integer labels 0-9.

        Returns
        -------
        loss : float
            Mean cross-entropy of the batch.
        grads : list of ndarray
            Gradient of the loss for every parameter, in exchange order
            (the arrays belong to the model: use them before the next call).
        """
        X = self._images(X)
        labels = _labels(Y, len(X))
        count = len(X)
        if count <= self.micro_batch:
            return self._backpropagate(X, labels), self.gradients()
        total_loss = 0.0
        for sums in self._grad_sums:
            sums[...] = 0
        for start in range(0, count, self.micro_batch):
            stop = min(start + self.micro_batch, count)
            weight = (stop - start) / count
            total_loss += weight * self._backpropagate(X[start:stop], labels[start:stop])
            for sums, grad in zip(self._grad_sums, self.gradients()):
                grad *= weight
                sums += grad
        return total_loss, self._grad_sums

    def _backpropagate(self, X, labels):
        """Forward and backward pass of checked images and labels; return the mean loss."""
        loss = self.loss_layer.forward(self.forward(X), labels)
        dout = self.loss_layer.backward()
        for layer in reversed(self._pass):
            dout = layer.backward(dout)
        return loss

    def predict_proba(self, X, batch_size=500):
        """Return class probabilities of shape (m, 10), computed ``batch_size`` images at a time.

        Parameters
        ----------
        X : ndarray of shape (m, 28, 28) or (m, 28, 28, 1)
            Images.
        batch_size : int
            Images per forward pass: bounds the memory of the intermediate maps.
        """
        X = self._images(X)
        chunks = [SoftmaxCrossEntropy.softmax(self.forward(X[start:start + batch_size]))
                  for start in range(0, len(X), batch_size)]
        if not chunks:
            return np.zeros((0, NUM_CLASSES), dtype=self.dtype)
        return np.concatenate(chunks)

    def evaluate(self, X, Y, batch_size=500):
        """Return ``(mean loss, accuracy)`` of the model on ``X``, ``Y`` in bounded chunks.

        Parameters
        ----------
        X : ndarray of shape (m, 28, 28) or (m, 28, 28, 1)
            Images.
        Y : ndarray of shape (m,)
            Integer labels.
        batch_size : int
            Images per forward pass.
        """
        total_loss, correct = self.evaluation_sums(X, Y, batch_size)
        if len(X) == 0:
            raise ValueError("cannot evaluate on an empty set of images")
        return total_loss / len(X), correct / len(X)

    def evaluation_sums(self, X, Y, batch_size=500):
        """Return ``(summed loss, number correct)`` on ``X``, ``Y`` (both 0 if empty).

        The chunks start at multiples of ``batch_size``, so a set cut at such
        multiples gives each part the same chunks, and the parts' sums add
        up to the whole's (the losses up to float64 rounding).
        """
        X = self._images(X)
        labels = _labels(Y, len(X))
        total_loss, correct = 0.0, 0
        for start in range(0, len(X), batch_size):
            logits = self.forward(X[start:start + batch_size])
            chunk_labels = labels[start:start + batch_size]
            total_loss += float(SoftmaxCrossEntropy.losses(logits, chunk_labels).sum(dtype=np.float64))
            correct += int((logits.argmax(axis=1) == chunk_labels).sum())
        return total_loss, correct

    def feature_maps(self, X):
        """Return every layer's activation for images ``X``, in order.

        Parameters
        ----------
        X : ndarray of shape (m, 28, 28) or (m, 28, 28, 1)
            A few images.

        Returns
        -------
        list of (str, ndarray)
            ``("input", (m, 28, 28, 1))``, then ``(layer.name, activation)`` for
            every layer (conv1 (m, 28, 28, 6) ... dense3 (m, 10) logits), and
            finally ``("softmax", (m, 10))`` probabilities.
        """
        out = self._images(X)
        maps = [("input", out)]
        for layer in self.layers:
            out = layer.forward(out)
            maps.append((layer.name, out))
        maps.append(("softmax", SoftmaxCrossEntropy.softmax(out)))
        return maps

    # ------------------------------------------------------------ files
    def save(self, path, **extra):
        """Save the weights (and any ``extra`` arrays) to an ``.npz`` file atomically.

        The weights are stored under the keys ``WEIGHT_NAMES`` (``conv1_kernel``,
        ``conv1_bias``, ...); ``extra`` arrays (a trainer's optimiser state,
        epoch, ...) under their own keys.
        """
        arrays = dict(zip(WEIGHT_NAMES, self.parameters()))
        storage.save_npz(path, **arrays, **extra)

    def weight_shapes(self):
        """Return ``{name: shape}`` of the 10 weights, in exchange order (``WEIGHT_NAMES``)."""
        return {name: param.shape for name, param in zip(WEIGHT_NAMES, self.parameters())}

    @classmethod
    def load(cls, path, dtype=np.float32):
        """Return a model with the weights saved in ``path`` by ``save``.

        Any ``.npz`` holding the 10 arrays under the keys ``WEIGHT_NAMES`` loads,
        e.g. the ``weights.npz`` of ``convnet train --backend keras`` or ``tf1``.
        The file is read by ``convnet.checkpoint``, which checks every member's
        declared shape and size before reading it and reads only the weights.

        Raises
        ------
        BadCheckpointError
            A ``ValueError`` naming the file if it is missing, not a readable
            ``.npz``, holds members a LeNet-5 file does not hold, or lacks
            finite weights of the right shapes.
        """
        model = cls(seed=0, dtype=dtype)
        model.set_weights(checkpoint.read_weights(path, model.weight_shapes()))
        return model


def read_npz(path):
    """Read every array of a LeNet-5 checkpoint or weights file into a dict.

    The members are checked as ``convnet.checkpoint.read`` does (known names,
    declared shapes and sizes) before any is read.

    Raises
    ------
    BadCheckpointError
        Naming ``path`` if it does not exist or is not a valid LeNet-5 ``.npz`` file.
    """
    return checkpoint.read(path, LeNet5().weight_shapes())


def _pool_before_relu(layers):
    """The order ``forward`` and training run the layers in: each ReLU after the pooling that follows it.

    Max pooling and ReLU commute exactly: ReLU keeps the order of numbers
    and both only select or zero them, so ``pool(relu(z)) == relu(pool(z))``
    to the bit, and ReLU then touches a quarter of the numbers. The
    gradients agree too: where a window's maximum is positive, both orders
    send the gradient to its first maximum; where it is not, ReLU's gradient
    zeroes it either way. ``feature_maps`` keeps the written order, whose
    ReLU outputs are the maps worth drawing.
    """
    order = list(layers)
    for index in range(len(order) - 1):
        if isinstance(order[index], ReLU) and isinstance(order[index + 1], MaxPool2D):
            order[index], order[index + 1] = order[index + 1], order[index]
    return order


def _labels(Y, count):
    """Check integer labels for ``count`` images; return them as an int64 array (count,)."""
    Y = np.asarray(Y)
    if Y.shape != (count,):
        raise ValueError(f"Y must have shape ({count},) (one integer label per image), "
                         f"received {Y.shape}")
    if Y.dtype.kind not in "iu":
        raise TypeError(f"Y must hold integer labels, received dtype {Y.dtype}")
    if count and (Y.min() < 0 or Y.max() >= NUM_CLASSES):
        raise ValueError(f"Y must hold labels 0-{NUM_CLASSES - 1}, "
                         f"received values from {Y.min()} to {Y.max()}")
    return Y.astype(np.int64, copy=False)
