"""Fixtures shared by the test files."""
import os

import pytest


@pytest.fixture(scope="session")
def mnist():
    """The six arrays of the cached MNIST.npz, loaded once and read-only.

    Without the cached file the tests that need it are skipped, except in CI
    (``CI`` set), where ``make test`` fetches it first, so its absence is a
    failure rather than a quiet skip.
    """
    from convnet import data
    try:
        arrays = data.load_mnist()
    except FileNotFoundError as error:
        if os.environ.get("CI"):
            pytest.fail(f"MNIST is not cached in CI: {error}")
        pytest.skip(f"MNIST is not cached ({error}); run `convnet data`")
    for array in arrays:
        array.setflags(write=False)
    return arrays


@pytest.fixture(scope="session")
def mnist_slice(mnist):
    """A function writing the first images of each MNIST split to a new MNIST.npz.

    ``mnist_slice(path, train, valid, test)`` returns ``path``.
    """
    import numpy as np

    def write(path, train, valid, test):
        X_train, Y_train, X_valid, Y_valid, X_test, Y_test = mnist
        np.savez(path, X_train=X_train[:train], Y_train=Y_train[:train],
                 X_valid=X_valid[:valid], Y_valid=Y_valid[:valid], X_test=X_test[:test],
                 Y_test=Y_test[:test])
        return path

    return write


@pytest.fixture(autouse=True)
def one_training_process_by_default(monkeypatch):
    """``convnet train`` run in a test's own process trains alone unless told otherwise.

    The default count depends on how busy the machine is at that moment;
    tests that need more processes ask for them (``--processes``), and the
    rule itself has tests of its own.
    """
    from convnet.parallel import distributed
    monkeypatch.setattr(distributed, "default_processes",
                        lambda batch_size=32, micro_batch=None, window=0.3: 1)
