"""One engine's timed epoch and its validation accuracy, in a process of its own.

``python -m convnet.apps.bench.epoch_worker JOB`` (``JOB`` a JSON object, see
:func:`run_epoch`) trains a spec for an epoch with one engine: ``convnet``
(``convnet train``'s ``DataParallel``, alone or as MPI ranks), ``keras``
(the Keras twin's ``fit``), ``pytorch`` or ``jax`` (the builders of
``torch_twin`` and ``jax_twin``). Every engine starts from the weights of
``Sequential(spec, seed)`` and takes the same batches in the same order:
the epoch's order of ``convnet train`` (``trainer.epoch_order(seed, 1,
n)``), cut into consecutive batches. The last three batches of the epoch
(the short one included, so that compiling engines meet both shapes) are
trained first, untimed; then the epoch's first ``steps`` batches (all by
default) are timed, and the model's accuracy on the validation images is
measured. The result is printed as one line of JSON by rank 0.
"""
import json
import os
import sys
import time

import numpy as np

from convnet.apps.bench.timing import peak_rss_bytes, setup_tensorflow
from convnet.apps.bench.workload import WARMUP_STEPS, epoch_data
from convnet.nn.threads import blas_threads

ENGINE_KINDS = ("convnet", "keras", "pytorch", "jax")


def _batches(count, batch):
    """(start, stop) of an epoch's consecutive batches of ``count`` images."""
    return [(start, min(start + batch, count)) for start in range(0, count, batch)]


def _time_steps(step, wait, X, Y, batch, steps):
    """Warm up on the epoch's last batches, then time its first ``steps``; return seconds.

    ``step(X, Y)`` trains on one batch; ``wait()`` returns once every
    dispatched step has finished (for engines that run ahead).
    """
    batches = _batches(len(X), batch)
    for start, stop in batches[-WARMUP_STEPS:]:
        step(X[start:stop], Y[start:stop])
    wait()
    begin = time.perf_counter()
    for start, stop in batches[:steps]:
        step(X[start:stop], Y[start:stop])
    wait()
    return time.perf_counter() - begin


def _step_without_exchange(steps):
    """``steps.step`` as its ranks would run it if exchanging cost nothing: a bound, not training.

    Each rank computes the gradients of its shards of the batch, joins them
    into one row, and steps the optimiser on its part of that row, as
    ``DataParallel`` does; it neither exchanges anything nor adds up the
    shards, nor waits for the other ranks. The ranks' weights drift apart,
    so the model that results is no trained model.
    """
    from convnet.training.steps import even_runs
    model, optimizer, rank = steps.model, steps.optimizer, steps.rank
    part = slice(steps.parts[rank], steps.parts[rank + 1])
    row = np.zeros(steps.parts[-1], steps.dtype)

    def step(X, Y):
        shards = steps.micro_batches(len(X))
        runs = even_runs(len(shards), steps.size)
        for start, stop in shards[runs[rank]:runs[rank + 1]]:
            _, grads = model.loss_and_grads(X[start:stop], Y[start:stop])
            np.concatenate([np.ravel(grad) for grad in grads], out=row)
        optimizer.step_part(row[part], part)

    return step


def _convnet(spec, job, data):
    """Train with ``DataParallel`` as ``convnet train`` does; rank 0's result, else None.

    With ``job["exchange"]`` False, several ranks run ``_step_without_exchange``
    instead, and the result's accuracy is None.
    """
    from convnet.nn.memory import keep_freed_memory
    from convnet.nn.optim import make_optimizer
    from convnet.parallel import distributed
    from convnet.training import trainer
    X, Y, X_valid, Y_valid = data
    comm = distributed.world() if distributed.in_mpi_job() else None
    model = trainer.build_model(spec, seed=job["seed"])
    bound = not job.get("exchange", True) and comm is not None and comm.Get_size() > 1
    # The bound's ranks keep weights of their own, which no other rank writes.
    steps = distributed.DataParallel(model, make_optimizer(job["optimizer"], model.parameters()),
                                     comm=comm, micro_batch=job.get("micro_batch"),
                                     seed=job["seed"], shard_threads=job.get("shard_threads", 1),
                                     shared_memory=not bound)
    keep_freed_memory()

    def wait():
        if comm is not None:
            comm.Barrier()

    threads = job.get("blas_threads", 1)
    step = _step_without_exchange(steps) if bound else steps.step
    accuracy = None
    with blas_threads(threads), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        seconds = _time_steps(step, wait, X, Y, job["batch"], job["steps"])
        if not bound:
            [(_, accuracy)] = steps.evaluate([(X_valid, Y_valid)])
    if not steps.is_writer:
        return None
    return {"seconds": seconds, "accuracy": accuracy, "processes": steps.size,
            "threads": threads * steps.shard_threads}


def _keras(spec, job, data):
    """Train the Keras twin with ``fit``, the batches in the epoch's order."""
    setup_tensorflow(job.get("threads"))
    from convnet.tf import tf_training
    X, Y, X_valid, Y_valid = data
    batch = job["batch"]
    model = tf_training.build_keras(spec, job["optimizer"], seed=job["seed"])
    targets = tf_training.keras_targets(spec, Y)
    warm = _batches(len(X), batch)[-WARMUP_STEPS:][0][0]
    model.fit(X[warm:], targets[warm:], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    timed = len(X) if job["steps"] is None else min(len(X), job["steps"] * batch)
    begin = time.perf_counter()
    model.fit(X[:timed], targets[:timed], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - begin
    _, accuracy = tf_training.evaluate_keras(model, spec, X_valid, Y_valid)
    return {"seconds": seconds, "accuracy": accuracy, "processes": 1,
            "threads": job.get("threads") or os.cpu_count()}


def _pytorch(spec, job, data, weights):
    """Train the PyTorch builder's network with PyTorch's optimizer of the spec's name."""
    import torch

    from convnet.apps.bench.torch_twin import TorchTrainer
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    torch.manual_seed(job["seed"])
    X, Y, X_valid, Y_valid = data
    trainer = TorchTrainer(spec, weights, job["optimizer"])
    seconds = _time_steps(trainer.step, lambda: None, X, Y, job["batch"], job["steps"])
    return {"seconds": seconds, "accuracy": trainer.accuracy(X_valid, Y_valid), "processes": 1,
            "threads": torch.get_num_threads()}


def _jax(spec, job, data, weights):
    """Train the JAX builder's network, one compiled step per batch."""
    if job.get("threads"):
        # Read once, when JAX starts its CPU backend.
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_"
                                   "eigen=false intra_op_parallelism_threads=1").strip()
    from convnet.apps.bench.jax_twin import JaxTrainer
    X, Y, X_valid, Y_valid = data
    trainer = JaxTrainer(spec, weights, job["optimizer"], seed=job["seed"])
    seconds = _time_steps(trainer.step, trainer.wait, X, Y, job["batch"], job["steps"])
    return {"seconds": seconds, "accuracy": trainer.accuracy(X_valid, Y_valid), "processes": 1,
            "threads": job.get("threads") or os.cpu_count()}


def run_epoch(job):
    """Train one engine as ``job`` says; return rank 0's result (None on other ranks).

    Parameters
    ----------
    job : dict
        ``engine`` (one of ``ENGINE_KINDS``), ``spec`` (normalised),
        ``batch``, ``optimizer``, ``steps`` (timed batches, None for the
        whole epoch), ``seed``; ``threads`` (optional): the most threads the
        engine may use (``keras``, ``pytorch``, ``jax``); ``blas_threads``
        (``convnet``, default 1): BLAS threads per process; ``shard_threads``
        (``convnet``, default 1): threads computing a process's shards;
        ``exchange`` (``convnet``, default True): False times the ranks'
        steps without their exchange (``_step_without_exchange``).

    Returns
    -------
    dict or None
        ``seconds`` of the timed steps, ``accuracy`` on the validation
        images afterwards (None for steps without exchange), ``processes``,
        ``threads`` (per process), ``rss`` (this process's peak resident
        bytes), ``images`` (timed), ``source`` (of the data) and
        ``tensorflow_imported`` (whether TensorFlow was loaded).
    """
    from convnet.nn.sequential import Sequential
    engine = job["engine"]
    if engine not in ENGINE_KINDS:
        raise ValueError(f"engine must be one of {', '.join(ENGINE_KINDS)}, received {engine!r}")
    spec = job["spec"]
    X, Y, X_valid, Y_valid, source = epoch_data(spec, job["seed"])
    from convnet.training.trainer import epoch_order
    order = epoch_order(job["seed"], 1, len(X))
    data = (X[order], Y[order], X_valid, Y_valid)
    del X, Y
    if engine == "convnet":
        result = _convnet(spec, job, data)
    elif engine == "keras":
        result = _keras(spec, job, data)
    else:
        weights = Sequential(spec, seed=job["seed"]).get_weights()
        result = (_pytorch if engine == "pytorch" else _jax)(spec, job, data, weights)
    if result is None:
        return None
    timed = len(data[0]) if job["steps"] is None else min(len(data[0]),
                                                           job["steps"] * job["batch"])
    return dict(result, rss=peak_rss_bytes(), images=timed, total=len(data[0]), source=source,
                tensorflow_imported="tensorflow" in sys.modules)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m convnet.apps.bench.epoch_worker JOB "
                 "(a JSON object; see run_epoch)")
    outcome = run_epoch(json.loads(sys.argv[1]))
    if outcome is not None:
        print(json.dumps(outcome), flush=True)
