"""The engine's speed-only paths, chosen by shape, compute what the plain paths compute.

Max pooling over windows that tile the input notes each window's winners in
the forward pass (up to ``ops._WINNER_BITS`` entries) and routes the gradient
from them block by block; larger windows' gradient goes tap by tap from
``ops._TAP_CHANNELS`` channels on; convolutions keep their window matrix for
the backward pass when a batch fits one chunk; the optimisers step block by
block when the parameters are one buffer. Each is held to the pixel-loop
reference or to the path it replaces.
"""
import numpy as np
import pytest

from convnet.nn import ops
from convnet.nn.memory import aligned_zeros, joined_view, views_like
from convnet.nn.optim import BLOCK, make_optimizer
from convnet.nn.reference_ops import (
    reference_conv_backward,
    reference_dtype,
    reference_pool_backward,
    reference_pool_forward,
)


@pytest.mark.parametrize("kernel", [(2, 2), (3, 3), (2, 3)])
@pytest.mark.parametrize("shape", [(2, 8, 6, 8), (3, 7, 9, 16), (1, 6, 6, 32)])
@pytest.mark.parametrize("ties", ["first", "all"])
def test_max_pool_gradient_of_many_channels_matches_the_reference(shape, kernel, ties):
    rng = np.random.default_rng(sum(shape))
    A = rng.integers(0, 3, shape).astype(np.float32)   # many ties
    dA = rng.standard_normal(ops.pool_forward(A, kernel, kernel).shape).astype(np.float32)
    workspace = {}
    ops.pool_forward(A, kernel, kernel, workspace=workspace)
    got = ops.pool_backward(dA, A, kernel, kernel, ties=ties, workspace=workspace)
    np.testing.assert_allclose(got, reference_pool_backward(dA, A, kernel, kernel, "max", ties),
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_max_pool_gradient_of_many_channels_keeps_non_finite_values_in_their_windows(value):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((2, 6, 6, 16))
    A[0, 1, 2, 5] = value
    dA = rng.standard_normal((2, 3, 3, 16))
    dA[1, 2, 2, 7] = value
    got = ops.pool_backward(dA, A, (2, 2), (2, 2), ties="first")
    expected = reference_pool_backward(dA, A, (2, 2), (2, 2), "max", "first")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-12)



def _blocks_of_two(monkeypatch, out_shape, kernel):
    """Make max pooling over tiling windows go two examples per block."""
    per_example = out_shape[1] * out_shape[2] * kernel[0] * kernel[1] * out_shape[3]
    monkeypatch.setattr(ops, "_POOL_BLOCK_ELEMENTS", 2 * per_example)


@pytest.mark.parametrize("ties", ["first", "all"])
@pytest.mark.parametrize("kernel", [(2, 2), (1, 3), (2, 4), (3, 2), (8, 1), (1, 1)])
@pytest.mark.parametrize("shape", [(3, 8, 8, 1), (3, 9, 7, 3), (3, 8, 10, 16)])
def test_max_pool_winners_match_the_reference(shape, kernel, ties, monkeypatch):
    """Windows of at most 8 entries that tile the input: the forward pass notes each window's
    winners, the backward pass routes from them (or finds them again without the workspace),
    for several dtypes, in one block or in blocks of two examples then one. Uncovered border
    rows and columns get zero."""
    rng = np.random.default_rng(sum(shape) + 10 * sum(kernel))
    A = rng.integers(0, 3, shape)   # few values: most windows tie
    want_out = reference_pool_forward(A, kernel, kernel)
    dA = rng.integers(-3, 4, want_out.shape)
    want = reference_pool_backward(dA, A, kernel, kernel, "max", ties)
    for blocks in ("one", "several"):
        if blocks == "several":
            _blocks_of_two(monkeypatch, want_out.shape, kernel)
        for A_dtype, dA_dtype in [(np.float32, np.float64), (np.int64, np.int64),
                                  (np.float16, np.float32), (np.uint8, np.float16)]:
            A_typed, dA_typed = A.astype(A_dtype), dA.astype(dA_dtype)
            workspace = {}
            out = ops.pool_forward(A_typed, kernel, kernel, workspace=workspace)
            assert "winners_of" in workspace and out.dtype == reference_dtype(A_typed)
            np.testing.assert_array_equal(out, want_out)
            for kept in (workspace, None):
                got = ops.pool_backward(dA_typed, A_typed, kernel, kernel, ties=ties,
                                        workspace=kept)
                assert got.dtype == reference_dtype(dA_typed, A_typed)
                np.testing.assert_array_equal(got, want, err_msg=f"{blocks} {A_dtype} {dA_dtype}")


def _with_zeros_and_ties(rng, shape, dtype):
    """Values of dtype from a few integers, a fifth of the floats' zeros negative."""
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    values = rng.integers(-2 if np.dtype(dtype).kind in "fi" else 0, 3, shape).astype(dtype)
    if np.dtype(dtype).kind == "f":
        values[rng.random(shape) < 0.2] = -0.0
    return values


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("special", [None, "nan input", "inf input", "nan gradient",
                                     "-inf gradient"])
@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float16, np.float16),
                                    (np.float64, np.float32), (np.int64, np.int64),
                                    (np.uint8, np.float16), (np.bool_, np.float32),
                                    (np.float32, np.int32)], ids=str)
@pytest.mark.parametrize("c", [3, 8])
@pytest.mark.parametrize("ties", ["first", "all"])
def test_max_pool_winners_give_the_maxima_paths_bytes(ties, c, dtypes, special, monkeypatch):
    """Noting winners changes no bit of either pass against the paths that keep the maxima
    instead (``_WINNER_BITS`` = 0): a zero maximum's sign, the sign of zero that entries
    other than the maximum get (0 * gradient, from an integer gradient too), a NaN's."""
    rng = np.random.default_rng(c)
    A = _with_zeros_and_ties(rng, (3, 7, 9, c), dtypes[0])
    dA = _with_zeros_and_ties(rng, (3, 3, 4, c), dtypes[1])
    if special is not None:
        value = float(special.split()[0])
        target = A if special.endswith("input") else dA
        if target.dtype.kind != "f":
            pytest.skip("only floats hold NaN and inf")
        target[0, 1, 2, c - 1] = value
        target[2, 2, 3, 0] = value
    _blocks_of_two(monkeypatch, dA.shape, (2, 2))

    def both_passes():
        workspace = {}
        out = ops.pool_forward(A, (2, 2), (2, 2), workspace=workspace)
        return [out, ops.pool_backward(dA, A, (2, 2), (2, 2), ties=ties, workspace=workspace),
                ops.pool_backward(dA, A, (2, 2), (2, 2), ties=ties)]

    noted = both_passes()
    monkeypatch.setattr(ops, "_WINNER_BITS", 0)
    for got, want in zip(noted, both_passes()):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("ties", ["first", "all"])
def test_max_pool_winners_keep_non_finite_values_in_their_windows(value, ties, monkeypatch):
    """A NaN input: its window has no winner; an inf: it wins; a NaN or inf gradient reaches
    only its window's winners. In blocks of two examples, with the winners kept."""
    rng = np.random.default_rng(4)
    A = rng.standard_normal((3, 6, 8, 8))
    A[0, 1, 2, 5] = A[2, 4, 4, 0] = value
    dA = rng.standard_normal((3, 3, 4, 8))
    dA[1, 2, 2, 7] = dA[2, 0, 3, 1] = value
    _blocks_of_two(monkeypatch, dA.shape, (2, 2))
    workspace = {}
    out = ops.pool_forward(A, (2, 2), (2, 2), workspace=workspace)
    np.testing.assert_array_equal(out, reference_pool_forward(A, (2, 2), (2, 2)))
    with np.errstate(invalid="ignore"):
        got = ops.pool_backward(dA, A, (2, 2), (2, 2), ties=ties, workspace=workspace)
        expected = reference_pool_backward(dA, A, (2, 2), (2, 2), "max", ties)
    np.testing.assert_array_equal(got, expected)


def test_a_batch_of_one_chunk_keeps_its_windows_for_the_backward_pass():
    """LeNet-5's first convolution at batch 32 fits one chunk: no second gather."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((32, 28, 28, 1)).astype(np.float32)
    W = rng.standard_normal((5, 5, 1, 6)).astype(np.float32)
    b = rng.standard_normal((1, 1, 1, 6)).astype(np.float32)
    workspace = {}
    Z = ops.conv_forward(A, W, b, lambda z: z, workspace=workspace)
    assert "windows_of" in workspace
    dZ = rng.standard_normal(Z.shape).astype(np.float32)
    got = ops.conv_backward(dZ, A, W, b, workspace=workspace)
    expected = reference_conv_backward(dZ[:2].astype(np.float64), A[:2].astype(np.float64),
                                       W.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(got[0][:2], expected[0], rtol=1e-4, atol=1e-4)
    plain = ops.conv_backward(dZ, A, W, b)
    for kept, again in zip(got, plain):
        np.testing.assert_allclose(kept, again, rtol=1e-5, atol=1e-4)


def test_joined_view_finds_the_buffer_of_consecutive_views():
    flat = aligned_zeros(17, np.float32)
    parts = views_like(flat, [np.empty((2, 3)), np.empty(5), np.empty((3, 2))])
    joined = joined_view(parts)
    assert joined.shape == (17,) and joined.ctypes.data == flat.ctypes.data
    joined[...] = np.arange(17)
    assert parts[1][0] == 6 and parts[2][-1, -1] == 16
    assert joined_view(parts[1:]).shape == (11,)
    # Out of order, with a gap, apart, of two dtypes, read-only: no single buffer.
    assert joined_view([parts[1], parts[0]]) is None
    assert joined_view([parts[0], parts[2]]) is None
    assert joined_view([np.zeros(3), np.zeros(3)]) is None
    assert joined_view([flat[:3], flat[3:].astype(np.float64)]) is None
    frozen = flat.copy()
    frozen.setflags(write=False)
    assert joined_view([frozen[:3], frozen[3:]], writeable=True) is None
    assert joined_view([frozen[:3], frozen[3:]]).shape == (17,)
    assert joined_view([]) is None


@pytest.mark.parametrize("name, hyper", [("adam", {}), ("rmsprop", {}),
                                         ("rmsprop", {"momentum": 0.5, "centered": True}),
                                         ("sgd", {"momentum": 0.9, "nesterov": True})])
def test_a_step_block_by_block_equals_the_step_over_arrays_apart(name, hyper):
    """Parameters in one buffer (several blocks long) end bit for bit where separate ones do."""
    rng = np.random.default_rng(1)
    shapes = [(BLOCK + 5,), (3, 7), (2 * BLOCK - 1,)]
    start = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    flat = aligned_zeros(sum(array.size for array in start), np.float32)
    joined = views_like(flat, start)
    for view, value in zip(joined, start):
        view[...] = value
    apart = [value.copy() for value in start]
    blocked, plain = make_optimizer(name, joined, **hyper), make_optimizer(name, apart, **hyper)
    assert blocked._joined_params is not None and plain._joined_params is None
    grads = aligned_zeros(flat.size, np.float32)
    for _ in range(3):
        grads[...] = rng.standard_normal(flat.size)
        views = views_like(grads, start)
        blocked.step(views)
        plain.step([view.copy() for view in views])
    for ours, theirs in zip(joined, apart):
        np.testing.assert_array_equal(ours, theirs)
    for key, value in plain.state().items():
        np.testing.assert_array_equal(blocked.state()[key], value)
