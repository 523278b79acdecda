"""Fashion-MNIST's checksums, CIFAR-10's two archive layouts and the course's HDF5 files.

No test downloads anything: CIFAR-10 archives and HDF5 files are built here, in the
real layouts (same folder, file and key names) with fewer images, and the
Fashion-MNIST tests that need Debian's package skip when it is absent.
"""
import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
import typing

import numpy as np
import pytest

from convnet import data
from convnet.apps.cli.cli import main

FASHION = data.FASHION_MNIST_DIR
NEEDS_FASHION = pytest.mark.skipif(
    not FASHION.is_dir(),
    reason=f"{FASHION} absent: install it with `apt-get install dataset-fashion-mnist`")
# SHA-256 of the .gz files as Debian ships them (from the specification).
FASHION_GZ_SHA256 = {
    "train-images-idx3-ubyte.gz":
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz":
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz":
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz":
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """Every test gets an empty cache folder, so no real cache is read or written."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("CONVNET_DATA_DIR", str(folder))
    return folder


# ---------------------------------------------------------------- Fashion-MNIST
@NEEDS_FASHION
def test_debian_files_are_the_ones_the_checksums_were_taken_from():
    for name, expected in FASHION_GZ_SHA256.items():
        assert hashlib.sha256((FASHION / name).read_bytes()).hexdigest() == expected
    for stem, expected in data.FASHION_MNIST_SHA256.items():
        with gzip.open(FASHION / f"{stem}.gz") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == expected


@NEEDS_FASHION
def test_fashion_mnist_loads_verified_with_balanced_classes():
    X_train, Y_train, X_valid, Y_valid, X_test, Y_test = data.load_dataset("fashion-mnist")
    assert (X_train.shape, X_valid.shape, X_test.shape) == (
        (50000, 28, 28), (10000, 28, 28), (10000, 28, 28))
    # Fashion-MNIST has 6,000 training and 1,000 test images of each class.
    assert np.bincount(np.concatenate([Y_train, Y_valid]), minlength=10).tolist() == [6000] * 10
    assert np.bincount(Y_test, minlength=10).tolist() == [1000] * 10
    # The validation split is the end of the original training file.
    raw_labels = data.read_idx(FASHION / "train-labels-idx1-ubyte.gz")
    assert np.array_equal(Y_valid, raw_labels[-10000:])
    assert data.class_names("fashion-mnist")[9] == "Ankle boot"


@NEEDS_FASHION
def test_a_corrupted_copy_of_fashion_mnist_is_refused(tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in FASHION_GZ_SHA256:
        shutil.copy(FASHION / name, copy / name)
    with gzip.open(FASHION / "t10k-labels-idx1-ubyte.gz") as handle:
        labels = bytearray(handle.read())
    labels[-1] = (labels[-1] + 1) % 10   # one label changed; the file stays a valid IDX file
    with gzip.open(copy / "t10k-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(bytes(labels))
    message = r"checksum mismatch for .*t10k-labels-idx1-ubyte.gz \(decompressed\)"
    with pytest.raises(data.DataError, match=message):
        data.load_dataset("fashion-mnist", copy)
    with pytest.raises(data.DataError, match=message):
        data.cache_fashion_mnist(copy, tmp_path / "cache")
    assert not (tmp_path / "cache" / data.FASHION_MNIST_FILE).exists()


@NEEDS_FASHION
def test_convnet_data_fashion_mnist_caches_the_verified_files(empty_cache, capsys):
    assert main(["data", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert "SHA-256 of the four decompressed IDX files verified" in out
    assert "train 50,000, valid 10,000, test 10,000" in out
    assert (empty_cache / data.FASHION_MNIST_FILE).is_file()
    cached = data.load_fashion_mnist()    # the cache is read first
    direct = data.load_fashion_mnist(FASHION)
    assert all(np.array_equal(a, b) for a, b in zip(cached, direct))


def test_fashion_mnist_files_that_are_not_debians_are_refused(tmp_path):
    """Always runs: IDX files of the right layout but other content fail the checksum."""
    for stem, shape in [("train-images-idx3-ubyte", (12, 28, 28)),
                        ("train-labels-idx1-ubyte", (12,)),
                        ("t10k-images-idx3-ubyte", (3, 28, 28)),
                        ("t10k-labels-idx1-ubyte", (3,))]:
        header = bytes([0, 0, 8, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)
        (tmp_path / stem).write_bytes(header + bytes(int(np.prod(shape))))
    with pytest.raises(data.DataError, match=r"checksum mismatch for .*train-images-idx3-ubyte "
                                             r"\(decompressed\): expected sha256 c59f468a"):
        data.load_fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.verify_fashion_mnist(tmp_path)


# ---------------------------------------------------------------- CIFAR-10 archives
CLASS_NAMES = ("Airplane", "Automobile", "Bird", "Cat", "Deer", "Dog", "Frog", "Horse",
               "Ship", "Truck")   # capitalised, to see that the names come from the archive


def cifar_batches(per_batch=3, seed=0):
    """Six small batches (five training, one test) of random images and labels."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8),
             rng.integers(0, 10, per_batch)) for _ in range(6)]


def channel_major_rows(images):
    """Each image as 3,072 bytes: the red plane row by row, then green, then blue."""
    return np.array([np.frombuffer(b"".join(image[:, :, channel].tobytes()
                                            for channel in range(3)), np.uint8)
                     for image in images])


def add_member(archive, name, content):
    info = tarfile.TarInfo(name)
    info.size = len(content)
    archive.addfile(info, io.BytesIO(content))


def binary_archive(path, batches, names=CLASS_NAMES, record_tail=b""):
    with tarfile.open(path, "w:gz") as archive:
        files = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
        for file, (images, labels) in zip(files, batches):
            records = b"".join(bytes([label]) + row.tobytes()
                               for label, row in zip(labels, channel_major_rows(images)))
            add_member(archive, f"cifar-10-batches-bin/{file}", records + record_tail)
        add_member(archive, "cifar-10-batches-bin/batches.meta.txt",
                   ("\n".join(names) + "\n\n").encode())
        add_member(archive, "cifar-10-batches-bin/readme.html", b"<html></html>")
    return path


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2 did for the official archive: protocol 2, text and bytes as
    Python 2 ``str`` (read back as bytes with ``encoding="bytes"``), NumPy under
    ``numpy.core``."""

    dispatch: typing.ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj):
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    def save_global(self, obj, name=None):
        module = {"numpy._core.multiarray": "numpy.core.multiarray"}.get(obj.__module__,
                                                                         obj.__module__)
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = save_python2_str
    dispatch[type] = save_global


def python2_pickle(obj):
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def python_archive(path, batches, names=CLASS_NAMES, replace=None):
    """The python layout; ``replace`` maps a file name to bytes that take its place."""
    replace = replace or {}
    with tarfile.open(path, "w:gz") as archive:
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for file, (images, labels) in zip(files, batches):
            batch = {b"batch_label": file.encode(), b"labels": [int(x) for x in labels],
                     b"data": channel_major_rows(images),
                     b"filenames": [f"{file}_{i}.png".encode() for i in range(len(labels))]}
            add_member(archive, f"cifar-10-batches-py/{file}",
                       replace.get(file, python2_pickle(batch)))
        meta = {b"num_cases_per_batch": len(batches[0][1]),
                b"label_names": [name.encode() for name in names], b"num_vis": 3072}
        add_member(archive, "cifar-10-batches-py/batches.meta",
                   replace.get("batches.meta", python2_pickle(meta)))
    return path


ARCHIVES = {"binary": binary_archive, "python": python_archive}


@pytest.mark.parametrize("layout", ["binary", "python"])
def test_both_archive_layouts_parse_to_the_same_images(tmp_path, layout):
    batches = cifar_batches()
    path = ARCHIVES[layout](tmp_path / f"cifar-10-{layout}.tar.gz", batches)
    parsed = data.read_cifar10_archive(path)
    assert parsed["layout"] == layout
    if layout == "python":   # the pickles name NumPy as Python 2's NumPy did
        with tarfile.open(path) as archive:
            member = archive.extractfile("cifar-10-batches-py/data_batch_1").read()
        assert b"cnumpy.core.multiarray\n_reconstruct\n" in member
    assert parsed["class_names"] == CLASS_NAMES
    np.testing.assert_array_equal(parsed["X_train"], np.concatenate([b[0] for b in batches[:5]]))
    np.testing.assert_array_equal(parsed["Y_train"], np.concatenate([b[1] for b in batches[:5]]))
    np.testing.assert_array_equal(parsed["X_test"], batches[5][0])
    np.testing.assert_array_equal(parsed["Y_test"], batches[5][1])
    assert parsed["X_train"].dtype == np.uint8 and parsed["Y_train"].dtype == np.int64


@pytest.mark.parametrize("layout", ["binary", "python"])
def test_cifar10_cache_keeps_the_first_training_images_for_validation(tmp_path, layout):
    batches = cifar_batches()
    path = ARCHIVES[layout](tmp_path / "archive.tar.gz", batches)
    report = data.cache_cifar10(path, tmp_path / "cache", check_md5=False, validation_size=4)
    assert report.path == tmp_path / "cache" / "cifar10.npz"
    assert report.sizes == {"train": 11, "valid": 4, "test": 3}
    assert report.class_names == CLASS_NAMES
    X_train, Y_train, X_valid, Y_valid, X_test, Y_test = data.load_dataset("cifar10", report.path)
    images = np.concatenate([b[0] for b in batches[:5]]).astype(np.float64) / 255
    labels = np.concatenate([b[1] for b in batches[:5]])
    np.testing.assert_allclose(X_valid, images[:4], rtol=1e-6)
    np.testing.assert_allclose(X_train, images[4:], rtol=1e-6)
    np.testing.assert_allclose(X_test, batches[5][0] / 255, rtol=1e-6)
    assert np.array_equal(Y_valid, labels[:4]) and np.array_equal(Y_train, labels[4:])
    assert np.array_equal(Y_test, batches[5][1])
    assert X_train.dtype == np.float32 and X_train.shape == (11, 32, 32, 3)
    assert X_train.min() >= 0 and X_train.max() <= 1
    assert data.class_names("cifar10", report.path) == CLASS_NAMES
    limited = data.load_dataset("cifar10", report.path, limit=2)
    assert len(limited[0]) == 2 and len(limited[2]) == 4


def test_cifar10_md5_is_checked_before_anything_is_read(tmp_path, monkeypatch):
    path = binary_archive(tmp_path / "cifar-10-binary.tar.gz", cifar_batches())
    actual = hashlib.md5(path.read_bytes()).hexdigest()
    message = (r"checksum mismatch for .*cifar-10-binary.tar.gz: expected md5 "
               r"c32a1d4ab5d03f1284b67883e8d87530 \(cifar-10-binary.tar.gz\) or "
               rf"c58f30108f718f92721af3b95e74349a \(cifar-10-python.tar.gz\), got {actual}")
    with pytest.raises(data.DataError, match=message):
        data.check_cifar10_md5(path)
    with pytest.raises(data.DataError, match=message):
        data.cache_cifar10(path, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    # An archive whose MD5 is listed is recognised by it.
    monkeypatch.setitem(data.CIFAR10_ARCHIVES, "python",
                        {**data.CIFAR10_ARCHIVES["python"], "md5": actual})
    assert data.check_cifar10_md5(path) == "python"
    with pytest.raises(FileNotFoundError, match="convnet data cifar10 --from PATH"):
        data.check_cifar10_md5(tmp_path / "absent.tar.gz")


def test_convnet_data_cifar10_checks_the_md5_and_caches(tmp_path, monkeypatch, capsys,
                                                        empty_cache):
    path = python_archive(tmp_path / "cifar-10-python.tar.gz", cifar_batches(per_batch=1001))
    assert main(["data", "cifar10", "--from", str(path)]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert main(["data", "cifar10"]) == 2
    assert "needs --from PATH" in capsys.readouterr().err
    monkeypatch.setitem(data.CIFAR10_ARCHIVES, "python", {
        **data.CIFAR10_ARCHIVES["python"], "md5": hashlib.md5(path.read_bytes()).hexdigest()})
    assert main(["data", "cifar10", "--from", str(path)]) == 0
    out = capsys.readouterr().out
    assert "archive MD5 verified; wrote train 5, valid 5,000, test 1,001" in out
    assert str(empty_cache / "cifar10.npz") in out
    assert data.load_dataset("cifar10")[0].shape == (5, 32, 32, 3)


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _CallsEval:
    def __reduce__(self):
        return eval, ("1 + 1",)


@pytest.mark.parametrize("payload, protocol, message", [
    (lambda marker: {b"data": _RunsAShellCommand(marker), b"labels": []}, 2,
     r"refusing to unpickle it \(global (posix|os)\.system is not allowed\)"),
    (lambda marker: _CallsEval(), 2,
     r"refusing to unpickle it \(global (__builtin__|builtins)\.eval"),
    (lambda marker: _CallsEval(), 4, r"refusing to unpickle it \(global builtins\.eval"),
    (lambda marker: {b"data": np.zeros((1, 3072), np.uint8), b"labels": {0}}, 4,
     r"refusing a pickle that holds set"),
    (lambda marker: {b"data": (1, 2)}, 2, r"refusing a pickle that holds tuple"),
    (lambda marker: {"data": [0]}, 4, r"refusing a pickle that holds str"),
    (lambda marker: {b"data": np.array([None], dtype=object), b"labels": [0]}, 2,
     r"refusing a pickle that holds an array of object"),
], ids=["os.system", "eval", "eval-protocol-4", "set", "tuple", "str", "object-array"])
def test_python_archive_refuses_anything_but_its_own_types(tmp_path, payload, protocol, message):
    marker = tmp_path / "ran"
    content = pickle.dumps(payload(marker), protocol=protocol)
    path = python_archive(tmp_path / "evil.tar.gz", cifar_batches(),
                          replace={"data_batch_2": content})
    with pytest.raises(data.DataError, match=r"data_batch_2: " + message):
        data.read_cifar10_archive(path)
    assert not marker.exists()


@pytest.mark.parametrize("build, message", [
    (lambda p: binary_archive(p, cifar_batches(), record_tail=b"\x00"),
     r"data_batch_1.bin has 9220 bytes, not a whole number of 3073-byte records"),
    (lambda p: binary_archive(p, [(b[0], np.full(3, 10)) for b in cifar_batches()]),
     r"data_batch_1.bin: labels range from 10 to 10, expected 0 to 9"),
    (lambda p: binary_archive(p, cifar_batches(), names=CLASS_NAMES[:9]),
     r"batches.meta.txt lists 9 class names"),
    (lambda p: python_archive(p, cifar_batches(), replace={
        "data_batch_3": pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},
                                     protocol=2)}),
     r"data_batch_3: b'data' is uint8 \(2, 100\), expected uint8 \(n, 3072\)"),
    (lambda p: python_archive(p, cifar_batches(), replace={
        "test_batch": pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
                                   protocol=2)}),
     r"test_batch: b'labels' must be a list of 2 ints"),
    (lambda p: python_archive(p, cifar_batches(), replace={"batches.meta": b"\x80\x02}q"}),
     r"batches.meta is not a readable CIFAR-10 pickle"),
], ids=["truncated", "label", "names", "data-shape", "labels", "meta"])
def test_malformed_batches_are_refused_with_the_member_named(tmp_path, build, message):
    with pytest.raises(data.DataError, match=message):
        data.read_cifar10_archive(build(tmp_path / "archive.tar.gz"))


def test_archives_of_another_shape_are_refused(tmp_path):
    not_gzip = tmp_path / "plain.tar.gz"
    not_gzip.write_bytes(b"not an archive at all")
    with pytest.raises(data.DataError, match=r"plain.tar.gz is not a readable .tar.gz archive"):
        data.read_cifar10_archive(not_gzip)
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as archive:
        add_member(archive, "something/else.txt", b"hello")
    with pytest.raises(data.DataError, match=r"not a CIFAR-10 archive: it holds no "
                                             r"cifar-10-batches-bin/test_batch.bin or "
                                             r"cifar-10-batches-py/test_batch"):
        data.read_cifar10_archive(other)
    missing = tmp_path / "missing.tar.gz"
    with tarfile.open(missing, "w:gz") as archive:
        add_member(archive, "cifar-10-batches-bin/test_batch.bin", bytes(3073))
    with pytest.raises(data.DataError, match=r"has no member cifar-10-batches-bin/data_batch_1"):
        data.read_cifar10_archive(missing)


def test_missing_cifar10_cache_says_how_to_make_it(empty_cache):
    with pytest.raises(FileNotFoundError, match=r"convnet data cifar10 --from PATH"):
        data.load_dataset("cifar10")
    assert data.class_names("cifar10") == data.CIFAR10_CLASSES
    empty_cache.mkdir()
    (empty_cache / "cifar10.npz").write_bytes(b"garbage")
    with pytest.raises(data.DataError, match=r"cifar10.npz is not a readable .npz file"):
        data.class_names("cifar10")
    with pytest.raises(data.DataError, match=r"cifar10.npz is not an .npz file"):
        data.load_dataset("cifar10")


@pytest.mark.parametrize("change, message", [
    ({"X_train": np.full((2, 32, 32, 3), 0.5)}, r"images have dtype float64, expected uint8"),
    ({"X_valid": np.zeros((2, 32, 32, 1), np.uint8)}, r"expected \(n, 32, 32, 3\)"),
    ({"Y_test": np.array([0, 12])}, r"labels range from 0 to 12, expected 0 to 9"),
    ({"Y_train": np.array([0.0, 1.0])}, r"labels have dtype float64, expected integers"),
    ({"Y_train": np.array([0, 1, 2])}, r"3 labels for 2 images"),
])
def test_a_cache_with_out_of_range_or_wrong_arrays_is_refused(tmp_path, change, message):
    arrays = {"X_train": np.zeros((2, 32, 32, 3), np.uint8), "Y_train": np.array([0, 1]),
              "X_valid": np.zeros((2, 32, 32, 3), np.uint8), "Y_valid": np.array([0, 1]),
              "X_test": np.zeros((2, 32, 32, 3), np.uint8), "Y_test": np.array([0, 1])}
    np.savez(tmp_path / "cifar10.npz", **{**arrays, **change})
    with pytest.raises(data.DataError, match=message):
        data.load_cifar10(tmp_path / "cifar10.npz")


# ---------------------------------------------------------------- the course's HDF5 files
def write_course_files(folder, name, n_train, n_test, seed=0, **override):
    """Write ``train_NAME.h5`` and ``test_NAME.h5`` in the course's layout."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(seed)
    classes = 2 if name == "happy" else 6
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        datasets = {f"{split}_set_x": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
                    f"{split}_set_y": rng.integers(0, classes, n),
                    "list_classes": np.arange(classes)}
        datasets.update({key: value for key, value in override.items() if key in datasets})
        with h5py.File(folder / f"{split}_{name}.h5", "w") as handle:
            for key, value in datasets.items():
                handle.create_dataset(key, data=value)
        written[split] = (datasets[f"{split}_set_x"], datasets[f"{split}_set_y"])
    return written


@pytest.mark.parametrize("name", ["happy", "signs"])
def test_course_files_are_read_split_and_scaled(tmp_path, name):
    written = write_course_files(tmp_path / "course", name, n_train=9, n_test=4)
    report = data.cache_course_h5(name, tmp_path / "course", tmp_path / "cache",
                                  validation_size=3)
    assert report.sizes == {"train": 6, "valid": 3, "test": 4}
    assert report.path == tmp_path / "cache" / f"{name}.npz"
    X_train, Y_train, X_valid, Y_valid, X_test, Y_test = data.load_dataset(name, report.path)
    images, labels = written["train"]
    np.testing.assert_allclose(X_train, images[:6] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(X_valid, images[6:] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(X_test, written["test"][0] / 255.0, rtol=1e-6)
    assert np.array_equal(Y_train, labels[:6]) and np.array_equal(Y_valid, labels[6:])
    assert np.array_equal(Y_test, written["test"][1])
    assert X_train.dtype == np.float32 and Y_train.dtype == np.int64
    assert X_test.max() <= 1 and X_test.min() >= 0
    assert len(data.class_names(name)) == (2 if name == "happy" else 6)


@pytest.mark.parametrize("name, validation", [("happy", 100), ("signs", 120)])
def test_course_folder_read_directly_keeps_the_last_training_images_for_validation(
        tmp_path, name, validation):
    written = write_course_files(tmp_path, name, n_train=validation + 5, n_test=2)
    X_train, _, X_valid, Y_valid, _, _ = data.load_dataset(name, tmp_path, limit=3)
    assert X_train.shape == (3, 64, 64, 3) and X_valid.shape == (validation, 64, 64, 3)
    assert np.array_equal(Y_valid, written["train"][1][5:])


@pytest.mark.parametrize("override, message", [
    ({"train_set_x": np.zeros((3, 64, 64, 3))},
     r"train_happy.h5: images have dtype float64, expected uint8"),
    ({"train_set_x": np.zeros((3, 32, 32, 3), np.uint8)}, r"expected \(n, 64, 64, 3\)"),
    ({"test_set_y": np.array([0, 2])},
     r"test_happy.h5: labels range from 0 to 2, expected 0 to 1"),
    ({"train_set_y": np.array([[0, 1, 0]])}, r"labels have shape \(1, 3\), expected \(n,\)"),
    ({"list_classes": np.arange(3)}, r"list_classes has shape \(3,\), expected \(2,\)"),
])
def test_course_files_with_wrong_shapes_or_labels_are_refused(tmp_path, override, message):
    write_course_files(tmp_path, "happy", n_train=3, n_test=2, **override)
    with pytest.raises(data.DataError, match=message):
        data.read_course_h5("happy", tmp_path)


def test_course_files_missing_or_unreadable(tmp_path):
    h5py = pytest.importorskip("h5py")
    with pytest.raises(FileNotFoundError, match=r"bring train_signs.h5 and test_signs.h5 and "
                                                r"run `convnet data signs --from DIR`"):
        data.read_course_h5("signs", tmp_path)
    with h5py.File(tmp_path / "train_signs.h5", "w") as handle:
        handle.create_dataset("train_set_x", data=np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(data.DataError, match=r"lacks the datasets train_set_y, list_classes "
                                             r"\(it has train_set_x\)"):
        data.read_course_h5("signs", tmp_path)
    (tmp_path / "train_signs.h5").write_bytes(b"not hdf5")
    with pytest.raises(data.DataError, match=r"train_signs.h5 is not a readable HDF5 file"):
        data.read_course_h5("signs", tmp_path)
    with pytest.raises(ValueError, match=r"name must be one of happy, signs, received 'faces'"):
        data.read_course_h5("faces", tmp_path)


def test_convnet_data_happy_caches_and_needs_a_folder(tmp_path, capsys, empty_cache):
    write_course_files(tmp_path / "course", "happy", n_train=105, n_test=3)
    assert main(["data", "happy"]) == 2
    assert "needs --from DIR: the folder holding train_happy.h5 and test_happy.h5" in \
        capsys.readouterr().err
    assert main(["data", "happy", "--from", str(tmp_path / "course")]) == 0
    out = capsys.readouterr().out
    assert "wrote train 5, valid 100, test 3 images (2 classes: not happy, happy)" in out
    assert data.load_dataset("happy")[0].shape == (5, 64, 64, 3)
    assert main(["data", "happy", "--from", str(tmp_path), "--link", str(tmp_path)]) == 2
    assert "--link is used with mnist only" in capsys.readouterr().err


def test_mnist_refuses_a_source_and_unknown_names_are_refused(capsys):
    assert main(["data", "mnist", "--from", "somewhere"]) == 2
    assert "--from is not used with mnist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="dataset must be one of mnist, fashion-mnist, cifar10, "
                                         "happy, signs, received 'svhn'"):
        data.class_names("svhn")
    assert data.class_names("mnist") == tuple("0123456789")


def test_a_cifar10_archive_with_another_checksum_is_cached_only_when_asked(tmp_path, capsys):
    from convnet.apps.cli.cli import main
    rng = np.random.default_rng(1)
    batches = [(rng.integers(0, 4, (1001, 32, 32, 3), dtype=np.uint8),
                rng.integers(0, 10, 1001)) for _ in range(6)]
    archive = binary_archive(tmp_path / "cifar-10-binary.tar.gz", batches)
    command = ["data", "cifar10", "--from", str(archive), "--dir", str(tmp_path / "cache")]
    assert main(command) == 2
    error = capsys.readouterr().err
    assert "checksum mismatch" in error and "--skip-checksum reads it" in error, error
    assert not (tmp_path / "cache" / "cifar10.npz").exists()
    assert main([*command, "--skip-checksum"]) == 0
    out = capsys.readouterr().out
    assert "MD5 of" in out and "is NOT checked" in out
    assert "layout checked, MD5 NOT checked; wrote train 5, valid 5,000, test 1,001" in out
    X_train, _, X_valid, _, _, Y_test = data.load_dataset(
        "cifar10", tmp_path / "cache" / "cifar10.npz")
    assert X_train.shape == (5, 32, 32, 3) and X_valid.shape == (5000, 32, 32, 3)
    np.testing.assert_array_equal(Y_test, batches[5][1])


def test_a_cifar10_archive_of_another_layout_is_refused_even_without_its_checksum(tmp_path,
                                                                                  capsys):
    from convnet.apps.cli.cli import main
    archive = tmp_path / "other.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        info = tarfile.TarInfo("cifar-10-batches-bin/readme.html")
        info.size = 4
        handle.addfile(info, io.BytesIO(b"none"))
    assert main(["data", "cifar10", "--from", str(archive), "--dir", str(tmp_path),
                 "--skip-checksum"]) == 2
    assert "is not a CIFAR-10 archive" in capsys.readouterr().err


def test_skip_checksum_belongs_to_cifar10(tmp_path, capsys):
    from convnet.apps.cli.cli import main
    assert main(["data", "happy", "--from", str(tmp_path), "--skip-checksum"]) == 2
    assert "--skip-checksum is used with cifar10 only" in capsys.readouterr().err
