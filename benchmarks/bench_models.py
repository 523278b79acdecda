#!/usr/bin/env python3
"""Time ``loss_and_grads`` of the Sequential ``lenet5`` against the hard-coded ``LeNet5``.

Both models take the same MNIST batches (random images if MNIST is not
cached), alternating step by step so that a busy machine slows both alike;
the figure is the median of the step-by-step time ratios (below 1.05 means
the general model is within 5% of the hard-coded one).
"""
import argparse
import statistics
import time

import numpy as np

from convnet.model import LeNet5
from convnet.sequential import Sequential
from convnet.zoo import load_spec


def _batches(batch_size, count, seed=0):
    """Return ``count`` (images (batch, 28, 28, 1), labels (batch,)) pairs."""
    from convnet import data
    try:
        X, Y = data.load_mnist()[:2]
    except FileNotFoundError:
        rng = np.random.default_rng(seed)
        X = rng.random((batch_size * count, 28, 28), dtype=np.float32)
        Y = rng.integers(0, 10, batch_size * count)
    order = np.random.default_rng(seed).permutation(len(X))[:batch_size * count]
    X = X[order].reshape(count, batch_size, 28, 28, 1)
    return list(zip(X, Y[order].reshape(count, batch_size)))


def bench_models(batch_size=32, steps=300, model_name="lenet5"):
    """Time ``loss_and_grads`` of ``Sequential(model_name)`` and ``LeNet5`` step by step.

    The two models alternate step by step (the first of each pair
    alternating too), so a busy machine slows both alike.

    Parameters
    ----------
    batch_size : int
        Images per step.
    steps : int
        Steps per model.
    model_name : str
        Zoo name of the general model (``lenet5`` for the parity check).

    Returns
    -------
    dict
        ``"sequential"`` and ``"lenet5"``: median milliseconds per step;
        ``"ratio"``: the median over steps of sequential / lenet5 (each
        pair timed back to back).
    """
    # LeNet5 splits batches above 32 into micro-batches of 32: so does the general model here.
    models = {"sequential": Sequential(load_spec(model_name), seed=0, micro_batch=32),
              "lenet5": LeNet5(seed=0)}
    batches = _batches(batch_size, min(steps, 50))
    for model in models.values():   # warm the caches and the workspaces
        for X, Y in batches[:3]:
            model.loss_and_grads(X, Y)
    times = {name: [] for name in models}
    for step in range(steps):
        X, Y = batches[step % len(batches)]
        order = list(models) if step % 2 == 0 else list(models)[::-1]
        for name in order:
            start = time.perf_counter()
            models[name].loss_and_grads(X, Y)
            times[name].append((time.perf_counter() - start) * 1e3)
    result = {name: statistics.median(values) for name, values in times.items()}
    result["ratio"] = statistics.median(
        mine / other for mine, other in zip(times["sequential"], times["lenet5"]))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="images per step (default 32)")
    parser.add_argument("--steps", type=int, default=300, help="steps per model (default 300)")
    args = parser.parse_args()
    figures = bench_models(args.batch, args.steps)
    print(f"loss_and_grads at batch {args.batch}, {args.steps} steps per model, "
          "alternating step by step (medians):")
    print(f"  Sequential lenet5: {figures['sequential']:.2f} ms/step")
    print(f"  LeNet5 class:      {figures['lenet5']:.2f} ms/step")
    print(f"  ratio:             {figures['ratio']:.3f} (median of the step-by-step ratios)")
