"""Every weights file knows what it is: its spec, dataset, class names and data source.

The TensorFlow and Keras runs write them beside LeNet-5's ten exchange
arrays, NumPy checkpoints record where their data came from, and the
commands that use a model take the recorded dataset and data unless told
otherwise, refusing another dataset and a data folder that is gone.
"""
import json
import os
import shutil

import numpy as np
import pytest

import convnet
from convnet import data as datasets
from convnet.apps.cli.cli import main
from convnet.errors import BadCheckpointError, MissingDataError
from convnet.nn.lenet5 import WEIGHT_NAMES
from convnet.nn.threads import blas_threads
from convnet.training import checkpoint, provenance, trainer

FASHION = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(
    not os.path.isdir(FASHION),
    reason=f"{FASHION} absent: install it with `apt-get install dataset-fashion-mnist`")
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot")


def write_slice(path, arrays, train, valid, test):
    """Write the first images of each split of ``arrays`` as an MNIST.npz-style file."""
    X_train, Y_train, X_valid, Y_valid, X_test, Y_test = arrays
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, X_train=X_train[:train], Y_train=Y_train[:train], X_valid=X_valid[:valid],
             Y_valid=Y_valid[:valid], X_test=X_test[:test], Y_test=Y_test[:test])
    return path


def one_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convnet: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def fashion_slice(tmp_path_factory):
    """300 training, 100 validation and 200 test images of Fashion-MNIST, in one file."""
    if not os.path.isdir(FASHION):
        pytest.skip(f"{FASHION} absent: install it with `apt-get install dataset-fashion-mnist`")
    arrays = datasets.load_dataset("fashion-mnist")
    return write_slice(tmp_path_factory.mktemp("fashion") / "fashion.npz", arrays, 300, 100, 200)


@pytest.fixture(scope="module")
def tf_runs(fashion_slice, tmp_path_factory):
    """One-epoch LeNet-5 runs of the Keras and tf1 backends on the Fashion-MNIST slice."""
    pytest.importorskip("tensorflow")
    folder = tmp_path_factory.mktemp("tf-runs")
    runs = {}
    for backend in ("keras", "tf1"):
        out = folder / backend
        assert main(["train", "--backend", backend, "--dataset", "fashion-mnist", "--data",
                     str(fashion_slice), "--epochs", "1", "--out", str(out)]) == 0
        runs[backend] = out
    return runs


# ---------------------------------------------------------------- TensorFlow weights files
@needs_fashion
@pytest.mark.parametrize("backend", ["keras", "tf1"])
def test_a_tf_weights_file_records_what_it_is_beside_the_exchange_arrays(tf_runs, backend,
                                                                         fashion_slice):
    with np.load(tf_runs[backend] / "weights.npz", allow_pickle=False) as stored:
        # The exchange format is whole: the ten arrays, by name, first and in order.
        assert stored.files[:10] == list(WEIGHT_NAMES)
        assert sorted(stored.files[10:]) == ["class_names", "data_source", "dataset", "spec"]
        spec = json.loads(stored["spec"].tobytes().decode("utf-8"))
        assert str(stored["dataset"]) == "fashion-mnist"
        assert tuple(stored["class_names"]) == FASHION_NAMES
        assert str(stored["data_source"]) == str(fashion_slice)
    assert spec == trainer.model_spec("lenet5")


@needs_fashion
@pytest.mark.parametrize("backend", ["keras", "tf1"])
def test_evaluate_takes_the_dataset_and_data_a_tf_weights_file_records(tf_runs, backend,
                                                                       fashion_slice, capsys):
    weights = tf_runs[backend] / "weights.npz"
    run = json.loads((tf_runs[backend] / "run.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(weights)]) == 0   # no --dataset, no --data
    captured = capsys.readouterr()
    measured = convnet.evaluate(weights)
    assert (measured.dataset, measured.images) == ("fashion-mnist", 200)
    # The NumPy engine measures the TensorFlow run's weights as the run itself did.
    assert measured.accuracy == pytest.approx(run["test_accuracy"], abs=1e-6)
    assert captured.out.strip() == (f"{weights} on the fashion-mnist test split (200 images): "
                                    f"accuracy {measured.accuracy:.4f}, loss "
                                    f"{measured.loss:.4f}")
    assert captured.err == ""
    # And independently of the reader: the slice's own test images.
    with np.load(fashion_slice) as arrays, blas_threads(1):
        _, accuracy = trainer.load_model(weights)[0].evaluate(arrays["X_test"],
                                                               arrays["Y_test"])
    assert accuracy == measured.accuracy


@needs_fashion
def test_summary_of_a_tf_weights_file_names_its_dataset_and_data(tf_runs, fashion_slice,
                                                                capsys):
    assert main(["summary", "--checkpoint", str(tf_runs["keras"] / "weights.npz")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'Model: "lenet5"'
    assert lines[-2] == f"Data: read from {fashion_slice}"
    assert lines[-1] == f"Dataset: fashion-mnist (10 classes: {', '.join(FASHION_NAMES)})"


@needs_fashion
def test_another_dataset_is_refused_naming_both(tf_runs, capsys):
    weights = tf_runs["tf1"] / "weights.npz"
    for command in (["evaluate"], ["show", "--out", "unused"], ["serve"]):
        assert main([*command, "--checkpoint", str(weights), "--dataset", "mnist"]) == 2
        line = one_error(capsys.readouterr().err)
        assert (f"checkpoint {weights} was trained on fashion-mnist, not mnist: leave out "
                "--dataset") in line


@needs_fashion
def test_show_and_predict_use_the_recorded_dataset(tf_runs, tmp_path, capsys):
    from PIL import Image
    weights = tf_runs["keras"] / "weights.npz"
    assert main(["show", "--checkpoint", str(weights), "--out", str(tmp_path / "pictures")]) == 0
    assert capsys.readouterr().err == ""
    picture = tmp_path / "trouser.png"
    image = np.zeros((28, 28), np.uint8)
    image[3:25, 10:13] = 255
    image[3:25, 15:18] = 255
    Image.fromarray(image).save(picture)
    assert main(["predict", str(picture), "--checkpoint", str(weights), "--top", "10"]) == 0
    line = capsys.readouterr().out.strip()
    # Every one of the ten Fashion-MNIST names is given a probability, never a digit.
    assert all(f"{name}: 0." in line or f"{name}: 1." in line for name in FASHION_NAMES), line


# ---------------------------------------------------------------- older weights files
@needs_fashion
def test_a_bare_weights_file_takes_the_dataset_of_the_run_json_beside_it(tf_runs, tmp_path,
                                                                          fashion_slice, capsys):
    run = tf_runs["keras"]
    with np.load(run / "weights.npz", allow_pickle=False) as stored:
        bare = {name: stored[name] for name in WEIGHT_NAMES}
    beside, alone = tmp_path / "beside", tmp_path / "alone"
    for folder in (beside, alone):
        folder.mkdir()
        np.savez(folder / "weights.npz", **bare)
    shutil.copy(run / "run.json", beside / "run.json")
    assert main(["evaluate", "--checkpoint", str(beside / "weights.npz"), "--data",
                 str(fashion_slice)]) == 0
    captured = capsys.readouterr()
    assert " on the fashion-mnist test split (200 images)" in captured.out
    assert captured.err == ""
    assert main(["summary", "--checkpoint", str(beside / "weights.npz")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("; says the run.json beside it)")
    assert main(["evaluate", "--checkpoint", str(beside / "weights.npz"), "--dataset",
                 "mnist"]) == 2
    assert "was trained on fashion-mnist, not mnist (says the run.json beside it)" in \
        one_error(capsys.readouterr().err)
    # Alone, nothing says which dataset it learnt: MNIST is assumed, and said.
    assert main(["evaluate", "--checkpoint", str(alone / "weights.npz"), "--data",
                 str(fashion_slice)]) == 0
    captured = capsys.readouterr()
    assert " on the mnist test split" in captured.out
    assert captured.err.strip() == (f"{alone / 'weights.npz'} does not record the dataset it "
                                    "learnt (a LeNet-5 weights file with no run.json beside "
                                    "it): MNIST is assumed")
    with pytest.warns(UserWarning, match="MNIST is assumed"):
        assert convnet.evaluate(alone / "weights.npz", data=fashion_slice).dataset == "mnist"
    assert main(["summary", "--checkpoint", str(alone / "weights.npz")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "Dataset: not recorded (a LeNet-5 weights file)")


def test_a_weights_file_is_read_by_the_exchange_readers_and_the_checkpoint_reader(tmp_path):
    from convnet.nn.lenet5 import LeNet5
    from convnet.tf.exchange import weights_arrays
    model = LeNet5(seed=3)
    spec = trainer.model_spec("lenet5")
    source = checkpoint.source_text(tmp_path / "data")
    arrays = weights_arrays(spec, list(model.get_weights().values()), "fashion-mnist",
                            FASHION_NAMES, source)
    path = tmp_path / "weights.npz"
    np.savez(path, **arrays)
    with np.load(path, allow_pickle=False) as stored:   # as every exchange reader does
        exchange = [stored[name] for name in WEIGHT_NAMES]
    for written, original in zip(exchange, model.get_weights().values()):
        np.testing.assert_array_equal(written, original)
    loaded, dataset, names = trainer.load_model(path)
    assert (dataset, names) == ("fashion-mnist", FASHION_NAMES)
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(loaded.get_weights()[name], value)
    origin = provenance.read_origin(path)
    assert origin.data_path == str(tmp_path / "data") == source
    # Absent data folder: one error naming it and the field.
    with pytest.raises(MissingDataError) as caught:
        provenance.data_to_use(path)
    assert caught.value.fields == ("data",)
    assert str(tmp_path / "data") in str(caught.value)


# ---------------------------------------------------------------- NumPy checkpoints
def test_a_numpy_run_is_evaluated_later_from_the_data_it_was_trained_on(mnist, tmp_path,
                                                                        capsys):
    # A test split of 60 images, not MNIST's 10,000: the count says which data was read.
    data = write_slice(tmp_path / "copy" / "MNIST.npz", mnist, 200, 50, 60)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--epochs", "1", "--out", str(out)]) == 0
    saved = out / "checkpoint.npz"
    with np.load(saved, allow_pickle=False) as stored:
        assert str(stored["data_source"]) == str(data)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(saved)]) == 0        # no --data
    line = capsys.readouterr().out.strip()
    with blas_threads(1):
        loss, accuracy = trainer.load_model(saved)[0].evaluate(mnist[4][:60], mnist[5][:60])
    assert line == (f"{saved} on the mnist test split (60 images): accuracy {accuracy:.4f}, "
                    f"loss {loss:.4f}")
    assert main(["summary", "--checkpoint", str(saved)]) == 0
    assert f"Data: read from {data}" in capsys.readouterr().out.splitlines()
    shutil.rmtree(data.parent)
    for command in (["evaluate"], ["show", "--out", str(tmp_path / "pictures")], ["serve"]):
        assert main([*command, "--checkpoint", str(saved)]) == 2
        line = one_error(capsys.readouterr().err)
        assert str(data) in line and "which no longer exists: pass --data PATH" in line
    # Given --data, the folder the run read is not needed.
    elsewhere = write_slice(tmp_path / "elsewhere" / "MNIST.npz", mnist, 10, 10, 30)
    assert main(["evaluate", "--checkpoint", str(saved), "--data", str(elsewhere)]) == 0
    assert "(30 images)" in capsys.readouterr().out


def test_a_run_on_the_default_data_records_the_default_place(tmp_path):
    from convnet.nn.lenet5 import LeNet5
    from convnet.nn.optim import Adam
    model = LeNet5(seed=0)
    settings = {"seed": 0, "batch_size": 32, "lr": 1e-3, "dataset": "mnist", "train_size": 8}
    history = {key: [0.5] for key in checkpoint.HISTORY_KEYS}
    path, unknown = tmp_path / "checkpoint.npz", tmp_path / "unknown.npz"
    checkpoint.write(path, model, Adam(model.parameters()), 0, {**settings, "data": None},
                     history, [str(k) for k in range(10)])
    origin = provenance.read_origin(path)
    assert (origin.data_source, origin.data_path) == (checkpoint.DEFAULT_SOURCE, None)
    # A writer that does not say where its data came from records nothing.
    checkpoint.write(unknown, model, Adam(model.parameters()), 0, settings, history,
                     [str(k) for k in range(10)])
    assert provenance.read_origin(unknown).data_source is None
    assert provenance.data_to_use(path, data="given")[:2] == ("mnist", "given")
    assert provenance.data_to_use(path)[:2] == ("mnist", None)
    assert checkpoint.source_text("relative") == os.path.join(os.getcwd(), "relative")
    assert checkpoint.source_text("bad\nname") is None


# ---------------------------------------------------------------- tampered members
def lenet_weights_file(tmp_path, **changes):
    from convnet.nn.lenet5 import LeNet5
    from convnet.tf.exchange import weights_arrays
    model = LeNet5(seed=1)
    arrays = weights_arrays(trainer.model_spec("lenet5"), list(model.get_weights().values()),
                            "mnist", [str(k) for k in range(10)], str(tmp_path))
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    path = tmp_path / "tampered.npz"
    np.savez(path, allow_pickle=False, **arrays)
    return path


def text(value):
    return np.frombuffer(value.encode("utf-8"), dtype=np.uint8)


@pytest.mark.parametrize("changes, message", [
    ({"data_source": np.asarray("relative/folder")},
     "member 'data_source' is 'relative/folder', expected 'default' or an absolute path"),
    ({"data_source": np.asarray("/data\n\x1b[2J")}, "member 'data_source' is '/data\\n\\x1b"),
    ({"data_source": np.asarray("/" + "a" * 6000)}, "member 'data_source' declares"),
    ({"data_source": np.arange(3)}, "member 'data_source' has dtype int64, expected text"),
    ({"dataset": np.asarray("imagenet")}, "member 'dataset' is 'imagenet', expected one of"),
    ({"class_names": np.asarray(["a\nb"] * 10)}, "member 'class_names' holds 'a\\nb'"),
    ({"class_names": np.asarray(["a", "b"])}, "member 'class_names' has shape (2,), expected"),
    ({"spec": text(json.dumps(trainer.model_spec("mlp")))},
     "its weights are under LeNet-5's names (conv1_kernel, ...) but its spec is not LeNet-5's"),
    ({"spec": text("{not json")}, "member 'spec' is not JSON text"),
    ({"optimizer_m0": np.zeros((5, 5, 1, 6), np.float32)}, "unknown member 'optimizer_m0.npy'"),
])
def test_a_tampered_weights_file_is_refused_in_one_line(tmp_path, capsys, changes, message):
    path = lenet_weights_file(tmp_path, **changes)
    with pytest.raises(BadCheckpointError, match="tampered.npz") as caught:
        provenance.read_origin(path)
    assert message in str(caught.value)
    for command in (["evaluate"], ["summary"]):
        assert main([*command, "--checkpoint", str(path)]) == 2
        assert message in one_error(capsys.readouterr().err)
