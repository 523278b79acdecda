"""LeNet-5's exchange-format weights in either TensorFlow engine, and the TensorFlow names.

``predict_proba(weights, X, engine)`` gives the softmax output of the Keras
model or of task 4's graph for the same exchange-format weights
(``keras_predict_proba`` and ``tf1_predict_proba`` are it for one engine).
The rest lives in ``convnet.tf.exchange`` (the exchange format, images,
labels, run files), ``convnet.tf.graph_training`` (task 4's graph),
``convnet.tf.keras_training`` (the Keras twin of any spec) and
``convnet.tf.backends`` (the backends of ``convnet.train``), and is read here
by earlier callers under the same names.
"""
import functools

from convnet.nn import zoo  # noqa: F401 -- read here by earlier callers
from convnet.nn.sequential import normalise_spec  # noqa: F401 -- likewise
from convnet.nn.zoo import check_fits  # noqa: F401 -- likewise
from convnet.tf.exchange import (  # noqa: F401 -- likewise
    EVAL_BATCH,
    EXCHANGE_NAMES,
    EXCHANGE_SHAPES,
    as_images,
    check_weights,
    set_seeds,
    tf,
    weights_arrays,
)
from convnet.tf.graph_training import (  # noqa: F401 -- likewise
    TF1LeNet5,
    tf1_get_weights,
    tf1_set_weights,
    train_tf1,
)
from convnet.tf.keras_training import (  # noqa: F401 -- likewise
    build_keras,
    evaluate_keras,
    keras_get_weights,
    keras_model,
    keras_set_weights,
    keras_targets,
    train_keras,
)


def predict_proba(weights, X, engine="keras", batch_size=EVAL_BATCH):
    """Softmax output of LeNet-5 with the given weights, in one engine.

    Parameters
    ----------
    weights : list of 10 ndarrays
        Exchange format.
    X : ndarray of shape (m, 28, 28, 1) or (m, 28, 28)
    engine : str
        ``keras`` (the Keras model) or ``tf1`` (task 4's graph).
    batch_size : int
        Images per forward pass.

    Returns
    -------
    ndarray of shape (m, 10)
    """
    if engine == "tf1":
        with TF1LeNet5(weights) as network:
            return network.predict_proba(X, batch_size)
    if engine != "keras":
        raise ValueError(f"engine must be keras or tf1, received {engine!r}")
    return keras_model(weights).predict(as_images(X), batch_size=batch_size, verbose=0)


keras_predict_proba = functools.partial(predict_proba, engine="keras")
tf1_predict_proba = functools.partial(predict_proba, engine="tf1")
