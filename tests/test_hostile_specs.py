"""Specs written to hurt are refused in one line, before anything of their size is allocated.

Each kind of hostile spec (huge weights, huge activations, deep nesting, bad
names, an oversized file) is refused through the library and through
``convnet summary --model FILE``, which must end with status 2, print one
line and stay small: the child's peak memory is measured by a process of its
own, so that earlier tests' children do not count.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from convnet.errors import BadCheckpointError, BadOptionError
from convnet.nn import limits
from convnet.nn.sequential import Sequential
from convnet.nn.specs import BadSpecError, check_memory, normalise_spec
from convnet.nn.zoo import NAMES, load_spec

# Peak resident memory allowed to `convnet summary` refusing a spec (it takes about 35 MB).
PEAK_LIMIT_MB = 400


def mnist_spec(*hidden, units=10):
    """A spec of 28x28 grey images: ``hidden`` entries, a Flatten and a softmax output."""
    return [{"layer": "Input", "shape": [28, 28, 1]}, *hidden, {"layer": "Flatten"},
            {"layer": "Dense", "units": units, "activation": "softmax"}]


# 20 billion float32 weights: 74.5 GiB, as many as no machine here has.
HUGE_WEIGHTS = [{"layer": "Input", "shape": [28, 28, 1]}, {"layer": "Flatten"},
                {"layer": "Dense", "name": "dense1", "units": 25_510_204, "activation": "relu"},
                {"layer": "Dense", "units": 10, "activation": "softmax"}]
# 640 weights, but 4000x4000 maps of 64 channels: 7.6 GiB for one image.
HUGE_ACTIVATIONS = [{"layer": "Input", "shape": [4000, 4000, 1]},
                    {"layer": "Conv2D", "name": "conv1", "filters": 64, "kernel": 3,
                     "padding": "same"},
                    {"layer": "MaxPool2D", "pool": 4000},
                    {"layer": "Flatten"},
                    {"layer": "Dense", "units": 2, "activation": "softmax"}]
DEEP_TEXT = "[" * 30_000 + "]" * 30_000


def summary_of(path):
    """Run ``convnet summary --model path``; return (status, stdout, stderr, peak MB)."""
    measure = (
        "import json, resource, subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'convnet', 'summary', '--model', "
        "sys.argv[1]], capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps([done.returncode, done.stdout, done.stderr, peak]))\n")
    outcome = subprocess.run([sys.executable, "-c", measure, str(path)], capture_output=True,
                             text=True, timeout=300, check=True)
    return json.loads(outcome.stdout)


def assert_refused_in_one_line(path, message):
    status, out, err, peak = summary_of(path)
    assert (status, out) == (2, ""), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"convnet: error: --model {path}: spec file {path}"), err
    assert message in err, err
    assert peak < PEAK_LIMIT_MB, f"convnet summary peaked at {peak:.0f} MB"
    return err


def write_spec(path, spec):
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


# ---------------------------------------------------------------- huge weights
def test_huge_weights_are_refused_before_allocating(tmp_path):
    with pytest.raises(BadSpecError, match=r"^spec declares 20,280,612,190 weights, more than "
                                           r"the 100,000,000 a checkpoint may hold \(layer 2 "
                                           r"\('dense1', Dense\) has 20,025,510,140\)$"):
        Sequential(HUGE_WEIGHTS)
    assert_refused_in_one_line(write_spec(tmp_path / "weights.json", HUGE_WEIGHTS),
                               "spec declares 20,280,612,190 weights")


def test_weights_beyond_the_budget_are_refused_naming_the_figures(monkeypatch):
    monkeypatch.setenv(limits.MEMORY_BUDGET_VARIABLE, "64MiB")
    spec = [{"layer": "Input", "shape": [28, 28, 1]}, {"layer": "Flatten"},
            {"layer": "Dense", "name": "dense1", "units": 30_000, "activation": "relu"},
            {"layer": "Dense", "units": 10, "activation": "softmax"}]
    with pytest.raises(BadSpecError, match=r"^layer 2 \('dense1', Dense\): needs 89.8 MiB of "
                                           r"weights \(23,550,000 parameters\); the budget is "
                                           r"64 MiB \(CONVNET_MEMORY_BUDGET raises it\)$"):
        normalise_spec(spec)
    monkeypatch.setenv(limits.MEMORY_BUDGET_VARIABLE, "1GiB")
    assert normalise_spec(spec).shapes[2] == (30_000,)


# ---------------------------------------------------------------- huge activations
def test_huge_activations_of_few_weights_are_refused(tmp_path):
    message = ("layer 1 ('conv1', Conv2D): needs 7.63 GiB of activations for one image; the "
               "budget is 4 GiB (CONVNET_MEMORY_BUDGET raises it)")
    with pytest.raises(BadSpecError) as refused:
        Sequential(HUGE_ACTIVATIONS)
    assert str(refused.value) == message
    assert_refused_in_one_line(write_spec(tmp_path / "activations.json", HUGE_ACTIVATIONS),
                               message)


def test_the_budget_can_be_raised_and_must_be_a_size(monkeypatch):
    monkeypatch.setenv(limits.MEMORY_BUDGET_VARIABLE, "64GiB")
    assert normalise_spec(HUGE_ACTIVATIONS).shapes[1] == (4000, 4000, 64)
    monkeypatch.setenv(limits.MEMORY_BUDGET_VARIABLE, "lots")
    with pytest.raises(BadOptionError, match="CONVNET_MEMORY_BUDGET must be a size such as "
                                             "8GiB or 512MiB, received 'lots'"):
        normalise_spec(HUGE_ACTIVATIONS)


@pytest.mark.parametrize("text, count", [("4GiB", 4 * 2 ** 30), ("512 MiB", 512 * 2 ** 20),
                                         ("2g", 2 * 2 ** 30), ("1.5GB", 1_500_000_000),
                                         ("123456", 123456), ("64kib", 65536)])
def test_sizes_of_the_budget(text, count):
    assert limits.parse_size(text) == count


@pytest.mark.parametrize("text", ["", "GiB", "-1GiB", "0", "4 parsecs", "1e9"])
def test_sizes_that_are_not(text):
    with pytest.raises(ValueError):
        limits.parse_size(text)


def test_many_layers_add_up_and_the_batch_counts():
    # Each ReLU keeps 4 MiB of a 1,048,576-pixel image: 2,000 of them pass one by one.
    spec = [{"layer": "Input", "shape": [1024, 1024, 1]}] + [{"layer": "ReLU"}] * 2000 + [
        {"layer": "MaxPool2D", "pool": 1024}, {"layer": "Flatten"},
        {"layer": "Dense", "units": 2, "activation": "softmax"}]
    with pytest.raises(BadSpecError, match=r"^layer 512 \('relu512', ReLU\): brings the model "
                                           r"to 4.01 GiB \(0 B of weights, 4.01 GiB of "
                                           r"activations for one image\); the budget is 4 GiB"):
        normalise_spec(spec)
    need = check_memory(load_spec("mnist-cnn"), batch_size=512)
    assert need.weights == 220_234 * 4 and need.activations < need.budget
    with pytest.raises(BadSpecError, match=r"layer \d+ .* of activations for a batch of "
                                           r"100,000; the budget is 4 GiB"):
        check_memory(load_spec("mnist-cnn"), batch_size=100_000)


@pytest.mark.parametrize("name", NAMES)
def test_every_zoo_model_trains_at_batch_512_within_the_default_budget(name):
    need = check_memory(load_spec(name), batch_size=512)
    assert need.budget == limits.DEFAULT_MEMORY_BUDGET
    assert need.weights + need.activations < need.budget


def test_shapes_beyond_int64_are_counted_exactly():
    # 2 ** 80 pixels: an int64 product would wrap round to 0.
    spec = [{"layer": "Input", "shape": [2 ** 40, 2 ** 40, 1]}, {"layer": "MaxPool2D",
                                                                 "pool": 2 ** 40},
            {"layer": "Flatten"}, {"layer": "Dense", "units": 2, "activation": "softmax"}]
    with pytest.raises(BadSpecError, match=r"^layer 0 \(Input\): needs 8796093022208 TiB of "
                                           r"activations for one image"):
        normalise_spec(spec)


# ---------------------------------------------------------------- deep nesting
def test_deep_nesting_is_refused_without_recursion(tmp_path):
    with pytest.raises(BadSpecError, match="spec text nests brackets 30,000 deep; a spec needs "
                                           "5 levels and may take at most 32"):
        Sequential.from_json(DEEP_TEXT)
    path = tmp_path / "deep.json"
    path.write_text(DEEP_TEXT)
    with pytest.raises(BadOptionError, match="deep.json nests brackets 30,000 deep"):
        load_spec(path)
    assert_refused_in_one_line(path, "nests brackets 30,000 deep")


def test_brackets_inside_strings_do_not_nest():
    assert limits.json_depth('{"name": "[[[[{{\\"]]", "layers": [[1]]}') == 3
    assert limits.json_depth("12") == 0
    text = json.dumps({"name": "[" * 100, "layers": mnist_spec()})
    assert limits.spec_text_problem(text) is None


# ---------------------------------------------------------------- bad names
@pytest.mark.parametrize("name", ["conv 1", "conv/1", "..", ".hidden", "-x", "_x", "", "x" * 65,
                                  "conv\n1", "caf\u00e9", "a\x00b", "\ud800", 7])
def test_layer_names_that_no_checkpoint_could_hold_are_refused(name):
    spec = mnist_spec({"layer": "Conv2D", "name": name, "filters": 2, "kernel": 3})
    with pytest.raises(BadSpecError, match=r"^layer 1 \(.*Conv2D\): name must be 1 to 64 "
                                           r"characters from A-Z a-z 0-9 _ \. - starting with a "
                                           r"letter or digit"):
        normalise_spec(spec)


def test_bad_name_in_a_file_is_refused_in_one_line(tmp_path):
    # Accepted once, trained, and written as the members '../kernel' and '../bias'.
    path = write_spec(tmp_path / "names.json", mnist_spec(
        {"layer": "Conv2D", "name": "..", "filters": 2, "kernel": 3}))
    assert_refused_in_one_line(path, "layer 1 ('..', Conv2D): name must be 1 to 64")


@pytest.mark.parametrize("name", ["\x1b[2J", "", "a/b", "x" * 129, 3])
def test_model_names_are_printable_and_short(name):
    with pytest.raises(BadSpecError, match="spec's name must be"):
        normalise_spec({"name": name, "layers": mnist_spec()})


def test_a_spec_with_allowed_names_gives_a_checkpoint_that_loads(tmp_path):
    from convnet.nn.optim import Adam
    from convnet.training import trainer
    spec = {"name": "model (v2)", "layers": mnist_spec(
        {"layer": "Conv2D", "name": "block_1.conv-a", "filters": 2, "kernel": 3},
        {"layer": "ReLU", "name": "x" * 64})}
    model = Sequential(spec, seed=0)
    settings = {"seed": 0, "batch_size": 32, "lr": 1e-3, "dataset": "mnist", "train_size": 8}
    history = {key: [2.3] for key in trainer.HISTORY_KEYS}
    history["epoch_seconds"] = []
    path = tmp_path / "checkpoint.npz"
    trainer.save_checkpoint(path, model, Adam(model.parameters()), 0, settings, history,
                            [str(digit) for digit in range(10)])
    loaded = trainer.load_model(path)[0]
    assert loaded.spec == model.spec
    for name, value in loaded.get_weights().items():
        np.testing.assert_array_equal(value, model.get_weights()[name])


def test_a_checkpoint_holding_a_hostile_spec_is_refused(tmp_path):
    from convnet.training import trainer
    path = tmp_path / "crafted.npz"
    arrays = {"spec": np.frombuffer(json.dumps(HUGE_ACTIVATIONS).encode(), np.uint8)}
    np.savez(path, **arrays)
    with pytest.raises(BadCheckpointError, match=r"crafted.npz: member 'spec' is not a valid "
                                                 r"model spec \(layer 1 \('conv1', Conv2D\): "
                                                 r"needs 7.63 GiB of activations"):
        trainer.load_model(path)


# ---------------------------------------------------------------- oversized text
def test_oversized_spec_file_is_refused_unread(tmp_path):
    path = tmp_path / "padded.json"
    text = json.dumps(mnist_spec())
    path.write_text(text[:-1] + " " * (limits.MAX_SPEC_BYTES * 80) + "]")   # 5 MB
    with pytest.raises(BadOptionError, match="padded.json is longer than 65,536 bytes"):
        load_spec(path)
    with pytest.raises(BadSpecError, match="spec text is 70,000 bytes long; a spec may take at "
                                           "most 65,536"):
        Sequential.from_json(" " * 70_000)
    assert_refused_in_one_line(path, "is longer than 65,536 bytes, the most a spec may take")


def test_a_spec_too_long_for_a_checkpoint_is_refused():
    spec = mnist_spec(*[{"layer": "ReLU"}] * 1500)
    with pytest.raises(BadSpecError, match=r"spec takes \d{2},\d{3} bytes as JSON \(1,503 "
                                           r"layers\); a checkpoint holds at most 65,536"):
        normalise_spec(spec)


def test_numbers_of_thousands_of_digits_are_refused(tmp_path):
    path = tmp_path / "digits.json"
    path.write_text('[{"layer": "Input", "shape": [28, 28, 1]}, {"layer": "Flatten"}, '
                    '{"layer": "Dense", "activation": "softmax", "units": ' + "1" * 5000 + "}]")
    # Python 3.10.7 and later refuse to convert so many digits; earlier ones count the weights.
    err = assert_refused_in_one_line(path, "")
    assert "is not valid JSON" in err or "weights, more than the 100,000,000" in err


def test_long_values_are_quoted_short():
    spec = mnist_spec({"layer": "Dropout", "rate": "x" * 50_000})
    with pytest.raises(BadSpecError) as refused:
        normalise_spec(spec)
    assert len(str(refused.value)) < 200


def test_the_command_line_sets_the_budget_for_the_run(monkeypatch, capsys):
    from convnet.apps.cli.cli import main
    monkeypatch.delenv(limits.MEMORY_BUDGET_VARIABLE, raising=False)
    assert main(["--memory-budget", "64KiB", "summary", "--model", "lenet5"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("convnet: error: ") and "the budget is 64 KiB" in error, error
    assert main(["--memory-budget", "1GiB", "summary", "--model", "lenet5"]) == 0


def test_the_command_line_refuses_a_budget_that_is_no_size(capsys):
    from convnet.apps.cli.cli import main
    with pytest.raises(SystemExit) as stopped:
        main(["--memory-budget", "lots", "summary"])
    assert stopped.value.code == 2
    assert "'lots' is not a size such as 8GiB" in capsys.readouterr().err
