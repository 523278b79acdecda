"""convnet: convolutional neural networks from scratch in NumPy.

The four layer operations of the curriculum (tasks 0-3) are exposed here from
``convnet/ops.py``, the engine; the task folder holds their readable versions.
"""
from convnet.ops import conv_backward, conv_forward, pool_backward, pool_forward

__all__ = ["conv_backward", "conv_forward", "pool_backward", "pool_forward"]
__version__ = "0.1.0"
