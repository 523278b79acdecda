"""Careless and hostile use of ``convnet``: every mistake gets a clear refusal, nothing is lost.

Bad data, diverging trainings, crafted checkpoints and images, two runs in one
folder, crash debris, bugs versus user errors, the timing and wording of
messages, and quiet output.
"""
import dataclasses
import errno
import fcntl
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

from convnet import errors
from convnet.apps.cli.cli import main
from convnet.data.images import MAX_PIXELS, load_digit_image
from convnet.nn.lenet5 import WEIGHT_NAMES, LeNet5
from convnet.nn.optim import Adam
from convnet.nn.sequential import Sequential
from convnet.training import checkpoint, loop, trainer


def read_npz(path):
    """Every member of a checkpoint, read as ``convnet evaluate`` reads it (checked first)."""
    return checkpoint.read(path).arrays


def load_model(path):
    return trainer.load_model(path)[0]


# ---------------------------------------------------------------- test data and files
@pytest.fixture(scope="module")
def small_mnist(tmp_path_factory, mnist):
    """A small MNIST.npz: 256 training, 100 validation and 100 test images."""
    path = tmp_path_factory.mktemp("data") / "MNIST.npz"
    save_mnist(path, mnist)
    return path


def save_mnist(path, mnist, change=None):
    """Write a small curriculum MNIST.npz; ``change(arrays)`` may edit the arrays first."""
    X_train, Y_train, X_valid, Y_valid, X_test, Y_test = mnist
    arrays = {"X_train": X_train[:256].copy(), "Y_train": Y_train[:256],
              "X_valid": X_valid[:100].copy(), "Y_valid": Y_valid[:100],
              "X_test": X_test[:100].copy(), "Y_test": Y_test[:100]}
    if change is not None:
        change(arrays)
    np.savez(path, **arrays)
    return path


def train(data, out, *options, epochs=1):
    return main(["train", "--data", str(data), "--epochs", str(epochs), "--limit", "64",
                 "--out", str(out), *options])


def one_error_line(err):
    """The single line of a user error, checked to be alone and without a traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("convnet:")]
    assert len(lines) == 1, err
    return lines[0]


def checkpoint_arrays(path):
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def write_checkpoint(path, **changes):
    """A fresh model's training checkpoint, with ``changes`` replacing (or adding) arrays."""
    model = LeNet5(seed=0)
    optimizer = Adam(model.parameters())
    settings = {"seed": 0, "batch_size": 32, "lr": 1e-3, "dataset": "mnist", "train_size": 64}
    history = {key: [2.3] for key in trainer.HISTORY_KEYS}
    history["epoch_seconds"] = []
    trainer.save_checkpoint(path, model, optimizer, 0, settings, history,
                            [str(digit) for digit in range(10)])
    arrays = checkpoint_arrays(path)
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


def model_bytes():
    return sum(param.nbytes for param in LeNet5().parameters())


# ---------------------------------------------------------------- 1. non-finite data and training
@pytest.mark.parametrize("key, index, value", [("X_train", (3, 5, 7), np.nan),
                                               ("X_valid", (0, 27, 0), np.inf)])
def test_non_finite_data_is_refused_naming_the_file_and_index(key, index, value, mnist, tmp_path,
                                                             capsys):
    def spoil(arrays):
        arrays[key][index] = value

    data = save_mnist(tmp_path / "bad.npz", mnist, spoil)
    out = tmp_path / "run"
    assert train(data, out) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(data) in line and f"{key}[{', '.join(map(str, index))}]" in line
    assert str(value) in line
    assert not (out / "checkpoint.npz").exists()


def test_a_huge_learning_rate_stops_the_run_and_keeps_the_finite_checkpoint(small_mnist, tmp_path,
                                                                            capsys):
    out = tmp_path / "run"
    assert train(small_mnist, out, "--lr", "1e308", epochs=2) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "training diverged" in line and "still holds epoch 0" in line
    state = checkpoint_arrays(out / "checkpoint.npz")
    assert int(state["epoch"]) == 0
    assert all(np.isfinite(state[name]).all() for name in LeNet5().get_weights())


def test_a_non_finite_loss_while_resuming_leaves_the_checkpoint_untouched(small_mnist, tmp_path,
                                                                         capsys, monkeypatch):
    out = tmp_path / "run"
    assert train(small_mnist, out, "--processes", "1") == 0
    before = (out / "checkpoint.npz").read_bytes()
    real_step = Sequential.loss_and_grads

    def nan_loss(self, X, Y, training=True):
        _, grads = real_step(self, X, Y, training)
        return float("nan"), grads

    monkeypatch.setattr(Sequential, "loss_and_grads", nan_loss)
    assert train(small_mnist, out, "--processes", "1", "--resume", epochs=2) == 2
    line = one_error_line(capsys.readouterr().err)
    assert re.search(r"the loss became nan at step 1 of epoch 2; .* still holds epoch 1", line)
    assert (out / "checkpoint.npz").read_bytes() == before


# ---------------------------------------------------------------- 2. checkpoints read with bounded memory
def inflating_member(path, name, megabytes):
    """Add a deflated member of ``megabytes`` MB of zeros (a few kB on disk) to a zip."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive, \
            archive.open(name, "w", force_zip64=True) as member:
        header = np.lib.format.header_data_from_array_1_0(np.zeros(0, np.uint8))
        header["shape"] = (megabytes << 20,)
        np.lib.format.write_array_header_1_0(member, header)
        zeros = bytes(1 << 20)
        for _ in range(megabytes):
            member.write(zeros)


@pytest.mark.parametrize("name, message", [("extra.npy", "unknown member 'extra.npy'"),
                                           ("history_loss.npy", "'history_loss' declares"),
                                           ("spec.npy", "'spec' declares"),
                                           ("conv1/kernel.npy", "'conv1/kernel' declares")])
def test_an_inflating_member_is_refused_before_it_is_read(name, message, tmp_path):
    path = write_checkpoint(tmp_path / "bomb.npz")
    if name != "extra.npy":   # replace the real member by the inflating one
        arrays = checkpoint_arrays(path)
        del arrays[name[:-len(".npy")]]
        np.savez(path, **arrays)
    inflating_member(path, name, 64)
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        LeNet5()
        _, construction = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with pytest.raises(errors.BadCheckpointError, match=f"bomb.npz.*{message}"):
            load_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < construction + 2 * model_bytes()


@pytest.mark.parametrize("kind", ["checkpoint", "TensorFlow weights file"])
def test_reading_weights_takes_at_most_twice_the_model(kind, tmp_path):
    path = tmp_path / "weights.npz"
    expected = list(LeNet5(seed=1).get_weights().values())
    if kind == "checkpoint":
        write_checkpoint(path)
        expected = list(LeNet5(seed=0).get_weights().values())
    else:
        np.savez(path, **dict(zip(WEIGHT_NAMES, expected)))
    tracemalloc.start()
    try:
        _, weights, _, _ = checkpoint.read_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A checkpoint also holds the optimizer's two moments, read and checked too.
    assert peak < (2 if kind != "checkpoint" else 4) * model_bytes()
    assert all(np.array_equal(a, b) for a, b in zip(weights.values(), expected))


def text_member(value):
    return np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)


@pytest.mark.parametrize("changes, message", [
    ({"spec": np.zeros(checkpoint.MAX_SPEC_BYTES + 1, np.uint8)},
     r"'spec' has shape \(65537,\), expected \(n,\) with n <= 65536"),
    ({"spec": np.frombuffer(b"{not json", np.uint8)}, "member 'spec' is not JSON text"),
    ({"spec": np.frombuffer(b"[" * 60000, np.uint8)}, "member 'spec' nests brackets 60,000 deep"),
    ({"spec": np.frombuffer(b"\xff\xfe", np.uint8)}, "member 'spec' is not JSON text"),
    ({"spec": text_member([{"layer": "Input", "shape": [28, 28, 1]}, {"layer": "Flatten"},
                           {"layer": "Dense", "units": 10 ** 6, "activation": "relu"},
                           {"layer": "Dense", "units": 10 ** 3, "activation": "softmax"}])},
     "declares 1,785,001,000 weights, more than the 100,000,000"),
    ({"spec": text_member([{"layer": "Input", "shape": [28, 28, 1]}, {"layer": "Pool"}])},
     "member 'spec' is not a valid model spec"),
    ({"spec": np.zeros(3, np.float64)}, "member 'spec' has dtype float64"),
    ({"optimizer": text_member({"name": "adagrad"})}, "'optimizer' is not a valid optimizer"),
    ({"optimizer": text_member({"name": "sgd", "lr": 0.01, "momentum": 0.0,
                                "nesterov": False})},
     r"unknown member 'optimizer_m0.npy'"),
    ({"class_names": np.array(["a", "b"])}, r"'class_names' has shape \(2,\), expected \(10,\)"),
])
def test_the_spec_and_optimizer_members_give_the_layout(changes, message, tmp_path):
    """The spec is read first, size-capped, and decides every other member's shape."""
    path = write_checkpoint(tmp_path / "crafted.npz", **changes)
    with pytest.raises(errors.BadCheckpointError, match=f"crafted.npz.*{message}"):
        trainer.load_model(path)


def test_a_spec_describing_another_model_refuses_the_weights(tmp_path):
    spec = json.loads(LeNet5().to_json())
    spec["layers"][1]["filters"] = 7
    path = write_checkpoint(tmp_path / "other.npz", spec=text_member(spec))
    with pytest.raises(errors.BadCheckpointError,
                       match=r"member 'conv1/kernel' has shape \(5, 5, 1, 6\), expected "
                             r"\(5, 5, 1, 7\)"):
        trainer.load_model(path)


def npy_bytes(shape, dtype, data=b""):
    """An .npy file whose header claims ``shape`` and ``dtype``, followed by ``data``."""
    import io
    handle = io.BytesIO()
    np.lib.format.write_array_header_1_0(handle, {"descr": np.lib.format.dtype_to_descr(
        np.dtype(dtype)), "fortran_order": False, "shape": shape})
    return handle.getvalue() + data


def test_a_header_claiming_a_huge_shape_is_refused_unread(tmp_path):
    path = write_checkpoint(tmp_path / "huge.npz")
    arrays = checkpoint_arrays(path)
    del arrays["history_val_loss"]
    np.savez(path, **arrays)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("history_val_loss.npy", npy_bytes((10 ** 12,), "<f8", bytes(64)))
    with pytest.raises(errors.BadCheckpointError,
                       match=r"'history_val_loss' has shape \(1000000000000,\)"):
        read_npz(path)


@pytest.mark.parametrize("key, value, message", [
    ("conv1/kernel", np.full((5, 5, 1, 6), np.nan, np.float32), "'conv1/kernel' holds NaN"),
    ("dense3/bias", np.zeros(10, np.complex64), "'dense3/bias' has dtype complex64"),
    ("conv2/bias", np.zeros(17, np.float32), r"'conv2/bias' has shape \(17,\), expected \(16,\)"),
])
def test_bad_weights_are_refused_by_evaluate_and_predict(key, value, message, tmp_path, capsys):
    path = write_checkpoint(tmp_path / "bad.npz", **{key: value})
    picture = tmp_path / "seven.png"
    draw_seven(picture)
    for command in (["evaluate", "--checkpoint", str(path)],
                    ["predict", str(picture), "--checkpoint", str(path)]):
        assert main(command) == 2
        line = one_error_line(capsys.readouterr().err)
        assert str(path) in line and re.search(message, line)


# ---------------------------------------------------------------- 3. image bombs
def png_header(path, width, height):
    """A PNG that declares ``width`` x ``height`` grey pixels but holds almost no data."""
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("width, height, message", [
    (60000, 60000, "is too large"),            # beyond Pillow's own limit
    (5000, 4000, "is 5000x4000 pixels"),       # below Pillow's, above ours
])
def test_image_bombs_are_refused_from_the_header(width, height, message, tmp_path, capsys):
    bomb = png_header(tmp_path / "bomb.png", width, height)
    assert bomb.stat().st_size < 1000 and width * height > MAX_PIXELS
    weights = tmp_path / "weights.npz"
    np.savez(weights, **dict(zip(WEIGHT_NAMES, LeNet5().get_weights().values())))
    started = time.perf_counter()
    assert main(["predict", str(bomb), "--checkpoint", str(weights)]) == 2
    assert time.perf_counter() - started < 5
    line = one_error_line(capsys.readouterr().err)
    assert str(bomb) in line and message in line


def test_the_pixel_limit_lets_a_large_photo_through(tmp_path):
    from PIL import Image
    side = 4096
    image = Image.new("L", (side, side), 230)
    image.paste(20, (1800, 1000, 2300, 3000))
    image.save(tmp_path / "big.png")
    assert load_digit_image(tmp_path / "big.png").max() > 0.9


# ---------------------------------------------------------------- 4. every mode and bit depth
def draw_seven(path=None, ink=20, paper=235):
    from PIL import Image, ImageDraw
    image = Image.new("L", (80, 100), paper)
    draw = ImageDraw.Draw(image)
    draw.line([(15, 30), (45, 30)], fill=ink, width=5)
    draw.line([(45, 30), (23, 70)], fill=ink, width=5)
    if path is not None:
        image.save(path)
    return image


def variants():
    """(name, suffix, make) where make(8-bit grey image) gives the same picture in another mode."""
    from PIL import Image

    def grey(image):
        return np.asarray(image)

    return [
        ("1", "png", lambda im: im.point(lambda v: 255 if v > 127 else 0).convert("1")),
        ("P", "png", lambda im: im.convert("P")),
        ("RGB", "png", lambda im: im.convert("RGB")),
        ("RGBA", "png", lambda im: im.convert("RGBA")),
        ("LA", "png", lambda im: im.convert("LA")),
        ("CMYK", "tiff", lambda im: im.convert("CMYK")),
        ("YCbCr", "tiff", lambda im: im.convert("YCbCr")),
        ("LAB", "tiff", lambda im: im.convert("RGB").convert("LAB")),
        ("I;16", "png", lambda im: Image.fromarray(grey(im).astype(np.uint16) * 257)),
        ("I;16", "tiff", lambda im: Image.fromarray(grey(im).astype(np.uint16) * 257)),
        ("I", "tiff", lambda im: Image.fromarray(grey(im).astype(np.int32) * 257)),
        ("F", "tiff", lambda im: im.convert("F")),
        ("F", "tiff", lambda im: Image.fromarray(grey(im).astype(np.float32) / 255)),
    ]


@pytest.mark.parametrize("paper", [235, 0])
@pytest.mark.parametrize("variant", range(13))
def test_every_mode_reads_as_the_8_bit_image(variant, paper, tmp_path):
    from PIL import Image
    name, suffix, make = variants()[variant]
    ink = 255 - paper if name != "1" else (0 if paper else 255)
    source = draw_seven(ink=ink, paper=paper if name != "1" else (255 if paper else 0))
    source.save(tmp_path / "eight_bit.png")
    path = tmp_path / f"variant.{suffix}"
    make(source).save(path)
    with Image.open(path) as reread:
        assert reread.mode == name
    expected = load_digit_image(tmp_path / "eight_bit.png")
    np.testing.assert_allclose(load_digit_image(path), expected, atol=0.02)
    model = LeNet5(seed=3)
    assert model.predict_proba(load_digit_image(path)[None]).argmax() == \
        model.predict_proba(expected[None]).argmax()


# ---------------------------------------------------------------- 5. one run per folder
def test_a_second_run_into_a_held_folder_is_refused_naming_the_holder(small_mnist, tmp_path,
                                                                      capsys):
    from convnet.training import runfolder
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import sys, time; from convnet.training import runfolder\n"
                                f"with runfolder.claim({str(out)!r}):\n"
                                "    print('held', flush=True)\n"
                                "    time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert (out / runfolder.LOCK_NAME).read_text().strip() == str(holder.pid)
        assert train(small_mnist, out) == 2
        line = one_error_line(capsys.readouterr().err)
        assert line == (f"convnet: error: {out} is in use by process {holder.pid} (another "
                        "convnet train writing there): wait for it to end, or choose another --out")
        assert not (out / "checkpoint.npz").exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(small_mnist, out, epochs=0) == 0   # free again once the holder has gone
    assert not (out / runfolder.LOCK_NAME).exists()


def test_the_lock_is_taken_even_with_the_lock_file_locked_by_hand(small_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as handle:
        handle.write("4242\n")
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_EX)
        assert train(small_mnist, out) == 2
    assert "in use by process 4242" in one_error_line(capsys.readouterr().err)


def test_training_into_a_folder_holding_a_run_needs_resume_or_overwrite(small_mnist, tmp_path,
                                                                       capsys):
    out = tmp_path / "run"
    assert train(small_mnist, out, epochs=0) == 0
    before = (out / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert train(small_mnist, out) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == (f"convnet: error: {out} already holds a run (checkpoint.npz, history.json): "
                    "add --resume to continue it, --overwrite to replace it, or choose another "
                    "--out")
    assert (out / "checkpoint.npz").read_bytes() == before
    assert train(small_mnist, out, "--resume", "--overwrite") == 2
    assert "give one of them" in one_error_line(capsys.readouterr().err)
    assert train(small_mnist, out, "--overwrite") == 0
    assert int(checkpoint_arrays(out / "checkpoint.npz")["epoch"]) == 1
    assert train(small_mnist, out, "--resume", epochs=2) == 0


# ---------------------------------------------------------------- 6. crash debris
def test_stale_temporary_files_of_the_run_folder_are_removed_at_start(small_mnist, tmp_path,
                                                                     capsys):
    out = tmp_path / "run"
    out.mkdir()
    stale = [out / ".checkpoint.npz.k2x_9abc.tmp.npz", out / ".history.json.0a1b2c3d.tmp.json"]
    kept = [out / "notes.txt", out / ".hidden", out / ".checkpoint.npz.short.tmp.npz"]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert train(small_mnist, out, epochs=0) == 0
    assert f"removed 2 temporary files left in {out}" in capsys.readouterr().out
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)


def test_history_json_is_rewritten_from_the_checkpoint(small_mnist, tmp_path, monkeypatch):
    from convnet import storage
    out = tmp_path / "run"
    real_write = storage.write_text
    writes = {"history": 0}

    def killed_after_the_checkpoint(path, text):
        if path.name == "history.json":
            writes["history"] += 1
            if writes["history"] == 2:   # epoch 1's copy, after epoch 1's checkpoint
                raise KeyboardInterrupt
        real_write(path, text)

    monkeypatch.setattr(storage, "write_text", killed_after_the_checkpoint)
    assert train(small_mnist, out) == 130
    monkeypatch.setattr(storage, "write_text", real_write)
    saved = checkpoint_arrays(out / "checkpoint.npz")
    assert int(saved["epoch"]) == 1
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 1   # behind
    assert train(small_mnist, out, "--resume") == 0   # nothing left to train
    copy = json.loads((out / "history.json").read_text())
    for key in trainer.HISTORY_KEYS + ("epoch_seconds",):
        assert copy[key] == saved[f"history_{key}"].tolist()


# ---------------------------------------------------------------- 7. bugs are not user errors
def test_a_bug_keeps_its_traceback_and_says_it_is_a_bug(small_mnist, tmp_path, capsys,
                                                        monkeypatch):
    def broken_fit(*args, **kwargs):
        missing = None
        return missing[0]

    monkeypatch.setattr(loop, "fit", broken_fit)
    assert train(small_mnist, tmp_path / "run") == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "in broken_fit" in err
    assert err.splitlines()[-1].startswith("convnet: internal error, a bug in convnet")
    assert "TypeError: 'NoneType' object is not subscriptable" in err.splitlines()[-1]


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, capsys):
    missing = tmp_path / "none.npz"
    assert main(["--debug", "evaluate", "--checkpoint", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "BadCheckpointError" in err
    assert err.splitlines()[-1] == f"convnet: error: checkpoint {missing} does not exist"


@pytest.mark.parametrize("kind", [errors.BadOptionError, errors.BadDataError,
                                  errors.MissingDataError, errors.BadCheckpointError,
                                  errors.BadImageError, errors.RunFolderBusyError,
                                  errors.StorageError, errors.TrainingDivergedError])
def test_every_user_error_is_one_line_with_status_2(kind, capsys, monkeypatch):
    def raising(args):
        raise kind("the thing at fault")

    from convnet.apps.cli import cli, models
    monkeypatch.setitem(cli.COMMANDS, "summary", dataclasses.replace(models.SUMMARY, run=raising))
    assert main(["summary"]) == 2
    assert capsys.readouterr().err == "convnet: error: the thing at fault\n"


# ---------------------------------------------------------------- 8. messages and their timing
def start_training(data, out, *options, epochs=50, until="After 0 epochs"):
    """A ``convnet train`` child process, returned once it has printed a line starting ``until``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "convnet", "train", "--data", str(data), "--epochs",
         str(epochs), "--out", str(out), *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith(until):
            return process
    process.wait()
    pytest.fail(f"training did not start: {process.stderr.read()}")


def test_sigterm_prints_one_line_and_exits_143(small_mnist, tmp_path):
    out = tmp_path / "run"
    process = start_training(small_mnist, out)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143
    assert err.splitlines()[-1] == "convnet: terminated"
    assert "Traceback" not in err
    assert int(read_npz(out / "checkpoint.npz")["epoch"]) >= 0


def test_sigterm_inside_a_finaliser_still_ends_the_command_as_terminated(monkeypatch, capsys):
    from convnet.apps.cli import cli, models

    class SignalledWhenCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)   # the handler runs inside __del__

    def run(args):
        SignalledWhenCollected()

    monkeypatch.setitem(cli.COMMANDS, "summary", dataclasses.replace(models.SUMMARY, run=run))
    assert main(["summary"]) == 143
    err = capsys.readouterr().err
    assert err == "convnet: terminated\n"


def test_a_reader_that_goes_away_ends_the_command_quietly(small_mnist, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "convnet", "train", "--data", str(small_mnist), "--epochs",
         "1", "--out", str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("training lenet5")
    process.stdout.close()   # as `convnet train | head -1` does
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141
    assert "Traceback" not in err and "convnet:" not in err


def descendants(pid):
    """Process ids of every descendant of ``pid`` (from /proc), children first."""
    found, waiting = [], [pid]
    while waiting:
        parent = waiting.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as handle:
                children = [int(child) for child in handle.read().split()]
        except FileNotFoundError:
            children = []
        found += children
        waiting += children
    return found


def rank_of(pid):
    """The MPI rank a process was started as, from its environment; None if it is no rank."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            variables = dict(item.split(b"=", 1) for item in handle.read().split(b"\0")
                             if b"=" in item)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rank = variables.get(b"PMI_RANK")
    return None if rank is None else int(rank)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="needs /proc")
def test_a_killed_rank_stops_the_job_in_one_line_and_resume_goes_on(mnist_slice, tmp_path):
    pytest.importorskip("mpi4py")
    data = mnist_slice(tmp_path / "MNIST.npz", 1600, 100, 100)
    out = tmp_path / "run"
    process = start_training(data, out, "--processes", "2", until="After 1 epoch")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:   # epoch 1's line comes just before its checkpoint
        if int(read_npz(out / "checkpoint.npz")["epoch"]) >= 1:
            break
        time.sleep(0.05)
    tree = descendants(process.pid)
    ranks = {pid: rank_of(pid) for pid in tree if rank_of(pid) is not None}
    victims = [pid for pid, rank in ranks.items() if rank == 1]
    assert len(victims) == 1, tree
    os.kill(victims[0], signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    line = one_error_line(err)
    # mpiexec names a rank it reaped, unless another rank's end reaches it first: the killed
    # one, or another that its clean-up had already killed the same way.
    match = re.fullmatch(rf"convnet: error: a rank( \(pid (\d+)\))? stopped: (.+); every rank "
                         rf"of the job was stopped; {re.escape(str(out / 'checkpoint.npz'))} "
                         r"holds epoch (\d+): train again with --resume to continue from there",
                         line)
    assert match, line
    if match.group(2) is not None:
        assert int(match.group(2)) in ranks
        assert match.group(3) == "Killed (signal 9)"
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in tree if alive(pid)]
    # The checkpoint is whole, and resuming from it gives the uninterrupted run's weights.
    epoch = int(match.group(4))
    assert int(read_npz(out / "checkpoint.npz")["epoch"]) == epoch >= 1
    straight = tmp_path / "straight"
    common = ["--data", str(data), "--epochs", str(epoch + 1), "--processes", "2"]
    assert main(["train", *common, "--out", str(out), "--resume"]) == 0
    assert main(["train", *common, "--out", str(straight)]) == 0
    resumed, expected = read_npz(out / "checkpoint.npz"), read_npz(straight / "checkpoint.npz")
    assert int(resumed["epoch"]) == epoch + 1
    for key in expected:
        if key != "history_epoch_seconds":
            assert np.array_equal(resumed[key], expected[key]), key


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="needs /proc")
@pytest.mark.parametrize("signum, status, said", [(signal.SIGINT, 130, "convnet: interrupted"),
                                                  (signal.SIGTERM, 143, "convnet: terminated")])
def test_a_stopped_run_of_ranks_says_so_in_one_line_and_leaves_no_rank(
        small_mnist, tmp_path, signum, status, said):
    pytest.importorskip("mpi4py")
    out = tmp_path / "run"
    process = start_training(small_mnist, out, "--processes", "2", epochs=500)
    tree = descendants(process.pid)
    assert sorted(rank_of(pid) for pid in tree if rank_of(pid) is not None) == [0, 1]
    deadline = time.monotonic() + 10
    while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.05)   # epoch 0's line comes just before its checkpoint
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status
    assert one_error_line(err) == said
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in tree if alive(pid)]
    assert int(read_npz(out / "checkpoint.npz")["epoch"]) >= 0


def test_a_full_disk_names_the_file(small_mnist, tmp_path, capsys, monkeypatch):
    def full(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "run"
    assert train(small_mnist, out) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == (f"convnet: error: cannot write {out / 'checkpoint.npz'}: "
                    "No space left on device")
    assert list(out.iterdir()) == []   # no temporary file, no lock left


def test_a_checkpoint_path_that_is_a_folder_says_so(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"convnet: error: checkpoint {tmp_path} is a folder, not a file")


@pytest.mark.parametrize("changes, message", [
    ({"epoch": np.int64(-5)}, "epoch is -5, expected from 0 to"),
    ({"lr": np.array([1e-3, 1e-3])}, r"member 'lr' has shape \(2,\), expected \(\)"),
    ({"seed": np.int64(-1)}, "seed is -1, expected from 0 to"),
    ({"history_loss": np.zeros(3)}, "history_loss has 3 entries, expected 1 for epoch 0"),
    ({"optimizer_v3": np.full(16, np.inf, np.float32)}, "'optimizer_v3' holds NaN or infinite"),
])
def test_a_hand_edited_checkpoint_is_refused_before_anything_is_announced(
        changes, message, small_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    write_checkpoint(out / "checkpoint.npz", **changes)
    assert train(small_mnist, out, "--resume") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line = one_error_line(captured.err)
    assert str(out / "checkpoint.npz") in line and re.search(message, line)


def test_a_seed_out_of_range_is_refused_before_training(small_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train(small_mnist, out, "--seed", "1180591620717411303424")
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "argument --seed: must be an integer from 0 to 4294967295" in captured.err
    assert captured.out == "" and not out.exists()


def test_too_many_processes_are_refused_before_training(small_mnist, tmp_path, capsys):
    from convnet.parallel.distributed import available_processors
    out = tmp_path / "run"
    too_many = max(available_processors(), 2) + 1
    assert train(small_mnist, out, "--processes", str(too_many)) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    assert one_error_line(captured.err).startswith(
        f"convnet: error: --processes {too_many} is more than this machine can run at once")


@pytest.mark.parametrize("split, name, backend", [("valid", "validation", "numpy"),
                                                  ("test", "test", "numpy"),
                                                  ("valid", "validation", "tf1")])
def test_an_empty_split_is_named(split, name, backend, mnist, tmp_path, capsys):
    if backend != "numpy":
        pytest.importorskip("tensorflow")

    def empty(arrays):
        arrays[f"X_{split}"] = arrays[f"X_{split}"][:0]
        arrays[f"Y_{split}"] = arrays[f"Y_{split}"][:0]

    data = save_mnist(tmp_path / "empty.npz", mnist, empty)
    assert train(data, tmp_path / "run", "--backend", backend) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_error_line(captured.err) == (f"convnet: error: the {name} split of {data} is "
                                            "empty: it needs at least one image")


# ---------------------------------------------------------------- 9. quiet, readable output
def test_metrics_are_rounded_and_one_epoch_is_singular(small_mnist, tmp_path, capsys):
    assert train(small_mnist, tmp_path / "run") == 0
    lines = capsys.readouterr().out.splitlines()
    assert ", 1 epoch, batch 32," in lines[0]
    number = r"\d+\.\d{4}"
    assert re.fullmatch(rf"After 0 epochs: cost {number}, accuracy {number}, validation cost "
                        rf"{number}, validation accuracy {number}", lines[1])
    assert re.fullmatch(rf"After 1 epoch: cost {number}, accuracy {number}, validation cost "
                        rf"{number}, validation accuracy {number}", lines[2])


def _tensorflow_log_lines(small_mnist, tmp_path, onednn, options=()):
    """TensorFlow's log lines on standard error of a tf1 run, oneDNN forced on or off."""
    command = [sys.executable, "-m", "convnet", *options, "train", "--backend", "tf1",
               "--epochs", "0", "--limit", "32", "--data", str(small_mnist),
               "--out", str(tmp_path / f"run-{onednn}-{len(options)}")]
    # The environment asks for every log line; only --verbose may let them through.
    # oneDNN is forced either way: its line appears on some processors only.
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_ENABLE_ONEDNN_OPTS=onednn)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=environment, check=False)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stderr.splitlines()
            if re.match(r"[IWEF]\d{4} ", line) or "absl" in line]


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_tensorflow_logs_are_hidden_unless_verbose(small_mnist, tmp_path, onednn):
    pytest.importorskip("tensorflow")
    assert _tensorflow_log_lines(small_mnist, tmp_path, onednn) == []


def test_verbose_shows_tensorflows_early_log_lines(small_mnist, tmp_path):
    pytest.importorskip("tensorflow")
    lines = _tensorflow_log_lines(small_mnist, tmp_path, "1", ["--verbose"])
    assert any("oneDNN custom operations are on" in line for line in lines), lines


def test_only_tensorflows_log_lines_are_held_back():
    from convnet.tf.tensorflow_import import without_tensorflow_logs
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR\nI0000 00:00:1796391239.416773    3826 port.cc:153] oneDNN custom "
            "operations are on.\nUserWarning: something of Python's\n"
            "W1204 13:30:01.5 12 x.cc:1] a warning\nIN 2024 the year\n")
    assert without_tensorflow_logs(text) == "UserWarning: something of Python's\nIN 2024 the year\n"


@pytest.mark.parametrize("options, level", [([], "3"), (["--verbose"], "0")])
def test_verbose_sets_tensorflows_log_level(options, level, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    assert main([*options, "summary"]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == level
