"""Tests of `convnet bench train`: its engines, workers and table (not of speed itself)."""
import contextlib
import json
import subprocess
import sys

import numpy as np
import pytest

from convnet.apps.bench import bench, train
from convnet.apps.cli import cli
from convnet.parallel import distributed


def result(seconds, processes=1, rss=(100e6,), cpu_seconds=None):
    return {"seconds": seconds, "rss": list(rss), "processes": processes,
            "cpu_seconds": seconds / 2 if cpu_seconds is None else cpu_seconds}


# Three runs of three engines, 1,000 images timed of a 50,000-image epoch (x 50).
RUNS = [
    {"1 process": result(0.10), "default": result(0.06, 2, (120e6, 130e6)),
     "keras": result(0.20, rss=(800e6,))},
    {"1 process": result(0.12), "default": result(0.11, 1), "keras": result(0.10)},
    {"1 process": result(0.08), "default": result(0.05, 2, (125e6, 90e6)),
     "keras": result(0.16)},
]


def test_engine_rows_are_the_medians_of_the_runs():
    rows = bench.engine_rows("mlp", 128, "rmsprop", RUNS, images=1000, total=50000,
                             target=1.0)
    assert [row[3] for row in rows] == ["1 process", "default", "keras"]
    assert all(len(row) == len(bench.TRAIN_HEADERS) for row in rows)
    alone, default, keras = rows
    # Seconds per epoch: the median over the runs, scaled from 1,000 images to 50,000.
    assert alone[5] == "5.00" and default[5] == "3.00" and keras[5] == "8.00"
    # Ratios: the median of each run's own ratio (0.5, 1.2, 0.5; 0.3, 1.1, 0.3125),
    # not the ratio of the medians (5 / 8 and 3 / 8).
    assert alone[6] == "0.50" and default[6] == "0.31" and keras[6] == ""
    # The target is judged on the default engine only.
    assert default[7:9] == ["<= 1", "yes"] and alone[7:9] == ["", ""]
    # The default records each run's choice; a fixed engine its count.
    assert default[4] == "2, 1, 2" and alone[4] == "1"
    # Memory: the largest peak of any process of any run.
    assert default[9] == "130" and keras[9] == "800"
    # CPU seconds: the median, scaled as the clock (here half of it).
    assert alone[10] == "2.50" and keras[10] == "4.00"
    assert rows[0][:3] == ["mlp", "128", "rmsprop"]


def test_engine_rows_say_by_how_much_a_target_is_missed():
    runs = [{"default": result(3.0), "keras": result(2.0)}]
    [default, _] = bench.engine_rows("mnist-cnn", 64, "rmsprop", runs, 10, 10, target=1.0)
    assert default[6:9] == ["1.50", "<= 1", "no (1.50x over)"]
    [default, _] = bench.engine_rows("lenet5", 32, "adam", runs, 10, 10, target=None)
    assert default[6:9] == ["1.50", "", ""]


def test_engine_rows_without_keras_have_no_ratio():
    runs = [{"2 ranks": result(1.0, 2)}, {"2 ranks": result(3.0, 2)}]
    [row] = bench.engine_rows("lenet5", 32, "adam", runs, 100, 100, target=1.0)
    assert row[4:9] == ["2", "2.00", "", "", ""]


def test_verdict_names_the_default_and_the_single_process():
    rows = bench.engine_rows("mlp", 128, "rmsprop", RUNS, 1000, 50000, target=1.0)
    assert bench.verdict("mlp", rows) == (
        "mlp: the default (2, 1, 2 processes) took 0.31 x Keras's epoch, target <= 1: met; "
        "one process 0.50 x")
    rows = bench.engine_rows("mlp", 128, "rmsprop", RUNS, 1000, 50000, target=0.25)
    assert "target <= 0.25: not met" in bench.verdict("mlp", rows)
    rows = bench.engine_rows("mlp", 128, "rmsprop", RUNS, 1000, 50000, target=None)
    assert bench.verdict("mlp", rows) == ""


def test_check_engines_names_the_unknown_one():
    assert bench.check_engines(["keras", "2 ranks"]) == ("keras", "2 ranks")
    with pytest.raises(ValueError, match="engine must be one of '1 process', .* received '3'"):
        bench.check_engines(["3"])
    with pytest.raises(ValueError, match="at least one engine"):
        bench.check_engines([])


def test_several_ranks_are_refused_for_a_model_with_batch_normalization(capsys):
    spec = bench.train_setting("happy-model")[0]
    assert bench.check_engines(["1 process", "default", "keras"], spec)
    with pytest.raises(ValueError, match="'2 ranks': model happy-model has BatchNormal"):
        bench.check_engines(["1 process", "2 ranks"], spec)
    assert cli.main(["bench", "train", "--model", "happy-model", "--engine", "all"]) == 2
    assert "trains in one process only" in capsys.readouterr().err


def test_the_default_selection_leaves_out_several_ranks_for_batch_normalization(monkeypatch):
    measured = []

    def fake_measure(spec, batch, optimizer, images, engines, seed=0):
        measured.append((spec["name"], engines))
        return {name: result(1.0) for name in engines}

    monkeypatch.setattr(train, "measure_engines", fake_measure)
    bench.bench_train(["happy-model", "lenet5"], steps=2)
    assert measured[0] == ("happy-model", tuple(name for name in bench.DEFAULT_ENGINES
                                                if name != "2 ranks"))
    assert measured[1] == ("lenet5", bench.DEFAULT_ENGINES)


def test_the_default_of_a_model_with_batch_normalization_is_one_process(monkeypatch):
    launched = []
    monkeypatch.setattr(distributed, "default_processes", lambda *args, **kwargs: 2)
    monkeypatch.setattr(distributed, "mpi_available", lambda: True)
    monkeypatch.setattr(train, "run_engine",
                        lambda name, job, processes: launched.append(processes) or {})
    bench.measure_engines(bench.train_setting("happy-model")[0], 32, "adam", 64, ["default"])
    bench.measure_engines(bench.train_setting("lenet5")[0], 32, "adam", 64, ["default"])
    assert launched == [1, 2]


def test_bench_train_command_refuses_an_unknown_engine(capsys):
    assert cli.main(["bench", "train", "--model", "lenet5", "--engine", "fork 2"]) == 2
    assert "--engine: engine must be one of" in capsys.readouterr().err


def test_engine_all_and_the_default_selection():
    assert cli._bench_engines(["all"]) == tuple(bench.TRAIN_ENGINES)
    assert cli._bench_engines(["keras", "all"])[0] == "keras"
    assert cli._bench_engines(None) is None   # bench_train's default
    assert set(bench.DEFAULT_ENGINES) >= {"1 process", "default", "2 ranks",
                                          "default + burner", "keras"}


def test_measure_engines_decides_the_default_while_the_burner_runs(monkeypatch):
    """Each engine gets its job and count; the default is decided inside the burner's block."""
    burning, decisions, launched = [False], [], []

    @contextlib.contextmanager
    def fake_busy(seconds=600):
        burning[0] = True
        yield 1234
        burning[0] = False

    def fake_default(batch_size=32, micro_batch=None, window=0.3):
        decisions.append((batch_size, micro_batch, burning[0]))
        return 1 if burning[0] else 2

    def fake_run_engine(name, job, processes):
        launched.append((name, job, processes, burning[0]))
        return result(0.1, processes)

    monkeypatch.setattr(train, "one_core_busy", fake_busy)
    monkeypatch.setattr(distributed, "default_processes", fake_default)
    monkeypatch.setattr(distributed, "mpi_available", lambda: True)
    monkeypatch.setattr(train, "run_engine", fake_run_engine)
    spec = bench.train_setting("lenet5")[0]
    measured = bench.measure_engines(spec, 32, "adam", 320, bench.DEFAULT_ENGINES)
    assert list(measured) == list(bench.DEFAULT_ENGINES)
    assert decisions == [(32, 16, False), (32, 16, True)]   # LeNet-5 at 32: halves of 16
    by_name = {name: (job, processes, busy) for name, job, processes, busy in launched}
    assert by_name["default"][1:] == (2, False)
    assert by_name["default + burner"][1:] == (1, True)
    assert by_name["2 ranks"][1:] == (2, False)
    assert by_name["1 process, micro-batch 16"][0]["micro_batch"] == 16
    assert by_name["1 process"][0]["micro_batch"] is None
    # The default engines train convnet train's fixed shards, not one slice per rank.
    assert by_name["default"][0]["micro_batch"] == 16
    assert by_name["default + burner"][0]["micro_batch"] == 16
    assert by_name["2 ranks"][0]["micro_batch"] is None
    assert by_name["keras"][0]["kind"] == "keras" and by_name["1 process"][0]["kind"] == "numpy"
    assert {job["images"] for job, _, _ in by_name.values()} == {320}


class _Chosen(Exception):
    """Stops a training as soon as its layout is chosen."""


@pytest.mark.parametrize("model", ["lenet5", "mlp", "mnist-cnn", "cifar-cnn", "happy-model"])
@pytest.mark.parametrize("batch", [16, 40, 64, 128])
@pytest.mark.parametrize("idle", [1, 2])
def test_the_default_engine_runs_what_convnet_train_runs(monkeypatch, tmp_path, model, batch,
                                                         idle):
    """The benchmark's default against the layout ``convnet.train`` hands its backend."""
    import convnet.api
    from convnet.training.config import TrainConfig
    from convnet.training.numpy_backend import NumpyBackend
    chosen = {}

    def stop_at_prepare(self, layout, read_checkpoint=True):
        chosen.update(processes=layout.processes, threads=layout.threads,
                      micro_batch=layout.micro_batch, slices=layout.slices)
        raise _Chosen

    monkeypatch.setattr(NumpyBackend, "prepare", stop_at_prepare)
    monkeypatch.setattr(distributed, "idle_processors", lambda window=0.3: idle)
    monkeypatch.setattr(distributed, "available_processors", lambda: 2)
    monkeypatch.setattr(distributed, "mpi_available", lambda: True)
    with pytest.raises(_Chosen):
        convnet.api.train(TrainConfig(model=model, batch_size=batch, out=str(tmp_path / "run")))
    spec = bench.train_setting(model)[0]
    # Whole batches are one slice in one process: DataParallel's micro_batch None there.
    assert chosen["slices"] is None or (chosen["slices"], chosen["processes"]) == (1, 1)
    assert train.default_run(spec, batch) == (chosen["processes"], chosen["threads"],
                                              chosen["micro_batch"])


def test_the_default_engine_is_one_process_without_mpi(monkeypatch):
    monkeypatch.setattr(distributed, "default_processes", lambda *args, **kwargs: 2)
    monkeypatch.setattr(distributed, "mpi_available", lambda: False)
    assert train.default_run(bench.train_setting("lenet5")[0], 32) == (1, 1, 16)


TINY_SPEC = {"name": "tiny", "optimizer": "sgd", "layers": [
    {"layer": "Input", "shape": [8, 8, 1]},
    {"layer": "Conv2D", "filters": 2, "kernel": 3, "activation": "relu"},
    {"layer": "Flatten"},
    {"layer": "Dense", "units": 3, "activation": "softmax"}]}


def test_numpy_worker_process_times_its_steps_without_tensorflow():
    job = {"kind": "numpy", "spec": TINY_SPEC, "batch": 16, "optimizer": "sgd", "images": 64,
           "micro_batch": 8}
    done = subprocess.run([sys.executable, "-m", "convnet.apps.bench.worker", json.dumps(job)],
                          capture_output=True, text=True, check=True, timeout=120)
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["seconds"] > 0 and outcome["processes"] == 1
    assert len(outcome["rss"]) == 1 and outcome["rss"][0] > 10e6
    assert outcome["tensorflow_imported"] is False


def test_run_engine_reports_a_failing_worker():
    job = {"kind": "numpy", "spec": {"name": "broken", "layers": []}, "batch": 16,
           "optimizer": "sgd", "images": 64}
    with pytest.raises(RuntimeError, match="the 1 process benchmark worker failed"):
        bench.run_engine("1 process", job, 1)


def test_quick_run_of_one_process_two_ranks_and_keras(monkeypatch, capsys):
    """The command's table holds the library's medians, from the workers' own figures."""
    returned = []
    bench_train = bench.bench_train

    def keep(*args, **kwargs):
        returned.extend(bench_train(*args, **kwargs))
        return returned

    monkeypatch.setattr(bench, "bench_train", keep)
    engines = ["1 process", "2 ranks", "keras"]
    argv = ["bench", "train", "--quick", "--steps", "4", "--model", "lenet5", "--runs", "1"]
    assert cli.main(argv + [arg for name in engines for arg in ("--engine", name)]) == 0
    printed = capsys.readouterr().out
    [model] = returned
    [run] = model["runs"]
    assert list(run) == engines
    assert [run[name]["processes"] for name in engines] == [1, 2, 1]
    assert len(run["2 ranks"]["rss"]) == 2   # every rank's peak
    assert run["1 process"]["tensorflow_imported"] is False
    assert run["2 ranks"]["tensorflow_imported"] is False
    assert model["timed"] == "128 MNIST images (4 steps), scaled to 50,000"
    assert bench.format_table(bench.TRAIN_HEADERS, model["rows"]) in printed
    assert "load average" in printed
    rows = {row[3]: row for row in model["rows"]}
    assert list(rows) == engines
    for name in engines:
        epoch = run[name]["seconds"] * 50000 / 128
        assert float(rows[name][5]) == pytest.approx(epoch, rel=0.01, abs=0.01)
        assert rows[name][4] == str(run[name]["processes"])
        assert float(rows[name][9]) == pytest.approx(max(run[name]["rss"]) / 1e6, abs=0.5)
        cpu = run[name]["cpu_seconds"] * 50000 / 128
        assert float(rows[name][10]) == pytest.approx(cpu, rel=0.01, abs=0.01)
    for name in ("1 process", "2 ranks"):
        ratio = run[name]["seconds"] / run["keras"]["seconds"]
        assert float(rows[name][6]) == pytest.approx(ratio, abs=0.005)
    assert rows["keras"][6] == "" and np.isfinite(float(rows["keras"][5]))
