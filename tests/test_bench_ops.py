"""Tests of the benchmark helpers in convnet/apps/bench/ (not of speed itself)."""
import os
import time
from pathlib import Path

import numpy as np
import pytest

from convnet.apps.bench import bench, ops
from convnet.nn.threads import blas_threads


def test_median_time_skips_warmup_and_takes_the_median():
    delays = iter([0.5, 0.0, 0.2, 0.0])
    calls = []

    def task():
        calls.append(1)
        time.sleep(next(delays))

    measured = bench.median_time(task, repeats=3, warmup=1)
    assert len(calls) == 4
    assert 0.0 <= measured < 0.2  # the warm-up is not counted; the median is a 0 s call


def test_format_table_aligns_markdown_columns():
    table = bench.format_table(["a", "long header"], [["x", 1], ["longer cell", 2.5]])
    lines = table.splitlines()
    assert len(lines) == 4
    assert len({len(line) for line in lines}) == 1
    assert lines[1].startswith("|--") and lines[2].startswith("| x ")


def test_bench_ops_command_prints_the_rows_the_library_returns(monkeypatch, capsys):
    from convnet.apps.cli import cli
    seen = []

    def fake_bench_ops(quick, log):
        seen.append(quick)
        log("0-main: load average 1.00")
        return [["conv", "1.00", "", "", "", "", "", "yes"]]

    monkeypatch.setattr(bench, "bench_ops", fake_bench_ops)
    monkeypatch.setattr(bench, "machine_info", lambda: "test machine")
    assert cli.main(["bench", "ops", "--quick"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert seen == [True]
    assert printed[:2] == ["test machine", "0-main: load average 1.00"]
    assert printed[2].startswith("| workload") and printed[4].startswith("| conv ")


def test_bench_ops_refuses_the_training_options(capsys):
    from convnet.apps.cli import cli
    assert cli.main(["bench", "ops", "--model", "mlp"]) == 2
    assert "--model is used with `convnet bench train` only" in capsys.readouterr().err


def test_bench_train_refuses_an_unknown_model(capsys):
    from convnet.apps.cli import cli
    assert cli.main(["bench", "train", "--model", "resnet"]) == 2
    assert "--model resnet: model must be one of" in capsys.readouterr().err


def test_time_layers_reports_every_layer_inside_real_steps():
    rows, step_ms = bench.time_layers("lenet5", steps=3, batch=4)
    names = [row[0] for row in rows]
    assert names[:3] == ["conv1", "conv1/relu", "pool1"]
    assert names[-3:] == ["softmax", "adam step", "whole step"]
    assert step_ms > 0
    timed = [float(row[1]) + float(row[2] or 0) for row in rows[:-1]]
    assert all(value >= 0 for value in timed) and 0 < sum(timed) <= step_ms


def test_time_layers_gives_the_products_rate_of_each_layer_with_weights():
    from convnet.nn.flops import layer_flops
    from convnet.nn.zoo import load_spec
    batch = 4
    rows, _ = bench.time_layers("lenet5", steps=3, batch=batch)
    products = {layer.name: layer for layer in layer_flops(load_spec("lenet5"))}
    rated = {row[0]: row for row in rows if row[4]}
    assert set(rated) == {"conv1", "conv2", "dense1", "dense2", "dense3"} == set(products)
    for name, row in rated.items():
        rates = [float(rate) for rate in row[4].split(" / ")]
        layer = products[name]
        flops = (layer.forward, layer.kernel_gradient + layer.input_gradient)
        for rate, operations, ms in zip(rates, flops, (float(row[1]), float(row[2]))):
            assert rate > 0
            if ms >= 0.01:   # the table's milliseconds are rounded to three places
                assert rate == pytest.approx(operations * batch / (ms * 1e6), rel=0.1, abs=0.5)
    assert all(row[4] == "" for row in rows if row[0] not in rated)
    assert "GFLOP/s" in bench.LAYER_HEADERS[4]


def test_bench_train_layers_prints_the_table_and_the_reference_rate(monkeypatch, capsys):
    from convnet.apps.bench import layers
    from convnet.apps.cli import cli
    monkeypatch.setattr(layers, "gemm_gflops", lambda threads=None: 88.0 if threads == 1 else 0)
    assert cli.main(["bench", "train", "--layers", "--model", "lenet5", "--steps", "2",
                     "--batch-size", "4"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].startswith("lenet5: NumPy training step, ")
    assert "GFLOP/s forward / backward" in printed[2]
    assert printed[-2].startswith("| whole step ")
    assert printed[-1].endswith("on one BLAS thread: 88 GFLOP/s")


def test_time_layers_times_the_steps_after_the_untimed_ones(monkeypatch):
    from convnet.apps.bench import layers
    trained = []
    untimed = layers._untimed_steps

    def counted(stepper, X, Y, steps):
        untimed(stepper, X, Y, steps)
        trained.append(stepper.optimizer.iterations)

    monkeypatch.setattr(layers, "_untimed_steps", counted)
    rows, _ = bench.time_layers("lenet5", steps=2, batch=4, after=37)
    assert trained == [37] and rows[-1][0] == "whole step"
    for after in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="after must be a positive integer"):
            bench.time_layers("lenet5", steps=2, batch=4, after=after)


def test_profile_of_training_steps_names_the_work():
    stats, text = bench.profile_train_step("lenet5", steps=3, batch=8, top=5)
    profiled = {name for _, _, name in stats.stats}
    assert {"loss_and_grads", "conv_forward", "conv_backward", "step"} <= profiled
    assert "function calls in" in text


def test_bench_train_rejects_a_bad_number_of_runs():
    with pytest.raises(ValueError, match="runs must be a positive integer, received 0"):
        bench.bench_train(runs=0)


@pytest.mark.parametrize("model, batch, optimizer", [
    ("mnist-cnn", 64, "rmsprop"), ("mlp", 128, "rmsprop"), ("cifar-cnn", 32, "rmsprop"),
    ("lenet5", 32, "adam")])
def test_train_setting_is_the_course_batch_and_the_spec_optimizer(model, batch, optimizer):
    spec, got_batch, got_optimizer = bench.train_setting(model)
    assert (spec["name"], got_batch, got_optimizer) == (model, batch, optimizer)
    assert bench.train_setting(model, 16, "sgd")[1:] == (16, "sgd")


def test_bench_images_are_cifar_sized_for_the_colour_model():
    X, Y, source = bench.bench_images((32, 32, 3), 10)
    assert X.shape == (45000, 32, 32, 3) and X.dtype == "float32" and Y.shape == (45000,)
    assert source == "synthetic 32x32x3" and set(np.unique(Y)) == set(range(10))


def test_numpy_stepper_takes_the_optimizer_steps_of_a_hand_loop():
    """The stepper's plain loop equals loss_and_grads + step written out, batch by batch."""
    from convnet.nn.optim import make_optimizer
    from convnet.nn.sequential import Sequential
    from convnet.nn.zoo import load_spec
    rng = np.random.default_rng(1)
    X, Y = rng.random((10, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 10)
    stepper = bench.NumpyStepper("mlp", 4, "rmsprop", seed=3)
    reference = Sequential(load_spec("mlp"), seed=3)
    optimizer = make_optimizer("rmsprop", reference.parameters())
    order = np.random.default_rng(3).permutation(10)
    stepper.train(X, Y)
    with blas_threads(1):   # the stepper's setting, so that the rounding is the same
        for start in range(0, 10, 4):
            batch = order[start:start + 4]
            optimizer.step(reference.loss_and_grads(X[batch], Y[batch])[1])
    for got, expected in zip(stepper.model.parameters(), reference.parameters()):
        np.testing.assert_array_equal(got, expected)


def test_ratio_row_judges_the_task_file_on_the_slower_thread_setting():
    faster = ops._ratio_row("x", 3.0, 0.5, 1.0, 1.0)
    both = ops._ratio_row("x", 3.0, 0.5, 1.0, 1.0, judge="both")
    assert faster[-1] == "yes (1 thread 0.50)"
    assert both[-1] == "no (default threads 3.00, 3.00x over)"
    assert ops._ratio_row("x", 0.9, 0.5, 1.0, 1.0, judge="both")[-1] == "yes (default threads 0.90)"
    # The judged ratio is one of the printed columns.
    assert faster[5] == "0.50" and both[4] == "3.00"


def test_task_conv_forward_loads_the_task_file(tmp_path):
    import numpy as np
    conv = bench.task_conv_forward()
    assert conv is not None and conv.__module__ == "task_0_conv_forward"
    A = np.ones((1, 3, 3, 1))
    out = conv(A, np.ones((3, 3, 1, 1)), np.zeros((1, 1, 1, 1)), lambda z: z, "same", (2, 2))
    np.testing.assert_array_equal(out[0, :, :, 0], [[1, 3, 1], [3, 9, 3], [1, 3, 1]])
    assert bench.task_conv_forward(tmp_path) is None


def _cpu_seconds(pid):
    """User + system CPU time of a running process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_one_core_busy_runs_a_burning_child_and_stops_it():
    with bench.one_core_busy(seconds=60) as pid:
        time.sleep(1.0)   # the child starts (spawn) and burns
        start, before = time.monotonic(), _cpu_seconds(pid)
        time.sleep(1.0)
        used = (_cpu_seconds(pid) - before) / (time.monotonic() - start)
    assert used > 0.3   # a busy core, even on a shared machine
    assert not Path(f"/proc/{pid}").exists()   # stopped and reaped


def test_peak_added_bytes_sees_an_allocation():
    import numpy as np
    peak = bench.peak_added_bytes(lambda: np.ones(1_000_000))
    assert 8_000_000 <= peak < 9_000_000
