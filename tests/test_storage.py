"""Tests of convnet.storage: writes are all-or-nothing and never leave debris."""
import os
import stat

import numpy as np
import pytest

from convnet import storage


class Crash(Exception):
    """Raised on purpose to interrupt a write."""


def entries(folder):
    return sorted(path.name for path in folder.iterdir())


def test_atomic_path_renames_on_success(tmp_path):
    final = tmp_path / "sub" / "result.npz"
    with storage.atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp.suffix == ".npz" and tmp != final
        assert not final.exists()
        tmp.write_bytes(b"payload")
    assert final.read_bytes() == b"payload"
    assert entries(final.parent) == ["result.npz"]


def test_exception_inside_the_block_leaves_nothing(tmp_path):
    final = tmp_path / "result.bin"
    with pytest.raises(Crash), storage.atomic_path(final) as tmp:
        tmp.write_bytes(b"half of it")
        raise Crash
    assert entries(tmp_path) == []


def test_failed_rewrite_keeps_the_old_file(tmp_path):
    final = tmp_path / "result.bin"
    storage.write_bytes(final, b"old version")
    with pytest.raises(Crash), storage.atomic_path(final) as tmp:
        tmp.write_bytes(b"new vers")
        raise Crash
    assert final.read_bytes() == b"old version"
    assert entries(tmp_path) == ["result.bin"]


@pytest.mark.parametrize("existing", [None, b"old version"])
def test_crash_at_the_rename_leaves_no_partial_file(tmp_path, monkeypatch, existing):
    final = tmp_path / "result.bin"
    if existing is not None:
        final.write_bytes(existing)

    def crashing_replace(source, destination):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(storage.os, "replace", crashing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        storage.write_bytes(final, b"new contents")
    monkeypatch.undo()
    assert entries(tmp_path) == ([] if existing is None else ["result.bin"])
    if existing is not None:
        assert final.read_bytes() == existing


def test_writer_crashing_mid_write_keeps_the_old_npz(tmp_path, monkeypatch):
    final = tmp_path / "weights.npz"
    storage.save_npz(final, w=np.arange(4.0))

    def crashing_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 partial")
        raise Crash

    monkeypatch.setattr(np, "savez", crashing_savez)
    with pytest.raises(Crash):
        storage.save_npz(final, w=np.zeros(4))
    monkeypatch.undo()
    with np.load(final, allow_pickle=False) as stored:
        np.testing.assert_array_equal(stored["w"], np.arange(4.0))
    assert entries(tmp_path) == ["weights.npz"]


def test_write_bytes_and_text(tmp_path):
    storage.write_bytes(tmp_path / "a.bin", bytes(range(256)))
    storage.write_text(tmp_path / "b.txt", "naïve ✓\n")
    assert (tmp_path / "a.bin").read_bytes() == bytes(range(256))
    assert (tmp_path / "b.txt").read_bytes() == b"na\xc3\xafve \xe2\x9c\x93\n"
    storage.write_text(tmp_path / "b.txt", "replaced")
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "replaced"
    assert entries(tmp_path) == ["a.bin", "b.txt"]


@pytest.mark.parametrize("compressed", [False, True])
def test_save_npz_round_trip_without_pickle(tmp_path, compressed):
    arrays = {"images": np.random.default_rng(0).random((3, 28, 28), dtype=np.float32),
              "labels": np.arange(3, dtype=np.int64), "scalar": np.float64(2.5)}
    path = tmp_path / "arrays.npz"
    storage.save_npz(path, compressed=compressed, **arrays)
    with np.load(path, allow_pickle=False) as stored:
        assert sorted(stored.files) == sorted(arrays)
        for key, value in arrays.items():
            np.testing.assert_array_equal(stored[key], value)
            assert stored[key].dtype == np.asarray(value).dtype
    assert entries(tmp_path) == ["arrays.npz"]


def test_save_npz_refuses_object_arrays_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "arrays.npz"
    with pytest.raises(TypeError, match="'bad' has dtype object"):
        storage.save_npz(path, good=np.zeros(2), bad=np.array([{"a": 1}, None], dtype=object))
    assert entries(tmp_path) == []
    storage.save_npz(path, good=np.ones(2))
    with pytest.raises(TypeError, match="'ragged' has dtype object"):
        storage.save_npz(path, ragged=np.array([[1], [2, 3]], dtype=object))
    with np.load(path, allow_pickle=False) as stored:
        np.testing.assert_array_equal(stored["good"], np.ones(2))


def test_temporary_files_are_hidden_and_unique(tmp_path):
    final = tmp_path / "result.txt"
    with storage.atomic_path(final) as first, storage.atomic_path(final) as second:
        assert first != second
        assert first.name.startswith(".") and second.name.startswith(".")
        assert os.path.exists(first) and os.path.exists(second)
        first.write_text("first")
        second.write_text("second")
    # The last block to finish wins; nothing else remains.
    assert final.read_text() == "first"
    assert entries(tmp_path) == ["result.txt"]


def test_written_files_get_ordinary_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        target = tmp_path / "plain.txt"
        storage.write_text(target, "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
