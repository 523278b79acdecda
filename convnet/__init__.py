"""convnet: convolutional neural networks from scratch in NumPy.

The four layer operations of the curriculum (tasks 0-3) are exposed here from
``convnet/nn/ops.py``, the engine; the task folder holds their readable versions.
``Sequential`` (any small CNN from a spec), ``to_keras`` and ``from_keras`` (its
Keras twin), and training as a library call, ``TrainConfig``, ``train`` and
``evaluate`` (``convnet.api``), are imported on first use.
"""
from convnet.nn.ops import conv_backward, conv_forward, pool_backward, pool_forward

__all__ = ["Sequential", "TrainConfig", "conv_backward", "conv_forward", "evaluate",
           "from_keras", "pool_backward", "pool_forward", "to_keras", "train"]
__version__ = "0.1.0"
_LAZY = {"Sequential": "convnet.nn.sequential", "to_keras": "convnet.tf.keras_twin",
         "from_keras": "convnet.tf.keras_twin", "TrainConfig": "convnet.api",
         "train": "convnet.api", "evaluate": "convnet.api"}


def __getattr__(name):
    """Import the names of ``_LAZY`` when first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'convnet' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(_LAZY[name]), name)
