"""Small data files built to exhaust memory or to read other files are refused in one line.

Each case builds, in a few kilobytes to a few megabytes, a file that declares
far more data than it holds (deflated zeros, unwritten HDF5 datasets, sparse
files, lying zip directories) or that points at other files (HDF5 external
storage, external links, virtual datasets). The loader must refuse it with a
DataError naming the file and the array, and the command (``convnet train
--data``, ``convnet data happy --from``) must exit with status 2, print one
line starting ``convnet: error:`` and take less than twice the memory the
same command takes on a small valid file of the same kind.

Every process that reads a case runs under an address-space limit, so a
loader that regresses fails with MemoryError instead of taking gigabytes from
the machine. Bombs are built without ever holding their expanded bytes: a
deflate segment of a megabyte of zeros that ends in a full flush stands
alone, so it is repeated.
"""
import contextlib
import dataclasses
import io
import math
import os
import re
import resource
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from convnet import data

# Address space a command may take (virtual, not resident): enough to start it, too
# little for the data these files declare.
CHILD_ADDRESS_SPACE = 4 << 30
# Address space the loader may add to this process's while it reads a case.
LOADER_HEADROOM = 1 << 30
COMMAND_TIMEOUT = 300
ZERO_BLOCK = bytes(1 << 20)


# ---------------------------------------------------------------- building bombs
def _standalone_segment(payload):
    """Raw deflate of ``payload`` ending in a full flush: decodable after any other segment."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(payload) + packer.flush(zlib.Z_FULL_FLUSH)


def deflated_zeros(prefix, zeros):
    """Raw deflate stream of ``prefix`` followed by ``zeros`` zero bytes."""
    full, rest = divmod(zeros, len(ZERO_BLOCK))
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    return (_standalone_segment(prefix) + _standalone_segment(ZERO_BLOCK) * full
            + _standalone_segment(bytes(rest)) + final)


def checksum_of_zeros(function, prefix, zeros):
    """``zlib.crc32`` or ``zlib.adler32`` of ``prefix`` followed by ``zeros`` zero bytes."""
    value = function(prefix)
    full, rest = divmod(zeros, len(ZERO_BLOCK))
    for _ in range(full):
        value = function(ZERO_BLOCK, value)
    return function(bytes(rest), value)


def gzip_of_zeros(prefix, zeros):
    """A valid gzip file of ``prefix`` followed by ``zeros`` zero bytes."""
    size = len(prefix) + zeros
    trailer = struct.pack("<II", checksum_of_zeros(zlib.crc32, prefix, zeros), size % 2 ** 32)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + deflated_zeros(prefix, zeros) + trailer


def zlib_of_zeros(zeros):
    """A valid zlib stream (HDF5's gzip filter) of ``zeros`` zero bytes."""
    adler = checksum_of_zeros(zlib.adler32, b"", zeros)
    return b"\x78\xda" + deflated_zeros(b"", zeros) + struct.pack(">I", adler)


def npy_header(shape, dtype):
    """The ``.npy`` header of an array of ``shape`` and ``dtype``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
        "shape": tuple(shape)})
    return buffer.getvalue()


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@dataclasses.dataclass
class Member:
    """One zip member as its directory declares it; the sizes may disagree with the payload."""

    name: str
    payload: bytes
    crc: int
    size: int
    method: int = zipfile.ZIP_STORED
    stored: int = None


def stored_array(key, array):
    payload = npy_bytes(array)
    return Member(key + ".npy", payload, zlib.crc32(payload), len(payload))


def deflated_zero_array(key, shape, dtype):
    """A valid deflated member holding an array of zeros of ``shape``: a few MB for gigabytes."""
    header = npy_header(shape, dtype)
    zeros = math.prod(shape) * np.dtype(dtype).itemsize
    return Member(key + ".npy", deflated_zeros(header, zeros),
                  checksum_of_zeros(zlib.crc32, header, zeros), len(header) + zeros,
                  method=zipfile.ZIP_DEFLATED)


def write_zip(path, members):
    """Write a zip archive by hand, so that its directory may state anything."""
    local, central = bytearray(), bytearray()
    for member in members:
        stored = len(member.payload) if member.stored is None else member.stored
        # version needed, flags, method, time, date (1980-01-01), crc, sizes
        fields = struct.pack("<HHHHHIII", 20, 0, member.method, 0, 0x21, member.crc, stored,
                             member.size)
        name = member.name.encode()
        central += (struct.pack("<IH", 0x02014B50, 20) + fields
                    + struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0, len(local)) + name)
        local += struct.pack("<I", 0x04034B50) + fields + struct.pack("<HH", len(name), 0) + name
        local += member.payload
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                      len(local), 0)
    path.write_bytes(bytes(local + central + end))
    return path


def curriculum_members(**replaced):
    """The six members of a small curriculum MNIST.npz (50 / 10 / 10), some replaced."""
    rng = np.random.default_rng(0)
    members = {}
    for split, n in (("train", 50), ("valid", 10), ("test", 10)):
        images = (rng.integers(0, 256, (n, 28, 28)) / 256).astype(np.float32)
        members["X_" + split] = stored_array("X_" + split, images)
        members["Y_" + split] = stored_array("Y_" + split, np.arange(n) % 10)
    members.update(replaced)
    return list(members.values())


def write_idx_folder(folder, train_images, n_train=50):
    """A folder of MNIST's four IDX files whose training images file is ``train_images``.

    ``train_images`` is ``(name, bytes)``; the other three files are small and
    valid, with ``n_train`` training labels.
    """
    folder.mkdir()
    rng = np.random.default_rng(1)
    (folder / train_images[0]).write_bytes(train_images[1])
    files = {"train-labels-idx1-ubyte": np.arange(n_train) % 10,
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)),
             "t10k-labels-idx1-ubyte": np.arange(10) % 10}
    for name, array in files.items():
        array = array.astype(np.uint8)
        header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
        (folder / name).write_bytes(header + array.tobytes())
    return folder


def idx_header(shape):
    return bytes([0, 0, 8, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


# ---------------------------------------------------------------- the cases
@dataclasses.dataclass
class Case:
    """A hostile file, the command and the loader that read it, and the refusal expected."""

    command: list
    load: object
    message: str
    named: Path
    env: dict = dataclasses.field(default_factory=dict)
    unwritten: Path = None


def train_command(source, tmp_path, *options):
    return ["train", "--data", str(source), *options, "--epochs", "0", "--processes", "1",
            "--out", str(tmp_path / "run")]


def npz_case(tmp_path, members, message):
    path = write_zip(tmp_path / "MNIST.npz", members)
    return Case(train_command(path, tmp_path), lambda: data.load_mnist(path), message, path)


def npz_million_images(tmp_path):
    bomb = deflated_zero_array("X_train", (1_000_000, 28, 28), "<f4")
    return npz_case(tmp_path, curriculum_members(X_train=bomb),
                    r"array X_train declares shape \(1000000, 28, 28\) float32: 1,000,000 "
                    r"entries")


def npz_beyond_inflation(tmp_path):
    bomb = deflated_zero_array("X_train", (200_000, 28, 28), "<f4")
    return npz_case(tmp_path, curriculum_members(X_train=bomb),
                    r"array X_train would expand [\d,]+ stored bytes to 627,200,128")


def _short_member(declared, stored=None):
    """X_train whose header declares ``(200000, 28, 28)`` float32 but holding 50 images."""
    payload = npy_header((200_000, 28, 28), "<f4") + bytes(50 * 28 * 28 * 4)
    return Member("X_train.npy", payload, zlib.crc32(payload), declared, stored=stored)


def npz_header_beyond_member(tmp_path):
    payload = npy_header((200_000, 28, 28), "<f4") + bytes(50 * 28 * 28 * 4)
    return npz_case(tmp_path, curriculum_members(X_train=_short_member(len(payload))),
                    r"array X_train declares shape \(200000, 28, 28\) float32: 627,200,000 "
                    r"bytes, but its member holds 156,800")


def npz_stored_sizes_disagree(tmp_path):
    declared = len(npy_header((200_000, 28, 28), "<f4")) + 627_200_000
    return npz_case(tmp_path, curriculum_members(X_train=_short_member(declared)),
                    r"array X_train is stored uncompressed in [\d,]+ bytes but declares "
                    r"627,200,128")


def npz_directory_beyond_file(tmp_path):
    member = stored_array("X_train", np.zeros((50, 28, 28), np.float32))
    member.size = member.stored = 627_200_128
    return npz_case(tmp_path, curriculum_members(X_train=member),
                    r"its zip directory declares [\d,]+ stored bytes, more than the file's")


def cached_class_names(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    members = []
    for split in ("train", "valid", "test"):
        members.append(stored_array("X_" + split, np.zeros((2, 32, 32, 3), np.uint8)))
        members.append(stored_array("Y_" + split, np.array([0, 1])))
    members.append(deflated_zero_array("class_names", (300_000_000,), "<U1"))
    path = write_zip(cache / "cifar10.npz", members)
    command = ["train", "--dataset", "cifar10", "--model", "cifar-cnn", "--epochs", "0",
               "--processes", "1", "--out", str(tmp_path / "run")]
    return Case(command, lambda: data.class_names("cifar10"),
                r"array class_names declares shape \(300000000,\) <U1: 300,000,000 entries",
                path, env={"CONVNET_DATA_DIR": str(cache)})


def idx_case(tmp_path, name, content, message):
    folder = write_idx_folder(tmp_path / "idx", (name, content))
    return Case(train_command(folder, tmp_path), lambda: data.load_mnist(folder), message,
                folder / name)


def idx_gzip_million_images(tmp_path):
    shape = (1_000_000, 28, 28)
    return idx_case(tmp_path, "train-images-idx3-ubyte.gz",
                    gzip_of_zeros(idx_header(shape), 784_000_000),
                    r"train-images-idx3-ubyte.gz declares shape \(1000000, 28, 28\) uint8: "
                    r"1,000,000 entries")


def idx_gzip_beyond_inflation(tmp_path):
    shape = (230_000, 28, 28)
    return idx_case(tmp_path, "train-images-idx3-ubyte.gz",
                    gzip_of_zeros(idx_header(shape), 230_000 * 784),
                    r"train-images-idx3-ubyte.gz would expand [\d,]+ stored bytes to "
                    r"180,320,016")


def idx_gzip_padded(tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    return idx_case(tmp_path, "train-images-idx3-ubyte.gz",
                    gzip_of_zeros(idx_header(images.shape) + images.tobytes(), 500_000_000),
                    r"train-images-idx3-ubyte.gz has at least \d+ bytes, but an IDX file of "
                    r"shape \(50, 28, 28\) needs 39216")


def idx_sparse_million_images(tmp_path):
    case = idx_case(tmp_path, "train-images-idx3-ubyte", idx_header((1_000_000, 28, 28)),
                    r"train-images-idx3-ubyte declares shape \(1000000, 28, 28\) uint8: "
                    r"1,000,000 entries")
    # As long as its header says, but a hole on disk: nothing of it is stored.
    with open(case.named, "r+b") as handle:
        handle.truncate(16 + 784_000_000)
    return case


N_COURSE = 105   # more than happy's 100 validation images, so a cache can be written


def course_case(tmp_path, write_train, message):
    """happy's two files; ``write_train(handle, folder)`` writes ``train_set_x``."""
    h5py = pytest.importorskip("h5py")
    folder = tmp_path / "course"
    folder.mkdir()
    rng = np.random.default_rng(3)
    with h5py.File(folder / "train_happy.h5", "w") as handle:
        write_train(handle, tmp_path)
        handle.create_dataset("train_set_y", data=np.arange(N_COURSE) % 2)
        handle.create_dataset("list_classes", data=np.arange(2))
    with h5py.File(folder / "test_happy.h5", "w") as handle:
        handle.create_dataset("test_set_x", data=rng.integers(0, 256, (3, 64, 64, 3), np.uint8))
        handle.create_dataset("test_set_y", data=np.array([0, 1, 0]))
        handle.create_dataset("list_classes", data=np.arange(2))
    cache = tmp_path / "cache"
    command = ["data", "happy", "--from", str(folder), "--dir", str(cache)]
    return Case(command, lambda: data.read_course_h5("happy", folder), message,
                folder / "train_happy.h5", unwritten=cache / "happy.npz")


def other_course_file(tmp_path):
    """Another HDF5 file on the machine, holding images in the course's layout."""
    import h5py
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle.create_dataset("train_set_x", data=np.full((N_COURSE, 64, 64, 3), 7, np.uint8))
    return other


def h5_million_unwritten(tmp_path):
    def write(handle, _):
        handle.create_dataset("train_set_x", shape=(1_000_000, 64, 64, 3), dtype=np.uint8)
    return course_case(tmp_path, write, r"train_happy.h5: dataset train_set_x declares shape "
                                        r"\(1000000, 64, 64, 3\) uint8: 1,000,000 entries")


def h5_unwritten_within_limits(tmp_path):
    def write(handle, _):
        handle.create_dataset("train_set_x", shape=(50_000, 64, 64, 3), dtype=np.uint8)
    return course_case(tmp_path, write, r"dataset train_set_x declares shape \(50000, 64, 64, 3\) "
                                        r"uint8: 614,400,000 bytes, but the file stores 0 bytes")


def h5_chunk_bomb(tmp_path):
    def write(handle, _):
        images = np.random.default_rng(4).integers(0, 256, (N_COURSE, 64, 64, 3), np.uint8)
        dataset = handle.create_dataset("train_set_x", data=images, chunks=(1, 64, 64, 3),
                                        compression="gzip")
        dataset.id.write_direct_chunk((0, 0, 0, 0), zlib_of_zeros(500_000_000))
    return course_case(tmp_path, write, r"dataset train_set_x: chunk \(0, 0, 0, 0\) inflates "
                                        r"beyond the 12,288 bytes of a chunk")


def h5_external_storage(tmp_path):
    def write(handle, folder):
        secret = folder / "secret.bin"
        secret.write_bytes(np.random.default_rng(5).bytes(N_COURSE * 64 * 64 * 3))
        handle.create_dataset("train_set_x", shape=(N_COURSE, 64, 64, 3), dtype=np.uint8,
                              external=[(str(secret), 0, secret.stat().st_size)])
    return course_case(tmp_path, write, r"dataset train_set_x keeps its data in another file "
                                        r"\(.*secret.bin\)")


def h5_external_link(tmp_path):
    def write(handle, folder):
        import h5py
        handle["train_set_x"] = h5py.ExternalLink(str(other_course_file(folder)), "/train_set_x")
    return course_case(tmp_path, write, r"train_happy.h5: train_set_x leads to /train_set_x in "
                                        r"another file, .*other.h5")


def h5_virtual(tmp_path):
    def write(handle, folder):
        import h5py
        shape = (N_COURSE, 64, 64, 3)
        layout = h5py.VirtualLayout(shape=shape, dtype=np.uint8)
        layout[:] = h5py.VirtualSource(str(other_course_file(folder)), "train_set_x", shape=shape)
        handle.create_virtual_dataset("train_set_x", layout)
    return course_case(tmp_path, write, r"dataset train_set_x is a virtual dataset")


def h5_soft_link_out(tmp_path):
    def write(handle, folder):
        import h5py
        handle["elsewhere"] = h5py.ExternalLink(str(other_course_file(folder)), "/")
        handle["train_set_x"] = h5py.SoftLink("/elsewhere/train_set_x")
    return course_case(tmp_path, write, r"train_happy.h5: train_set_x leads to / in another "
                                        r"file, .*other.h5")


CASES = {
    "npz-million-images": npz_million_images,
    "npz-beyond-inflation": npz_beyond_inflation,
    "npz-header-beyond-member": npz_header_beyond_member,
    "npz-stored-sizes-disagree": npz_stored_sizes_disagree,
    "npz-directory-beyond-file": npz_directory_beyond_file,
    "npz-cached-class-names": cached_class_names,
    "idx-gzip-million-images": idx_gzip_million_images,
    "idx-gzip-beyond-inflation": idx_gzip_beyond_inflation,
    "idx-gzip-padded": idx_gzip_padded,
    "idx-sparse-million-images": idx_sparse_million_images,
    "h5-million-unwritten": h5_million_unwritten,
    "h5-unwritten-within-limits": h5_unwritten_within_limits,
    "h5-chunk-bomb": h5_chunk_bomb,
    "h5-external-storage": h5_external_storage,
    "h5-external-link": h5_external_link,
    "h5-virtual": h5_virtual,
    "h5-soft-link-out": h5_soft_link_out,
}


# ---------------------------------------------------------------- running them
def run_command(args, env):
    """Run ``python -m convnet ARGS`` under an address-space limit.

    Returns
    -------
    status : int
    stderr : str
    peak_mb : float
        The command's peak resident memory, from ``wait4``'s resource usage of
        that process alone (not of every child this process has had).
    """
    start = ("import os, resource, sys; "
             f"resource.setrlimit(resource.RLIMIT_AS, ({CHILD_ADDRESS_SPACE}, "
             f"{CHILD_ADDRESS_SPACE})); "
             "os.execv(sys.executable, [sys.executable, '-m', 'convnet', *sys.argv[1:]])")
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen([sys.executable, "-c", start, *args], env=env,
                                   stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return process.returncode, err.read().decode(errors="replace"), usage.ru_maxrss / 1024


@contextlib.contextmanager
def address_space_headroom(extra):
    """Let this process's address space grow by at most ``extra`` bytes inside the block."""
    status = Path("/proc/self/status")
    if not status.exists():
        yield
        return
    used = next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines()
                if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = used + extra if hard == resource.RLIM_INFINITY else min(used + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("name", list(CASES))
def test_the_loader_refuses_it_naming_the_file_and_the_array(name, tmp_path, monkeypatch):
    case = CASES[name](tmp_path)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    with address_space_headroom(LOADER_HEADROOM), \
            pytest.raises(data.DataError, match=case.message) as error:
        case.load()
    message = str(error.value)
    assert str(case.named) in message and "\n" not in message


def valid_npz(tmp_path):
    path = write_zip(tmp_path / "MNIST.npz", curriculum_members())
    return train_command(path, tmp_path)


def valid_idx(tmp_path):
    # The last 10,000 training images of an IDX source are its validation split.
    images = np.random.default_rng(9).integers(0, 256, (10_050, 28, 28), dtype=np.uint8)
    folder = write_idx_folder(tmp_path / "idx", ("train-images-idx3-ubyte",
                                                 idx_header(images.shape) + images.tobytes()),
                              n_train=len(images))
    return train_command(folder, tmp_path)


def valid_course_files(tmp_path):
    def write(handle, _):
        images = np.random.default_rng(10).integers(0, 256, (N_COURSE, 64, 64, 3), np.uint8)
        handle.create_dataset("train_set_x", data=images)
    return course_case(tmp_path, write, "").command


VALID = {"npz": valid_npz, "idx": valid_idx, "h5": valid_course_files}


@pytest.fixture(scope="module")
def valid_peak_mb(tmp_path_factory):
    """Peak memory (MB) of the command reading a small valid file of each kind, by kind."""
    peaks = {}

    def peak(kind):
        if kind not in peaks:
            folder = tmp_path_factory.mktemp(f"valid-{kind}")
            env = {**os.environ, "CONVNET_DATA_DIR": str(folder / "cache")}
            status, err, peaks[kind] = run_command(VALID[kind](folder), env)
            assert status == 0, err[-2000:]
        return peaks[kind]
    return peak


@pytest.mark.parametrize("name", list(CASES))
def test_the_command_refuses_it_in_one_line_within_bounded_memory(name, tmp_path,
                                                                  valid_peak_mb):
    case = CASES[name](tmp_path)
    env = {**os.environ, "CONVNET_DATA_DIR": str(tmp_path / "no-cache"), **case.env}
    status, err, peak_mb = run_command(case.command, env)
    lines = err.strip().splitlines()
    assert status == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("convnet: error: "), err[-2000:]
    assert re.search(case.message, lines[0]) and str(case.named) in lines[0], lines[0]
    bound = 2 * valid_peak_mb(name.split("-")[0])
    assert peak_mb < bound, f"peak {peak_mb:.0f} MB, more than {bound:.0f} MB"
    if case.unwritten is not None:
        assert not case.unwritten.exists()


# ---------------------------------------------------------------- valid files still load
def test_npz_arrays_read_as_numpy_reads_them(tmp_path):
    """Compressed, Fortran-ordered, big-endian and highly regular arrays come back unchanged."""
    rng = np.random.default_rng(6)
    arrays = {
        "X_train": np.asfortranarray(rng.random((50, 28, 28), dtype=np.float32) * 0.99),
        "Y_train": np.sort(np.arange(50) % 10),
        "X_valid": (rng.random((10, 28, 28)) * 0.99).astype(">f8"),
        "Y_valid": (np.arange(10) % 10).astype(">i4"),
        "X_test": np.zeros((10, 28, 28), np.float32),
        "Y_test": np.full(10, 7, np.uint8),
    }
    for saver in (np.savez, np.savez_compressed):
        path = tmp_path / f"{saver.__name__}.npz"
        saver(path, **arrays)
        loaded = data.load_mnist(path)
        with np.load(path, allow_pickle=False) as archive:
            for key, array in zip(data.CURRICULUM_KEYS, loaded):
                expected = archive[key]
                cast = np.float32 if key.startswith("X_") else np.int64
                np.testing.assert_array_equal(array, expected.astype(cast))
                assert array.dtype == cast


def test_npz_arrays_not_asked_for_are_never_read(tmp_path):
    """A Keras-style file may carry other arrays; a large one costs nothing."""
    images = np.random.default_rng(7).integers(0, 256, (30, 28, 28), dtype=np.uint8)
    members = [stored_array("x_train", images[:20]), stored_array("y_train", np.arange(20) % 10),
               stored_array("x_test", images[20:]), stored_array("y_test", np.arange(10) % 10),
               deflated_zero_array("extra", (1_000_000, 28, 28), "<f4")]
    path = write_zip(tmp_path / "mnist.npz", members)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("convnet.data.mnist_layout.VALIDATION_SIZE", 5)
        with address_space_headroom(LOADER_HEADROOM):
            X_train, _, X_valid, _, X_test, _ = data.load_mnist(path)
    np.testing.assert_array_equal(X_train, images[:15] / np.float32(256))
    np.testing.assert_array_equal(X_valid, images[15:20] / np.float32(256))
    np.testing.assert_array_equal(X_test, images[20:] / np.float32(256))


def test_object_and_record_arrays_are_refused_from_their_header(tmp_path):
    for name, array in (("objects", np.array([{"a": 1}], dtype=object)),
                        ("records", np.zeros(3, dtype=[("a", "<i4"), ("b", "<f4")]))):
        payload = npy_header(array.shape, array.dtype) + bytes(array.nbytes)
        members = curriculum_members(X_train=Member("X_train.npy", payload, zlib.crc32(payload),
                                                    len(payload)))
        path = write_zip(tmp_path / f"{name}.npz", members)
        with pytest.raises(data.DataError, match=r"array X_train has dtype .*expected numbers"):
            data.load_mnist(path)


@pytest.mark.parametrize("layout", ["chunked-gzip", "soft-link-in-file"])
def test_course_files_compressed_or_soft_linked_within_the_file_still_load(tmp_path, layout):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, (N_COURSE, 64, 64, 3), np.uint8)
    labels = np.arange(N_COURSE) % 2
    folder = tmp_path / "course"
    folder.mkdir()
    for split, x, y in (("train", images, labels), ("test", images[:4], labels[:4])):
        with h5py.File(folder / f"{split}_happy.h5", "w") as handle:
            if layout == "chunked-gzip":
                handle.create_dataset(f"{split}_set_x", data=x, chunks=(1, 64, 64, 3),
                                      compression="gzip", shuffle=True, fletcher32=True)
                handle.create_dataset(f"{split}_set_y", data=y, chunks=True,
                                      compression="gzip")
            else:
                handle.create_dataset(f"stored/{split}_x", data=x)
                handle.create_dataset(f"stored/{split}_y", data=y)
                handle[f"{split}_set_x"] = h5py.SoftLink(f"/stored/{split}_x")
                handle[f"{split}_set_y"] = h5py.SoftLink(f"stored/{split}_y")
            handle.create_dataset("list_classes", data=np.arange(2))
    arrays = data.read_course_h5("happy", folder)
    np.testing.assert_array_equal(arrays["X_train"], images)
    np.testing.assert_array_equal(arrays["Y_train"], labels)
    np.testing.assert_array_equal(arrays["X_test"], images[:4])
    report = data.cache_course_h5("happy", folder, tmp_path / "cache")
    assert report.sizes == {"train": 5, "valid": 100, "test": 4}


def test_a_soft_link_loop_is_refused(tmp_path):
    def write(handle, _):
        import h5py
        handle["train_set_x"] = h5py.SoftLink("/loop")
        handle["loop"] = h5py.SoftLink("/train_set_x")
    case = course_case(tmp_path, write, "")
    with pytest.raises(data.DataError, match=r"train_set_x goes through more than 8 soft links"):
        case.load()


def test_a_fashion_mnist_file_longer_than_debians_is_refused_unread(tmp_path):
    """Only as many bytes as Debian's file holds are decompressed, then it is refused."""
    size = 16 + 60000 * 28 * 28     # Debian's train-images-idx3-ubyte, decompressed
    header = idx_header((60000, 28, 28))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(
        gzip_of_zeros(header, 8 * size - len(header)))
    for stem in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / stem).write_bytes(b"")
    with address_space_headroom(LOADER_HEADROOM), \
            pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.gz holds more than the "
                                                r"47,040,016 bytes of Debian's file"):
        data.verify_fashion_mnist(tmp_path)


class ZeroStream(io.RawIOBase):
    """An endless stream of zero bytes."""

    def readable(self):
        return True

    def readinto(self, buffer):
        buffer[:] = bytes(len(buffer))
        return len(buffer)


def test_a_cifar10_archive_member_larger_than_a_batch_is_refused_unread(tmp_path):
    path = tmp_path / "cifar-10-binary.tar.gz"
    member = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
    member.size = (128 << 20) + 3073     # a record more than four real batches
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        archive.addfile(member, ZeroStream())
    with pytest.raises(data.DataError, match=r"data_batch_1.bin declares 134,220,801 bytes, more "
                                             r"than the 134,217,728"):
        data.read_cifar10_archive(path)
