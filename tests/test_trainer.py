"""Adam, the training loop, seeding, exact resumption and training processes of the NumPy trainer."""
import itertools
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from convnet import parallel, trainer
from convnet.cli import main
from convnet.model import LeNet5
from convnet.optim import Adam, make_optimizer
from convnet.parallel import TrainingProcesses
from convnet.sequential import Sequential
from convnet.threads import blas_threads


def read_npz(path):
    """Every array of a checkpoint this project wrote (trusted: written by the test)."""
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def weight_list(model):
    return list(model.get_weights().values())


@pytest.fixture(scope="module")
def small_mnist(mnist, tmp_path_factory):
    """A small MNIST.npz (320 training, 200 validation, 200 test images)."""
    X_train, Y_train, X_valid, Y_valid, X_test, Y_test = mnist
    path = tmp_path_factory.mktemp("data") / "MNIST.npz"
    np.savez(path, X_train=X_train[:320], Y_train=Y_train[:320], X_valid=X_valid[:200],
             Y_valid=Y_valid[:200], X_test=X_test[:200], Y_test=Y_test[:200])
    return path


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
    with trainer.blas_threads(1):
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


@pytest.mark.parametrize("processes", ["1", "2"])
def test_resume_after_interruption_mid_epoch(small_mnist, tmp_path, monkeypatch, capsys,
                                             processes):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    options = ("--processes", processes)
    assert main(train_args(small_mnist, straight, 2, *options)) == 0
    real_step = Sequential.loss_and_grads
    calls = {"count": 0}
    parent = os.getpid()

    def interrupted_step(self, X, Y, training=True):
        if os.getpid() == parent:   # Ctrl-C reaches the parent; children ignore it
            calls["count"] += 1
            if calls["count"] == 10 + 4:   # 10 steps per epoch: stop inside epoch 2
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


# ---------------------------------------------------------------- training processes
@pytest.mark.parametrize("processes, batch", [(2, 10), (3, 7), (2, 1), (3, 4)])
def test_training_processes_take_the_whole_batch_steps(processes, batch):
    rng = np.random.default_rng(0)
    X, Y = rng.random((20, 28, 28)), rng.integers(0, 10, 20)
    model, reference = LeNet5(seed=2, dtype=np.float64), LeNet5(seed=2, dtype=np.float64)
    optimizer, reference_optimizer = Adam(model.parameters()), Adam(reference.parameters())
    with TrainingProcesses(model, optimizer, X, Y, processes) as training:
        assert len(training.children) == processes - 1
        for _ in range(2):   # the second run sees the moments and weights every process changed
            order = rng.permutation(20)
            for start, (loss, count) in zip(range(0, 20, batch), training.run(order, batch)):
                indices = order[start:start + batch]
                assert count == len(indices)
                reference_loss, grads = reference.loss_and_grads(X[indices], Y[indices])
                reference_optimizer.step(grads)
                assert loss == pytest.approx(reference_loss, rel=1e-12)
            for ours, expected in zip(model.parameters(), reference.parameters()):
                np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-13)
            for ours, expected in zip(optimizer.m + optimizer.v,
                                      reference_optimizer.m + reference_optimizer.v):
                np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-16)
    assert optimizer.iterations == reference_optimizer.iterations == 2 * -(-20 // batch)
    assert training.children == []


DROPOUT_SPEC = [{"layer": "Input", "shape": [8, 8, 1]},
                {"layer": "Conv2D", "filters": 3, "kernel": 3, "activation": "relu"},
                {"layer": "Flatten"},
                {"layer": "Dropout", "rate": 0.5},
                {"layer": "Dense", "units": 4, "activation": "softmax"}]


@pytest.mark.parametrize("optimizer_name", ["adam", "rmsprop", "sgd"])
def test_training_processes_draw_dropout_masks_from_a_stream_per_step_and_process(
        optimizer_name):
    """Two processes with dropout equal a loop that seeds each slice with (step, rank)."""
    rng = np.random.default_rng(3)
    X, Y = rng.random((24, 8, 8)), rng.integers(0, 4, 24)
    model = Sequential(DROPOUT_SPEC, seed=4, dtype=np.float64)
    reference = Sequential(DROPOUT_SPEC, seed=4, dtype=np.float64)
    optimizer = make_optimizer(optimizer_name, model.parameters())
    reference_optimizer = make_optimizer(optimizer_name, reference.parameters())
    order = rng.permutation(24)
    with TrainingProcesses(model, optimizer, X, Y, 2) as training:
        losses = [loss for loss, _ in training.run(order, 8)]
    masks = []
    for step, start in enumerate(range(0, 24, 8), start=1):
        batch = order[start:start + 8]
        grads, loss = [np.zeros_like(param) for param in reference.parameters()], 0.0
        for rank, part in enumerate((batch[:4], batch[4:])):
            reference.seed_dropout(step, rank)
            part_loss, part_grads = reference.loss_and_grads(X[part], Y[part])
            masks.append(reference.layers[3].mask.copy())
            loss += part_loss / 2
            for total, grad in zip(grads, part_grads):
                total += grad / 2
        reference_optimizer.step(grads)
        assert losses[step - 1] == pytest.approx(loss, rel=1e-12)
    for ours, expected in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-13)
    # The two processes of a step, and two steps, drew different masks.
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[0], masks[2])


def test_a_model_with_batch_normalization_trains_in_one_process():
    spec = [{"layer": "Input", "shape": [6, 6, 1]}, {"layer": "Conv2D", "filters": 2, "kernel": 3},
            {"layer": "BatchNormalization"}, {"layer": "Flatten"},
            {"layer": "Dense", "units": 1, "activation": "sigmoid"}]
    model = Sequential(spec)
    X, Y = np.zeros((4, 6, 6), np.float32), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="BatchNormalization trains in one process"):
        TrainingProcesses(model, Adam(model.parameters()), X, Y, 2)
    with TrainingProcesses(model, Adam(model.parameters()), X, Y, 1) as training:
        [(loss, count)] = training.run(np.arange(4), 4)
    assert count == 4 and np.isfinite(loss)


@pytest.mark.parametrize("when", ["before the run", "during the run"])
def test_a_killed_training_process_stops_the_run_with_an_error(when):
    rng = np.random.default_rng(0)
    X, Y = rng.random((640, 28, 28)).astype(np.float32), rng.integers(0, 10, 640)
    model = LeNet5()
    optimizer = Adam(model.parameters())
    with TrainingProcesses(model, optimizer, X, Y, 3) as training:
        victim = training.children[1]
        steps = training.run(rng.permutation(640), 32)
        if when == "during the run":
            next(steps)
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        with pytest.raises(RuntimeError, match=r"training process failed: training process 3 "
                           r"of 3 \(pid \d+\) stopped: killed by signal SIGKILL"):
            list(steps)
    assert training.children == []


@pytest.mark.parametrize("count, parts, step", [(61706, 2, 16), (61706, 3, 8), (100, 7, 16),
                                               (10, 3, 16), (5, 1, 16), (32, 2, 1), (7, 3, 1),
                                               (1, 2, 1)])
def test_share_bounds_split_evenly_on_multiples_of_the_step(count, parts, step):
    bounds = parallel._share_bounds(count, parts, step)
    assert len(bounds) == parts + 1 and bounds[0] == 0 and bounds[-1] == count
    assert all(a <= b for a, b in itertools.pairwise(bounds))
    assert all(bound % step == 0 for bound in bounds[:-1])
    sizes = np.diff(bounds)
    assert sizes.max() - sizes.min() <= step + count % step   # nearly equal


def test_training_processes_report_errors_and_bad_counts():
    model = LeNet5()
    optimizer = Adam(model.parameters())
    X, Y = np.zeros((4, 28, 28), np.float32), np.array([0, 1, 2, 11])
    before = weight_list(model)
    with TrainingProcesses(model, optimizer, X, Y, 2) as training:
        with pytest.raises(RuntimeError, match="training process failed: ValueError: Y must hold"):
            list(training.run(np.array([0, 1, 3, 3]), 4))   # the child's slice is bad
        with pytest.raises(ValueError, match="Y must hold"):
            list(training.run(np.array([3, 3, 0, 1]), 4))   # this process's slice is bad
        assert optimizer.iterations == 0
        for ours, expected in zip(weight_list(model), before):
            np.testing.assert_array_equal(ours, expected)
        reference_loss = model.loss_and_grads(X[[0, 1, 2, 0]], Y[[0, 1, 2, 0]])[0]
        [(loss, count)] = training.run(np.array([0, 1, 2, 0]), 4)   # the children are ready
        assert (loss, count) == (pytest.approx(reference_loss), 4)
        assert optimizer.iterations == 1
    with pytest.raises(ValueError, match="processes must be a positive integer, received 0"):
        TrainingProcesses(model, optimizer, X, Y, 0)


def test_children_waiting_at_a_meeting_leave_when_the_run_is_abandoned():
    rng = np.random.default_rng(0)
    X, Y = rng.random((640, 28, 28)).astype(np.float32), rng.integers(0, 10, 640)
    model = LeNet5()
    training = TrainingProcesses(model, Adam(model.parameters()), X, Y, 3)
    children = list(training.children)
    steps = training.run(rng.permutation(640), 32)
    next(steps)   # the children go on to the next step's meeting and wait there
    training.close()
    # Left on their own, not terminated (which would give -SIGTERM).
    assert [child.exitcode for child in children] == [0, 0]


def test_processes_without_a_processor_each_wait_without_spinning(monkeypatch):
    rng = np.random.default_rng(0)
    X, Y = rng.random((64, 28, 28)).astype(np.float32), rng.integers(0, 10, 64)
    order = rng.permutation(64)
    weights = []
    for processors in (2, 1):
        monkeypatch.setattr(parallel, "available_processors", lambda count=processors: count)
        model = LeNet5()
        with TrainingProcesses(model, Adam(model.parameters()), X, Y, 2) as training:
            assert training._meeting.spin_seconds == (parallel.SPIN_SECONDS if processors == 2
                                                      else 0)
            list(training.run(order, 16))
        weights.append(model.flat_parameters().copy())
    np.testing.assert_array_equal(weights[0], weights[1])


def _process_state(pid):
    """The one-letter state of process ``pid`` from /proc, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_children_leave_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time, numpy as np\n"
        "from convnet.model import LeNet5\n"
        "from convnet.optim import Adam\n"
        "from convnet.parallel import TrainingProcesses\n"
        "X, Y = np.zeros((64, 28, 28), np.float32), np.zeros(64, int)\n"
        "model = LeNet5()\n"
        "training = TrainingProcesses(model, Adam(model.parameters()), X, Y, 3)\n"
        "steps = training.run(np.arange(64), 8)\n"
        "next(steps)\n"
        "print(*[child.pid for child in training.children], flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_process_state(pid) not in (None, "Z") for pid in pids)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_process_state(pid) not in (None, "Z")
                                                  for pid in pids):
            time.sleep(0.05)
        assert all(_process_state(pid) in (None, "Z") for pid in pids)
    finally:
        parent.kill()


# ---------------------------------------------------------------- evaluation in processes
@pytest.mark.parametrize("processes", [2, 3])
def test_evaluation_in_processes_equals_one_process(processes):
    rng = np.random.default_rng(0)
    sets = [(rng.random((1234, 28, 28)).astype(np.float32), rng.integers(0, 10, 1234)),
            (rng.random((70, 28, 28)).astype(np.float32), rng.integers(0, 10, 70))]
    model = LeNet5(seed=1)
    results = parallel.evaluate(model, sets, processes, batch_size=100)
    for (loss, accuracy), (X, Y) in zip(results, sets):
        with blas_threads(1):   # every share is evaluated with one BLAS thread
            expected_loss, expected_accuracy = model.evaluate(X, Y, batch_size=100)
        assert accuracy == expected_accuracy
        assert loss == pytest.approx(expected_loss, rel=1e-12)
    with blas_threads(1):
        expected = [model.evaluate(X, Y, batch_size=100) for X, Y in sets]
    assert parallel.evaluate(model, sets, 1, batch_size=100) == expected


def test_evaluation_in_processes_reports_errors(monkeypatch):
    model = LeNet5()
    X = np.zeros((1000, 28, 28), np.float32)
    bad_late, bad_early = np.zeros(1000, int), np.zeros(1000, int)
    bad_late[-1] = bad_early[0] = 11
    with pytest.raises(parallel.TrainingProcessError, match="ValueError: Y must hold"):
        parallel.evaluate(model, [(X, bad_late)], 2)   # in the child's share
    with pytest.raises(ValueError, match="Y must hold"):
        parallel.evaluate(model, [(X, bad_early)], 2)   # in this process's share
    with pytest.raises(ValueError, match="cannot evaluate on an empty set"):
        parallel.evaluate(model, [(X[:0], bad_late[:0])], 2)
    with pytest.raises(ValueError, match="processes must be a positive integer, received 0"):
        parallel.evaluate(model, [(X, bad_late)], 0)
    original = parallel._evaluate_share

    def stopping_child(model, sets, rank, processes, batch_size):
        if rank:
            os._exit(1)
        return original(model, sets, rank, processes, batch_size)

    monkeypatch.setattr(parallel, "_evaluate_share", stopping_child)
    with pytest.raises(parallel.TrainingProcessError,
                       match=r"failed: evaluation process 2 of 2 \(pid \d+\) stopped: exit status 1"):
        parallel.evaluate(model, [(X, np.zeros(1000, int))], 2)


def test_an_interrupted_evaluation_stops_its_children_at_once(monkeypatch):
    model = LeNet5()
    X, Y = np.zeros((1000, 28, 28), np.float32), np.zeros(1000, int)

    def slow_children(model, sets, rank, processes, batch_size):
        if rank:
            time.sleep(60)
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel, "_evaluate_share", slow_children)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        parallel.evaluate(model, [(X, Y)], 2)
    assert time.monotonic() - started < 3   # not the 60 s of the children's work
