"""How many threads NumPy's BLAS may use, set for the length of a block.

LeNet-5's matrix products are small (at most a few thousand rows by a few
hundred columns at batch 32): on a 2-core machine, OpenBLAS's default threads
spend more time waking and waiting than multiplying, so the trainer and the
benchmarks run them on one thread.
"""
import contextlib
import ctypes


def _openblas_thread_setters():
    """Return (get, set) ctypes functions of the OpenBLAS NumPy loaded, or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        library = ctypes.CDLL(path)
        for get_name, set_name in (("scipy_openblas_get_num_threads64_",
                                    "scipy_openblas_set_num_threads64_"),
                                   ("openblas_get_num_threads", "openblas_set_num_threads")):
            if hasattr(library, get_name) and hasattr(library, set_name):
                return getattr(library, get_name), getattr(library, set_name)
    return None


@contextlib.contextmanager
def blas_threads(count):
    """Context manager: NumPy's BLAS uses `count` threads inside the block.

    Uses threadpoolctl when installed, else OpenBLAS's own setter through
    ctypes; yields False (and changes nothing) when neither is available.
    Small matrix products, like those of LeNet-5's layers, run faster on one
    thread than on several threads competing for busy cores.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=count, user_api="blas"):
            yield True
        return
    setters = _openblas_thread_setters()
    if setters is None:
        yield False
        return
    get_threads, set_threads = setters
    previous = get_threads()
    set_threads(count)
    try:
        yield True
    finally:
        set_threads(previous)
