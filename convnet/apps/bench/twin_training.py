"""What the PyTorch and JAX twins train with alike: Keras's optimizers and the accuracy.

Each twin trains with its framework's own optimizer of the spec's name,
given the hyper-parameters Keras uses by default: the NumPy engine's
optimizers (``convnet.nn.optim``) hold the same defaults, so they are read
from there. Neither framework is imported here.
"""
import numpy as np

from convnet.nn.optim import OPTIMIZERS


def keras_hyper_parameters(name):
    """Keras's default hyper-parameters of the optimizer ``name``.

    Parameters
    ----------
    name : str
        ``"adam"``, ``"rmsprop"`` or ``"sgd"``.

    Returns
    -------
    dict of str to float or bool
        Adam: ``lr`` 0.001, ``beta1`` 0.9, ``beta2`` 0.999, ``epsilon``
        1e-7; RMSprop: ``lr`` 0.001, ``rho`` 0.9, ``epsilon`` 1e-7 (and no
        momentum, not centred); SGD: ``lr`` 0.01 (and no momentum).

    Raises
    ------
    ValueError
        Another name.
    """
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be adam, rmsprop or sgd, received {name!r}")
    # An optimiser of no parameters costs nothing and reports its defaults.
    hyper = OPTIMIZERS[name]([]).config()
    del hyper["name"]
    return hyper


def is_binary(spec):
    """Whether a normalised spec ends in one sigmoid unit (one logit) rather than softmax."""
    return spec["layers"][-1]["activation"] == "sigmoid"


def logits_accuracy(logits, Y, binary):
    """Fraction of the rows of ``logits`` (m, k) whose predicted class is their label ``Y`` (m,).

    With ``binary``, ``logits`` is (m, 1) and a positive logit predicts class 1.
    """
    predicted = (logits[:, 0] > 0) if binary else logits.argmax(axis=1)
    return float(np.mean(predicted == np.asarray(Y)))
