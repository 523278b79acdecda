"""Tasks 0-3 against TensorFlow: the convolution and pooling operations, forward and backward.

:func:`bench_ops` (``convnet bench ops``) times the 0-main convolution of
the task file and of the engine, on the machine as it is and with one core
kept busy, its peak memory, and LeNet-5's layers at two batch sizes, each
against the same operation in TensorFlow measured in the same run.

``python -m convnet.apps.bench.ops [--quick]`` prints the same table as
``convnet bench ops``.
"""
import contextlib
import importlib.util
from pathlib import Path

import numpy as np

from convnet.apps.bench import timing
from convnet.nn.ops import conv_backward, conv_forward, pool_backward, pool_forward
from convnet.nn.threads import blas_threads


def _ratio_row(name, ours, ours_one_thread, theirs, target, judge="faster"):
    """Table row: times in ms, ratios ours/TF and whether the target is met.

    With ``judge="faster"`` the target is judged on the faster of NumPy's
    default BLAS threads and one BLAS thread (the trainer can choose either);
    with ``judge="both"`` on the slower, for code that must meet it however
    its caller set the threads (the task files, run as a student runs them).
    The verdict says which of the two printed ratios it judged.
    """
    ratios = {"default threads": ours / theirs, "1 thread": ours_one_thread / theirs}
    pick = min if judge == "faster" else max
    # The verdict names the ratio it judged: a row may pass on one column and not the other.
    column, ratio = pick(ratios.items(), key=lambda item: item[1])
    met = (f"yes ({column} {ratio:.2f})" if ratio <= target
           else f"no ({column} {ratio:.2f}, {ratio / target:.2f}x over)")
    return [name, f"{ours * 1e3:.2f}", f"{ours_one_thread * 1e3:.2f}", f"{theirs * 1e3:.2f}",
            f"{ours / theirs:.2f}", f"{ours_one_thread / theirs:.2f}", f"<= {target:g}", met]


def _time_ours(fn, repeats, warmup):
    """Median time of fn with NumPy's default BLAS threads, then with one thread."""
    default = timing.median_time(fn, repeats, warmup)
    with blas_threads(1):
        single = timing.median_time(fn, repeats, warmup)
    return default, single


def _relu(Z):
    """ReLU in place: the activation of the benchmarked layers."""
    return np.maximum(Z, 0, out=Z)


def _naive_conv_relu(A_prev, W, b):
    """Per-pixel loop convolution ('valid', stride 1) and ReLU: the baseline to beat.

    ``A_prev`` has shape (m, h, w, c), ``W`` (kh, kw, c, c_new) and ``b``
    (1, 1, 1, c_new); the result has shape (m, h - kh + 1, w - kw + 1, c_new).
    """
    m, h, w, _ = A_prev.shape
    kh, kw, _, c_new = W.shape
    Z = np.empty((m, h - kh + 1, w - kw + 1, c_new))
    for n in range(m):
        for y in range(h - kh + 1):
            for x in range(w - kw + 1):
                window = A_prev[n, y:y + kh, x:x + kw, :]
                Z[n, y, x] = np.tensordot(window, W, axes=3) + b[0, 0, 0]
    return np.maximum(Z, 0)


def _mnist_images(count):
    """First `count` MNIST training images as float64 (m, 28, 28, 1)."""
    try:
        from convnet.data import load_mnist
        images = load_mnist()[0]
    except (ImportError, OSError, ValueError):
        # Without the dataset, random images of the same shape time the same.
        images = np.random.default_rng(0).random((count, 28, 28), dtype=np.float32)
    return images[:count].reshape(-1, 28, 28, 1).astype(np.float64)


TASK_FOLDER = Path(__file__).resolve().parents[3] / "0x07-cnn"


def task_conv_forward(folder=TASK_FOLDER):
    """Return ``conv_forward`` of the task file ``0-conv_forward.py`` in folder.

    Returns None when the file is not there (an installed package without
    the source checkout's task folder).
    """
    path = Path(folder) / "0-conv_forward.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("task_0_conv_forward", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.conv_forward


def _bench_0_main(tf, quick, log):
    """The 0-main convolution, task file and engine: time against TF, memory.

    Timed on a quiet machine (as quiet as it is) and again while a child
    process keeps one core busy; the task file is judged on the slower of
    NumPy's default BLAS threads and one thread.
    """
    count = 5000 if quick else 50000
    X = _mnist_images(count)
    rng = np.random.RandomState(0)
    W = rng.randn(3, 3, 1, 2)
    b = rng.randn(1, 1, 1, 2)
    repeats = 1 if quick else 3
    task = task_conv_forward()
    versions = [("engine", conv_forward)] + ([("task file", task)] if task else [])
    tf_conv = tf.function(lambda x, w, bias: tf.nn.relu(tf.nn.conv2d(x, w, 1, "VALID") + bias))
    X_t, W_t, b_t = tf.constant(X), tf.constant(W), tf.constant(b)
    rows = []
    for busy in (False, True):
        label = ", one core busy" if busy else ""
        log(f"0-main{label}: {timing.load_average_text()}")
        with timing.one_core_busy() if busy else contextlib.nullcontext():
            theirs = timing.median_time(lambda: tf_conv(X_t, W_t, b_t).numpy(), repeats, 1)
            for name, function in versions:
                ours = _time_ours(lambda f=function: f(X, W, b, _relu, "valid"), repeats, 1)
                rows.append(_ratio_row(f"0-main conv {count}x28x28x1 float64, {name}{label}",
                                       *ours, theirs, 1.0,
                                       judge="both" if name == "task file" else "faster"))
        log(f"0-main{label} done: {timing.load_average_text()}")

    subset = 20 if quick else 100
    naive = timing.median_time(lambda: _naive_conv_relu(X[:subset], W, b), 1, 0) * count / subset
    with blas_threads(1):
        engine = timing.median_time(lambda: conv_forward(X, W, b, _relu, "valid"), 1, 0)
    rows.append([f"naive per-pixel loop (from {subset} images)", f"{naive * 1e3:.0f}", "", "",
                 f"engine {naive / engine:.0f}x faster", "", "", ""])

    data = X.nbytes + count * 26 * 26 * 2 * 8
    for name, function in versions:
        peak = timing.peak_added_bytes(lambda f=function: f(X, W, b, _relu, "valid"))
        rows.append([f"0-main peak added memory (MB), {name}; in + out = {data / 1e6:.0f}",
                     f"{peak / 1e6:.0f}", "", "", f"{peak / data:.2f} x (in + out)", "",
                     "<= 1.5", "yes" if peak <= 1.5 * data else "no"])
    return rows


def _tf_layer_functions(tf):
    """tf.function callables for the LeNet-5 layers, forward and backward."""
    @tf.function
    def conv(x, w, b, padding):
        return tf.nn.relu(tf.nn.conv2d(x, w, 1, padding) + b)

    @tf.function
    def conv_grad(x, w, dz, padding):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            z = tf.nn.conv2d(x, w, 1, padding)
        return tape.gradient(z, [x, w], output_gradients=dz)

    @tf.function
    def pool(x):
        return tf.nn.max_pool2d(x, 2, 2, "VALID")

    @tf.function
    def pool_grad(x, da):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.max_pool2d(x, 2, 2, "VALID")
        return tape.gradient(y, x, output_gradients=da)

    return conv, conv_grad, pool, pool_grad


def _bench_conv_layer(tf, tf_functions, name, shapes, padding, repeats):
    """Rows for one convolution layer: forward, backward (and without dA_prev)."""
    tf_conv, tf_conv_grad = tf_functions
    (input_shape, kernel_shape), rng = shapes, np.random.default_rng(0)
    A = rng.random(input_shape, dtype=np.float32)
    W = (rng.standard_normal(kernel_shape) * 0.1).astype(np.float32)
    b = np.zeros((1, 1, 1, kernel_shape[3]), np.float32)
    dZ = rng.standard_normal(conv_forward(A, W, b, _relu, padding).shape).astype(np.float32)
    A_t, W_t, b_t, dZ_t = (tf.constant(x) for x in (A, W, b[0, 0, 0], dZ))
    tf_padding = padding.upper()
    rows = [_ratio_row(f"{name} forward",
                       *_time_ours(lambda: conv_forward(A, W, b, _relu, padding), repeats, 2),
                       timing.median_time(lambda: tf_conv(A_t, W_t, b_t, tf_padding).numpy(),
                                          repeats, 2), 1.5)]
    tf_backward = timing.median_time(
        lambda: [g.numpy() for g in tf_conv_grad(A_t, W_t, dZ_t, tf_padding)], repeats, 2)
    rows.append(_ratio_row(f"{name} backward",
                           *_time_ours(lambda: conv_backward(dZ, A, W, b, padding), repeats, 2),
                           tf_backward, 2.0))
    if kernel_shape[2] == 1:
        rows.append(_ratio_row(
            f"{name} backward, need_dA_prev=False",
            *_time_ours(lambda: conv_backward(dZ, A, W, b, padding, need_dA_prev=False),
                        repeats, 2),
            tf_backward, 2.0))
    return rows


def _bench_lenet_layers(tf, batch, repeats):
    """LeNet-5's convolution and pooling layers in float32 at one batch size."""
    tf_conv, tf_conv_grad, tf_pool, tf_pool_grad = _tf_layer_functions(tf)
    rows = _bench_conv_layer(tf, (tf_conv, tf_conv_grad), f"conv 5x5 same 1->6 28x28 b{batch}",
                             ((batch, 28, 28, 1), (5, 5, 1, 6)), "same", repeats)
    rows += _bench_conv_layer(tf, (tf_conv, tf_conv_grad), f"conv 5x5 valid 6->16 14x14 b{batch}",
                              ((batch, 14, 14, 6), (5, 5, 6, 16)), "valid", repeats)
    rng = np.random.default_rng(0)
    A = rng.random((batch, 28, 28, 6), dtype=np.float32)
    dA = rng.standard_normal((batch, 14, 14, 6)).astype(np.float32)
    A_t, dA_t = tf.constant(A), tf.constant(dA)
    label = f"max pool 2x2/2 28x28x6 b{batch}"
    rows.append(_ratio_row(f"{label} forward",
                           *_time_ours(lambda: pool_forward(A, (2, 2), (2, 2)), repeats, 2),
                           timing.median_time(lambda: tf_pool(A_t).numpy(), repeats, 2), 1.5))
    rows.append(_ratio_row(f"{label} backward",
                           *_time_ours(lambda: pool_backward(dA, A, (2, 2), (2, 2)), repeats, 2),
                           timing.median_time(lambda: tf_pool_grad(A_t, dA_t).numpy(), repeats, 2),
                           2.0))
    return rows


OPS_HEADERS = ["workload", "ours (ms)", "ours, 1 BLAS thread (ms)", "TF (ms)", "ours/TF",
               "ours 1 thread/TF", "target", "met"]


def bench_ops(quick=False, log=None):
    """Time tasks 0-3 against TensorFlow; return the rows of the table (``OPS_HEADERS``).

    Workloads: the 0-main convolution (50,000 MNIST images, float64, bias and
    ReLU; 5,000 with ``quick``) by the task file ``0x07-cnn/0-conv_forward.py``
    and by the engine, on the machine as it is and with one core kept busy,
    with a naive per-pixel loop extrapolated from a subset and the peak
    memory traced by tracemalloc; LeNet-5's layers in float32 at batch 32
    and 256, forward and backward (engine). ``log`` (optional) receives a
    line with the machine's load before and after the 0-main timings.
    """
    tf = timing.setup_tensorflow()
    repeats = 5 if quick else 20
    rows = _bench_0_main(tf, quick, log or (lambda line: None))
    for batch in (32, 256):
        rows += _bench_lenet_layers(tf, batch, repeats)
    return rows


def main():
    """``python -m convnet.apps.bench.ops [--quick]``: the machine, then the table."""
    import argparse
    parser = argparse.ArgumentParser(description="Time the NumPy layer operations (tasks 0-3) "
                                                 "against TensorFlow.")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller inputs")
    quick = parser.parse_args().quick
    print(timing.machine_info(), flush=True)
    rows = bench_ops(quick=quick, log=lambda line: print(line, flush=True))
    print(timing.format_table(OPS_HEADERS, rows))


if __name__ == "__main__":
    main()
