"""NumPy LeNet-5 weights run unchanged in Keras (task 5) and the TF graph (task 4), and back.

The comparison uses the full 10,000-image validation split: every engine must
give the same probabilities to within 1e-4.
"""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

from convnet.nn.lenet5 import LeNet5
from convnet.nn.optim import Adam
from convnet.nn.threads import blas_threads
from convnet.tf import tf_training
from convnet.training.trainer import train_epoch

TOLERANCE = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """NumPy's small products run fastest on one BLAS thread (see convnet.training.trainer)."""
    with blas_threads(1):
        yield


@pytest.fixture(scope="module")
def trained(mnist):
    """A NumPy LeNet-5 after 40 Adam steps (batch 32), and its validation probabilities."""
    X_train, Y_train, X_valid = mnist[0], mnist[1], mnist[2]
    model = LeNet5(seed=0)
    train_epoch(model, Adam(model.parameters()), X_train[:1280], Y_train[:1280], 32, 0, 1)
    return model, model.predict_proba(X_valid)


def test_weight_files_share_their_keys(tmp_path):
    """A weights.npz of the TensorFlow trainings loads as a NumPy checkpoint."""
    from convnet.nn.lenet5 import WEIGHT_NAMES
    assert tuple(tf_training.EXCHANGE_NAMES) == WEIGHT_NAMES
    weights = list(LeNet5(seed=3).get_weights().values())
    path = tmp_path / "weights.npz"
    np.savez(path, **dict(zip(tf_training.EXCHANGE_NAMES, weights)))
    from convnet.training.trainer import load_model
    loaded = list(load_model(path)[0].get_weights().values())
    assert all(np.array_equal(a, b) for a, b in zip(loaded, weights))


def max_difference(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def test_numpy_weights_in_keras_and_back(trained, mnist):
    model, numpy_probs = trained
    X_valid = mnist[2]
    keras = tf_training.keras_model(list(model.get_weights().values()))
    keras_probs = keras.predict(X_valid[..., None], batch_size=1000, verbose=0)
    assert max_difference(keras_probs, numpy_probs) < TOLERANCE
    assert all(np.array_equal(a, b) for a, b in
               zip(tf_training.keras_get_weights(keras), list(model.get_weights().values())))
    # Train the Keras copy a little, then bring its weights back to NumPy.
    one_hot = np.eye(10, dtype=np.float32)
    keras.train_on_batch(mnist[0][:32, ..., None], one_hot[mnist[1][:32]])
    returned = LeNet5()
    returned.set_weights(keras.get_weights())
    keras_probs = keras.predict(X_valid[..., None], batch_size=1000, verbose=0)
    assert max_difference(returned.predict_proba(X_valid), keras_probs) < TOLERANCE


def test_numpy_weights_in_tf_graph_and_back(trained, mnist):
    model, numpy_probs = trained
    X_valid = mnist[2]
    with tf_training.TF1LeNet5(list(model.get_weights().values())) as network:
        assert max_difference(network.predict_proba(X_valid), numpy_probs) < TOLERANCE
        network.train_step(mnist[0][:32], mnist[1][:32])
        returned = LeNet5()
        returned.set_weights(tf_training.tf1_get_weights(network.session))
        graph_probs = network.predict_proba(X_valid)
    assert max_difference(returned.predict_proba(X_valid), graph_probs) < TOLERANCE


@pytest.mark.parametrize("steps", [0, 40])
def test_gradients_agree_with_tensorflow(steps, mnist):
    """NumPy's backward pass against TensorFlow's automatic differentiation of Keras' model.

    MNIST's saturated strokes make ties for the maximum in many of pool1's windows.
    TensorFlow (and the loss's true subgradient) gives such a window's gradient to its
    first maximum only; the curriculum's rule (every tied entry) would change conv1's
    gradient by ~5 %. ``MaxPool2D`` therefore calls ``pool_backward(..., ties="first")``.
    """
    import tensorflow as tf
    X_train, Y_train = mnist[0], mnist[1]
    model = LeNet5(seed=0)
    train_epoch(model, Adam(model.parameters()), X_train[:32 * steps], Y_train[:32 * steps],
                32, 0, 1)
    X, Y = X_train[2000:2032], Y_train[2000:2032]
    _, grads = model.loss_and_grads(X, Y)
    keras = tf_training.keras_model(list(model.get_weights().values()))
    with tf.GradientTape() as tape:
        probs = keras(X[..., None], training=True)
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(Y, probs))
    keras_grads = tape.gradient(loss, keras.trainable_weights)
    for index, (ours, theirs) in enumerate(zip(grads, keras_grads)):
        theirs = theirs.numpy()
        scale = np.abs(theirs).max()
        assert ours.shape == theirs.shape
        assert max_difference(ours, theirs) < 1e-4 * scale, index
