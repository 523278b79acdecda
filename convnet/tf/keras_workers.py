"""Keras training on several workers with ``tf.distribute.MultiWorkerMirroredStrategy``.

``convnet train --backend keras`` trains as one worker of a cluster when
the ``TF_CONFIG`` environment variable describes one::

    {"cluster": {"worker": ["host-a:12345", "host-b:12345"]},
     "task": {"type": "worker", "index": 0}}

Every worker loads the same data, builds the same Keras twin inside the
strategy's scope and runs ``train_cluster``'s loop: each global batch (the
same shuffled order on every worker) is cut into one contiguous slice per
worker, each worker computes the gradient of its slice's share of the
batch's mean loss, the strategy sums the gradients over the workers with
collective operations (gRPC between hosts), and every worker applies the
same optimizer step: the weights stay identical on every worker. Worker 0
is the chief: it alone prints and writes the run folder.

``convnet train --backend keras --workers N`` without TF_CONFIG runs the
cluster on this machine: ``run_workers`` picks free loopback ports, gives
each worker its TF_CONFIG and starts N ``convnet train`` processes, streams
the chief's output, and stops them all when one fails.
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

import numpy as np

from convnet.checks import check_count
from convnet.errors import BadOptionError, UserError

# Set by ``run_workers`` in the environment of the workers it starts, to the
# launcher's process id. It tells a worker that (1) the launcher already holds
# the run folder's lock, so the chief writes there without claiming it again;
# (2) the workers share this machine's processors, so each takes its share of
# TensorFlow's threads; (3) the worker is killed if the launcher dies.
LAUNCHER_ENV = "CONVNET_KERAS_LAUNCHER"
# A check used by the tests: when set to a folder, every worker, chief
# included, also writes its final weights there as ``worker-INDEX.npz``.
WORKER_WEIGHTS_ENV = "CONVNET_KERAS_WORKER_WEIGHTS"
EVAL_BATCH = 1000
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
    """Whether this ``convnet train --backend keras`` process must claim its --out.

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
                             f"batch statistics need each batch whole), received --workers "
                             f"{workers} with --model {spec['name']}")


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
    """Return the TF_CONFIG text of each of ``workers`` workers on free loopback ports."""
    check_count("workers", workers)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(workers)]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            for index in range(workers)]


# ---------------------------------------------------------------- the launcher
def run_workers(command, workers, log, timeout=None, program=None):
    """Run ``workers`` copies of a command as a cluster on loopback; wait for all of them.

    Parameters
    ----------
    command : list of str
        The arguments of ``convnet`` every worker runs, e.g. ``["train",
        "--backend", "keras", "--workers", "2", "--out", "runs/x"]``.
    workers : int
        Number of worker processes, >= 1.
    log : callable
        Receives each line the chief (worker 0) prints, as it prints it,
        without its newline. The other workers' output is kept only to
        report a failure.
    timeout : float, optional
        Seconds after which the workers are stopped (default: none).
    program : list of str, optional
        What runs the command (default: this Python's ``-m convnet.apps.cli.cli``).

    Raises
    ------
    WorkerError
        A worker failed or was killed, or the time ran out; every worker was
        stopped. One line: ``Keras worker I of N stopped: <its last error
        line, or the signal that killed it>``.
    """
    check_count("workers", workers)
    program = list(program or [sys.executable, "-m", "convnet"])
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


def worker_command(args):
    """The ``convnet`` arguments that make a worker of the same training as ``args``.

    ``args`` is the parsed ``convnet train --backend keras`` namespace, its
    ``out`` already resolved. The worker gets the same options, explicitly;
    ``--overwrite`` is left out since the workers do not claim the folder.
    """
    command = [*(["--debug"] if args.debug else []), *(["--verbose"] if args.verbose else []),
               "train", "--backend", "keras", "--model", args.model,
               "--dataset", args.dataset, "--epochs", args.epochs,
               "--batch-size", args.batch_size, "--seed", args.seed, "--out", args.out,
               "--workers", args.workers]
    for option, value in (("--data", args.data), ("--optimizer", args.optimizer),
                          ("--lr", args.lr), ("--limit", args.limit)):
        if value is not None:
            command += [option, value]
    return [str(part) for part in command]


def _end_with_launcher(launcher):
    """Have this worker killed when its launcher (process id ``launcher``) dies, however it dies.

    Otherwise a launcher killed with SIGKILL would leave its workers waiting
    for each other. Linux only (``prctl``); a launcher already gone ends the
    worker at once.
    """
    from convnet.parallel.distributed import die_with_parent
    die_with_parent(signal.SIGKILL)
    if os.getppid() != launcher:
        raise WorkerError(f"the process that started this Keras worker (pid {launcher}) has "
                          "ended")


# ---------------------------------------------------------------- a worker
def train_cluster(data, spec, epochs=5, batch_size=32, optimizer="adam", learning_rate=None,
                  seed=0, log=None):
    """Train the Keras twin of ``spec`` as this worker of the TF_CONFIG cluster.

    Keras 3's ``fit`` does not run under MultiWorkerMirroredStrategy (it
    fails converting the per-replica batches), so the loop is written here.
    Each epoch visits the training set in ``trainer.epoch_order(seed,
    epoch)`` order, the same on every worker; each global batch of
    ``batch_size`` images is cut into one contiguous slice per worker
    (worker ``i`` of ``n`` takes rows ``floor(b i / n)`` to ``floor(b (i+1) /
    n) - 1`` of a batch of ``b``), each worker takes the gradient of
    ``sum(its losses) / b``, and the strategy sums those gradients: the
    gradient of the batch's mean loss, whatever the number of workers.

    Parameters
    ----------
    data : tuple
        (X_train, Y_train, X_valid, Y_valid): images (m, h, w, c) of the
        spec's input shape ((m, h, w) when c is 1) and integer labels (m,).
    spec : dict
        The canonical spec.
    epochs, batch_size : int
        ``batch_size`` is the global batch, shared among the workers.
    optimizer : str
        adam, rmsprop or sgd (Keras's own).
    learning_rate : float, optional
        Default: Keras's for the optimizer.
    seed : int
        Seeds the initial weights, the dropout masks and the order.
    log : callable, optional
        Receives each epoch's line in task 4's format (give it on the chief).

    Returns
    -------
    history : dict
        "loss", "accuracy" (means over the epoch's training batches, as
        Keras's fit reports them), "val_loss", "val_accuracy" (measured
        after the epoch, on the chief only: empty lists on the others) and
        "epoch_seconds", one entry per epoch.
    model : keras.Model
        The trained twin (the same weights on every worker).
    index : int
        This worker's index; 0 is the chief.
    """
    index, workers = cluster_task()
    from convnet.tf import tf_training
    from convnet.tf.tensorflow_import import import_tensorflow
    from convnet.training import trainer
    tf = import_tensorflow()
    if LAUNCHER_ENV in os.environ:
        _end_with_launcher(int(os.environ[LAUNCHER_ENV]))
        # The workers share this machine's processors; set before TensorFlow starts.
        from convnet.parallel.distributed import available_processors
        threads = max(1, available_processors() // workers)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    # Creating the strategy must come before any TensorFlow operation runs.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    input_shape = tuple(spec["layers"][0]["shape"])
    X_train, Y_train, X_valid, Y_valid = data
    X_train = tf_training.as_images(X_train, input_shape)
    X_valid = tf_training.as_images(X_valid, input_shape)
    T_train = tf_training.keras_targets(spec, Y_train)
    T_valid = tf_training.keras_targets(spec, Y_valid)
    tf_training.set_seeds(seed)
    with strategy.scope():
        model = tf_training.build_keras(spec, optimizer, learning_rate, seed)
        model.optimizer.build(model.trainable_variables)
    loss_function = tf.keras.losses.get(spec["loss"])
    images = tf.TensorSpec((None, *input_shape), tf.float32)
    targets = tf.TensorSpec((None, T_train.shape[1]), tf.float32)

    def replica_step(X, T, size):
        with tf.GradientTape() as tape:
            output = model(X, training=True)
            losses = loss_function(T, output)
            loss = tf.reduce_sum(losses) / size
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return tf.stack([tf.reduce_sum(losses), _correct(tf, output, T)])

    # One trace per worker (the signature leaves the batch free): every worker then
    # creates its collective operations in the same order.
    @tf.function(input_signature=[images, targets, tf.TensorSpec((), tf.float32)])
    def train_step(X, T, size):
        """This worker's (sum of losses, right answers) on its slice; updates the weights."""
        return strategy.experimental_local_results(
            strategy.run(replica_step, args=(X, T, size)))[0]

    @tf.function(input_signature=[tf.TensorSpec((2,), tf.float64)])
    def sum_over_workers(values):
        return strategy.reduce(tf.distribute.ReduceOp.SUM,
                               strategy.run(tf.identity, args=(values,)), axis=None)

    history = tf_training._empty_history()
    m = len(X_train)
    for epoch in range(1, epochs + 1):
        order = trainer.epoch_order(seed, epoch, m)
        # Summed here and over the workers once an epoch, not at every step: each
        # collective operation costs a round trip between the workers.
        totals = tf.zeros(2, tf.float64)
        start_time = time.perf_counter()
        for start in range(0, m, batch_size):
            batch = order[start:start + batch_size]
            mine = batch[len(batch) * index // workers:len(batch) * (index + 1) // workers]
            totals += tf.cast(train_step(X_train[mine], T_train[mine], np.float32(len(batch))),
                              tf.float64)
        loss_sum, correct = sum_over_workers(totals).numpy()
        history["epoch_seconds"].append(time.perf_counter() - start_time)
        history["loss"].append(float(loss_sum) / m)
        history["accuracy"].append(float(correct) / m)
        if index == 0:
            val_loss, val_accuracy = evaluate(model, spec, X_valid, T_valid)
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(val_accuracy)
            if log is not None:
                log(trainer.epoch_line(epoch, history["loss"][-1], history["accuracy"][-1],
                                       val_loss, val_accuracy))
    return history, model, index


def _correct(tf, output, T):
    """Number of right answers in a batch: argmax of a softmax, 0.5 threshold of a sigmoid."""
    if T.shape[-1] == 1:
        right = tf.equal(tf.cast(output > 0.5, tf.float32), T)
    else:
        right = tf.equal(tf.argmax(output, axis=-1), tf.argmax(T, axis=-1))
    return tf.reduce_sum(tf.cast(right, tf.float32))


def evaluate(model, spec, X, targets, batch_size=EVAL_BATCH):
    """Mean loss and accuracy of ``model`` on one worker, without the strategy.

    Parameters
    ----------
    model : keras.Model
        A twin of ``spec`` (its variables may be the strategy's).
    spec : dict
        Its canonical spec.
    X : ndarray of shape (m, h, w, c)
    targets : ndarray of shape (m, k)
        ``tf_training.keras_targets`` of the labels.

    Returns
    -------
    tuple of float
        (loss, accuracy), means over the m examples.
    """
    from convnet.tf.tensorflow_import import import_tensorflow
    tf = import_tensorflow()
    loss_function = tf.keras.losses.get(spec["loss"])
    loss_sum = correct = 0.0
    for start in range(0, len(X), batch_size):
        output = model(X[start:start + batch_size], training=False)
        T = tf.constant(targets[start:start + batch_size])
        loss_sum += float(tf.reduce_sum(loss_function(T, output)))
        correct += float(_correct(tf, output, T))
    return loss_sum / len(X), correct / len(X)


def write_worker_weights(model, index, environ=None):
    """Write this worker's weights as ``worker-INDEX.npz`` where WORKER_WEIGHTS_ENV says (a check)."""
    environ = os.environ if environ is None else environ
    folder = environ.get(WORKER_WEIGHTS_ENV)
    if folder:
        from convnet import storage
        weights = {f"w{number}": value for number, value in enumerate(model.get_weights())}
        storage.save_npz(os.path.join(folder, f"worker-{index}.npz"), **weights)
