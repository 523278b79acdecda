"""Convolution and pooling layers in NumPy, forward and backward: the engine.

This module is the fast path the package trains with (``convnet.nn.layers``).
Its four public functions compute exactly what tasks 0-3 of the curriculum
ask for; the readable versions of the same computations are the task files
``0x07-cnn/0-conv_forward.py`` ... ``3-pool_backward.py``, and the slowest,
most literal version (a loop over every index) is ``convnet/nn/reference_ops.py``.
The tests hold all three to the same results.

Conventions: tensors are NHWC ``(m, h, w, c)``, kernels are
``(kh, kw, c_prev, c_new)``, biases ``(1, 1, 1, c_new)``; convolution is a
cross-correlation (the kernel is not flipped). Integer and boolean inputs
give float64 results; float16 inputs are summed in float32. A NaN or inf
only reaches the outputs whose windows hold it.

The file reads top-down: the four operations first, then their argument
checks, then, below a divider, the machinery that only exists for speed.
"""
import functools
import math

import numpy as np

PADDINGS = ("same", "valid")
MODES = ("max", "avg")
TIES = ("all", "first")
# Elements of a convolution's input matrix per chunk of examples (1 MiB of
# float32) when the backward pass gathers the windows for dW; the forward pass
# goes in chunks of this many (input matrix and output), dA_prev in chunks of
# twice this (see _gradient_elements). Chunks this small stay in a core's
# cache from the gather to the products that read them: rather than write a
# whole batch's matrix to memory and read it back in the backward pass, that
# pass gathers it again. Only a batch whose matrix fits in one chunk keeps it
# (in a workspace) for the backward pass. With the caches cold, as in a
# training step, chunks of 16 MiB (every zoo model's batch of 32 in one
# chunk, its matrix kept) and chunks of this size took: mnist-cnn's second
# convolution at batch 32, 4.4 + 7.1 ms (forward + backward) and 2.9 + 6.4
# ms; cifar-cnn's second, 2.4 + 4.0 and 1.4 + 3.3 ms. Chunks of half this
# size were no faster, of twice this size slower. Forward chunks of half
# this size made mnist-cnn's second convolution 3.55 ms instead of 3.30 (one
# example per chunk instead of three; the products of more rows at once run
# faster) and its training step 3 % slower (AMD EPYC, 512 KiB of L2 a core).
_CHUNK_ELEMENTS = 1 << 18
# Input elements per block of max pooling over tiling windows: a block's input,
# its copy tap by tap and the masks fit a core's 2 MiB L2 cache with room to
# spare, so every pass after the first reads them from there.
_POOL_BLOCK_ELEMENTS = 1 << 17
# Max-pooling windows that tile the input with at most this many entries note
# which of them equal the maximum, a bit each in one byte per output (see
# _max_pool_tiles); larger windows keep their maxima (for so few outputs, the
# per-tap passes would cost more than they save).
_WINNER_BITS = 8
# From this many channels on, with ties="first", the gradient of larger tiling
# windows goes tap by tap (runs of c numbers); below it, or with ties="all",
# windows are spread over their columns (see _max_pool_backward_tiled), which
# keeps runs long when c is small. The first takes the product with a
# signed-integer gradient in its own dtype, where 0 * gradient is +0, the
# second in floats, where it is -0 for a negative gradient; the windows that
# note their winners keep the same rule, so every result stays the same to
# the bit.
_TAP_CHANNELS = 8


# ---------------------------------------------------------------- the four operations
def conv_forward(A_prev, W, b, activation, padding="same", stride=(1, 1), *,
                 workspace=None):
    """Forward pass of a convolutional layer.

    Parameters
    ----------
    A_prev : ndarray of shape (m, h_prev, w_prev, c_prev)
        Output of the previous layer.
    W : ndarray of shape (kh, kw, c_prev, c_new)
        Kernels; cross-correlated with A_prev (not flipped).
    b : ndarray of shape (1, 1, 1, c_new)
        Biases.
    activation : callable
        Element-wise activation applied to the biased correlation.
    padding : {'same', 'valid'} or tuple of two int, optional
        ``'same'`` gives an output as large as the input at every stride
        (total padding ``(h_prev - 1) * sh + kh - h_prev`` split with the
        smaller half on top/left). With stride 1 this is TensorFlow's
        ``'SAME'``; with stride > 1 TensorFlow gives ``ceil(h_prev / sh)``
        outputs instead. ``'valid'`` adds no padding. ``(ph, pw)`` adds ph
        rows of zeros at the top and bottom and pw columns on each side.
    stride : tuple of two int, optional
        ``(sh, sw)``, positive.
    workspace : dict, optional, keyword only
        Scratch memory owned by the caller, who passes the same dict to
        every forward and backward call of one layer (as
        ``convnet.nn.layers.Conv2D`` does). The matrix of windows is then
        built in memory reused from call to call and kept for
        :func:`conv_backward`, which takes it from there instead of
        gathering the windows again when it receives the same dict and the
        very same ``A_prev`` array (not modified in between). Only a batch
        small enough for one chunk of work keeps it: for a larger one,
        gathering the windows again in chunks that stay in cache is faster
        than reading a whole batch's matrix back from memory.

    Returns
    -------
    ndarray of shape (m, h_new, w_new, c_new)
        Activated output, of dtype ``np.result_type(A_prev, W, b)``, or
        float64 when all three are integers or booleans (float16 is summed
        in float32). ``h_new = (h_prev + top + bottom - kh) // sh + 1``,
        likewise ``w_new``.

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong type or shape, naming the argument, and
        for an activation that returns another shape than it receives.
    """
    if not callable(activation):
        raise TypeError("activation must be callable, received "
                        f"{activation!r}")
    A_prev, W, b, pads, stride, out_shape = _conv_geometry(A_prev, W, b,
                                                           padding, stride)
    _check_workspace(workspace)
    dtype, work = _dtypes(A_prev, W, b)
    kh, kw, _, c_new = W.shape
    out_hw = out_shape[1:3]
    band = _forward_band(W.shape, stride, out_hw)
    if band > 1 and not _all_finite(A_prev):
        # The spread kernel's zeros would turn an inf into NaN in other windows.
        band = 0 if W.shape[2] == 1 else 1
    # The bias rides along as the kernel matrix's last row.
    kernel_matrix = _kernel_matrix(W, b, band, stride[1], work)
    out = np.empty(out_shape, work)
    m = out_shape[0]
    matrix = _matrix_elements(W.shape, stride, out_hw)
    # A batch whose input matrix fits in one chunk keeps it for the backward
    # pass (still in cache as a whole); a larger one goes in smaller chunks.
    if 0 < m <= _chunk_size(matrix):
        keep, (chunks, longest) = workspace, ((slice(0, m),), m)
    else:
        per_example = matrix + out_hw[0] * out_hw[1] * c_new
        keep = None
        chunks, longest = _blocks_of(m, _chunk_size(per_example))
    if workspace is not None:
        workspace.pop("windows_of", None)
    matrices = _input_matrices(A_prev, chunks, longest, pads, work, (kh, kw), stride,
                               out_hw, band, {} if keep is None else keep)
    for inputs, rows in zip(matrices, chunks):
        Z = out[rows]
        np.matmul(inputs, kernel_matrix, out=Z.reshape(len(inputs), -1))
        activated = activation(Z)
        if activated is not Z:
            if np.shape(activated) != Z.shape:
                raise ValueError("activation must return an array of the "
                                 f"shape it receives, {Z.shape}, returned "
                                 f"shape {np.shape(activated)}")
            Z[...] = activated
    if keep is not None:
        keep["windows_of"] = (A_prev, _windows_key(W, pads, stride, work,
                                                   band), inputs)
    return out.astype(dtype, copy=False)


def pool_forward(A_prev, kernel_shape, stride=(1, 1), mode="max", *,
                 workspace=None):
    """Forward pass of a pooling layer (no padding).

    Parameters
    ----------
    A_prev : ndarray of shape (m, h_prev, w_prev, c)
        Output of the previous layer.
    kernel_shape : tuple of two int
        ``(kh, kw)``, the pooling window.
    stride : tuple of two int, optional
        ``(sh, sw)``, positive.
    mode : {'max', 'avg'}, optional
        Maximum or average of each window.
    workspace : dict, optional, keyword only
        Scratch memory owned by the caller and passed to every call of one
        layer. Max pooling keeps there what :func:`pool_backward` needs,
        which reuses it instead of pooling again when it receives the same
        dict and the very same ``A_prev`` array (not modified in between):
        for windows that tile the input (stride = kernel) with at most 8
        entries, which entries of each window equal its maximum, one bit
        per entry in a byte per output; for other windows, a copy of the
        output.

    Returns
    -------
    ndarray of shape (m, h_new, w_new, c)
        ``h_new = (h_prev - kh) // sh + 1``, likewise for w. Same dtype as
        A_prev, or float64 for integers or booleans (float16 averages are
        summed in float32).
    """
    A_prev, kernel, stride, mode, out_shape = _pool_geometry(
        A_prev, kernel_shape, stride, mode)
    _check_workspace(workspace)
    dtype, work = _dtypes(A_prev)
    winners = None
    if workspace is not None:
        workspace.pop("maxima_of", None)
        workspace.pop("winners_of", None)
        if mode == "max" and _notes_winners(kernel, stride):
            winners = _scratch(workspace, "winners", out_shape, np.uint8)
    out = _pool(A_prev, kernel, stride, out_shape[1:3], mode,
                dtype if mode == "max" else work, winners,
                workspace).astype(dtype, copy=False)
    if winners is not None:
        workspace["winners_of"] = (A_prev, (kernel, stride), winners)
    elif workspace is not None and mode == "max":
        maxima = _scratch(workspace, "maxima", out.shape, out.dtype)
        np.copyto(maxima, out)
        workspace["maxima_of"] = (A_prev, (kernel, stride), maxima)
    return out


def conv_backward(dZ, A_prev, W, b, padding="same", stride=(1, 1), *,
                  need_dA_prev=True, workspace=None):
    """Backward pass of a convolutional layer.

    Parameters
    ----------
    dZ : ndarray of shape (m, h_new, w_new, c_new)
        Gradient of the loss with respect to the unactivated output.
    A_prev : ndarray of shape (m, h_prev, w_prev, c_prev)
        Input of the forward pass, whose windows weigh ``dZ`` into ``dW``.
    W : ndarray of shape (kh, kw, c_prev, c_new)
        Kernels of the forward pass, which carry ``dZ`` back into ``dA_prev``.
    b : ndarray of shape (1, 1, 1, c_new)
        Biases of the forward pass.
    padding, stride : optional
        As the forward pass used them (see :func:`conv_forward`).
    need_dA_prev : bool, optional, keyword only
        When False (e.g. for a first layer, whose input is the data) the
        gradient with respect to A_prev is not computed and ``None`` is
        returned in its place.
    workspace : dict, optional, keyword only
        The dict given to :func:`conv_forward` for this A_prev: the matrix
        of windows it kept (for a batch small enough) is reused and the
        padded input gradient is formed in memory reused from call to call.
        Without it (or for another A_prev) the windows are gathered again;
        the result is the same.

    Returns
    -------
    dA_prev : ndarray of shape (m, h_prev, w_prev, c_prev) or None
        Gradient with respect to A_prev.
    dW : ndarray of shape (kh, kw, c_prev, c_new)
        Gradient with respect to W.
    db : ndarray of shape (1, 1, 1, c_new)
        Gradient with respect to b.
    All three have dtype ``np.result_type(dZ, A_prev, W, b)``, or float64
    when all four are integers or booleans (float16 is summed in float32).
    """
    A_prev, W, b, pads, stride, out_shape = _conv_geometry(A_prev, W, b,
                                                           padding, stride)
    dZ = _array("dZ", dZ, 4, "(m, h_new, w_new, c_new)")
    _check_gradient("dZ", dZ, out_shape)
    _check_workspace(workspace)
    dtype, work = _dtypes(dZ, A_prev, W, b)
    kh, kw, _, c_new = W.shape
    m = A_prev.shape[0]
    out_hw = out_shape[1:3]
    band = _forward_band(W.shape, stride, out_hw)
    # dZ as the input matrix's product gives it: band * c_new per row.
    dZ_columns = c_new * (band or 1)
    inputs = _kept(workspace, "windows_of", A_prev,
                   _windows_key(W, pads, stride, work, band))
    if inputs is not None:
        product = inputs.T @ dZ.reshape(-1, dZ_columns).astype(work,
                                                               copy=False)
    else:
        # The windows again, a chunk at a time, multiplied while in cache.
        product = 0
        chunks, longest = _blocks_of(m, _chunk_size(_matrix_elements(W.shape, stride, out_hw)))
        matrices = _input_matrices(A_prev, chunks, longest, pads, work, (kh, kw), stride,
                                   out_hw, band, {})
        for inputs, rows in zip(matrices, chunks):
            product = product + inputs.T @ dZ[rows].reshape(-1, dZ_columns).astype(
                work, copy=False)
    if m == 0:
        product = np.zeros_like(_kernel_matrix(W, b, band, stride[1], work))
    dW, db = _kernel_gradients(product, W.shape, band, stride[1])
    dA_prev = None
    if need_dA_prev:
        # The input matrix's column of ones made the product's last row the
        # sums of dZ's channels, which a NaN or inf in dZ leaves non-finite:
        # they tell, without another pass over dZ, whether dA_prev may go in
        # bands (whose spread kernel holds zeros).
        dA_prev = _input_gradient(dZ, A_prev.shape, W.astype(work, copy=False),
                                  pads, stride, _all_finite(product[-1]),
                                  workspace).astype(dtype, copy=False)
    return dA_prev, dW.astype(dtype, copy=False), db.astype(dtype, copy=False)


def pool_backward(dA, A_prev, kernel_shape, stride=(1, 1), mode="max", *,
                  ties="all", workspace=None):
    """Backward pass of a pooling layer.

    Parameters
    ----------
    dA : ndarray of shape (m, h_new, w_new, c)
        Gradient of the loss with respect to the pooling output.
    A_prev : ndarray of shape (m, h_prev, w_prev, c)
        Input of the forward pass: max pooling looks in it for the entry
        of each window that won.
    kernel_shape, stride : tuple of two int
        The window ``(kh, kw)`` and the stride ``(sh, sw)`` the forward
        pass used.
    mode : {'max', 'avg'}, optional
        ``'max'``: the window's gradient goes to its maximum (see
        ``ties``). ``'avg'``: every entry of the window receives
        ``dA / (kh * kw)``. Overlapping windows accumulate.
    ties : {'all', 'first'}, optional, keyword only
        Where a max window's gradient goes when several entries equal its
        maximum. ``'all'`` (the curriculum's rule): every tied entry
        receives the full gradient. ``'first'``: only the first tied entry
        in row-major order within the window receives it, as TensorFlow's
        ``max_pool2d`` gradient does; this is the true subgradient (the
        gradients of the loss add up to the upstream gradient), so a
        training loop should use it: on images with saturated pixels, such
        as MNIST's strokes, ties are common and ``'all'`` inflates them.
        Ignored for ``'avg'``.
    workspace : dict, optional, keyword only
        The dict given to :func:`pool_forward` for this A_prev: what it
        kept of the windows' maxima is reused (with the winners it noted,
        the gradient is routed from them, block by block in buffers reused
        from call to call). Without it (or for another A_prev) the maxima
        are computed again; the result is the same.

    Returns
    -------
    ndarray of shape (m, h_prev, w_prev, c)
        Gradient with respect to A_prev, of dtype
        ``np.result_type(dA, A_prev)``, or float64 when both are integers
        or booleans (float16 is summed in float32).
    """
    A_prev, kernel, stride, mode, out_shape = _pool_geometry(
        A_prev, kernel_shape, stride, mode)
    ties = _choice("ties", ties, TIES)
    dA = _array("dA", dA, 4, "(m, h_new, w_new, c)")
    _check_gradient("dA", dA, out_shape)
    _check_workspace(workspace)
    dtype, work = _dtypes(dA, A_prev)
    kh, kw = kernel
    out_hw = out_shape[1:3]
    if mode == "max":
        first = ties == "first"
        finite = _all_finite(dA)
        # Spread windows take the product in floats (see _TAP_CHANNELS).
        spread = not first or A_prev.shape[3] < _TAP_CHANNELS
        winners = _kept(workspace, "winners_of", A_prev, (kernel, stride))
        if winners is not None:
            gradient = dA.astype(work, copy=False) if spread else dA
            return _max_pool_backward_winners(
                gradient, winners, A_prev.shape, kernel, work, first, finite,
                workspace).astype(dtype, copy=False)
        # Without winners noted by the forward pass, pool again and go from
        # the maxima: noting them here would cost about what it saves.
        maxima = _kept(workspace, "maxima_of", A_prev, (kernel, stride))
        if maxima is None:
            maxima = _pool(A_prev, kernel, stride, out_hw, "max",
                           _dtypes(A_prev)[0])
        if stride == kernel:
            tiled = _max_pool_backward_tiled if spread else _max_pool_backward_taps
            return tiled(dA, A_prev, maxima, kernel, out_hw, work, first,
                         finite).astype(dtype, copy=False)
    dA_prev = np.zeros(A_prev.shape, work)
    # Windows that cannot overlap are written directly; otherwise the
    # contributions of overlapping windows are added up tap by tap.
    overlapping = stride[0] < kh or stride[1] < kw
    if mode == "avg":
        share = dA.astype(work) / (kh * kw)
    else:
        is_max = np.empty(maxima.shape, bool)
        share = np.empty(maxima.shape, work)
        # Windows whose gradient no earlier tap (row-major) has taken.
        unclaimed = np.ones(maxima.shape, bool) if first else None
    for i in range(kh):
        for j in range(kw):
            target = _tap(dA_prev, i, j, stride, out_hw)
            if mode == "max":
                np.equal(_tap(A_prev, i, j, stride, out_hw), maxima,
                         out=is_max)
                if unclaimed is not None:
                    is_max &= unclaimed
                    unclaimed ^= is_max  # is_max implies unclaimed
                if not overlapping:
                    _route(dA, is_max, target, finite)
                    continue
                _route(dA, is_max, share, finite)
            if overlapping:
                target += share
            else:
                target[...] = share
    return dA_prev.astype(dtype, copy=False)


# ---------------------------------------------------------------- sizes and argument checks
def padding_amounts(size, kernel, stride, padding):
    """Return the padding added before and after one spatial axis.

    Parameters
    ----------
    size : int
        Length of the input along the axis (h or w).
    kernel : int
        Kernel length along the axis (kh or kw).
    stride : int
        Stride along the axis (sh or sw).
    padding : str or int
        ``'valid'`` (no padding), ``'same'`` (output as long as the input,
        at every stride) or a number of zeros added on both sides.

    Returns
    -------
    tuple of int
        ``(before, after)``. For ``'same'`` the total is
        ``(size - 1) * stride + kernel - size`` (never negative), split with
        ``total // 2`` before and the rest after.
    """
    if padding == "valid":
        return 0, 0
    if padding == "same":
        total = max((size - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2
    return padding, padding


def output_size(size, kernel, stride, padding):
    """Return the output length along one spatial axis.

    Parameters are those of :func:`padding_amounts`. The result is
    ``floor((size + before + after - kernel) / stride) + 1``: ``size`` itself
    for ``'same'``, ``floor((size - kernel) / stride) + 1`` for ``'valid'``.
    """
    before, after = padding_amounts(size, kernel, stride, padding)
    return (size + before + after - kernel) // stride + 1


def _is_int(value):
    """Tell whether value is an integer, excluding booleans."""
    return isinstance(value, (int, np.integer)) and not isinstance(
        value, (bool, np.bool_))


def _int_pair(name, value, minimum):
    """Return value as a tuple of two integers >= minimum, or raise."""
    if isinstance(value, (tuple, list)) and all(_is_int(v) for v in value):
        if len(value) == 2 and value[0] >= minimum and value[1] >= minimum:
            return int(value[0]), int(value[1])
        error = ValueError
    else:
        error = TypeError
    expected = "positive" if minimum > 0 else "non-negative"
    raise error(f"{name} must be two {expected} integers, received {value!r}")


def _array(name, value, ndim, layout):
    """Return value as a numeric ndarray with ndim dimensions, or raise."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":   # bool, signed, unsigned, floating
        raise TypeError(f"{name} must be an array of real numbers, "
                        f"received dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array of shape "
                         f"{layout}, received shape {array.shape}")
    return array


def _padding(value):
    """Return the padding argument normalised, or raise."""
    if isinstance(value, str):
        if value not in PADDINGS:
            raise ValueError("padding must be 'same', 'valid' or two "
                             "non-negative integers, received "
                             f"{value!r}")
        return value, value
    return _int_pair("padding", value, 0)


def _choice(name, value, choices):
    """Return value if it is one of the strings in choices, or raise."""
    message = (f"{name} must be {' or '.join(map(repr, choices))}, "
               f"received {value!r}")
    if not isinstance(value, str):
        raise TypeError(message)
    if value not in choices:
        raise ValueError(message)
    return value


def _check_extent(A_shape):
    """Raise unless A_prev's shape has at least one row, column and channel."""
    if min(A_shape[1:]) < 1:
        raise ValueError("A_prev must have a positive height, width and "
                         "number of channels, received shape "
                         f"{A_shape}")


def _check_gradient(name, gradient, expected):
    """Raise unless the upstream gradient has the forward output's shape."""
    if gradient.shape != expected:
        raise ValueError(f"{name} must have the shape of the forward output "
                         f"{expected}, received {gradient.shape}")


def _plain(*values):
    """Tell whether every value is a string or a tuple of two ints (not bools).

    Only such arguments are looked up in the geometry caches: ``1.0`` and
    ``True`` equal ``1`` and hash alike, yet must still be refused where
    ``1`` is accepted, and a list cannot be hashed.
    """
    for value in values:
        if type(value) is not str and not (
                type(value) is tuple and len(value) == 2
                and type(value[0]) is int and type(value[1]) is int):
            return False
    return True


def _conv_geometry(A_prev, W, b, padding, stride):
    """Check the convolution arguments once; return the normalised values.

    Returns
    -------
    tuple
        ``(A_prev, W, b, pads, stride, out_shape)`` where ``pads`` is
        ``((top, bottom), (left, right))`` and ``out_shape`` is
        ``(m, h_new, w_new, c_new)``.
    """
    A_prev = _array("A_prev", A_prev, 4, "(m, h_prev, w_prev, c_prev)")
    W = _array("W", W, 4, "(kh, kw, c_prev, c_new)")
    b = _array("b", b, 4, "(1, 1, 1, c_new)")
    shapes = (_conv_shapes if _plain(padding, stride)
              else _conv_shapes.__wrapped__)
    return (A_prev, W, b) + shapes(A_prev.shape, W.shape, b.shape, padding,
                                   stride)


# A layer calls with the same shapes, padding and stride at every step: the
# checks and arithmetic that depend on nothing else are done once (a call
# that raises is not remembered, so it raises again).
@functools.lru_cache(maxsize=256)
def _conv_shapes(A_shape, W_shape, b_shape, padding, stride):
    """The shape checks of :func:`_conv_geometry`; ``(pads, stride, out_shape)``."""
    m, h_prev, w_prev, c_prev = A_shape
    kh, kw, c_kernel, c_new = W_shape
    _check_extent(A_shape)
    if c_kernel != c_prev:
        raise ValueError(f"W must have A_prev's {c_prev} channels on axis 2, "
                         f"received W of shape {W_shape}")
    if kh < 1 or kw < 1 or c_new < 1:
        raise ValueError("W must have a non-empty kernel, received shape "
                         f"{W_shape}")
    if b_shape != (1, 1, 1, c_new):
        raise ValueError(f"b must have shape {(1, 1, 1, c_new)}, received "
                         f"{b_shape}")
    pad_h, pad_w = _padding(padding)
    sh, sw = _int_pair("stride", stride, 1)
    pads = (padding_amounts(h_prev, kh, sh, pad_h),
            padding_amounts(w_prev, kw, sw, pad_w))
    padded = (h_prev + sum(pads[0]), w_prev + sum(pads[1]))
    if kh > padded[0] or kw > padded[1]:
        raise ValueError(f"W's kernel {(kh, kw)} is larger than the padded "
                         f"input {padded}")
    out_shape = (m, output_size(h_prev, kh, sh, pad_h),
                 output_size(w_prev, kw, sw, pad_w), c_new)
    return pads, (sh, sw), out_shape


def _pool_geometry(A_prev, kernel_shape, stride, mode):
    """Check the pooling arguments once; return the normalised values.

    Returns
    -------
    tuple
        ``(A_prev, (kh, kw), (sh, sw), mode, out_shape)``.
    """
    A_prev = _array("A_prev", A_prev, 4, "(m, h_prev, w_prev, c)")
    shapes = (_pool_shapes if _plain(kernel_shape, stride, mode)
              else _pool_shapes.__wrapped__)
    return (A_prev,) + shapes(A_prev.shape, kernel_shape, stride, mode)


@functools.lru_cache(maxsize=256)
def _pool_shapes(A_shape, kernel_shape, stride, mode):
    """The other checks of :func:`_pool_geometry`; ``(kernel, stride, mode, out_shape)``."""
    kernel = _int_pair("kernel_shape", kernel_shape, 1)
    strides = _int_pair("stride", stride, 1)
    mode = _choice("mode", mode, MODES)
    m, h_prev, w_prev, c = A_shape
    _check_extent(A_shape)
    if kernel[0] > h_prev or kernel[1] > w_prev:
        raise ValueError(f"kernel_shape {kernel} is larger than the input "
                         f"{(h_prev, w_prev)}")
    out_shape = (m, output_size(h_prev, kernel[0], strides[0], "valid"),
                 output_size(w_prev, kernel[1], strides[1], "valid"), c)
    return kernel, strides, mode, out_shape


def _check_workspace(workspace):
    """Raise unless workspace is None or a dict."""
    if workspace is not None and not isinstance(workspace, dict):
        raise TypeError("workspace must be a dict or None, received "
                        f"{type(workspace).__name__}")


def _dtypes(*arrays):
    """Return the result dtype and the dtype to sum in.

    The result is ``np.result_type`` of the arrays, or float64 when they are
    all integers or booleans (whose sums would overflow or be truncated);
    sums are taken in at least float32, since float16 loses every addend
    below a thousandth of the running total.
    """
    dtype = np.result_type(*arrays)
    if dtype.kind != "f":
        dtype = np.dtype(np.float64)
    return dtype, np.promote_types(dtype, np.float32)


# ================================================================ speed-only machinery
# Everything below exists only to make the four operations fast enough to
# train with; what it computes is what the task files compute tap by tap.
#
# Nothing loops over examples or output positions in Python; the only inner
# loops run over kernel rows and taps. A convolution is one matrix product:
# each row of the input matrix holds what a band of adjacent output positions
# reads (in NHWC, kh contiguous runs of input, so the matrix is a strided view
# and one copy) and the kernel is spread over the band's outputs, the bias
# riding along as a column of ones. A band of one position is the classic
# window matrix (im2col), used with several channels; single-channel inputs,
# whose windows would make too thin a product, use bands of about four. The
# spread kernel holds zeros, which would turn a NaN or inf input into NaN
# outputs outside its windows, so non-finite inputs take the window matrix.
# The backward pass multiplies by the same matrix for dW and db, gathered
# again chunk by chunk (or, for a small batch, reused from the forward pass
# when the caller hands both calls one ``workspace`` dict), and forms dA_prev
# band by band: one product, then kh strided additions per group of
# non-overlapping bands (a band of one for a non-finite dZ). Every pass goes
# through chunks of examples whose buffers stay in cache (_CHUNK_ELEMENTS).
# Max pooling over windows that tile the input goes through blocks of examples
# that fit the cache, each copied tap by tap so that its passes run on
# contiguous arrays; the forward pass notes each window's winners, from which
# the backward pass routes the gradient.
def _all_finite(array):
    """Tell whether array holds no NaN or inf, without a temporary copy.

    A sum is non-finite whenever an entry is; it may also overflow with
    finite entries near its dtype's limit, a false alarm that costs only
    speed (the caller then takes the general path).
    """
    return array.dtype.kind != "f" or math.isfinite(array.sum())


def _chunk_size(elements_per_example, elements=None):
    """Examples per chunk whose buffers hold at most elements (at least one).

    ``elements`` defaults to ``_CHUNK_ELEMENTS``, read at each call.
    """
    budget = _CHUNK_ELEMENTS if elements is None else elements
    return max(1, budget // max(1, elements_per_example))


def _matrix_elements(W_shape, stride, out_hw):
    """Elements per example of a convolution's input matrix.

    See :func:`_input_matrices`, whose form :func:`_forward_band` chooses
    (here as for finite input).
    """
    kh, kw, c_prev = W_shape[:3]
    band = _forward_band(W_shape, stride, out_hw)
    if band:
        span = (band - 1) * stride[1] + kw
        rows, columns = out_hw[1] // band, kh * span * c_prev + 1
    else:
        rows, columns = out_hw[1], kh * kw + 1
    return out_hw[0] * rows * columns


def _gradient_elements(W_shape, out_hw, padded_hw):
    """Elements per example of the buffers that form dA_prev.

    The gradients of every window's inputs, at most ``kh * kw * c_prev``
    numbers per output position (see :func:`_add_bands`), and the padded
    gradient they are added into.
    """
    kh, kw, c_prev = W_shape[:3]
    windows = out_hw[0] * out_hw[1] * kh * kw
    return (windows + padded_hw[0] * padded_hw[1]) * c_prev


def _chunks(m, size):
    """Yield slices covering m examples, as few as of at most size each.

    Their sizes differ by one at most: a short last chunk would make
    products thinner for no gain.
    """
    count = -(-m // size)
    for k in range(count):
        yield slice(k * m // count, (k + 1) * m // count)


def _scratch(workspace, name, shape, dtype, fill=None):
    """Return an uninitialised array, reusing the workspace's one when it fits.

    Without a workspace this is ``np.empty``. With one, the array kept under
    ``name`` is returned when its shape and dtype match, else a new one is
    kept there: a training loop's steps then write into the same memory
    instead of allocating (and page-faulting) megabytes per call. With
    ``fill``, a new array holds that value everywhere, and a kept one what
    its users left: they write only where the value may change (inside a
    border of zeros).
    """
    if workspace is None:
        return np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)
    array = workspace.get(name)
    if array is None or array.shape != tuple(shape) or array.dtype != dtype:
        array = workspace[name] = _scratch(None, name, shape, dtype, fill)
    return array


def _kept(workspace, name, A_prev, key):
    """Return what the forward pass kept under name for this A_prev, or None.

    The forward pass records ``(A_prev, key, value)``; the value is only
    valid for the very same input array and the same geometry ``key``.
    """
    record = None if workspace is None else workspace.get(name)
    if record is None or record[0] is not A_prev or record[1] != key:
        return None
    return record[2]


def _windows_key(W, pads, stride, dtype, band):
    """What an input matrix (windows or bands) depends on besides the input."""
    kh, kw, c_prev = W.shape[:3]
    return (kh, kw, c_prev), pads, stride, np.dtype(dtype), band


def _strided(A, offset, shape, strides):
    """View C-contiguous A from offset, with the given shape and strides.

    What ``np.lib.stride_tricks.as_strided`` does, without its per-call
    overhead, which shows in the inner loops here. ``offset`` counts bytes
    from A's first element. The view is writeable when A is.
    """
    return np.ndarray(shape, A.dtype, A, offset=offset, strides=strides)


def _copy_runs(target, source):
    """``target[...] = source``, each run along the last axis as one item.

    NumPy copies a strided array number by number, and with runs of a few
    numbers the loop's cost per run dominates; seen as one item of raw
    bytes (a void dtype the size of the run), each run is one copy. Falls
    back to a plain copy unless both last axes are contiguous.
    """
    contiguous = (target.strides[-1] == target.itemsize
                  and source.strides[-1] == source.itemsize)
    if not contiguous or target.dtype != source.dtype \
            or target.shape != source.shape or not source.shape[-1]:
        target[...] = source
        return
    run = _run_dtype(source.shape[-1] * source.itemsize)
    target.view(run)[..., 0] = source.view(run)[..., 0]


@functools.lru_cache(maxsize=64)
def _run_dtype(size):
    """The void dtype of size bytes, built once per size.

    Building it takes about as long as copying a small batch's runs.
    """
    return np.dtype((np.void, size))


def _tap(A, i, j, stride, out_hw):
    """Return the strided view of A seen by kernel tap (i, j).

    Entry ``[n, y, x, :]`` of the view is ``A[n, y * sh + i, x * sw + j, :]``
    for every output position ``(y, x)``: shape ``(m, h_new, w_new, c)``.
    """
    (sh, sw), (h_new, w_new) = stride, out_hw
    return A[:, i:i + sh * (h_new - 1) + 1:sh, j:j + sw * (w_new - 1) + 1:sw]


def _window_matrix(A, kernel, stride, out_hw, workspace=None):
    """Gather the windows of a single-channel input, tap by tap (im2col).

    Parameters
    ----------
    A : C-contiguous ndarray of shape (m, h_pad, w_pad, 1)
    workspace : dict or None
        Where the matrix's buffer is kept and reused (see ``_scratch``).

    Returns
    -------
    ndarray of shape (m * h_new * w_new, kh * kw + 1)
        Row order follows (example, y, x); column order follows (i, j), the
        C order of a kernel ``W[i, j, 0]``; the last column holds ones. The
        matrix is a transposed view of a tap-major buffer, so that each tap
        is copied as one long contiguous block. (Input with several
        channels goes in bands instead: :func:`_input_matrices`.)
    """
    kh, kw = kernel
    taps = kh * kw
    by_tap = _scratch(workspace, "windows", (taps + 1, A.shape[0]) +
                      tuple(out_hw), A.dtype)
    for i in range(kh):
        for j in range(kw):
            by_tap[i * kw + j] = _tap(A, i, j, stride, out_hw)[..., 0]
    by_tap[taps] = 1
    return by_tap.reshape(taps + 1, -1).T


def _add_taps(dA, dZ_matrix, kernel_matrix, kernel, stride, out_hw):
    """Add each window's gradient back onto a single-channel dA, tap by tap.

    Parameters
    ----------
    dA : ndarray of shape (m, h_pad, w_pad, 1), updated
    dZ_matrix : ndarray of shape (m * h_new * w_new, c_new)
    kernel_matrix : ndarray of shape (kh * kw, c_new)
        The kernel W reshaped.

    The window gradients are formed tap-major, so each tap is one addition
    of long contiguous rows; overlapping windows land in different
    additions and accumulate (no ``np.add.at`` needed).
    """
    (kh, kw), (h_new, w_new) = kernel, out_hw
    by_tap = (kernel_matrix @ dZ_matrix.T).reshape(kh, kw, dA.shape[0],
                                                   h_new, w_new)
    for i in range(kh):
        for j in range(kw):
            _tap(dA, i, j, stride, out_hw)[..., 0] += by_tap[i, j]


def _input_gradient(dZ, shape, W, pads, stride, finite, workspace=None):
    """Gradient of a convolution with respect to its input, a chunk at a time.

    For a kernel that :func:`_correlates`, as a forward correlation of dZ
    (:func:`_input_gradient_by_correlation`); else as the product of dZ by
    the spread kernel, added back band by band (:func:`_add_bands`).

    Parameters
    ----------
    dZ : ndarray of shape (m, h_new, w_new, c_new)
    shape : tuple of int
        ``(m, h_prev, w_prev, c_prev)``, the input's shape.
    W : ndarray of shape (kh, kw, c_prev, c_new)
        In the dtype to sum in, which the result has.
    pads, stride : pairs
        As :func:`_conv_geometry` returns them.
    finite : bool
        Whether dZ holds no NaN or inf: only then may several channels go
        in bands of several columns, whose spread kernel holds zeros.
    workspace : dict or None
        Keeps the padded gradient's buffer (see ``_scratch``).

    Returns
    -------
    ndarray of shape ``shape``
    """
    if _correlates(W.shape, stride, pads) and _all_finite(W):
        return _input_gradient_by_correlation(dZ, W, pads)
    m, h_prev, w_prev, c_prev = shape
    kh, kw, _, c_new = W.shape
    out_hw = dZ.shape[1:3]
    (top, bottom), (left, right) = pads
    padded_hw = (h_prev + top + bottom, w_prev + left + right)
    no_padding = padded_hw == (h_prev, w_prev)
    band = _backward_band(W.shape, stride, out_hw) if finite else 1
    dA_prev = np.empty(shape, W.dtype)
    chunk = _chunk_size(_gradient_elements(W.shape, out_hw, padded_hw),
                        2 * _CHUNK_ELEMENTS)
    for rows in _chunks(m, chunk):
        dZ_rows = np.ascontiguousarray(dZ[rows], W.dtype)
        if no_padding:
            dA = dA_prev[rows]
            dA[...] = 0
        else:
            dA = _scratch(workspace, "dA_padded", (min(chunk, m),) +
                          padded_hw + (c_prev,), W.dtype)[:len(dZ_rows)]
            dA.fill(0)
        if c_prev == 1:
            _add_taps(dA, dZ_rows.reshape(-1, c_new), W.reshape(-1, c_new),
                      (kh, kw), stride, out_hw)
        else:
            _add_bands(dA, dZ_rows, W, stride, band)
        if not no_padding:
            dA_prev[rows] = dA[:, top:top + h_prev, left:left + w_prev]
    return dA_prev


def _correlates(W_shape, stride, pads):
    """Tell whether dA_prev goes as a forward correlation of dZ (see below).

    Only at stride 1 with as much padding on both sides, less than the
    kernel (so that dZ padded alike gives an output of the input's size),
    and for a kernel of at most 3 x 3 whose input has at least 32 channels
    and at most twice as many kernels: there the forward form's one product
    per input position, c_prev wide, costs less than the product by the
    spread kernel and its strided additions of c_prev-number runs. At one
    BLAS thread, dA_prev of a 3 x 3 kernel on 8 to 28 square maps took 0.38 to 0.93 of the time of
    :func:`_add_bands` from 32 channels in up to twice as many out
    (``mnist-cnn``'s second convolution, 32 images: 3.82 ms against 4.23);
    with 16 channels in it ranged from 0.58 to 3.1 times, with 6 it always
    lost, and with a 5 x 5 kernel it went both ways (0.57 to 6.9 times;
    scratch timings on an AMD EPYC).
    """
    kh, kw, c_prev, c_new = W_shape
    (top, bottom), (left, right) = pads
    return (tuple(stride) == (1, 1) and top == bottom < kh and left == right < kw
            and kh * kw <= 9 and c_prev >= 32 and c_new <= 2 * c_prev)


def _input_gradient_by_correlation(dZ, W, pads):
    """dA_prev as the forward correlation of dZ with W turned half a turn.

    Entry ``(r, c)`` of dA_prev sums ``dZ[r + top - i, c + left - j] @
    W[i, j].T`` over the kernel's taps: a correlation of dZ, padded by
    ``kh - 1 - top`` rows and ``kw - 1 - left`` columns of zeros on each
    side, with the kernel flipped in both directions and its two channel
    axes swapped. :func:`conv_forward` computes it (with a bias of zeros)
    in chunks that stay in the cache. The same products as the spread
    kernel's, plus the zeros of the padding, which add nothing while W is
    finite (the caller checks).
    """
    kh, kw, c_prev, _ = W.shape
    (top, _), (left, _) = pads
    turned = np.ascontiguousarray(W[::-1, ::-1].transpose(0, 1, 3, 2))
    zeros = np.zeros((1, 1, 1, c_prev), W.dtype)
    return conv_forward(np.asarray(dZ, W.dtype), turned, zeros, _unchanged,
                        padding=(kh - 1 - top, kw - 1 - left))


def _unchanged(Z):
    """The identity, as the activation of a correlation that is not a layer's."""
    return Z


def _largest_divisor(n, limit):
    """Return the largest divisor of n that is at most limit (at least 1)."""
    for d in range(min(n, limit), 1, -1):
        if n % d == 0:
            return d
    return 1


def _forward_band(W_shape, stride, out_hw):
    """Output columns per band for the forward product and dW; 0 for taps.

    A band of output columns reads ``span = (band - 1) * sw + kw`` input
    columns per kernel row (see :func:`_input_matrices`): kh runs of
    ``span * c_prev`` numbers, times a spread kernel that holds zeros
    between the band's windows. Short runs make the copy of the windows
    cost more than its product; wide bands multiply more zeros. At one BLAS
    thread, windows whose rows hold at most 9 numbers (``kw * c_prev``: one
    channel, or three channels of a 3x3 kernel) were fastest in bands of
    about four columns, up to 32 numbers in bands of two (LeNet-5's second
    convolution, five columns of six channels, 8 % faster; a 3x3 kernel on
    three channels, cifar-cnn's first, 14 %), longer rows in a band of one
    (plain windows, im2col). A kernel at most 3 wide on one channel goes in
    bands of two: its band of four multiplies twice the numbers it reads,
    which cost more than the shorter gather saves once there are more than a
    few kernels (``mnist-cnn``'s first convolution, 32 kernels, 32 images:
    1.00 ms forward and backward against 1.35 in bands of four; the tap-major
    windows took 0.90, bands of two were the fastest for 8 kernels; scratch
    timings on an AMD EPYC). A single channel without a band that divides
    w_new takes the tap-major :func:`_window_matrix`; several channels, a
    band of one.
    """
    kw, c_prev = W_shape[1], W_shape[2]
    row = kw * c_prev
    if c_prev == 1 and kw <= 3:
        preferred = (2, 3)
    elif c_prev == 1 or row <= 9:
        preferred = (4, 5, 3, 6, 7, 8)
    elif row <= 32:
        preferred = (2, 3)
    else:
        return 1
    for band in preferred:
        if out_hw[1] % band == 0 and out_hw[1] > band:
            return band
    return 0 if c_prev == 1 else 1


def _backward_band(W_shape, stride, out_hw):
    """Output columns per band for dA_prev (see :func:`_add_bands`).

    The widest band that divides w_new and reads at most ``2 * kw - 1``
    input columns: wider bands multiply by more zeros, narrower ones make
    more, shorter additions.
    """
    kw, sw = W_shape[1], stride[1]
    return _largest_divisor(out_hw[1], (kw - 1) // sw + 1)


def _input_matrices(A_prev, chunks, longest, pads, dtype, kernel, stride, out_hw, band,
                    buffers):
    """Yield the input matrix of each chunk of examples: bands, or taps if band is 0.

    Parameters
    ----------
    A_prev : ndarray of shape (m, h_prev, w_prev, c)
    chunks : sequence of slice
        Consecutive examples, at most ``longest`` each.
    pads : pair of pairs of int
        Zeros around h and w, ``((top, bottom), (left, right))``.
    dtype : numpy dtype
        Of the matrices.
    kernel, stride, out_hw : pairs of int
        ``(kh, kw)``, ``(sh, sw)`` and ``(h_new, w_new)``.
    band : int
        Output columns per band; divides w_new. A band of one is the
        classic window matrix (im2col); 0 gathers a single channel tap by
        tap (:func:`_window_matrix`).
    buffers : dict
        Holds the padded examples and the matrix (see ``_scratch``), made for
        ``longest`` examples: the padding's border of zeros and the matrix's
        column of ones are written once for all the chunks, each of which
        writes only its own numbers. A large map goes a few examples per
        chunk, where new buffers and views for each would cost as much as its
        copies.

    Yields
    ------
    ndarray of shape (count * h_new * (w_new / band), kh * span * c + 1)
        For a chunk of count examples (valid until the next one is asked
        for). Row ``(n, y, k)`` holds, for every kernel row i, the ``span =
        (band - 1) * sw + kw`` input columns that output columns ``k * band
        ... k * band + band - 1`` of output row y read: ``A[n, y * sh + i, k
        * band * sw + t, channel]`` (A padded) in column ``(i * span + t) *
        c + channel``. The last column holds ones. In NHWC those are kh
        contiguous runs of span * c numbers, so the matrix is a strided view
        and one copy. Times :func:`_kernel_matrix` it gives the output,
        ``band * c_new`` numbers per row.
    """
    (kh, kw), (sh, sw), (h_new, w_new) = kernel, stride, out_hw
    h, w, c = A_prev.shape[1:]
    (top, bottom), (left, right) = pads
    if any(pads[0]) or any(pads[1]):
        source = _scratch(buffers, "padded", (longest, h + top + bottom, w + left + right, c),
                          dtype, fill=0)
        inside = source[:, top:top + h, left:left + w]
    else:
        source, inside = np.ascontiguousarray(A_prev, dtype), None
    if band:
        span = (band - 1) * sw + kw
        s_n, s_h, s_w, s_c = source.strides
        bands = _strided(source, 0, (len(source), h_new, w_new // band, kh, span * c),
                         (s_n, sh * s_h, band * sw * s_w, s_h, s_c))
        per_example = h_new * (w_new // band)
        matrix = _scratch(buffers, "windows", (longest * per_example, kh * span * c + 1),
                          dtype)
        matrix[:, -1] = 1
        windows = matrix[:, :-1].reshape((longest,) + bands.shape[1:])
    for rows in chunks:
        count = rows.stop - rows.start
        if inside is not None:
            inside[:count] = A_prev[rows]
            rows = slice(0, count)   # the chunk, padded, starts the buffer
        if not band:
            yield _window_matrix(source[rows], kernel, stride, out_hw, buffers)
            continue
        _copy_runs(windows[:count], bands[rows])
        yield matrix[:count * per_example]


def _band_spread(W, band, sw, out=None):
    """Spread W over a band of output columns.

    Parameters
    ----------
    W : ndarray of shape (kh, kw, c_prev, c_new)
    band : int
        Output columns per band, at least one.
    sw : int
        The stride along w.
    out : ndarray of the result's shape, optional
        Written instead of a new array; it must hold zeros off the band's
        kernels.

    Returns
    -------
    ndarray of shape (kh * span * c_prev, band * c_new)
        Entry ``[(i * span + t) * c_prev + channel, x * c_new + k]`` is
        ``W[i, t - x * sw, channel, k]`` where ``0 <= t - x * sw < kw`` and
        0 elsewhere. A band of one is W reshaped (without a copy when W is
        C-contiguous and out is not given).
    """
    kh, kw, c_prev, c_new = W.shape
    if band == 1 and out is None:
        return np.ascontiguousarray(W).reshape(-1, c_new)
    span = (band - 1) * sw + kw
    if out is None:
        out = np.zeros((kh * span * c_prev, band * c_new), W.dtype)
    spread = out.reshape(kh, span, c_prev, band, c_new)
    for x in range(band):
        spread[:, x * sw:x * sw + kw, :, x] = W
    return out


def _band_gradients(product, W_shape, band, sw):
    """Fold the gradient of the spread kernel back into dW and db.

    Parameters
    ----------
    product : ndarray of shape (kh * span * c_prev + 1, band * c_new)
        The band matrix transposed times dZ (``band * c_new`` per row).

    Returns
    -------
    dW : ndarray of shape W_shape
    db : ndarray of shape (1, 1, 1, c_new)
    """
    kh, kw, c_prev, c_new = W_shape
    span = (band - 1) * sw + kw
    spread = product[:-1].reshape(kh, span, c_prev, band, c_new)
    dW = spread[:, :kw, :, 0].copy()
    for x in range(1, band):
        dW += spread[:, x * sw:x * sw + kw, :, x]
    db = product[-1].reshape(band, c_new).sum(axis=0)
    return dW, db.reshape(1, 1, 1, c_new)


def _kernel_matrix(W, b, band, sw, dtype):
    """The kernel and bias as one matrix, to multiply ``_input_matrices``'s by.

    Returns
    -------
    ndarray of shape (kh * span * c_prev + 1, band * c_new) and dtype dtype
        :func:`_band_spread` of W (taps, band 0, take W reshaped, as a band
        of one does), then b once per column of the band.
    """
    band = band or 1
    kh, kw, c_prev, c_new = W.shape
    span = (band - 1) * sw + kw
    # Written in place: no spread, bias or concatenation as temporaries.
    matrix = (np.zeros if band > 1 else np.empty)(
        (kh * span * c_prev + 1, band * c_new), dtype)
    _band_spread(W, band, sw, out=matrix[:-1])
    matrix[-1].reshape(band, c_new)[...] = b.reshape(1, c_new)
    return matrix


def _kernel_gradients(product, W_shape, band, sw):
    """dW and db from an input matrix (``_input_matrices``) transposed times dZ, shaped to match."""
    if band:
        return _band_gradients(product, W_shape, band, sw)
    return (product[:-1].reshape(W_shape),
            product[-1:].reshape(1, 1, 1, W_shape[3]))


def _add_bands(dA, dZ, W, stride, band):
    """Add the input gradient of dZ onto dA, a band of columns at a time.

    Parameters
    ----------
    dA : C-contiguous ndarray of shape (m, h_pad, w_pad, c_prev), updated
    dZ : C-contiguous ndarray of shape (m, h_new, w_new, c_new)
    W : ndarray of shape (kh, kw, c_prev, c_new)
    stride : pair of int
    band : int
        Output columns per band; divides w_new.

    Each band of dZ times the spread kernel (``_band_spread``) gives the
    gradient of the ``span * c_prev`` contiguous input numbers it reads in
    each of kh input rows. Bands whose input columns are ``group`` bands
    apart never overlap, so each group is one strided addition per kernel
    row; overlapping bands land in different additions and accumulate (no
    ``np.add.at`` needed). A band of one adds window by window; a band of
    w_new adds whole rows.
    """
    kh, kw, c_prev, c_new = W.shape
    sh, sw = stride
    m, h_new, w_new = dZ.shape[:3]
    span = (band - 1) * sw + kw
    blocks = w_new // band
    by_band = dZ.reshape(-1, band * c_new) @ _band_spread(W, band, sw).T
    by_band = by_band.reshape(m, h_new, blocks, kh, span * c_prev)
    group = -(-span // (band * sw))
    s_n, s_h, s_w, s_c = dA.strides
    for i in range(kh):
        for first in range(min(group, blocks)):
            count = len(range(first, blocks, group))
            target = _strided(dA, i * s_h + first * band * sw * s_w,
                              (m, h_new, count, span * c_prev),
                              (s_n, sh * s_h, group * band * sw * s_w, s_c))
            target += by_band[:, :, first::group, i]


def _pool(A, kernel, stride, out_hw, mode, dtype, winners=None,
          workspace=None):
    """Pool A (no checks).

    Parameters
    ----------
    A : ndarray of shape (m, h_prev, w_prev, c)
    dtype : numpy dtype
        Of the result, in which the windows are combined.
    winners : ndarray of shape (m, h_new, w_new, c), optional
        For max pooling over windows that tile A: filled as
        :func:`_max_pool_tiles` describes, with ``workspace`` holding its
        buffers.

    Returns
    -------
    ndarray of shape (m, h_new, w_new, c)
    """
    if winners is not None:
        return _max_pool_tiles(A, kernel, out_hw, dtype, winners, workspace)
    (kh, kw), (h_new, w_new) = kernel, out_hw
    m, c = A.shape[0], A.shape[3]
    combine = np.maximum if mode == "max" else np.add
    if tuple(stride) == (kh, kw):
        # Windows tile the input: reduce whole kernel rows, then the kw
        # blocks of c channels, each step on long contiguous runs. The first
        # step of each casts to dtype as it reads (no copy of the input).
        tiles = A[:, :h_new * kh, :w_new * kw]
        tiles = tiles.reshape(m, h_new, kh, w_new, kw * c)
        rows = tiles[:, :, 0]
        if kh > 1:
            rows = combine(rows, tiles[:, :, 1], dtype=dtype)
            for i in range(2, kh):
                combine(rows, tiles[:, :, i], out=rows)
        if kw > 1:
            out = combine(rows[..., :c], rows[..., c:2 * c], dtype=dtype)
            for j in range(2, kw):
                combine(out, rows[..., j * c:(j + 1) * c], out=out)
        else:
            out = rows[..., :c].astype(dtype)
    else:
        out = _tap(A, 0, 0, stride, out_hw).astype(dtype)
        for i in range(kh):
            for j in range(kw):
                if i or j:
                    combine(out, _tap(A, i, j, stride, out_hw), out=out)
    if mode == "avg":
        out /= kh * kw
    return out


def _route(gradient, mask, out, finite):
    """``out = gradient`` where mask holds, exactly 0 elsewhere.

    ``gradient * mask`` is the fast way, but it turns an inf or NaN gradient
    into NaN in the entries that are not their window's maximum; unless the
    caller knows the gradient is finite, the masked copy is used instead.
    """
    if finite:
        np.multiply(gradient, mask, out=out)
    else:
        out[...] = 0
        np.copyto(out, gradient, where=mask)


def _notes_winners(kernel, stride):
    """Tell whether max pooling notes its windows' winners (a byte each).

    Windows that tile the input (stride = kernel) with at most
    ``_WINNER_BITS`` entries do (see :func:`_max_pool_tiles`).
    """
    return (tuple(stride) == tuple(kernel)
            and kernel[0] * kernel[1] <= _WINNER_BITS)


def _pool_blocks(A_shape, kernel, out_hw):
    """The blocks of examples max pooling over tiling windows goes through.

    Returns
    -------
    blocks : tuple of slice
        Consecutive examples whose windows hold at most about
        ``_POOL_BLOCK_ELEMENTS`` input numbers.
    size : int
        The largest block's length (0 for no example), for the buffers.
    """
    per_example = out_hw[0] * out_hw[1] * kernel[0] * kernel[1] * A_shape[3]
    return _blocks_of(A_shape[0], _chunk_size(per_example, _POOL_BLOCK_ELEMENTS))


@functools.lru_cache(maxsize=64)
def _blocks_of(m, size):
    """``_chunks(m, size)`` as a tuple, and its longest chunk's length.

    Built once per pair: a training step pools batches of one size over and
    over, and building the slices took as long as pooling a small batch.
    """
    blocks = tuple(_chunks(m, size))
    return blocks, max((rows.stop - rows.start for rows in blocks), default=0)


def _max_pool_tiles(A, kernel, out_hw, dtype, winners, workspace=None):
    """Max-pool windows that tile A, noting which entries equal each maximum.

    Parameters
    ----------
    A : ndarray of shape (m, h_prev, w_prev, c)
    kernel : pair of int
        ``(kh, kw)``, also the stride; at most 8 entries.
    out_hw : pair of int
        ``(h_new, w_new)``.
    dtype : numpy dtype
        Of the maxima, in which the entries are compared with them.
    winners : uint8 ndarray of shape (m, h_new, w_new, c), written
        Bit ``i * kw + j`` is set where entry (i, j) of the window equals its
        maximum. A window holding a NaN has a NaN maximum, which no entry
        equals: none of its bits is set.
    workspace : dict or None
        Where the buffers of a block are kept and reused (see ``_scratch``).

    Returns
    -------
    ndarray of shape (m, h_new, w_new, c)
        The maxima, combined in :func:`_pool`'s order (a zero's sign, which
        depends on it, included).

    The batch goes through in blocks of examples that fit the cache (see
    ``_POOL_BLOCK_ELEMENTS``). A block is first copied tap by tap: entry
    (i, j) of every window, runs of c numbers, into one contiguous array
    per entry. The maxima and the kh * kw comparisons then run on
    contiguous arrays, which NumPy processes much faster than the strided
    views of the taps, and the bits are gathered from the last entry to the
    first, doubling as they go.
    """
    (kh, kw), (h_new, w_new) = kernel, out_hw
    m, c = A.shape[0], A.shape[3]
    out = np.empty((m, h_new, w_new, c), dtype)
    blocks, size = _pool_blocks(A.shape, kernel, out_hw)
    by_tap = _scratch(workspace, "pool_taps", (kh, kw, size, h_new, w_new, c),
                      dtype)
    if kh > 1:
        by_column = _scratch(workspace, "pool_columns",
                             (kw, size, h_new, w_new, c), dtype)
    equal = _scratch(workspace, "pool_equal", (size, h_new, w_new, c), bool)
    for rows in blocks:
        count = rows.stop - rows.start
        windows = A[rows, :h_new * kh, :w_new * kw].reshape(
            count, h_new, kh, w_new, kw, c)
        taps = by_tap[:, :, :count]
        _copy_runs(taps, windows.transpose(2, 4, 0, 1, 3, 5))
        columns = taps[0]
        if kh > 1:
            columns = by_column[:, :count]
            np.maximum(taps[0], taps[1], out=columns)
            for i in range(2, kh):
                np.maximum(columns, taps[i], out=columns)
        maxima = out[rows]
        if kw > 1:
            np.maximum(columns[0], columns[1], out=maxima)
            for j in range(2, kw):
                np.maximum(maxima, columns[j], out=maxima)
        else:
            np.copyto(maxima, columns[0])
        won, is_max = winners[rows], equal[:count]
        for tap in reversed(range(kh * kw)):
            np.equal(taps[divmod(tap, kw)], maxima, out=is_max)
            if tap == kh * kw - 1:
                np.copyto(won, is_max)
            else:
                np.add(won, won, out=won)
                np.add(won, is_max.view(np.uint8), out=won)
    return out


def _max_pool_backward_winners(gradient, winners, A_shape, kernel, dtype,
                               first, finite, workspace=None):
    """Max-pooling gradient of windows that tile the input, from their winners.

    Parameters
    ----------
    gradient : ndarray of shape (m, h_new, w_new, c)
        dA, in the dtype it is multiplied in (see ``_TAP_CHANNELS``).
    winners : uint8 ndarray of shape (m, h_new, w_new, c)
        Which entries of each window equal its maximum, as
        :func:`_max_pool_tiles` notes them.
    A_shape : tuple of int
        ``(m, h_prev, w_prev, c)``, the shape of the forward pass's input.
    kernel : pair of int
        ``(kh, kw)``, also the stride.
    dtype, first, finite
        The gradient's dtype, the tie rule and whether dA is finite, as
        :func:`_max_pool_backward_tiled` takes them.
    workspace : dict or None
        Where the buffers of a block are kept and reused (see ``_scratch``).

    Returns
    -------
    ndarray of shape A_shape
        Rows and columns that no window covers are zero.

    Block by block (as in :func:`_max_pool_tiles`), each tap takes the
    gradient of the windows whose bit for it is set: a comparison of small
    integers, then one pass that writes the tap's gradients into a
    contiguous array of the block's outputs. One copy then lays the taps
    out as the input's windows, each run of c numbers as one item, so each
    entry of dA_prev is written once and never in runs of c numbers apart
    (the mirror of the forward pass's copy). For ``first`` only the lowest
    bit set counts, ``winners & -winners``: the first maximum in row-major
    order.
    """
    kh, kw = kernel
    h_new, w_new = winners.shape[1:3]
    c = A_shape[3]
    height, width = h_new * kh, w_new * kw
    dA_prev = np.empty(A_shape, dtype)
    dA_prev[:, height:] = 0
    dA_prev[:, :height, width:] = 0
    blocks, size = _pool_blocks(A_shape, kernel, (h_new, w_new))
    key = _scratch(workspace, "pool_key", (size, h_new, w_new, c),
                   winners.dtype)
    chosen = _scratch(workspace, "pool_chosen", (size, h_new, w_new, c), bool)
    # The forward pass's buffer of taps, free again once it has pooled.
    by_tap = _scratch(workspace, "pool_taps", (kh, kw, size, h_new, w_new, c),
                      dtype)
    for rows in blocks:
        count = rows.stop - rows.start
        won, key_now, chosen_now = winners[rows], key[:count], chosen[:count]
        taps = by_tap[:, :, :count]
        if first:
            np.negative(won, out=key_now)
            np.bitwise_and(key_now, won, out=key_now)   # the lowest bit set
        for tap in range(kh * kw):
            if first:
                np.equal(key_now, 1 << tap, out=chosen_now)
            else:
                np.bitwise_and(won, 1 << tap, out=key_now)
                np.not_equal(key_now, 0, out=chosen_now)
            _route(gradient[rows], chosen_now, taps[divmod(tap, kw)], finite)
        windows = dA_prev[rows, :height, :width].reshape(
            count, h_new, kh, w_new, kw, c)
        _copy_runs(windows, taps.transpose(2, 3, 0, 4, 1, 5))
    return dA_prev


def _same_window_neighbours(mask, column, c, kw, left, out, scratch):
    """Mark entries with a True of mask elsewhere in their window's row.

    Parameters
    ----------
    mask : bool ndarray of shape (..., w_new * kw * c)
        One row of windows, laid out as in the input (column-major within
        nothing: entry ``(x, j, channel)`` at ``(x * kw + j) * c + channel``).
    column : int ndarray of shape (w_new * kw * c,)
        The window column j of each entry.
    c, kw : int
        Channels and window width.
    left : bool
        Look at the entries to the left (True) or to the right (False).
    out, scratch : bool ndarrays of mask's shape
        ``out`` receives the result; ``scratch`` is overwritten.

    Every test is a shift of the whole row by d * c numbers, kept where the
    shifted entry lies in the same window: contiguous passes only.
    """
    for d in range(1, kw):
        shift = d * c
        # The first shift writes out directly, later ones go through scratch.
        target = out if d == 1 else scratch
        if left:
            np.logical_and(mask[..., :-shift], column[shift:] >= d,
                           out=target[..., shift:])
            if d == 1:
                out[..., :shift] = False
            else:
                out[..., shift:] |= scratch[..., shift:]
        else:
            np.logical_and(mask[..., shift:], column[:-shift] < kw - d,
                           out=target[..., :-shift])
            if d == 1:
                out[..., -shift:] = False
            else:
                out[..., :-shift] |= scratch[..., :-shift]
    if kw == 1:
        out.fill(False)


def _max_pool_backward_taps(dA, A_prev, maxima, kernel, out_hw, dtype, first,
                            finite):
    """Max-pooling gradient of tiling windows, first maximum only, one tap at a time.

    Parameters are those of :func:`_max_pool_backward_tiled` (``first`` is
    True). Each tap's entries are compared with their window's maximum and
    take its gradient unless an earlier tap (row-major) has: four passes
    over arrays of the output's size per tap, each entry of dA_prev written
    once. With enough channels the taps' runs are long and this makes fewer
    passes than spreading windows over their columns.
    """
    (kh, kw), (h_new, w_new) = kernel, out_hw
    height, width = h_new * kh, w_new * kw
    covered = (height, width) == A_prev.shape[1:3]
    dA_prev = (np.empty if covered else np.zeros)(A_prev.shape, dtype)
    is_max = np.empty(maxima.shape, bool)
    claimed = np.empty(maxima.shape, bool)
    last = kh * kw - 1
    for tap in range(kh * kw):
        i, j = divmod(tap, kw)
        np.equal(A_prev[:, i:height:kh, j:width:kw], maxima, out=is_max)
        if tap:
            np.greater(is_max, claimed, out=is_max)   # is_max and not claimed
        _route(dA, is_max, dA_prev[:, i:height:kh, j:width:kw], finite)
        if tap == 0:
            claimed[...] = is_max
        elif tap < last:
            claimed |= is_max
    return dA_prev


def _max_pool_backward_tiled(dA, A_prev, maxima, kernel, out_hw, dtype,
                             first, finite):
    """Max-pooling gradient when the windows tile the input (stride = kernel).

    Parameters
    ----------
    dA : ndarray of shape (m, h_new, w_new, c)
    A_prev : ndarray of shape (m, h_prev, w_prev, c)
    maxima : ndarray of shape (m, h_new, w_new, c)
        The forward output: each window's maximum.
    kernel : pair of int
        ``(kh, kw)``, also the stride.
    out_hw : pair of int
        ``(h_new, w_new)``.
    dtype : numpy dtype
        Of the returned gradient.
    first : bool
        Route each window's gradient to its first maximum in row-major
        order (``ties="first"``) rather than to every maximum.
    finite : bool
        Whether dA holds no NaN or inf (see ``_route``).

    Returns
    -------
    ndarray of shape (m, h_prev, w_prev, c)
        Rows and columns that no window covers are zero.

    Each window's maximum and gradient are repeated over its kw columns, so
    that a whole row of windows is handled as long contiguous runs, kh
    times, instead of kh * kw short strided passes over single taps. For
    ``first``, a maximum keeps the gradient only if no maximum lies before
    it in its window: none to its left in the same row (shifted copies of
    the row, see ``_same_window_neighbours``) and none in an earlier row
    (``claimed``, spread over the window's columns the same way).
    """
    (kh, kw), (h_new, w_new) = kernel, out_hw
    m, h_prev, w_prev, c = A_prev.shape
    height, width = h_new * kh, w_new * kw
    shape = (m, h_new, width * c)
    wide_max = np.repeat(maxima, kw, axis=2).reshape(shape)
    wide_grad = np.repeat(dA.astype(dtype, copy=False), kw, axis=2)
    wide_grad = wide_grad.reshape(shape)
    covered = (height, width) == (h_prev, w_prev)
    dA_prev = (np.empty if covered else np.zeros)(A_prev.shape, dtype)
    is_max = np.empty(shape, bool)
    if first:
        column = np.arange(width * c) // c % kw
        before, after, scratch = (np.empty(shape, bool) for _ in range(3))
        claimed = np.zeros(shape, bool)
    for i in range(kh):
        np.equal(A_prev[:, i:height:kh, :width].reshape(shape), wide_max,
                 out=is_max)
        if first:
            _same_window_neighbours(is_max, column, c, kw, True, before,
                                    scratch)
            if i < kh - 1:
                # Windows with a maximum in this row, over all their columns.
                _same_window_neighbours(is_max, column, c, kw, False, after,
                                        scratch)
                after |= before
                after |= is_max
            if i:
                before |= claimed
            np.greater(is_max, before, out=is_max)   # is_max and not before
            if i < kh - 1:
                claimed |= after
        _route(wide_grad, is_max, dA_prev[:, i:height:kh, :width].reshape(shape),
               finite)
    return dA_prev
