"""``convnet bench ops`` / ``convnet bench train``: the NumPy engine timed against TensorFlow."""
import os

from convnet.apps.cli.options import OPTIMIZERS, Command, flag, non_negative_int, positive_int
from convnet.errors import BadOptionError
from convnet.training.trainer import model_spec

# The options that only `convnet bench train` reads, keyed by field: each one's help says
# so, and `convnet bench ops` refuses each one given. --runs and --layers, which have
# defaults, are train's too: ops leaves them unread.
TRAIN_ONLY_OPTIONS = {
    "model": {"metavar": "NAME", "action": "append",
              "help": "a zoo name or spec.json, repeatable (default: mnist-cnn, mlp, cifar-cnn "
                      "and lenet5)"},
    "engine": {"metavar": "NAME", "action": "append",
               "help": "an engine, repeatable: '1 process', '1 process, micro-batch 16', "
                       "default, '2 ranks', 'default + burner', '1 process + burner', "
                       "'2 ranks + burner', keras, or all (default: all but the last two "
                       "burner engines)"},
    "steps": {"type": non_negative_int,
              "help": "time N steps and scale to an epoch; 0 times a whole epoch (default 200, "
                      "50 with --quick)"},
    "batch_size": {"type": positive_int,
                   "help": "default the model's course batch (mnist-cnn 64, mlp 128, else 32)"},
    "optimizer": {"choices": OPTIMIZERS,
                  "help": "default the model's own (rmsprop for mnist-cnn, mlp and cifar-cnn, "
                          "adam otherwise)"},
}


def configure(parser):
    parser.description = (
        "ops: the curriculum's convolution and LeNet-5's layers against TensorFlow. train: "
        "a training epoch of the NumPy engine (`convnet train`'s DataParallel, one BLAS "
        "thread) alone, as MPI ranks and as the default number of processes, against its "
        "Keras twin's fit, with the same optimizer, batch and initial weights; each engine "
        "in fresh processes, the engines taking turns within each run; per model a table "
        "of medians: seconds per epoch, ratio to Keras, processes and peak memory. The "
        "machine's other work makes every figure noisy: compare ratios measured in one run.")
    parser.add_argument("which", choices=("ops", "train"), help="what to measure")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and smaller inputs (train: 50 steps)")
    for field, keywords in TRAIN_ONLY_OPTIONS.items():
        parser.add_argument(flag(field), default=None,
                            **{**keywords, "help": "train: " + keywords["help"]})
    parser.add_argument("--runs", type=positive_int, default=1,
                        help="train: measure every engine N times, interleaved; the rows give "
                             "the medians (default 1)")
    parser.add_argument("--layers", action="store_true",
                        help="train: instead, time each layer of the NumPy step (first --model)")


BENCH_MODELS = ("mnist-cnn", "mlp", "cifar-cnn", "lenet5")


def bench_engines(names):
    """The engines ``--engine`` names (all for ``all``), or None for the default ones."""
    from convnet.apps.bench import bench
    if not names:
        return None
    engines = []
    for name in names:
        chosen = list(bench.TRAIN_ENGINES) if name == "all" else [name]
        engines += [engine for engine in chosen if engine not in engines]
    try:
        return bench.check_engines(engines)
    except ValueError as error:
        raise BadOptionError(f"--engine: {error}") from None


def run(args):
    from convnet.apps.bench import bench
    if args.which == "ops":
        for field in TRAIN_ONLY_OPTIONS:
            if getattr(args, field) is not None:
                raise BadOptionError(f"{flag(field)} is used with `convnet bench train` only")
        print(bench.machine_info(), flush=True)
        rows = bench.bench_ops(quick=args.quick, log=lambda line: print(line, flush=True))
        print(bench.format_table(bench.OPS_HEADERS, rows))
        return
    models = args.model or list(BENCH_MODELS)
    for model in models:
        model_spec(model)
    engines = bench_engines(args.engine)
    for model in models if engines is not None and not args.layers else ():
        try:
            bench.check_engines(engines, bench.train_setting(model)[0])
        except ValueError as error:
            raise BadOptionError(f"--engine: {error}") from None
    if args.steps is None:
        steps = 50 if args.quick else bench.DEFAULT_STEPS
    else:
        steps = args.steps or None
    print(bench.machine_info(), flush=True)
    if args.layers:
        rows, step_ms = bench.time_layers(models[0], steps=steps or 400,
                                          batch=args.batch_size, optimizer=args.optimizer)
        print(bench.layers_report(models[0], rows, step_ms))
        return
    print(f"{bench.load_average_text()} on {os.cpu_count()} processors; engines: "
          f"{', '.join(engines or bench.DEFAULT_ENGINES)}", flush=True)
    results = bench.bench_train(models, steps=steps, runs=args.runs, batch=args.batch_size,
                                optimizer=args.optimizer, engines=engines,
                                log=lambda line: print(line, flush=True))
    for result in results:
        runs = len(result["runs"])
        print(f"\n{result['name']}: {result['timed']}; medians of {runs} "
              f"run{'s' if runs > 1 else ''}; {result['loads'][0][0]} before, "
              f"{result['loads'][-1][1]} after")
        print(bench.format_table(bench.TRAIN_HEADERS, result["rows"]))
        if result["verdict"]:
            print(result["verdict"])
    print("\nNumPy: `convnet train`'s DataParallel, one BLAS thread per process; MPI ranks "
          "started by mpiexec; the burner is another process keeping one core busy, "
          "the default decided while it runs. Keras: fit, TensorFlow's default threads. "
          "Times exclude starting the processes; peak RSS includes each process's libraries "
          "and its copy of the data; CPU seconds are the first process's (all its threads).")


COMMAND = Command("bench", configure, run, help="time the NumPy engine against TensorFlow")
