"""LeNet-5's weight names shared by every backend, and the NumPy LeNet-5 built from the zoo.

The NumPy LeNet-5 is the zoo's ``lenet5`` spec run by
:class:`convnet.nn.sequential.Sequential`. The TensorFlow and Keras trainings
write their weights under ``WEIGHT_NAMES``; ``convnet.training.checkpoint`` reads such
a file as the zoo's ``lenet5``.
"""
import numpy as np

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
# Names of the 10 weight arrays in exchange order: the keys of the LeNet-5 weights
# files of the TensorFlow and Keras trainings (and of older NumPy checkpoints), which
# are the zoo lenet5's conv1/kernel, conv1/bias, ... in that order.
WEIGHT_NAMES = ("conv1_kernel", "conv1_bias", "conv2_kernel", "conv2_bias",
                "dense1_kernel", "dense1_bias", "dense2_kernel", "dense2_bias",
                "dense3_kernel", "dense3_bias")
NUM_WEIGHTS = len(WEIGHT_NAMES)
# LeNet-5's training steps run this many images at a time (see ``Sequential``).
MICRO_BATCH = 32


def LeNet5(seed=0, dtype=np.float32, micro_batch=MICRO_BATCH):
    """Return the zoo's ``lenet5`` as a ``Sequential`` model.

    Parameters
    ----------
    seed : int
        Seed of the He-normal kernels.
    dtype : numpy dtype
        float32 for training, float64 for gradient checks.
    micro_batch : int
        Images per slice of a training step (see ``Sequential``).

    Returns
    -------
    Sequential
        Input (28, 28, 1), 10 classes, 61,706 parameters.
    """
    from convnet.nn.sequential import Sequential
    from convnet.nn.zoo import load_spec
    return Sequential(load_spec("lenet5"), seed=seed, dtype=dtype, micro_batch=micro_batch)
