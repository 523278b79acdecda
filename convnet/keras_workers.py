"""Keras training on several workers with ``tf.distribute.MultiWorkerMirroredStrategy``.

Every worker is a process that runs ``python -m convnet.keras_workers`` with
the cluster described in the ``TF_CONFIG`` environment variable::

    {"cluster": {"worker": ["host-a:12345", "host-b:12345"]},
     "task": {"type": "worker", "index": 0}}

Each worker builds the same Keras model inside the strategy's scope and
calls ``fit`` on the same data; the strategy shards each global batch
between the workers and sums their gradients with collective operations
(gRPC between the hosts), so every worker ends each step with the same
weights. Worker 0 is the chief: it alone writes the weights.

On one machine ``run_workers`` picks free loopback ports, writes each
worker's TF_CONFIG and starts the workers as subprocesses. Across machines
the user starts one worker per host with a TF_CONFIG that lists every host
(the same list everywhere, its own index in ``task``), the same data path
and the same version of convnet and TensorFlow on every host.
"""
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from convnet.checks import check_count
from convnet.errors import UserError


class WorkerError(UserError, RuntimeError):
    """A Keras worker failed or stopped; the others were stopped too."""


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


def run_workers(workers, options, timeout=600):
    """Train with ``workers`` Keras workers over loopback; wait for all of them.

    Parameters
    ----------
    workers : int
        Number of worker processes, >= 1.
    options : list of str
        The workers' command-line options (see ``main``), e.g.
        ``["--images", "2000", "--epochs", "1", "--out", "weights.npz"]``.
    timeout : float
        Seconds after which the workers are stopped.

    Returns
    -------
    list of str
        Each worker's standard output, in worker order.

    Raises
    ------
    WorkerError
        A worker failed or the time ran out; every worker was stopped.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    processes, stopped, timed_out = [], set(), False
    with contextlib.ExitStack() as files:
        # Files, not pipes: a worker must never block on a full pipe nobody reads.
        logs = [(files.enter_context(tempfile.TemporaryFile()),
                 files.enter_context(tempfile.TemporaryFile())) for _ in range(workers)]
        try:
            for config, (stdout, stderr) in zip(loopback_configs(workers), logs):
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "convnet.keras_workers", *map(str, options)],
                    env=dict(env, TF_CONFIG=config), stdout=stdout, stderr=stderr,
                    stdin=subprocess.DEVNULL))
            deadline = time.monotonic() + timeout
            while any(process.poll() is None for process in processes):
                if any(process.poll() not in (None, 0) for process in processes):
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                time.sleep(0.1)
        finally:
            for index, process in enumerate(processes):
                if process.poll() is None:
                    process.kill()
                    stopped.add(index)
                process.wait()
        outputs = []
        for stdout, stderr in logs:
            stdout.seek(0)
            stderr.seek(0)
            outputs.append((stdout.read().decode(errors="replace"),
                            stderr.read().decode(errors="replace")))
    if timed_out:
        raise WorkerError(f"the {workers} Keras workers did not finish within {timeout} s; "
                          f"they were stopped")
    for index, process in enumerate(processes):
        # The first worker that failed by itself, not one stopped because of it.
        if process.returncode != 0 and index not in stopped:
            errors = outputs[index][1].strip().splitlines()
            last = errors[-1] if errors else f"exit status {process.returncode}"
            raise WorkerError(f"Keras worker {index} of {workers} stopped: {last}")
    return [stdout for stdout, _ in outputs]


def _task():
    """(index, count) of this worker from TF_CONFIG, or raise a one-line error."""
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        return int(config["task"]["index"]), len(config["cluster"]["worker"])
    except KeyError as error:
        raise WorkerError(f"TF_CONFIG must give cluster.worker and task.index; "
                          f"missing {error}") from None
    except (ValueError, TypeError) as error:
        raise WorkerError(f"TF_CONFIG is not valid JSON describing a cluster: {error}") from None


def train_worker(model_name="lenet5", images=2000, epochs=1, batch_size=32, seed=0,
                 data_path=None):
    """Train as one worker of the cluster in TF_CONFIG; return (model, losses, index).

    Every worker loads the first ``images`` training images of MNIST (from
    ``data_path``, or the cache) and builds the zoo model ``model_name``'s
    Keras twin, with its Adam, inside the strategy's scope. Keras 3's
    ``fit`` does not run under MultiWorkerMirroredStrategy (it fails
    converting the per-replica batches), so the loop is written here: each
    global batch of ``batch_size`` is split between the workers, each
    computes the gradient of its part of the batch's mean loss, and the
    strategy sums them before the one Adam step every worker applies.
    ``losses`` holds each epoch's mean training loss.
    """
    import tensorflow as tf

    from convnet import data
    from convnet.keras_twin import to_keras
    from convnet.sequential import Sequential
    from convnet.zoo import load_spec

    index, _ = _task()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    arrays = data.load_mnist(data_path) if data_path else data.load_mnist()
    X, Y = arrays[0][:images, ..., np.newaxis], arrays[1][:images]
    one_hot = np.eye(10, dtype=np.float32)[Y]
    with strategy.scope():
        model = to_keras(Sequential(load_spec(model_name), seed=seed))
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
    dataset = tf.data.Dataset.from_tensor_slices((X, one_hot)).batch(batch_size)
    batches = strategy.experimental_distribute_dataset(dataset)

    def replica_step(images_part, labels_part):
        with tf.GradientTape() as tape:
            probabilities = model(images_part, training=True)
            losses = tf.keras.losses.categorical_crossentropy(labels_part, probabilities)
            # This replica's share of the global batch's mean loss.
            loss = tf.nn.compute_average_loss(losses, global_batch_size=batch_size)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    epoch_losses = []
    for _ in range(epochs):
        total, steps = 0.0, 0
        for batch in batches:
            total += float(train_step(batch))
            steps += 1
        epoch_losses.append(total / max(steps, 1))
    return model, epoch_losses, index


def main(argv=None):
    """Command line of one worker: train, print the losses as JSON, chief writes the weights."""
    # Imported here: only this module's own command parses arguments, never its library part.
    import argparse
    parser = argparse.ArgumentParser(description="one Keras worker (TF_CONFIG gives the cluster)")
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="MNIST.npz (default: the cache)")
    parser.add_argument("--out", default=None, help="the chief writes the weights here (.npz)")
    parser.add_argument("--every-worker-writes", action="store_true",
                        help="each worker writes OUT with its index before .npz (a check)")
    args = parser.parse_args(argv)
    from convnet import storage
    model, losses, index = train_worker(args.model, args.images, args.epochs,
                                         args.batch_size, args.seed, args.data)
    if args.out and (index == 0 or args.every_worker_writes):
        path = args.out if not args.every_worker_writes else \
            f"{args.out.removesuffix('.npz')}-{index}.npz"
        weights = {f"w{number}": value for number, value in enumerate(model.get_weights())}
        storage.save_npz(path, **weights)
    print(json.dumps({"worker": index, "loss": losses}), flush=True)


if __name__ == "__main__":
    main()
