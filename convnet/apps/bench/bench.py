"""Benchmarks: the NumPy engine against TensorFlow, measured in the same run.

Shared helpers (:func:`median_time`, :func:`format_table`,
:func:`setup_tensorflow`, :func:`machine_info`) serve every benchmark; each
benchmark is one ``bench_<name>(...)`` function that returns the rows of its
table (the command line prints them). ``convnet bench ops`` runs
:func:`bench_ops`; ``convnet bench train --model NAME`` runs
:func:`bench_train`: a training epoch of the NumPy engine, alone and as MPI
ranks (``TRAIN_ENGINES``), against its Keras twin's ``fit``, each in fresh
processes started by :func:`run_engine` (``python -m convnet.apps.bench.bench
--worker JOB`` runs :func:`run_worker`); :func:`time_layers` says where the
NumPy step's time goes.
"""
import contextlib
import importlib.util
import io
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import NamedTuple

import numpy as np

from convnet.checks import check_count
from convnet.nn.ops import conv_backward, conv_forward, pool_backward, pool_forward
from convnet.nn.threads import blas_threads
from convnet.tf.tensorflow_import import import_tensorflow


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
        tf = import_tensorflow()
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
        tf = import_tensorflow()
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


def _burn(stop, seconds, started=None):
    """Keep one core busy until ``stop`` is set or ``seconds`` have passed."""
    end = time.monotonic() + seconds
    if started is not None:
        started.set()
    while not stop.is_set() and time.monotonic() < end:
        sum(range(10_000))


@contextlib.contextmanager
def one_core_busy(seconds=600):
    """Run the block while a child process keeps one core busy.

    The block starts once the child is burning; the child stops when the
    block ends, and on its own after ``seconds`` whatever happens to this
    process. Shared machines are often this busy; multi-threaded BLAS then
    waits for the busy core (see docs/performance.md).
    """
    context = multiprocessing.get_context("spawn")
    stop, started = context.Event(), context.Event()
    burner = context.Process(target=_burn, args=(stop, seconds, started), daemon=True)
    burner.start()
    try:
        started.wait(60)
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


def load_average_text():
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
        log(f"0-main{label}: {load_average_text()}")
        with one_core_busy() if busy else contextlib.nullcontext():
            theirs = median_time(lambda: tf_conv(X_t, W_t, b_t).numpy(), repeats, 1)
            for name, function in versions:
                ours = _time_ours(lambda f=function: f(X, W, b, _relu, "valid"), repeats, 1)
                rows.append(_ratio_row(f"0-main conv {count}x28x28x1 float64, {name}{label}",
                                       *ours, theirs, 1.0,
                                       judge="both" if name == "task file" else "faster"))
        log(f"0-main{label} done: {load_average_text()}")

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
        adam, rmsprop or sgd (``convnet.nn.optim``, Keras's formulation and
        defaults).
    seed : int
    blas_thread_count : int
        BLAS threads while training: 1, as ``convnet train`` runs (on a busy
        two-core machine a second BLAS thread waiting for its core makes a
        Dense layer's product over ten times slower).
    """

    def __init__(self, spec, batch, optimizer, seed=0, blas_thread_count=1):
        from convnet.nn.optim import make_optimizer
        from convnet.nn.sequential import Sequential
        from convnet.nn.zoo import load_spec
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
        from convnet.tf import tf_training
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


def train_setting(model, batch=None, optimizer=None):
    """The canonical spec, batch and optimizer the training benchmark uses for ``model``.

    The batch defaults to the course's for the model (``COURSE_BATCH``, else
    32), the optimizer to the spec's own (adam when it names none); NumPy
    and Keras use the same.
    """
    from convnet.nn.sequential import normalise_spec
    from convnet.nn.zoo import load_spec
    spec = normalise_spec(load_spec(model))
    if batch is None:
        batch = COURSE_BATCH.get(spec["name"], DEFAULT_BATCH)
    check_count("batch", batch)
    return spec, batch, optimizer or spec["optimizer"] or "adam"


class Engine(NamedTuple):
    """One way of training a model, as ``bench_train`` runs it.

    ``kind`` is ``"numpy"`` (``DataParallel``, one BLAS thread unless the default layout gives more) or
    ``"keras"`` (the twin's ``fit``); ``processes`` the number of MPI ranks,
    or None for the count ``distributed.default_layout`` picks at that
    moment; ``micro_batch`` as ``DataParallel`` takes it; ``burner`` whether
    another process keeps one core busy meanwhile (and while the default is
    decided).
    """

    kind: str
    processes: int | None
    micro_batch: int | None
    burner: bool


TRAIN_ENGINES = {
    "1 process": Engine("numpy", 1, None, False),
    "1 process, micro-batch 16": Engine("numpy", 1, 16, False),
    "default": Engine("numpy", None, None, False),
    "2 ranks": Engine("numpy", 2, None, False),
    "default + burner": Engine("numpy", None, None, True),
    "1 process + burner": Engine("numpy", 1, None, True),
    "2 ranks + burner": Engine("numpy", 2, None, True),
    "keras": Engine("keras", 1, None, False),
}
# What `convnet bench train` measures unless told (the two other burner engines on request).
DEFAULT_ENGINES = ("1 process", "1 process, micro-batch 16", "default", "2 ranks",
                   "default + burner", "keras")
# The engine the targets are judged on: what `convnet train` runs.
JUDGED_ENGINE = "default"
TRAIN_HEADERS = ["model", "batch", "optimizer", "engine", "processes", "s/epoch",
                 "/ Keras", "target", "met", "peak RSS per process (MB)",
                 "CPU s/epoch, first process"]
WARMUP_STEPS = 3


def check_engines(names, spec=None):
    """Return the engine names as a tuple, or raise ValueError naming the unknown one.

    With ``spec``, also refuse several ranks for a model with
    BatchNormalization, which trains in one process only.
    """
    names = tuple(names)
    if not names:
        raise ValueError("engines must name at least one engine, received none")
    for name in names:
        if name not in TRAIN_ENGINES:
            raise ValueError(f"engine must be one of {', '.join(map(repr, TRAIN_ENGINES))}, "
                             f"received {name!r}")
        if spec is not None and _one_process_only(spec) and (TRAIN_ENGINES[name].processes
                                                              or 1) > 1:
            raise ValueError(f"engine {name!r}: model {spec['name']} has BatchNormalization "
                             f"and trains in one process only")
    return names


def _one_process_only(spec):
    """True for a model with BatchNormalization: ``convnet train`` runs it in one process."""
    return any(layer["layer"] == "BatchNormalization" for layer in spec["layers"])


# ---------------------------------------------------------------- the training worker
def _time_numpy_steps(spec, batch, optimizer, images, micro_batch, seed, threads=1):
    """Train ``images`` images as ``convnet train`` does; return rank 0's result, else None.

    Every rank of the MPI job this process may belong to (or this process
    alone) builds the model as ``convnet train`` does and trains the same
    batches through ``DataParallel``, with ``threads`` BLAS threads and the
    allocator's freed memory kept, after ``WARMUP_STEPS`` untimed steps.
    """
    from convnet.nn.memory import keep_freed_memory
    from convnet.nn.optim import make_optimizer
    from convnet.parallel import distributed
    from convnet.training import trainer
    comm = distributed.world() if distributed.in_mpi_job() else None
    model = trainer.build_model(spec, seed=seed)
    steps = distributed.DataParallel(model, make_optimizer(optimizer, model.parameters()),
                                     comm=comm, micro_batch=micro_batch, seed=seed)
    last = model.spec["layers"][-1]
    X, Y, _ = bench_images(model.input_shape, 2 if last["activation"] == "sigmoid"
                           else last["units"])
    order = trainer.epoch_order(seed, 1, len(X))
    keep_freed_memory()
    with blas_threads(threads), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # The warm-up takes the epoch's last batches: the timed ones are its first.
        for start in range(max(0, len(X) - WARMUP_STEPS * batch), len(X), batch):
            steps.step(X[order[start:start + batch]], Y[order[start:start + batch]])
        if comm is not None:
            comm.Barrier()
        begin, cpu = time.perf_counter(), time.process_time()
        for start in range(0, images, batch):
            chosen = order[start:min(start + batch, images)]
            steps.step(X[chosen], Y[chosen])
        if comm is not None:
            comm.Barrier()
        seconds, cpu = time.perf_counter() - begin, time.process_time() - cpu
    peaks = [_peak_rss_bytes()] if comm is None else comm.gather(_peak_rss_bytes(), root=0)
    if not steps.is_writer:
        return None
    return {"seconds": seconds, "cpu_seconds": cpu, "rss": peaks, "processes": steps.size,
            "threads": threads, "tensorflow_imported": "tensorflow" in sys.modules}


def _time_keras_fit(spec, batch, optimizer, images, seed):
    """Train ``images`` images with the Keras twin's ``fit``; return the result."""
    fitter = KerasFitter(spec, batch, optimizer, seed=seed)
    last = fitter.spec["layers"][-1]
    X, Y, _ = bench_images(fitter.spec["layers"][0]["shape"],
                           2 if last["activation"] == "sigmoid" else last["units"])
    fitter.train(X[-WARMUP_STEPS * batch:], Y[-WARMUP_STEPS * batch:])   # traces the step
    cpu = time.process_time()
    seconds = fitter.train(X[:images], Y[:images])
    return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu,
            "rss": [_peak_rss_bytes()], "processes": 1}


def run_worker(job):
    """The benchmark's worker: train as ``job`` says; return rank 0's result (else None).

    Parameters
    ----------
    job : dict
        ``kind`` ("numpy" or "keras"), ``spec`` (a normalised spec dict),
        ``batch``, ``optimizer``, ``images`` (how many to time), and for
        NumPy ``micro_batch``; ``seed`` optional (0).

    Returns
    -------
    dict or None
        ``seconds`` of the timed steps, ``cpu_seconds`` (this process's),
        ``rss`` (each rank's peak resident bytes) and ``processes`` (for
        NumPy also ``tensorflow_imported``, which should be False); None on
        ranks other than 0.
    """
    seed = job.get("seed", 0)
    if job["kind"] == "keras":
        return _time_keras_fit(job["spec"], job["batch"], job["optimizer"], job["images"], seed)
    return _time_numpy_steps(job["spec"], job["batch"], job["optimizer"], job["images"],
                             job.get("micro_batch"), seed, job.get("threads", 1))


def _result_line(text, name):
    """The worker's JSON result: the last line of its output that holds one."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"the {name} benchmark worker printed no result")


def run_engine(name, job, processes):
    """Run ``job`` (see ``run_worker``) in fresh processes: ``processes`` MPI ranks or one.

    One process is a plain ``python -m convnet.apps.bench.bench --worker``; more are
    an MPI job started by ``distributed.launch``. Returns rank 0's result.

    Raises
    ------
    RuntimeError
        The worker failed; the message ends with its last lines of error output.
    """
    from convnet.parallel import distributed
    argv = ["--worker", json.dumps(job)]
    if processes == 1:
        done = subprocess.run([sys.executable, "-m", "convnet.apps.bench.bench", *argv],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"the {name} benchmark worker failed with exit status "
                               f"{done.returncode}:\n{tail}")
        return _result_line(done.stdout, name)
    output = io.BytesIO()
    status = distributed.launch(argv, processes, output=output, program=("-m", "convnet.apps.bench.bench"))
    if status != 0:
        raise RuntimeError(f"the {name} benchmark job failed with exit status {status} "
                           f"(its error is above)")
    return _result_line(output.getvalue().decode(errors="replace"), name)


def measure_engines(spec, batch, optimizer, images, engines, seed=0):
    """One run: each engine in turn, in fresh processes; return {engine: result}.

    Each result is ``run_worker``'s, ``processes`` being the number of
    processes the engine ran (for ``default``: what ``default_layout``
    chose just before, with the burner already running for ``default +
    burner``).
    """
    from convnet.parallel import distributed
    results = {}
    for name in check_engines(engines, spec):
        engine = TRAIN_ENGINES[name]
        job = {"kind": engine.kind, "spec": spec, "batch": batch, "optimizer": optimizer,
               "images": images, "micro_batch": engine.micro_batch, "seed": seed}
        with one_core_busy() if engine.burner else contextlib.nullcontext():
            processes, threads = (engine.processes, 1) if engine.processes else (
                (1, 1) if _one_process_only(spec) else distributed.default_layout(
                    not any(entry["layer"] == "Conv2D" for entry in spec["layers"]), batch))
            results[name] = run_engine(name, dict(job, threads=threads), processes)
    return results


# ---------------------------------------------------------------- the table
def _seconds_text(seconds):
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def engine_rows(name, batch, optimizer, runs, images, total, target=None):
    """Rows of medians of ``bench_train``'s table for one model, in ``TRAIN_HEADERS`` order.

    Parameters
    ----------
    name : str
        The model's name.
    batch : int
    optimizer : str
    runs : list of dict
        One ``measure_engines`` result per run, the same engines in each.
    images, total : int
        Images timed, and in an epoch: seconds are scaled by ``total / images``.
    target : float, optional
        The most the judged engine (``JUDGED_ENGINE``) may take, as a
        fraction of Keras's epoch.

    Returns
    -------
    list of list of str
        One row per engine, in the runs' order. Seconds per epoch are the
        medians over the runs; the ratio to Keras is the median of the
        ratios measured within each run (blank without ``keras``); the
        processes are each run's count for an engine that decides it, else
        the fixed count; the memory is the largest peak of any process of
        any run; the CPU seconds (median, scaled like the seconds) are rank
        0's, or Keras's process's, all its threads: next to the clock they
        show how much the machine's other work slowed an engine down.
    """
    rows = []
    for engine in runs[0]:
        seconds = [run[engine]["seconds"] * total / images for run in runs]
        ratio, goal, met = "", "", ""
        if "keras" in runs[0] and engine != "keras":
            median_ratio = float(np.median([run[engine]["seconds"] / run["keras"]["seconds"]
                                            for run in runs]))
            ratio = f"{median_ratio:.2f}"
            if target is not None and engine == JUDGED_ENGINE:
                goal = f"<= {target:g}"
                met = "yes" if median_ratio <= target else \
                    f"no ({median_ratio / target:.2f}x over)"
        if TRAIN_ENGINES[engine].processes is None:
            processes = ", ".join(_layout_text(run[engine]) for run in runs)
        else:
            processes = _layout_text(runs[0][engine])
        peak = max(max(run[engine]["rss"]) for run in runs)
        cpu = float(np.median([run[engine]["cpu_seconds"] * total / images for run in runs]))
        rows.append([name, str(batch), optimizer, engine, processes,
                     _seconds_text(float(np.median(seconds))), ratio, goal, met,
                     f"{peak / 1e6:.0f}", _seconds_text(cpu)])
    return rows


def _layout_text(result):
    """``"2"`` for two processes, ``"1 (2 threads)"`` for one process with two BLAS threads."""
    threads = result.get("threads", 1)
    return str(result["processes"]) + (f" ({threads} threads)" if threads > 1 else "")


def verdict(name, rows):
    """One line: the judged engine's ratio to Keras against its target, and one process's.

    ``rows`` are ``engine_rows``'; returns "" when the judged engine
    (``JUDGED_ENGINE``) has no target in them.
    """
    by_engine = {row[3]: row for row in rows}
    judged = by_engine.get(JUDGED_ENGINE)
    if judged is None or not judged[7]:
        return ""
    line = (f"{name}: the default ({judged[4]} processes) took {judged[6]} x Keras's epoch, "
            f"target {judged[7]}: {'met' if judged[8] == 'yes' else 'not met'}")
    alone = by_engine.get("1 process")
    if alone is not None and alone[6]:
        line += f"; one process {alone[6]} x"
    return line


def bench_train(models=("mnist-cnn",), steps=DEFAULT_STEPS, runs=1, batch=None,
                optimizer=None, engines=None, log=None):
    """Time a training epoch of the NumPy engines against Keras ``fit``, per model.

    For each model and each run, every engine of ``engines`` (names of
    ``TRAIN_ENGINES``) trains in turn, in fresh processes (the NumPy ones
    never import TensorFlow): ``WARMUP_STEPS`` untimed steps, then
    ``steps`` timed ones, inside the worker, so that starting Python, MPI
    and TensorFlow is not counted; the seconds are scaled to the epoch. The
    NumPy engines are ``convnet train``'s ``DataParallel`` with one BLAS
    thread, alone or as MPI ranks; ``keras`` is the model's twin (same
    initial weights) with Keras's own optimizer of the same name, trained
    by ``fit`` with TensorFlow's default threads. The data are those of
    ``bench_images``: MNIST for the 28x28x1 models, 45,000 synthetic
    32x32x3 images for ``cifar-cnn``.

    Parameters
    ----------
    models : sequence of str
        Zoo names or spec.json paths.
    steps : int or None
        Time this many steps and scale to an epoch; None times a whole epoch.
    runs : int
        Measure each model this many times; the rows give the medians.
    batch : int, optional
        Default: the model's course batch (``COURSE_BATCH``), else 32.
    optimizer : str, optional
        Default: the spec's own.
    engines : sequence of str, optional
        Which engines, in the order each run takes them. Default
        ``DEFAULT_ENGINES``, less the ones of several ranks for a model with
        BatchNormalization (which trains in one process only; named, they
        are refused).
    log : callable, optional
        Receives a line as each run ends, with the machine's load.

    Returns
    -------
    list of dict
        One per model: ``name``, ``timed`` (what was timed, as text),
        ``rows`` (``engine_rows``), ``verdict`` (a line, or ""), ``runs``
        (the raw results) and ``loads`` (the load averages before and after
        each run, as pairs of text).
    """
    check_count("runs", runs)
    if steps is not None:
        check_count("steps", steps)
    chosen = engines is not None
    engines = check_engines(engines if chosen else DEFAULT_ENGINES)
    settings = [train_setting(model, batch, optimizer) for model in models]
    for spec, _, _ in settings:
        if chosen:
            check_engines(engines, spec)
    results = []
    for spec, model_batch, model_optimizer in settings:
        model_engines = engines if chosen or not _one_process_only(spec) else tuple(
            name for name in engines if (TRAIN_ENGINES[name].processes or 1) == 1)
        last = spec["layers"][-1]
        classes = 2 if last["activation"] == "sigmoid" else last["units"]
        # The workers load their own copy of the data; here only its size is needed.
        input_shape = tuple(spec["layers"][0]["shape"])
        total = bench_data_size(input_shape)
        source = ("MNIST" if input_shape == (28, 28, 1) and classes == 10
                  else f"synthetic {'x'.join(map(str, input_shape))}")
        images = total if steps is None else min(total, steps * model_batch)
        timed = f"{images:,} {source} images" + (
            f" ({-(-images // model_batch)} steps), scaled to {total:,}" if images < total
            else "")
        measured, loads = [], []
        for run in range(runs):
            before = load_average_text()
            measured.append(measure_engines(spec, model_batch, model_optimizer, images,
                                            model_engines))
            loads.append((before, load_average_text()))
            if log is not None:
                seconds = ", ".join(
                    f"{engine} {_seconds_text(result['seconds'] * total / images)}"
                    + (f" ({_layout_text(result)})"
                       if TRAIN_ENGINES[engine].processes is None else "")
                    for engine, result in measured[-1].items())
                log(f"{spec['name']} run {run + 1}/{runs}, s/epoch: {seconds} "
                    f"({loads[-1][0]} before, {loads[-1][1]} after)")
        target = TRAIN_TARGETS.get(spec["name"])
        rows = engine_rows(spec["name"], model_batch, model_optimizer, measured, images, total,
                           target)
        results.append({"name": spec["name"], "timed": timed, "rows": rows,
                        "verdict": verdict(spec["name"], rows), "runs": measured,
                        "loads": loads})
    return results


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


if __name__ == "__main__":
    # The training benchmark's worker (``run_engine``): python -m convnet.apps.bench.bench --worker JOB
    if sys.argv[1:2] != ["--worker"] or len(sys.argv) != 3:
        sys.exit("usage: python -m convnet.apps.bench.bench --worker JOB (JSON); see run_worker")
    outcome = run_worker(json.loads(sys.argv[2]))
    if outcome is not None:
        print(json.dumps(outcome), flush=True)
