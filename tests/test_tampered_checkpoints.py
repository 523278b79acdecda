"""Checkpoints whose members were changed by hand: one line and exit status 2, never a bug's 70.

Every tampered file is a real checkpoint with one member replaced, written
with NumPy alone (no pickles). The commands that use a model (evaluate,
predict, show, summary --checkpoint, serve) and ``train --resume`` all read
it through ``convnet.training.checkpoint.read_model`` or
``read_training_state``, which refuse it in one line naming the member.
"""
import json
import re

import numpy as np
import pytest
from PIL import Image

from convnet.apps.cli.cli import main
from convnet.errors import BadCheckpointError
from convnet.nn.optim import make_optimizer
from convnet.training import checkpoint as checkpoints
from convnet.training import trainer


def text(value):
    """A JSON member as ``checkpoint.write`` stores it: UTF-8 bytes as uint8."""
    return np.frombuffer(value.encode(), dtype=np.uint8)


def lenet5_spec():
    return json.loads(json.dumps(trainer.model_spec("lenet5")))


def spec_with(change):
    """LeNet-5's spec as JSON text after ``change(spec)``."""
    spec = lenet5_spec()
    change(spec)
    return text(json.dumps(spec))


def dense1(spec):
    return next(layer for layer in spec["layers"] if layer.get("name") == "dense1")


TAMPERED = {
    "an unknown dataset": ({"dataset": np.asarray("imagenet")},
                           "member 'dataset' is 'imagenet', expected one of mnist,"),
    "a dataset that is a path": ({"dataset": np.asarray("../../etc/passwd")},
                                 "member 'dataset' is '../../etc/passwd', expected one of"),
    "an empty dataset": ({"dataset": np.asarray("")}, "member 'dataset' is '', expected one"),
    "a dataset that is a number": ({"dataset": np.asarray(7)},
                                   "member 'dataset' has dtype int64, expected text"),
    "a spec that is not JSON": ({"spec": text("{not json")},
                                "member 'spec' is not JSON text"),
    "a spec that is not UTF-8": ({"spec": np.frombuffer(b"\xff\xfe{}", np.uint8)},
                                 "member 'spec' is not JSON text"),
    "a spec nested too deep": ({"spec": text("[" * 30000 + "]" * 30000)},
                               "member 'spec' nests brackets 30,000 deep"),
    "a spec that is a list": ({"spec": text("[]")}, "member 'spec' is not a valid model spec"),
    "a spec that is null": ({"spec": text("null")}, "member 'spec' is not a valid model spec"),
    "a spec without layers": ({"spec": text("{}")}, "member 'spec' is not a valid model spec"),
    "a spec of negative units": ({"spec": spec_with(lambda s: dense1(s).update(units=-1))},
                                 "member 'spec' is not a valid model spec"),
    "a spec of 10**30 units": ({"spec": spec_with(lambda s: dense1(s).update(units=10 ** 30))},
                               "member 'spec' is not a valid model spec"),
    "a spec of floats": ({"spec": np.zeros(5, np.float32)},
                         "member 'spec' has dtype float32, expected unsigned bytes"),
    "three class names for ten classes": ({"class_names": np.asarray(["a", "b", "c"])},
                                          "member 'class_names' has shape (3,), expected (10,)"),
    "class names that are numbers": ({"class_names": np.arange(10)},
                                     "member 'class_names' has dtype int64, expected text"),
    "class names that are bytes": ({"class_names": np.asarray([b"a"] * 10)},
                                   "member 'class_names' has dtype |S1, expected text"),
    "one class name for all": ({"class_names": np.asarray("abc")},
                               "member 'class_names' has shape (), expected (10,)"),
    "empty class names": ({"class_names": np.asarray([""] * 10)},
                          "member 'class_names' holds '', expected printable names"),
    "class names with a line break": ({"class_names": np.asarray(["a\nb"] * 10)},
                                      "member 'class_names' holds 'a\\nb', expected printable"),
    "class names with a terminal escape": ({"class_names": np.asarray(["\x1b[2J"] * 10)},
                                           "member 'class_names' holds '\\x1b[2J', expected"),
    "no class names": ({"class_names": None}, "not a model checkpoint (no 'class_names')"),
    "no dataset": ({"dataset": None}, "not a model checkpoint (no 'dataset')"),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A real, untrained LeNet-5 checkpoint, and a function writing tampered copies of it."""
    folder = tmp_path_factory.mktemp("tampered")
    model = trainer.build_model(trainer.model_spec("lenet5"))
    history = {key: [0.5] for key in checkpoints.HISTORY_KEYS} | {"epoch_seconds": []}
    settings = {"seed": 0, "batch_size": 32, "lr": 0.001, "dataset": "mnist",
                "train_size": 256, "rule": "micro-batch 16", "augment": ""}
    base = folder / "base.npz"
    checkpoints.write(base, model, make_optimizer("adam", model.parameters()), 0, settings,
                      history, [str(digit) for digit in range(10)])

    def tampered(name, changes):
        with np.load(base, allow_pickle=False) as saved:
            arrays = dict(saved)
        for key, value in changes.items():
            if value is None:
                del arrays[key]
            else:
                arrays[key] = value
        path = folder / (name.replace(" ", "-") + ".npz")
        np.savez(path, allow_pickle=False, **arrays)
        return path

    return base, tampered


@pytest.fixture(scope="module")
def digit(tmp_path_factory):
    path = tmp_path_factory.mktemp("digit") / "digit.png"
    image = np.full((28, 28), 255, np.uint8)
    image[5:23, 12:16] = 0
    Image.fromarray(image).save(path)
    return path


def one_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_the_untampered_checkpoint_is_read(made, capsys):
    base, _ = made
    assert main(["summary", "--checkpoint", str(base)]) == 0
    assert "Dataset: mnist (10 classes: 0, 1, 2" in capsys.readouterr().out


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_checkpoint_is_refused_by_every_command_in_one_line(
        case, made, digit, tmp_path, capsys, monkeypatch):
    from convnet.apps.page import serve
    changes, said = TAMPERED[case]
    path = made[1](case, changes)
    with pytest.raises(BadCheckpointError, match=f"^checkpoint {re.escape(str(path))}"):
        checkpoints.read_model(path)
    with pytest.raises(BadCheckpointError, match=f"^checkpoint {re.escape(str(path))}"):
        checkpoints.read_training_state(path)

    def served(*args, **kwargs):
        raise AssertionError("a tampered checkpoint was served")

    monkeypatch.setattr(serve, "run", served)
    for command in (["evaluate", "--split", "test"], ["predict", str(digit)], ["summary"],
                    ["show", "--out", str(tmp_path / "pictures")], ["serve", "--port", "8765"]):
        assert main([*command, "--checkpoint", str(path)]) == 2, command
        line = one_line(capsys)
        assert line.startswith(f"convnet: error: checkpoint {path}"), (command, line)
        assert said in line, (command, line)


@pytest.mark.parametrize("rule, said", [
    ("processes 0", "member 'rule' is 'processes 0', expected 'micro-batch M'"),
    ("micro-batch -3", "member 'rule' is 'micro-batch -3', expected"),
    ("processes 1, threads 1e9", "member 'rule' is 'processes 1, threads 1e9', expected"),
    ("banana", "member 'rule' is 'banana', expected"),
])
def test_a_tampered_rule_is_refused_when_resuming(made, tmp_path, capsys, rule, said):
    path = made[1](f"rule {rule}", {"rule": np.asarray(rule)})
    with pytest.raises(BadCheckpointError, match=f"^checkpoint {re.escape(str(path))}: {re.escape(said)}"):
        checkpoints.read_training_state(path)
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(path.read_bytes())
    assert main(["train", "--resume", "--epochs", "2", "--out", str(out)]) == 2
    assert said in one_line(capsys)


def test_a_rule_of_more_threads_than_processors_is_refused_when_resuming(
        made, tmp_path, capsys, monkeypatch):
    from convnet.parallel import distributed
    monkeypatch.setattr(distributed, "available_processors", lambda: 2)
    path = made[1]("threads 64", {"rule": np.asarray("processes 1, threads 64")})
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(path.read_bytes())
    assert main(["train", "--resume", "--epochs", "2", "--out", str(out)]) == 2
    assert one_line(capsys) == (
        "convnet: error: this run was trained with 'processes 1, threads 64', which needs 64 "
        "BLAS threads, and this machine runs 2 processors: fewer threads would add the "
        "products' terms in another order, so the weights would match no uninterrupted run; "
        "resume it on a machine with at least 64 processors, or train afresh in another --out")


def test_a_spec_whose_weights_overflow_int64_is_refused(made):
    spec = lenet5_spec()
    spec["layers"][0]["shape"] = [2 ** 40, 2 ** 40, 1]
    path = made[1]("overflowing spec", {"spec": text(json.dumps(spec))})
    with pytest.raises(BadCheckpointError, match=f"^checkpoint {re.escape(str(path))}: (member 'spec' is not a "
                                                 "valid model spec|its spec declares)"):
        checkpoints.read_model(path)
