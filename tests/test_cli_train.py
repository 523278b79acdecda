"""``convnet train`` (numpy), ``evaluate`` and ``predict``: outputs, files and user errors."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from convnet.apps.cli.cli import main
from convnet.data.images import load_digit_image
from convnet.nn.threads import blas_threads
from convnet.nn.zoo import check_fits
from convnet.training import trainer
from convnet.training.steps import LocalSteps

FASHION = "/usr/share/datasets/fashion-mnist"


def load_model(path):
    return trainer.load_model(path)[0]


@pytest.fixture(scope="module")
def small_mnist(mnist_slice, tmp_path_factory):
    """A small MNIST.npz: 256 training, 100 validation and 100 test images."""
    return mnist_slice(tmp_path_factory.mktemp("data") / "MNIST.npz", 256, 100, 100)


@pytest.fixture(scope="module")
def trained_run(small_mnist, tmp_path_factory):
    """Output folder of a one-epoch ``convnet train`` on the small set."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--data", str(small_mnist), "--epochs", "1", "--out", str(out)]) == 0
    return out


def digit_picture(path, ink=20, paper=235, box=(30, 15, 70, 45)):
    """Draw a '7' (two strokes inside ``box`` = top, left, bottom, right) on a
    100-high, 80-wide picture, dark ink on light paper by default; save it."""
    from PIL import Image, ImageDraw
    image = Image.new("L", (80, 100), paper)
    draw = ImageDraw.Draw(image)
    top, left, bottom, right = box
    draw.line([(left, top), (right, top)], fill=ink, width=5)
    draw.line([(right, top), (left + 8, bottom)], fill=ink, width=5)
    image.save(path)
    return path


# ---------------------------------------------------------------- train
def test_train_writes_checkpoint_history_and_plot(trained_run, small_mnist):
    out = trained_run
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "history.json",
                                                     "history.png"]
    history = json.loads((out / "history.json").read_text())
    assert len(history["val_accuracy"]) == 2   # epoch 0 (untrained) and epoch 1
    model = load_model(out / "checkpoint.npz")
    with np.load(small_mnist) as arrays:
        loss, accuracy = model.evaluate(arrays["X_valid"], arrays["Y_valid"])
    assert history["val_accuracy"][-1] == accuracy
    assert history["val_loss"][-1] == pytest.approx(loss)


def test_train_output(small_mnist, tmp_path, capsys):
    assert main(["train", "--data", str(small_mnist), "--epochs", "0",
                 "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("After 0 epochs: cost ")
    assert ", validation accuracy " in lines[1]
    assert lines[-2].startswith("validation accuracy ")
    assert lines[-1] == (f"checkpoint: {tmp_path / 'checkpoint.npz'}, history: "
                         f"{tmp_path / 'history.json'}, plot: {tmp_path / 'history.png'}")


def test_the_default_number_of_processes_is_decided_at_the_start(small_mnist, tmp_path, capfd,
                                                                 monkeypatch):
    from convnet.parallel import distributed
    asked = []

    def deciding(batch_size, micro_batch=None, window=0.3):
        asked.append((batch_size, micro_batch))
        return 2

    monkeypatch.setattr(distributed, "default_processes", deciding)
    two, one = tmp_path / "two", tmp_path / "one"
    assert main(["train", "--data", str(small_mnist), "--epochs", "1", "--limit", "64",
                 "--out", str(two)]) == 0
    assert main(["train", "--data", str(small_mnist), "--epochs", "1", "--limit", "64",
                 "--out", str(one), "--processes", "1"]) == 0
    banners = [line for line in capfd.readouterr().out.splitlines()
               if line.startswith("training lenet5")]
    assert asked == [(32, 16)]   # LeNet-5 at 32: halves of 16
    assert banners[0].endswith("seed 0, 2 processes") and banners[1].endswith("seed 0, 1 process")
    assert "adam lr 0.001" in banners[0]
    rules = [str(np.load(folder / "checkpoint.npz")["rule"]) for folder in (two, one)]
    assert rules == ["micro-batch 16", "micro-batch 16"]   # the count changes the speed only


@pytest.mark.parametrize("batch, processes, rule", [
    (64, "1 process", "micro-batch 64"),      # halves of 32 would not pay: one shard
    (128, "2 processes", "micro-batch 64"),   # two halves of 64, one per idle processor
])
def test_a_dense_model_is_cut_in_halves_only_from_batch_128(small_mnist, tmp_path, capsys,
                                                            monkeypatch, batch, processes, rule):
    from convnet.parallel import distributed
    # Two idle processors; at most one process per shard, as the real count.
    monkeypatch.setattr(distributed, "default_processes",
                        lambda batch_size, micro_batch, window=0.3:
                        min(2, -(-batch_size // micro_batch)))
    options = ["train", "--model", "mlp", "--data", str(small_mnist), "--limit", "128",
               "--batch-size", str(batch), "--out", str(tmp_path)]
    assert main([*options, "--epochs", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f", {processes}")
    assert str(np.load(tmp_path / "checkpoint.npz")["rule"]) == rule


def with_rule(checkpoint, rule):
    """Rewrite ``checkpoint`` as an older version wrote it: its cut recorded as ``rule``."""
    with np.load(checkpoint, allow_pickle=False) as saved:
        arrays = dict(saved)
    arrays["rule"] = np.asarray(rule)
    np.savez(checkpoint, **arrays)


def test_a_run_of_blas_threads_resumes_alike_within_the_machine(small_mnist, tmp_path, capsys,
                                                                 monkeypatch):
    from convnet.parallel import distributed
    monkeypatch.setattr(distributed, "available_processors", lambda: 2)
    options = ["train", "--model", "mlp", "--data", str(small_mnist), "--limit", "128",
               "--batch-size", "64", "--out", str(tmp_path)]
    assert main([*options, "--epochs", "1"]) == 0
    with_rule(tmp_path / "checkpoint.npz", "processes 1, threads 2")
    capsys.readouterr()
    assert main([*options, "--epochs", "2", "--resume"]) == 0   # as it began, not as now
    assert capsys.readouterr().out.splitlines()[1].endswith(", 1 process, 2 BLAS threads")
    assert str(np.load(tmp_path / "checkpoint.npz")["rule"]) == "processes 1, threads 2"
    assert main([*options, "--epochs", "3", "--resume", "--processes", "1"]) == 2
    assert ("trained with 'processes 1, threads 2' and would resume with 'processes 1'"
            in capsys.readouterr().err)
    monkeypatch.setattr(distributed, "available_processors", lambda: 1)
    assert main([*options, "--epochs", "3", "--resume"]) == 2
    line = capsys.readouterr().err.splitlines()[-1]
    assert line == ("convnet: error: this run was trained with 'processes 1, threads 2', which "
                    "needs 2 BLAS threads, and this machine runs 1 processor: fewer threads "
                    "would add the products' terms in another order, so the weights would "
                    "match no uninterrupted run; resume it on a machine with at least 2 "
                    "processors, or train afresh in another --out")
    assert int(np.load(tmp_path / "checkpoint.npz")["epoch"]) == 2


def test_without_mpi_the_default_is_one_process(small_mnist, tmp_path, capsys, monkeypatch):
    from convnet.parallel import distributed
    monkeypatch.setattr(distributed, "mpi_available", lambda: False)
    monkeypatch.setattr(distributed, "default_processes", lambda *args, **kwargs: 2)
    assert main(["train", "--data", str(small_mnist), "--epochs", "0", "--out",
                 str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(", 1 process")
    monkeypatch.setattr(distributed, "mpiexec_path", lambda: (_ for _ in ()).throw(
        distributed.BadOptionError("no mpiexec next to python: several processes need MPI, "
                                   "installed with pip install mpi4py mpich")))
    assert main(["train", "--data", str(small_mnist), "--epochs", "0", "--processes", "2",
                 "--out", str(tmp_path / "two")]) == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("pip install mpi4py mpich")


def test_a_failed_rank_is_a_one_line_error(small_mnist, tmp_path, capsys, monkeypatch):
    from convnet.parallel import distributed

    def failing_step(self, X, Y):
        raise distributed.DistributedJobError("rank 1 of 2 failed to compute micro-batch 1 "
                                              "of step 1; no rank updated")

    monkeypatch.setattr(LocalSteps, "step", failing_step)
    code = main(["train", "--data", str(small_mnist), "--epochs", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines()[-1] == (
        "convnet: error: rank 1 of 2 failed to compute micro-batch 1 of step 1; no rank "
        f"updated; {tmp_path / 'checkpoint.npz'} holds epoch 0: train again with --resume to "
        "continue from there")
    assert "Traceback" not in err


@pytest.mark.parametrize("processes", [2, 3])
def test_micro_batches_give_the_same_weights_whatever_the_number_of_ranks(
        small_mnist, tmp_path, processes):
    """The rule of ``--micro-batch``: 1, 2 or 3 ranks end bit for bit alike (3 under mpiexec)."""
    pytest.importorskip("mpi4py")
    from convnet.parallel import distributed
    alone, ranks = tmp_path / "alone", tmp_path / "ranks"
    options = ["train", "--data", str(small_mnist), "--epochs", "2", "--limit", "96",
               "--micro-batch", "8", "--batch-size", "24", "--augment", "flip"]
    assert main([*options, "--out", str(alone), "--processes", "1"]) == 0
    command = [distributed.mpiexec_path(), "-n", str(processes), sys.executable, "-m",
               "convnet", *options, "--out", str(ranks)]
    job = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert job.returncode == 0, job.stderr
    assert job.stdout.count("After 2 epochs") == 1   # rank 0 alone speaks
    first, second = np.load(alone / "checkpoint.npz"), np.load(ranks / "checkpoint.npz")
    assert str(second["rule"]) == "micro-batch 8"
    for key in first.files:
        if key != "history_epoch_seconds":
            assert np.array_equal(first[key], second[key]), key


def test_resume_keeps_the_rule_it_began_with_and_refuses_another(small_mnist, tmp_path,
                                                                   capsys):
    options = ["train", "--data", str(small_mnist), "--limit", "64", "--out", str(tmp_path)]
    assert main([*options, "--epochs", "1", "--processes", "1", "--micro-batch", "8"]) == 0
    assert main([*options, "--epochs", "2", "--processes", "1", "--resume"]) == 0
    assert str(np.load(tmp_path / "checkpoint.npz")["rule"]) == "micro-batch 8"
    capsys.readouterr()
    assert main([*options, "--epochs", "3", "--processes", "1", "--resume",
                 "--micro-batch", "16"]) == 2
    line = capsys.readouterr().err.splitlines()[-1]
    assert line == ("convnet: error: this run was trained with 'micro-batch 8' and would resume "
                    "with 'micro-batch 16': the weights would match neither uninterrupted run; "
                    "resume with --micro-batch 8")


def test_resume_refuses_other_settings(trained_run, small_mnist, capsys):
    code = main(["train", "--data", str(small_mnist), "--epochs", "2", "--batch-size", "64",
                 "--seed", "3", "--out", str(trained_run), "--resume"])
    err = capsys.readouterr().err
    assert code == 2
    assert "seed 0 (this run: 3), batch_size 32 (this run: 64)" in err
    assert "Traceback" not in err


def test_resume_without_checkpoint(small_mnist, tmp_path, capsys):
    code = main(["train", "--data", str(small_mnist), "--out", str(tmp_path), "--resume"])
    assert code == 2
    assert "cannot resume: checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [
    ("--epochs", "-1", "argument --epochs: must be a non-negative integer, received -1"),
    ("--batch-size", "0", "argument --batch-size: must be a positive integer, received 0"),
    ("--lr", "-0.1", "argument --lr: must be a positive number"),
])
def test_bad_numbers_are_rejected(option, value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def read_arrays(path):
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.mark.parametrize("model, optimizer, extra, lr, slots", [
    ("mlp", "rmsprop", ["--momentum", "0.5"], 1e-3, {"velocity", "momentum"}),
    ("lenet5-classic", "sgd", [], 0.01, set()),
    ("lenet5", "sgd", ["--momentum", "0.9", "--lr", "0.05"], 0.05, {"velocity"}),
])
def test_train_any_zoo_model_with_any_optimizer(model, optimizer, extra, lr, slots, small_mnist,
                                                tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(small_mnist), "--epochs", "1", "--limit", "64",
                 "--out", str(out), "--model", model, "--optimizer", optimizer, *extra]) == 0
    assert f"training {model} (numpy)" in capsys.readouterr().out
    arrays = read_arrays(out / "checkpoint.npz")
    spec = json.loads(arrays["spec"].tobytes())
    config = json.loads(arrays["optimizer"].tobytes())
    assert spec["name"] == model and config["name"] == optimizer
    assert config["lr"] == pytest.approx(lr) and float(arrays["lr"]) == pytest.approx(lr)
    stored = {key[len("optimizer_"):].rstrip("0123456789") for key in arrays
              if key.startswith("optimizer_") and key != "optimizer_iterations"}
    assert stored == slots
    assert int(arrays["optimizer_iterations"]) == 2   # 64 images, batch 32
    from convnet.nn.sequential import Sequential
    from convnet.nn.zoo import load_spec
    names = list(Sequential(load_spec(model)).get_weights())
    assert [key for key in arrays if "/" in key] == names


def test_a_spec_file_trains_and_resume_refuses_another_model_or_optimizer(small_mnist, tmp_path,
                                                                          capsys):
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps({"name": "tiny", "layers": [
        {"layer": "Input", "shape": [28, 28, 1]},
        {"layer": "Conv2D", "filters": 2, "kernel": 5, "stride": 2, "activation": "relu"},
        {"layer": "Flatten"}, {"layer": "Dropout", "rate": 0.2},
        {"layer": "Dense", "units": 10, "activation": "softmax"}]}))
    out = tmp_path / "run"
    common = ["train", "--data", str(small_mnist), "--limit", "64", "--out", str(out)]
    assert main(common + ["--epochs", "1", "--model", str(spec)]) == 0
    assert main(common + ["--epochs", "2", "--model", str(spec), "--resume"]) == 0
    capsys.readouterr()
    assert main(common + ["--epochs", "3", "--resume"]) == 2
    assert "trained with model 'tiny' (this run: 'lenet5'" in capsys.readouterr().err
    assert main(common + ["--epochs", "3", "--model", str(spec), "--optimizer", "sgd",
                          "--resume"]) == 2
    assert "optimizer {'name': 'adam'" in capsys.readouterr().err


@pytest.mark.parametrize("model, message", [
    ("cifar-cnn", r"--model cifar-cnn takes 32x32x3 images, but --dataset mnist has 28x28x1"),
    ("signs-cnn", r"--model signs-cnn takes 64x64x3 images"),
    ("nonexistent", "--model nonexistent"),
])
def test_a_model_that_does_not_fit_the_dataset_is_refused_before_training(
        model, message, small_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(small_mnist), "--model", model, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert re.search(message, line)
    assert not (out / "checkpoint.npz").exists()


def test_a_model_with_other_classes_is_refused():
    from convnet.errors import BadOptionError
    from convnet.nn.sequential import Sequential
    from convnet.nn.zoo import load_spec
    model = Sequential(load_spec("happy-model"))
    with pytest.raises(BadOptionError, match="happy-model has one sigmoid unit "
                                             r"\(2 classes\), but --dataset signs has 6 classes"):
        check_fits(model.spec, "happy-model", "signs", (64, 64, 3), 6)
    check_fits(model.spec, "happy-model", "happy", (64, 64, 3), 2)   # binary: two classes fit


def test_a_batch_normalization_model_refuses_more_processes(tmp_path, capsys):
    assert main(["train", "--model", "happy-model", "--processes", "2",
                 "--out", str(tmp_path / "run")]) == 2
    assert "BatchNormalization" in capsys.readouterr().err


def test_keep_best_keeps_the_best_validation_epoch(small_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    # A large step size makes validation accuracy rise and fall.
    assert main(["train", "--data", str(small_mnist), "--epochs", "4", "--limit", "96",
                 "--out", str(out), "--keep", "best", "--optimizer", "sgd", "--lr", "0.3",
                 "--processes", "1"]) == 0
    history = json.loads((out / "history.json").read_text())
    best = int(np.argmax(history["val_accuracy"]))
    assert f"best: {out / 'best.npz'} (epoch {best})" in capsys.readouterr().out
    assert int(read_arrays(out / "best.npz")["epoch"]) == best
    with np.load(small_mnist) as arrays:
        _, accuracy = load_model(out / "best.npz").evaluate(arrays["X_valid"], arrays["Y_valid"])
    assert accuracy == history["val_accuracy"][best] == max(history["val_accuracy"])
    assert sorted(path.name for path in out.iterdir()) == [
        "best.npz", "checkpoint.npz", "history.json", "history.png"]


def test_summary_of_a_checkpoint(trained_run, capsys):
    assert main(["summary", "--checkpoint", str(trained_run / "checkpoint.npz")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'Model: "lenet5"'
    assert "Total params: 61,706" in lines
    assert lines[-1] == "Dataset: mnist (10 classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)"


@pytest.mark.skipif(not __import__("os").path.isdir(FASHION),
                    reason=f"{FASHION} absent: install it with `apt-get install "
                           "dataset-fashion-mnist`")
def test_a_fashion_checkpoint_is_evaluated_on_fashion_mnist_without_being_told(tmp_path,
                                                                             capsys):
    from convnet import data
    fashion = data.load_dataset("fashion-mnist")
    small = tmp_path / "fashion.npz"
    np.savez(small, X_train=fashion[0][:256], Y_train=fashion[1][:256],
             X_valid=fashion[2][:100], Y_valid=fashion[3][:100], X_test=fashion[4],
             Y_test=fashion[5])
    out = tmp_path / "run"
    assert main(["train", "--dataset", "fashion-mnist", "--data", str(small), "--epochs", "1",
                 "--out", str(out)]) == 0
    checkpoint = out / "checkpoint.npz"
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(checkpoint)]) == 0   # no --dataset, no --data
    line = capsys.readouterr().out.strip()
    with blas_threads(1):
        loss, accuracy = load_model(checkpoint).evaluate(fashion[4], fashion[5])
    assert line == (f"{checkpoint} on the fashion-mnist test split (10000 images): "
                    f"accuracy {accuracy:.4f}, loss {loss:.4f}")
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "mnist"]) == 2
    assert (f"checkpoint {checkpoint} was trained on fashion-mnist, not mnist"
            in capsys.readouterr().err)
    assert main(["summary", "--checkpoint", str(checkpoint)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "Dataset: fashion-mnist (10 classes: T-shirt/top, Trouser, Pullover, Dress, Coat, "
        "Sandal, Shirt, Sneaker, Bag, Ankle boot)")


# ---------------------------------------------------------------- evaluate
def test_evaluate_prints_accuracy_and_loss(trained_run, small_mnist, capsys):
    checkpoint = trained_run / "checkpoint.npz"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(small_mnist),
                 "--split", "valid"]) == 0
    history = json.loads((trained_run / "history.json").read_text())
    out = capsys.readouterr().out
    assert "valid split (100 images)" in out
    assert f"accuracy {history['val_accuracy'][-1]:.4f}, loss {history['val_loss'][-1]:.4f}" in out


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"garbage", "is not an .npz file"),
    (b"PK\x03\x04 truncated zip", "checkpoint"),
])
def test_evaluate_bad_checkpoint(content, message, tmp_path, capsys):
    path = tmp_path / "checkpoint.npz"
    if content is not None:
        path.write_bytes(content)
    assert main(["evaluate", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convnet: error: ")
    assert message in err and str(path) in err
    assert len(err.strip().splitlines()) == 1


def test_missing_checkpoint_in_a_subprocess(tmp_path):
    result = subprocess.run([sys.executable, "-m", "convnet", "predict", "x.png",
                             "--checkpoint", str(tmp_path / "none.npz")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == f"convnet: error: checkpoint {tmp_path / 'none.npz'} " \
                                    "does not exist"


# ---------------------------------------------------------------- images and predict
def test_digit_image_becomes_mnist_like(tmp_path):
    path = digit_picture(tmp_path / "seven.png")
    image = load_digit_image(path)
    assert image.shape == (28, 28) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() < 1
    assert image.max() > 0.9   # white digit ...
    assert image[0].max() == 0 and image[:, 0].max() == 0   # ... on black
    rows, cols = np.nonzero(image > 0)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 20
    centre = [(np.indices(image.shape)[axis] * image).sum() / image.sum() for axis in (0, 1)]
    np.testing.assert_allclose(centre, [14, 14], atol=0.5)   # where MNIST puts it


def test_mnist_digits_drawn_large_come_back_as_they_were(tmp_path):
    """MNIST digits are already boxed and centred: upscaled 4x, inverted to dark ink on
    white and saved as PNG, they must come back close to the original images."""
    from PIL import Image

    from convnet import data
    try:
        X_valid = data.load_mnist()[2][:40]
    except FileNotFoundError as error:
        pytest.skip(f"MNIST not cached: {error}")
    correlations = []
    for index, digit in enumerate(X_valid):
        path = tmp_path / f"{index}.png"
        picture = Image.fromarray(((1 - digit) * 255).astype(np.uint8))
        picture.resize((112, 112), Image.BICUBIC).save(path)
        loaded = load_digit_image(path)
        correlations.append(np.corrcoef(digit.ravel(), loaded.ravel())[0, 1])
    assert np.mean(correlations) > 0.9
    assert np.min(correlations) > 0.6


def test_white_on_black_and_jpeg_and_colour(tmp_path):
    from PIL import Image
    dark = digit_picture(tmp_path / "dark.png", ink=250, paper=5)
    colour = tmp_path / "colour.jpg"
    Image.open(digit_picture(tmp_path / "grey.png")).convert("RGB").save(colour, quality=95)
    light_result = load_digit_image(digit_picture(tmp_path / "light.png"))
    np.testing.assert_allclose(load_digit_image(dark), light_result, atol=0.05)
    np.testing.assert_allclose(load_digit_image(colour), light_result, atol=0.15)


def test_unreadable_and_blank_images(tmp_path):
    from PIL import Image
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        load_digit_image(broken)
    blank = tmp_path / "blank.png"
    Image.new("L", (30, 30), 255).save(blank)
    with pytest.raises(ValueError, match="blank.png shows no digit"):
        load_digit_image(blank)


def test_predict_prints_digit_and_top_probabilities(trained_run, tmp_path, capsys):
    picture = digit_picture(tmp_path / "seven.png")
    checkpoint = trained_run / "checkpoint.npz"
    assert main(["predict", str(picture), str(picture), "--checkpoint", str(checkpoint),
                 "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    probs = load_model(checkpoint).predict_proba(load_digit_image(picture)[None])[0]
    best, second = np.argsort(probs)[::-1][:2]
    expected = (f"{picture}: {best} ({best}: {probs[best]:.4f}, "
                f"{second}: {probs[second]:.4f})")
    assert lines == [expected, expected]


def test_predict_unreadable_image(trained_run, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    code = main(["predict", str(broken), "--checkpoint", str(trained_run / "checkpoint.npz")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"convnet: error: cannot read image {broken}")
    assert "Traceback" not in err


@pytest.mark.parametrize("model, name", [("happy-model", "happy"), ("signs-cnn", "signs")])
def test_the_course_models_train_on_their_datasets(model, name, tmp_path, capsys, monkeypatch):
    """happy-model: one sigmoid unit on 0/1 labels, batch normalisation, one process."""
    pytest.importorskip("h5py")
    from test_datasets import write_course_files

    from convnet import data
    from convnet.parallel import distributed
    if model == "happy-model":   # one process even where the default would be two
        monkeypatch.setattr(distributed, "default_processes", lambda *args, **kwargs: 2)
    write_course_files(tmp_path / "course", name, n_train=11, n_test=5)
    cached = data.cache_course_h5(name, tmp_path / "course", tmp_path / "cache",
                                  validation_size=3).path
    out = tmp_path / "run"
    assert main(["train", "--model", model, "--dataset", name, "--data", str(cached),
                 "--epochs", "1", "--batch-size", "4", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(", 1 process")
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.npz"),
                 "--data", str(cached)]) == 0
    X_test, Y_test = data.load_dataset(name, cached)[4:]
    probabilities = load_model(out / "checkpoint.npz").predict_proba(X_test)
    predicted = ((probabilities[:, 0] > 0.5).astype(int) if probabilities.shape[1] == 1
                 else probabilities.argmax(axis=1))
    assert (f"on the {name} test split (5 images): accuracy {np.mean(predicted == Y_test):.4f}"
            in capsys.readouterr().out)


@pytest.mark.parametrize("options, message", [
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum is used with --optimizer sgd"),
    (["--backend", "keras", "--momentum", "0.9"], "--momentum is not available with keras"),
    (["--backend", "tf1", "--keep", "best"], "--keep is not available with tf1"),
])
def test_optimizer_options_that_do_not_apply_are_refused(options, message, small_mnist,
                                                         tmp_path, capsys):
    assert main(["train", "--data", str(small_mnist), "--out", str(tmp_path / "run"),
                 *options]) == 2
    assert message in capsys.readouterr().err


def test_a_run_of_ranks_that_diverges_is_told_once_with_its_flags(small_mnist, tmp_path, capfd):
    """A rank's error comes back to the command that started the job, flags and all."""
    pytest.importorskip("mpi4py")
    assert main(["train", "--data", str(small_mnist), "--epochs", "2", "--limit", "64",
                 "--lr", "1e308", "--processes", "2", "--out", str(tmp_path)]) == 2
    captured = capfd.readouterr()
    [line] = [line for line in captured.err.splitlines() if line.startswith("convnet")]
    assert re.fullmatch(r"convnet: error: training diverged: .+; "
                        + re.escape(f"{tmp_path / 'checkpoint.npz'} still holds epoch 0 "
                                    "(a smaller --lr may help)"), line), line
    assert captured.out.splitlines()[0].endswith(", 2 processes")
    assert "Traceback" not in captured.err
