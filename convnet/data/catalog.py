"""Every dataset by name: load it, and name its classes.

The names are ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``, ``"happy"`` and
``"signs"`` (:data:`DATASETS`). :func:`load_dataset` returns the same six arrays
for each; :func:`class_names` gives the names of the classes, either the
dataset's own or the shorter ones pictures and the page show.
"""
from convnet.checks import check_count
from convnet.data import cifar10, course_h5, fashion_mnist, mnist
from convnet.errors import BadOptionError

DATASETS = ("mnist", "fashion-mnist", "cifar10", "happy", "signs")
MNIST_CLASS_NAMES = tuple(str(digit) for digit in range(10))
# Fashion-MNIST's own names shortened to fit under a picture or a bar.
FASHION_CLASS_NAMES = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat",
                       "Sandal", "Shirt", "Sneaker", "Bag", "Boot")
# CIFAR-10's names are read from its cache, so they are not listed here.
_CLASS_NAMES = {"mnist": MNIST_CLASS_NAMES,
                "fashion-mnist": fashion_mnist.FASHION_MNIST_CLASSES,
                **{name: info["classes"] for name, info in course_h5.COURSE_H5.items()}}


def _unknown(name):
    """The error for a dataset name outside :data:`DATASETS`."""
    return BadOptionError(f"dataset must be one of {', '.join(DATASETS)}, received {name!r}")


def load_dataset(name="mnist", path=None, limit=None):
    """Load a dataset by name: ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``,
    ``"happy"`` or ``"signs"``.

    Parameters
    ----------
    name : str
        ``"mnist"`` (see :func:`convnet.data.mnist.load_mnist`), ``"fashion-mnist"``
        (see :func:`convnet.data.fashion_mnist.load_fashion_mnist`), ``"cifar10"``
        (see :func:`convnet.data.cifar10.load_cifar10`), ``"happy"`` or ``"signs"``
        (see :func:`convnet.data.course_h5.load_course_h5`).
    path : str or Path, optional
        Read the data from here instead of the default location.
    limit : int, optional
        Keep only the first ``limit`` training images (validation and test
        splits stay whole).

    Returns
    -------
    tuple of ndarray
        ``(X_train, Y_train, X_valid, Y_valid, X_test, Y_test)``: images float32,
        labels int64 of shape ``(n,)``. MNIST and Fashion-MNIST images have shape
        ``(n, 28, 28)`` and values in ``[0, 1)``; the others have shape
        ``(n, h, w, 3)`` and values in ``[0, 1]``. The class names are given by
        :func:`class_names`.

    Raises
    ------
    BadOptionError
        ``name`` is not one of :data:`DATASETS` (also a ValueError).
    """
    if limit is not None:
        check_count("limit", limit)
    if name == "mnist":
        arrays = mnist.load_mnist(path)
    elif name == "fashion-mnist":
        arrays = fashion_mnist.load_fashion_mnist(path)
    elif name == "cifar10":
        return cifar10.load_cifar10(path, limit=limit)
    elif name in course_h5.COURSE_H5:
        return course_h5.load_course_h5(name, path, limit=limit)
    else:
        raise _unknown(name)
    if limit is None:
        return arrays
    X_train, Y_train, *rest = arrays
    return (X_train[:limit], Y_train[:limit], *rest)


def class_names(name, path=None, *, stored=None, short=False):
    """Names of a dataset's classes, in the order of the labels 0, 1, ...

    By default the dataset's own names: the digits for MNIST, Fashion-MNIST's
    ``"T-shirt/top"`` ... ``"Ankle boot"``, CIFAR-10's from its cache. Two
    keywords serve what a trained model shows: ``stored``, the names a
    checkpoint recorded, and ``short``, Fashion-MNIST's names shortened for
    pictures.

    Parameters
    ----------
    name : str or None
        A name :func:`load_dataset` accepts, or None for a model that does not
        record its dataset (a LeNet-5 weights file, trained on MNIST).
    path : str or Path, optional
        For ``"cifar10"``: the cached ``cifar10.npz`` whose names (read from the
        archive's ``batches.meta``) are returned; by default the cached file
        if it exists, else the official names. Not read when ``stored`` is given.
    stored : sequence of str, optional
        Names recorded with a model (a checkpoint's ``class_names``): returned
        as they are, for any ``name``, except that ``short`` wins for
        Fashion-MNIST.
    short : bool
        For ``"fashion-mnist"``, :data:`FASHION_CLASS_NAMES` (``"T-shirt"`` ...
        ``"Boot"``), which fit under a picture. Other datasets have no short names.

    Returns
    -------
    tuple of str
        One name per class.

    Raises
    ------
    BadOptionError
        ``name`` is not one of :data:`DATASETS` (nor None) and ``stored`` is not
        given (also a ValueError).
    DataError
        The CIFAR-10 cache exists but cannot be read.
    """
    if short and name == "fashion-mnist":
        return FASHION_CLASS_NAMES
    if stored is not None:
        return tuple(stored)
    if name is None:
        return MNIST_CLASS_NAMES
    if name == "cifar10":
        return cifar10.cached_class_names(path)
    if name not in _CLASS_NAMES:
        raise _unknown(name)
    return _CLASS_NAMES[name]
