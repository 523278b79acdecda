"""Training as a library call: ``convnet.TrainConfig``, ``convnet.train``, ``convnet.evaluate``."""
import json
import math

import numpy as np
import pytest

import convnet
from convnet.errors import BadOptionError
from convnet.training import events as ev


@pytest.fixture(scope="module")
def small_mnist(mnist_slice, tmp_path_factory):
    """A small MNIST.npz: 256 training, 100 validation and 100 test images."""
    return mnist_slice(tmp_path_factory.mktemp("data") / "MNIST.npz", 256, 100, 100)


def test_a_notebook_trains_and_evaluates_lenet5(small_mnist, tmp_path, capsys):
    # The example of the README, as a notebook would run it.
    config = convnet.TrainConfig(model="lenet5", data=str(small_mnist), epochs=1, limit=128,
                                 out=str(tmp_path / "run"), processes=1)
    events = []
    run = convnet.train(config, on_event=events.append)
    score = convnet.evaluate(run.files["checkpoint"], split="valid", data=str(small_mnist))
    print(f"validation {run.valid_accuracy:.3f}, test {run.test_accuracy:.3f}")

    assert 0 <= run.valid_accuracy <= 1 and 0 <= run.test_accuracy <= 1
    assert score.accuracy == run.valid_accuracy and score.images == 100
    assert score.loss == pytest.approx(run.history["val_loss"][-1])
    assert sorted(run.files) == ["checkpoint", "history"]
    for path in run.files.values():
        assert (tmp_path / "run" / path.rsplit("/", 1)[-1]).is_file()
    assert json.loads((tmp_path / "run" / "history.json").read_text()) == run.history
    kinds = [type(event).__name__ for event in events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished" and events[-1] is run
    assert kinds.count("StepEnded") == 4   # 128 images in batches of 32
    assert [event.epoch for event in events if isinstance(event, ev.EpochEnded)] == [0, 1]
    started = events[0]
    assert (started.model, started.train_size, started.processes, started.optimizer) == (
        "lenet5", 128, 1, "adam")
    # The library never prints: only the notebook's own line is on the console.
    assert capsys.readouterr() == (
        f"validation {run.valid_accuracy:.3f}, test {run.test_accuracy:.3f}\n", "")


def test_a_run_without_on_event_returns_the_same_figures(small_mnist, tmp_path):
    config = convnet.TrainConfig(data=str(small_mnist), epochs=1, limit=64, seed=3,
                                 out=str(tmp_path / "a"), processes=1)
    first = convnet.train(config)
    second = convnet.train(config.replace(out=str(tmp_path / "b")), on_event=lambda e: None)
    assert first.history["val_loss"] == second.history["val_loss"]
    assert first.test_accuracy == second.test_accuracy


@pytest.mark.parametrize("changes, field, text", [
    ({"batch_size": 0}, "batch_size", "batch_size must be a positive integer, received 0"),
    ({"epochs": -1}, "epochs", "epochs must be a non-negative integer, received -1"),
    ({"lr": math.inf}, "lr", "lr must be a positive number, received inf"),
    ({"seed": 2 ** 32}, "seed", "seed must be an integer from 0 to 4294967295"),
    ({"augment": ("rotate",)}, "augment", "augment must be a sequence of flip, shift"),
    ({"backend": "keras", "momentum": 0.9}, "momentum",
     "momentum is not available with keras: backend keras does not use it"),
    ({"backend": "tf1", "model": "mlp"}, "model", "backend tf1 trains lenet5 only"),
    ({"resume": True, "overwrite": True}, "resume",
     "resume continues the run in the folder and overwrite replaces it"),
])
def test_a_config_is_checked_once_naming_the_field(changes, field, text):
    with pytest.raises(BadOptionError) as caught:
        convnet.TrainConfig(**changes)
    assert str(caught.value).startswith(text)
    assert field in caught.value.fields
    shown = caught.value.render(lambda name: "--" + name.replace("_", "-"))
    assert "--" + field.replace("_", "-") in shown


def test_a_config_travels_as_json_and_settles_its_defaults():
    config = convnet.TrainConfig(model="mlp", augment=["shift", "flip", "shift"], lr=0.01)
    assert config.out == "runs/mlp-numpy" and config.augment == ("flip", "shift")
    assert convnet.TrainConfig.from_json(config.to_json()) == config
    assert convnet.TrainConfig(backend="tf1").lr == 1e-3   # task 4's Adam
    assert convnet.TrainConfig(model="specs/tiny.json", backend="keras").out == \
        "runs/tiny-keras"


def test_evaluate_names_the_field_it_refuses(tmp_path):
    with pytest.raises(BadOptionError, match="split must be train, valid or test"):
        convnet.evaluate(tmp_path / "checkpoint.npz", split="everything")


def test_events_cross_processes_as_lines_of_json():
    weights = {"conv1/kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}
    for event in (ev.Snapshot(1, 50, weights), ev.StepEnded(1, 2, 3, 8, 0.25),
                  ev.EpochEnded(0, 2, 2.3, 0.1, 2.3, 0.1), ev.Note("hello {there}")):
        line = ev.to_line(event)
        assert "\n" not in line
        again = ev.from_line(line)
        assert type(again) is type(event)
        if isinstance(event, ev.Snapshot):
            np.testing.assert_array_equal(again.weights["conv1/kernel"], weights["conv1/kernel"])
            assert again.weights["conv1/kernel"].dtype == np.float32
        else:
            assert again == event
    assert ev.from_line("epoch 1: 50%") is None


def test_the_relay_turns_lines_back_into_events_and_errors():
    from convnet import api
    from convnet.errors import TrainingDivergedError
    received = []
    relay = api.EventRelay(received.append)
    failure = api.failure_line(TrainingDivergedError("the loss became nan; a smaller {lr} "
                                                     "may help", fields=("lr",)), 0, 2)
    text = "\n".join([ev.to_line(ev.Note("one")), "a stray line", failure, ""]).encode()
    for start in range(0, len(text), 7):   # in pieces, as a pipe gives them
        relay.write(text[start:start + 7])
    relay.close()
    assert received == [ev.Note("one"), ev.Note("a stray line")]
    assert isinstance(relay.failure, TrainingDivergedError)
    assert relay.failure.fields == ("lr",)
    assert relay.failure.render(lambda name: f"--{name}") == \
        "the loss became nan; a smaller --lr may help"


def test_a_cifar10_file_of_its_own_gives_the_checkpoint_its_class_names(tmp_path):
    from colour_data import shapes_npz

    from convnet.training.checkpoint import read_model
    classes = [f"shape{k}" for k in range(10)]
    path, _ = shapes_npz(tmp_path / "shapes.npz", classes, 32, (64, 16, 16))
    config = convnet.TrainConfig(model="cifar-cnn", dataset="cifar10", data=str(path),
                                 epochs=1, batch_size=32, out=str(tmp_path / "run"),
                                 processes=1)
    run = convnet.train(config)
    assert read_model(run.files["checkpoint"])[3] == tuple(classes)
