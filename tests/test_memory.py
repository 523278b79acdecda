"""The allocator setting of the trainer: freed memory is reused, not faulted back in."""
import platform
import subprocess
import sys

import numpy as np
import pytest

from convnet.nn import memory

# Allocates and frees three 1 MiB arrays 20 times, then prints the page faults per round.
FAULTS_PER_ROUND = """
import resource, sys
import numpy as np
from convnet.nn.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def round_of_arrays():
    arrays = [np.ones(2 ** 18, np.float32) for _ in range(3)]
    del arrays
round_of_arrays()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    round_of_arrays()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def faults_per_round(mode):
    result = subprocess.run([sys.executable, "-c", FAULTS_PER_ROUND, mode],
                            capture_output=True, text=True, check=True)
    return float(result.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's mallopt")
def test_freed_arrays_are_reused_without_page_faults():
    # A 1 MiB array is 256 pages: by default glibc gives the memory back and
    # each round faults most of it in again; kept, it is reused as it is.
    assert faults_per_round("default") > 100
    assert faults_per_round("keep") < 10


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8])
@pytest.mark.parametrize("count", [0, 1, 1000])
def test_aligned_zeros_start_on_the_boundary(dtype, count):
    for _ in range(5):   # whatever address malloc hands out
        zeros = memory.aligned_zeros(count, dtype)
        assert zeros.shape == (count,) and zeros.dtype == dtype and not zeros.any()
        assert count == 0 or zeros.ctypes.data % memory.ALIGNMENT == 0




@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8])
@pytest.mark.parametrize("count, width", [(0, 5), (1, 7), (3, 61706), (4, 16)])
def test_every_aligned_row_starts_on_the_boundary(dtype, count, width):
    rows = memory.aligned_rows(count, width, dtype)
    assert rows.shape == (count, width) and rows.dtype == dtype and not rows.any()
    for row in rows:
        assert row.flags.c_contiguous and row.ctypes.data % memory.ALIGNMENT == 0
    # The rows do not overlap: writing one leaves the others.
    if count > 1:
        rows[0] = 1
        assert not rows[1:].any()
