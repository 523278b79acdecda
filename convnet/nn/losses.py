"""The output activations fused with their losses: softmax and sigmoid cross-entropy.

A network's last Dense layer returns logits; the loss applies the output's
activation and the cross-entropy in one step, whose gradient with respect to
the logits is simple and stable, ``(probabilities - targets) / m``.

Each loss is a :class:`convnet.nn.layer.Layer` whose input is the logits
and the labels: ``forward(logits, labels)`` returns the mean loss (a float)
and keeps what ``backward()`` needs; ``backward()`` returns dL/d(logits).
``probabilities(logits)`` and ``losses(logits, labels)`` (one loss per
example) are pure functions of their arguments.
"""
import numpy as np

from convnet.nn.layer import Layer
from convnet.nn.layers import sigmoid


class Loss(Layer):
    """Base of the fused losses: ``forward(logits, labels)``, ``backward()``.

    Parameters
    ----------
    name : str, optional
        Default: the name of the output activation (``"softmax"``,
        ``"sigmoid"``), under which ``Sequential.outputs`` gives the
        probabilities.

    Attributes
    ----------
    probs : ndarray of shape (m, k)
        The probabilities of the last ``forward``.
    labels : ndarray of shape (m,)
        Its integer labels.
    """

    activation = None

    def __init__(self, name=None):
        super().__init__(name or self.activation)
        self.probs = None
        self.labels = None

    @staticmethod
    def probabilities(logits):
        """Return the probabilities of ``logits`` (m, k): same shape."""
        raise NotImplementedError

    @staticmethod
    def losses(logits, labels):
        """Return the loss of each row of ``logits`` (m, k) against ``labels`` (m,): shape (m,)."""
        raise NotImplementedError

    def forward(self, logits, labels):
        """Return the mean loss (float) of ``logits`` (m, k) against ``labels`` (m,) ints."""
        self.labels = labels
        self.probs = self.probabilities(logits)
        return float(self.losses(logits, labels).mean())

    def backward(self):
        """Return dL/dlogits of shape (m, k) for the last ``forward``."""
        raise NotImplementedError


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by the mean cross-entropy against integer labels, fused.

    Fusing the two gives the simple, stable gradient ``(softmax - one_hot) / m``
    with respect to the logits.
    """

    activation = "softmax"

    @staticmethod
    def _exponentials(logits):
        """What the softmax and the losses share: the row maxima (m, 1),
        ``exp(logits - maxima)`` (m, k), a new array, and its row sums (m, 1)."""
        top = logits.max(axis=1, keepdims=True)
        exponentials = logits - top
        np.exp(exponentials, out=exponentials)
        return top, exponentials, exponentials.sum(axis=1, keepdims=True)

    @staticmethod
    def _row_losses(logits, labels, top, sums):
        """``logsumexp(logits) - logits[label]`` of each row, from ``_exponentials``."""
        return np.log(sums[:, 0]) + top[:, 0] - logits[np.arange(len(labels)), labels]

    @staticmethod
    def softmax(logits):
        """Row-wise softmax of ``logits`` of shape (m, k); returns (m, k)."""
        _, exponentials, sums = SoftmaxCrossEntropy._exponentials(logits)
        exponentials /= sums
        return exponentials

    @staticmethod
    def probabilities(logits):
        """Return the row-wise softmax of ``logits`` (m, k): the model's probabilities."""
        return SoftmaxCrossEntropy.softmax(logits)

    @staticmethod
    def losses(logits, labels):
        """Cross-entropy of each row: ``logsumexp(logits) - logits[label]``, shape (m,)."""
        top, _, sums = SoftmaxCrossEntropy._exponentials(logits)
        return SoftmaxCrossEntropy._row_losses(logits, labels, top, sums)

    def forward(self, logits, labels):
        """Return the mean loss (float) of ``logits`` (m, k) against ``labels`` (m,) ints.

        The probabilities and the losses share one pass of exponentials.
        """
        self.labels = labels
        top, exponentials, sums = self._exponentials(logits)
        exponentials /= sums
        self.probs = exponentials
        return float(self._row_losses(logits, labels, top, sums).mean())

    def backward(self):
        """Return dL/dlogits of shape (m, k) for the last ``forward``."""
        dlogits = self.probs.copy()
        dlogits[np.arange(len(self.labels)), self.labels] -= 1
        dlogits /= len(self.labels)
        return dlogits


class SigmoidBinaryCrossEntropy(Loss):
    """One sigmoid unit followed by the mean binary cross-entropy, fused, from logits.

    The loss of a logit ``z`` and a label ``y`` in {0, 1} is written
    ``max(z, 0) - z y + log(1 + exp(-|z|))``, which never overflows, and
    its gradient with respect to ``z`` is ``(sigmoid(z) - y) / m``.
    """

    activation = "sigmoid"

    @staticmethod
    def probabilities(logits):
        """Return ``sigmoid(logits)`` of shape (m, 1) for logits (m, 1)."""
        return sigmoid(logits)

    @staticmethod
    def losses(logits, labels):
        """Binary cross-entropy of each row of ``logits`` (m, 1) against labels (m,): (m,)."""
        z = logits[:, 0]
        return np.maximum(z, 0) - z * labels + np.log1p(np.exp(-np.abs(z)))

    def backward(self):
        """Return dL/dlogits of shape (m, 1) for the last ``forward``."""
        dlogits = self.probs - self.labels[:, np.newaxis].astype(self.probs.dtype)
        dlogits /= len(self.labels)
        return dlogits


LOSS_OF_ACTIVATION = {"softmax": SoftmaxCrossEntropy, "sigmoid": SigmoidBinaryCrossEntropy}
