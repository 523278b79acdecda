"""The NumPy LeNet-5 (the zoo's lenet5 on Sequential): gradients, shapes, seeding, weights, files."""
import numpy as np
import pytest

from convnet.nn.lenet5 import WEIGHT_NAMES, LeNet5
from convnet.training import trainer

EXCHANGE_SHAPES = [(5, 5, 1, 6), (6,), (5, 5, 6, 16), (16,), (400, 120), (120,),
                   (120, 84), (84,), (84, 10), (10,)]


def random_batch(m, seed=0):
    """m random images in [0, 1) of shape (m, 28, 28) and labels (m,)."""
    rng = np.random.default_rng(seed)
    return rng.random((m, 28, 28)), rng.integers(0, 10, m)


def test_whole_network_gradient_matches_finite_differences():
    X, Y = random_batch(4)
    model = LeNet5(seed=3, dtype=np.float64)
    rng = np.random.default_rng(0)
    # Non-zero biases so their gradients are exercised away from the initial point.
    for param in model.parameters()[1::2]:
        param[...] = rng.normal(0, 0.1, param.shape)
    _, grads = model.loss_and_grads(X, Y)
    grads = [grad.copy() for grad in grads]
    step = 1e-6   # smaller than the distance of every pre-activation to the ReLU kink
    for param, grad in zip(model.parameters(), grads):
        assert grad.shape == param.shape
        flat, flat_grad = param.reshape(-1), grad.reshape(-1)
        for index in rng.choice(flat.size, size=min(12, flat.size), replace=False):
            saved = flat[index]
            flat[index] = saved + step
            plus = model.loss_and_grads(X, Y)[0]
            flat[index] = saved - step
            minus = model.loss_and_grads(X, Y)[0]
            flat[index] = saved
            numeric = (plus - minus) / (2 * step)
            assert flat_grad[index] == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_shapes_and_probabilities():
    model = LeNet5()
    X, _ = random_batch(3)
    maps = model.feature_maps(X.astype(np.float32))
    names = [name for name, _ in maps]
    assert names == ["input", "conv1", "conv1/relu", "pool1", "conv2", "conv2/relu", "pool2",
                     "flatten", "dense1", "dense1/relu", "dense2", "dense2/relu", "dense3",
                     "softmax"]
    shapes = {name: act.shape for name, act in maps}
    assert shapes["conv1"] == (3, 28, 28, 6)
    assert shapes["pool1"] == (3, 14, 14, 6)
    assert shapes["conv2"] == (3, 10, 10, 16)
    assert shapes["pool2"] == (3, 5, 5, 16)
    assert shapes["flatten"] == (3, 400)
    assert shapes["softmax"] == (3, 10)
    assert all(act.dtype == np.float32 for _, act in maps)
    probs = model.predict_proba(X)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(probs, maps[-1][1], rtol=1e-5)
    assert [layer.name for layer in model.layers] == names[1:-1]


def test_predict_proba_in_chunks_equals_one_pass():
    model = LeNet5(seed=1)
    X, _ = random_batch(23)
    np.testing.assert_allclose(model.predict_proba(X, batch_size=5),
                               model.predict_proba(X, batch_size=100), rtol=1e-5, atol=1e-7)


def test_evaluate_matches_probabilities():
    model = LeNet5(seed=2)
    X, Y = random_batch(17)
    probs = model.predict_proba(X).astype(np.float64)
    loss, accuracy = model.evaluate(X, Y, batch_size=4)
    assert loss == pytest.approx(-np.log(probs[np.arange(17), Y]).mean(), rel=1e-5)
    assert accuracy == np.mean(probs.argmax(axis=1) == Y)


def weight_list(model):
    return list(model.get_weights().values())


def test_same_seed_same_weights_and_exchange_format():
    weights_a, weights_b = weight_list(LeNet5(seed=5)), weight_list(LeNet5(seed=5))
    assert [w.shape for w in weights_a] == EXCHANGE_SHAPES
    assert all(w.dtype == np.float32 for w in weights_a)
    assert all(np.array_equal(a, b) for a, b in zip(weights_a, weights_b))
    assert not np.array_equal(weights_a[0], weight_list(LeNet5(seed=6))[0])
    assert all(not w.any() for w in weights_a[1::2])   # biases start at zero
    assert sum(w.size for w in weights_a) == 61706


def test_set_weights_round_trip_and_errors():
    source, target = LeNet5(seed=1), LeNet5(seed=2)
    target.set_weights(weight_list(source))
    assert all(np.array_equal(a, b) for a, b in zip(weight_list(source), weight_list(target)))
    X, _ = random_batch(2)
    np.testing.assert_array_equal(source.predict_proba(X), target.predict_proba(X))
    with pytest.raises(ValueError, match="list of 10 arrays"):
        target.set_weights(weight_list(source)[:9])
    bad = weight_list(source)
    bad[4] = bad[4].T
    with pytest.raises(ValueError, match=r"dense1/kernel must have shape \(400, 120\)"):
        target.set_weights(bad)


def test_a_tensorflow_weights_file_loads_as_the_zoo_lenet5(tmp_path):
    """The TF and Keras trainings write the ten WEIGHT_NAMES: they load for evaluate and predict."""
    model = LeNet5(seed=4)
    path = tmp_path / "weights.npz"
    np.savez(path, **dict(zip(WEIGHT_NAMES, weight_list(model))))
    loaded, dataset, names = trainer.load_model(path)
    assert dataset is None and names is None and loaded.spec["name"] == "lenet5"
    assert all(np.array_equal(a, b) for a, b in zip(weight_list(model), weight_list(loaded)))
    X, _ = random_batch(3)
    np.testing.assert_array_equal(model.predict_proba(X), loaded.predict_proba(X))


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.npz"
    with pytest.raises(ValueError, match="missing.npz does not exist"):
        trainer.load_model(missing)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="corrupt.npz is not an .npz file"):
        trainer.load_model(corrupt)
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, **dict(zip(WEIGHT_NAMES, weight_list(LeNet5()))))
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated.npz"):
        trainer.load_model(truncated)
    other = tmp_path / "other.npz"
    np.savez(other, something=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz: not a checkpoint of this model"):
        trainer.load_model(other)


@pytest.mark.parametrize("shape", [(2, 28, 28, 3), (2, 32, 32), (28, 28)])
def test_bad_image_shapes_are_rejected(shape):
    with pytest.raises(ValueError, match=r"X must have shape \(m, 28, 28\)"):
        LeNet5().predict_proba(np.zeros(shape))


def test_bad_labels_are_rejected():
    model = LeNet5()
    X, _ = random_batch(2)
    with pytest.raises(ValueError, match="labels 0-9"):
        model.loss_and_grads(X, np.array([0, 10]))
    with pytest.raises(ValueError, match=r"Y must have shape \(2,\)"):
        model.loss_and_grads(X, np.array([[0, 1]]))
    with pytest.raises(TypeError, match="integer labels"):
        model.loss_and_grads(X, np.array([0.0, 1.0]))


@pytest.mark.parametrize("micro_batch", [1, 4, 7])
def test_micro_batches_give_the_whole_batch_gradient(micro_batch):
    X, Y = random_batch(10)
    whole = LeNet5(seed=8, dtype=np.float64, micro_batch=10)
    sliced = LeNet5(seed=8, dtype=np.float64, micro_batch=micro_batch)
    loss, grads = whole.loss_and_grads(X, Y)
    sliced_loss, sliced_grads = sliced.loss_and_grads(X, Y)
    assert sliced_loss == pytest.approx(loss, rel=1e-12)
    for ours, reference in zip(sliced_grads, grads):
        np.testing.assert_allclose(ours, reference, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("micro_batch", [0, -1, 2.5, True])
def test_bad_micro_batch_is_rejected(micro_batch):
    with pytest.raises(ValueError, match="micro_batch must be a positive integer"):
        LeNet5(micro_batch=micro_batch)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooling_before_relu_gives_the_written_order_to_the_bit(dtype):
    rng = np.random.default_rng(1)
    X, Y = random_batch(6, seed=1)
    X[:, :14] = 0   # flat areas: windows of equal values, so ties in every pooling window
    model = LeNet5(seed=5, dtype=dtype)
    # Biases of both signs: tied windows whose maximum is positive, and ones where it is not.
    for param in model.parameters()[1::2]:
        param[...] = rng.normal(0, 0.2, param.shape)
    loss, grads = model.loss_and_grads(X, Y)
    grads = [grad.copy() for grad in grads]

    out = X[..., np.newaxis].astype(dtype)   # the layers as written: ReLU, then pooling
    for layer in model.layers:
        out = layer.forward(out)
    written_logits = out
    written_loss = model.loss_layer.forward(out, Y)
    dout = model.loss_layer.backward()
    for layer in reversed(model.layers):
        dout = layer.backward(dout)

    assert loss == written_loss
    for grad, written in zip(grads, model.gradients()):
        np.testing.assert_array_equal(grad, written)
    np.testing.assert_array_equal(model.forward(X), written_logits)
    relu1 = dict(model.feature_maps(X))["conv1/relu"]
    assert (relu1 == 0).mean() > 0.2 and relu1.shape == (6, 28, 28, 6)   # written order


def test_a_model_saved_alone_loads_with_its_dataset_but_cannot_be_resumed(tmp_path):
    from convnet.errors import BadCheckpointError
    from convnet.training import checkpoint
    model = LeNet5(seed=6)
    path = tmp_path / "sub" / "model.npz"
    trainer.save_model(path, model, "fashion-mnist")
    loaded, dataset, names = trainer.load_model(path)
    assert dataset == "fashion-mnist" and names[0] == "T-shirt/top" and len(names) == 10
    assert all(np.array_equal(a, b) for a, b in zip(weight_list(model), weight_list(loaded)))
    assert [p.name for p in path.parent.iterdir()] == ["model.npz"]   # no temporary left
    with pytest.raises(BadCheckpointError, match="has no model spec or optimizer"):
        checkpoint.read_training_state(path)
