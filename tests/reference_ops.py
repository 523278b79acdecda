"""Test helpers: the loop references (from ``convnet.nn.reference_ops``), the task files
loaded as modules, and finite differences."""
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from convnet.nn.reference_ops import (  # noqa: F401  (re-exported for the tests)
    reference_conv_backward,
    reference_conv_forward,
    reference_dtype,
    reference_pads,
    reference_pool_backward,
    reference_pool_forward,
)

TASK_DIR = Path(__file__).resolve().parent.parent / "0x07-cnn"
TASK_FUNCTIONS = {"0-conv_forward": "conv_forward", "1-pool_forward": "pool_forward",
                  "2-conv_backward": "conv_backward", "3-pool_backward": "pool_backward"}


def load_task_file(name, folder=TASK_DIR):
    """Import the task file ``folder/NAME.py`` as it stands, under a private module name."""
    spec = importlib.util.spec_from_file_location("task_" + name.replace("-", "_"),
                                                  Path(folder) / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_task_functions(folder=TASK_DIR):
    """The four functions of the task files 0-3, each imported from its file in folder."""
    return SimpleNamespace(**{function: getattr(load_task_file(name, folder), function)
                              for name, function in TASK_FUNCTIONS.items()})


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
