"""Benchmarks: the NumPy engine against TensorFlow, measured in the same run.

Shared helpers (:func:`median_time`, :func:`format_table`,
:func:`setup_tensorflow`, :func:`machine_info`) serve every benchmark; each
benchmark is one ``bench_<name>(...)`` function that returns the rows of its
table (the command line prints them). ``convnet bench ops`` runs
:func:`bench_ops`; ``convnet bench train --model NAME`` runs
:func:`bench_train`: the NumPy Sequential model's training epoch against
its Keras twin's ``fit``, and :func:`time_layers` says where the NumPy
step's time goes.
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
        log(f"0-main{label}: {_load()}")
        with one_core_busy() if busy else contextlib.nullcontext():
            theirs = median_time(lambda: tf_conv(X_t, W_t, b_t).numpy(), repeats, 1)
            for name, function in versions:
                ours = _time_ours(lambda f=function: f(X, W, b, _relu, "valid"), repeats, 1)
                rows.append(_ratio_row(f"0-main conv {count}x28x28x1 float64, {name}{label}",
                                       *ours, theirs, 1.0,
                                       judge="both" if name == "task file" else "faster"))
        log(f"0-main{label} done: {_load()}")

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
    tf = setup_tensorflow()
    repeats = 5 if quick else 20
    rows = _bench_0_main(tf, quick, log or (lambda line: None))
    for batch in (32, 256):
        rows += _bench_lenet_layers(tf, batch, repeats)
    return rows


# ---------------------------------------------------------------- training benchmark
TRAIN_HEADERS = ["model", "batch", "optimizer", "timed", "NumPy (s/epoch)", "Keras fit (s/epoch)",
                 "NumPy/Keras", "target", "met", "NumPy peak RSS (MB)", "Keras peak RSS (MB)"]
# The NumPy epoch's target, as a fraction of Keras's, for the models that have one.
TRAIN_TARGETS = {"mnist-cnn": 1.0, "mlp": 1.0, "cifar-cnn": 1.0}
# The batch each model was trained with in the course (32 for the others).
COURSE_BATCH = {"mnist-cnn": 64, "cifar-cnn": 32, "mlp": 128}
DEFAULT_BATCH = 32
# Training-set sizes: MNIST's 50,000 for 28x28x1 models, CIFAR-10's 45,000 (after its 5,000
# validation images) for 32x32x3; any other input shape gets this many synthetic images.
MNIST_TRAIN = 50000
CIFAR_TRAIN = 45000
OTHER_TRAIN = 1000
DEFAULT_STEPS = 200


def bench_images(input_shape, num_classes, seed=0):
    """Training images and labels for a model's input: the data its epoch is timed on.

    Parameters
    ----------
    input_shape : tuple of int
        (h, w, c) of the model.
    num_classes : int
        2 for a sigmoid output.
    seed : int
        Seed of the synthetic images.

    Returns
    -------
    X : ndarray of shape (n, h, w, c), float32 in [0, 1)
        MNIST's 50,000 training images for (28, 28, 1) when the file is
        cached (random ones of that size otherwise); 45,000 random images for
        (32, 32, 3), the size of CIFAR-10's training split; 1,000 otherwise.
    Y : ndarray of shape (n,), int64
    source : str
        What X is, for the output.
    """
    input_shape = tuple(input_shape)
    rng = np.random.default_rng(seed)
    if input_shape == (28, 28, 1) and num_classes == 10:
        try:
            from convnet.data import load_mnist
            X, Y = load_mnist()[:2]
            return X[:MNIST_TRAIN, :, :, np.newaxis], Y[:MNIST_TRAIN].astype(np.int64), "MNIST"
        except (ImportError, OSError, ValueError):
            pass
    count = bench_data_size(input_shape)
    X = rng.random((count, *input_shape), dtype=np.float32)
    Y = rng.integers(0, num_classes, count).astype(np.int64)
    return X, Y, f"synthetic {'x'.join(map(str, input_shape))}"


def bench_data_size(input_shape):
    """How many training images ``bench_images`` gives for a model's input shape."""
    return {(28, 28, 1): MNIST_TRAIN, (32, 32, 3): CIFAR_TRAIN}.get(tuple(input_shape),
                                                                   OTHER_TRAIN)


def _peak_rss_bytes():
    """This process's peak resident memory so far, in bytes.

    Read from ``VmHWM`` in /proc/self/status, which starts afresh in a newly
    executed program (``getrusage``'s figure would include the parent's peak,
    which Linux carries across ``exec``); 0 where /proc is missing.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class NumpyStepper:
    """A Sequential model and its optimizer, trained by a plain loop of steps.

    Parameters
    ----------
    spec : str or dict
        A zoo name, spec.json path or spec.
    batch : int
    optimizer : str
        adam, rmsprop or sgd (``convnet.optim``, Keras's formulation and
        defaults).
    seed : int
    blas_thread_count : int
        BLAS threads while training: 1, as ``convnet train`` runs (on a busy
        two-core machine a second BLAS thread waiting for its core makes a
        Dense layer's product over ten times slower).
    """

    def __init__(self, spec, batch, optimizer, seed=0, blas_thread_count=1):
        from convnet.optim import make_optimizer
        from convnet.sequential import Sequential
        from convnet.zoo import load_spec
        self.model = Sequential(load_spec(spec) if isinstance(spec, str) else spec, seed=seed)
        self.optimizer = make_optimizer(optimizer, self.model.parameters())
        self.batch = batch
        self.rng = np.random.default_rng(seed)
        self.blas_thread_count = blas_thread_count

    def train(self, X, Y):
        """One shuffled pass over X (m, h, w, c), Y (m,); return the seconds it took."""
        with blas_threads(self.blas_thread_count):
            start = time.perf_counter()
            order = self.rng.permutation(len(X))
            for begin in range(0, len(X), self.batch):
                batch = order[begin:begin + self.batch]
                _, grads = self.model.loss_and_grads(X[batch], Y[batch])
                self.optimizer.step(grads)
            return time.perf_counter() - start


class KerasFitter:
    """The Keras twin of a spec, trained slice by slice with ``fit``, Keras's own optimizer."""

    def __init__(self, spec, batch, optimizer, seed=0):
        setup_tensorflow()
        from convnet import tf_training
        self.spec = tf_training.normalise_spec(
            tf_training.zoo.load_spec(spec) if isinstance(spec, str) else spec)
        self.model = tf_training.build_keras(self.spec, optimizer, seed=seed)
        self.targets = lambda Y: tf_training.keras_targets(self.spec, Y)
        self.batch = batch

    def train(self, X, Y):
        """One shuffled pass over X, Y with ``fit``; return the seconds it took."""
        targets = self.targets(Y)
        start = time.perf_counter()
        self.model.fit(X, targets, batch_size=self.batch, epochs=1, verbose=0, shuffle=True)
        return time.perf_counter() - start


def _train_worker(connection, kind, spec, batch, optimizer):
    """Child process: build one trainer, then time each slice of the data it is sent.

    The NumPy trainer's process never imports TensorFlow, as ``convnet
    train`` with the NumPy backend does not (TensorFlow's thread pools slow
    NumPy work in the same process down). Sends ``("ready", RSS)`` once
    built and warmed up, answers each ``slice`` with the seconds it took,
    and ``None`` with ``("peak", RSS)``.
    """
    trainer_class = NumpyStepper if kind == "numpy" else KerasFitter
    trainer = trainer_class(spec, batch, optimizer)
    spec_dict = trainer.model.spec if kind == "numpy" else trainer.spec
    last = spec_dict["layers"][-1]
    classes = 2 if last["activation"] == "sigmoid" else last["units"]
    X, Y, _ = bench_images(spec_dict["layers"][0]["shape"], classes)
    trainer.train(X[:3 * batch], Y[:3 * batch])   # warm-up: traces Keras's step, fills caches
    connection.send(("ready", _peak_rss_bytes()))
    while (part := connection.recv()) is not None:
        connection.send(trainer.train(X[part], Y[part]))
    connection.send(("peak", _peak_rss_bytes()))


def _start_worker(context, kind, spec, batch, optimizer):
    """Start a trainer process; return (process, connection) once it is ready."""
    connection, child_end = context.Pipe()
    worker = context.Process(target=_train_worker, args=(child_end, kind, spec, batch, optimizer))
    worker.start()
    child_end.close()   # so that a dead worker reads as end of file, not silence
    return worker, connection


def _receive(connection, kind):
    """Read a worker's answer; a worker that died is an error naming it."""
    try:
        return connection.recv()
    except EOFError:
        raise RuntimeError(f"the {kind} benchmark process stopped (its error is above)") from None


def measure_epoch(spec, batch, optimizer, count, total, segments):
    """Seconds per epoch of the NumPy trainer and of Keras ``fit``, and their peak memory.

    The first ``count`` images are cut into ``segments`` slices and the two
    trainers take turns on each slice, so the load of a shared machine falls
    on both alike; the sums are scaled from ``count`` images to ``total``.
    Each trainer runs in a fresh child process of its own.

    Returns
    -------
    dict
        ``numpy`` and ``keras`` (seconds per epoch), ``numpy_rss`` and
        ``keras_rss`` (peak resident bytes of each process, data and
        libraries included), ``numpy_rss_ready`` and ``keras_rss_ready``
        (the same once built and warmed up, before the timed slices).
    """
    context = multiprocessing.get_context("spawn")
    workers = {kind: _start_worker(context, kind, spec, batch, optimizer)
               for kind in ("numpy", "keras")}
    result = {}
    try:
        for kind, (_, connection) in workers.items():
            result[f"{kind}_rss_ready"] = _receive(connection, kind)[1]
        totals = dict.fromkeys(workers, 0.0)
        for part in np.array_split(np.arange(count), segments):
            part = slice(int(part[0]), int(part[-1]) + 1)
            for kind, (_, connection) in workers.items():
                connection.send(part)
                totals[kind] += _receive(connection, kind)
        for kind, (_, connection) in workers.items():
            connection.send(None)
            result[f"{kind}_rss"] = _receive(connection, kind)[1]
            result[kind] = totals[kind] * total / count
    finally:
        for worker, _ in workers.values():
            worker.join(timeout=60)
            if worker.is_alive():
                worker.terminate()
    return result


def train_setting(model, batch=None, optimizer=None):
    """The canonical spec, batch and optimizer the training benchmark uses for ``model``.

    The batch defaults to the course's for the model (``COURSE_BATCH``, else
    32), the optimizer to the spec's own (adam when it names none); NumPy
    and Keras use the same.
    """
    from convnet.sequential import normalise_spec
    from convnet.zoo import load_spec
    spec = normalise_spec(load_spec(model))
    if batch is None:
        batch = COURSE_BATCH.get(spec["name"], DEFAULT_BATCH)
    check_count("batch", batch)
    return spec, batch, optimizer or spec["optimizer"] or "adam"


def train_row(name, batch, optimizer, timed, measured, target):
    """A table row of ``bench_train`` from one or more measurements (medians when several)."""
    numpy_s = float(np.median([m["numpy"] for m in measured]))
    keras_s = float(np.median([m["keras"] for m in measured]))
    ratio = float(np.median([m["numpy"] / m["keras"] for m in measured]))
    if target is None:
        goal, met = "", ""
    else:
        goal = f"<= {target:g}"
        met = "yes" if ratio <= target else f"no ({ratio / target:.2f}x over)"
    mb = 1e-6
    return [name, str(batch), optimizer, timed, f"{numpy_s:.1f}", f"{keras_s:.1f}",
            f"{ratio:.2f}", goal, met,
            f"{max(m['numpy_rss'] for m in measured) * mb:.0f}",
            f"{max(m['keras_rss'] for m in measured) * mb:.0f}"]


def bench_train(models=("mnist-cnn",), quick=False, steps=DEFAULT_STEPS, runs=1, batch=None,
                optimizer=None, log=None):
    """Time a training epoch of the NumPy Sequential model against Keras ``fit``.

    For each model: the NumPy side is ``Sequential`` and its optimizer
    (``convnet.optim``) in a plain loop of steps (one BLAS thread, as
    ``convnet train`` runs); the Keras side is the model's twin (``to_keras``, same
    initial weights) with Keras's own optimizer of the same name and
    defaults, trained by ``fit``; both in the same run, each in a child
    process of its own, taking turns on slices of the data (4 slices, 2 with
    ``quick``). The data are those of ``bench_images``: MNIST for the 28x28x1
    models, 45,000 synthetic 32x32x3 images (CIFAR-10's training split) for
    ``cifar-cnn``.

    Parameters
    ----------
    models : sequence of str
        Zoo names or spec.json paths.
    quick : bool
        Time 50 steps instead of ``steps``, in 2 slices.
    steps : int or None
        Time this many steps and scale to an epoch; None times a whole epoch.
    runs : int
        Measure each model this many times; the row gives the medians.
    batch : int, optional
        Default: the model's course batch (``COURSE_BATCH``), else 32.
    optimizer : str, optional
        Default: the spec's own.
    log : callable, optional
        Receives a line as each measurement ends.

    Returns
    -------
    list of list of str
        One row per model, in ``TRAIN_HEADERS`` order.
    """
    check_count("runs", runs)
    if steps is not None:
        check_count("steps", steps)
    rows = []
    for model in models:
        spec, model_batch, model_optimizer = train_setting(model, batch, optimizer)
        last = spec["layers"][-1]
        classes = 2 if last["activation"] == "sigmoid" else last["units"]
        # The children load their own copy of the data; here only its size is needed.
        input_shape = tuple(spec["layers"][0]["shape"])
        total = bench_data_size(input_shape)
        source = ("MNIST" if input_shape == (28, 28, 1) and classes == 10
                  else f"synthetic {'x'.join(map(str, input_shape))}")
        timed_steps = 50 if quick else steps
        count = total if timed_steps is None else min(total, timed_steps * model_batch)
        timed = f"{count:,} {source} images" + (
            f" ({count // model_batch} steps), scaled to {total:,}" if count < total else "")
        measured = []
        for run in range(runs):
            measured.append(measure_epoch(spec, model_batch, model_optimizer, count, total,
                                          2 if quick else 4))
            if log is not None:
                m = measured[-1]
                log(f"{spec['name']} run {run + 1}/{runs}: NumPy {m['numpy']:.1f} s/epoch, "
                    f"Keras {m['keras']:.1f} s/epoch ({_load()})")
        rows.append(train_row(spec["name"], model_batch, model_optimizer, timed, measured,
                              TRAIN_TARGETS.get(spec["name"])))
    return rows


# ---------------------------------------------------------------- where the time goes
def _timed_stepper(model, batch, optimizer):
    """A NumpyStepper whose layers, loss and optimizer step add their seconds to a dict."""
    stepper = NumpyStepper(model, batch, optimizer)
    seconds = {}

    def timed(key, function):
        def run(*args):
            start = time.perf_counter()
            result = function(*args)
            seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start
            return result
        return run

    for layer in stepper.model.layers + [stepper.model.loss_layer]:
        layer.forward = timed((layer.name, "forward"), layer.forward)
        layer.backward = timed((layer.name, "backward"), layer.backward)
    optimizer_name = f"{stepper.optimizer.name} step"
    stepper.optimizer.step = timed((optimizer_name, "forward"), stepper.optimizer.step)
    return stepper, seconds, optimizer_name


def time_layers(model="lenet5", steps=400, batch=None, optimizer=None):
    """Time every layer's forward and backward pass inside real NumPy training steps.

    Trains ``steps`` steps (plain loop, as ``bench_train``'s NumPy side) with
    each layer's ``forward`` and ``backward``, the loss and the optimizer's
    ``step`` wrapped in a timer.

    Returns
    -------
    rows : list of list of str
        Layer, forward ms per step, backward ms per step, share of the step;
        the last row is the whole step.
    step_ms : float
        Milliseconds per step.
    """
    spec, batch, optimizer = train_setting(model, batch, optimizer)
    last = spec["layers"][-1]
    classes = 2 if last["activation"] == "sigmoid" else last["units"]
    X, Y, _ = bench_images(spec["layers"][0]["shape"], classes)
    stepper, seconds, optimizer_name = _timed_stepper(spec, batch, optimizer)
    stepper.train(X[:3 * batch], Y[:3 * batch])   # warm-up
    seconds.clear()
    count = min(steps * batch, len(X))
    elapsed = stepper.train(X[:count], Y[:count])
    step_count = -(-count // batch)
    step_ms = elapsed * 1e3 / step_count
    per_step = {key: value * 1e3 / step_count for key, value in seconds.items()}
    rows = []
    names = [layer.name for layer in stepper.model.layers]
    for name in names + [stepper.model.loss_layer.name, optimizer_name]:
        forward, backward = per_step.get((name, "forward"), 0.0), per_step.get((name, "backward"))
        total = forward + (backward or 0.0)
        rows.append([name, f"{forward:.3f}", "" if backward is None else f"{backward:.3f}",
                     f"{100 * total / step_ms:.0f} %"])
    rows.append(["whole step", "", "", f"{step_ms:.2f} ms"])
    return rows, step_ms


LAYER_HEADERS = ["layer", "forward (ms)", "backward (ms)", "share of the step"]


def profile_train_step(model="lenet5", steps=200, batch=None, top=15):
    """Profile ``steps`` NumPy training steps with cProfile.

    Returns
    -------
    stats : pstats.Stats
        Sorted by own time.
    text : str
        Its report of the ``top`` functions.
    """
    import cProfile
    import io
    import pstats

    spec, batch, optimizer = train_setting(model, batch)
    last = spec["layers"][-1]
    classes = 2 if last["activation"] == "sigmoid" else last["units"]
    X, Y, _ = bench_images(spec["layers"][0]["shape"], classes)
    stepper = NumpyStepper(spec, batch, optimizer)
    stepper.train(X[:3 * batch], Y[:3 * batch])   # warm-up
    count = min(steps * batch, len(X))
    profiler = cProfile.Profile()
    profiler.enable()
    stepper.train(X[:count], Y[:count])
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).sort_stats("tottime")
    stats.print_stats(top)
    return stats, stream.getvalue()
