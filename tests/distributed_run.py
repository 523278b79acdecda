"""A few data-parallel training steps on made-up images; run alone or as ranks of ``mpiexec``.

Usage: ``python distributed_run.py MODEL STEPS OUT.npz [--kill-rank R --kill-step S]``.
``MODEL`` is a zoo name or ``dropout`` (a small network with Dropout). Every
rank trains the same batches; rank 0 alone writes the final parameters, the
losses and whether all ranks agreed, to ``OUT.npz``. With ``--kill-rank`` the
rank R kills itself with SIGKILL at step S (to test how a job ends); with
``--bad-label-rank R`` its labels at step S are out of range instead. The
optimiser's state is written too, once the ranks have shared it. With
``--messages`` the ranks exchange messages instead of sharing memory.
"""
import argparse
import os
import signal
import sys
import traceback

import numpy as np

from convnet import storage
from convnet.nn.optim import Adam
from convnet.nn.sequential import Sequential
from convnet.nn.threads import blas_threads
from convnet.nn.zoo import load_spec
from convnet.parallel.distributed import DataParallel

DROPOUT_SPEC = [{"layer": "Input", "shape": [28, 28, 1]},
                {"layer": "Conv2D", "filters": 4, "kernel": 3, "activation": "relu"},
                {"layer": "MaxPool2D", "pool": 2},
                {"layer": "Dropout", "rate": 0.3},
                {"layer": "Flatten"},
                {"layer": "Dense", "units": 16, "activation": "relu"},
                {"layer": "Dropout", "rate": 0.5},
                {"layer": "Dense", "units": 10, "activation": "softmax"}]
BATCH = 32
MICRO_BATCH = 8


def made_up_data(count, seed=1):
    """Images (count, 28, 28, 1) float32 in [0, 1) and labels (count,), from ``seed``."""
    rng = np.random.default_rng(seed)
    return rng.random((count, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, count)


def build(name, seed=0):
    """The model and its Adam optimiser."""
    model = Sequential(DROPOUT_SPEC if name == "dropout" else load_spec(name), seed=seed)
    return model, Adam(model.parameters())


def batches(steps, X, Y):
    """The batches of ``steps`` steps; the last is short (20 images) to test uneven cuts."""
    for step in range(steps):
        size = BATCH if step < steps - 1 else 20
        start = (step * BATCH) % (len(X) - BATCH)
        yield X[start:start + size], Y[start:start + size]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("steps", type=int)
    parser.add_argument("out")
    parser.add_argument("--kill-rank", type=int)
    parser.add_argument("--kill-step", type=int, default=0)
    parser.add_argument("--bad-label-rank", type=int,
                        help="this rank's labels are out of range at --kill-step")
    parser.add_argument("--micro-batch", type=int, default=MICRO_BATCH,
                        help="0: one slice of each batch per rank")
    parser.add_argument("--messages", action="store_true",
                        help="exchange by messages even on one machine")
    args = parser.parse_args()
    X, Y = made_up_data(160)
    model, optimizer = build(args.model)
    with blas_threads(1):
        trainer = DataParallel(model, optimizer, micro_batch=args.micro_batch or None,
                               seed=3, shared_memory=not args.messages)
        losses = []
        for step, (images, labels) in enumerate(batches(args.steps, X, Y)):
            if trainer.rank == args.kill_rank and step == args.kill_step:
                os.kill(os.getpid(), signal.SIGKILL)
            if trainer.rank == args.bad_label_rank and step == args.kill_step:
                labels = np.full_like(labels, 99)
            losses.append(trainer.step(images, labels))
        evaluation = trainer.evaluate([(X[:70], Y[:70])], batch_size=16)
        agree = trainer.parameters_agree()
        trainer.share_optimizer_state()
    if trainer.is_writer:
        arrays = {f"param{index}": param for index, param in enumerate(model.parameters())}
        arrays.update({f"state_{key}": value for key, value in optimizer.state().items()})
        storage.save_npz(args.out, losses=np.array(losses), agree=np.array(agree),
                         evaluation=np.array(evaluation), size=np.array(trainer.size),
                         shares_memory=np.array(trainer.shares_memory),
                         **arrays)


def _report_whole(kind, value, trace):
    """Write an uncaught exception's traceback in one piece.

    The ranks' tracebacks then reach the job's output whole, instead of
    interleaved line by line with each other's.
    """
    sys.stderr.write("".join(traceback.format_exception(kind, value, trace)))
    sys.stderr.flush()


if __name__ == "__main__":
    sys.excepthook = _report_whole
    main()
