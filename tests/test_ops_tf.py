"""Tasks 0-3, engine (convnet/nn/ops.py) and task files, against TensorFlow's own ops, float64."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from convnet.nn import ops
from convnet.nn.ops import pool_backward

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed: "
                                              "comparisons with tf.nn are skipped")

sys.path.insert(0, str(Path(__file__).parent))
from reference_ops import load_task_functions, reference_pads

IMPLEMENTATIONS = [pytest.param(ops, id="engine"), pytest.param(load_task_functions(), id="task")]

TOLERANCE = {"rtol": 1e-10, "atol": 1e-10}
CONV_SHAPES = [  # (A_prev shape, kernel, c_new)
    ((2, 9, 8, 3), (3, 2), 4),
    ((3, 7, 7, 1), (5, 5), 2),
    ((1, 10, 6, 2), (2, 4), 3),
]
POOL_SHAPES = [((2, 9, 8, 3), (3, 2)), ((3, 8, 8, 1), (2, 2)), ((1, 10, 7, 2), (4, 3))]


def identity(z):
    """Identity activation."""
    return z


def _inputs(shape, kernel, c_new, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape), rng.standard_normal((*kernel, shape[3], c_new)),
            rng.standard_normal((1, 1, 1, c_new)))


def _tf_conv_and_gradients(A, W, b, stride, tf_padding, probe_seed=1):
    """TF forward output and the gradients of sum(probe * output) w.r.t. A, W, b."""
    A_t, W_t, b_t = (tf.constant(x) for x in (A, W, b))
    with tf.GradientTape() as tape:
        tape.watch([A_t, W_t, b_t])
        Z = tf.nn.conv2d(A_t, W_t, strides=(1, *stride, 1), padding=tf_padding) + b_t
        probe = tf.constant(np.random.default_rng(probe_seed).standard_normal(Z.shape))
        loss = tf.reduce_sum(probe * Z)
    grads = tape.gradient(loss, [A_t, W_t, b_t])
    return Z.numpy(), probe.numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape, kernel, c_new", CONV_SHAPES)
@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (3, 3), (1, 2), (3, 1)])
def test_valid_conv_matches_tensorflow(shape, kernel, c_new, stride, impl):
    A, W, b = _inputs(shape, kernel, c_new)
    Z_tf, probe, grads_tf = _tf_conv_and_gradients(A, W, b, stride, "VALID")
    np.testing.assert_allclose(impl.conv_forward(A, W, b, identity, "valid", stride), Z_tf,
                               **TOLERANCE)
    for ours, theirs in zip(impl.conv_backward(probe, A, W, b, "valid", stride), grads_tf):
        np.testing.assert_allclose(ours, theirs, **TOLERANCE)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape, kernel, c_new", CONV_SHAPES)
def test_same_conv_stride_one_matches_tensorflow(shape, kernel, c_new, impl):
    A, W, b = _inputs(shape, kernel, c_new)
    Z_tf, probe, grads_tf = _tf_conv_and_gradients(A, W, b, (1, 1), "SAME")
    np.testing.assert_allclose(impl.conv_forward(A, W, b, identity, "same"), Z_tf, **TOLERANCE)
    for ours, theirs in zip(impl.conv_backward(probe, A, W, b, "same"), grads_tf):
        np.testing.assert_allclose(ours, theirs, **TOLERANCE)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape, kernel, c_new", CONV_SHAPES)
@pytest.mark.parametrize("stride", [(2, 2), (3, 3), (2, 3)])
def test_same_conv_strided_matches_tensorflow_on_padded_input(shape, kernel, c_new, stride,
                                                              impl):
    """The curriculum's strided 'same' is TF 'VALID' on the explicitly padded input."""
    A, W, b = _inputs(shape, kernel, c_new)
    top, bottom = reference_pads(shape[1], kernel[0], stride[0], "same")
    left, right = reference_pads(shape[2], kernel[1], stride[1], "same")
    padded = np.pad(A, ((0, 0), (top, bottom), (left, right), (0, 0)))
    Z_tf, probe, (dpadded, dW, db) = _tf_conv_and_gradients(padded, W, b, stride, "VALID")
    Z = impl.conv_forward(A, W, b, identity, "same", stride)
    assert Z.shape[1:3] == shape[1:3]
    np.testing.assert_allclose(Z, Z_tf, **TOLERANCE)
    dA_prev, dW_ours, db_ours = impl.conv_backward(probe, A, W, b, "same", stride)
    np.testing.assert_allclose(dA_prev, dpadded[:, top:top + shape[1], left:left + shape[2]],
                               **TOLERANCE)
    np.testing.assert_allclose(dW_ours, dW, **TOLERANCE)
    np.testing.assert_allclose(db_ours, db, **TOLERANCE)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape, kernel", POOL_SHAPES)
@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (3, 3), (2, 1)])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_matches_tensorflow(shape, kernel, stride, mode, impl):
    # Continuous random values: no ties, where TF routes a max gradient to one entry only.
    A = np.random.default_rng(0).standard_normal(shape)
    A_t = tf.constant(A)
    pool = tf.nn.max_pool2d if mode == "max" else tf.nn.avg_pool2d
    with tf.GradientTape() as tape:
        tape.watch(A_t)
        out_t = pool(A_t, ksize=kernel, strides=stride, padding="VALID")
        probe = np.random.default_rng(1).standard_normal(out_t.shape)
        loss = tf.reduce_sum(tf.constant(probe) * out_t)
    np.testing.assert_allclose(impl.pool_forward(A, kernel, stride, mode), out_t.numpy(), **TOLERANCE)
    np.testing.assert_allclose(impl.pool_backward(probe, A, kernel, stride, mode),
                               tape.gradient(loss, A_t).numpy(), **TOLERANCE)


@pytest.mark.parametrize("kernel, stride", [((2, 2), (2, 2)), ((3, 3), (3, 3)), ((2, 2), (1, 1)),
                                            ((3, 3), (1, 1)), ((3, 2), (2, 1)), ((2, 3), (3, 1))])
@pytest.mark.parametrize("values", [2, 4])
def test_max_pool_ties_first_matches_tensorflow(kernel, stride, values):
    """With ties, TensorFlow gives each window's gradient to its first maximum (row-major).

    Overlapping windows each choose their own first maximum and their gradients add up
    (in a different order from TensorFlow's, hence the last-bit tolerance; a gradient sent
    to the wrong entry would be off by O(1)).
    """
    A = np.random.default_rng(values).integers(0, values, (2, 9, 8, 3)).astype(np.float64)
    A_t = tf.constant(A)
    with tf.GradientTape() as tape:
        tape.watch(A_t)
        out_t = tf.nn.max_pool2d(A_t, ksize=kernel, strides=stride, padding="VALID")
        probe = np.random.default_rng(1).standard_normal(out_t.shape)
        loss = tf.reduce_sum(tf.constant(probe) * out_t)
    expected = tape.gradient(loss, A_t).numpy()
    ours = pool_backward(probe, A, kernel, stride, "max", ties="first")
    if stride == kernel:
        np.testing.assert_array_equal(ours, expected)
    else:
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-14)
    assert not np.array_equal(pool_backward(probe, A, kernel, stride, "max"), expected)
