"""Benchmarks: the NumPy engine against TensorFlow, measured in the same run.

Shared helpers (:func:`median_time`, :func:`format_table`,
:func:`setup_tensorflow`, :func:`machine_info`) serve every benchmark; each
benchmark is one ``bench_<name>(quick=False)`` function that prints a table
and returns its rows. ``convnet bench ops`` runs :func:`bench_ops`;
``convnet bench train`` runs :func:`bench_train`.
"""
import contextlib
import importlib.util
import multiprocessing
import os
import platform
import subprocess
import time
import tracemalloc
from pathlib import Path

import numpy as np

from convnet.checks import check_count
from convnet.ops import conv_backward, conv_forward, pool_backward, pool_forward
from convnet.threads import blas_threads


# ---------------------------------------------------------------- shared helpers
def median_time(fn, repeats=5, warmup=1):
    """Return the median wall time of ``fn()`` in seconds.

    ``warmup`` calls are made first and not counted (they pay for tracing,
    caches and first-touch page faults).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def format_table(headers, rows):
    """Return rows (lists of cells) as a Markdown table with aligned columns."""
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[k]) for row in cells) for k in range(len(headers))]

    def line(row):
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def setup_tensorflow():
    """Import TensorFlow quietly with the machine's default thread counts.

    Returns the ``tensorflow`` module. Raises ImportError with a clear message
    when it is not installed (``pip install -e '.[tf]'``).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ImportError("the benchmarks compare with TensorFlow, which is not installed: "
                          "pip install -e '.[tf]'") from error
    threads = os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # already initialised by an earlier call: the settings stay as they were
    return tf


def machine_info():
    """Return a one-paragraph description of the machine and library versions."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        nproc = str(os.cpu_count())
    versions = f"Python {platform.python_version()}, NumPy {np.__version__}"
    try:
        import tensorflow as tf
        versions += f", TensorFlow {tf.__version__}"
    except ImportError:
        pass
    return f"{model}, nproc {nproc}; {versions}"


def _ratio_row(name, ours, ours_one_thread, theirs, target, judge="faster"):
    """Table row: times in ms, ratios ours/TF and whether the target is met.

    With ``judge="faster"`` the target is judged on the faster of NumPy's
    default BLAS threads and one BLAS thread (the trainer can choose either);
    with ``judge="both"`` on the slower, for code that must meet it however
    its caller set the threads (the task files, run as a student runs them).
    """
    pick = min if judge == "faster" else max
    best = pick(ours, ours_one_thread) / theirs
    met = "yes" if best <= target else f"no ({best / target:.2f}x over)"
    return [name, f"{ours * 1e3:.2f}", f"{ours_one_thread * 1e3:.2f}", f"{theirs * 1e3:.2f}",
            f"{ours / theirs:.2f}", f"{ours_one_thread / theirs:.2f}", f"<= {target:g}", met]


def _time_ours(fn, repeats, warmup):
    """Median time of fn with NumPy's default BLAS threads, then with one thread."""
    default = median_time(fn, repeats, warmup)
    with blas_threads(1):
        single = median_time(fn, repeats, warmup)
    return default, single


# ---------------------------------------------------------------- ops benchmark
def _relu(Z):
    """ReLU in place: the activation of the benchmarked layers."""
    return np.maximum(Z, 0, out=Z)


def _naive_conv_relu(A_prev, W, b):
    """Per-pixel loop convolution ('valid', stride 1): the baseline to beat."""
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


TASK_FOLDER = Path(__file__).resolve().parent.parent / "0x07-cnn"


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


def _burn(stop, seconds):
    """Keep one core busy until ``stop`` is set or ``seconds`` have passed."""
    end = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < end:
        sum(range(10_000))


@contextlib.contextmanager
def one_core_busy(seconds=600):
    """Run the block while a child process keeps one core busy.

    The child stops when the block ends, and on its own after ``seconds``
    whatever happens to this process. Shared machines are often this busy;
    multi-threaded BLAS then waits for the busy core (see docs/performance.md).
    """
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    burner = context.Process(target=_burn, args=(stop, seconds), daemon=True)
    burner.start()
    try:
        yield burner.pid
    finally:
        stop.set()
        burner.join(10)
        if burner.is_alive():
            burner.terminate()
            burner.join()


def peak_added_bytes(fn):
    """Peak memory allocated while ``fn()`` runs (tracemalloc), its result included."""
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    del result
    return peak


def _load():
    """The machine's load averages over 1, 5 and 15 minutes, as text."""
    try:
        return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "load average unknown"


def _bench_0_main(tf, quick):
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
        print(f"0-main{label}: {_load()}", flush=True)
        with one_core_busy() if busy else contextlib.nullcontext():
            theirs = median_time(lambda: tf_conv(X_t, W_t, b_t).numpy(), repeats, 1)
            for name, function in versions:
                ours = _time_ours(lambda f=function: f(X, W, b, _relu, "valid"), repeats, 1)
                rows.append(_ratio_row(f"0-main conv {count}x28x28x1 float64, {name}{label}",
                                       *ours, theirs, 1.0,
                                       judge="both" if name == "task file" else "faster"))
        print(f"0-main{label} done: {_load()}", flush=True)

    subset = 20 if quick else 100
    naive = median_time(lambda: _naive_conv_relu(X[:subset], W, b), 1, 0) * count / subset
    with blas_threads(1):
        engine = median_time(lambda: conv_forward(X, W, b, _relu, "valid"), 1, 0)
    rows.append([f"naive per-pixel loop (from {subset} images)", f"{naive * 1e3:.0f}", "", "",
                 f"engine {naive / engine:.0f}x faster", "", "", ""])

    data = X.nbytes + count * 26 * 26 * 2 * 8
    for name, function in versions:
        peak = peak_added_bytes(lambda f=function: f(X, W, b, _relu, "valid"))
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
                       median_time(lambda: tf_conv(A_t, W_t, b_t, tf_padding).numpy(),
                                   repeats, 2), 1.5)]
    tf_backward = median_time(
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
                           median_time(lambda: tf_pool(A_t).numpy(), repeats, 2), 1.5))
    rows.append(_ratio_row(f"{label} backward",
                           *_time_ours(lambda: pool_backward(dA, A, (2, 2), (2, 2)), repeats, 2),
                           median_time(lambda: tf_pool_grad(A_t, dA_t).numpy(), repeats, 2),
                           2.0))
    return rows


OPS_HEADERS = ["workload", "ours (ms)", "ours, 1 BLAS thread (ms)", "TF (ms)", "ours/TF",
               "ours 1 thread/TF", "target", "met"]


def bench_ops(quick=False):
    """Time tasks 0-3 against TensorFlow; print and return the table rows.

    Workloads: the 0-main convolution (50,000 MNIST images, float64, bias and
    ReLU; 5,000 with ``quick``) by the task file ``0x07-cnn/0-conv_forward.py``
    and by the engine, on the machine as it is and with one core kept busy,
    with a naive per-pixel loop extrapolated from a subset and the peak
    memory traced by tracemalloc; LeNet-5's layers in float32 at batch 32
    and 256, forward and backward (engine).
    """
    tf = setup_tensorflow()
    print(machine_info())
    repeats = 5 if quick else 20
    rows = _bench_0_main(tf, quick)
    for batch in (32, 256):
        rows += _bench_lenet_layers(tf, batch, repeats)
    print(format_table(OPS_HEADERS, rows))
    return rows


def bench_cli(args):
    """Run the benchmark named by ``args.which`` ("ops" or "train")."""
    if args.which == "ops":
        bench_ops(quick=args.quick)
    elif args.which == "train":
        bench_train(quick=args.quick, runs=getattr(args, "runs", 1))
    else:
        raise ValueError(f"which must be 'ops' or 'train', received {args.which!r}")


# ---------------------------------------------------------------- training benchmark
TRAIN_HEADERS = ["batch", "images timed", "NumPy (s/epoch)", "NumPy, 2 processes (s/epoch)",
                 "Keras fit (s/epoch)", "NumPy/Keras", "NumPy 2 processes/Keras", "target", "met"]
TRAIN_TARGET = 0.5
EPOCH_IMAGES = 50000


def _training_images():
    """MNIST's 50,000 training images (m, 28, 28) float32 and labels, random without the file."""
    try:
        from convnet.data import load_mnist
        X, Y = load_mnist()[:2]
    except (ImportError, OSError, ValueError):
        rng = np.random.default_rng(0)
        X = rng.random((EPOCH_IMAGES, 28, 28), dtype=np.float32)
        Y = rng.integers(0, 10, EPOCH_IMAGES)
    return X[:EPOCH_IMAGES], Y[:EPOCH_IMAGES]


class _NumpyTrainer:
    """A NumPy LeNet-5 and its Adam, trained slice by slice (for interleaved timing)."""

    def __init__(self, X, Y, batch, processes):
        from convnet.model import LeNet5
        from convnet.optim import Adam
        self.model = LeNet5(seed=0)
        self.optimizer = Adam(self.model.parameters())
        self.batch, self.processes = batch, processes
        self.train(X[:5 * batch], Y[:5 * batch])   # warm-up

    def train(self, X, Y):
        """Train one pass over X, Y; return the seconds it took."""
        from convnet.trainer import train_epoch
        start = time.perf_counter()
        train_epoch(self.model, self.optimizer, X, Y, self.batch, 0, 1,
                    processes=self.processes)
        return time.perf_counter() - start


class _KerasTrainer:
    """Task 5's Keras model trained slice by slice with ``fit`` (for interleaved timing)."""

    def __init__(self, X, Y, batch):
        from convnet.tf_training import keras_model
        self.model = keras_model()
        self.batch = batch
        self.train(X[:5 * batch], Y[:5 * batch])   # warm-up: traces the training function

    def train(self, X, Y):
        """Train one pass over X, Y with ``fit``; return the seconds it took."""
        X = X[..., np.newaxis]
        one_hot = np.eye(10, dtype=np.float32)[Y]
        start = time.perf_counter()
        self.model.fit(X, one_hot, batch_size=self.batch, epochs=1, verbose=0, shuffle=True)
        return time.perf_counter() - start


def _numpy_worker(connection, batch):
    """Child process: build the NumPy trainers, then time each slice it is sent.

    It never imports TensorFlow, as ``convnet train`` with the NumPy backend
    does not: TensorFlow's thread pools, once started in a process, slow
    NumPy work in that process down by 15-50 % on a 2-core machine.
    Receives ``slice`` objects (None to stop); answers with the seconds of
    the one-process and two-process trainers.
    """
    X, Y = _training_images()
    trainers = [_NumpyTrainer(X, Y, batch, 1), _NumpyTrainer(X, Y, batch, 2)]
    connection.send("ready")
    while (part := connection.recv()) is not None:
        connection.send([trainer.train(X[part], Y[part]) for trainer in trainers])


def _epoch_seconds(X, Y, batch, count, segments):
    """Seconds per epoch of X for NumPy (1 process), NumPy (2 processes) and Keras.

    The first ``count`` images are cut into ``segments`` slices and the
    trainers take turns on each slice, so that the load of a shared machine
    falls on all of them alike; the sums are scaled from ``count`` to
    ``len(X)``. The NumPy trainers run in a fresh child process without
    TensorFlow (see ``_numpy_worker``), Keras in this one.
    """
    context = multiprocessing.get_context("spawn")
    connection, child_end = context.Pipe()
    worker = context.Process(target=_numpy_worker, args=(child_end, batch))
    worker.start()
    child_end.close()   # so that a dead worker reads as end of file, not silence
    try:
        keras = _KerasTrainer(X, Y, batch)
        try:
            connection.recv()
        except EOFError:
            raise RuntimeError("the NumPy benchmark process stopped (its error is above)") from None
        totals = np.zeros(3)
        for part in np.array_split(np.arange(count), segments):
            part = slice(int(part[0]), int(part[-1]) + 1)
            connection.send(part)
            totals[:2] += connection.recv()
            totals[2] += keras.train(X[part], Y[part])
        connection.send(None)
    finally:
        worker.join(timeout=60)
        if worker.is_alive():
            worker.terminate()
    return list(totals * len(X) / count)


def _train_rows(batch, timed, runs):
    """Table rows for one batch size: one per run, then their median when there are several.

    ``runs`` holds ``(NumPy, NumPy with 2 processes, Keras)`` seconds per
    epoch of each run. Each ratio is of times measured in the same run; the
    last row's times and ratios are the medians over the runs, and only that
    row judges the target, on the faster NumPy trainer.
    """
    runs = np.array(runs, dtype=float).reshape(-1, 3)
    ratios = runs[:, :2] / runs[:, 2:]
    lines = [(str(batch) if len(runs) == 1 else f"{batch} (run {index + 1})", times, ratio)
             for index, (times, ratio) in enumerate(zip(runs, ratios))]
    if len(runs) > 1:
        lines.append((f"{batch} (median of {len(runs)})", np.median(runs, axis=0),
                      np.median(ratios, axis=0)))
    rows = [[label, timed, *(f"{seconds:.1f}" for seconds in times),
             *(f"{value:.2f}" for value in ratio), "", ""] for label, times, ratio in lines]
    best = lines[-1][2].min()
    rows[-1][7:] = [f"<= {TRAIN_TARGET:g}",
                    "yes" if best <= TRAIN_TARGET else f"no ({best / TRAIN_TARGET:.2f}x over)"]
    return rows


def bench_train(quick=False, runs=1):
    """Time one training epoch (50,000 images) of the NumPy LeNet-5 against Keras ``fit``.

    Both train task 5's network with Adam from He-normal weights, at batch 32
    and 128, in the same run. The NumPy trainer uses one BLAS thread (as
    ``convnet train`` does), in one process and then with each batch split
    over two (``convnet train``'s default), in a process of its own
    without TensorFlow (as ``convnet train`` runs); TensorFlow uses every
    core. The target is judged on the faster NumPy time. The epoch is timed
    in 5 slices of 10,000 images, the trainers taking turns on each slice,
    so that the varying load of a shared machine falls on all of them alike
    (each Keras ``fit`` call pays its small set-up cost). With ``quick`` only
    the first 6,400 images are trained on and the time is scaled to 50,000
    (the "images timed" column says so). With ``runs`` above 1 each batch
    size is measured that many times and a last row gives the medians, which
    judge the target. Prints and returns the table rows.
    """
    check_count("runs", runs)
    setup_tensorflow()
    print(machine_info())
    X, Y = _training_images()
    rows = []
    for batch in (32, 128):
        count = min(len(X), 6400) if quick else len(X)
        timed = f"{count}" + (f" (scaled to {len(X)})" if count < len(X) else "")
        measured = [_epoch_seconds(X, Y, batch, count, 2 if quick else 5) for _ in range(runs)]
        rows += _train_rows(batch, timed, measured)
    print(format_table(TRAIN_HEADERS, rows))
    return rows


def profile_train_step(steps=200, batch=32, top=15):
    """Profile ``steps`` NumPy training steps with cProfile; print the top functions.

    Returns the ``pstats.Stats`` object (sorted by own time).
    """
    import cProfile
    import pstats

    from convnet.model import LeNet5
    from convnet.optim import Adam
    from convnet.trainer import train_epoch
    X, Y = _training_images()
    model = LeNet5(seed=0)
    optimizer = Adam(model.parameters())
    count = steps * batch
    train_epoch(model, optimizer, X[:5 * batch], Y[:5 * batch], batch, 0, 0)   # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    train_epoch(model, optimizer, X[:count], Y[:count], batch, 0, 1)
    profiler.disable()
    stats = pstats.Stats(profiler).sort_stats("tottime")
    stats.print_stats(top)
    return stats


def time_layers(steps=400, batch=32, processes=1):
    """Time every layer's forward and backward pass inside real training steps.

    Trains ``steps`` steps of ``batch`` MNIST images (one BLAS thread, as
    ``convnet train``) with each layer's ``forward`` and ``backward`` and
    Adam's ``step`` wrapped in a timer, and prints a Markdown table of the
    milliseconds per step each takes and its share of the whole step.
    Returns ``(rows, milliseconds per step)``.
    """
    from convnet.model import LeNet5
    from convnet.optim import Adam
    from convnet.trainer import train_epoch
    X, Y = _training_images()
    model = LeNet5(seed=0)
    optimizer = Adam(model.parameters())
    train_epoch(model, optimizer, X[:5 * batch], Y[:5 * batch], batch, 0, 0)   # warm-up
    seconds = {}

    def timed(key, function):
        def run(*args):
            start = time.perf_counter()
            result = function(*args)
            seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start
            return result
        return run

    for layer in model.layers + [model.loss_layer]:
        layer.forward = timed((layer.name, "forward"), layer.forward)
        layer.backward = timed((layer.name, "backward"), layer.backward)
    optimizer.step = timed(("Adam step", "forward"), optimizer.step)
    count = min(steps * batch, len(X))
    start = time.perf_counter()
    train_epoch(model, optimizer, X[:count], Y[:count], batch, 0, 1)
    step_ms = (time.perf_counter() - start) * 1e3 * batch / count
    per_step = {key: value * 1e3 * batch / count for key, value in seconds.items()}
    rows = []
    for name in [layer.name for layer in model.layers] + ["softmax", "Adam step"]:
        forward, backward = per_step.get((name, "forward"), 0.0), per_step.get((name, "backward"))
        total = forward + (backward or 0.0)
        rows.append([name, f"{forward:.3f}", "" if backward is None else f"{backward:.3f}",
                     f"{100 * total / step_ms:.0f} %"])
    rows.append(["whole step", "", "", f"{step_ms:.2f} ms"])
    print(format_table(["layer", "forward (ms)", "backward (ms)", "share of the step"], rows))
    return rows, step_ms
