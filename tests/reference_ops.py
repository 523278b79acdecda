"""Test helpers: the loop references (from ``convnet.reference_ops``) and finite differences."""
import numpy as np

from convnet.reference_ops import (  # noqa: F401  (re-exported for the tests)
    reference_conv_backward,
    reference_conv_forward,
    reference_dtype,
    reference_pads,
    reference_pool_backward,
    reference_pool_forward,
)


def numerical_gradient(loss, x, eps=1e-6):
    """Centred finite differences of loss() with respect to every entry of x.

    x is perturbed in place, one entry at a time, and restored.
    """
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + eps
        up = loss()
        x[index] = saved - eps
        down = loss()
        x[index] = saved
        gradient[index] = (up - down) / (2 * eps)
    return gradient
