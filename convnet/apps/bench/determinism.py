"""The price of a load-independent default: its epoch against the fastest layout of before.

``python -m convnet.apps.bench.determinism [--model NAME ...] [--runs N] [--steps S]``

``convnet train`` cuts every batch into shards of
``default_micro_batch(batch_size)`` images whatever the number of
processes, so a command gives the same weights on a quiet machine (where
the default takes two ranks) and on a busy one (one process). Before, each
layout cut the batch its own way: whole batches in one process, one slice
per rank in two. This benchmark times, in the same run and in fresh
processes, the engines of ``ENGINES``:

- ``1 process`` and ``2 ranks``: the earlier layouts (``DataParallel`` with
  ``micro_batch=None``, one slice per rank); the faster of the two in a run
  is *the fastest earlier layout*;
- ``default``: the deterministic default, with the number of processes
  it picks at that moment (``train.default_run``, the rule of ``convnet
  bench train``'s ``default`` engine);
- ``shards, 1 process`` and ``shards, 2 ranks``: the default's cut on each
  layout, whatever the load would choose.

Each run measures every engine twice: on the machine as it is, and while
another process keeps one core busy (``one_core_busy``), when the default
picks one process. Each engine trains ``steps`` batches after three untimed
ones (``convnet.apps.bench.worker``); seconds are scaled to the epoch of the
model's data. The ratio reported is the median over runs of each run's
``default`` over its fastest earlier layout.
"""
import contextlib
import sys

import numpy as np

from convnet.apps.bench.timing import format_table, load_average_text, machine_info, one_core_busy
from convnet.apps.bench.train import default_run, run_engine
from convnet.apps.bench.workload import bench_data_size, train_setting
from convnet.checks import check_count
from convnet.errors import BadOptionError, UserError

MODELS = ("lenet5", "mnist-cnn")
DEFAULT_STEPS = 200
DEFAULT_RUNS = 5
# The most the deterministic default may cost, as a multiple of the fastest earlier layout.
BUDGET = 1.05
# Engine name: (processes, or None for the default's choice now; the default's shards or not).
ENGINES = {
    "1 process": (1, False),
    "2 ranks": (2, False),
    "default": (None, True),
    "shards, 1 process": (1, True),
    "shards, 2 ranks": (2, True),
}
EARLIER = ("1 process", "2 ranks")
SCENARIOS = ("as it is", "one core busy")
HEADERS = ["model", "machine", "engine", "processes", "s/epoch", "CPU s/epoch, rank 0",
           "/ fastest earlier"]


def default_choice(spec, batch):
    """(processes, shard size) ``convnet train`` picks now for a fresh run of ``spec``.

    The same rule as ``convnet bench train``'s ``default`` engine
    (``train.default_run``).

    Raises
    ------
    BadOptionError
        A model with BatchNormalization: it trains whole batches in one
        process, so there is no cut to compare.
    """
    processes, _, shard = default_run(spec, batch)
    if shard is None:
        raise BadOptionError(f"model {spec['name']} has BatchNormalization and trains whole "
                             "batches in one process: it has no cut to compare")
    return processes, shard


def measure(spec, batch, optimizer, images, busy, seed=0):
    """One run of every engine in turn, on the machine as it is or with one core busy.

    Returns
    -------
    dict of str to dict
        Per engine, the worker's result (``seconds``, ``cpu_seconds``,
        ``processes``) for ``images`` images.
    """
    results = {}
    for name, (processes, sharded) in ENGINES.items():
        with one_core_busy() if busy else contextlib.nullcontext():
            chosen, shard = default_choice(spec, batch)
            job = {"kind": "numpy", "spec": spec, "batch": batch, "optimizer": optimizer,
                   "images": images, "micro_batch": shard if sharded else None, "seed": seed,
                   "threads": 1}
            results[name] = run_engine(name, job, processes or chosen)
    return results


def fastest_earlier(result):
    """The earlier layout that was fastest in one run's result, and its seconds."""
    name = min(EARLIER, key=lambda engine: result[engine]["seconds"])
    return name, result[name]["seconds"]


def rows_of(model, scenario, runs, scale):
    """Table rows of one model and scenario: medians over the runs, epoch-scaled seconds."""
    rows = []
    ratios = [run["default"]["seconds"] / fastest_earlier(run)[1] for run in runs]
    for name in ENGINES:
        seconds = np.median([run[name]["seconds"] for run in runs]) * scale
        cpu = np.median([run[name]["cpu_seconds"] for run in runs]) * scale
        counts = ", ".join(str(run[name]["processes"]) for run in runs)
        ratio = np.median([run[name]["seconds"] / fastest_earlier(run)[1] for run in runs])
        rows.append([model, scenario, name, counts, f"{seconds:.2f}", f"{cpu:.2f}",
                     f"{ratio:.2f}"])
    return rows, ratios


def cut_costs(runs):
    """Median ratios, clock and CPU, of the default's shards to the earlier cut, per layout."""
    costs = {}
    for layout, earlier in (("1 process", "1 process"), ("2 ranks", "2 ranks")):
        sharded = f"shards, {layout}"
        costs[layout] = tuple(
            float(np.median([run[sharded][key] / run[earlier][key] for run in runs]))
            for key in ("seconds", "cpu_seconds"))
    return costs


def bench_determinism(models=MODELS, steps=DEFAULT_STEPS, runs=DEFAULT_RUNS, log=print):
    """Time every engine of ``ENGINES`` for each model; tell ``log`` the runs, a table, the verdicts.

    The verdicts also give, per layout, what the default's shards cost
    against the earlier cut of that same layout, apart from which layout
    the default picked.

    Returns
    -------
    dict of (str, str) to float
        Per (model, scenario), the median ratio of the default to the
        fastest earlier layout.
    """
    check_count("steps", steps)
    check_count("runs", runs)
    settings = {model: train_setting(model) for model in models}
    for spec, batch, _ in settings.values():
        default_choice(spec, batch)   # refuses a model without a cut before any run
    log(machine_info())
    table, verdicts = [], {}
    for model in models:
        spec, batch, optimizer = settings[model]
        images = steps * batch
        scale = bench_data_size(spec["layers"][0]["shape"]) / images
        shard = default_choice(spec, batch)[1]
        log(f"{model}: batch {batch}, {optimizer}, shards of {shard}; {steps} steps a run, "
            f"scaled to the {bench_data_size(spec['layers'][0]['shape']):,}-image epoch")
        measured = {scenario: [] for scenario in SCENARIOS}
        for run in range(runs):
            for scenario in SCENARIOS:
                before = load_average_text()
                result = measure(spec, batch, optimizer, images, scenario == "one core busy")
                measured[scenario].append(result)
                times = ", ".join(f"{name} {result[name]['seconds'] * scale:.2f}"
                                  for name in ENGINES)
                log(f"{model} run {run + 1}/{runs}, {scenario} ({before}): {times}; default "
                    f"chose {result['default']['processes']}")
        for scenario in SCENARIOS:
            rows, ratios = rows_of(model, scenario, measured[scenario], scale)
            table += rows
            verdicts[model, scenario] = float(np.median(ratios)), cut_costs(measured[scenario])
    log(f"\n{load_average_text()} after the last run\n")
    log(format_table(HEADERS, table))
    log("")
    for (model, scenario), (ratio, layouts) in verdicts.items():
        met = "within" if ratio <= BUDGET else "over"
        costs = "; ".join(f"{layout} {clock:.2f} (CPU {cpu:.2f})"
                          for layout, (clock, cpu) in layouts.items())
        log(f"{model}, machine {scenario}: the deterministic default takes {ratio:.2f} times "
            f"the fastest earlier layout's epoch ({met} the {BUDGET:.2f} budget); its shards "
            f"against the earlier cut of the same layout: {costs}")
    return {key: ratio for key, (ratio, _) in verdicts.items()}


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        prog="python -m convnet.apps.bench.determinism",
        description="Epoch time of convnet train's load-independent default against the "
                    "fastest earlier layout (1 process or 2 ranks), in the same run.")
    parser.add_argument("--model", action="append", dest="models", metavar="NAME",
                        help=f"a zoo model (repeatable; default: {', '.join(MODELS)})")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help="timed steps per engine and run")
    args = parser.parse_args(argv)
    try:
        bench_determinism(tuple(args.models or MODELS), args.steps, args.runs,
                          log=lambda line: print(line, flush=True))
    except (UserError, ValueError) as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
