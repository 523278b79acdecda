"""Clusters of Keras workers (``tf.distribute.MultiWorkerMirroredStrategy``): who, how started.

A Keras training run (``TrainConfig(backend="keras")``) trains as one worker
of a cluster when the ``TF_CONFIG`` environment variable describes one::

    {"cluster": {"worker": ["host-a:12345", "host-b:12345"]},
     "task": {"type": "worker", "index": 0}}

Every worker loads the same data, builds the same Keras twin inside the
strategy's scope and runs ``keras_cluster.train_cluster``'s loop: each
global batch (the same shuffled order on every worker) is cut into one contiguous slice per
worker, each worker computes the gradient of its slice's share of the
batch's mean loss, the strategy sums the gradients over the workers with
collective operations (gRPC between hosts), and every worker applies the
same optimizer step: the weights stay identical on every worker. Worker 0
is the chief: it alone reports and writes the run folder.

``workers=N`` without TF_CONFIG runs the cluster on this machine: ``run_workers`` picks free loopback ports, gives
each worker its TF_CONFIG and starts N worker processes (``python -m
convnet.worker`` with the run's config), streams the chief's output, and
stops them all when one fails. The training loop each worker runs is
``convnet.tf.keras_cluster``.
"""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from convnet.checks import check_count
from convnet.errors import BadOptionError, UserError
from convnet.parallel.job import die_with_parent

# Set by ``run_workers`` in the environment of the workers it starts, to the
# launcher's process id. It tells a worker that (1) the launcher already holds
# the run folder's lock, so the chief writes there without claiming it again;
# (2) the workers share this machine's processors, so each takes its share of
# TensorFlow's threads; (3) the worker is killed if the launcher dies.
LAUNCHER_ENV = "CONVNET_KERAS_LAUNCHER"
# A check used by the tests: when set to a folder, every worker, chief
# included, also writes its final weights there as ``worker-INDEX.npz``.
WORKER_WEIGHTS_ENV = "CONVNET_KERAS_WORKER_WEIGHTS"
ERROR_PREFIX = "convnet: error: "


class WorkerError(UserError, RuntimeError):
    """A Keras worker failed or stopped; the others were stopped too."""


# ---------------------------------------------------------------- the cluster
def cluster_task(environ=None):
    """Return ``(index, workers)`` of this process in the TF_CONFIG cluster, or None.

    Parameters
    ----------
    environ : mapping, optional
        Default ``os.environ``.

    Raises
    ------
    BadOptionError
        TF_CONFIG is set but does not describe a cluster of workers with this
        process's index among them (one line saying what is wrong).
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as error:
        raise BadOptionError(f"TF_CONFIG is not valid JSON: {error}") from None
    try:
        cluster, task = config["cluster"], config["task"]
        hosts, kind, index = cluster["worker"], task["type"], task["index"]
    except (KeyError, TypeError) as error:
        raise BadOptionError(f"TF_CONFIG must give cluster.worker (a list of host:port) and "
                             f"task.type and task.index; missing {error}") from None
    if set(cluster) != {"worker"} or kind != "worker":
        raise BadOptionError("TF_CONFIG may list workers only (no chief, ps or evaluator "
                             f"tasks): worker 0 is the chief; received cluster {sorted(cluster)} "
                             f"and task type {kind!r}")
    if not isinstance(hosts, list) or not hosts:
        raise BadOptionError(f"TF_CONFIG's cluster.worker must be a non-empty list of "
                             f"host:port, received {hosts!r}")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(hosts):
        raise BadOptionError(f"TF_CONFIG's task.index must be an integer from 0 to "
                             f"{len(hosts) - 1}, received {index!r}")
    return index, len(hosts)


def claims_run_folder(environ=None):
    """Whether this Keras training process must claim its run folder.

    A process outside a cluster and a chief started by hand claim it; the
    other workers write nothing, and a chief started by ``run_workers``
    writes under its launcher's claim.
    """
    environ = os.environ if environ is None else environ
    task = cluster_task(environ)
    return task is None or (task[0] == 0 and LAUNCHER_ENV not in environ)


def check_spec(spec, workers):
    """Refuse a model several workers cannot train as one process would.

    Raises
    ------
    BadOptionError
        ``workers`` > 1 and ``spec`` has BatchNormalization, whose batch
        statistics need each batch whole (each worker would normalise its
        own slice with its own statistics).
    """
    if workers > 1 and any(layer["layer"] == "BatchNormalization" for layer in spec["layers"]):
        raise BadOptionError(f"a model with BatchNormalization trains on one worker only (its "
                             f"batch statistics need each batch whole), received {{workers}} "
                             f"{workers} with {{model}} {spec['name']}",
                             fields=("workers", "model"))


def free_ports(count):
    """Return ``count`` distinct TCP ports free on the loopback interface right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def loopback_configs(workers):
    """Return the TF_CONFIG text of each of ``workers`` workers on free loopback ports.

    ``workers`` is a count already checked (``run_workers`` checks its own).
    """
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(workers)]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            for index in range(workers)]


# ---------------------------------------------------------------- the launcher
def run_workers(command, workers, log, timeout=None, program=None):
    """Run ``workers`` copies of a command as a cluster on loopback; wait for all of them.

    Parameters
    ----------
    command : list of str
        The arguments of ``program`` every worker runs (see ``worker_command``).
    workers : int
        Number of worker processes, >= 1.
    log : callable
        Receives each line the chief (worker 0) prints, as it prints it,
        without its newline. The other workers' output is kept only to
        report a failure.
    timeout : float, optional
        Seconds after which the workers are stopped (default: none).
    program : list of str, optional
        What runs the command (default: this Python's ``-m convnet.worker``).

    Raises
    ------
    WorkerError
        A worker failed or was killed, or the time ran out; every worker was
        stopped. One line: ``Keras worker I of N stopped: <its last error
        line, or the signal that killed it>``.
    """
    check_count("workers", workers)
    program = list(program or [sys.executable, "-m", "convnet.worker"])
    env = dict(os.environ, **{LAUNCHER_ENV: str(os.getpid())})
    processes, timed_out = [], False
    relay = _LineRelay(log)
    with contextlib.ExitStack() as files:
        # Files, not pipes, for what nobody reads live: a worker must never block on a
        # full pipe.
        errors = [files.enter_context(tempfile.TemporaryFile()) for _ in range(workers)]
        outputs = [subprocess.PIPE] + [files.enter_context(tempfile.TemporaryFile())
                                       for _ in range(workers - 1)]
        try:
            for config, stdout, stderr in zip(loopback_configs(workers), outputs, errors):
                processes.append(subprocess.Popen(
                    [*program, *map(str, command)], env=dict(env, TF_CONFIG=config),
                    stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL))
            relay.start(processes[0].stdout)
            deadline = None if timeout is None else time.monotonic() + timeout
            while any(process.poll() is None for process in processes):
                if any(process.poll() not in (None, 0) for process in processes):
                    break
                relay.raise_failure()
                if deadline is not None and time.monotonic() > deadline:
                    timed_out = True
                    break
                time.sleep(0.1)
            failed = [index for index, process in enumerate(processes)
                      if process.poll() not in (None, 0)]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                process.wait()
            relay.join()
        relay.raise_failure()
        if timed_out:
            raise WorkerError(f"the {workers} Keras workers did not finish within {timeout} s; "
                              f"they were stopped")
        if failed:
            index = _first_cause(processes, failed)
            errors[index].seek(0)
            reason = _last_error_line(errors[index].read().decode(errors="replace"),
                                      processes[index].returncode)
            raise WorkerError(f"Keras worker {index} of {workers} stopped: {reason}")


def _first_cause(processes, failed):
    """The failed worker to report: one killed by a signal (the others then fail
    waiting for it), else the lowest index."""
    killed = [index for index in failed if processes[index].returncode < 0]
    return (killed or failed)[0]


def _last_error_line(text, returncode):
    """What stopped a worker: the signal that killed it, or its last line of error."""
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return f"exit status {returncode}"
    return lines[-1].removeprefix(ERROR_PREFIX)


class _LineRelay:
    """Pass each line of a worker's output to ``log`` from a thread, as it comes."""

    def __init__(self, log):
        self.log = log
        self.thread = None
        self.failure = None

    def start(self, stream):
        self.thread = threading.Thread(target=self._relay, args=(stream,), daemon=True)
        self.thread.start()

    def _relay(self, stream):
        try:
            for line in iter(stream.readline, b""):
                if self.failure is None:
                    self.log(line.decode(errors="replace").rstrip("\r\n"))
        except BaseException as error:   # noqa: BLE001 -- re-raised by the launcher's thread
            self.failure = error
        finally:
            stream.close()

    def join(self):
        if self.thread is not None:
            self.thread.join()

    def raise_failure(self):
        """Raise, in the launcher's thread, what ``log`` raised (a reader gone away, say)."""
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure


def worker_command(config):
    """The arguments of the worker program that make a worker of the training ``config``.

    ``config`` is the run's ``TrainConfig``; the worker gets it whole, as
    JSON, except ``overwrite``: the launcher claims the run folder, the
    workers do not.
    """
    return [config.replace(overwrite=False).to_json()]


def end_with_launcher(launcher):
    """Have this worker killed when its launcher (process id ``launcher``) dies, however it dies.

    Otherwise a launcher killed with SIGKILL would leave its workers waiting
    for each other. Linux only (``prctl``); a launcher already gone ends the
    worker at once.
    """
    die_with_parent(signal.SIGKILL)
    if os.getppid() != launcher:
        raise WorkerError(f"the process that started this Keras worker (pid {launcher}) has "
                          "ended")
