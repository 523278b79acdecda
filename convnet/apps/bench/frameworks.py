"""The NumPy engine beside Keras, PyTorch and JAX: one epoch of each zoo network, in one run.

``python -m convnet.apps.bench.frameworks`` trains every model of
``--model`` for an epoch with every engine of ``--engine``, each in a fresh
process (``epoch_worker``), the engines taking turns within each of
``--runs`` rounds. All start from the same weights and take the same batches
in the same order; each reports its seconds and its accuracy on the
validation images afterwards, a check that all trained the same thing. The
table gives, per engine, the median seconds per epoch, the median of its
ratio to the NumPy engine's within each round, the arithmetic rate that
makes (FLOPs counted from the spec, ``flops``) against a large float32
matrix product's on this machine, the accuracy and the load average at the
start of each round.

PyTorch and JAX are optional (``make bench-frameworks`` installs them): an
engine whose framework is not installed is skipped, with a line saying so.
Nothing is downloaded: MNIST comes from the cache, CIFAR-10 too when the
user cached it, else synthetic 32x32x3 images stand in.
"""
import importlib.util
import os
import sys
from typing import NamedTuple

import numpy as np

from convnet.apps.bench.flops import GEMM_SIZE, gemm_gflops
from convnet.apps.bench.timing import format_table, load_average_text, machine_info
from convnet.apps.bench.train import run_engine
from convnet.apps.bench.workload import train_setting
from convnet.checks import check_count
from convnet.errors import BadOptionError, UserError
from convnet.nn.flops import training_flops
from convnet.parallel import layout as spread

WORKER = "convnet.apps.bench.epoch_worker"
MODELS = ("lenet5", "mlp", "mnist-cnn", "cifar-cnn")


class FrameworkEngine(NamedTuple):
    """One way of training, as the worker runs it.

    ``kind`` is the worker's engine (``convnet``, ``keras``, ``pytorch``,
    ``jax``); ``threads`` the most threads it may use, None for its own
    default; ``module`` the Python module it needs; ``processes`` (for
    ``convnet``) the processes asked for, None for the layout ``convnet
    train`` picks at that moment. One ``convnet`` process computes its
    shards on a thread per idle processor, or on one thread with
    ``threads`` 1. ``exchange`` False: the ranks' steps without their
    exchange, a bound of the layout (``epoch_worker._step_without_exchange``).
    """

    kind: str
    threads: int | None
    module: str
    processes: int | None = None
    exchange: bool = True


ENGINES = {
    "convnet": FrameworkEngine("convnet", None, "numpy"),
    "convnet 1 process": FrameworkEngine("convnet", None, "numpy", processes=1),
    "convnet 1 thread": FrameworkEngine("convnet", 1, "numpy", processes=1),
    "convnet without exchange": FrameworkEngine("convnet", None, "numpy", exchange=False),
    "keras": FrameworkEngine("keras", None, "tensorflow"),
    "keras 1 thread": FrameworkEngine("keras", 1, "tensorflow"),
    "pytorch": FrameworkEngine("pytorch", None, "torch"),
    "pytorch 1 thread": FrameworkEngine("pytorch", 1, "torch"),
    "jax": FrameworkEngine("jax", None, "jax"),
    "jax 1 thread": FrameworkEngine("jax", 1, "jax"),
}
DEFAULT_ENGINES = ("convnet", "convnet 1 process", "keras", "pytorch", "jax")
ONE_CORE_ENGINES = ("convnet 1 thread", "keras 1 thread", "pytorch 1 thread", "jax 1 thread")
# What a framework is called in the skip message, and where it comes from.
INSTALL_HINTS = {"tensorflow": ("TensorFlow", "pip install -e '.[tf]'"),
                 "torch": ("PyTorch", "make bench-frameworks"),
                 "jax": ("JAX", "make bench-frameworks")}
FRAMEWORK_HEADERS = ["engine", "layout", "s/epoch", "/ convnet", "GFLOP/s", "% of product",
                     "validation accuracy", "load average at start"]


def check_engine_names(names):
    """Return the engine names as a tuple, or raise BadOptionError naming the unknown one."""
    names = tuple(names)
    if not names:
        raise BadOptionError("engine must name at least one engine, received none")
    for name in names:
        if name not in ENGINES:
            raise BadOptionError(f"engine must be one of {', '.join(map(repr, ENGINES))}, "
                                 f"received {name!r}")
    return names


def skip_message(name, python=None):
    """The line saying engine ``name`` is skipped because its framework is not installed."""
    framework, hint = INSTALL_HINTS[ENGINES[name].module]
    return (f"{name}: skipped, {framework} is not installed in {python or sys.executable} "
            f"(`{hint}` installs it)")


def split_installed(names, installed=None):
    """Split engine names into those whose framework is installed and the skip messages.

    ``installed(module)`` tells whether a module can be imported (default: it
    is found on the path, without importing it).
    """
    installed = installed or (lambda module: importlib.util.find_spec(module) is not None)
    ready, skipped = [], []
    for name in names:
        if installed(ENGINES[name].module):
            ready.append(name)
        else:
            skipped.append(skip_message(name))
    return ready, skipped


def _job(name, spec, batch, optimizer, steps, seed):
    """The worker's job for engine ``name`` and the number of processes to run it in."""
    engine = ENGINES[name]
    job = {"engine": engine.kind, "spec": spec, "batch": batch, "optimizer": optimizer,
           "steps": steps, "seed": seed}
    if engine.kind != "convnet":
        return dict(job, threads=engine.threads), 1
    # What `convnet train` runs: its default layout, or that layout's cut in one process.
    layout = spread.choose(spec, batch, processes=engine.processes)
    return dict(job, blas_threads=layout.threads, micro_batch=layout.micro_batch,
                shard_threads=engine.threads or layout.shard_threads,
                exchange=engine.exchange), layout.processes


def measure_round(spec, batch, optimizer, steps, engines, seed=0, log=None):
    """One round: each engine in turn, in fresh processes; return {engine: result}.

    Each result is the worker's (``epoch_worker.run_epoch``) with ``load``
    added, the machine's 1-minute load average just before the engine
    started, or ``{"error": text, "load": ...}`` if the engine failed.
    """
    results = {}
    for name in engines:
        load = os.getloadavg()[0]
        job, processes = _job(name, spec, batch, optimizer, steps, seed)
        try:
            results[name] = dict(run_engine(name, job, processes, module=WORKER), load=load)
        except (RuntimeError, UserError) as error:
            results[name] = {"error": str(error), "load": load}
        if log is not None:
            log(_round_line(spec["name"], name, results[name]))
    return results


def _round_line(model, name, result):
    if "error" in result:
        return f"{model}, {name}: failed ({result['error'].splitlines()[-1]})"
    seconds = result["seconds"] * result["total"] / result["images"]
    return (f"{model}, {name}: {seconds_text(seconds)} s/epoch, validation accuracy "
            f"{accuracy_text(result)}, load {result['load']:.2f} at start")


def accuracy_text(result):
    """``"0.9785"``; ``"-"`` for a run that trained no model (steps without exchange)."""
    return "-" if result["accuracy"] is None else f"{result['accuracy']:.4f}"


def seconds_text(seconds):
    """Seconds with two decimals below ten, one above."""
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def layout_text(result):
    """``"2 processes"``, ``"1 process, 2 threads"``, ``"1 thread"``: how an engine ran."""
    processes, threads = result.get("processes", 1), result.get("threads", 1)
    parts = [f"{processes} process{'es' if processes > 1 else ''}"] if processes > 1 else []
    parts.append(f"{threads} thread{'s' if threads > 1 else ''}")
    return ", ".join(parts)


def framework_rows(rounds, flops_per_epoch, gemm_rates, reference="convnet"):
    """The table's rows for one model, in ``FRAMEWORK_HEADERS`` order.

    Parameters
    ----------
    rounds : list of dict
        One ``measure_round`` result per round, the same engines in each.
    flops_per_epoch : int
        The model's FLOPs in an epoch (``flops.training_flops``).
    gemm_rates : dict
        GFLOP/s of the reference product: ``"all"`` with NumPy's default
        threads, ``"one"`` with one thread. An engine running on one core
        is compared with the latter, any other with the former.
    reference : str
        The engine the ratios divide by (the first engine when it is absent).

    Returns
    -------
    list of list of str
        One row per engine, in the rounds' order. Seconds are medians over
        the rounds, scaled from the timed images to the epoch; the layout
        names each distinct one the rounds ran (``convnet`` decides its own
        each time); the ratio is the median of each round's ratio to the
        reference; the rate is the
        epoch's FLOPs over the median seconds; accuracies and loads are
        listed round by round (the accuracy once if every round gave it).
    """
    names = list(rounds[0])
    if reference not in names:
        reference = names[0]
    rows = []
    for name in names:
        results = [measured[name] for measured in rounds]
        loads = ", ".join(f"{result['load']:.1f}" for result in results)
        good = [result for result in results if "error" not in result]
        if not good:
            rows.append([name, "", "failed", "", "", "", "", loads])
            continue
        seconds = float(np.median([_epoch_seconds(result) for result in good]))
        ratios = [_epoch_seconds(measured[name]) / _epoch_seconds(measured[reference])
                  for measured in rounds
                  if "error" not in measured[name] and "error" not in measured[reference]]
        rate = flops_per_epoch / seconds / 1e9
        cores = good[0].get("processes", 1) * good[0].get("threads", 1)
        product = gemm_rates["all" if cores > 1 else "one"]
        accuracies = [accuracy_text(result) for result in good]
        accuracy = (accuracies[0] if len(set(accuracies)) == 1 else ", ".join(accuracies))
        layouts = list(dict.fromkeys(layout_text(result) for result in good))
        rows.append([name, "; ".join(layouts), seconds_text(seconds),
                     f"{np.median(ratios):.2f}" if ratios else "", f"{rate:.1f}",
                     f"{100 * rate / product:.0f} %", accuracy, loads])
    return rows


def _epoch_seconds(result):
    return result["seconds"] * result["total"] / result["images"]


def measure_gemm(size=GEMM_SIZE):
    """The reference product's rate: ``{"all": GFLOP/s with default threads, "one": ...}``."""
    return {"all": gemm_gflops(size), "one": gemm_gflops(size, threads=1)}


def bench_frameworks(models=MODELS, engines=DEFAULT_ENGINES, runs=3, steps=None, seed=0,
                     log=print):
    """Train every model for an epoch with every engine, ``runs`` interleaved rounds each.

    Parameters
    ----------
    models : sequence of str
        Zoo names or spec.json paths.
    engines : sequence of str
        Names of ``ENGINES``; those whose framework is not installed are
        skipped (``log`` says so).
    runs : int
        Rounds per model; the table gives medians.
    steps : int, optional
        Time only the epoch's first ``steps`` batches and scale to the
        epoch (the accuracy is then that after those batches).
    seed : int
        Seed of the initial weights and of the epoch's order.
    log : callable
        Receives progress lines.

    Returns
    -------
    list of dict
        One per model: ``name``, ``batch``, ``optimizer``, ``flops`` (per
        epoch), ``images`` (in the epoch), ``source`` (of the data),
        ``rounds`` (raw results), ``rows`` (``framework_rows``).
    """
    check_count("runs", runs)
    if steps is not None:
        check_count("steps", steps)
    engines = check_engine_names(engines)
    settings = [train_setting(model) for model in models]
    ready, skipped = split_installed(engines)
    for line in skipped:
        log(line)
    if not ready:
        raise BadOptionError("engine: none of the engines named can run here")
    gemm = measure_gemm()
    log(f"NumPy float32 product of two {GEMM_SIZE}x{GEMM_SIZE} matrices: "
        f"{gemm['all']:.0f} GFLOP/s with its default threads, {gemm['one']:.0f} with one "
        f"({load_average_text()})")
    results = []
    for spec, batch, optimizer in settings:
        rounds = []
        for run in range(runs):
            log(f"{spec['name']} round {run + 1}/{runs}, {load_average_text()}")
            rounds.append(measure_round(spec, batch, optimizer, steps, ready, seed, log))
        first = next((result for measured in rounds for result in measured.values()
                      if "error" not in result), None)
        images = first["total"] if first else 0
        flops = training_flops(spec, images)
        results.append({"name": spec["name"], "batch": batch, "optimizer": optimizer,
                        "flops": flops, "images": images,
                        "source": first["source"] if first else "", "rounds": rounds,
                        "rows": framework_rows(rounds, flops, gemm), "gemm": gemm})
    return results


def framework_versions():
    """``"PyTorch 2.13.0+cpu, JAX 0.10.2"``: the installed versions, read without importing them."""
    from importlib import metadata
    found = []
    for package, name in (("torch", "PyTorch"), ("jax", "JAX")):
        try:
            found.append(f"{name} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def model_heading(result):
    """The line above a model's table: batch, optimizer, data, FLOPs."""
    per_image = result["flops"] / max(result["images"], 1)
    return (f"{result['name']}: batch {result['batch']}, {result['optimizer']}, an epoch of "
            f"{result['images']:,} images ({result['source']}); {per_image / 1e6:.2f} MFLOP "
            f"per image forward and backward, {result['flops'] / 1e9:.1f} GFLOP per epoch")


def main(argv=None):
    """``python -m convnet.apps.bench.frameworks``: the table, model by model."""
    import argparse
    parser = argparse.ArgumentParser(
        prog="python -m convnet.apps.bench.frameworks",
        description="An epoch of each zoo network with the NumPy engine, Keras, PyTorch and "
                    "JAX, from the same weights on the same batches; medians of interleaved "
                    "rounds, rates against a large matrix product, validation accuracy.")
    parser.add_argument("--model", action="append", metavar="NAME",
                        help=f"a zoo name or spec.json, repeatable (default: {', '.join(MODELS)})")
    parser.add_argument("--engine", action="append", metavar="NAME",
                        help="repeatable: " + ", ".join(map(repr, ENGINES))
                        + f" (default: {', '.join(DEFAULT_ENGINES)})")
    parser.add_argument("--one-core", action="store_true",
                        help="every engine on one core: " + ", ".join(ONE_CORE_ENGINES))
    parser.add_argument("--runs", type=int, default=3, help="rounds per model (default 3)")
    parser.add_argument("--steps", type=int, default=None,
                        help="time only the first N batches of the epoch, scaled to it "
                             "(default: the whole epoch)")
    args = parser.parse_args(argv)
    if args.engine and args.one_core:
        parser.error("--engine and --one-core choose the engines both: give one of them")
    engines = args.engine or (ONE_CORE_ENGINES if args.one_core else DEFAULT_ENGINES)
    try:
        check_count("--runs", args.runs)
        if args.steps is not None:
            check_count("--steps", args.steps)
        check_engine_names(engines)
        for model in args.model or MODELS:
            train_setting(model)
    except (UserError, ValueError) as error:
        parser.error(str(error))
    print(f"{machine_info()}, {framework_versions()}", flush=True)
    results = bench_frameworks(args.model or MODELS, engines, args.runs, args.steps,
                               log=lambda line: print(line, flush=True))
    for result in results:
        print(f"\n{model_heading(result)}")
        print(format_table(FRAMEWORK_HEADERS, result["rows"]))
    print("\n/ convnet: the median of each round's ratio to the NumPy engine's seconds. "
          "GFLOP/s: the products' FLOPs of the epoch (2 per multiply-add, forward and "
          "backward, from the spec) over the median seconds; % of product: of the float32 "
          "product's rate with the same number of cores.")


if __name__ == "__main__":
    main()
