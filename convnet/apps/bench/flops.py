"""How much arithmetic a training epoch needs, and how fast this machine multiplies matrices.

:func:`training_flops` counts, from a spec, the floating-point operations of
the matrix products of one image's forward and backward pass;
:func:`gemm_gflops` measures the rate of one large float32 matrix product
through NumPy. Together they say how close an engine comes to the machine's
limit: ``FLOPs per epoch / seconds per epoch`` against the product's rate.
"""
import contextlib
import time
from typing import NamedTuple

import numpy as np

from convnet.apps.bench.twin_layout import conv_geometry, pool_geometry
from convnet.nn.sequential import normalise_spec
from convnet.nn.threads import blas_threads

# The side of the square matrices of the reference product: large enough for
# BLAS to reach its peak, small enough (16 MB each in float32) to take a second.
GEMM_SIZE = 2048


class LayerFlops(NamedTuple):
    """The products of one spec entry, in floating-point operations per image.

    ``forward`` is the layer's product (two operations per multiply-add);
    ``kernel_gradient`` and ``input_gradient`` those of its backward pass
    (the input gradient is 0 where no earlier layer needs it).
    """

    name: str
    forward: int
    kernel_gradient: int
    input_gradient: int

    @property
    def total(self):
        """Forward and backward together."""
        return self.forward + self.kernel_gradient + self.input_gradient


def layer_flops(spec):
    """Count the matrix products of every entry of a spec, per image.

    Parameters
    ----------
    spec : list or dict
        A spec (see ``convnet.nn.sequential``), normalised here.

    Returns
    -------
    list of LayerFlops
        One per Conv2D and Dense entry, in order. A convolution of a
        ``kh x kw x c_in`` window into ``c_out`` maps of ``h x w`` outputs
        does ``2 kh kw c_in c_out h w`` operations forward, and as many for
        the kernel's gradient and for the input's; a Dense layer of ``n_in``
        inputs and ``n_out`` units ``2 n_in n_out`` each. The first layer
        with weights computes no input gradient (nothing before it learns),
        as every engine here skips it. Biases, activations, pooling, the loss
        and the optimizer are element-wise work, left out.
    """
    spec = normalise_spec(spec)
    entries = spec["layers"]
    shape = tuple(entries[0]["shape"])
    counts, learning_before = [], False
    for entry in entries[1:]:
        kind = entry["layer"]
        if kind == "ZeroPadding2D":
            (top, bottom), (left, right) = entry["padding"]
            shape = (shape[0] + top + bottom, shape[1] + left + right, shape[2])
        elif kind in ("MaxPool2D", "AveragePool2D"):
            shape = pool_geometry(entry, shape).output_shape
        elif kind == "Flatten":
            shape = (int(np.prod(shape)),)
        elif kind == "Conv2D":
            (kh, kw), c_in = entry["kernel"], shape[2]
            h, w, c_out = conv_geometry(entry, shape).output_shape
            product = 2 * kh * kw * c_in * c_out * h * w
            counts.append(LayerFlops(entry["name"], product, product,
                                     product if learning_before else 0))
            shape, learning_before = (h, w, c_out), True
        elif kind == "Dense":
            product = 2 * shape[0] * entry["units"]
            counts.append(LayerFlops(entry["name"], product, product,
                                     product if learning_before else 0))
            shape, learning_before = (entry["units"],), True
        elif kind == "BatchNormalization":
            learning_before = True
    return counts


def training_flops(spec, images=1):
    """Floating-point operations of the products of training on ``images`` images.

    Parameters
    ----------
    spec : list or dict
        A spec.
    images : int
        How many images (an epoch's, say).

    Returns
    -------
    int
        ``images`` times the sum of :func:`layer_flops`' totals.
    """
    return images * sum(layer.total for layer in layer_flops(spec))


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

