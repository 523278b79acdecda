"""How fast this machine multiplies matrices: the reference rate of the benchmarks.

:func:`gemm_gflops` measures the rate of one large float32 matrix product
through NumPy. With ``convnet.nn.flops.training_flops`` it says how close an
engine comes to the machine's limit: ``FLOPs per epoch / seconds per
epoch`` against the product's rate.
"""
import contextlib
import time

import numpy as np

from convnet.nn.threads import blas_threads

# The side of the square matrices of the reference product: large enough for
# BLAS to reach its peak, small enough (16 MB each in float32) to take a second.
GEMM_SIZE = 2048


def gemm_gflops(size=GEMM_SIZE, threads=None, repeats=3):
    """Measure NumPy's float32 matrix product of two ``size x size`` matrices.

    Parameters
    ----------
    size : int
        Side of the square matrices.
    threads : int, optional
        BLAS threads during the product (default: NumPy's own).
    repeats : int
        Timed products after one untimed one; the fastest counts (the
        machine's other work only ever slows a product down).

    Returns
    -------
    float
        GFLOP/s: ``2 size**3`` operations over the fastest product's seconds.
    """
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    out = np.empty((size, size), np.float32)
    best = float("inf")
    limit = blas_threads(threads) if threads else contextlib.nullcontext()
    with limit:
        np.matmul(a, b, out=out)
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9

