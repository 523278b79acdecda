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
