"""The TensorFlow side under the names its earlier callers use.

The code lives in ``convnet.tf.exchange`` (LeNet-5's exchange format, images,
labels, run files), ``convnet.tf.graph_training`` (task 4's graph),
``convnet.tf.keras_training`` (the Keras twin of any spec) and
``convnet.tf.backends`` (the backends of ``convnet.train``).
"""
from convnet.nn import zoo  # noqa: F401 -- read here by earlier callers
from convnet.nn.sequential import normalise_spec  # noqa: F401 -- likewise
from convnet.nn.zoo import check_fits  # noqa: F401 -- likewise
from convnet.tf.exchange import (  # noqa: F401 -- likewise
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
    tf1_predict_proba,
    tf1_set_weights,
    train_tf1,
)
from convnet.tf.keras_training import (  # noqa: F401 -- likewise
    build_keras,
    evaluate_keras,
    keras_get_weights,
    keras_model,
    keras_predict_proba,
    keras_set_weights,
    keras_targets,
    train_keras,
)
