"""Tests of convnet.nn.architectures: shapes, parameter counts, tables, summary, diagram.

Parameter counts are checked against the formulas written out by hand per
layer, shapes against the project's own NumPy convolution and pooling run on
a real array, and both against Keras when TensorFlow is installed. LeNet-5
and the MLP are the zoo's specs summarised (``convnet.nn.specs``); AlexNet
is an ``Architecture``.
"""
import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from reference_ops import load_task_file

from convnet.apps.cli.cli import main
from convnet.nn import architectures as arch
from convnet.nn.ops import conv_forward, pool_forward
from convnet.nn.specs import spec_summary, summary_text
from convnet.nn.zoo import load_spec

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "0x07-cnn" / "6-alexnet.md"
DRAW_SCRIPT = ROOT / "docs" / "figures" / "draw_alexnet.py"


# ---------------------------------------------------------------- parameter counts by hand

def test_lenet5_parameters_match_the_formulas_layer_by_layer():
    by_hand = {
        "conv1": (5 * 5 * 1 + 1) * 6,
        "conv2": (5 * 5 * 6 + 1) * 16,
        "dense1": (5 * 5 * 16 + 1) * 120,
        "dense2": (120 + 1) * 84,
        "dense3": (84 + 1) * 10,
    }
    computed = {row.name: row.params for row in arch.LENET5.rows if row.params}
    assert computed == by_hand
    assert sum(by_hand.values()) == 61_706  # the spec's documented count (task 5)
    assert arch.total_params(arch.LENET5) == 61_706


def test_mlp_parameters_match_the_formulas_layer_by_layer():
    by_hand = [(28 * 28 + 1) * 512, (512 + 1) * 512, (512 + 1) * 10]
    computed = [row.params for row in arch.MLP.rows if row.params]
    assert computed == by_hand
    assert arch.total_params(arch.MLP) == sum(by_hand) == 669_706


def test_alexnet_parameters_follow_the_papers_kernel_shapes():
    # Kernel shapes as the paper states them: each group of conv2/4/5 sees
    # only the channels on its own GPU (5x5x48, 3x3x192, 3x3x192).
    by_hand = {
        "conv1": (11 * 11 * 3 + 1) * 96,
        "conv2": (5 * 5 * 48 + 1) * 256,
        "conv3": (3 * 3 * 256 + 1) * 384,
        "conv4": (3 * 3 * 192 + 1) * 384,
        "conv5": (3 * 3 * 192 + 1) * 256,
        "fc6": (6 * 6 * 256 + 1) * 4096,
        "fc7": (4096 + 1) * 4096,
        "fc8": (4096 + 1) * 1000,
    }
    computed = {r.layer.name: r.params for r in arch.analyse(arch.ALEXNET) if r.params}
    assert computed == by_hand
    total = arch.total_params(arch.ALEXNET)
    assert total == sum(by_hand.values())
    assert 60e6 <= total < 61e6  # "60 million parameters"


def test_ungrouped_alexnet_has_full_depth_kernels():
    extra = ((5 * 5 * 96 - 5 * 5 * 48) * 256 + (3 * 3 * 384 - 3 * 3 * 192) * 384
             + (3 * 3 * 384 - 3 * 3 * 192) * 256)
    assert (arch.total_params(arch.alexnet(grouped=False))
            == arch.total_params(arch.ALEXNET) + extra)


# ---------------------------------------------------------------- shapes
def test_lenet5_output_shapes_are_the_specs():
    shapes = [row.output_shape for row in arch.LENET5.rows]
    assert shapes == [(28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (400,), (120,), (84,),
                      (10,)]


@pytest.mark.parametrize("input_size, padding, expected", [
    (227, "valid", 55), (224, 2, 55), (224, "valid", 54)])
def test_alexnet_conv1_readings(input_size, padding, expected):
    reports = arch.analyse(arch.alexnet(input_size=input_size, conv1_padding=padding))
    assert reports[0].output_shape == (expected, expected, 96)


def _run_with_numpy_ops(architecture, rng):
    """Push one random example through the stack with convnet.nn.ops; return the shapes."""
    A = rng.standard_normal((1, *architecture.input_shape))
    shapes = []
    for layer in architecture.layers:
        if layer.kind == "conv":
            groups = np.split(A, layer.groups, axis=3)
            c_seen = A.shape[3] // layer.groups
            outputs = []
            for group in groups:
                W = rng.standard_normal((*layer.kernel, c_seen, layer.units // layer.groups))
                b = np.zeros((1, 1, 1, W.shape[3]))
                outputs.append(conv_forward(group, W, b, np.tanh, layer.padding, layer.stride))
            A = np.concatenate(outputs, axis=3)
        elif layer.kind == "pool":
            A = pool_forward(A, layer.kernel, layer.stride, layer.mode)
        elif layer.kind == "flatten":
            A = A.reshape(A.shape[0], -1)
        elif layer.kind == "dense":
            A = A @ rng.standard_normal((A.shape[1], layer.units))
        shapes.append(A.shape[1:])
    return shapes


def _run_spec_with_numpy_ops(spec, rng):
    """Push one random example through a spec's layers with convnet.nn.ops; return the shapes."""
    A = rng.standard_normal((1, *spec["layers"][0]["shape"]))
    shapes = []
    for entry in spec["layers"][1:]:
        if entry["layer"] == "Conv2D":
            W = rng.standard_normal((*entry["kernel"], A.shape[3], entry["filters"]))
            b = np.zeros((1, 1, 1, entry["filters"]))
            A = conv_forward(A, W, b, np.tanh, entry["padding"], entry["stride"])
        elif entry["layer"] in ("MaxPool2D", "AveragePool2D"):
            mode = "max" if entry["layer"] == "MaxPool2D" else "avg"
            A = pool_forward(A, entry["pool"], entry["stride"], mode)
        elif entry["layer"] == "Flatten":
            A = A.reshape(A.shape[0], -1)
        elif entry["layer"] == "Dense":
            A = A @ rng.standard_normal((A.shape[1], entry["units"]))
        shapes.append(A.shape[1:])
    return shapes


@pytest.mark.parametrize("summary, name", [(arch.LENET5, "lenet5"), (arch.MLP, "mlp")],
                         ids=["LeNet-5", "MLP"])
def test_shapes_agree_with_the_numpy_ops(summary, name):
    computed = [row.output_shape for row in summary.rows]
    assert computed == _run_spec_with_numpy_ops(load_spec(name), np.random.default_rng(0))


def test_alexnet_shapes_agree_with_the_numpy_ops():
    # The same stack at a quarter of the width keeps the run short: widths change
    # channel counts, never the spatial arithmetic under test.
    narrow = arch.Architecture("narrow", arch.ALEXNET.input_shape, tuple(
        dataclasses.replace(layer, units=layer.units // 4) for layer in arch.ALEXNET.layers))
    computed = [r.output_shape for r in arch.analyse(narrow)]
    assert computed == _run_with_numpy_ops(narrow, np.random.default_rng(0))
    assert [shape[:2] for shape in computed[:10]] == [
        r.output_shape[:2] for r in arch.analyse(arch.ALEXNET)[:10]]


# ---------------------------------------------------------------- bad stacks
def test_dense_on_an_image_is_refused():
    bad = arch.Architecture("bad", (28, 28, 1), (arch.dense("fc", 10),))
    with pytest.raises(ValueError, match="'fc' .*flat"):
        arch.analyse(bad)


def test_window_larger_than_the_map_is_refused():
    bad = arch.Architecture("bad", (4, 4, 1), (arch.conv("c", 2, 5),))
    with pytest.raises(ValueError, match="'c': window"):
        arch.analyse(bad)


def test_groups_must_divide_the_channels():
    bad = arch.Architecture("bad", (8, 8, 3), (arch.conv("c", 4, 3, groups=2),))
    with pytest.raises(ValueError, match="groups=2 must divide"):
        arch.analyse(bad)


def test_unknown_kind_is_refused():
    bad = arch.Architecture("bad", (8, 8, 3), (arch.Layer("x", "attention"),))
    with pytest.raises(ValueError, match="kind must be one of"):
        arch.analyse(bad)


# ---------------------------------------------------------------- against Keras
def _keras():
    pytest.importorskip("tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow.keras as K
    return K


def test_lenet5_agrees_with_the_keras_model_of_task_5():
    K = _keras()
    model = load_task_file("5-lenet5").lenet5(K.Input((28, 28, 1)))
    keras_layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    ours = arch.LENET5.rows
    assert model.count_params() == arch.total_params(arch.LENET5)
    assert [(layer.name, tuple(layer.output.shape), layer.count_params())
            for layer in keras_layers] == [
        (row.name, (None, *row.output_shape), row.params) for row in ours]


def test_alexnet_parameter_count_agrees_with_keras():
    K = _keras()
    X = inputs = K.Input(arch.ALEXNET.input_shape)
    for layer in arch.ALEXNET.layers:
        if layer.kind == "conv":
            X = K.layers.Conv2D(layer.units, layer.kernel, layer.stride, layer.padding,
                                groups=layer.groups)(X)
        elif layer.kind == "pool":
            X = K.layers.MaxPooling2D(layer.kernel, layer.stride)(X)
        elif layer.kind == "flatten":
            X = K.layers.Flatten()(X)
        elif layer.kind == "dense":
            X = K.layers.Dense(layer.units)(X)
    model = K.Model(inputs, X)
    assert model.count_params() == arch.total_params(arch.ALEXNET)
    assert tuple(model.output.shape) == (None, 1000)


# ---------------------------------------------------------------- command line and tables
def test_summary_command_prints_both_totals_and_the_ratio(capsys):
    assert main(["summary"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 61,706" in out
    assert "Total params: 669,706" in out
    assert f"{669_706 / 61_706:.1f} times as many" in out
    assert "(None, 28, 28, 6)" in out
    assert "AlexNet" not in out


def test_summary_command_can_add_alexnet(capsys):
    assert main(["summary", "--alexnet"]) == 0
    out = capsys.readouterr().out
    assert f"Total params: {arch.total_params(arch.ALEXNET):,}" in out
    assert "(None, 55, 55, 96)" in out


def test_summary_table_has_one_row_per_layer_with_none_batch():
    lines = summary_text(arch.LENET5, details=True).splitlines()
    for report in arch.LENET5.rows:
        row = [line for line in lines if line.startswith(report.name + " (")]
        assert len(row) == 1
        assert f"(None, {', '.join(map(str, report.output_shape))})" in row[0]
        assert re.search(rf"\s{report.params:,}\s", row[0] + " ")
        assert row[0].endswith(f"{report.formula}: {report.description}" if report.formula
                               else report.description)


@pytest.mark.parametrize("name", sorted(arch.doc_tables()))
def test_review_contains_the_tables_the_code_generates(name):
    text = DOC.read_text(encoding="utf-8")
    assert arch.doc_tables()[name] in text, (
        f"0x07-cnn/6-alexnet.md is out of date: paste arch.doc_tables()[{name!r}] again")


def test_markdown_table_rows_and_total():
    table = arch.markdown_table(arch.LENET5).splitlines()
    assert len(table) == 2 + 1 + len(arch.LENET5.rows) + 1
    assert "**61,706**" in table[-1]


# ---------------------------------------------------------------- diagram
def test_alexnet_diagram_script_writes_a_png_of_the_expected_size(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "alexnet.png"
    subprocess.run([sys.executable, str(DRAW_SCRIPT), "--out", str(out)], check=True,
                   cwd=tmp_path, env={**os.environ, "MPLBACKEND": "Agg"}, timeout=120)
    spec = importlib.util.spec_from_file_location("draw_alexnet", DRAW_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    import matplotlib.image
    image = matplotlib.image.imread(out)
    width, height = script.FIGSIZE
    assert image.shape[:2] == (round(height * script.DPI), round(width * script.DPI))
    assert image.std() > 0.05  # something was drawn, not a blank canvas
    assert not list(tmp_path.glob(".alexnet.png.*"))  # no temporary file left behind


# ---------------------------------------------------------------- from the zoo's specs
# The specification's parameter counts of the zoo models.
SPEC_COUNTS = {"lenet5": 61_706, "lenet5-classic": 61_706, "mlp": 669_706,
               "mnist-cnn": 220_234, "cifar-cnn": 541_094, "happy-model": 37_633,
               "signs-cnn": 1_310}


@pytest.mark.parametrize("name", SPEC_COUNTS)
def test_spec_summaries_agree_with_the_built_model_and_the_spec(name):
    from convnet.nn.sequential import Sequential
    summary = spec_summary(load_spec(name))
    model = Sequential(load_spec(name))
    maps = dict(model.feature_maps(np.zeros((1,) + model.input_shape)))
    sizes = {layer.name: sum(value.size for store in (layer.params, layer.buffers)
                             for value in store.values()) for layer in model.layers}
    assert [(row.name, tuple(row.output_shape), row.params) for row in summary.rows] == [
        (row.name, maps[row.name].shape[1:], sizes[row.name]) for row in summary.rows]
    assert arch.total_params(summary) == SPEC_COUNTS[name]


def test_lenet5_and_mlp_tables_are_the_zoo_models():
    assert arch.LENET5.rows == spec_summary(load_spec("lenet5")).rows
    assert arch.MLP.rows == spec_summary(load_spec("mlp")).rows


@pytest.mark.parametrize("name, kind", [("happy-model", "ZeroPadding2D"), ("signs-cnn", "ReLU")])
def test_every_layer_of_the_zoo_has_a_row_in_the_review_tables(name, kind):
    summary = spec_summary(load_spec(name))
    table = arch.markdown_table(summary)
    assert [row.kind for row in summary.rows].count(kind) >= 1
    for row in summary.rows:
        assert f"| {row.name} | {row.description} |" in table
    assert f"**{arch.total_params(summary):,}**" in table
