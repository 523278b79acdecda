"""Tasks 0-3 in both implementations against the loop references and finite differences.

Every grid below runs the fast engine (``convnet/nn/ops.py``) and the readable task files
(``0x07-cnn/0-conv_forward.py`` ... ``3-pool_backward.py``, loaded from their folder)
against the pixel-loop references of ``convnet/nn/reference_ops.py``.
"""
import itertools
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convnet.nn import ops
from convnet.nn.ops import conv_backward, conv_forward, pool_backward, pool_forward
from convnet.nn.reference_ops import (
    reference_conv_backward,
    reference_conv_forward,
    reference_dtype,
    reference_pool_backward,
    reference_pool_forward,
)

sys.path.insert(0, str(Path(__file__).parent))
from reference_ops import load_task_functions, numerical_gradient

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "0x07-cnn"
TASK_FILES = ("0-conv_forward", "1-pool_forward", "2-conv_backward", "3-pool_backward")
FUNCTIONS = ("conv_forward", "pool_forward", "conv_backward", "pool_backward")


ENGINE = SimpleNamespace(**{name: getattr(ops, name) for name in FUNCTIONS})
TASK = load_task_functions(TASKS)
IMPLEMENTATIONS = [pytest.param(ENGINE, id="engine"), pytest.param(TASK, id="task")]
# The task files follow the curriculum's tie rule only; the engine also has ties="first".
IMPLEMENTATIONS_AND_TIES = [pytest.param(ENGINE, "all", id="engine-all"),
                            pytest.param(ENGINE, "first", id="engine-first"),
                            pytest.param(TASK, "all", id="task-all")]


def _pool_backward(impl, dA, A, kernel, stride, mode="max", ties="all"):
    """pool_backward of impl, passing ties only where it is not the default."""
    if ties == "all":
        return impl.pool_backward(dA, A, kernel, stride, mode)
    return impl.pool_backward(dA, A, kernel, stride, mode, ties=ties)


def relu(z):
    """Rectified linear unit."""
    return np.maximum(z, 0)


def identity(z):
    """Identity activation."""
    return z


# ---------------------------------------------------------------- the case grids
SHAPES = [  # (m, h, w, c)
    (1, 1, 1, 1), (2, 4, 4, 2), (3, 5, 3, 1), (1, 7, 9, 3), (2, 9, 9, 1),
    (2, 2, 8, 3), (3, 6, 5, 2), (1, 8, 7, 1), (2, 3, 6, 3), (1, 9, 4, 2),
]
KERNELS = [(1, 1), (2, 2), (3, 3), (1, 3), (4, 2), (5, 5), (2, 5)]
STRIDES = [(1, 1), (2, 2), (3, 3), (1, 3), (2, 1)]
PADDINGS = ["same", "valid", (1, 2)]


def _fits(shape, kernel, padding):
    """Tell whether the kernel fits in the (padded) input."""
    pad = (0, 0) if padding in ("same", "valid") else padding
    if padding == "same":
        return True
    return kernel[0] <= shape[1] + 2 * pad[0] and kernel[1] <= shape[2] + 2 * pad[1]


def _grid(options, per_combination=2):
    """Give every combination of options `per_combination` shapes, cycling through SHAPES."""
    cases, cursor = [], 0
    for combination in itertools.product(*options):
        for _ in range(per_combination):
            for attempt in range(len(SHAPES)):
                shape = SHAPES[(cursor + attempt) % len(SHAPES)]
                if _fits(shape, combination[0], combination[2]):
                    cases.append((shape, *combination))
                    cursor += attempt + 1
                    break
    return cases


CONV_CASES = [
    (shape, kernel, stride, padding, c_new)
    for (shape, kernel, stride, padding), c_new in zip(
        _grid([KERNELS, STRIDES, PADDINGS]), itertools.cycle([1, 2, 3]))
]
POOL_CASES = _grid([KERNELS, STRIDES, ["valid"], ["max", "avg"]])


def _case_id(case):
    return "-".join(str(part).replace(" ", "") for part in case)


def _conv_inputs(shape, kernel, c_new, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal(shape).astype(dtype)
    W = rng.standard_normal((*kernel, shape[3], c_new)).astype(dtype)
    b = rng.standard_normal((1, 1, 1, c_new)).astype(dtype)
    return A, W, b


def _assert_conv_matches_reference(A, W, b, padding, stride):
    """conv_forward (tanh) and conv_backward agree with the loop references to 1e-12."""
    Z = conv_forward(A, W, b, np.tanh, padding, stride)
    np.testing.assert_allclose(Z, reference_conv_forward(A, W, b, np.tanh, padding, stride),
                               rtol=1e-12, atol=1e-12)
    dZ = np.random.default_rng(1).standard_normal(Z.shape)
    for got, want in zip(conv_backward(dZ, A, W, b, padding, stride),
                         reference_conv_backward(dZ, A, W, b, padding, stride)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- fast == naive
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CONV_CASES, ids=_case_id)
def test_conv_matches_reference(case, impl):
    shape, kernel, stride, padding, c_new = case
    A, W, b = _conv_inputs(shape, kernel, c_new)
    Z = impl.conv_forward(A, W, b, relu, padding, stride)
    expected = reference_conv_forward(A, W, b, relu, padding, stride)
    assert Z.shape == expected.shape
    np.testing.assert_allclose(Z, expected, rtol=1e-12, atol=1e-12)
    dZ = np.random.default_rng(1).standard_normal(Z.shape)
    for got, want in zip(impl.conv_backward(dZ, A, W, b, padding, stride),
                         reference_conv_backward(dZ, A, W, b, padding, stride)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", POOL_CASES, ids=_case_id)
def test_pool_matches_reference(case, impl):
    shape, kernel, stride, _, mode = case
    if kernel[0] > shape[1] or kernel[1] > shape[2]:
        pytest.skip("kernel larger than the input is an error, tested below")
    A = np.random.default_rng(0).standard_normal(shape)
    out = impl.pool_forward(A, kernel, stride, mode)
    expected = reference_pool_forward(A, kernel, stride, mode)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    dA = np.random.default_rng(1).standard_normal(out.shape)
    np.testing.assert_allclose(impl.pool_backward(dA, A, kernel, stride, mode),
                               reference_pool_backward(dA, A, kernel, stride, mode),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES[::7] + [((5, 6, 6, 2), (3, 3), (1, 1), "same", 2)],
                         ids=_case_id)
def test_conv_in_chunks_matches_reference(case, monkeypatch):
    """Large inputs are processed a few examples at a time: force one example per chunk."""
    monkeypatch.setattr(ops, "_CHUNK_ELEMENTS", 1)
    shape, kernel, stride, padding, c_new = case
    _assert_conv_matches_reference(*_conv_inputs(shape, kernel, c_new), padding, stride)


def _budget(A, W, padding, stride, examples, part="windows"):
    """A _CHUNK_ELEMENTS that puts ``examples`` examples in each chunk of the windows the
    backward pass gathers for dW (part "windows"), or of dA_prev (part "dA_prev")."""
    out_hw = reference_conv_forward(A, W, np.zeros((1, 1, 1, W.shape[3])), identity,
                                    padding, stride).shape[1:3]
    if part == "windows":
        return examples * ops._matrix_elements(W.shape, stride, out_hw)
    paddings = (padding, padding) if isinstance(padding, str) else padding
    padded_hw = [size + sum(ops.padding_amounts(size, k, s, pad)) for size, k, s, pad
                 in zip(A.shape[1:3], W.shape[:2], stride, paddings)]
    return examples * ops._gradient_elements(W.shape, out_hw, padded_hw) // 2


CHUNKED_CASES = CONV_CASES[1::6] + [((5, 6, 6, 2), (3, 3), (1, 1), "same", 2),
                                    ((5, 7, 9, 3), (2, 3), (2, 1), (1, 2), 3),
                                    ((5, 8, 8, 1), (3, 3), (1, 1), "same", 2)]


@pytest.mark.parametrize("room", [0, -1])
@pytest.mark.parametrize("case", CHUNKED_CASES, ids=_case_id)
def test_conv_keeps_the_matrix_of_a_batch_of_one_backward_chunk(case, room, monkeypatch):
    """The forward pass keeps its input matrix for the backward pass when the backward
    pass takes the whole batch in one chunk: just enough room keeps it, an element less
    does not (the forward pass then goes in chunks too), unless the batch is one example;
    all give the reference."""
    shape, kernel, stride, padding, c_new = case
    A, W, b = _conv_inputs(shape, kernel, c_new)
    monkeypatch.setattr(ops, "_CHUNK_ELEMENTS", _budget(A, W, padding, stride, len(A)) + room)
    workspace = {}
    Z = conv_forward(A, W, b, np.tanh, padding, stride, workspace=workspace)
    np.testing.assert_allclose(Z, reference_conv_forward(A, W, b, np.tanh, padding, stride),
                               rtol=1e-12, atol=1e-12)
    kept = room == 0 or len(A) == 1
    assert ("windows_of" in workspace) == kept
    dZ = np.random.default_rng(1).standard_normal(Z.shape)
    built = _count_input_matrices(monkeypatch)
    for got, want in zip(conv_backward(dZ, A, W, b, padding, stride, workspace=workspace),
                         reference_conv_backward(dZ, A, W, b, padding, stride)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert (built == []) == kept


@pytest.mark.parametrize("with_workspace", [False, True])
@pytest.mark.parametrize("part", ["windows", "dA_prev"])
@pytest.mark.parametrize("case", CHUNKED_CASES, ids=_case_id)
def test_conv_backward_in_chunks_of_two_matches_reference(case, part, with_workspace,
                                                          monkeypatch):
    """Backward chunks of at most two examples, one of them shorter for an odd batch: of
    the windows gathered again for dW, or of dA_prev."""
    shape, kernel, stride, padding, c_new = case
    A, W, b = _conv_inputs(shape, kernel, c_new)
    monkeypatch.setattr(ops, "_CHUNK_ELEMENTS", _budget(A, W, padding, stride, 2, part))
    workspace = {} if with_workspace else None
    Z = conv_forward(A, W, b, np.tanh, padding, stride, workspace=workspace)
    np.testing.assert_allclose(Z, reference_conv_forward(A, W, b, np.tanh, padding, stride),
                               rtol=1e-12, atol=1e-12)
    dZ = np.random.default_rng(1).standard_normal(Z.shape)
    for _ in range(2):   # the second call reuses the workspace's buffers
        for got, want in zip(conv_backward(dZ, A, W, b, padding, stride,
                                           workspace=workspace),
                             reference_conv_backward(dZ, A, W, b, padding, stride)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# One channel whose output width no band divides (its windows go tap by tap), and
# several channels in bands, each padded and not.
BUFFER_CASES = [((4, 7, 7, 1), (3, 3), (1, 1), "same", 2),
                ((4, 7, 7, 1), (3, 3), (1, 1), "valid", 2),
                ((5, 6, 8, 3), (3, 3), (1, 1), (1, 2), 4),
                ((5, 6, 8, 3), (2, 3), (2, 1), "valid", 4)]


@pytest.mark.parametrize("chunks", ["one example each", "kept matrix"])
@pytest.mark.parametrize("case", BUFFER_CASES, ids=_case_id)
def test_conv_chunks_share_their_buffers_across_batches(case, chunks, monkeypatch):
    """The chunks of a batch, and the batches through one workspace, are padded and
    gathered into the same buffers: a second batch of other numbers, the first again,
    and a shorter batch all give the reference, forward and backward."""
    shape, kernel, stride, padding, c_new = case
    A, W, b = _conv_inputs(shape, kernel, c_new)
    if chunks == "one example each":
        monkeypatch.setattr(ops, "_CHUNK_ELEMENTS", 1)
    workspace = {}
    for X in (A, 1e3 * A[::-1], A, A[:3]):
        Z = conv_forward(X, W, b, np.tanh, padding, stride, workspace=workspace)
        np.testing.assert_allclose(Z, reference_conv_forward(X, W, b, np.tanh, padding, stride),
                                   rtol=1e-12, atol=1e-12)
        dZ = np.random.default_rng(len(X)).standard_normal(Z.shape)
        for got, want in zip(conv_backward(dZ, X, W, b, padding, stride, workspace=workspace),
                             reference_conv_backward(dZ, X, W, b, padding, stride)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    assert ("windows_of" in workspace) == (chunks == "kept matrix")


BAND_CHOICES = {"one column": lambda w_new: 1, "two columns": lambda w_new: 2,
                "whole rows": lambda w_new: w_new}


@pytest.mark.parametrize("band", BAND_CHOICES.values(), ids=BAND_CHOICES.keys())
@pytest.mark.parametrize("case", CONV_CASES[::2], ids=_case_id)
def test_conv_in_any_band_matches_reference(case, band, monkeypatch):
    """The products run over bands of output columns whose width depends on the shape:
    force windows (one column), two columns where they divide w_new, and whole rows."""
    def forced(W_shape, stride, out_hw):
        width = band(out_hw[1])
        return width if out_hw[1] % width == 0 else 1
    monkeypatch.setattr(ops, "_forward_band", forced)
    monkeypatch.setattr(ops, "_backward_band", forced)
    shape, kernel, stride, padding, c_new = case
    _assert_conv_matches_reference(*_conv_inputs(shape, kernel, c_new), padding, stride)


def _fits_a_correlation(W_shape, stride, pads):
    """What the correlation form of dA_prev needs, whatever the channels and kernel size."""
    (top, bottom), (left, right) = pads
    return (tuple(stride) == (1, 1) and top == bottom < W_shape[0]
            and left == right < W_shape[1])


@pytest.mark.parametrize("case", [case for case in CONV_CASES if case[2] == (1, 1)],
                         ids=_case_id)
def test_input_gradient_as_a_correlation_matches_reference(case, monkeypatch):
    """dA_prev as the forward correlation of dZ, forced wherever the padding allows it:
    every kernel shape, 'same' and 'valid' and explicit padding, one to three channels."""
    monkeypatch.setattr(ops, "_correlates", _fits_a_correlation)
    correlated = _count_calls(monkeypatch, ops, "_input_gradient_by_correlation")
    shape, kernel, stride, padding, c_new = case
    A, W, b = _conv_inputs(shape, kernel, c_new)
    _assert_conv_matches_reference(A, W, b, padding, stride)
    pads = ops._conv_geometry(A, W, b, padding, stride)[3]
    assert len(correlated) == (1 if _fits_a_correlation(W.shape, stride, pads) else 0)


@pytest.mark.parametrize("shape, kernel, padding, c_new, correlated", [
    ((2, 14, 14, 32), (3, 3), "same", 64, True),     # mnist-cnn's second convolution
    ((3, 8, 8, 32), (3, 3), "same", 64, True),       # cifar-cnn's third
    ((2, 7, 9, 64), (3, 3), "valid", 16, True),
    ((2, 6, 7, 40), (1, 3), (0, 1), 80, True),
    ((2, 16, 16, 16), (3, 3), "same", 32, False),    # too few channels in
    ((2, 8, 8, 32), (3, 3), "same", 65, False),      # too many out
    ((2, 9, 9, 64), (5, 5), "same", 64, False),      # a larger kernel
    ((2, 8, 8, 32), (2, 2), "same", 32, False),      # padding on one side only
    ((2, 8, 8, 32), (3, 3), (3, 1), 32, False),      # padding wider than the kernel
])
def test_input_gradient_takes_the_correlation_where_it_is_faster(shape, kernel, padding,
                                                                 c_new, correlated,
                                                                 monkeypatch):
    """The rule picks the correlation for wide inputs and 3 x 3 kernels at stride 1, and
    the result matches the loop reference either way."""
    calls = _count_calls(monkeypatch, ops, "_input_gradient_by_correlation")
    A, W, b = _conv_inputs(shape, kernel, c_new)
    dZ = np.random.default_rng(1).standard_normal(
        conv_forward(A, W, b, identity, padding).shape)
    for got, want in zip(conv_backward(dZ, A, W, b, padding),
                         reference_conv_backward(dZ, A, W, b, padding)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert len(calls) == int(correlated)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_gradient_as_a_correlation_in_chunks_of_one_example(dtype, monkeypatch):
    """The correlation goes through conv_forward's chunks: one example each here, in
    float32 as a training step runs it and in float64."""
    monkeypatch.setattr(ops, "_CHUNK_ELEMENTS", 1)
    calls = _count_calls(monkeypatch, ops, "_input_gradient_by_correlation")
    A, W, b = _conv_inputs((3, 7, 6, 32), (3, 3), 40, dtype=dtype)
    dZ = np.random.default_rng(1).standard_normal((3, 7, 6, 40)).astype(dtype)
    dA_prev = conv_backward(dZ, A, W, b, "same")[0]
    assert dA_prev.dtype == dtype and len(calls) == 1
    expected = reference_conv_backward(*(x.astype(np.float64) for x in (dZ, A, W, b)),
                                       "same")[0]
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dA_prev, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["dZ", "W"])
def test_input_gradient_as_a_correlation_keeps_nonfinite_values_in_their_windows(
        where, value, monkeypatch):
    """A NaN or inf in dZ reaches only the entries of dA_prev whose windows hold it (the
    padding's zeros add nothing); one in W sends dA_prev back to the spread kernel, since
    the padding's zeros times it would be NaN."""
    calls = _count_calls(monkeypatch, ops, "_input_gradient_by_correlation")
    A, W, b = _conv_inputs((2, 8, 9, 32), (3, 3), 48)
    W[0, 0, :, 0] = 0
    dZ = np.random.default_rng(1).standard_normal((2, 8, 9, 48))
    if where == "dZ":
        dZ[0, 3, 4, 0] = value
        dZ[-1, -1, -1, -1] = value
    else:
        W[1, 2, 3, 4] = value
    expected = reference_conv_backward(dZ, A, W, b, "same")
    assert 0 < np.count_nonzero(~np.isfinite(expected[0])) < expected[0].size // 2
    for got, want in zip(conv_backward(dZ, A, W, b, "same"), expected):
        _assert_close(got, want)
    assert len(calls) == (1 if where == "dZ" else 0)


@pytest.mark.parametrize("m, size, sizes", [(0, 3, []), (1, 4, [1]), (4, 4, [4]), (5, 2, [1, 2, 2]),
                                            (32, 14, [10, 11, 11]), (64, 4, [4] * 16),
                                            (7, 1, [1] * 7)])
def test_chunks_are_as_few_and_as_even_as_can_be(m, size, sizes):
    chunks = list(ops._chunks(m, size))
    assert [chunk.stop - chunk.start for chunk in chunks] == sizes
    assert [chunk.start for chunk in chunks] == [sum(sizes[:k]) for k in range(len(sizes))]


@pytest.mark.parametrize("n, limit, expected", [(10, 5, 5), (10, 4, 2), (7, 6, 1), (28, 100, 28),
                                                (1, 3, 1), (12, 0, 1)])
def test_largest_divisor(n, limit, expected):
    assert ops._largest_divisor(n, limit) == expected


def test_conv_backward_in_chunks_float32(monkeypatch):
    """LeNet-5's second convolution, one example per chunk, float32."""
    monkeypatch.setattr(ops, "_CHUNK_ELEMENTS", 1)
    A, W, b = _conv_inputs((3, 14, 14, 6), (5, 5), 16, dtype=np.float32)
    dZ = np.random.default_rng(1).standard_normal((3, 10, 10, 16)).astype(np.float32)
    dA_prev, dW, db = conv_backward(dZ, A, W, b, "valid")
    assert dA_prev.dtype == np.float32
    expected = reference_conv_backward(dZ.astype(np.float64), A.astype(np.float64),
                                       W.astype(np.float64), b.astype(np.float64), "valid")
    for got, want in zip((dA_prev, dW, db), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@st.composite
def conv_problems(draw):
    m, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 8)), draw(st.integers(1, 8))
    c_prev, c_new = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["same", "valid", (0, 0), (1, 0), (2, 1)]))
    pad = {"same": (0, 0), "valid": (0, 0)}.get(padding, padding) \
        if isinstance(padding, str) else padding
    limit_h = h + 2 * pad[0] if padding != "same" else 5
    limit_w = w + 2 * pad[1] if padding != "same" else 5
    kh = draw(st.integers(1, min(5, limit_h)))
    kw = draw(st.integers(1, min(5, limit_w)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    seed = draw(st.integers(0, 2**16))
    return (m, h, w, c_prev), (kh, kw), stride, padding, c_new, seed


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=40, deadline=None)
@given(conv_problems())
def test_conv_property_random_shapes(impl, problem):
    shape, kernel, stride, padding, c_new, seed = problem
    A, W, b = _conv_inputs(shape, kernel, c_new, seed)
    Z = impl.conv_forward(A, W, b, identity, padding, stride)
    np.testing.assert_allclose(Z, reference_conv_forward(A, W, b, identity, padding, stride),
                               rtol=1e-10, atol=1e-10)
    dZ = np.random.default_rng(seed + 1).standard_normal(Z.shape)
    for got, want in zip(impl.conv_backward(dZ, A, W, b, padding, stride),
                         reference_conv_backward(dZ, A, W, b, padding, stride)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- workspaces
WORKSPACE_CASES = [((3, 28, 28, 1), (5, 5), (1, 1), "same", 6),     # banded form
                   ((2, 11, 13, 1), (3, 3), (2, 1), "valid", 3),    # windows, one channel
                   ((3, 14, 14, 6), (5, 5), (1, 1), "valid", 16),   # rows form for dA_prev
                   ((2, 9, 8, 3), (3, 2), (2, 2), "same", 4)]       # windows, padded


def _count_calls(monkeypatch, module, name):
    """Replace module.name by a wrapper that counts its calls; return the counter."""
    calls = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def _count_input_matrices(monkeypatch):
    """Count the input matrices the convolutions gather from now on, one per chunk; return the counter."""
    built = []
    original = ops._input_matrices

    def counted(*args, **kwargs):
        for matrix in original(*args, **kwargs):
            built.append(matrix.shape)
            yield matrix

    monkeypatch.setattr(ops, "_input_matrices", counted)
    return built


@pytest.mark.parametrize("case", WORKSPACE_CASES, ids=_case_id)
def test_conv_workspace_reuses_the_input_matrix_and_gives_the_same_result(case, monkeypatch):
    shape, kernel, stride, padding, c_new = case
    A, W, b = _conv_inputs(shape, kernel, c_new)
    A_other = A[::-1].copy()
    workspace = {}
    Z = conv_forward(A, W, b, relu, padding, stride, workspace=workspace)
    Z_copy = Z.copy()
    dZ = np.random.default_rng(1).standard_normal(Z.shape)
    expected = reference_conv_backward(dZ, A, W, b, padding, stride)
    built = _count_input_matrices(monkeypatch)
    for got, want in zip(conv_backward(dZ, A, W, b, padding, stride, workspace=workspace),
                         expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert built == []  # the forward pass's matrix served the backward pass
    # A forward pass on other input overwrites the kept matrix, not the returned output...
    conv_forward(A_other, W, b, relu, padding, stride, workspace=workspace)
    np.testing.assert_array_equal(Z, Z_copy)
    # ...and a backward pass on the first input then builds its own again.
    for got, want in zip(conv_backward(dZ, A, W, b, padding, stride, workspace=workspace),
                         expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert len(built) == 2  # one for A_other's forward pass, one to gather A again


def test_conv_workspace_keeps_nothing_for_a_batch_in_chunks(monkeypatch):
    monkeypatch.setattr(ops, "_CHUNK_ELEMENTS", 1)
    A, W, b = _conv_inputs((3, 8, 8, 2), (3, 3), 4)
    workspace = {}
    Z = conv_forward(A, W, b, identity, "same", workspace=workspace)
    assert "windows_of" not in workspace
    dZ = np.random.default_rng(1).standard_normal(Z.shape)
    for got, want in zip(conv_backward(dZ, A, W, b, "same", workspace=workspace),
                         reference_conv_backward(dZ, A, W, b, "same")):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", ["bands", "windows"])
@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (1, 3)])
def test_single_channel_conv_in_either_form_matches_reference(form, stride, monkeypatch):
    """One input channel goes through the banded form when a band fits: force each form."""
    if form == "windows":
        monkeypatch.setattr(ops, "_forward_band", lambda W_shape, stride, out_hw: 0)
    _assert_conv_matches_reference(*_conv_inputs((2, 12, 24, 1), (5, 3), 3), "same", stride)


@pytest.mark.parametrize("ties", ["all", "first"])
@pytest.mark.parametrize("kernel, stride", [((2, 2), (2, 2)), ((3, 2), (1, 1))])
def test_pool_workspace_reuses_the_maxima_and_gives_the_same_result(kernel, stride, ties,
                                                                    monkeypatch):
    rng = np.random.default_rng(0)
    A = rng.integers(0, 3, (2, 8, 7, 3)).astype(np.float64)
    A_other = A[::-1].copy()
    workspace = {}
    out = pool_forward(A, kernel, stride, workspace=workspace)
    dA = rng.standard_normal(out.shape)
    expected = reference_pool_backward(dA, A, kernel, stride, "max", ties)
    pooled = _count_calls(monkeypatch, ops, "_pool")
    np.testing.assert_allclose(pool_backward(dA, A, kernel, stride, ties=ties,
                                             workspace=workspace), expected, rtol=1e-12)
    assert pooled == []
    out[...] = -1  # the caller may change the output: the kept maxima are a copy
    np.testing.assert_allclose(pool_backward(dA, A, kernel, stride, ties=ties,
                                             workspace=workspace), expected, rtol=1e-12)
    pool_forward(A_other, kernel, stride, workspace=workspace)
    np.testing.assert_allclose(pool_backward(dA, A, kernel, stride, ties=ties,
                                             workspace=workspace), expected, rtol=1e-12)
    assert len(pooled) == 2  # one for A_other's forward pass, one to pool A again


@pytest.mark.parametrize("call", [
    lambda: conv_forward(np.zeros((1, 4, 4, 1)), np.zeros((3, 3, 1, 2)), np.zeros((1, 1, 1, 2)),
                         relu, workspace=[]),
    lambda: conv_backward(np.zeros((1, 4, 4, 2)), np.zeros((1, 4, 4, 1)),
                          np.zeros((3, 3, 1, 2)), np.zeros((1, 1, 1, 2)), workspace="w"),
    lambda: pool_forward(np.zeros((1, 4, 4, 1)), (2, 2), workspace=1),
    lambda: pool_backward(np.zeros((1, 3, 3, 1)), np.zeros((1, 4, 4, 1)), (2, 2),
                          workspace=()),
], ids=["conv_forward", "conv_backward", "pool_forward", "pool_backward"])
def test_workspace_must_be_a_dict(call):
    with pytest.raises(TypeError, match=r"workspace must be a dict or None, received"):
        call()


@st.composite
def pool_problems(draw):
    m, h, w, c = (draw(st.integers(1, 3)), draw(st.integers(1, 9)),
                  draw(st.integers(1, 9)), draw(st.integers(1, 3)))
    kernel = (draw(st.integers(1, h)), draw(st.integers(1, w)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    mode = draw(st.sampled_from(["max", "avg"]))
    # Few distinct values so that ties in max windows are common.
    values = draw(st.sampled_from([2, 1000]))
    return (m, h, w, c), kernel, stride, mode, values, draw(st.integers(0, 2**16))


@pytest.mark.parametrize("impl, ties", IMPLEMENTATIONS_AND_TIES)
@settings(max_examples=40, deadline=None)
@given(pool_problems())
def test_pool_property_random_shapes(impl, ties, problem):
    shape, kernel, stride, mode, values, seed = problem
    rng = np.random.default_rng(seed)
    A = rng.integers(0, values, shape).astype(np.float64)
    out = impl.pool_forward(A, kernel, stride, mode)
    np.testing.assert_allclose(out, reference_pool_forward(A, kernel, stride, mode),
                               rtol=1e-12, atol=1e-12)
    dA = rng.standard_normal(out.shape)
    np.testing.assert_allclose(_pool_backward(impl, dA, A, kernel, stride, mode, ties),
                               reference_pool_backward(dA, A, kernel, stride, mode, ties),
                               rtol=1e-12, atol=1e-12)


MAX_POOL_CASES = [case for case in POOL_CASES if case[4] == "max"
                  and case[1][0] <= case[0][1] and case[1][1] <= case[0][2]]


@pytest.mark.parametrize("impl, ties", IMPLEMENTATIONS_AND_TIES)
@pytest.mark.parametrize("values", [2, 3])
@pytest.mark.parametrize("case", MAX_POOL_CASES, ids=_case_id)
def test_max_pool_backward_with_many_ties_matches_reference(case, values, impl, ties):
    """Integer inputs from a tiny range: most windows hold several copies of their maximum."""
    shape, kernel, stride = case[:3]
    rng = np.random.default_rng(values)
    A = rng.integers(0, values, shape).astype(np.float32)
    dA = rng.standard_normal(impl.pool_forward(A, kernel, stride).shape)
    np.testing.assert_allclose(_pool_backward(impl, dA, A, kernel, stride, "max", ties),
                               reference_pool_backward(dA, A, kernel, stride, "max", ties),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl, ties", IMPLEMENTATIONS_AND_TIES)
@pytest.mark.parametrize("kernel", [(2, 2), (3, 3), (2, 3), (4, 1)])
@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (3, 7, 9, 2), (1, 28, 28, 1)])
@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float32, np.float64),
                                    (np.int64, np.float32)])
def test_max_pool_backward_tiling_windows(shape, kernel, impl, ties, dtypes):
    """stride == kernel (LeNet-5's pooling; uncovered border rows/columns get zero)."""
    rng = np.random.default_rng(sum(shape))
    A = rng.integers(0, 3, shape).astype(dtypes[0])
    dA = rng.standard_normal(impl.pool_forward(A, kernel, kernel).shape).astype(dtypes[1])
    got = _pool_backward(impl, dA, A, kernel, kernel, "max", ties)
    assert got.dtype == np.result_type(dA, A)
    np.testing.assert_allclose(got, reference_pool_backward(dA, A, kernel, kernel, "max", ties),
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("kernel, stride", [((2, 2), (2, 2)), ((3, 3), (1, 1)),
                                            ((2, 3), (1, 2)), ((3, 2), (3, 3))])
def test_max_pool_ties_first_conserves_the_gradient(kernel, stride):
    """With ties="first" each window hands on exactly its gradient, however many ties."""
    A = np.random.default_rng(0).integers(0, 2, (3, 8, 7, 2)).astype(np.float64)
    dA = np.random.default_rng(1).standard_normal(pool_forward(A, kernel, stride).shape)
    dA_prev = pool_backward(dA, A, kernel, stride, ties="first")
    np.testing.assert_allclose(dA_prev.sum(axis=(1, 2)), dA.sum(axis=(1, 2)), rtol=1e-12)
    assert np.count_nonzero(pool_backward(np.ones_like(dA), A, kernel, stride,
                                          ties="first")) <= dA.size


@pytest.mark.parametrize("ties", ["all", "first"])
def test_avg_pool_ignores_ties(ties):
    A = np.ones((2, 6, 6, 2))
    dA = np.random.default_rng(0).standard_normal((2, 5, 5, 2))
    np.testing.assert_allclose(pool_backward(dA, A, (2, 2), (1, 1), "avg", ties=ties),
                               reference_pool_backward(dA, A, (2, 2), (1, 1), "avg"))


def test_ties_is_keyword_only():
    A = np.zeros((1, 4, 4, 1))
    with pytest.raises(TypeError):
        pool_backward(np.zeros((1, 2, 2, 1)), A, (2, 2), (2, 2), "max", "first")


# ---------------------------------------------------------------- finite differences
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_conv_backward_finite_differences(padding, stride, impl):
    A, W, b = _conv_inputs((2, 6, 7, 2), (3, 2), 3, seed=stride)
    strides = (stride, stride)
    probe = np.random.default_rng(5).standard_normal(
        impl.conv_forward(A, W, b, identity, padding, strides).shape)

    def loss():
        return np.sum(probe * impl.conv_forward(A, W, b, identity, padding, strides))

    dA_prev, dW, db = impl.conv_backward(probe, A, W, b, padding, strides)
    for analytic, variable in ((dA_prev, A), (dW, W), (db, b)):
        np.testing.assert_allclose(analytic, numerical_gradient(loss, variable),
                                   rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("kernel, stride", [((2, 2), (2, 2)), ((3, 3), (1, 1)),
                                            ((3, 2), (2, 3)), ((2, 3), (1, 2))])
def test_pool_backward_finite_differences(mode, kernel, stride, impl):
    rng = np.random.default_rng(3)
    shape = (2, 7, 6, 2)
    # Distinct values 0.01 apart: no ties, and eps never changes a window's maximum.
    A = rng.permutation(np.prod(shape)).reshape(shape) * 0.01
    probe = rng.standard_normal(impl.pool_forward(A, kernel, stride, mode).shape)

    def loss():
        return np.sum(probe * impl.pool_forward(A, kernel, stride, mode))

    np.testing.assert_allclose(impl.pool_backward(probe, A, kernel, stride, mode),
                               numerical_gradient(loss, A), rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- max-pool ties
@pytest.mark.parametrize("kernel, stride", [((2, 2), (2, 2)), ((2, 2), (1, 1)),
                                            ((3, 3), (1, 2)), ((3, 2), (3, 1))])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_max_pool_ties_all_receive_the_gradient(kernel, stride, impl):
    A = np.ones((1, 5, 6, 2))
    A[0, 4, :, 1] = 0.5  # a second level so that not every entry is a tie
    dA = np.random.default_rng(0).standard_normal(impl.pool_forward(A, kernel, stride).shape)
    np.testing.assert_allclose(impl.pool_backward(dA, A, kernel, stride),
                               reference_pool_backward(dA, A, kernel, stride), rtol=1e-12)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_max_pool_ties_non_overlapping_repeat_the_gradient(impl):
    """A constant input: every entry is its window's maximum and gets that window's dA."""
    A = np.full((2, 4, 6, 3), 7.0)
    dA = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    expected = np.repeat(np.repeat(dA, 2, axis=1), 2, axis=2)
    np.testing.assert_array_equal(impl.pool_backward(dA, A, (2, 2), (2, 2)), expected)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_max_pool_overlapping_windows_accumulate(impl):
    """Constant input, 2x2 windows at stride 1: entry (y, x) sums the dA of the windows covering it."""
    A = np.zeros((1, 4, 4, 1))
    dA = np.random.default_rng(0).standard_normal((1, 3, 3, 1))
    padded = np.pad(dA[0, :, :, 0], 1)
    expected = padded[1:, 1:] + padded[:-1, 1:] + padded[1:, :-1] + padded[:-1, :-1]
    np.testing.assert_allclose(impl.pool_backward(dA, A, (2, 2), (1, 1))[0, :, :, 0], expected)


# ---------------------------------------------------------------- documented values
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_same_padding_strided_example_from_spec(impl):
    out = impl.conv_forward(np.ones((1, 3, 3, 1)), np.ones((3, 3, 1, 1)), np.zeros((1, 1, 1, 1)),
                       identity, "same", (2, 2))
    np.testing.assert_array_equal(out[0, :, :, 0], [[1, 3, 1], [3, 9, 3], [1, 3, 1]])


@pytest.mark.parametrize("size, kernel, stride, padding, pads, out", [
    (28, 5, 1, "same", (2, 2), 28), (14, 5, 1, "valid", (0, 0), 10),
    (3, 3, 2, "same", (2, 2), 3), (4, 2, 3, "same", (3, 4), 4), (7, 3, 2, 1, (1, 1), 4),
])
def test_padding_helpers(size, kernel, stride, padding, pads, out):
    assert ops.padding_amounts(size, kernel, stride, padding) == pads
    assert ops.output_size(size, kernel, stride, padding) == out


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_spec_2_main_values(impl):
    path = TASKS / "MNIST.npz"
    if not path.exists():
        pytest.skip("MNIST.npz is not available (run `convnet data --link 0x07-cnn`)")
    with np.load(path, allow_pickle=False) as data:
        X = data["X_train"][:10].reshape(10, 28, 28, 1)
    np.random.seed(0)
    W = np.random.randn(3, 3, 1, 2)
    b = np.random.randn(1, 1, 1, 2)
    dZ = np.random.randn(10, 26, 26, 2)
    dA_prev, dW, db = impl.conv_backward(dZ, X, W, b, padding="valid")
    np.testing.assert_allclose(dA_prev[0, 0, :3, 0], [-4.24205748, 0.19390938, -2.80168847],
                               rtol=1e-7)
    np.testing.assert_allclose(db, [[[[-113.18404846, -121.902714]]]], rtol=1e-7)
    assert dA_prev.shape == X.shape and dW.shape == W.shape


# ---------------------------------------------------------------- inputs, dtypes, options
def _read_only(*arrays):
    copies = [np.array(a) for a in arrays]
    for copy in copies:
        copy.flags.writeable = False
    return copies


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_inputs_are_never_modified(mode, impl):
    A, W, b = _conv_inputs((3, 6, 6, 2), (3, 3), 2)
    originals = [A.copy(), W.copy(), b.copy()]
    A_ro, W_ro, b_ro = _read_only(A, W, b)
    Z = impl.conv_forward(A_ro, W_ro, b_ro, relu, "same", (2, 1))
    dZ_ro, = _read_only(np.ones_like(Z))
    impl.conv_backward(dZ_ro, A_ro, W_ro, b_ro, "same", (2, 1))
    out = impl.pool_forward(A_ro, (2, 3), (1, 2), mode)
    dA_ro, = _read_only(np.ones_like(out))
    impl.pool_backward(dA_ro, A_ro, (2, 3), (1, 2), mode)
    impl.conv_backward(dZ_ro, A, W, b, "same", (2, 1))
    impl.pool_backward(dA_ro, A, (2, 3), (1, 2), mode)
    for before, after in zip(originals, (A, W, b)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("c_prev", [1, 3])
def test_float32_stays_float32_and_mixed_promotes(c_prev, impl):
    A, W, b = _conv_inputs((2, 6, 6, c_prev), (3, 3), 2, dtype=np.float32)
    Z = impl.conv_forward(A, W, b, relu, "same")
    assert Z.dtype == np.float32
    assert all(g.dtype == np.float32 for g in impl.conv_backward(Z, A, W, b, "same"))
    assert impl.pool_forward(A, (2, 2), (2, 2)).dtype == np.float32
    assert impl.pool_backward(np.ones((2, 3, 3, c_prev), np.float32), A, (2, 2), (2, 2),
                              "avg").dtype == np.float32
    Z64 = impl.conv_forward(A, W.astype(np.float64), b, relu, "valid")
    assert Z64.dtype == np.float64
    np.testing.assert_allclose(Z64, reference_conv_forward(A, W.astype(np.float64), b, relu,
                                                           "valid"), rtol=1e-12)
    grads = impl.conv_backward(Z64, A, W, b, "valid")
    assert all(g.dtype == np.float64 for g in grads)


def test_need_dA_prev_false_skips_only_dA_prev():
    A, W, b = _conv_inputs((3, 8, 8, 2), (5, 5), 4)
    dZ = np.random.default_rng(1).standard_normal((3, 8, 8, 4))
    full = conv_backward(dZ, A, W, b, "same")
    dA_prev, dW, db = conv_backward(dZ, A, W, b, "same", need_dA_prev=False)
    assert dA_prev is None
    np.testing.assert_array_equal(dW, full[1])
    np.testing.assert_array_equal(db, full[2])
    with pytest.raises(TypeError):
        conv_backward(dZ, A, W, b, "same", (1, 1), False)  # keyword only


# ---------------------------------------------------------------- dtypes, empty batches, NaN
DTYPE_CASES = {  # (A_prev, W, b) dtypes; gradients (dZ, dA) take A_prev's
    "float64": (np.float64, np.float64, np.float64),
    "float32": (np.float32, np.float32, np.float32),
    "float32 with float64 W": (np.float32, np.float64, np.float32),
    "float16": (np.float16, np.float16, np.float16),
    "int64": (np.int64, np.int64, np.int64),
    "uint8": (np.uint8, np.uint8, np.uint8),
    "int32 with float32": (np.int32, np.float32, np.float32),
    "bool with float32": (np.bool_, np.float32, np.float32),
    "uint8 with float16": (np.uint8, np.float16, np.float16),
}
TOLERANCE = {np.dtype(np.float16): 4e-3, np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def _typed(rng, shape, dtype):
    """Random values of dtype: booleans, integers up to 60 (products overflow uint8), or normals."""
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 60, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _assert_close(got, want):
    """Same shape and dtype, values equal to the dtype's precision (NaN and inf in place)."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.dtype, want.dtype)
    tolerance = TOLERANCE[np.dtype(want.dtype)]
    scale = max(1.0, float(np.max(np.abs(want[np.isfinite(want)]), initial=0)))
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                               rtol=tolerance, atol=tolerance * scale)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("c_prev", [1, 3])
@pytest.mark.parametrize("dtypes", DTYPE_CASES.values(), ids=DTYPE_CASES.keys())
def test_conv_dtypes(dtypes, c_prev, impl):
    """Integers and booleans give float64 (no truncation, no overflow); float16 sums in float32."""
    rng = np.random.default_rng(c_prev)
    A, W, b = (_typed(rng, shape, dtype) for shape, dtype in
               zip([(2, 6, 8, c_prev), (3, 3, c_prev, 2), (1, 1, 1, 2)], dtypes))
    expected_dtype = reference_dtype(A, W, b)
    for padding, stride in [("same", (1, 1)), ("valid", (2, 1))]:
        Z = impl.conv_forward(A, W, b, np.tanh, padding, stride)
        _assert_close(Z, reference_conv_forward(A, W, b, np.tanh, padding, stride))
        assert Z.dtype == expected_dtype
        linear = impl.conv_forward(A, W, b, identity, padding, stride)
        _assert_close(linear, reference_conv_forward(A, W, b, identity, padding, stride))
        dZ = _typed(rng, Z.shape, dtypes[0])
        for got, want in zip(impl.conv_backward(dZ, A, W, b, padding, stride),
                             reference_conv_backward(dZ, A, W, b, padding, stride)):
            _assert_close(got, want)


def test_uint8_products_do_not_overflow():
    """60 x 60 = 3,600 does not fit in a uint8 (it would wrap to 16)."""
    A = np.full((1, 1, 1, 1), 60, np.uint8)
    W = np.full((1, 1, 1, 1), 60, np.uint8)
    b = np.zeros((1, 1, 1, 1), np.uint8)
    for impl in (ENGINE, TASK):
        np.testing.assert_array_equal(impl.conv_forward(A, W, b, identity, "valid"), [[[[3600]]]])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_float16_sums_in_float32(impl):
    """2048 + 1 + ... + 1 (63 ones) is 2048 in float16 arithmetic, 2111 (2112 stored) in float32."""
    A = np.ones((1, 1, 64, 1), np.float16)
    W = np.ones((1, 64, 1, 1), np.float16)
    W[0, 0] = 2048
    b = np.zeros((1, 1, 1, 1), np.float16)
    Z = impl.conv_forward(A, W, b, identity, "valid")
    assert Z.dtype == np.float16 and Z[0, 0, 0, 0] == np.float16(2111)
    dW = impl.conv_backward(np.ones((1, 1, 1, 1), np.float16), A, W, b, "valid")[1]
    dA = np.ones((1, 1, 64, 1), np.float16)
    dA[0, 0, 0] = 2048
    assert impl.pool_forward(dA, (1, 64), (1, 1), "avg")[0, 0, 0, 0] == np.float16(2111 / 64)
    np.testing.assert_array_equal(dW, np.ones_like(W))


@pytest.mark.parametrize("impl, ties", IMPLEMENTATIONS_AND_TIES)
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("dtypes", DTYPE_CASES.values(), ids=DTYPE_CASES.keys())
def test_pool_dtypes(dtypes, mode, impl, ties):
    rng = np.random.default_rng(0)
    A, dA_dtype = _typed(rng, (2, 7, 6, 3), dtypes[0]), dtypes[1]
    for kernel, stride in [((2, 2), (2, 2)), ((3, 2), (1, 2))]:
        out = impl.pool_forward(A, kernel, stride, mode)
        _assert_close(out, reference_pool_forward(A, kernel, stride, mode))
        dA = _typed(rng, out.shape, dA_dtype)
        _assert_close(_pool_backward(impl, dA, A, kernel, stride, mode, ties),
                      reference_pool_backward(dA, A, kernel, stride, mode, ties))


@pytest.mark.parametrize("impl, ties", IMPLEMENTATIONS_AND_TIES)
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("stride", [(1, 1), (2, 3)])
@pytest.mark.parametrize("c_prev", [1, 3])
def test_empty_batch(c_prev, stride, padding, impl, ties):
    """m = 0: every output is empty with the shape and dtype of the reference's; dW, db are 0."""
    A, W, b = _conv_inputs((0, 7, 8, c_prev), (3, 2), 4, dtype=np.float32)
    Z = impl.conv_forward(A, W, b, relu, padding, stride)
    _assert_close(Z, reference_conv_forward(A, W, b, relu, padding, stride))
    for got, want in zip(impl.conv_backward(Z, A, W, b, padding, stride),
                         reference_conv_backward(Z, A, W, b, padding, stride)):
        _assert_close(got, want)
    for mode in ("max", "avg"):
        out = impl.pool_forward(A, (2, 2), stride, mode)
        _assert_close(out, reference_pool_forward(A, (2, 2), stride, mode))
        _assert_close(_pool_backward(impl, out, A, (2, 2), stride, mode, ties),
                      reference_pool_backward(out, A, (2, 2), stride, mode, ties))


NONFINITE_CASES = [  # (A_prev shape, kernel, stride, padding, c_new)
    ((2, 9, 12, 1), (3, 3), (1, 1), "same", 2),    # one channel: products over bands
    ((2, 9, 12, 1), (5, 3), (2, 1), "valid", 3),
    ((2, 8, 8, 3), (3, 3), (1, 1), "same", 2),     # several channels, dA_prev in bands
    ((1, 10, 12, 2), (3, 5), (1, 2), "valid", 4),
]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("case", NONFINITE_CASES, ids=_case_id)
def test_nonfinite_values_stay_in_their_windows(case, value, impl):
    """A NaN or inf changes only the outputs (and gradients) whose windows hold it,
    even through kernel entries that are zero."""
    shape, kernel, stride, padding, c_new = case
    A, W, b = _conv_inputs(shape, kernel, c_new)
    W[0, 0] = 0
    A[0, 4, 5, 0] = value
    Z = impl.conv_forward(A, W, b, identity, padding, stride)
    expected = reference_conv_forward(A, W, b, identity, padding, stride)
    assert 0 < np.count_nonzero(~np.isfinite(expected)) < expected.size // 2
    _assert_close(Z, expected)
    A[0, 4, 5, 0] = 1.0
    dZ = np.random.default_rng(1).standard_normal(Z.shape)
    dZ[0, 1, 2, 0] = value
    dZ[-1, -1, -1, -1] = value
    for got, want in zip(impl.conv_backward(dZ, A, W, b, padding, stride),
                         reference_conv_backward(dZ, A, W, b, padding, stride)):
        _assert_close(got, want)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["first", "last", "both"])
@pytest.mark.parametrize("chunks", ["kept matrix", "one example each"])
@pytest.mark.parametrize("case", NONFINITE_CASES + [((3, 6, 8, 4), (3, 3), (1, 1), (1, 1), 2)],
                         ids=_case_id)
def test_nonfinite_gradient_in_any_chunk_stays_in_its_windows(case, chunks, where, value,
                                                              monkeypatch):
    """The backward pass learns from its product whether dZ holds a NaN or inf, whether
    the product is of a kept input matrix or of windows gathered again chunk by chunk:
    one anywhere in dZ still reaches only the entries of dA_prev in its window."""
    shape, kernel, stride, padding, c_new = case
    A, W, b = _conv_inputs(shape, kernel, c_new)
    W[0, 0] = 0
    if chunks == "one example each":
        monkeypatch.setattr(ops, "_CHUNK_ELEMENTS", 1)
    workspace = {}
    Z = conv_forward(A, W, b, identity, padding, stride, workspace=workspace)
    dZ = np.random.default_rng(1).standard_normal(Z.shape)
    if where in ("first", "both"):
        dZ[0, 0, 0, 0] = value
    if where in ("last", "both"):
        dZ[-1, -1, -1, -1] = value
    expected = reference_conv_backward(dZ, A, W, b, padding, stride)
    assert 0 < np.count_nonzero(~np.isfinite(expected[0])) < expected[0].size // 2
    built = _count_input_matrices(monkeypatch)
    for got, want in zip(conv_backward(dZ, A, W, b, padding, stride, workspace=workspace),
                         expected):
        _assert_close(got, want)
    # The forward pass's matrix served a batch of one chunk; else each chunk gathered its own.
    assert len(built) == (0 if chunks == "kept matrix" or len(A) == 1 else len(A))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("impl, ties", IMPLEMENTATIONS_AND_TIES)
@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("kernel, stride", [((2, 2), (2, 2)), ((3, 2), (1, 2))])
def test_pool_nonfinite_values_stay_in_their_windows(kernel, stride, value, impl, ties):
    for mode in ("max", "avg"):
        A = np.random.default_rng(0).standard_normal((2, 7, 8, 2))
        A[0, 3, 3, 1] = value
        out = impl.pool_forward(A, kernel, stride, mode)
        _assert_close(out, reference_pool_forward(A, kernel, stride, mode))
        dA = np.random.default_rng(1).standard_normal(out.shape)
        dA[1, 1, 1, 0] = value
        _assert_close(_pool_backward(impl, dA, A, kernel, stride, mode, ties),
                      reference_pool_backward(dA, A, kernel, stride, mode, ties))


# ---------------------------------------------------------------- bad input
A4 = np.zeros((2, 6, 6, 3))
W4 = np.zeros((3, 3, 3, 4))
B4 = np.zeros((1, 1, 1, 4))
Z4 = np.zeros((2, 6, 6, 4))
P4 = np.zeros((2, 3, 3, 3))


def _conv(**changes):
    args = {"A_prev": A4, "W": W4, "b": B4, "activation": relu, "padding": "same",
            "stride": (1, 1)} | changes
    return lambda impl: impl.conv_forward(**args)


def _conv_back(**changes):
    args = {"dZ": Z4, "A_prev": A4, "W": W4, "b": B4, "padding": "same",
            "stride": (1, 1)} | changes
    return lambda impl: impl.conv_backward(**args)


def _pool(**changes):
    args = {"A_prev": A4, "kernel_shape": (2, 2), "stride": (2, 2), "mode": "max"} | changes
    return lambda impl: impl.pool_forward(**args)


def _pool_back(**changes):
    args = {"dA": P4, "A_prev": A4, "kernel_shape": (2, 2), "stride": (2, 2),
            "mode": "max"} | changes
    return lambda impl: impl.pool_backward(**args)


BAD_INPUTS = {
    "A_prev ndim": (_conv(A_prev=np.zeros((6, 6, 3))), ValueError, r"A_prev must be a 4-D"),
    "W ndim": (_conv(W=np.zeros((3, 3, 3))), ValueError, r"W must be a 4-D"),
    "b ndim": (_conv(b=np.zeros(4)), ValueError, r"b must be a 4-D"),
    "channel mismatch": (_conv(W=np.zeros((3, 3, 2, 4))), ValueError,
                         r"W must have A_prev's 3 channels"),
    "bias shape": (_conv(b=np.zeros((1, 1, 1, 3))), ValueError,
                   r"b must have shape \(1, 1, 1, 4\)"),
    "empty kernel": (_conv(W=np.zeros((0, 3, 3, 4))), ValueError, r"W must have a non-empty"),
    "kernel too large valid": (_conv(W=np.zeros((7, 3, 3, 4)), padding="valid"), ValueError,
                               r"W's kernel \(7, 3\) is larger than the padded input \(6, 6\)"),
    "kernel too large tuple pad": (_conv(W=np.zeros((3, 9, 3, 4)), padding=(0, 1)),
                                   ValueError, r"larger than the padded input \(6, 8\)"),
    "stride zero": (_conv(stride=(0, 1)), ValueError,
                    r"stride must be two positive integers, received \(0, 1\)"),
    "stride negative": (_conv(stride=(1, -2)), ValueError, r"stride must be two positive"),
    "stride float": (_conv(stride=(1.0, 1)), TypeError, r"stride must be two positive integers"),
    "stride bool": (_conv(stride=(True, 1)), TypeError, r"stride must be two positive integers"),
    "stride length": (_conv(stride=(1, 1, 1)), ValueError, r"stride must be two positive"),
    "stride scalar": (_conv(stride=2), TypeError, r"stride must be two positive integers"),
    "padding string": (_conv(padding="full"), ValueError, r"padding must be 'same', 'valid'"),
    "padding type": (_conv(padding=None), TypeError, r"padding must be two non-negative"),
    "padding negative": (_conv(padding=(-1, 0)), ValueError, r"padding must be two non-negat"),
    "activation": (_conv(activation="relu"), TypeError, r"activation must be callable"),
    "A_prev dtype": (_conv(A_prev=np.full((2, 6, 6, 3), "x")), TypeError,
                     r"A_prev must be an array of real numbers"),
    "dZ shape": (_conv_back(dZ=np.zeros((2, 4, 4, 4))), ValueError,
                 r"dZ must have the shape of the forward output \(2, 6, 6, 4\), received"),
    "dZ ndim": (_conv_back(dZ=np.zeros((6, 6, 4))), ValueError, r"dZ must be a 4-D"),
    "backward stride": (_conv_back(stride=(1, 0)), ValueError, r"stride must be two positive"),
    "backward padding": (_conv_back(padding="SAME"), ValueError, r"padding must be"),
    "backward channels": (_conv_back(W=np.zeros((3, 3, 1, 4))), ValueError, r"W must have"),
    "pool A_prev ndim": (_pool(A_prev=np.zeros((6, 6))), ValueError, r"A_prev must be a 4-D"),
    "pool mode": (_pool(mode="min"), ValueError, r"mode must be 'max' or 'avg', received 'min'"),
    "pool mode type": (_pool(mode=None), TypeError, r"mode must be 'max' or 'avg'"),
    "kernel_shape zero": (_pool(kernel_shape=(0, 2)), ValueError,
                          r"kernel_shape must be two positive integers"),
    "kernel_shape float": (_pool(kernel_shape=(2.5, 2)), TypeError,
                           r"kernel_shape must be two positive integers"),
    "kernel_shape length": (_pool(kernel_shape=(2,)), ValueError, r"kernel_shape must be two"),
    "kernel_shape too large": (_pool(kernel_shape=(7, 2)), ValueError,
                               r"kernel_shape \(7, 2\) is larger than the input \(6, 6\)"),
    "pool stride": (_pool(stride=(2, 0)), ValueError, r"stride must be two positive"),
    "pool stride bool": (_pool(stride=(2, False)), TypeError, r"stride must be two positive"),
    "dA shape": (_pool_back(dA=np.zeros((2, 2, 3, 3))), ValueError,
                 r"dA must have the shape of the forward output \(2, 3, 3, 3\)"),
    "dA ndim": (_pool_back(dA=np.zeros(3)), ValueError, r"dA must be a 4-D"),
    "pool backward mode": (_pool_back(mode="mean"), ValueError, r"mode must be"),
    "pool backward kernel": (_pool_back(kernel_shape=[2, 2, 2]), ValueError,
                             r"kernel_shape must be two"),
    "no channels": (_conv(A_prev=np.zeros((2, 6, 6, 0)), W=np.zeros((3, 3, 0, 4))), ValueError,
                    (r"A_prev must have a positive height, width and number of channels, "
                     r"received shape \(2, 6, 6, 0\)")),
    "no columns": (_conv(A_prev=np.zeros((2, 6, 0, 3))), ValueError,
                   r"A_prev must have a positive height, width"),
    "backward no channels": (_conv_back(A_prev=np.zeros((2, 6, 6, 0)),
                                        W=np.zeros((3, 3, 0, 4))), ValueError,
                             r"A_prev must have a positive height, width and number"),
    "pool no channels": (_pool(A_prev=np.zeros((2, 6, 6, 0))), ValueError,
                         r"A_prev must have a positive height, width and number"),
    "pool backward no rows": (_pool_back(A_prev=np.zeros((2, 0, 6, 3))), ValueError,
                              r"A_prev must have a positive height, width and number"),
    "activation returns a scalar": (_conv(activation=np.sum), ValueError,
                                    (r"activation must return an array of the shape it "
                                     r"receives, \(2, 6, 6, 4\), returned shape \(\)")),
    "activation drops an axis": (_conv(activation=lambda z: z[..., 0]), ValueError,
                                 r"activation must return an array of the shape"),
    "bool stride": (_conv(stride=(np.bool_(True), 1)), TypeError, r"stride must be two"),
    "complex input": (_conv(A_prev=np.zeros((2, 6, 6, 3), complex)), TypeError,
                      r"A_prev must be an array of real numbers, received dtype complex128"),
}


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("call, error, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_raises_clear_error(call, error, message, impl):
    with pytest.raises(error, match=message):
        call(impl)


# Arguments that equal (and hash as) the good ones the engine has remembered just before.
LOOKALIKES = {
    "stride floats": (_conv(stride=(1.0, 1.0)), TypeError, r"stride must be two positive"),
    "stride bools": (_conv(stride=(True, True)), TypeError, r"stride must be two positive"),
    "stride numpy bools": (_conv_back(stride=(np.True_, np.True_)), TypeError,
                           r"stride must be two positive"),
    "padding floats": (_conv(padding=(1.0, 1.0)), TypeError, r"padding must be two non-neg"),
    "pool kernel floats": (_pool(kernel_shape=(2.0, 2.0)), TypeError,
                           r"kernel_shape must be two positive integers"),
    "pool stride floats": (_pool_back(stride=(2.0, 2.0)), TypeError,
                           r"stride must be two positive integers"),
}
GOOD_CALLS = [_conv(), _conv(padding=(1, 1)), _conv_back(), _pool(), _pool_back()]


@pytest.mark.parametrize("call, error, message", (BAD_INPUTS | LOOKALIKES).values(),
                         ids=(BAD_INPUTS | LOOKALIKES).keys())
def test_bad_input_raises_after_good_calls_of_the_same_shapes(call, error, message):
    """The engine remembers the geometry of good calls, never a refusal: a bad argument,
    even one equal to a good one remembered (1.0 or True for 1), raises every time."""
    for good in GOOD_CALLS:
        good(ENGINE)
    for _ in range(2):
        with pytest.raises(error, match=message):
            call(ENGINE)


@pytest.mark.parametrize("value, plain", [
    ("same", True), ((1, 2), True), ((1.0, 2), False), ((True, 1), False),
    ((np.int64(1), 1), False), ([1, 2], False), ((1, 2, 3), False), (1, False),
    (None, False)])
def test_only_strings_and_pairs_of_ints_are_looked_up(value, plain):
    assert ops._plain(value) == plain
    assert ops._plain("valid", value) == plain


GEOMETRY_GRID = list(itertools.product(
    [(1, 5, 7, 2), (3, 8, 8, 1)], [(1, 1), (3, 2), (5, 7)], [(1, 1), (2, 3)],
    ["same", "valid", (0, 0), (2, 1)]))


@pytest.mark.parametrize("shape, kernel, stride, padding", GEOMETRY_GRID)
def test_remembered_conv_geometry_is_the_arithmetic_of_every_call(shape, kernel, stride,
                                                                  padding):
    """Looked up or computed again (lists, NumPy integers), the geometry is
    padding_amounts and output_size of each axis."""
    m, h, w, c = shape
    A, W, b = np.zeros(shape), np.zeros(kernel + (c, 3)), np.zeros((1, 1, 1, 3))
    paddings = (padding, padding) if isinstance(padding, str) else padding
    pads = tuple(ops.padding_amounts(size, k, s, pad)
                 for size, k, s, pad in zip((h, w), kernel, stride, paddings))
    if any(k > size + sum(pad) for k, size, pad in zip(kernel, (h, w), pads)):
        pytest.skip("kernel larger than the padded input")
    expected = (pads, stride, (m,) + tuple(
        ops.output_size(size, k, s, pad)
        for size, k, s, pad in zip((h, w), kernel, stride, paddings)) + (3,))
    as_list = padding if isinstance(padding, str) else list(padding)
    as_numpy = padding if isinstance(padding, str) else tuple(map(np.int64, padding))
    for pad, step in [(padding, stride), (padding, stride), (as_list, list(stride)),
                      (as_numpy, tuple(map(np.int64, stride)))]:
        geometry = ops._conv_geometry(A, W, b, pad, step)
        assert geometry[3:] == expected
        pads_got, stride_got, shape_got = geometry[3:]
        assert all(type(n) is int for n in pads_got[0] + pads_got[1] + stride_got + shape_got)
    before = ops._conv_shapes.cache_info().hits
    ops._conv_geometry(A, W, b, padding, stride)
    assert ops._conv_shapes.cache_info().hits == before + 1


@pytest.mark.parametrize("shape, kernel, stride", [
    ((2, 6, 6, 3), (2, 2), (2, 2)), ((1, 7, 5, 1), (3, 2), (1, 2)), ((3, 4, 9, 2), (4, 9), (1, 1))])
def test_remembered_pool_geometry_is_the_arithmetic_of_every_call(shape, kernel, stride):
    m, h, w, c = shape
    A = np.zeros(shape)
    out_shape = (m, ops.output_size(h, kernel[0], stride[0], "valid"),
                 ops.output_size(w, kernel[1], stride[1], "valid"), c)
    for window, step, mode in [(kernel, stride, "max"), (kernel, stride, "avg"),
                               (list(kernel), list(stride), "max"),
                               (tuple(map(np.int64, kernel)), stride, np.str_("max"))]:
        assert ops._pool_geometry(A, window, step, mode)[1:] == (kernel, stride, mode,
                                                                 out_shape)


@pytest.mark.parametrize("band, sw", [(0, 1), (1, 1), (1, 2), (3, 1), (4, 2)])
@pytest.mark.parametrize("dtypes", [(np.float32, np.float32, np.float32),
                                    (np.float16, np.float32, np.float32),
                                    (np.int64, np.float16, np.float64),
                                    (np.float64, np.int8, np.float64)])
def test_kernel_matrix_is_the_spread_kernel_over_the_biases(band, sw, dtypes):
    """Built in place, the kernel matrix is, to the bit, the spread kernel (zeros off
    each column's window) stacked on the biases and cast, built entry by entry."""
    W_dtype, b_dtype, dtype = dtypes
    rng = np.random.default_rng(0)
    kh, kw, c_prev, c_new = 2, 3, 1 if band == 0 else 2, 4
    W = (rng.standard_normal((kh, kw, c_prev, c_new)) * 50).astype(W_dtype)
    b = (rng.standard_normal((1, 1, 1, c_new)) * 50).astype(b_dtype)
    width = band or 1
    span = (width - 1) * sw + kw
    expected = np.zeros((kh * span * c_prev + 1, width * c_new), np.result_type(W, b))
    for i, t, channel, x, k in itertools.product(range(kh), range(span), range(c_prev),
                                                 range(width), range(c_new)):
        if 0 <= t - x * sw < kw:
            expected[(i * span + t) * c_prev + channel, x * c_new + k] = W[i, t - x * sw,
                                                                           channel, k]
    expected[-1] = np.tile(b.reshape(-1), width)
    got = ops._kernel_matrix(W, b, band, sw, np.dtype(dtype))
    assert got.dtype == dtype
    assert got.tobytes() == expected.astype(dtype).tobytes()


@pytest.mark.parametrize("ties, error", [("last", ValueError), (None, TypeError)])
def test_engine_ties_must_be_all_or_first(ties, error):
    with pytest.raises(error, match=rf"ties must be 'all' or 'first', received {ties!r}"):
        pool_backward(P4, A4, (2, 2), (2, 2), ties=ties)


# ---------------------------------------------------------------- two implementations
@pytest.mark.parametrize("name", TASK_FILES)
def test_task_files_are_real_files_apart_from_the_engine(name):
    path = TASKS / f"{name}.py"
    assert path.is_file() and not path.is_symlink()
    assert path.read_bytes() != Path(ops.__file__).read_bytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_runs_equals_assignment_and_falls_back(dtype):
    rng = np.random.default_rng(0)
    base = rng.random((6, 9, 12)).astype(dtype)
    source = base[::2, 1:8, 2:7]   # runs of 5 contiguous numbers
    target_base = np.zeros((3, 8, 7, 11), dtype)
    target = target_base[:, 1, :, 3:8]
    ops._copy_runs(target, source)
    np.testing.assert_array_equal(target, source)
    assert not target_base[:, 1, :, :3].any() and not target_base[:, 1, :, 8:].any()
    assert not target_base[:, [0, 2, 3, 4, 5, 6, 7]].any()
    # Fallbacks: a last axis that is not contiguous, and another dtype.
    strided = np.zeros((3, 7, 10), dtype)[..., ::2]
    ops._copy_runs(strided, source)
    np.testing.assert_array_equal(strided, source)
    other = np.zeros((3, 7, 5), np.float16)
    ops._copy_runs(other, source)
    np.testing.assert_array_equal(other, source.astype(np.float16))
    ops._copy_runs(np.zeros((3, 0), dtype), source[:, 0, :0])   # runs of nothing
