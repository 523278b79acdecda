"""The ``convnet`` command line: one sub-command per job.

Each sub-command (one module of this package per group: ``data``, ``train``,
``models``, ``bench``, each declaring its commands as ``options.Command``)
parses its arguments, calls the library function that does the work
(TensorFlow is imported only by the commands that use it), and prints what
comes back. A library error that names the caller's fields
(``convnet.errors.UserError.fields``) is shown with the flags of those
fields (``batch_size`` -> ``--batch-size``).

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

from convnet.apps.cli import bench, data, models, train
from convnet.apps.cli.bench import bench_engines as _bench_engines  # noqa: F401 -- read by tests
from convnet.apps.cli.options import flag
from convnet.errors import UserError
from convnet.signals import Terminated

# Exit statuses (see the module's docstring).
EXIT_USER_ERROR = 2
EXIT_TRAINING_PROCESS = 1
EXIT_BUG = 70
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

# Each sub-command by its name, in the order `convnet --help` lists them.
COMMANDS = {command.name: command for command in (
    data.COMMAND, train.COMMAND, models.EVALUATE, models.PREDICT, models.SUMMARY, models.SHOW,
    models.FILTERS, bench.COMMAND, models.SERVE)}


def build_parser():
    """Return the ``convnet`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="convnet", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of every error, user mistakes included")
    parser.add_argument("--verbose", action="store_true",
                        help="let TensorFlow print its C++ and absl log lines")
    parser.add_argument("--memory-budget", metavar="SIZE", type=memory_size, default=None,
                        help="memory a model's weights and activations may take, e.g. 8GiB "
                             "(default: $CONVNET_MEMORY_BUDGET, else 4GiB); a spec that needs "
                             "more is refused before anything is allocated")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS.values():
        command_parser = sub.add_parser(command.name, help=command.help,
                                        description=command.description)
        command.configure(command_parser)
        command_parser.set_defaults(run=command.run)
    return parser


def memory_size(text):
    """argparse type: a size such as 8GiB, kept as the text the library reads."""
    from convnet.nn.limits import parse_size
    try:
        parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


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
    _quiet_tensorflow(args.verbose)
    if args.memory_budget is not None:
        # Through the environment, so that the ranks and workers of a run keep it too.
        from convnet.nn.limits import MEMORY_BUDGET_VARIABLE
        os.environ[MEMORY_BUDGET_VARIABLE] = args.memory_budget
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

    In a rank of an MPI job (``mpiexec ... convnet train``), an error every
    rank meets alike at the same step (a diverged training, another rank's
    failure) is told by rank 0 alone and ends each rank normally. Any other
    failure is told by the rank that met it, naming the rank, and ends the
    whole job (``MPI_Abort``): the other ranks would wait for it for ever.
    """
    status, collective = _outcome(args)
    if status and not collective and _job_position()[1] > 1:
        from convnet.parallel.job import abort_job_on_failure
        abort_job_on_failure(status)
    return status


def _job_position():
    """(rank, size) of this process in the MPI job it trains in, or (0, 1)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        return 0, 1
    return mpi.COMM_WORLD.Get_rank(), mpi.COMM_WORLD.Get_size()


def _tell(message, collective=False):
    """Print a one-line outcome on standard error, as the rank of a job should."""
    rank, size = _job_position()
    if size > 1:
        if collective and rank != 0:
            return
        if rank != 0:
            message = message.replace("convnet:", f"convnet (rank {rank} of {size}):", 1)
    print(message, file=sys.stderr)


def _outcome(args):
    """Run the sub-command; return (exit status, whether every rank of a job ends alike)."""
    from convnet.errors import TrainingDivergedError
    from convnet.parallel.job import DistributedJobError
    try:
        return args.run(args) or 0, False
    except KeyboardInterrupt:
        _tell("convnet: interrupted")
        return EXIT_INTERRUPTED, False
    except Terminated:
        _tell("convnet: terminated")
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
        _tell(f"convnet: error: {error.render(flag)}", collective=collective)
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
