"""What the training benchmarks train: a model's batch and optimizer, its data, two trainers.

:func:`train_setting` gives the spec, batch and optimizer a model is
benchmarked with; :func:`bench_images` the images it trains on;
:class:`NumpyStepper` and :class:`KerasFitter` train them, the NumPy engine
by a plain loop of steps and the Keras twin by ``fit``.
"""
import time

import numpy as np

from convnet.apps.bench.timing import setup_tensorflow
from convnet.checks import check_count
from convnet.nn.optim import make_optimizer
from convnet.nn.sequential import Sequential, normalise_spec
from convnet.nn.threads import blas_threads
from convnet.nn.zoo import load_spec

# The batch each model was trained with in the course (32 for the others).
COURSE_BATCH = {"mnist-cnn": 64, "cifar-cnn": 32, "mlp": 128}
DEFAULT_BATCH = 32
# Training-set sizes: MNIST's 50,000 for 28x28x1 models, CIFAR-10's 45,000 (after its 5,000
# validation images) for 32x32x3; any other input shape gets this many synthetic images.
MNIST_TRAIN = 50000
CIFAR_TRAIN = 45000
OTHER_TRAIN = 1000
# Untimed steps before the timed ones: they pay for tracing, caches and first-touch pages.
WARMUP_STEPS = 3


def bench_images(input_shape, num_classes, seed=0):
    """Training images and labels for a model's input: the data its epoch is timed on.

    Parameters
    ----------
    input_shape : tuple of int
        (h, w, c) of the model.
    num_classes : int
        2 for a sigmoid output.
    seed : int
        Seed of the synthetic images.

    Returns
    -------
    X : ndarray of shape (n, h, w, c), float32 in [0, 1)
        MNIST's 50,000 training images for (28, 28, 1) when the file is
        cached (random ones of that size otherwise); 45,000 random images for
        (32, 32, 3), the size of CIFAR-10's training split; 1,000 otherwise.
    Y : ndarray of shape (n,), int64
    source : str
        What X is, for the output.
    """
    input_shape = tuple(input_shape)
    rng = np.random.default_rng(seed)
    if input_shape == (28, 28, 1) and num_classes == 10:
        try:
            from convnet.data import load_mnist
            X, Y = load_mnist()[:2]
            return X[:MNIST_TRAIN, :, :, np.newaxis], Y[:MNIST_TRAIN].astype(np.int64), "MNIST"
        except (ImportError, OSError, ValueError):
            pass
    count = bench_data_size(input_shape)
    X = rng.random((count, *input_shape), dtype=np.float32)
    Y = rng.integers(0, num_classes, count).astype(np.int64)
    return X, Y, f"synthetic {'x'.join(map(str, input_shape))}"


def epoch_data(spec, seed=0):
    """The training and validation images a spec's epoch is timed and checked on.

    Parameters
    ----------
    spec : dict
        A normalised spec.
    seed : int
        Seed of synthetic images, when there are any.

    Returns
    -------
    X_train : ndarray of shape (n, h, w, c), float32
    Y_train : ndarray of shape (n,), int64
    X_valid : ndarray of shape (n_valid, h, w, c), float32
    Y_valid : ndarray of shape (n_valid,), int64
    source : str
        What the images are. For a (28, 28, 1) model of 10 classes, MNIST's
        50,000 training and 10,000 validation images when the file is
        cached; for (32, 32, 3) and 10 classes, CIFAR-10's 45,000 and 5,000
        when the user cached it. Otherwise synthetic images of the model's
        shape, as many as ``bench_data_size`` says and a tenth of that for
        validation: each class has a fixed random pattern, and each image is
        a quarter of its class's pattern and three quarters uniform noise,
        so that what an engine learns in an epoch shows in its accuracy.
    """
    input_shape = tuple(spec["layers"][0]["shape"])
    classes = output_classes(spec)
    dataset = {(28, 28, 1): "mnist", (32, 32, 3): "cifar10"}.get(input_shape)
    if dataset is not None and classes == 10:
        try:
            from convnet.data import load_dataset
            X, Y, X_valid, Y_valid = load_dataset(dataset)[:4]
            return (X.reshape(-1, *input_shape), Y, X_valid.reshape(-1, *input_shape), Y_valid,
                    dataset.upper() if dataset == "mnist" else "CIFAR-10")
        except (ImportError, OSError, ValueError):
            pass
    rng = np.random.default_rng(seed)
    patterns = rng.random((classes, *input_shape), dtype=np.float32)
    sets = []
    for count in (bench_data_size(input_shape), bench_data_size(input_shape) // 10):
        labels = rng.integers(0, classes, count)
        images = rng.random((count, *input_shape), dtype=np.float32)
        images *= 0.75
        for label in range(classes):
            images[labels == label] += 0.25 * patterns[label]
        sets += [images, labels.astype(np.int64)]
    return (*sets, f"synthetic {'x'.join(map(str, input_shape))}, {classes} patterns")


def bench_data_size(input_shape):
    """How many training images ``bench_images`` gives for a model's input shape."""
    sizes = {(28, 28, 1): MNIST_TRAIN, (32, 32, 3): CIFAR_TRAIN}
    return sizes.get(tuple(input_shape), OTHER_TRAIN)


def output_classes(spec):
    """The number of classes a normalised spec's output tells apart: 2 for a sigmoid unit."""
    last = spec["layers"][-1]
    return 2 if last["activation"] == "sigmoid" else last["units"]


def spec_images(spec):
    """``bench_images`` for a normalised spec: its input shape and its number of classes."""
    return bench_images(spec["layers"][0]["shape"], output_classes(spec))


def train_setting(model, batch=None, optimizer=None):
    """The canonical spec, batch and optimizer the training benchmark uses for ``model``.

    The batch defaults to the course's for the model (``COURSE_BATCH``, else
    32), the optimizer to the spec's own (adam when it names none); NumPy
    and Keras use the same.
    """
    spec = normalise_spec(load_spec(model))
    if batch is None:
        batch = COURSE_BATCH.get(spec["name"], DEFAULT_BATCH)
    check_count("batch", batch)
    return spec, batch, optimizer or spec["optimizer"] or "adam"


def _spec_of(spec):
    """A zoo name or spec.json path as its spec; a spec as it is."""
    return load_spec(spec) if isinstance(spec, str) else spec


class NumpyStepper:
    """A Sequential model and its optimizer, trained by a plain loop of steps.

    Parameters
    ----------
    spec : str or dict
        A zoo name, spec.json path or spec, built as a ``Sequential``.
    batch : int
        Images per step of the loop; the last step of a pass takes the rest.
    optimizer : str
        adam, rmsprop or sgd (``convnet.nn.optim``, Keras's formulation and
        defaults).
    seed : int
        Seed of the initial weights and of the order of the images.
    blas_thread_count : int
        BLAS threads while training: 1, as ``convnet train`` runs (on a busy
        two-core machine a second BLAS thread waiting for its core makes a
        Dense layer's product over ten times slower).
    """

    def __init__(self, spec, batch, optimizer, seed=0, blas_thread_count=1):
        self.model = Sequential(_spec_of(spec), seed=seed)
        self.optimizer = make_optimizer(optimizer, self.model.parameters())
        self.batch = batch
        self.rng = np.random.default_rng(seed)
        self.blas_thread_count = blas_thread_count

    def train(self, X, Y):
        """One shuffled pass over X (m, h, w, c), Y (m,); return the seconds it took."""
        with blas_threads(self.blas_thread_count):
            start = time.perf_counter()
            order = self.rng.permutation(len(X))
            for begin in range(0, len(X), self.batch):
                batch = order[begin:begin + self.batch]
                _, grads = self.model.loss_and_grads(X[batch], Y[batch])
                self.optimizer.step(grads)
            return time.perf_counter() - start


class KerasFitter:
    """The Keras twin of a spec, trained slice by slice with ``fit``, Keras's own optimizer.

    Parameters
    ----------
    spec : str or dict
        A zoo name, spec.json path or spec, built as its Keras twin.
    batch : int
        ``fit``'s ``batch_size``.
    optimizer : str
        Keras's optimizer of that name (adam, rmsprop or sgd).
    seed : int
        Seed of the initial weights, the NumPy model's of the same seed;
        ``fit`` shuffles the images its own way.
    """

    def __init__(self, spec, batch, optimizer, seed=0):
        setup_tensorflow()
        from convnet.tf import tf_training
        self.spec = normalise_spec(_spec_of(spec))
        self.model = tf_training.build_keras(self.spec, optimizer, seed=seed)
        self.targets = lambda Y: tf_training.keras_targets(self.spec, Y)
        self.batch = batch

    def train(self, X, Y):
        """One shuffled pass over X (m, h, w, c), Y (m,) with ``fit``; return its seconds."""
        targets = self.targets(Y)
        start = time.perf_counter()
        self.model.fit(X, targets, batch_size=self.batch, epochs=1, verbose=0, shuffle=True)
        return time.perf_counter() - start
