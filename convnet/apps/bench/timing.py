"""Measuring on a shared machine: clocks, memory, load, a busy core, the tables of results.

Every benchmark of this package times with :func:`median_time`, describes
the machine with :func:`machine_info` and :func:`load_average_text`, and
returns rows that :func:`format_table` lays out as Markdown. TensorFlow,
the yardstick, is imported through :func:`setup_tensorflow`.
"""
import contextlib
import importlib.metadata
import multiprocessing
import os
import platform
import subprocess
import time
import tracemalloc

import numpy as np

from convnet.tf.tensorflow_import import import_tensorflow


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


def setup_tensorflow(threads=None):
    """Import TensorFlow quietly, its thread pools as large as ``threads`` (default: the cores).

    Returns the ``tensorflow`` module. Raises ImportError with a clear message
    when it is not installed (``pip install -e '.[tf]'``).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        tf = import_tensorflow()
    except ImportError as error:
        raise ImportError("the benchmarks compare with TensorFlow, which is not installed: "
                          "pip install -e '.[tf]'") from error
    threads = threads or os.cpu_count() or 1
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
    # The installed version, read without importing TensorFlow (slow, and noisy on stderr).
    for distribution in ("tensorflow", "tensorflow-cpu"):
        try:
            versions += f", TensorFlow {importlib.metadata.version(distribution)}"
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"{model}, nproc {nproc}; {versions}"


def load_average_text():
    """The machine's load averages over 1, 5 and 15 minutes, as text."""
    try:
        return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "load average unknown"


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


def peak_rss_bytes():
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
