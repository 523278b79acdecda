#!/usr/bin/env python3
"""Epoch time of LeNet-5 at batch 32: forked processes against MPI ranks, quiet and busy.

Times ``--images`` MNIST images (default 6,400: 200 steps) and scales to the
50,000-image epoch. Engines, each in a fresh process, interleaved run by run:

- ``fork 1`` / ``fork 2``: ``convnet.parallel.TrainingProcesses`` (fork,
  shared memory, semaphores) with 1 and 2 processes;
- ``mpi 1`` / ``mpi 2``: ``convnet.distributed.DataParallel`` alone and as 2
  ranks (one slice of each batch per rank);
- ``mpi 1 micro 16``: alone, cut into micro-batches of 16 (the rule that
  gives the same weights for any number of ranks);
- ``... + burner``: the same while another process burns one core (pinned
  to processor 0), as on a machine shared with another job;
- ``default + burner``: the count ``default_processes`` chooses under that load.

Prints the medians over ``--runs`` and their ratios to the first engine
(``fork 1``), of the clock and of rank 0's CPU time. ``--only`` times a
subset, e.g. ``--only 'mpi 1' 'mpi 1 micro 16'`` for the cost of the
bit-identical rule on one process.
"""
import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

EPOCH = 50_000
BATCH = 32
BURN = ("import os, time\n"
        "os.sched_setaffinity(0, {0})\n"
        "while True: pass\n")


def _data(images):
    from convnet import data
    X, Y = data.load_mnist()[:2]
    return X[:images, ..., np.newaxis], Y[:images]


def worker(engine, processes, images, micro_batch):
    """Train ``images`` images in batches of 32; return (seconds, CPU seconds) on rank 0, or None.

    The CPU seconds are this process's own: on a machine shared with other
    jobs they measure the work of a one-process engine better than the clock.
    """
    from convnet.optim import Adam
    from convnet.sequential import Sequential
    from convnet.threads import blas_threads
    from convnet.zoo import load_spec
    X, Y = _data(images)
    model = Sequential(load_spec("lenet5"), seed=0)
    optimizer = Adam(model.parameters())
    order = np.arange(len(X))
    with blas_threads(1), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if engine == "fork":
            from convnet.parallel import TrainingProcesses
            with TrainingProcesses(model, optimizer, X, Y, processes) as training:
                start, cpu = time.perf_counter(), time.process_time()
                for _ in training.run(order, BATCH):
                    pass
                return time.perf_counter() - start, time.process_time() - cpu
        from convnet.distributed import DataParallel
        trainer = DataParallel(model, optimizer, micro_batch=micro_batch or None)
        if trainer.comm is not None:
            trainer.comm.Barrier()
        start, cpu = time.perf_counter(), time.process_time()
        for begin in range(0, len(X), BATCH):
            trainer.step(X[begin:begin + BATCH], Y[begin:begin + BATCH])
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return (seconds, cpu) if trainer.is_writer else None


def measure(engine, processes, images, micro_batch):
    """Run one engine in fresh processes; return (seconds, rank 0's CPU seconds)."""
    argv = ["--worker", engine, "--processes", processes, "--images", images,
            "--micro-batch", micro_batch]
    if engine == "mpi" and processes > 1:
        from convnet.distributed import launch
        output = io.BytesIO()
        launch(argv, processes, output=output, program=(os.path.abspath(__file__),))
        text = output.getvalue().decode()
    else:
        text = subprocess.run([sys.executable, __file__, *map(str, argv)], check=True,
                              capture_output=True, text=True).stdout
    result = json.loads(text.strip().splitlines()[-1])
    return result["seconds"], result["cpu"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="measurements of each engine")
    parser.add_argument("--images", type=int, default=6400, help="images timed per run")
    parser.add_argument("--only", nargs="+", metavar="ENGINE",
                        help="time only these engines, e.g. --only 'mpi 1' 'mpi 1 micro 16'")
    parser.add_argument("--worker", choices=["fork", "mpi"], help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--micro-batch", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker, args.processes, args.images, args.micro_batch)
        if result is not None:
            print(json.dumps({"seconds": result[0], "cpu": result[1]}), flush=True)
        return
    from convnet.distributed import default_processes
    engines = [("fork 1", "fork", 1, 0, False), ("fork 2", "fork", 2, 0, False),
               ("mpi 1", "mpi", 1, 0, False), ("mpi 1 micro 16", "mpi", 1, 16, False),
               ("mpi 2", "mpi", 2, 0, False), ("mpi 1 + burner", "mpi", 1, 0, True),
               ("mpi 2 + burner", "mpi", 2, 0, True), ("default + burner", "mpi", None, 0, True)]
    if args.only:
        unknown = sorted(set(args.only) - {name for name, *_ in engines})
        if unknown:
            parser.error(f"--only: unknown engines {unknown}")
        engines = [engine for engine in engines if engine[0] in args.only]
    times = {name: [] for name, *_ in engines}
    cpu_times = {name: [] for name, *_ in engines}
    chosen = []
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} processors; "
          f"{args.images} images per run, scaled to {EPOCH:,}", flush=True)
    for run in range(args.runs):
        for name, engine, processes, micro_batch, burn in engines:
            burner = subprocess.Popen([sys.executable, "-c", BURN]) if burn else None
            try:
                if burner is not None:
                    time.sleep(0.3)
                if processes is None:
                    processes = default_processes(BATCH)
                    chosen.append(processes)
                seconds, cpu = measure(engine, processes, args.images, micro_batch)
            finally:
                if burner is not None:
                    burner.kill()
                    burner.wait()
            times[name].append(seconds * EPOCH / args.images)
            cpu_times[name].append(cpu * EPOCH / args.images)
        print(f"run {run + 1}: " + ", ".join(f"{name} {values[-1]:.2f}s"
                                             for name, values in times.items()), flush=True)
    first = engines[0][0]
    base = statistics.median(times[first])
    cpu_base = statistics.median(cpu_times[first])
    print(f"\nseconds per epoch, medians of {args.runs} (load average after: "
          f"{os.getloadavg()[0]:.2f}; default under the burner chose {chosen or '-'}); "
          f"CPU seconds of rank 0 alone")
    for name, values in times.items():
        median, cpu = statistics.median(values), statistics.median(cpu_times[name])
        print(f"{name:<18} {median:6.2f} s  {median / base:5.2f} x {first}   "
              f"CPU {cpu:6.2f} s  {cpu / cpu_base:5.2f} x")


if __name__ == "__main__":
    main()
