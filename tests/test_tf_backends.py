"""The spec-driven TensorFlow graph and ``convnet train --backend keras`` for any model.

References: the NumPy ``Sequential`` model (its own tests hold it to loop
implementations) gives the probabilities the graph must reproduce from the
same weights; labels and shapes come from the data written here.
"""
import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

from convnet.apps.cli.cli import main
from convnet.errors import BadOptionError
from convnet.nn.sequential import Sequential, normalise_spec
from convnet.nn.zoo import load_spec
from convnet.tf import tf_training
from convnet.tf.tf1_graph import build_logits

tf1 = tf.compat.v1


def graph_probabilities(spec, weights, X):
    """Probabilities of the graph built from ``spec`` with NumPy's weights, for images X."""
    spec = normalise_spec(spec)
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, (None, *spec["layers"][0]["shape"]))
        logits, variables = build_logits(spec, x)
        output = (tf.nn.sigmoid(logits) if spec["layers"][-1]["activation"] == "sigmoid"
                  else tf.nn.softmax(logits))
        init = tf1.global_variables_initializer()
    with tf1.Session(graph=graph) as session:
        session.run(init)
        for variable, value in zip(variables, weights):
            variable.load(value, session)
        return session.run(output, {x: X}), [v.op.name for v in variables]


def conv_spec(padding, stride, pool, pool_padding, activation):
    return {"name": "graph-check", "layers": [
        {"layer": "Input", "shape": [11, 10, 2]},
        {"layer": "ZeroPadding2D", "padding": [[1, 0], [0, 2]]},
        {"layer": "Conv2D", "name": "conv1", "filters": 3, "kernel": [3, 2], "stride": stride,
         "padding": padding, "activation": activation},
        {"layer": pool, "pool": 3, "stride": 2, "padding": pool_padding},
        {"layer": "ReLU"},
        {"layer": "Flatten"},
        {"layer": "Dense", "name": "dense1", "units": 7, "activation": activation},
        {"layer": "Dense", "name": "out", "units": 4, "activation": "softmax"}]}


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("stride", [1, 2, [2, 1]])
@pytest.mark.parametrize("pool, pool_padding", [("MaxPool2D", "valid"), ("MaxPool2D", "same"),
                                                ("AveragePool2D", "same")])
def test_graph_from_a_spec_gives_the_numpy_models_probabilities(padding, stride, pool,
                                                               pool_padding):
    spec = conv_spec(padding, stride, pool, pool_padding, "tanh")
    model = Sequential(spec, seed=1)
    rng = np.random.default_rng(2)
    # Non-zero biases, so that a bias in the wrong place shows.
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                       for w in model.get_weights().values()])
    X = rng.random((5, 11, 10, 2), dtype=np.float32)
    probabilities, names = graph_probabilities(spec, list(model.get_weights().values()), X)
    np.testing.assert_allclose(probabilities, model.predict_proba(X), atol=1e-5)
    assert names == ["conv1/kernel", "conv1/bias", "dense1/kernel", "dense1/bias",
                     "out/kernel", "out/bias"]


@pytest.mark.parametrize("name", ["lenet5", "lenet5-classic", "mlp", "mnist-cnn"])
def test_graph_of_zoo_models_matches_numpy(name, mnist):
    model = Sequential(load_spec(name), seed=0)
    X = mnist[2][:50, :, :, np.newaxis]
    probabilities, _ = graph_probabilities(load_spec(name), list(model.get_weights().values()), X)
    np.testing.assert_allclose(probabilities, model.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("name, layer", [("happy-model", "BatchNormalization"),
                                         ("cifar-cnn", "Dropout")])
def test_graph_refuses_layers_it_does_not_model(name, layer):
    graph = tf.Graph()
    with graph.as_default(), pytest.raises(ValueError, match=rf", {layer}\) has no TensorFlow "
                                                              "graph equivalent"):
        build_logits(normalise_spec(load_spec(name)), tf1.placeholder(tf.float32, (None, 4)))


def test_graph_initialises_he_normal_kernels_and_zero_biases():
    spec = normalise_spec(load_spec("mlp"))
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(0)
        _, variables = build_logits(spec, tf1.placeholder(tf.float32, (None, 28, 28, 1)))
        init = tf1.global_variables_initializer()
    with tf1.Session(graph=graph) as session:
        session.run(init)
        kernel, bias = session.run(variables[:2])
    # 784 x 512 draws: the sample deviation is within 1 % of sqrt(2 / fan_in).
    assert kernel.std() == pytest.approx(np.sqrt(2 / 784), rel=0.01)
    assert np.abs(kernel).max() <= 2 * np.sqrt(2 / 784) / 0.87962566 * (1 + 1e-6)
    np.testing.assert_array_equal(bias, 0)


# ---------------------------------------------------------------- Keras backend
@pytest.mark.parametrize("optimizer, keras_class, rate", [
    ("adam", "Adam", 0.001), ("rmsprop", "RMSprop", 0.001), ("sgd", "SGD", 0.01)])
def test_build_keras_uses_keras_own_optimizer_and_the_numpy_initial_weights(
        optimizer, keras_class, rate):
    twin = tf_training.build_keras("mnist-cnn", optimizer, seed=4)
    assert type(twin.optimizer).__name__ == keras_class
    assert float(twin.optimizer.learning_rate.numpy()) == pytest.approx(rate)
    expected = Sequential(load_spec("mnist-cnn"), seed=4).get_weights().values()
    for got, want in zip(twin.get_weights(), expected):
        np.testing.assert_array_equal(got, want)
    assert twin.loss == "categorical_crossentropy"


def test_build_keras_defaults_to_the_spec_optimizer():
    assert type(tf_training.build_keras("mlp").optimizer).__name__ == "RMSprop"
    assert type(tf_training.build_keras("lenet5").optimizer).__name__ == "Adam"


BINARY_SPEC = {"name": "binary", "optimizer": "adam", "layers": [
    {"layer": "Input", "shape": [6, 6, 3]},
    {"layer": "Conv2D", "filters": 2, "kernel": 3, "activation": "relu"},
    {"layer": "Flatten"},
    {"layer": "Dense", "units": 1, "activation": "sigmoid"}]}


def test_train_keras_learns_a_binary_task_with_binary_cross_entropy():
    rng = np.random.default_rng(0)
    Y = rng.integers(0, 2, 400)
    # Class 1 is brighter: a rule a linear read-out of the convolution learns at once.
    X = (rng.random((400, 6, 6, 3)) * 0.6 + 0.4 * Y[:, None, None, None]).astype(np.float32)
    history, model = tf_training.train_keras((X[:300], Y[:300], X[300:], Y[300:]), epochs=8,
                                             batch_size=16, learning_rate=0.01,
                                             progress=False, spec=BINARY_SPEC)
    assert model.loss == "binary_crossentropy"
    assert history["loss"][-1] < history["loss"][0]
    spec = normalise_spec(BINARY_SPEC)
    _, accuracy = tf_training.evaluate_keras(model, spec, X[300:], Y[300:])
    # The metric is binary accuracy: the fraction of probabilities on the right side of 0.5.
    predicted = (model.predict(X[300:], verbose=0)[:, 0] > 0.5).astype(np.int64)
    assert accuracy == pytest.approx(np.mean(predicted == Y[300:]))
    assert accuracy > 0.7


@pytest.mark.parametrize("image_shape, classes, message", [
    ((28, 28), 10, r"--model cifar-cnn takes 32x32x3 images, but --dataset mnist has 28x28x1"),
    ((32, 32, 3), 6, r"--model cifar-cnn has 10 classes, but --dataset mnist has 6 classes"),
])
def test_check_fits_names_what_differs(image_shape, classes, message):
    spec = normalise_spec(load_spec("cifar-cnn"))
    with pytest.raises(BadOptionError, match=message):
        tf_training.check_fits(spec, "cifar-cnn", "mnist", image_shape, classes)
    tf_training.check_fits(spec, "cifar-cnn", "cifar10", (32, 32, 3), 10)


def test_check_fits_counts_a_sigmoid_as_two_classes():
    spec = normalise_spec(load_spec("happy-model"))
    tf_training.check_fits(spec, "happy-model", "happy", (64, 64, 3), 2)
    with pytest.raises(BadOptionError, match="one sigmoid unit"):
        tf_training.check_fits(spec, "happy-model", "signs", (64, 64, 3), 6)


def test_weights_file_keeps_lenet5_exchange_format_and_describes_other_models():
    lenet = normalise_spec(load_spec("lenet5"))
    weights = list(Sequential(lenet).get_weights().values())
    # The ten exchange arrays come first and in order; what they are is recorded beside them.
    lenet_arrays = tf_training.weights_arrays(lenet, weights, "mnist")
    assert list(lenet_arrays)[:10] == list(tf_training.EXCHANGE_NAMES)
    assert list(lenet_arrays)[10:] == ["spec", "dataset"]
    assert json.loads(lenet_arrays["spec"].tobytes().decode("utf-8")) == lenet
    spec = normalise_spec(load_spec("happy-model"))
    model = Sequential(spec, seed=5)
    arrays = tf_training.weights_arrays(spec, list(model.get_weights().values()), "happy",
                                        ["not happy", "happy"])
    assert json.loads(arrays["spec"].tobytes().decode("utf-8")) == spec
    assert str(arrays["dataset"]) == "happy" and list(arrays["class_names"]) == ["not happy",
                                                                                  "happy"]
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(arrays[name], value)


@pytest.mark.parametrize("model", ["mnist-cnn", "mlp"])
def test_train_command_trains_the_keras_twin_of_a_zoo_model(tmp_path, capsys, model,
                                                            mnist_slice):
    out = tmp_path / model
    data = mnist_slice(tmp_path / "MNIST.npz", 256, 100, 100)
    status = main(["train", "--backend", "keras", "--model", model, "--optimizer", "sgd",
                   "--epochs", "1", "--data", str(data), "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    assert f"training {model} (keras) on 256 mnist images, 1 epoch, batch 32, sgd" in printed
    run = json.loads((out / "run.json").read_text())
    assert (run["model"], run["optimizer"], run["train_size"]) == (model, "sgd", 256)
    with np.load(out / "weights.npz", allow_pickle=False) as stored:
        spec = json.loads(stored["spec"].tobytes().decode("utf-8"))
        shapes = {name: stored[name].shape for name in stored.files
                  if name not in ("spec", "dataset", "class_names", "data_source")}
    reference = Sequential(spec)
    assert spec == normalise_spec(load_spec(model))
    assert shapes == {name: value.shape for name, value in reference.get_weights().items()}


def test_train_command_trains_a_spec_file(tmp_path, capsys, mnist):
    path = tmp_path / "small.json"
    path.write_text(json.dumps([
        {"layer": "Input", "shape": [28, 28, 1]},
        {"layer": "Conv2D", "filters": 4, "kernel": 5, "stride": 2, "activation": "relu"},
        {"layer": "Flatten"},
        {"layer": "Dense", "units": 10, "activation": "softmax"}]))
    assert main(["train", "--backend", "keras", "--model", str(path), "--epochs", "1",
                 "--limit", "128", "--out", str(tmp_path / "run")]) == 0
    assert "training small (keras)" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "run.json").read_text())["model"] == "small"


@pytest.mark.parametrize("arguments, message", [
    (["--backend", "keras", "--model", "cifar-cnn"],
     "--model cifar-cnn takes 32x32x3 images, but --dataset mnist has 28x28x1 images"),
    (["--backend", "tf1", "--model", "mlp"], "--backend tf1 trains lenet5 only"),
    (["--backend", "tf1", "--optimizer", "sgd"],
     "--optimizer is not available with tf1"),
    (["--backend", "keras", "--model", "alexnet"], "--model alexnet: model must be one of lenet5"),
])
def test_train_command_refuses_a_model_that_does_not_fit(tmp_path, capsys, arguments, message,
                                                         mnist):
    status = main(["train", *arguments, "--epochs", "1", "--limit", "64",
                   "--out", str(tmp_path / "run")])
    assert status == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def write_course_h5(folder, name, n_train, n_test):
    """Write small ``train_NAME.h5`` / ``test_NAME.h5`` files in the course's layout."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    classes = 2 if name == "happy" else 6
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        with h5py.File(folder / f"{split}_{name}.h5", "w") as handle:
            handle.create_dataset(f"{split}_set_x",
                                  data=rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8))
            handle.create_dataset(f"{split}_set_y", data=rng.integers(0, classes, n))
            handle.create_dataset("list_classes", data=np.arange(classes))


@pytest.mark.parametrize("model, dataset, loss, validation", [
    ("happy-model", "happy", "binary_crossentropy", 100),
    ("signs-cnn", "signs", "categorical_crossentropy", 120)])
def test_train_command_trains_the_course_models_on_their_files(tmp_path, capsys, model,
                                                               dataset, loss, validation):
    # The course keeps the last 100 (happy) or 120 (signs) training images for validation.
    write_course_h5(tmp_path / "course", dataset, n_train=validation + 20, n_test=8)
    out = tmp_path / "run"
    assert main(["train", "--backend", "keras", "--model", model, "--dataset", dataset,
                 "--data", str(tmp_path / "course"), "--epochs", "1", "--batch-size", "16",
                 "--out", str(out)]) == 0
    assert f"training {model} (keras) on 20 {dataset} images" in capsys.readouterr().out
    with np.load(out / "weights.npz", allow_pickle=False) as stored:
        spec = json.loads(stored["spec"].tobytes().decode("utf-8"))
        assert str(stored["dataset"]) == dataset
    assert spec["loss"] == loss
