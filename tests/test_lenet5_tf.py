"""Tests of LeNet-5 in TensorFlow graph mode (task 4), in Keras (task 5), of the
weight transfer between them and of ``convnet train --backend tf1|keras``.

References are independent of the code under test: the layer table and the
parameter count come from the specification, the initial-weight statistics
from the He-normal definition, the accuracy and loss from NumPy, and the two
engines (``tf.nn`` ops against Keras layers) check each other. The task
files 4-lenet5.py and 5-lenet5.py stand alone; the package builds LeNet-5
from the zoo's spec, and the tests hold the two to the same layers, shapes,
initialisers and parameter counts.
"""
import ast
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

from reference_ops import load_task_file

from convnet.nn.sequential import Sequential
from convnet.nn.zoo import load_spec
from convnet.tf import tf_training
from convnet.tf.keras_twin import from_keras

tf1 = tf.compat.v1
ROOT = Path(__file__).resolve().parents[1]
TASK_DIR = ROOT / "0x07-cnn"



tf1_lenet5 = load_task_file("4-lenet5").lenet5
keras_lenet5 = load_task_file("5-lenet5").lenet5

# The specification's layer table: (kind, output shape without the batch axis).
SPEC_LAYERS = [
    ("conv", (28, 28, 6)), ("pool", (14, 14, 6)), ("conv", (10, 10, 16)),
    ("pool", (5, 5, 16)), ("flatten", (400,)), ("dense", (120,)), ("dense", (84,)),
    ("dense", (10,)),
]
# LeNet-5's weight shapes in Keras order, written out independently of the code.
SPEC_WEIGHT_SHAPES = [
    (5, 5, 1, 6), (6,), (5, 5, 6, 16), (16,), (400, 120), (120,), (120, 84), (84,),
    (84, 10), (10,),
]
SPEC_PARAMETERS = 61_706
# Standard deviation of a unit normal truncated to [-2, 2].
TRUNCATED_STD = 0.87962566103423978


def build_tf1_graph(seed=0):
    """Build task 4 on placeholders with a None batch axis in a fresh graph."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        x = tf1.placeholder(tf.float32, (None, 28, 28, 1))
        y = tf1.placeholder(tf.float32, (None, 10))
        outputs = tf1_lenet5(x, y)
        init = tf1.global_variables_initializer()
    return graph, x, y, outputs, init


def random_weights(seed):
    """Exchange-format weights with He scale and non-zero biases."""
    rng = np.random.default_rng(seed)
    weights = []
    for shape in SPEC_WEIGHT_SHAPES:
        fan_in = math.prod(shape[:-1]) if len(shape) > 1 else 10.0
        weights.append((rng.standard_normal(shape) * math.sqrt(2 / fan_in)).astype(np.float32))
    return weights


def he_bounds(sample, fan_in, sigmas=5.0):
    """Check a sample against He-normal: mean, standard deviation, truncation.

    For n normal draws the sample standard deviation has a standard error of
    about std / sqrt(2 n) and the mean one of std / sqrt(n); a normal truncated
    at two standard deviations has lighter tails, so these bounds are
    conservative. The draws are seeded, so the test is deterministic.
    """
    sample = np.asarray(sample, dtype=np.float64).ravel()
    n = sample.size
    expected_std = math.sqrt(2.0 / fan_in)
    assert abs(sample.std() / expected_std - 1) < sigmas / math.sqrt(2 * n)
    assert abs(sample.mean()) < sigmas * expected_std / math.sqrt(n)
    # Truncation at two standard deviations of the underlying normal.
    assert np.abs(sample).max() <= 2 * expected_std / TRUNCATED_STD * (1 + 1e-6)


# ---------------------------------------------------------------- task 4 graph
def test_tf1_graph_has_open_batch_and_output_shapes():
    graph, x, y, (y_pred, train_op, loss, accuracy), init = build_tf1_graph()
    assert y_pred.shape.as_list() == [None, 10]
    assert loss.shape.as_list() == [] and accuracy.shape.as_list() == []
    assert isinstance(train_op, tf1.Operation)
    with tf1.Session(graph=graph) as session:
        session.run(init)
        for m in (1, 7):
            images = np.random.default_rng(m).random((m, 28, 28, 1), dtype=np.float32)
            labels = np.eye(10, dtype=np.float32)[np.arange(m) % 10]
            probabilities = session.run(y_pred, {x: images, y: labels})
            assert probabilities.shape == (m, 10)
            np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


def test_tf1_forward_ops_follow_the_spec_layers():
    graph, *_ = build_tf1_graph()
    forward = [op for op in graph.get_operations()
               if op.type in ("Conv2D", "MaxPool", "Reshape", "MatMul", "Softmax")
               and not op.name.startswith(("gradients", "softmax_cross_entropy", "Adam"))]
    kinds = {"Conv2D": "conv", "MaxPool": "pool", "Reshape": "flatten", "MatMul": "dense"}
    table = [(kinds[op.type], tuple(op.outputs[0].shape.as_list()[1:]))
             for op in forward if op.type != "Softmax"]
    assert table == SPEC_LAYERS
    assert all(op.outputs[0].shape.as_list()[0] is None for op in forward)
    relus = [op for op in graph.get_operations()
             if op.type == "Relu" and not op.name.startswith("gradients")]
    assert len(relus) == 4


def test_tf1_variables_in_exchange_order_and_parameter_count():
    graph, *_ = build_tf1_graph()
    variables = graph.get_collection(tf1.GraphKeys.TRAINABLE_VARIABLES)
    assert [tuple(v.shape.as_list()) for v in variables] == SPEC_WEIGHT_SHAPES
    assert sum(math.prod(v.shape.as_list()) for v in variables) == SPEC_PARAMETERS


@pytest.mark.parametrize("index", [0, 2, 4, 6, 8])
def test_tf1_initial_kernels_are_he_normal_and_biases_zero(index):
    graph, *_, init = build_tf1_graph(seed=3)
    variables = graph.get_collection(tf1.GraphKeys.TRAINABLE_VARIABLES)
    with tf1.Session(graph=graph) as session:
        session.run(init)
        kernel, bias = session.run(variables[index:index + 2])
    he_bounds(kernel, fan_in=math.prod(kernel.shape[:-1]))
    np.testing.assert_array_equal(bias, 0)


def test_tf1_accuracy_and_loss_match_numpy(mnist):
    X_train, Y_train = mnist[0][:300], mnist[1][:300]
    graph, x, y, (y_pred, _, loss, accuracy), init = build_tf1_graph()
    # Half of the labels agree with the untrained network's choice, so the
    # accuracy is far from both 0 and 1.
    with tf1.Session(graph=graph) as session:
        session.run(init)
        images = X_train[..., np.newaxis]
        predicted = session.run(y_pred, {x: images, y: np.zeros((300, 10), np.float32)})
        labels = np.where(np.arange(300) % 2 == 0, predicted.argmax(axis=1), Y_train)
        one_hot = np.eye(10, dtype=np.float32)[labels]
        probabilities, loss_value, accuracy_value = session.run(
            [y_pred, loss, accuracy], {x: images, y: one_hot})
    expected_accuracy = np.mean(probabilities.argmax(axis=1) == labels)
    assert 0.5 <= expected_accuracy < 1
    assert accuracy_value == pytest.approx(expected_accuracy, abs=1e-6)
    expected_loss = -np.mean(np.log(probabilities[np.arange(300), labels].astype(np.float64)))
    assert loss_value == pytest.approx(expected_loss, rel=1e-4)


# ---------------------------------------------------------------- task 5 model
def test_keras_layers_follow_the_spec_and_count_parameters():
    model = keras_lenet5(tf.keras.Input((28, 28, 1)))
    layers = [layer for layer in model.layers
              if not isinstance(layer, tf.keras.layers.InputLayer)]
    kinds = {tf.keras.layers.Conv2D: "conv", tf.keras.layers.MaxPooling2D: "pool",
             tf.keras.layers.Flatten: "flatten", tf.keras.layers.Dense: "dense"}
    table = [(kinds[type(layer)], tuple(layer.output.shape[1:])) for layer in layers]
    assert table == SPEC_LAYERS
    assert all(layer.output.shape[0] is None for layer in layers)
    activations = [layer.activation.__name__ for layer in layers if hasattr(layer, "activation")]
    assert activations == ["relu"] * 4 + ["softmax"]
    assert [layer.padding for layer in layers if kinds[type(layer)] == "conv"] == ["same", "valid"]
    assert [w.shape for w in model.get_weights()] == SPEC_WEIGHT_SHAPES
    assert sum(math.prod(w.shape) for w in model.trainable_weights) == SPEC_PARAMETERS
    assert isinstance(model.optimizer, tf.keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)
    assert model.output.shape[1:] == (10,)


@pytest.mark.parametrize("build", [lambda: keras_lenet5(tf.keras.Input((28, 28, 1))),
                                   tf_training.keras_model], ids=["task 5", "package"])
def test_keras_builds_are_identical_and_he_normal(build):
    first = build().get_weights()
    second = build().get_weights()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    for kernel, bias in zip(first[::2], first[1::2]):
        he_bounds(kernel, fan_in=math.prod(kernel.shape[:-1]))
        np.testing.assert_array_equal(bias, 0)


# ---------------------------------------------------------------- transfer
def test_tf1_weights_round_trip_and_change_predictions():
    weights = random_weights(1)
    images = np.random.default_rng(2).random((5, 28, 28, 1), dtype=np.float32)
    with tf_training.TF1LeNet5() as network:
        before = network.predict_proba(images)
        network.set_weights(weights)
        for got, expected in zip(network.get_weights(), weights):
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, expected)
        assert np.abs(network.predict_proba(images) - before).max() > 1e-3
        operations = len(network.graph.get_operations())
        network.set_weights(random_weights(2))
        assert len(network.graph.get_operations()) == operations


def test_keras_and_tf1_agree_for_the_same_weights(mnist):
    images = mnist[2][:200]
    weights = random_weights(4)
    keras_probabilities = tf_training.keras_predict_proba(weights, images)
    tf1_probabilities = tf_training.tf1_predict_proba(weights, images)
    assert keras_probabilities.shape == (200, 10)
    assert np.abs(keras_probabilities - tf1_probabilities).max() < 1e-5
    # A model loaded from the graph's weights gives them back unchanged.
    with tf_training.TF1LeNet5(weights) as network:
        model = tf_training.keras_model(network.get_weights())
    for got, expected in zip(tf_training.keras_get_weights(model), weights):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("weights, message", [
    (lambda w: w[:9], r"list of 10 arrays.*received 9"),
    (lambda w: w[:4] + [w[4].T] + w[5:],
     r"weights\[4\] \(dense1_kernel\) must have shape \(400, 120\), received \(120, 400\)"),
    (lambda w: w[:1] + [w[1][:, None]] + w[2:], r"weights\[1\] \(conv1_bias\)"),
    (lambda w: np.zeros(10), r"list of 10 arrays"),
])
def test_weight_setters_reject_wrong_weights(weights, message):
    bad = weights(random_weights(0))
    with tf_training.TF1LeNet5() as network:
        with pytest.raises(ValueError, match=message):
            network.set_weights(bad)
        with pytest.raises(ValueError, match=message):
            tf_training.tf1_set_weights(network.session, bad)
    with pytest.raises(ValueError, match=message):
        tf_training.keras_set_weights(tf_training.keras_model(), bad)


def test_tf1_get_weights_refuses_a_graph_without_one_lenet5():
    graph = tf.Graph()
    with graph.as_default():
        tf1.get_variable("w", shape=(3,))
    with tf1.Session(graph=graph) as session, pytest.raises(ValueError,
                                                             match="exactly one LeNet-5"):
        tf_training.tf1_get_weights(session)


# ---------------------------------------------------------------- training
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tf1", "keras"])
def test_short_training_learns(mnist, backend):
    X_train, Y_train, X_valid, Y_valid = (array[:n] for array, n in
                                          zip(mnist[:4], (3000, 3000, 2000, 2000)))
    train = tf_training.train_tf1 if backend == "tf1" else tf_training.train_keras
    lines = []
    history, network = train((X_train, Y_train, X_valid, Y_valid), epochs=2,
                             progress=False, log=lines.append)
    if backend == "tf1":
        with network:
            weights = network.get_weights()
        # Entry 0 is the untrained network.
        assert history["loss"][-1] < history["loss"][0] / 3
    else:
        weights = tf_training.keras_get_weights(network)
        assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.9
    assert len(history["epoch_seconds"]) == 2
    pattern = (r"After \d+ epochs?: cost \d+\.\d{4}, accuracy \d\.\d{4}, "
               r"validation cost \d+\.\d{4}, validation accuracy \d\.\d{4}")
    assert lines and all(re.fullmatch(pattern, line) for line in lines)
    # The trained weights give the same accuracy in the other engine.
    probabilities = tf_training.keras_predict_proba(weights, X_valid)
    assert np.mean(probabilities.argmax(axis=1) == Y_valid) == pytest.approx(
        history["val_accuracy"][-1], abs=1e-3)


@pytest.mark.parametrize("backend", ["tf1", "keras"])
def test_train_command_writes_history_and_weights(tmp_path, capsys, monkeypatch, backend,
                                                 mnist_slice):
    from convnet.apps.cli import cli
    from convnet.apps.cli import train as train_command
    plotted = []
    real_plot = train_command.save_history_plot

    def spy(history, path, first_epoch, log=None):
        plotted.append(first_epoch)
        return real_plot(history, path, first_epoch, log=log)

    monkeypatch.setattr(train_command, "save_history_plot", spy)
    out = tmp_path / backend
    data = mnist_slice(tmp_path / "MNIST.npz", 256, 100, 100)
    status = cli.main(["train", "--backend", backend, "--epochs", "1", "--data", str(data),
                       "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    assert re.search(r"^After 1 epoch: cost .*validation accuracy", printed, re.MULTILINE)
    assert re.search(r"^validation accuracy 0\.\d{4}, test accuracy 0\.\d{4}$", printed, re.MULTILINE)
    history = json.loads((out / "history.json").read_text())
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= history.keys()
    assert json.loads((out / "run.json").read_text())["train_size"] == 256
    with np.load(out / "weights.npz", allow_pickle=False) as stored:
        assert [stored[name].shape for name in tf_training.EXCHANGE_NAMES] == \
            SPEC_WEIGHT_SHAPES
    assert (out / "history.png").stat().st_size > 0
    # tf1's history starts with the untrained network, epoch 0; Keras's with epoch 1.
    assert plotted == [0 if backend == "tf1" else 1]
    assert len(history["loss"]) == (2 if backend == "tf1" else 1)


# ---------------------------------------------------------------- task files
@pytest.mark.parametrize("name, allowed", [
    ("4-lenet5", "tensorflow.compat.v1"),
    ("5-lenet5", "tensorflow.keras"),
])
def test_task_file_imports_from_its_folder(monkeypatch, name, allowed):
    path = TASK_DIR / f"{name}.py"
    assert not path.is_symlink()
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env python3\n") and text.endswith("\n")
    assert os.access(path.resolve(), os.X_OK)
    imported = [alias.name for node in ast.walk(ast.parse(text))
                if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module for node in ast.walk(ast.parse(text))
                 if isinstance(node, ast.ImportFrom)]
    assert imported == [allowed]
    monkeypatch.chdir(TASK_DIR)
    monkeypatch.syspath_prepend(str(TASK_DIR))
    monkeypatch.delitem(sys.modules, name, raising=False)
    loaded = __import__(name)
    assert callable(loaded.lenet5) and loaded.lenet5.__doc__


# ---------------------------------------------------------------- one definition
# Forward op types of a LeNet-5 graph; the loss, the gradients and Adam are left out.
FORWARD_OPS = ("Conv2D", "AddV2", "Add", "BiasAdd", "Relu", "MaxPool", "AvgPool", "Reshape",
               "MatMul", "Softmax", "Pad", "Tanh", "Sigmoid")


def forward_ops(graph):
    """Op types of the forward pass, in creation order."""
    skip = ("gradients", "softmax_cross_entropy", "Adam", "beta", "one_hot", "Equal", "Mean")
    return [op.type for op in graph.get_operations()
            if op.type in FORWARD_OPS and not op.name.startswith(skip)
            and "Initializer" not in op.name]


def kernel_initializers(graph):
    """For every trainable variable: its name, shape and its initialiser's op types."""
    table = []
    for variable in graph.get_collection(tf1.GraphKeys.TRAINABLE_VARIABLES):
        name = variable.op.name
        types = sorted({op.type for op in graph.get_operations()
                        if op.name.startswith(f"{name}/Initializer/")})
        table.append((name, tuple(variable.shape.as_list()), types))
    return table


def test_spec_is_the_documented_lenet5():
    """The zoo's lenet5 has the specification's layers, shapes and parameter count."""
    summary = Sequential(load_spec("lenet5")).summary()
    kinds = {"Conv2D": "conv", "MaxPooling2D": "pool", "Flatten": "flatten", "Dense": "dense"}
    assert [(kinds[row.kind], tuple(row.output_shape)) for row in summary.rows] == SPEC_LAYERS
    assert summary.total == summary.trainable == SPEC_PARAMETERS
    assert list(tf_training.EXCHANGE_SHAPES) == SPEC_WEIGHT_SHAPES


def test_task_4_graph_equals_the_graph_built_from_the_spec():
    task_graph, *_ = build_tf1_graph()
    with tf_training.TF1LeNet5() as network:
        package_graph = network.graph
    # Same variables (names, shapes, order), initialised by the same ops.
    task_table = kernel_initializers(task_graph)
    assert task_table == kernel_initializers(package_graph)
    assert [shape for _, shape, _ in task_table] == SPEC_WEIGHT_SHAPES
    assert all("TruncatedNormal" in types for name, _, types in task_table
               if name.endswith("kernel"))
    # Same forward ops in the same order: conv, bias, relu, pool, ..., matmul, softmax.
    assert forward_ops(task_graph) == forward_ops(package_graph)
    assert forward_ops(task_graph).count("Relu") == 4


def test_task_5_model_equals_the_keras_twin_of_the_spec():
    task_model = keras_lenet5(tf.keras.Input((28, 28, 1)))
    assert from_keras(task_model).spec["layers"] == Sequential(load_spec("lenet5")).spec["layers"]
    package_model = tf_training.keras_model()

    def table(model):
        return [(type(layer).__name__, layer.name, tuple(layer.output.shape),
                 layer.count_params(),
                 type(getattr(layer, "kernel_initializer", None)).__name__)
                for layer in model.layers if not isinstance(layer, tf.keras.layers.InputLayer)]

    assert table(task_model) == table(package_model)
    assert all(row[4] == "HeNormal" for row in table(task_model) if row[0] in ("Conv2D", "Dense"))
    assert task_model.count_params() == package_model.count_params() == SPEC_PARAMETERS
    assert type(task_model.optimizer) is type(package_model.optimizer)
    assert task_model.loss == package_model.loss == "categorical_crossentropy"
