"""Adam, RMSprop and SGD against Keras's own optimisers, state round trips, the factory."""
import itertools

import numpy as np
import pytest

from convnet.nn import optim
from convnet.nn.lenet5 import LeNet5
from convnet.nn.memory import views_like
from convnet.nn.optim import BLOCK, FLUSH_STEPS, SGD, Adam, RMSprop, add_weighted, make_optimizer
from convnet.parallel.distributed import DataParallel

STEPS = 100
# (our class, our hyper-parameters, Keras class name, Keras's hyper-parameters). The large
# epsilons make the place where epsilon is added matter at this tolerance.
CASES = [
    (Adam, {}, "Adam", {}),
    (Adam, {"lr": 0.001, "beta1": 0.8, "beta2": 0.99, "epsilon": 0.1}, "Adam",
     {"learning_rate": 0.001, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 0.1}),
    (RMSprop, {}, "RMSprop", {}),
    (RMSprop, {"lr": 0.01, "rho": 0.8, "epsilon": 0.1}, "RMSprop",
     {"learning_rate": 0.01, "rho": 0.8, "epsilon": 0.1}),
    (RMSprop, {"lr": 0.01, "momentum": 0.9}, "RMSprop", {"learning_rate": 0.01, "momentum": 0.9}),
    (RMSprop, {"lr": 0.003, "momentum": 0.5, "centered": True, "epsilon": 0.01}, "RMSprop",
     {"learning_rate": 0.003, "momentum": 0.5, "centered": True, "epsilon": 0.01}),
    (SGD, {}, "SGD", {}),
    (SGD, {"lr": 0.05, "momentum": 0.9}, "SGD", {"learning_rate": 0.05, "momentum": 0.9}),
    (SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}, "SGD",
     {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
]
CASE_IDS = ["adam", "adam-eps0.1", "rmsprop", "rmsprop-eps0.1", "rmsprop-momentum",
            "rmsprop-centered", "sgd", "sgd-momentum", "sgd-nesterov"]


def start_and_gradients(dtype, steps=STEPS, seed=0):
    """Parameters of order 1 and a fixed sequence of gradients spanning 1e-3 to 1 in scale."""
    rng = np.random.default_rng(seed)
    shapes = [(3, 3, 2, 4), (1, 1, 1, 4), (7,)]
    start = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    scales = [np.logspace(-3, 0, int(np.prod(shape))).reshape(shape) for shape in shapes]
    grads = [[(rng.standard_normal(shape) * scale).astype(dtype)
              for shape, scale in zip(shapes, scales)] for _ in range(steps)]
    return start, grads


@pytest.fixture(scope="module")
def tf_graph_as_written():
    """TensorFlow, with its graph rewrites off while these tests run.

    Keras's steps run as one compiled function each (eager steps are several times
    slower); without the rewrites the graph computes exactly the operations Keras
    wrote, in its order, as eager execution does.
    """
    tf = pytest.importorskip("tensorflow")
    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    yield tf
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ours, hyper, keras_name, keras_hyper", CASES, ids=CASE_IDS)
def test_optimizer_follows_keras_for_100_steps(ours, hyper, keras_name, keras_hyper, dtype,
                                               tf_graph_as_written):
    tf = tf_graph_as_written
    keras = pytest.importorskip("keras")
    start, grads = start_and_gradients(dtype)
    # Keras keeps the learning rate in a float32 variable, and casts SGD's momentum to the
    # weights' dtype through a float32 tensor: with float64 weights both are float32 numbers.
    hyper = {**hyper, "lr": float(np.float32(hyper.get("lr", ours(start).lr)))}
    if ours is SGD and "momentum" in hyper:
        hyper["momentum"] = float(np.float32(hyper["momentum"]))
    params = [p.copy() for p in start]
    optimizer = ours(params, **hyper)
    variables = [keras.Variable(p, dtype=np.dtype(dtype).name) for p in start]
    reference = getattr(keras.optimizers, keras_name)(**keras_hyper)
    reference_step = tf.function(lambda grad: reference.apply_gradients(zip(grad, variables)))
    for step, grad in enumerate(grads, 1):
        optimizer.step(grad)
        reference_step([tf.constant(g) for g in grad])
        for ours_now, variable in zip(params, variables):
            # Absolute tolerance on parameters of order 1.
            np.testing.assert_allclose(ours_now, variable.numpy(), rtol=0, atol=1e-6,
                                       err_msg=f"step {step}")
        assert all(p.dtype == dtype for p in params)
    assert optimizer.iterations == int(reference.iterations.numpy()) == STEPS
    moved = max(np.abs(p - s).max() for p, s in zip(params, start))
    assert moved > 1e-3   # the comparison is not between two parameters that never moved


@pytest.mark.parametrize("ours, hyper", [(case[0], case[1]) for case in CASES], ids=CASE_IDS)
def test_state_round_trip_continues_identically(ours, hyper):
    start, grads = start_and_gradients(np.float64, steps=10, seed=3)
    a_params = [p.copy() for p in start]
    a = ours(a_params, **hyper)
    for grad in grads[:5]:
        a.step(grad)
    b_params = [p.copy() for p in a_params]
    b = ours(b_params, **hyper)
    b.load_state(a.state())
    assert b.iterations == 5
    for grad in grads[5:]:
        a.step(grad)
        b.step(grad)
    assert all(np.array_equal(x, y) for x, y in zip(a_params, b_params))
    assert all(np.array_equal(a.state()[key], b.state()[key]) for key in a.state())


def test_state_names_the_buffers_each_optimizer_keeps():
    params = [np.zeros((2, 2)), np.zeros(3)]
    assert set(Adam(params).state()) == {"iterations", "m0", "v0", "m1", "v1"}
    assert set(SGD(params).state()) == {"iterations"}
    assert set(SGD(params, momentum=0.9).state()) == {"iterations", "velocity0", "velocity1"}
    assert set(RMSprop(params, momentum=0.5, centered=True).state()) == {
        "iterations", "velocity0", "velocity1", "momentum0", "momentum1",
        "average_gradient0", "average_gradient1"}


def test_load_state_refuses_another_optimizers_state():
    params = [np.zeros((2, 2)), np.zeros(3)]
    with pytest.raises(ValueError, match=r"keys \['m0', 'm1', 'v0', 'v1'\] that sgd"):
        SGD(params, momentum=0.9).load_state(Adam(params).state())
    with pytest.raises(ValueError, match="optimizer state is missing 'm0'"):
        Adam(params).load_state({"iterations": np.int64(1)})
    with pytest.raises(ValueError, match="optimizer state 'velocity1' has shape"):
        RMSprop(params).load_state({**RMSprop(params).state(), "velocity1": np.zeros(4)})


@pytest.mark.parametrize("ours, hyper", [(case[0], case[1]) for case in CASES], ids=CASE_IDS)
def test_one_flat_parameter_equals_the_parameters_apart(ours, hyper):
    """Every formula is element-wise: joining the parameters into one array changes nothing."""
    start, grads = start_and_gradients(np.float64, steps=4, seed=5)
    apart_params = [p.copy() for p in start]
    apart = ours(apart_params, **hyper)
    flat = np.concatenate([p.ravel() for p in start])
    joined = ours([flat], **hyper)
    for grad in grads:
        apart.step(grad)
        joined.step([np.concatenate([x.ravel() for x in grad])])
    np.testing.assert_array_equal(flat, np.concatenate([p.ravel() for p in apart_params]))


@pytest.mark.parametrize("weights", [None, [0.375, 0.5, 0.125]], ids=["summed", "weighted rows"])
@pytest.mark.parametrize("ours, hyper", [(case[0], case[1]) for case in CASES], ids=CASE_IDS)
def test_parts_stepped_apart_make_the_whole_step_bit_for_bit(ours, hyper, weights):
    """What the ranks of a job do: each steps its own part, then copies it to the others.

    With weights, each part receives its rows of every micro-batch's gradient and
    adds them up itself, as ``g[0] * w[0] + g[1] * w[1] + ...``.
    """
    rng = np.random.default_rng(4)
    shapes = [(BLOCK + 7,), (3, 5), (BLOCK + 900,)]
    size = sum(int(np.prod(shape)) for shape in shapes)
    start = rng.standard_normal(size).astype(np.float32)
    templates = [np.empty(shape, np.float32) for shape in shapes]
    bounds = [0, 40000, BLOCK + 100, size]   # not on the blocks' boundaries
    whole_flat = start.copy()
    whole = ours(views_like(whole_flat, templates), **hyper)
    flats = [start.copy() for _ in bounds[1:]]
    ranks = [ours(views_like(flat, templates), **hyper) for flat in flats]
    for _ in range(3):
        rows = (rng.standard_normal((len(weights or [1]), size))
                * np.logspace(-3, 0, size)).astype(np.float32)
        g = rows[0].copy()
        if weights is not None:
            g = rows[0] * np.float32(weights[0])
            for row, weight in zip(rows[1:], weights[1:]):
                g += row * np.float32(weight)
        whole.step(views_like(g, templates))
        for rank, (first, last) in enumerate(itertools.pairwise(bounds)):
            if weights is None:
                ranks[rank].step_part(g[first:last], slice(first, last))
            else:
                ranks[rank].step_part(rows[:, first:last], slice(first, last), weights)
        for owner, (first, last) in enumerate(itertools.pairwise(bounds)):
            for flat in flats:
                flat[first:last] = flats[owner][first:last]
    for rank, (first, last) in enumerate(itertools.pairwise(bounds)):
        assert flats[rank].tobytes() == whole_flat.tobytes()
        assert ranks[rank].iterations == whole.iterations == 3
        for slot, buffer in whole.flat_slots().items():
            assert ranks[rank].flat_slots()[slot][first:last].tobytes() == \
                buffer[first:last].tobytes(), slot


def _subnormal_run(ours, hyper, dtype, how, steps):
    """Step parameters whose state starts subnormal where their gradient stays zero.

    Returns the parameters and the flat state after each step. ``how``: ``"one
    buffer"`` (parameters that are views of one buffer, stepped in blocks),
    ``"apart"`` (separate arrays) or ``"parts"`` (one buffer, stepped in two
    parts with ``step_part``, as the ranks of a job do).
    """
    rng = np.random.default_rng(11)
    shapes = [(BLOCK + 5,), (3, 7)]
    templates = [np.empty(shape, dtype) for shape in shapes]
    size = sum(int(np.prod(shape)) for shape in shapes)
    flat = rng.standard_normal(size).astype(dtype)
    params = [p.copy() for p in views_like(flat, templates)] if how == "apart" \
        else views_like(flat, templates)
    optimizer = ours(params, **hyper)
    # A third of the entries start with subnormal state and get no gradient, as the
    # weights of a unit that a ReLU keeps off; sums of squares hold no negative number.
    idle = rng.random(size) < 1 / 3
    tiny = np.finfo(dtype).tiny
    for slot, buffer in optimizer.flat_slots().items():
        low = tiny * rng.uniform(0.01, 0.99, size)
        signs = 1 if slot in ("v", "velocity") and ours is not SGD else rng.choice([-1, 1], size)
        buffer[idle] = (low * signs)[idle]
    after = []
    for _ in range(steps):
        g = (rng.standard_normal(size) * np.logspace(-3, 0, size)).astype(dtype)
        g[idle] = 0
        if how == "parts":
            half = size // 2 + 3
            optimizer.step_part(g[:half], slice(0, half))
            optimizer.iterations -= 1
            optimizer.step_part(g[half:], slice(half, size))
        else:
            optimizer.step(views_like(g, templates))
        now = np.concatenate([p.ravel() for p in params])
        after.append((now, {slot: buffer.copy() for slot, buffer in optimizer.flat_slots().items()}))
    return after


@pytest.mark.parametrize("how", ["one buffer", "apart", "parts"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ours, hyper", [(case[0], case[1]) for case in CASES], ids=CASE_IDS)
def test_subnormal_state_is_flushed_to_zero_and_the_parameters_move_as_before(
        ours, hyper, dtype, how, monkeypatch):
    steps = FLUSH_STEPS + 2
    with monkeypatch.context() as never:
        never.setattr(optim, "FLUSH_STEPS", 10 ** 9)
        kept = _subnormal_run(ours, hyper, dtype, how, steps)
    flushed = _subnormal_run(ours, hyper, dtype, how, steps)
    tiny = np.finfo(dtype).tiny
    for step, ((params, state), (kept_params, kept_state)) in enumerate(zip(flushed, kept), 1):
        assert params.tobytes() == kept_params.tobytes(), step
        for slot, buffer in state.items():
            reference = kept_state[slot]
            subnormal = (reference != 0) & (np.abs(reference) < tiny)
            if step < FLUSH_STEPS:
                assert buffer.tobytes() == reference.tobytes(), (step, slot)
            elif step == FLUSH_STEPS:
                assert subnormal.any(), slot   # something to flush
                assert not ((buffer != 0) & (np.abs(buffer) < tiny)).any(), slot
                np.testing.assert_array_equal(buffer[~subnormal], reference[~subnormal])
                assert (buffer[subnormal] == 0).all()


@pytest.mark.parametrize("weights", [[1.0], [0.25, 0.75], [0.3, 0.5, 0.2], [0.5, 0.5],
                                     [0.25] * 4, [0.125] * 8, [1 / 3] * 3])
def test_weighted_rows_are_multiplied_and_added_in_order(weights):
    rng = np.random.default_rng(9)
    rows = rng.standard_normal((len(weights), 1001)).astype(np.float32)
    expected = rows[0] * np.float32(weights[0])
    for row, weight in zip(rows[1:], weights[1:]):
        expected = expected + row * np.float32(weight)
    out, scratch = np.full(1001, np.nan, np.float32), np.empty(1001, np.float32)
    assert add_weighted(rows, weights, out, scratch) is out
    assert out.tobytes() == expected.tobytes()
    # Into the first row itself, as a fold of earlier micro-batches does.
    add_weighted(rows, weights, rows[0], scratch)
    assert rows[0].tobytes() == expected.tobytes()


@pytest.mark.parametrize("weights, products", [([0.5, 0.5], False), ([0.25] * 4, False),
                                               ([0.5, 0.25, 0.25], True), ([0.75, 0.75], True)])
def test_equal_powers_of_two_add_the_rows_before_one_product(weights, products):
    rows = np.random.default_rng(10).standard_normal((len(weights), 257)).astype(np.float32)
    scratch = np.full(257, np.nan, np.float32)
    add_weighted(rows, weights, np.empty(257, np.float32), scratch)
    # The ordered way keeps each product after the first in the scratch row.
    assert np.isnan(scratch).all() != products


def test_a_part_needs_one_buffer_of_parameters_and_a_gradient_of_its_length():
    apart = Adam([np.zeros(3, np.float32), np.zeros(4, np.float32)])
    with pytest.raises(ValueError, match="consecutive views of one buffer"):
        apart.step_part(np.zeros(2, np.float32), slice(0, 2))
    joined = Adam(views_like(np.zeros(7, np.float32), [np.empty(3), np.empty(4)]))
    with pytest.raises(ValueError, match=r"g must have shape \(3,\) for part"):
        joined.step_part(np.zeros(2, np.float32), slice(2, 5))
    with pytest.raises(ValueError, match=r"g must have shape \(2, 3\) for part"):
        joined.step_part(np.zeros(3, np.float32), slice(2, 5), [0.5, 0.5])
    assert joined.iterations == 0


def test_an_optimizer_follows_its_parameters_when_they_move():
    """After ``follow`` the moved arrays are updated, with the state kept: the same numbers."""
    start, grads = start_and_gradients(np.float32, steps=4, seed=6)
    staying = [p.copy() for p in start]
    reference = RMSprop(staying, momentum=0.5)
    moving = [p.copy() for p in start]
    optimizer = RMSprop(moving, momentum=0.5)
    for grad in grads[:2]:
        reference.step(grad)
        optimizer.step(grad)
    moved = views_like(np.concatenate([p.ravel() for p in moving]), moving)
    optimizer.follow(moved)
    for grad in grads[2:]:
        reference.step(grad)
        optimizer.step(grad)
    for ours, expected, left in zip(moved, staying, moving):
        assert ours.tobytes() == expected.tobytes()
        assert not np.array_equal(left, expected)   # the former arrays were left alone
    with pytest.raises(ValueError, match="params must have the shapes and dtype"):
        optimizer.follow([p.astype(np.float64) for p in moved])
    with pytest.raises(ValueError, match="params must have the shapes and dtype"):
        optimizer.follow(moved[:-1])


@pytest.mark.parametrize("ours, hyper", [(RMSprop, {"momentum": 0.5}),
                                         (SGD, {"momentum": 0.9, "nesterov": True})],
                         ids=["rmsprop", "sgd-nesterov"])
def test_micro_batches_run_the_other_optimizers(ours, hyper):
    rng = np.random.default_rng(0)
    X, Y = rng.random((12, 28, 28)), rng.integers(0, 10, 12)
    model, reference = LeNet5(seed=2, dtype=np.float64), LeNet5(seed=2, dtype=np.float64)
    optimizer, reference_optimizer = ours(model.parameters(), **hyper), ours(
        reference.parameters(), **hyper)
    steps = DataParallel(model, optimizer, micro_batch=3)
    order = rng.permutation(12)
    for start in range(0, 12, 4):
        indices = order[start:start + 4]
        steps.step(X[indices], Y[indices])
        reference_optimizer.step(reference.loss_and_grads(X[indices], Y[indices])[1])
    for ours_now, expected in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(ours_now, expected, rtol=1e-9, atol=1e-13)


# ---------------------------------------------------------------- factory and arguments
@pytest.mark.parametrize("name, cls", [("adam", Adam), ("RMSprop", RMSprop), ("sgd", SGD)])
def test_make_optimizer_builds_by_name_with_keras_defaults(name, cls):
    optimizer = make_optimizer(name, [np.zeros(3, np.float32)])
    assert type(optimizer) is cls
    assert optimizer.lr == (0.01 if cls is SGD else 0.001)
    config = optimizer.config()
    rebuilt = make_optimizer(config.pop("name"), [np.zeros(3, np.float32)], **config)
    assert rebuilt.config() == optimizer.config()


def test_make_optimizer_passes_hyper_parameters():
    optimizer = make_optimizer("sgd", [np.zeros(3)], lr=0.1, momentum=0.9, nesterov=True)
    assert optimizer.config() == {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}


@pytest.mark.parametrize("name, hyper, message", [
    ("adagrad", {}, r"optimizer must be one of adam, rmsprop, sgd, received 'adagrad'"),
    (None, {}, r"optimizer must be one of adam, rmsprop, sgd, received None"),
    ("sgd", {"beta1": 0.9},
     r"sgd takes the hyper-parameters lr, momentum, nesterov; received 'beta1'"),
    ("rmsprop", {"learning_rate": 0.1}, r"rmsprop takes .*received 'learning_rate'"),
    ("adam", {"lr": 0}, r"lr must be a positive number, received 0"),
    ("sgd", {"lr": float("nan")}, r"lr must be a positive number, received nan"),
    ("sgd", {"lr": "0.1"}, r"lr must be a positive number, received '0.1'"),
    ("sgd", {"momentum": 1.5}, r"momentum must be in \[0, 1\], received 1.5"),
    ("rmsprop", {"momentum": 1.0}, r"momentum must be in \[0, 1\), received 1.0"),
    ("rmsprop", {"rho": -0.1}, r"rho must be in \[0, 1\), received -0.1"),
    ("adam", {"beta2": 1}, r"beta2 must be in \[0, 1\), received 1"),
    ("adam", {"epsilon": -1e-7}, r"epsilon must be in \[0, inf\], received -1e-07"),
    ("adam", {"beta1": True}, r"beta1 must be a finite number, received True"),
])
def test_make_optimizer_rejects_bad_names_and_hyper_parameters(name, hyper, message):
    with pytest.raises(ValueError, match=message):
        make_optimizer(name, [np.zeros(3)], **hyper)


@pytest.mark.parametrize("name, hyper, message", [
    ("rmsprop", {"centered": "yes"}, r"centered must be True or False, received 'yes'"),
    ("sgd", {"nesterov": 1}, r"nesterov must be True or False, received 1"),
])
def test_make_optimizer_rejects_flags_that_are_not_bools(name, hyper, message):
    with pytest.raises(TypeError, match=message):
        make_optimizer(name, [np.zeros(3)], **hyper)


@pytest.mark.parametrize("cls", [Adam, RMSprop, SGD])
def test_optimizers_reject_gradients_of_other_shapes_and_mixed_dtypes(cls):
    optimizer = cls([np.zeros((3, 2)), np.zeros(4)])
    with pytest.raises(ValueError, match=r"grads must match the parameters' shapes"):
        optimizer.step([np.zeros((2, 3)), np.zeros(4)])
    assert optimizer.iterations == 0
    with pytest.raises(ValueError, match=r"params must share one dtype"):
        cls([np.zeros(2, np.float32), np.zeros(2, np.float64)])
