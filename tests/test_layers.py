"""Layer-level checks of convnet.nn.layers against float64 centred finite differences."""
import numpy as np
import pytest
from reference_ops import numerical_gradient

from convnet.nn.layers import (
    TRUNCATED_NORMAL_STD,
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    ReLU,
    he_normal,
)
from convnet.nn.losses import SoftmaxCrossEntropy

STEP = 1e-6
# Centred differences in float64 with this step are good to ~1e-9 absolute on
# these O(1)-O(10) losses; a wrong gradient is off by O(0.1) or more.
RTOL, ATOL = 1e-5, 1e-7


def assert_gradient(analytic, numeric):
    """Assert an analytic gradient equals a numerical one to finite-difference accuracy."""
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL)


def check_layer(layer, x, rng):
    """Compare a layer's backward with finite differences of sum(forward(x) * G)."""
    G = rng.standard_normal(layer.forward(x).shape)

    def loss():
        return float(np.sum(layer.forward(x) * G))

    layer.forward(x)
    dx = layer.backward(G)
    if dx is not None:
        assert_gradient(dx, numerical_gradient(loss, x, eps=STEP))
    for key, param in layer.params.items():
        layer.forward(x)
        layer.backward(G)
        analytic = layer.grads[key].copy()
        assert analytic.shape == param.shape
        assert_gradient(analytic, numerical_gradient(loss, param, eps=STEP))


# Batches long against the units (dout @ W.T) and short (the transposed product).
@pytest.mark.parametrize("m, units_in, units_out", [(1, 3, 2), (4, 7, 5), (1, 5, 4), (2, 6, 9)])
def test_dense_gradients(m, units_in, units_out):
    rng = np.random.default_rng(1)
    layer = Dense("dense", units_in, units_out, rng, dtype=np.float64)
    layer.params["b"][...] = rng.standard_normal(units_out)
    check_layer(layer, rng.standard_normal((m, units_in)), rng)


@pytest.mark.parametrize("m, units_in, units_out", [
    (16, 1024, 500), (64, 512, 512), (16, 400, 120), (64, 512, 10), (32, 3136, 64)])
def test_dense_input_gradient_is_the_product_with_the_kernel(m, units_in, units_out):
    """Either way of taking the product, the input gradient is ``dout @ W.T`` in float32."""
    rng = np.random.default_rng(3)
    layer = Dense("dense", units_in, units_out, rng)
    layer.forward(rng.standard_normal((m, units_in)).astype(np.float32))
    dout = rng.standard_normal((m, units_out)).astype(np.float32)
    dx = layer.backward(dout)
    expected = dout.astype(np.float64) @ layer.params["W"].T.astype(np.float64)
    assert dx.dtype == np.float32 and dx.shape == (m, units_in) and dx.flags.c_contiguous
    np.testing.assert_allclose(dx, expected, rtol=1e-4, atol=1e-4)


def test_relu_gradients():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5))
    x[np.abs(x) < 10 * STEP] = 0.5   # keep finite differences away from the kink
    check_layer(ReLU("relu"), x, rng)


@pytest.mark.parametrize("padding, size, channels_in, channels_out, m",
                         [("same", 6, 1, 3, 2), ("valid", 7, 2, 4, 2), ("same", 5, 3, 2, 1)])
def test_conv2d_gradients(padding, size, channels_in, channels_out, m):
    rng = np.random.default_rng(3)
    layer = Conv2D("conv", 3, channels_in, channels_out, padding, rng, dtype=np.float64)
    layer.params["b"][...] = rng.standard_normal(channels_out)
    check_layer(layer, rng.standard_normal((m, size, size, channels_in)), rng)


def test_conv2d_first_layer_skips_input_gradient():
    rng = np.random.default_rng(4)
    layer = Conv2D("conv", 3, 1, 2, "same", rng, dtype=np.float64, input_grad=False)
    out = layer.forward(rng.standard_normal((2, 5, 5, 1)))
    assert layer.backward(np.ones_like(out)) is None
    assert layer.grads["W"].shape == (3, 3, 1, 2)


@pytest.mark.parametrize("shape", [(2, 4, 4, 3), (1, 6, 8, 2), (3, 5, 7, 1)])
def test_maxpool_gradients(shape):
    rng = np.random.default_rng(5)
    # A permutation of spread-out values: no ties, no near-ties within STEP.
    x = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64) * 0.01
    layer = MaxPool2D("pool", 2)
    assert layer.forward(x).shape == (shape[0], shape[1] // 2, shape[2] // 2, shape[3])
    check_layer(layer, x, rng)


def test_flatten_is_c_order_of_nhwc():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    layer = Flatten("flatten")
    out = layer.forward(x)
    assert out.shape == (2, 60)
    assert out[1, 5 * 4 + 2] == x[1, 1, 0, 2]
    np.testing.assert_array_equal(layer.backward(out), x)


@pytest.mark.parametrize("m, classes", [(1, 3), (5, 10)])
def test_softmax_cross_entropy_gradient(m, classes):
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((m, classes)) * 3
    labels = rng.integers(0, classes, m)
    layer = SoftmaxCrossEntropy()
    layer.forward(logits, labels)
    analytic = layer.backward()
    numeric = numerical_gradient(lambda: layer.forward(logits, labels), logits, eps=STEP)
    assert_gradient(analytic, numeric)


def test_softmax_cross_entropy_value_and_stability():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, np.log(3.0), 0.0]])
    labels = np.array([0, 1])
    layer = SoftmaxCrossEntropy()
    loss = layer.forward(logits, labels)
    # Row 0: probability 1 for its label; row 1: softmax [1, 3, 1] / 5 -> 3/5.
    assert loss == pytest.approx(-np.log(3 / 5) / 2)
    np.testing.assert_allclose(layer.probs[1], [0.2, 0.6, 0.2])
    assert np.isfinite(layer.probs).all()


@pytest.mark.parametrize("m", [1, 2, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_weight_gradient_is_the_matmul_product_to_the_bit(m, dtype):
    """A batch of one takes np.dot's BLAS product, others np.matmul: both give x.T @ dout
    as np.matmul does, zeros' signs and non-finite products included."""
    rng = np.random.default_rng(8)
    layer = Dense("d", 40, 12, rng, dtype)
    x = np.maximum(rng.standard_normal((m, 40)), 0).astype(dtype)
    dout = (rng.standard_normal((m, 12)) * (rng.random((m, 12)) < 0.5)).astype(dtype)
    dout[0, :2] = -0.0
    x[0, 1], dout[0, 3] = np.inf, np.nan
    with np.errstate(invalid="ignore"):
        layer.forward(x, training=True)
        layer.backward(dout)
        assert layer.grads["W"].tobytes() == np.matmul(x.T, dout).tobytes()


@pytest.mark.parametrize("m", [1, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_forward_is_its_two_functions_fused(m, dtype):
    """forward's loss and probabilities are, to the bit, the mean of ``losses`` and
    ``probabilities``, which compute the same maxima and sums separately."""
    rng = np.random.default_rng(9)
    logits = (rng.standard_normal((m, 10)) * 30).astype(dtype)
    logits[0, 2] = -np.inf
    labels = rng.integers(0, 10, m)
    layer = SoftmaxCrossEntropy()
    loss = layer.forward(logits, labels)
    expected = float(SoftmaxCrossEntropy.losses(logits, labels).mean())
    assert np.float64(loss).tobytes() == np.float64(expected).tobytes()
    assert layer.probs.tobytes() == SoftmaxCrossEntropy.probabilities(logits).tobytes()
    assert layer.labels is labels


@pytest.mark.parametrize("fan_in", [25, 400])
def test_he_normal_matches_keras_definition(fan_in):
    rng = np.random.default_rng(7)
    values = he_normal((200_000,), fan_in, rng, dtype=np.float64)
    bound = 2 * np.sqrt(2 / fan_in) / TRUNCATED_NORMAL_STD
    assert np.abs(values).max() <= bound
    # The constant makes the truncated draws keep the He variance 2 / fan_in.
    assert values.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.01)
    assert abs(values.mean()) < 0.01 * np.sqrt(2 / fan_in)


def test_maxpool_gives_a_tied_maximum_gradient_once():
    # Window 0 ties on 0.9 (first in row-major order at [0, 0]); window 1 has one maximum.
    x = np.array([[0.9, 0.9, 0.1, 0.5], [0.9, 0.2, 0.3, 0.4]]).reshape(1, 2, 4, 1)
    layer = MaxPool2D("pool", 2)
    layer.forward(x)
    dx = layer.backward(np.array([2.0, 3.0]).reshape(1, 1, 2, 1))
    expected = np.array([[2.0, 0, 0, 3.0], [0, 0, 0, 0]]).reshape(1, 2, 4, 1)
    np.testing.assert_array_equal(dx, expected)


def test_a_first_dense_layer_skips_only_its_input_gradient():
    rng = np.random.default_rng(5)
    x, dout = rng.standard_normal((6, 7)), rng.standard_normal((6, 3))
    full = Dense("d", 7, 3, np.random.default_rng(1), np.float64)
    first = Dense("d", 7, 3, np.random.default_rng(1), np.float64, input_grad=False)
    for layer in (full, first):
        layer.forward(x, training=True)
    np.testing.assert_allclose(full.backward(dout), dout @ full.params["W"].T)
    assert first.backward(dout) is None
    for key in ("W", "b"):
        assert np.array_equal(first.grads[key], full.grads[key])
    from convnet.nn.sequential import Sequential
    from convnet.nn.zoo import load_spec
    mlp = Sequential(load_spec("mlp"))
    dense = [layer for layer in mlp.layers if isinstance(layer, Dense)]
    assert [layer.input_grad for layer in dense] == [False, True, True]


@pytest.mark.parametrize("name", ["happy-model", "cifar-cnn", "lenet5-classic"])
def test_every_layer_follows_the_protocol(name):
    from convnet.nn.layer import Layer
    from convnet.nn.losses import Loss
    from convnet.nn.sequential import Sequential
    from convnet.nn.zoo import load_spec
    model = Sequential(load_spec(name), dtype=np.float64)
    assert isinstance(model.loss_layer, Loss) and isinstance(model.loss_layer, Layer)
    x = np.random.default_rng(9).random((2,) + model.input_shape)
    for layer in model.layers:
        assert isinstance(layer, Layer)
        assert set(layer.grads) == set(layer.params)
        assert not set(layer.buffers) & set(layer.params)
        out = layer.forward(x, training=True)
        assert out.shape[1:] == tuple(layer.output_shape(x.shape[1:])), layer.name
        dx = layer.backward(np.ones_like(out))
        if layer.input_grad:
            assert dx.shape == x.shape, layer.name
        else:
            assert dx is None, layer.name
        for key, param in layer.params.items():
            assert layer.grads[key].shape == param.shape
        x = out
