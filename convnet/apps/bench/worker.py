"""The training benchmark's worker: one engine's timed steps, in a process of their own.

``python -m convnet.apps.bench.worker JOB`` (``JOB`` a JSON object, see
:func:`run_worker`) trains as the job says and prints rank 0's result as one
line of JSON; :func:`convnet.apps.bench.train.run_engine` starts it, alone
or as MPI ranks. A NumPy job never imports TensorFlow.
"""
import json
import sys
import time

import numpy as np

from convnet.apps.bench.timing import peak_rss_bytes
from convnet.apps.bench.workload import (
    WARMUP_STEPS,
    KerasFitter,
    bench_images,
    output_classes,
    spec_images,
)
from convnet.nn.threads import blas_threads


def _time_numpy_steps(spec, batch, optimizer, images, micro_batch, seed, threads=1):
    """Train ``images`` images as ``convnet train`` does; return rank 0's result, else None.

    Every rank of the MPI job this process may belong to (or this process
    alone) builds the model as ``convnet train`` does and trains the same
    batches through ``DataParallel``, with ``threads`` BLAS threads and the
    allocator's freed memory kept, after ``WARMUP_STEPS`` untimed steps.
    """
    from convnet.nn.memory import keep_freed_memory
    from convnet.nn.optim import make_optimizer
    from convnet.parallel import distributed
    from convnet.training import trainer
    comm = distributed.world() if distributed.in_mpi_job() else None
    model = trainer.build_model(spec, seed=seed)
    steps = distributed.DataParallel(model, make_optimizer(optimizer, model.parameters()),
                                     comm=comm, micro_batch=micro_batch, seed=seed)
    X, Y, _ = bench_images(model.input_shape, output_classes(model.spec))
    order = trainer.epoch_order(seed, 1, len(X))
    keep_freed_memory()
    with blas_threads(threads), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # The warm-up takes the epoch's last batches: the timed ones are its first.
        for start in range(max(0, len(X) - WARMUP_STEPS * batch), len(X), batch):
            steps.step(X[order[start:start + batch]], Y[order[start:start + batch]])
        if comm is not None:
            comm.Barrier()
        begin, cpu = time.perf_counter(), time.process_time()
        for start in range(0, images, batch):
            chosen = order[start:min(start + batch, images)]
            steps.step(X[chosen], Y[chosen])
        if comm is not None:
            comm.Barrier()
        seconds, cpu = time.perf_counter() - begin, time.process_time() - cpu
    peaks = [peak_rss_bytes()] if comm is None else comm.gather(peak_rss_bytes(), root=0)
    if not steps.is_writer:
        return None
    return {"seconds": seconds, "cpu_seconds": cpu, "rss": peaks, "processes": steps.size,
            "threads": threads, "tensorflow_imported": "tensorflow" in sys.modules}


def _time_keras_fit(spec, batch, optimizer, images, seed):
    """Train ``images`` images with the Keras twin's ``fit``; return the result.

    The result has the keys of the NumPy worker's but ``threads`` and
    ``tensorflow_imported``, its ``rss`` one process's peak.
    """
    fitter = KerasFitter(spec, batch, optimizer, seed=seed)
    X, Y, _ = spec_images(fitter.spec)
    fitter.train(X[-WARMUP_STEPS * batch:], Y[-WARMUP_STEPS * batch:])   # traces the step
    cpu = time.process_time()
    seconds = fitter.train(X[:images], Y[:images])
    return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu,
            "rss": [peak_rss_bytes()], "processes": 1}


def run_worker(job):
    """The benchmark's worker: train as ``job`` says; return rank 0's result (else None).

    Parameters
    ----------
    job : dict
        ``kind`` ("numpy" or "keras"), ``spec`` (a normalised spec dict),
        ``batch``, ``optimizer``, ``images`` (how many to time), and for
        NumPy ``micro_batch`` and ``threads`` (BLAS threads, default 1);
        ``seed`` optional (0).

    Returns
    -------
    dict or None
        ``seconds`` of the timed steps, ``cpu_seconds`` (this process's),
        ``rss`` (each rank's peak resident bytes) and ``processes`` (for
        NumPy also ``tensorflow_imported``, which should be False); None on
        ranks other than 0.
    """
    seed = job.get("seed", 0)
    if job["kind"] == "keras":
        return _time_keras_fit(job["spec"], job["batch"], job["optimizer"], job["images"], seed)
    return _time_numpy_steps(job["spec"], job["batch"], job["optimizer"], job["images"],
                             job.get("micro_batch"), seed, job.get("threads", 1))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m convnet.apps.bench.worker JOB (a JSON object; see run_worker)")
    outcome = run_worker(json.loads(sys.argv[1]))
    if outcome is not None:
        print(json.dumps(outcome), flush=True)
