"""Adam, the training loop, seeding and exact resumption of the NumPy trainer."""

import numpy as np
import pytest

from convnet.apps.cli.cli import main
from convnet.nn.lenet5 import LeNet5
from convnet.nn.optim import Adam
from convnet.nn.sequential import Sequential
from convnet.nn.threads import blas_threads
from convnet.training import trainer


def read_npz(path):
    """Every array of a checkpoint this project wrote (trusted: written by the test)."""
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def weight_list(model):
    return list(model.get_weights().values())


@pytest.fixture(scope="module")
def small_mnist(mnist_slice, tmp_path_factory):
    """A small MNIST.npz (320 training, 200 validation, 200 test images)."""
    return mnist_slice(tmp_path_factory.mktemp("data") / "MNIST.npz", 320, 200, 200)


# ---------------------------------------------------------------- Adam
def adam_reference(params, grad_fn, steps, lr=0.001, beta1=0.9, beta2=0.999, epsilon=1e-7):
    """Adam written out from its equations (Keras's placement of epsilon), in float64."""
    params = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        grads = grad_fn(params)
        for i, g in enumerate(grads):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g ** 2
            step_size = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
            params[i] = params[i] - step_size * m[i] / (np.sqrt(v[i]) + epsilon)
    return params


def quadratic_gradients(params):
    """Gradients of sum((A - 1)**2) + sum(B**3): they depend on the point, so steps differ."""
    A, B = params
    return [2 * (A - 1), 3 * B ** 2]


@pytest.mark.parametrize("lr, epsilon", [(0.001, 1e-7), (0.1, 1e-3)])
def test_adam_matches_its_equations(lr, epsilon):
    rng = np.random.default_rng(0)
    start = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    params = [p.copy() for p in start]
    optimizer = Adam(params, lr=lr, epsilon=epsilon)
    for _ in range(7):
        optimizer.step(quadratic_gradients(params))
    expected = adam_reference(start, quadratic_gradients, 7, lr=lr, epsilon=epsilon)
    for got, want in zip(params, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert optimizer.iterations == 7


def test_adam_matches_keras():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(1)
    start = [rng.standard_normal((3, 2)).astype(np.float32),
             rng.standard_normal(4).astype(np.float32)]
    params = [p.copy() for p in start]
    optimizer = Adam(params)
    variables = [tf.Variable(p) for p in start]
    keras_adam = tf.keras.optimizers.Adam()
    for _ in range(5):
        grads = quadratic_gradients(params)
        optimizer.step([g.astype(np.float32) for g in grads])
        keras_grads = quadratic_gradients([v.numpy() for v in variables])
        keras_adam.apply_gradients(zip([tf.constant(g) for g in keras_grads], variables))
    for got, variable in zip(params, variables):
        np.testing.assert_allclose(got, variable.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("grads, message", [
    ([np.zeros((3, 2))], r"grads must match the parameters' shapes \[\(3, 2\), \(4,\)\]"),
    ([np.zeros((2, 3)), np.zeros(4)], r"received \[\(2, 3\), \(4,\)\]"),
])
def test_adam_rejects_gradients_of_other_shapes(grads, message):
    optimizer = Adam([np.zeros((3, 2)), np.zeros(4)])
    with pytest.raises(ValueError, match=message):
        optimizer.step(grads)
    assert optimizer.iterations == 0


def test_adam_rejects_parameters_of_mixed_dtypes():
    with pytest.raises(ValueError, match=r"params must share one dtype"):
        Adam([np.zeros(2, np.float32), np.zeros(2, np.float64)])


def test_adam_state_round_trip_continues_identically():
    rng = np.random.default_rng(2)
    start = [rng.standard_normal((2, 2)), rng.standard_normal(3)]
    a_params = [p.copy() for p in start]
    a = Adam(a_params)
    for _ in range(3):
        a.step(quadratic_gradients(a_params))
    b_params = [p.copy() for p in a_params]
    b = Adam(b_params)
    b.load_state(a.state())
    for _ in range(3):
        a.step(quadratic_gradients(a_params))
        b.step(quadratic_gradients(b_params))
    assert all(np.array_equal(x, y) for x, y in zip(a_params, b_params))
    with pytest.raises(ValueError, match="optimizer state 'm1' has shape"):
        b.load_state({**a.state(), "m1": np.zeros(5)})
    with pytest.raises(ValueError, match="must be a positive number"):
        Adam(b_params, lr=0)


# ---------------------------------------------------------------- training loop
def test_epoch_order_depends_only_on_seed_and_epoch():
    first = trainer.epoch_order(3, 2, 100)
    assert np.array_equal(first, trainer.epoch_order(3, 2, 100))
    assert np.array_equal(np.sort(first), np.arange(100))
    assert not np.array_equal(first, trainer.epoch_order(3, 1, 100))
    assert not np.array_equal(first, trainer.epoch_order(4, 2, 100))


def test_three_hundred_steps_reach_ninety_percent(mnist):
    X_train, Y_train, X_valid, Y_valid = mnist[:4]
    model = LeNet5(seed=0)
    optimizer = Adam(model.parameters())
    loss = trainer.train_epoch(model, optimizer, X_train[:9600], Y_train[:9600],
                               batch_size=32, seed=0, epoch=1)
    assert optimizer.iterations == 300
    with blas_threads(1):
        _, accuracy = model.evaluate(X_valid, Y_valid)
    assert accuracy >= 0.9
    assert loss < 1.0


def test_same_seed_same_training(mnist):
    X, Y = mnist[0][:320], mnist[1][:320]
    runs = []
    for _ in range(2):
        model = LeNet5(seed=7)
        trainer.train_epoch(model, Adam(model.parameters()), X, Y, 32, seed=7, epoch=1)
        runs.append(weight_list(model))
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
    other = LeNet5(seed=7)
    trainer.train_epoch(other, Adam(other.parameters()), X, Y, 32, seed=8, epoch=1)
    assert not np.array_equal(weight_list(other)[0], runs[0][0])


def test_fit_history_and_lines(mnist):
    X_train, Y_train, X_valid, Y_valid = (array[:200] for array in mnist[:4])
    model = LeNet5()
    lines, saved = [], []
    history = trainer.fit(model, Adam(model.parameters()), (X_train, Y_train, X_valid, Y_valid),
                          epochs=2, batch_size=50, log=lines.append, progress=False,
                          on_epoch_end=lambda epoch, history: saved.append(epoch))
    assert saved == [0, 1, 2]
    assert [len(history[key]) for key in trainer.HISTORY_KEYS] == [3, 3, 3, 3]
    assert len(history["epoch_seconds"]) == 2
    assert lines[2].startswith("After 2 epochs: cost ")
    loss, accuracy = model.evaluate(X_valid, Y_valid)
    assert lines[2].endswith(f"validation cost {loss:.4f}, validation accuracy {accuracy:.4f}")


def checkpoint_state(path):
    """Weights and optimizer state of a checkpoint, as a dict of arrays."""
    arrays = read_npz(path)
    return {key: value for key, value in arrays.items()
            if "/" in key or key.startswith("optimizer") or key == "epoch"}


def assert_same_state(path_a, path_b):
    a, b = checkpoint_state(path_a), checkpoint_state(path_b)
    assert sorted(a) == sorted(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def train_args(data, out, epochs, *extra):
    return ["train", "--data", str(data), "--epochs", str(epochs), "--out", str(out), *extra]


@pytest.mark.parametrize("processes", ["1", "2"])
def test_resume_equals_uninterrupted(small_mnist, tmp_path, processes):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    options = ("--processes", processes)
    assert main(train_args(small_mnist, straight, 2, *options)) == 0
    assert main(train_args(small_mnist, stopped, 1, *options)) == 0
    assert main(train_args(small_mnist, stopped, 2, "--resume", *options)) == 0
    assert_same_state(straight / "checkpoint.npz", stopped / "checkpoint.npz")
    straight_history = read_npz(straight / "checkpoint.npz")["history_val_loss"]
    assert np.array_equal(straight_history, read_npz(stopped / "checkpoint.npz")["history_val_loss"])


def test_resume_after_interruption_mid_epoch(small_mnist, tmp_path, monkeypatch, capsys):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    options = ("--processes", "1")
    assert main(train_args(small_mnist, straight, 2, *options)) == 0
    real_step = Sequential.loss_and_grads
    seen = {"images": 0}

    def interrupted_step(self, X, Y, training=True):
        # Counted in images, whatever the shards of a step: 10 steps of 32 per epoch, so
        # this stops inside step 4 of epoch 2.
        seen["images"] += len(X)
        if seen["images"] > (10 + 3) * 32:
            raise KeyboardInterrupt
        return real_step(self, X, Y, training)

    monkeypatch.setattr(Sequential, "loss_and_grads", interrupted_step)
    assert main(train_args(small_mnist, stopped, 2, *options)) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err
    assert "Traceback" not in err
    assert int(read_npz(stopped / "checkpoint.npz")["epoch"]) == 1
    monkeypatch.setattr(Sequential, "loss_and_grads", real_step)
    assert main(train_args(small_mnist, stopped, 2, "--resume", *options)) == 0
    assert_same_state(straight / "checkpoint.npz", stopped / "checkpoint.npz")


def test_resume_after_interruption_in_the_first_epoch(small_mnist, tmp_path, monkeypatch):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(train_args(small_mnist, straight, 1)) == 0
    real_step = Sequential.loss_and_grads

    def interrupted_step(self, X, Y, training=True):
        raise KeyboardInterrupt

    monkeypatch.setattr(Sequential, "loss_and_grads", interrupted_step)
    assert main(train_args(small_mnist, stopped, 1)) == 130
    assert int(read_npz(stopped / "checkpoint.npz")["epoch"]) == 0
    monkeypatch.setattr(Sequential, "loss_and_grads", real_step)
    assert main(train_args(small_mnist, stopped, 1, "--resume")) == 0
    assert_same_state(straight / "checkpoint.npz", stopped / "checkpoint.npz")
    histories = [read_npz(path / "checkpoint.npz")["history_val_loss"]
                 for path in (straight, stopped)]
    assert np.array_equal(*histories)   # epoch 0 recorded once




# ---------------------------------------------------------------- augmentation
def shifted(image, dy, dx):
    """``image`` (h, w, c) moved down by dy and right by dx, zeros where nothing moved in."""
    moved = np.roll(image, (dy, dx), axis=(0, 1))
    if dy > 0:
        moved[:dy] = 0
    elif dy < 0:
        moved[dy:] = 0
    if dx > 0:
        moved[:, :dx] = 0
    elif dx < 0:
        moved[:, dx:] = 0
    return moved


def test_flip_mirrors_about_half_of_the_images_and_leaves_the_batch_alone():
    X = np.random.default_rng(0).random((400, 6, 5, 2)).astype(np.float32)
    before = X.copy()
    out = trainer.augment_batch(X, ["flip"], np.random.default_rng(1))
    assert np.array_equal(X, before)
    mirrored = np.array([np.array_equal(o, x[:, ::-1]) for o, x in zip(out, X)])
    kept = np.array([np.array_equal(o, x) for o, x in zip(out, X)])
    assert np.all(mirrored ^ kept)
    assert 150 < mirrored.sum() < 250


def test_shift_moves_each_image_by_at_most_two_pixels_with_zeros():
    X = np.random.default_rng(2).random((60, 7, 6, 3)) + 1   # no zero pixel of its own
    out = trainer.augment_batch(X, ["shift"], np.random.default_rng(3))
    moves = set()
    for o, x in zip(out, X):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.array_equal(o, shifted(x, dy, dx))]
        assert len(found) == 1
        moves.add(found[0])
    assert len(moves) > 10   # the 25 moves are all drawn, not one


def test_augmentation_depends_on_the_generator_alone_and_refuses_unknown_kinds():
    X = np.random.default_rng(4).random((8, 5, 5, 1))
    first = trainer.augment_batch(X, ["flip", "shift"], np.random.default_rng([7, 1, 2]))
    again = trainer.augment_batch(X, ["shift", "flip"], np.random.default_rng([7, 1, 2]))
    assert np.array_equal(first, again)
    with pytest.raises(ValueError, match=r"kinds must be among flip, shift, received \['rotate'\]"):
        trainer.augment_batch(X, ["rotate"], np.random.default_rng(0))


def test_resume_with_augmentation_equals_uninterrupted_and_refuses_another(small_mnist, tmp_path,
                                                                          capsys):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    options = ("--processes", "1", "--augment", "shift", "--augment", "flip")
    assert main(train_args(small_mnist, straight, 2, *options)) == 0
    assert main(train_args(small_mnist, stopped, 1, *options)) == 0
    assert main(train_args(small_mnist, stopped, 2, "--resume", "--processes", "1")) == 2
    assert "it was trained with --augment flip,shift (this run: none)" in capsys.readouterr().err
    assert main(train_args(small_mnist, stopped, 2, "--resume", *options)) == 0
    assert_same_state(straight / "checkpoint.npz", stopped / "checkpoint.npz")
    plain = tmp_path / "plain"
    assert main(train_args(small_mnist, plain, 1, "--processes", "1")) == 0
    assert not np.array_equal(read_npz(plain / "checkpoint.npz")["conv1/kernel"],
                              read_npz(stopped / "checkpoint.npz")["conv1/kernel"])
