"""The NumPy Sequential models against their Keras twins: probabilities, BN statistics, gradients."""
import numpy as np
import pytest
from reference_ops import load_task_file

from convnet.nn.sequential import Sequential
from convnet.nn.zoo import NAMES, load_spec

tf = pytest.importorskip("tensorflow")
K = tf.keras

from convnet.tf.keras_twin import from_keras, keras_loss_and_grads, to_keras


def images_for(model, mnist, count, seed=0):
    """MNIST validation images for 28x28x1 models, uniform [0, 1] images otherwise."""
    if model.input_shape == (28, 28, 1):
        return mnist[2][:count, :, :, np.newaxis]
    return np.random.default_rng(seed).random((count,) + model.input_shape).astype(np.float32)


def labels_for(model, count, seed=1):
    return np.random.default_rng(seed).integers(0, model.num_classes, count)


def trained_looking(model, seed=5):
    """Give BN layers moving statistics, scales and shifts away from their initial values."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, "state"):
            shape = layer.state["moving_mean"].shape
            layer.state["moving_mean"][...] = rng.normal(0, 0.3, shape)
            layer.state["moving_variance"][...] = rng.uniform(0.5, 2.0, shape)
            layer.params["gamma"][...] = rng.uniform(0.5, 2.0, shape)
            layer.params["beta"][...] = rng.normal(0, 0.3, shape)
    return model


@pytest.mark.parametrize("name", NAMES)
def test_probabilities_agree_with_the_keras_twin(name, mnist):
    model = trained_looking(Sequential(load_spec(name), seed=3))
    twin = to_keras(model, functional=name == "signs-cnn")
    X = images_for(model, mnist, 256 if model.input_shape == (28, 28, 1) else 32)
    ours = model.predict_proba(X)
    theirs = twin(X, training=False).numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_weights_summary_and_spec_survive_the_round_trip(name):
    model = trained_looking(Sequential(load_spec(name), seed=4))
    twin = to_keras(model)
    for ours, theirs in zip(model.get_weights().values(), twin.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    layers = [layer for layer in twin.layers if not isinstance(layer, K.layers.InputLayer)]
    rows = model.summary().rows
    assert [row.name for row in rows] == [layer.name for layer in layers]
    assert [row.params for row in rows] == [layer.count_params() for layer in layers]
    assert [(None,) + row.output_shape for row in rows] == [
        tuple(layer.output.shape) for layer in layers]
    back = from_keras(twin)
    assert back.spec["layers"] == model.spec["layers"]
    for name_, value in model.get_weights().items():
        np.testing.assert_array_equal(back.get_weights()[name_], value)


def test_from_keras_reads_a_functional_model_written_as_the_course_does():
    rng = np.random.default_rng(0)
    inputs = K.Input(shape=(64, 64, 3))
    Z1 = K.layers.Conv2D(8, (4, 4), strides=(1, 1), padding="same")(inputs)
    A1 = K.layers.ReLU()(Z1)
    P1 = K.layers.MaxPool2D(pool_size=(8, 8), strides=(8, 8), padding="same")(A1)
    Z2 = K.layers.Conv2D(16, (2, 2), strides=(1, 1), padding="same")(P1)
    A2 = K.layers.ReLU()(Z2)
    P2 = K.layers.MaxPool2D(pool_size=(4, 4), strides=(4, 4), padding="same")(A2)
    F = K.layers.Flatten()(P2)
    outputs = K.layers.Dense(6, activation="softmax")(F)
    keras_model = K.Model(inputs=inputs, outputs=outputs)
    # Non-zero biases so a bias that goes astray shows.
    keras_model.set_weights([rng.normal(0, 0.5, w.shape) for w in keras_model.get_weights()])
    model = from_keras(keras_model)
    assert model.summary().total == 1310
    X = rng.random((16, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict_proba(X), keras_model(X).numpy(), atol=1e-5)


def test_from_keras_reads_the_task_5_model(mnist):
    keras_model = load_task_file("5-lenet5").lenet5(K.Input((28, 28, 1)))
    model = from_keras(keras_model)
    assert model.summary().total == 61706
    # Task 5 builds exactly the zoo's lenet5: layers, names, shapes, activations.
    assert model.spec["layers"] == Sequential(load_spec("lenet5")).spec["layers"]
    X = mnist[2][:128, :, :, np.newaxis]
    np.testing.assert_allclose(model.predict_proba(X), keras_model(X).numpy(), atol=1e-5)


def test_from_keras_rejects_what_numpy_lacks():
    inputs = K.Input(shape=(8, 8, 1))
    hidden = K.layers.Conv2D(2, 3, dilation_rate=2)(inputs)
    outputs = K.layers.Dense(3, activation="softmax")(K.layers.Flatten()(hidden))
    with pytest.raises(ValueError, match="dilation"):
        from_keras(K.Model(inputs, outputs))
    outputs = K.layers.Dense(3, activation="softmax")(K.layers.GlobalAveragePooling2D()(inputs))
    with pytest.raises(ValueError, match="GlobalAveragePooling2D is not supported"):
        from_keras(K.Model(inputs, outputs))
    flat = K.layers.Flatten()(inputs)
    outputs = K.layers.Dense(3, activation="softmax", use_bias=False)(flat)
    with pytest.raises(ValueError, match="use_bias=False has no NumPy equivalent"):
        from_keras(K.Model(inputs, outputs))
    outputs = K.layers.Dense(3, activation="softmax", name="out")(K.layers.Add(name="add")(
        [flat, flat]))
    with pytest.raises(ValueError, match="not one chain of layers: 'add' does not read"):
        from_keras(K.Model(inputs, outputs))
    outputs = K.layers.Dense(3, activation="relu")(flat)
    with pytest.raises(ValueError, match="last layer must be Dense with activation 'softmax'"):
        from_keras(K.Model(inputs, outputs))


def test_batch_normalization_in_training_mode_matches_keras():
    model = trained_looking(Sequential(load_spec("happy-model"), seed=2))
    twin = to_keras(model)
    X = np.random.default_rng(3).random((8, 64, 64, 3)).astype(np.float32)
    for _ in range(2):   # the second batch starts from updated moving statistics
        ours = model.loss_layer.probabilities(model.forward(X, training=True))
        theirs = twin(X, training=True).numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
        for name, value in model.get_weights().items():
            if "moving" in name:
                np.testing.assert_allclose(value, twin.get_layer("bn1").get_weights()[
                    2 if name.endswith("mean") else 3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_agree_with_gradient_tape(name, mnist):
    model = trained_looking(Sequential(load_spec(name), seed=6, dtype=np.float64))
    for param in model.parameters():   # non-zero biases, so their gradients matter
        if param.ndim == 1:
            param += np.random.default_rng(7).normal(0, 0.1, param.shape)
    twin = to_keras(model, dtype="float64")
    X = images_for(model, mnist, 6).astype(np.float64)
    Y = labels_for(model, 6)
    # Dropout's masks cannot be shared with Keras: models with dropout are
    # compared in inference mode (the layer's own check fixes its mask).
    training = not any(entry["layer"] == "Dropout" for entry in model.spec["layers"])
    loss, grads = model.loss_and_grads(X, Y, training=training)
    keras_loss, keras_grads = keras_loss_and_grads(twin, X, Y, training)
    assert loss == pytest.approx(keras_loss, rel=1e-10)
    assert sorted(keras_grads) == sorted(model.parameter_names())
    for param_name, grad in zip(model.parameter_names(), grads):
        np.testing.assert_allclose(grad, keras_grads[param_name], rtol=1e-7, atol=1e-10,
                                   err_msg=param_name)
