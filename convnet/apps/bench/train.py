"""A training epoch of the NumPy engines against the Keras twin's ``fit``.

:func:`bench_train` (``convnet bench train``) measures, per model and per
run, every engine of ``TRAIN_ENGINES`` in turn, each in fresh processes
(:func:`run_engine` starts ``python -m convnet.apps.bench.worker``), and
reduces the runs to one table of medians (:func:`engine_rows`) and a
verdict against the model's target.
"""
import contextlib
import io
import json
import subprocess
import sys
from typing import NamedTuple

import numpy as np

from convnet.apps.bench.timing import load_average_text, one_core_busy
from convnet.apps.bench.workload import bench_data_size, output_classes, train_setting
from convnet.checks import check_count
from convnet.errors import BadOptionError
from convnet.parallel import layout as spread

# The NumPy epoch's target, as a fraction of Keras's, for the models that have one.
TRAIN_TARGETS = {"mnist-cnn": 1.0, "mlp": 1.0, "cifar-cnn": 1.0}
DEFAULT_STEPS = 200
# The module each engine's processes run (``python -m``).
WORKER = "convnet.apps.bench.worker"


class Engine(NamedTuple):
    """One way of training a model, as ``bench_train`` runs it.

    ``kind`` is ``"numpy"`` (``DataParallel``, one BLAS thread) or
    ``"keras"`` (the twin's ``fit``); ``processes`` the number of MPI ranks,
    or None for what a fresh ``convnet train`` runs by default at that
    moment (``default_run``: its count of processes *and* its cut of each
    batch); ``micro_batch`` as ``DataParallel`` takes it for a fixed count
    (None: one slice of each batch per rank); ``burner`` whether another
    process keeps one core busy meanwhile (and while the default is
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


def check_engines(names, spec=None):
    """Return the engine names as a tuple, or raise BadOptionError naming the unknown one.

    With ``spec``, also refuse several ranks for a model with
    BatchNormalization, which trains in one process only.

    Parameters
    ----------
    names : sequence of str
        Names of ``TRAIN_ENGINES``.
    spec : dict, optional
        A normalised spec.

    Raises
    ------
    BadOptionError
        A ``ValueError``: no name, an unknown one, or several ranks for
        such a model.
    """
    names = tuple(names)
    if not names:
        raise BadOptionError("engines must name at least one engine, received none")
    for name in names:
        if name not in TRAIN_ENGINES:
            known = ", ".join(map(repr, TRAIN_ENGINES))
            raise BadOptionError(f"engine must be one of {known}, received {name!r}")
        several = (TRAIN_ENGINES[name].processes or 1) > 1
        if spec is not None and several and spread.whole_batches(spec):
            raise BadOptionError(f"engine {name!r}: model {spec['name']} has "
                                 "BatchNormalization and trains in one process only")
    return names


def default_layout(spec, batch):
    """(processes, BLAS threads) ``convnet train`` would pick for ``spec`` at this moment."""
    layout = spread.choose(spec, batch)
    return layout.processes, layout.threads


def default_run(spec, batch):
    """What a fresh ``convnet train`` of ``spec`` at ``batch`` runs by default, decided now.

    ``convnet.parallel.layout.choose``'s choice: a model with
    BatchNormalization trains whole batches in one process; any other model
    has each batch cut into the fixed shards of ``default_micro_batch`` (so
    the weights never depend on the count), shared by the processes the
    idle processors allow, or by one process where MPI is missing.

    Returns
    -------
    processes : int
    threads : int
        BLAS threads per process.
    micro_batch : int or None
        Images per shard; None for whole batches.
    """
    layout = spread.choose(spec, batch)
    return layout.processes, layout.threads, layout.micro_batch


def _result_line(text, name):
    """The worker's JSON result: the last line of its output that holds one."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"the {name} benchmark worker printed no result")


def run_engine(name, job, processes, module=WORKER):
    """Run ``job`` (see ``worker.run_worker``) in fresh processes: ``processes`` MPI ranks or one.

    One process is a plain ``python -m convnet.apps.bench.worker JOB``; more
    are an MPI job started by ``distributed.launch``. Returns rank 0's result.
    ``module`` names another worker module taking one JSON job the same way.

    Raises
    ------
    RuntimeError
        The worker failed; the message ends with its last lines of error output.
    """
    from convnet.parallel import distributed
    argv = [json.dumps(job)]
    if processes == 1:
        done = subprocess.run([sys.executable, "-m", module, *argv],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"the {name} benchmark worker failed with exit status "
                               f"{done.returncode}:\n{tail}")
        return _result_line(done.stdout, name)
    output = io.BytesIO()
    status = distributed.launch(argv, processes, output=output, program=("-m", module))
    if status != 0:
        raise RuntimeError(f"the {name} benchmark job failed with exit status {status} "
                           f"(its error is above)")
    return _result_line(output.getvalue().decode(errors="replace"), name)


def measure_engines(spec, batch, optimizer, images, engines, seed=0):
    """One run: each engine in turn, in fresh processes; return {engine: result}.

    Each result is ``worker.run_worker``'s, ``processes`` being the number of
    processes the engine ran. The engines of no fixed count (``default``,
    ``default + burner``) run what ``default_run`` chose just before, the
    burner already running for ``default + burner``: that count of
    processes, sharing ``convnet train``'s fixed shards of each batch.
    """
    results = {}
    for name in check_engines(engines, spec):
        engine = TRAIN_ENGINES[name]
        job = {"kind": engine.kind, "spec": spec, "batch": batch, "optimizer": optimizer,
               "images": images, "micro_batch": engine.micro_batch, "seed": seed}
        with one_core_busy() if engine.burner else contextlib.nullcontext():
            if engine.processes is None:
                processes, threads, micro_batch = default_run(spec, batch)
                job = dict(job, micro_batch=micro_batch)
            else:
                processes, threads = engine.processes, 1
            results[name] = run_engine(name, dict(job, threads=threads), processes)
    return results


# ---------------------------------------------------------------- the table
def _seconds_text(seconds):
    """Seconds with two decimals below ten, one above: three significant figures or so."""
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
    never import TensorFlow): ``workload.WARMUP_STEPS`` untimed steps, then
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
        model_engines = engines if chosen or not spread.whole_batches(spec) else tuple(
            name for name in engines if (TRAIN_ENGINES[name].processes or 1) == 1)
        classes = output_classes(spec)
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
