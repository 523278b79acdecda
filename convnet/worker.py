"""One process of a run that ``convnet.train`` spread over several processes.

Usage: ``python -m convnet.worker CONFIG_JSON`` (``TrainConfig.to_json``),
started by ``convnet.train`` itself: as each rank of an MPI job
(``processes > 1``), or as each Keras worker (``workers > 1``, with the
worker's ``TF_CONFIG``).

The process trains as ``convnet.train`` does in it (a rank shares the steps,
a worker its slice of each batch) and speaks to the process that started
it through its standard output: each event of the run as one line of JSON
(only the run's writer has events), then, if it fails, one line naming the
error. An MPI rank reports a failure every rank meets alike (a diverged
training) from rank 0 alone and ends normally; any other failure ends the
whole job. A Keras worker's failure is one line on standard error, which the
launcher reports. Ctrl-C and SIGTERM end the process silently: the process
that started it was stopped too, and says so.
"""
import os
import signal
import sys
import traceback

from convnet import api
from convnet.errors import TrainingDivergedError, UserError
from convnet.parallel.distributed import DistributedJobError, abort_job_on_failure
from convnet.signals import Terminated
from convnet.training.config import TrainConfig
from convnet.training.events import to_line

EXIT_USER_ERROR = 2
EXIT_BUG = 70
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


def _terminate(signum, frame):
    raise Terminated


def main(argv=None):
    """Train as this process's part of the run; return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    config = TrainConfig.from_json(argv[0])
    signal.signal(signal.SIGTERM, _terminate)

    def send(event):
        print(to_line(event), flush=True)

    try:
        api.train(config, on_event=send)
        return 0
    except (KeyboardInterrupt, Terminated) as stop:
        sys.stdout.flush()
        sys.stderr.flush()
        # Leaving without MPI's goodbye makes mpiexec stop every rank quietly.
        os._exit(EXIT_INTERRUPTED if isinstance(stop, KeyboardInterrupt) else EXIT_TERMINATED)
    except UserError as error:
        rank, size = api.job_position()
        alike = isinstance(error, (TrainingDivergedError, DistributedJobError))
        if config.backend == "keras":
            print(f"convnet: error: {error}", file=sys.stderr, flush=True)
        elif rank == 0 or not alike:
            print(api.failure_line(error, rank, size), flush=True)
        if not alike:
            abort_job_on_failure(EXIT_USER_ERROR)
        return EXIT_USER_ERROR
    except Exception as error:  # noqa: BLE001 -- a bug: its traceback, and the job ends
        traceback.print_exc()
        print(f"convnet: internal error, a bug in convnet: {type(error).__name__}: {error}",
              file=sys.stderr, flush=True)
        abort_job_on_failure(EXIT_BUG)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
