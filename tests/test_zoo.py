"""The model zoo: parameter counts of the specification's table, spec files, ``convnet summary``."""
import json

import numpy as np
import pytest

from convnet.apps.cli.cli import main
from convnet.nn.sequential import Sequential
from convnet.nn.specs import summary_text
from convnet.nn.zoo import DEFAULT_MODEL, NAMES, load_spec

# The specification's zoo table: (total, trainable), input shape, classes, loss.
TABLE = {
    "lenet5": ((61706, 61706), (28, 28, 1), 10, "categorical_crossentropy"),
    "lenet5-classic": ((61706, 61706), (28, 28, 1), 10, "categorical_crossentropy"),
    "mlp": ((669706, 669706), (28, 28, 1), 10, "categorical_crossentropy"),
    "mnist-cnn": ((220234, 220234), (28, 28, 1), 10, "categorical_crossentropy"),
    "cifar-cnn": ((541094, 541094), (32, 32, 3), 10, "categorical_crossentropy"),
    "happy-model": ((37633, 37569), (64, 64, 3), 2, "binary_crossentropy"),
    "signs-cnn": ((1310, 1310), (64, 64, 3), 6, "categorical_crossentropy"),
}


def test_the_zoo_is_the_table():
    assert set(NAMES) == set(TABLE)
    assert DEFAULT_MODEL == "lenet5"


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_match_the_specification(name):
    (total, trainable), input_shape, classes, loss = TABLE[name]
    model = Sequential(load_spec(name))
    summary = model.summary()
    assert (summary.total, summary.trainable) == (total, trainable)
    assert summary.non_trainable == total - trainable
    assert sum(row.params for row in summary.rows) == total
    assert sum(param.size for param in model.parameters()) == trainable
    assert model.input_shape == input_shape
    assert model.num_classes == classes
    assert model.spec["loss"] == loss
    assert model.spec["optimizer"] in ("adam", "rmsprop")
    assert summary_text(summary).splitlines()[-1] == f"Total params: {total:,}"


def test_flatten_sizes_of_the_table():
    flat = {"mnist-cnn": 3136, "cifar-cnn": 1024, "happy-model": 32768, "signs-cnn": 64,
            "mlp": 784, "lenet5": 400}
    for name, size in flat.items():
        rows = Sequential(load_spec(name)).summary().rows
        assert [row.output_shape for row in rows if row.name == "flatten"] == [(size,)]


def test_lenet5_classic_uses_tanh_and_average_pooling():
    kinds = [(entry["layer"], entry.get("activation"))
             for entry in load_spec("lenet5-classic")["layers"]]
    assert ("AveragePool2D", None) in kinds and ("MaxPool2D", None) not in kinds
    assert {activation for _, activation in kinds} == {None, "tanh", "softmax"}


def test_load_spec_returns_a_fresh_copy():
    spec = load_spec("mlp")
    spec["layers"][2]["units"] = 3
    assert load_spec("mlp")["layers"][2]["units"] == 512


def test_load_spec_from_json_files(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps([{"layer": "Input", "shape": [8, 8, 3]}, {"layer": "Flatten"},
                                {"layer": "Dense", "units": 4, "activation": "softmax"}]))
    model = Sequential(load_spec(path))
    assert model.spec["name"] == "tiny" and model.summary().total == 8 * 8 * 3 * 4 + 4
    saved = tmp_path / "mnist.json"
    saved.write_text(Sequential(load_spec("mnist-cnn")).to_json())
    assert Sequential(load_spec(str(saved))).spec == Sequential(load_spec("mnist-cnn")).spec


@pytest.mark.parametrize("argument, message", [
    ("lenet6", ("model must be one of lenet5, lenet5-classic, mlp, mnist-cnn, cifar-cnn, "
               "happy-model, signs-cnn or a .json spec file, received 'lenet6'")),
    ("missing.json", "spec file missing.json does not exist"),
])
def test_load_spec_errors(argument, message):
    with pytest.raises(ValueError, match=message):
        load_spec(argument)


def test_load_spec_rejects_bad_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("[{")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        load_spec(path)


@pytest.mark.parametrize("name", ["mnist-cnn", "happy-model"])
def test_summary_command(name, capsys):
    assert main(["summary", "--model", name]) == 0
    lines = capsys.readouterr().out.splitlines()
    (total, trainable), *_ = TABLE[name]
    assert lines[-1] == f"Total params: {total:,}"
    assert f"Trainable params: {trainable:,}" in lines
    assert f"Non-trainable params: {total - trainable:,}" in lines


def test_summary_command_reads_spec_files_and_reports_errors(tmp_path, capsys):
    path = tmp_path / "net.json"
    path.write_text(Sequential(load_spec("signs-cnn")).to_json())
    assert main(["summary", "--model", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "Total params: 1,310"
    assert main(["summary", "--model", "nope"]) == 2
    assert "model must be one of" in capsys.readouterr().err


def test_summary_without_model_still_compares_lenet5_and_the_mlp(capsys):
    assert main(["summary"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 61,706" in out and "Total params: 669,706" in out


def test_every_zoo_model_trains_a_step():
    for name in NAMES:
        model = Sequential(load_spec(name), seed=0)
        X = np.random.default_rng(0).random((3,) + model.input_shape).astype(np.float32)
        Y = np.arange(3) % model.num_classes
        loss, grads = model.loss_and_grads(X, Y)
        assert np.isfinite(loss)
        assert [grad.shape for grad in grads] == [param.shape for param in model.parameters()]
