"""``convnet train``: the options become a ``TrainConfig``, the run's events become lines.

What the command prints, all from the events of ``convnet.train``: the run's
banner, task 4's line after every epoch, the final accuracies and where the
files are; a progress bar on standard error while an epoch trains; with
``--serve``, the page of ``convnet serve`` fed with the weights as they
change (Watch training), then serving the trained weights until Ctrl-C
(``--serve-exit``: ending with the run). The picture of the history's curves is drawn here,
once the run is over.
"""
import dataclasses
import sys
import time
from pathlib import Path

from convnet.apps.cli.options import (
    OPTIMIZERS,
    SEED_LIMIT,
    Command,
    add_dataset_options,
    non_negative_int,
    note,
    positive_float,
    positive_int,
    say,
    seed_int,
    unit_float,
)
from convnet.errors import BadOptionError
from convnet.training import events
from convnet.training.checkpoint import HISTORY_KEYS
from convnet.training.config import TrainConfig

# The option of each TrainConfig field: the field's name without its underscores' dashes.
FIELDS = ("model", "dataset", "data", "backend", "epochs", "batch_size", "optimizer", "lr",
          "momentum", "keep", "seed", "out", "resume", "overwrite", "limit", "processes",
          "micro_batch", "workers", "serve", "serve_port", "serve_every")


def configure(parser):
    parser.add_argument("--backend", choices=("numpy", "tf1", "keras"),
                        help="numpy: the project's own engine (default); keras: the Keras "
                             "twin of --model, trained by Keras's fit; tf1: task 4's "
                             "TensorFlow graph of LeNet-5, built from the lenet5 spec")
    parser.add_argument("--model", metavar="NAME",
                        help="a zoo name (lenet5, lenet5-classic, mlp, mnist-cnn, cifar-cnn, "
                             "happy-model, signs-cnn) or a spec.json (default: lenet5); "
                             "--backend tf1 trains lenet5 only")
    add_dataset_options(parser)
    parser.add_argument("--epochs", type=non_negative_int)
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument("--optimizer", choices=OPTIMIZERS,
                        help="numpy and keras backends: the optimizer, with Keras's defaults "
                             "(default: the model's own, adam if its spec names none)")
    parser.add_argument("--lr", type=positive_float,
                        help="learning rate (default: Keras's for the optimizer: 0.001 for adam "
                             "and rmsprop, 0.01 for sgd)")
    parser.add_argument("--momentum", type=unit_float,
                        help="numpy backend: momentum of sgd or rmsprop, in [0, 1) (default 0)")
    parser.add_argument("--augment", choices=("flip", "shift"), action="append", default=None,
                        help="numpy backend, repeatable: change the training images at random "
                             "at every step: flip mirrors half of them left to right, shift "
                             "moves each by up to 2 pixels (for Fashion-MNIST and CIFAR-10; a "
                             "mirrored digit is another digit)")
    parser.add_argument("--keep", choices=("last", "best"),
                        help="numpy backend: best also keeps best.npz, the checkpoint of the "
                             "epoch with the best validation accuracy (default: last only)")
    parser.add_argument("--seed", type=seed_int,
                        help=f"random seed, 0 to {SEED_LIMIT - 1} (default: 0)")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder for checkpoint, history and plots "
                             "(default: runs/MODEL-BACKEND, e.g. runs/lenet5-numpy)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out (numpy backend)")
    parser.add_argument("--overwrite", action="store_true",
                        help="train afresh into an --out that already holds a run, replacing it")
    parser.add_argument("--limit", type=positive_int,
                        help="train on only the first N training images")
    parser.add_argument("--processes", type=positive_int,
                        help="numpy backend: MPI processes sharing the shards of each batch; "
                             "the count changes the speed, never the weights (default: one "
                             "per processor idle now, at most one per shard; one for a model "
                             "without convolution or with BatchNormalization; --resume of a "
                             "run of an earlier version keeps its cut). Under mpiexec, leave "
                             "it out: the job's ranks share the steps")
    parser.add_argument("--micro-batch", type=positive_int, metavar="N",
                        help="numpy backend: cut each batch into shards of N images, added in "
                             "a fixed order whatever --processes (default, for a model with "
                             "a convolution: two halves of a batch of 32 to 63 images, else "
                             "shards of 32; for a model of dense layers only: whole batches; "
                             "--resume keeps the run's own; N at least the batch size: whole "
                             "batches)")
    parser.add_argument("--workers", type=positive_int,
                        help="keras backend: train on N worker processes over loopback with "
                             "TensorFlow's MultiWorkerMirroredStrategy, each taking a share of "
                             "every batch (default 1: Keras's fit in this process); with "
                             "TF_CONFIG set, this process is the worker it names (see "
                             "docs/distributed.md)")
    parser.add_argument("--serve", action="store_true",
                        help="numpy backend: stream the loss, accuracy and first-layer filters "
                             "to the page of `convnet serve` (Watch training) on 127.0.0.1; "
                             "once training ends, the page serves the trained weights until "
                             "Ctrl-C")
    parser.add_argument("--serve-port", type=positive_int,
                        help="port of --serve's page (default 8000)")
    parser.add_argument("--serve-every", type=positive_int, metavar="N",
                        help="--serve sends an update every N steps (default 50)")
    parser.add_argument("--serve-exit", action="store_true",
                        help="with --serve: end the command (and the page) when training "
                             "ends, instead of serving until Ctrl-C (for scripts)")
    # The option of each field defaults to the field's own default: TrainConfig states them
    # once, for this command and the library's callers alike.
    parser.set_defaults(**{field.name: field.default for field in dataclasses.fields(TrainConfig)
                           if field.name in FIELDS})


def config_of(args):
    """The ``TrainConfig`` of the parsed ``convnet train`` options."""
    values = {field: getattr(args, field) for field in FIELDS}
    return TrainConfig(augment=tuple(args.augment or ()), **values)


def run(args):
    """``convnet train``: train as the options say, printing the run's events."""
    from convnet import api
    if args.serve_exit and not args.serve:
        raise BadOptionError("{serve_exit} ends the page of {serve}: add {serve}, or leave "
                             "{serve_exit} out", fields=("serve_exit", "serve"))
    config = config_of(args)
    printer = RunPrinter(config)
    try:
        try:
            api.train(config, on_event=printer, progress=True)
        except BaseException as error:
            printer.stopped(error)
            raise
        if not args.serve_exit:
            printer.serve_until_interrupted()
    finally:
        printer.close()


COMMAND = Command("train", configure, run,
                  help="train a network (NumPy: any zoo model or spec; TF / Keras: LeNet-5)")


def save_history_plot(history, path, first_epoch, log=None):
    """Draw a history's curves; return the PNG path, or None without matplotlib.

    matplotlib is an optional dependency, so a missing one skips the figure
    with a note (one line sent to ``log``, if given), not an error.
    """
    try:
        from convnet.apps.pictures.plots import plot_history
    except ImportError as error:
        if log is not None:
            log(f"history plot skipped: {error}")
        return None
    return plot_history({key: history[key] for key in HISTORY_KEYS}, path,
                        first_epoch=first_epoch)


def banner(event):
    """The first line of a run: what is trained, on what, and how."""
    common = (f"training {event.model} ({event.backend}) on {event.train_size} {event.dataset} "
              f"images, {events.epochs_text(event.epochs)}, batch {event.batch_size}")
    if event.backend != "numpy":
        rate = f"lr {event.lr}" if event.lr is not None else "Keras's default lr"
        workers = ("" if event.workers is None else
                   f", {event.workers} worker{'s' if event.workers > 1 else ''}")
        return f"{common}, {event.optimizer}, {rate}, seed {event.seed}{workers}"
    how = f"{event.processes} process{'es' if event.processes > 1 else ''}"
    if event.shard_threads > 1:
        how += f" computing {event.shard_threads} shards at once"
    if event.micro_batch is not None:
        how += f", micro-batches of {event.micro_batch}"
    if event.threads > 1:
        how += f", {event.threads} BLAS threads"
    if event.augment:
        how += f", augment {event.augment}"
    return f"{common}, {event.optimizer} lr {event.lr:g}, seed {event.seed}, {how}"


class RunPrinter:
    """The ``on_event`` of ``convnet train``: prints the events, draws the bar, feeds the page.

    Parameters
    ----------
    config : TrainConfig
        The run's (``serve``, ``serve_port`` and ``serve_every`` for the page).
    """

    def __init__(self, config):
        self.config = config
        self.started = None
        self._bar = self._bar_epoch = None
        self.watcher = self.server = self.mirror = None
        self.last_epoch = 0

    def __call__(self, event):
        """Show one event."""
        if isinstance(event, events.StepEnded):
            self._step(event)
        elif isinstance(event, events.Snapshot):
            self._snapshot(event)
        elif isinstance(event, events.EpochEnded):
            self._close_bar()
            say(event.line())
            self.last_epoch = event.epoch
            if self.watcher is not None and event.epoch > 0:
                self.watcher.publish(event.epoch)   # the page shows each epoch's final weights
        elif isinstance(event, events.RunStarted):
            self.started = event
            if event.resumed_from is not None:
                say(f"resuming from {event.resumed_from} after epoch {event.start_epoch}")
            say(banner(event))
        elif isinstance(event, events.Note):
            say(event.text)
        elif isinstance(event, events.RunFinished):
            self._close_bar()
            self._finished(event)
            if self.watcher is not None:
                self.watcher.finish(self.last_epoch, event.valid_accuracy, event.test_accuracy,
                                    event.files)

    def stopped(self, error):
        """Tell the page that the run stopped before its end, and why (one line)."""
        if self.watcher is None:
            return
        if isinstance(error, KeyboardInterrupt):
            reason = "interrupted (Ctrl-C)"
        else:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            reason = reason or type(error).__name__
        self.watcher.stop(reason)

    def serve_until_interrupted(self):
        """Keep the page up on the trained weights until Ctrl-C (``KeyboardInterrupt``)."""
        if self.server is None:
            return
        say(f"training finished; serving {self.server.url.rstrip('/')} until Ctrl-C")
        while True:
            time.sleep(3600)

    def close(self):
        """Take down the bar and the page (the run is over, or stopped)."""
        self._close_bar()
        if self.server is not None:
            self.server.stop()
            self.server = None

    # ------------------------------------------------------------ steps
    def _step(self, event):
        if self._bar_epoch != event.epoch:
            self._close_bar()
            self._bar_epoch = event.epoch
            self._bar = _progress_bar(f"epoch {event.epoch}/{event.epochs}", event.steps)
        if self._bar is not None:
            self._bar.update(1)
        if self.watcher is not None:
            self.watcher(event.epoch, event.loss)

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
        self._bar = self._bar_epoch = None

    def _snapshot(self, event):
        if self.mirror is None:
            self._serve(event.weights)
        else:
            self.mirror.set_weights(event.weights)

    def _serve(self, weights):
        """Start the page of ``convnet serve`` for this run, on the weights it starts from."""
        from convnet import data
        from convnet.apps.page import serve
        from convnet.nn.sequential import Sequential
        config = self.config
        self.mirror = Sequential(self.started.spec, seed=0)
        self.mirror.set_weights(weights)
        arrays = data.load_dataset(config.dataset, config.data)
        self.watcher, self.server = serve.watch_training(
            self.mirror, arrays[2], arrays[3], port=config.serve_port, every=config.serve_every,
            class_names=data.class_names(config.dataset, config.data, short=True),
            dataset=config.dataset, load=lambda: arrays)
        say(f"watch the training on {self.server.url} (Watch training)")

    # ------------------------------------------------------------ the end
    def _finished(self, run):
        """The final lines: accuracies, training time, files (and the picture of the history)."""
        files = dict(run.files)
        numpy_run = "checkpoint" in files
        plot = None
        if numpy_run:
            # The first entry of the history is the untrained network (epoch 0).
            plot = save_history_plot(run.history, Path(self.config.out) / "history.png",
                                     run.plot_from, log=note)
        print(f"validation accuracy {run.valid_accuracy:.4f}, "
              f"test accuracy {run.test_accuracy:.4f}")
        if run.seconds_per_epoch is not None:
            print(f"training time {run.seconds_per_epoch:.1f} s per epoch "
                  f"({run.train_size} images, batch {run.batch_size})")
        if numpy_run:
            where = f"checkpoint: {files['checkpoint']}"
            if "best" in files:
                where += f", best: {files['best']} (epoch {run.best_epoch})"
            where += f", history: {files['history']}"
            print(where + (f", plot: {plot}" if plot is not None else ""), flush=True)
            return
        written = list(files.values())
        if run.plot_from is not None:
            plot = save_history_plot(run.history, Path(self.config.out) / "history.png",
                                     run.plot_from, log=note)
            if plot is not None:
                written.append(str(plot))
        print("wrote " + ", ".join(written), flush=True)


def _progress_bar(description, total):
    """A tqdm bar on standard error, or None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(desc=description, total=total, unit="batch", leave=False, file=sys.stderr,
                mininterval=0.5)
