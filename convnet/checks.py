"""Argument checks shared by the package's entry points.

(The operations in ``convnet.nn.ops`` keep their own checks, close to the code
they guard, and each task file in ``0x07-cnn/`` has its own, to stand alone.)
"""
import numpy as np


def check_count(name, value, non_negative=False):
    """Raise ValueError unless ``value`` is an integer (not a bool) >= 1, or >= 0.

    The message names the argument and what it received: ``"runs must be a
    positive integer, received 0"``.
    """
    minimum, kind = (0, "non-negative") if non_negative else (1, "positive")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be a {kind} integer, received {value!r}")
