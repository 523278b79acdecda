"""The Sequential model and its layers: finite differences, loop references, the spec's checks."""
import json

import numpy as np
import pytest
from reference_ops import numerical_gradient

from convnet.nn import layers as L
from convnet.nn.losses import SigmoidBinaryCrossEntropy
from convnet.nn.sequential import Sequential
from convnet.nn.specs import normalise_spec, summary_text
from convnet.nn.zoo import load_spec

STEP = 1e-6
RTOL, ATOL = 1e-5, 1e-7


def check_layer(layer, x, rng, training=False, before_forward=lambda: None):
    """Compare a layer's backward with finite differences of sum(forward(x) * G) in float64."""
    before_forward()
    G = rng.standard_normal(layer.forward(x, training).shape)

    def loss():
        before_forward()
        return float(np.sum(layer.forward(x, training) * G))

    loss()
    dx = layer.backward(G)
    if dx is not None:
        np.testing.assert_allclose(dx, numerical_gradient(loss, x, eps=STEP), rtol=RTOL, atol=ATOL)
    for key, param in layer.params.items():
        loss()
        layer.backward(G)
        analytic = layer.grads[key].copy()
        np.testing.assert_allclose(analytic, numerical_gradient(loss, param, eps=STEP),
                                   rtol=RTOL, atol=ATOL, err_msg=key)


def keras_pads(size, kernel, stride):
    """Keras's 'same' padding restated: ceil(size / stride) outputs, smaller half first."""
    outputs = (size + stride - 1) // stride
    total = max((outputs - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def loop_pool(x, window, stride, padding, mode):
    """Pooling by loops over output positions; windows clipped to the real cells."""
    m, h, w, c = x.shape
    (kh, kw), (sh, sw) = window, stride
    if padding == "same":
        (top, _), (left, _) = keras_pads(h, kh, sh), keras_pads(w, kw, sw)
        out_h, out_w = -(-h // sh), -(-w // sw)
    else:
        top = left = 0
        out_h, out_w = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.zeros((m, out_h, out_w, c))
    for i in range(out_h):
        for j in range(out_w):
            r0, c0 = i * sh - top, j * sw - left
            cells = x[:, max(r0, 0):min(r0 + kh, h), max(c0, 0):min(c0 + kw, w)]
            reduce = np.max if mode == "max" else np.mean
            out[:, i, j] = reduce(cells, axis=(1, 2))
    return out


POOL_CASES = [  # (h, w), window, stride, padding
    ((5, 5), (2, 2), (2, 2), "same"),
    ((6, 7), (3, 3), (2, 2), "same"),
    ((5, 4), (3, 3), (1, 1), "same"),
    ((7, 5), (2, 3), (3, 2), "same"),
    ((64, 64), (8, 8), (8, 8), "same"),
    ((6, 6), (3, 3), (2, 2), "valid"),
]


@pytest.mark.parametrize("pool", [L.MaxPool2D, L.AveragePool2D])
@pytest.mark.parametrize("hw, window, stride, padding", POOL_CASES)
def test_pooling_matches_a_loop_and_finite_differences(pool, hw, window, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2,) + hw + (3,))
    layer = pool("pool", window, stride, padding)
    np.testing.assert_allclose(layer.forward(x), loop_pool(x, window, stride, padding, pool.mode),
                               rtol=1e-12, atol=1e-12)
    assert layer.forward(x).shape[1:] == layer.output_shape(x.shape[1:])
    if hw != (64, 64):
        check_layer(layer, x, rng)


@pytest.mark.parametrize("hw, kernel, stride, padding", [
    ((7, 7), 3, 2, "same"), ((8, 8), 3, 2, "same"), ((7, 6), 4, 3, "same"),
    ((8, 7), (3, 2), (2, 3), "same"), ((9, 9), 3, 2, "valid"), ((6, 6), 5, 1, "same"),
])
def test_strided_conv_gradients(hw, kernel, stride, padding):
    rng = np.random.default_rng(1)
    layer = L.Conv2D("conv", kernel, 2, 3, padding, rng, np.float64, stride=stride)
    layer.params["b"][...] = rng.standard_normal(3)
    x = rng.standard_normal((2,) + hw + (2,))
    assert layer.forward(x).shape[1:] == layer.output_shape(x.shape[1:])
    check_layer(layer, x, rng)


@pytest.mark.parametrize("hw, kernel, stride", [((7, 7), 3, 2), ((8, 8), 3, 2), ((7, 6), 4, 3),
                                                ((8, 7), (3, 2), (2, 3))])
def test_strided_same_conv_and_pooling_match_tensorflow(hw, kernel, stride):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(2)
    layer = L.Conv2D("conv", kernel, 2, 3, "same", rng, np.float64, stride=stride)
    layer.params["b"][...] = rng.standard_normal(3)
    x = rng.standard_normal((2,) + hw + (2,))
    strides = (stride, stride) if isinstance(stride, int) else stride
    expected = tf.nn.conv2d(x, layer.params["W"], strides, "SAME").numpy() + layer.params["b"]
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12, atol=1e-12)
    window = (kernel, kernel) if isinstance(kernel, int) else kernel
    # TensorFlow's pooling computes in float32 here: 1e-6 still tells a wrong window.
    for pool, tf_pool in ((L.MaxPool2D, tf.nn.max_pool2d), (L.AveragePool2D, tf.nn.avg_pool2d)):
        np.testing.assert_allclose(pool("p", window, strides, "same").forward(x),
                                   tf_pool(x, window, strides, "SAME").numpy(), rtol=1e-6)


def test_zero_padding_gradients():
    rng = np.random.default_rng(3)
    layer = L.ZeroPadding2D("pad", ((1, 2), (0, 3)))
    x = rng.standard_normal((2, 3, 4, 2))
    assert layer.forward(x).shape == (2, 6, 7, 2) and layer.output_shape((3, 4, 2)) == (6, 7, 2)
    np.testing.assert_array_equal(layer.forward(x)[:, 1:4, 0:4], x)
    check_layer(layer, x, rng)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 3, 2), (5, 3)])
def test_batch_normalization_gradients(training, shape):
    rng = np.random.default_rng(4)
    layer = L.BatchNormalization("bn", shape[-1], np.float64)
    layer.params["gamma"][...] = rng.uniform(0.5, 2, shape[-1])
    layer.params["beta"][...] = rng.standard_normal(shape[-1])
    layer.state["moving_mean"][...] = rng.standard_normal(shape[-1])
    layer.state["moving_variance"][...] = rng.uniform(0.5, 2, shape[-1])
    check_layer(layer, rng.standard_normal(shape) * 2 + 1, rng, training=training)


def test_batch_normalization_statistics():
    rng = np.random.default_rng(5)
    layer = L.BatchNormalization("bn", 3, np.float64, momentum=0.9, epsilon=1e-3)
    x = rng.standard_normal((6, 2, 2, 3)) * 3 + 2
    out = layer.forward(x, training=True)
    flat = x.reshape(-1, 3)
    np.testing.assert_allclose(out.reshape(-1, 3), (flat - flat.mean(0)) / np.sqrt(
        flat.var(0) + 1e-3))
    np.testing.assert_allclose(layer.state["moving_mean"], 0.1 * flat.mean(0))
    np.testing.assert_allclose(layer.state["moving_variance"], 0.9 + 0.1 * flat.var(0))
    np.testing.assert_allclose(layer.forward(x), (x - 0.1 * flat.mean(0)) / np.sqrt(
        0.9 + 0.1 * flat.var(0) + 1e-3))


def test_dropout_with_a_fixed_mask():
    rng = np.random.default_rng(6)
    layer = L.Dropout("dropout", 0.4, None)

    def same_mask():
        layer.rng = np.random.default_rng(11)

    x = rng.standard_normal((3, 4, 5))
    check_layer(layer, x, rng, training=True, before_forward=same_mask)
    same_mask()
    out = layer.forward(x, training=True)
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / 0.6)
    assert layer.forward(x, training=False) is x


def test_dropout_rate_and_seeding_from_the_model():
    spec = [{"layer": "Input", "shape": [10, 10, 1]}, {"layer": "Flatten"},
            {"layer": "Dropout", "rate": 0.3}, {"layer": "Dense", "units": 2,
                                                 "activation": "softmax"}]
    state = np.random.get_state()
    masks = []
    for _ in range(2):
        model = Sequential(spec, seed=5, dtype=np.float64)
        model.forward(np.ones((200, 10, 10, 1)), training=True)
        masks.append(model.layers[1].mask)
    assert np.random.get_state()[1].tolist() == state[1].tolist()
    np.testing.assert_array_equal(masks[0], masks[1])
    assert abs((masks[0] == 0).mean() - 0.3) < 0.02
    other = Sequential(spec, seed=6)
    other.forward(np.ones((200, 10, 10, 1)), training=True)
    assert not np.array_equal(other.layers[1].mask != 0, masks[0] != 0)


@pytest.mark.parametrize("function", ["tanh", "sigmoid"])
def test_activation_gradients(function):
    rng = np.random.default_rng(7)
    check_layer(L.Activation("act", function), rng.standard_normal((3, 4)) * 3, rng)


def test_sigmoid_is_stable_and_correct():
    x = np.array([-1000.0, -20.0, 0.0, 3.0, 1000.0])
    np.testing.assert_allclose(L.sigmoid(x), [0.0, np.exp(-20) / (1 + np.exp(-20)), 0.5,
                                              1 / (1 + np.exp(-3.0)), 1.0], rtol=1e-15)


def test_binary_cross_entropy_from_logits():
    loss = SigmoidBinaryCrossEntropy()
    logits = np.array([[-800.0], [-2.0], [0.5], [900.0]])
    labels = np.array([1, 0, 1, 0])
    p = 1 / (1 + np.exp(-logits[1:3, 0]))
    expected = [800.0, -np.log(1 - p[0]), -np.log(p[1]), 900.0]
    np.testing.assert_allclose(loss.losses(logits, labels), expected, rtol=1e-12)
    rng = np.random.default_rng(8)
    logits = rng.standard_normal((5, 1)) * 3
    labels = rng.integers(0, 2, 5)
    loss.forward(logits, labels)
    numeric = numerical_gradient(lambda: loss.forward(logits, labels), logits, eps=STEP)
    np.testing.assert_allclose(loss.backward(), numeric, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- whole models
BINARY_SPEC = [
    {"layer": "Input", "shape": [7, 6, 2]},
    {"layer": "ZeroPadding2D", "padding": [1, 0]},
    {"layer": "Conv2D", "filters": 3, "kernel": 3, "stride": 2, "padding": "same",
     "activation": "tanh"},
    {"layer": "BatchNormalization"},
    {"layer": "ReLU"},
    {"layer": "MaxPool2D", "pool": 2, "padding": "same"},
    {"layer": "Flatten"},
    {"layer": "Dense", "units": 4, "activation": "sigmoid"},
    {"layer": "Dense", "units": 1, "activation": "sigmoid"},
]
SOFTMAX_SPEC = [
    {"layer": "Input", "shape": [6, 6, 2]},
    {"layer": "Conv2D", "filters": 3, "kernel": 3, "padding": "same", "activation": "relu"},
    {"layer": "AveragePool2D", "pool": 3, "stride": 2, "padding": "same"},
    {"layer": "Conv2D", "filters": 4, "kernel": 2, "stride": 2, "padding": "valid"},
    {"layer": "BatchNormalization"},
    {"layer": "Flatten"},
    {"layer": "Dropout", "rate": 0.25},
    {"layer": "Dense", "units": 5, "activation": "tanh"},
    {"layer": "Dense", "units": 3, "activation": "softmax"},
]


@pytest.mark.parametrize("spec", [BINARY_SPEC, SOFTMAX_SPEC], ids=["binary", "softmax"])
def test_whole_model_gradients_in_training_mode(spec):
    model = Sequential(spec, seed=1, dtype=np.float64)
    rng = np.random.default_rng(9)
    for param in model.parameters():
        param[...] = rng.standard_normal(param.shape) * 0.5 + (param.ndim == 1)
    X = rng.random((5,) + model.input_shape)
    Y = rng.integers(0, model.num_classes, 5)

    def fixed_masks():
        for layer in model.layers:
            if isinstance(layer, L.Dropout):
                layer.rng = np.random.default_rng(3)

    def loss():
        fixed_masks()
        return model.loss_and_grads(X, Y)[0]

    loss()
    grads = [grad.copy() for grad in model.gradients()]
    for name, param, grad in zip(model.parameter_names(), model.parameters(), grads):
        np.testing.assert_allclose(grad, numerical_gradient(loss, param, eps=STEP),
                                   rtol=RTOL, atol=ATOL, err_msg=name)


def test_weights_by_name_and_in_order():
    model = Sequential(load_spec("happy-model"), seed=0)
    weights = model.get_weights()
    assert list(weights) == ["conv1/kernel", "conv1/bias", "bn1/gamma", "bn1/beta",
                             "bn1/moving_mean", "bn1/moving_variance", "dense1/kernel",
                             "dense1/bias"]
    assert model.parameter_names() == ["conv1/kernel", "conv1/bias", "bn1/gamma", "bn1/beta",
                                       "dense1/kernel", "dense1/bias"]
    np.testing.assert_array_equal(weights["bn1/gamma"], np.ones(32))
    np.testing.assert_array_equal(weights["bn1/moving_variance"], np.ones(32))
    np.testing.assert_array_equal(weights["conv1/bias"], np.zeros(32))
    std = weights["conv1/kernel"].std()
    assert abs(std - np.sqrt(2 / (7 * 7 * 3))) < 0.1 * std    # He-normal
    other = Sequential(load_spec("happy-model"), seed=1)
    other.set_weights(weights)
    for name, value in other.get_weights().items():
        np.testing.assert_array_equal(value, weights[name])
    other.set_weights(list(weights.values()))
    with pytest.raises(ValueError, match=r"missing \['dense1/bias'\]"):
        other.set_weights({k: v for k, v in weights.items() if k != "dense1/bias"})
    with pytest.raises(ValueError, match=r"weight bn1/beta must have shape \(32,\)"):
        other.set_weights({**weights, "bn1/beta": np.zeros(3)})
    with pytest.raises(ValueError, match="list of 8 arrays, received 2"):
        other.set_weights([1, 2])


def test_summary_table_columns_fit_long_names():
    spec = [{"layer": "Input", "shape": [4, 4, 1]},
            {"layer": "BatchNormalization", "name": "a_rather_long_layer_name"},
            {"layer": "Flatten"}, {"layer": "Dense", "units": 2, "activation": "softmax"}]
    lines = summary_text(Sequential(spec).summary()).splitlines()
    row = next(line for line in lines if line.startswith("a_rather_long_layer_name"))
    header = next(line for line in lines if line.startswith("Layer (type)"))
    assert row.index("(None, 4, 4, 1)") == header.index("Output Shape")
    assert row.endswith(" 4") and lines[-1] == "Total params: 38"


def test_json_round_trip():
    model = Sequential(SOFTMAX_SPEC, seed=0)
    text = model.to_json()
    again = Sequential.from_json(text)
    assert again.spec == model.spec == json.loads(text)
    assert again.spec["layers"][1]["name"] == "conv1" and again.spec["layers"][3]["name"] == "conv2"
    with pytest.raises(ValueError, match="not valid JSON"):
        Sequential.from_json("[{")


@pytest.mark.parametrize("spec, message", [
    ([], "non-empty list"),
    ([{"layer": "Dense", "units": 2}], "layer 0 .*the first layer, and only the first, must be Input"),
    ([{"layer": "Input", "shape": [4, 4]}], r"layer 0 \(Input\): shape must be three positive"),
    ([{"layer": "Input", "shape": [4, 4, 1]}], "at least one layer after Input"),
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Conv", "filters": 2}],
     "layer 1 .*layer must be one of Input, ZeroPadding2D"),
    ([{"layer": "Input", "shape": [4, 4, 1]},
      {"layer": "Conv2D", "name": "c", "filters": 0, "kernel": 3}],
     r"layer 1 \('c', Conv2D\): filters must be a positive integer, received 0"),
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Conv2D", "filters": 2}],
     r"layer 1 \(Conv2D\): Conv2D needs the field 'kernel'"),
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Conv2D", "filters": 2, "kernel": 3,
                                               "strides": 2}],
     r"unknown field 'strides'; Conv2D takes name, filters, kernel, stride"),
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Conv2D", "filters": 2, "kernel": 3,
                                               "stride": None}],
     r"layer 1 \(Conv2D\): stride must be a positive integer, received None"),
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "MaxPool2D", "padding": "full"}],
     r"padding must be one of 'valid', 'same', received 'full'"),
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Conv2D", "filters": 2, "kernel": 3,
                                               "activation": "gelu"}],
     "activation must be one of 'relu', 'tanh', 'sigmoid', 'softmax'"),
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Dropout", "rate": 1}],
     r"rate must be a number in \[0, 1\)"),
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Flatten"},
      {"layer": "Dense", "units": 3}], "last layer must be Dense with activation 'softmax'"),
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Flatten"},
      {"layer": "Dense", "units": 3, "activation": "sigmoid"}],
     "a sigmoid output must have 1 unit, received 3"),
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Flatten"},
      {"layer": "Dense", "units": 3, "activation": "softmax"},
      {"layer": "Dense", "units": 3, "activation": "softmax"}],
     "layer 2 .*softmax is only allowed on the last layer"),
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Flatten", "name": "x"},
      {"layer": "Dense", "name": "x", "units": 2, "activation": "softmax"}],
     "name 'x' is used by an earlier layer"),
    ({"layers": [{"layer": "Input", "shape": [4, 4, 1]}], "loss": "mse", "extra": 1},
     r"unknown keys \['extra'\]"),
])
def test_bad_specs_are_rejected_naming_the_layer_and_field(spec, message):
    with pytest.raises(ValueError, match=message):
        normalise_spec(spec)


@pytest.mark.parametrize("spec, message", [
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Dense", "units": 2,
                                               "activation": "softmax"}],
     r"layer 1 .*Dense needs a flat input, received shape \(4, 4, 1\); add a Flatten"),
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Conv2D", "filters": 2, "kernel": 5},
      {"layer": "Flatten"}, {"layer": "Dense", "units": 2, "activation": "softmax"}],
     r"layer 1 .*kernel \(5, 5\) is larger than its input \(4, 4\)"),
    ([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Flatten"}, {"layer": "MaxPool2D"},
      {"layer": "Dense", "units": 2, "activation": "softmax"}],
     r"layer 2 .*MaxPool2D needs an input of shape \(h, w, c\)"),
    ({"layers": [{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Flatten"},
                 {"layer": "Dense", "units": 2, "activation": "softmax"}], "loss": "mse"},
     "loss must be 'categorical_crossentropy'"),
])
def test_shape_errors_name_the_layer(spec, message):
    with pytest.raises(ValueError, match=message):
        Sequential(spec)


def test_inputs_and_labels_are_checked():
    model = Sequential(load_spec("cifar-cnn"))
    with pytest.raises(ValueError, match=r"X must have shape \(m, 32, 32, 3\), received \(2, 32, 32\)"):
        model.predict_proba(np.zeros((2, 32, 32)))
    with pytest.raises(ValueError, match="labels 0-9"):
        model.loss_and_grads(np.zeros((2, 32, 32, 3)), np.array([0, 10]))
    with pytest.raises(TypeError, match="integer labels"):
        model.loss_and_grads(np.zeros((2, 32, 32, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="micro_batch cannot be used with BatchNormalization"):
        Sequential(load_spec("happy-model"), micro_batch=8)
    with pytest.raises(ValueError, match="labels 0-1"):
        Sequential(load_spec("happy-model")).evaluate(np.zeros((1, 64, 64, 3)), np.array([2]))


def test_binary_accuracy_and_probabilities():
    model = Sequential(BINARY_SPEC, seed=0, dtype=np.float64)
    X = np.random.default_rng(0).random((9,) + model.input_shape)
    proba = model.predict_proba(X, batch_size=4)
    assert proba.shape == (9, 1)
    Y = np.array([0, 1] * 4 + [1])
    loss, accuracy = model.evaluate(X, Y, batch_size=4)
    p = proba[:, 0]
    assert accuracy == pytest.approx(np.mean((p > 0.5) == Y))
    assert loss == pytest.approx(-np.mean(Y * np.log(p) + (1 - Y) * np.log(1 - p)))


def test_feature_maps_and_the_flat_parameter_buffer():
    model = Sequential(BINARY_SPEC, seed=0, dtype=np.float64)
    X = np.random.default_rng(1).random((3,) + model.input_shape)
    maps = model.feature_maps(X)
    assert [name for name, _ in maps] == ["input", "pad1", "conv1", "conv1/tanh", "bn1", "relu1",
                                          "pool1", "flatten1", "dense1", "dense1/sigmoid",
                                          "dense2", "sigmoid"]
    shapes = {name: value.shape[1:] for name, value in maps}
    for row in model.summary().rows:
        assert shapes[row.name] == row.output_shape, row.name
    np.testing.assert_allclose(maps[-1][1], model.predict_proba(X))
    flat = model.flat_parameters()
    assert flat.size == model.summary().trainable
    for param in model.parameters():
        assert np.shares_memory(param, flat)


# ---------------------------------------------------------------- views of a model
def test_outputs_and_gradients_with_respect_to_every_output():
    model = Sequential(BINARY_SPEC, seed=0, dtype=np.float64, input_gradient=True)
    rng = np.random.default_rng(2)
    for param in model.parameters():
        param[...] = rng.standard_normal(param.shape) * 0.5 + (param.ndim == 1)
    X = rng.random((3,) + model.input_shape)
    Y = np.array([0, 1, 1])
    outputs = model.outputs(X)
    assert list(outputs) == [name for name, _ in model.feature_maps(X)]
    result = model.output_gradients(X, Y)
    assert list(result.gradients) == ["input"] + [layer.name for layer in model.layers]
    assert result.value == pytest.approx(model.evaluate(X, Y)[0], rel=1e-12)
    for name, gradient in result.gradients.items():
        assert gradient.shape == outputs[name].shape, name

    def loss():
        return model.evaluate(X, Y)[0]

    np.testing.assert_allclose(result.gradients["input"], numerical_gradient(loss, X, eps=STEP),
                               rtol=RTOL, atol=ATOL)
    # One unit of a hidden output instead of the loss.
    dout = np.zeros_like(outputs["dense1"])
    dout[:, 2] = 1
    chosen = model.output_gradients(X, output="dense1", dout=dout)
    assert list(chosen.gradients)[-1] == "dense1"

    def unit():
        return float(np.sum(model.outputs(X)["dense1"] * dout))

    np.testing.assert_allclose(chosen.gradients["input"], numerical_gradient(unit, X, eps=STEP),
                               rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="either Y .* or output"):
        model.output_gradients(X)
    with pytest.raises(ValueError, match="output must be one of pad1, conv1"):
        model.output_gradients(X, output="softmax")
    with pytest.raises(ValueError, match=r"dout must have the shape of dense1, \(3, 4\)"):
        model.output_gradients(X, output="dense1", dout=np.ones(4))


def test_a_training_model_stops_back_propagation_at_its_first_parameters():
    model = Sequential(BINARY_SPEC, seed=0, dtype=np.float64)
    X = np.random.default_rng(3).random((2,) + model.input_shape)
    gradients = model.output_gradients(X, np.array([0, 1])).gradients
    assert next(iter(gradients)) == "conv1" and "input" not in gradients
    assert [layer.input_grad for layer in model.layers if layer.params] == [False, True, True, True]
    twin = model.copy(input_gradient=True)
    assert twin.input_gradient and not model.input_gradient
    assert twin.spec is model.spec
    for name, value in twin.get_weights().items():
        np.testing.assert_array_equal(value, model.get_weights()[name])
        assert not np.shares_memory(value, model.get_weights()[name])
    assert not any(np.shares_memory(a, b) for a, b in zip(twin.parameters(),
                                                          model.parameters()))
    assert "input" in twin.output_gradients(X, np.array([0, 1])).gradients


def test_a_canonical_spec_is_checked_once():
    from convnet.nn.specs import CanonicalSpec
    spec = load_spec("happy-model")
    assert isinstance(spec, CanonicalSpec) and normalise_spec(spec) is spec
    assert Sequential(spec).spec is spec
    assert spec.shapes[0] == (64, 64, 3) and spec.shapes[-1] == (1,)
    plain = json.loads(json.dumps(spec))
    assert type(plain) is dict and normalise_spec(plain) == spec
    assert normalise_spec(plain).shapes == spec.shapes


@pytest.mark.parametrize("name", ["input", "softmax", "sigmoid"])
def test_names_of_the_images_and_probabilities_are_reserved(name):
    with pytest.raises(ValueError, match=f"name '{name}' is reserved"):
        normalise_spec([{"layer": "Input", "shape": [4, 4, 1]}, {"layer": "Flatten", "name": name},
                        {"layer": "Dense", "units": 2, "activation": "softmax"}])


def test_dense_gradients_are_written_into_one_buffer_the_optimizer_reads_in_place():
    from convnet.nn.memory import joined_view
    model = Sequential(load_spec("mlp"), seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.random((8, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 8)
    _, grads = model.loss_and_grads(X, Y)
    joined = joined_view(grads)
    assert joined is not None and joined.size == model.flat_parameters().size
    # The same gradients as separate arrays give the same numbers.
    twin = Sequential(load_spec("mlp"), seed=0)
    for layer in twin.layers:
        layer.grads = {key: value.copy() for key, value in layer.grads.items()}
    _, separate = twin.loss_and_grads(X, Y)
    assert joined_view(separate) is None
    for one, other in zip(grads, separate):
        assert np.array_equal(one, other)


def test_parameters_and_gradients_placed_in_a_buffer_of_the_callers():
    """What ranks sharing memory do: the model computes with the caller's buffers, unchanged."""
    from convnet.nn.memory import joined_view
    rng = np.random.default_rng(2)
    X, Y = rng.random((8, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 8)
    model, twin = Sequential(load_spec("mlp"), seed=0), Sequential(load_spec("mlp"), seed=0)
    size = model.flat_parameters().size
    weights, gradients = np.zeros(size, np.float32), np.zeros(size, np.float32)
    model.place_parameters(weights)
    model.place_gradients(gradients)
    assert weights.tobytes() == twin.flat_parameters().tobytes()
    assert model.flat_parameters() is weights
    assert all(np.shares_memory(param, weights) for param in model.parameters())
    loss, grads = model.loss_and_grads(X, Y)
    expected_loss, expected = twin.loss_and_grads(X, Y)
    assert loss == expected_loss
    joined = joined_view(grads)
    assert joined is not None and joined.ctypes.data == gradients.ctypes.data
    assert gradients.tobytes() == joined_view(expected).tobytes()
    # Without a copy the values are the buffer's own.
    other = np.full(size, 0.5, np.float32)
    model.place_parameters(other, copy=False)
    assert all((param == 0.5).all() for param in model.parameters())
    for bad, message in [(np.zeros(size - 1, np.float32), rf"received float32 \({size - 1},\)"),
                         (np.zeros(size, np.float64), "received float64"),
                         ([0.0] * size, "received list")]:
        with pytest.raises(ValueError, match=rf"flat must be a writeable float32 array of "
                                             rf"shape \({size},\), {message}"):
            model.place_gradients(bad)
