import numpy as np
import pytest

from convnet.nn import threads


def test_blas_threads_sets_one_thread_and_restores_the_count():
    setters = threads._openblas_thread_setters()
    if setters is None:
        pytest.skip("NumPy is not linked against OpenBLAS here")
    get_threads, set_threads = setters
    before = get_threads()
    set_threads(2)
    try:
        with threads.blas_threads(1) as limited:
            assert limited is True
            assert get_threads() == 1
        assert get_threads() == 2
    finally:
        set_threads(before)


def test_results_do_not_depend_on_the_thread_count():
    a = np.random.default_rng(0).standard_normal((64, 64))
    expected = a @ a
    with threads.blas_threads(1):
        np.testing.assert_allclose(a @ a, expected, rtol=1e-12)
