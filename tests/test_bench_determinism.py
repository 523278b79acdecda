"""The benchmark of the load-independent default, run with made-up timings."""
import contextlib

import pytest

from convnet.apps.bench import determinism
from convnet.parallel import distributed


def fake_result(seconds, processes, cpu=None):
    return {"seconds": seconds, "cpu_seconds": seconds if cpu is None else cpu,
            "processes": processes}


def test_each_engine_trains_its_cut_on_its_count(monkeypatch):
    launched, burning = [], [False]

    @contextlib.contextmanager
    def fake_busy(seconds=600):
        burning[0] = True
        yield 1234
        burning[0] = False

    def fake_run_engine(name, job, processes):
        launched.append((name, job["micro_batch"], processes, burning[0]))
        return fake_result(1.0, processes)

    monkeypatch.setattr(determinism, "one_core_busy", fake_busy)
    monkeypatch.setattr(determinism, "run_engine", fake_run_engine)
    monkeypatch.setattr(distributed, "default_processes",
                        lambda batch_size=32, micro_batch=None, window=0.3: 1 if burning[0] else 2)
    monkeypatch.setattr(distributed, "mpi_available", lambda: True)
    spec, batch, optimizer = determinism.train_setting("lenet5")
    determinism.measure(spec, batch, optimizer, 64, busy=False)
    determinism.measure(spec, batch, optimizer, 64, busy=True)
    assert launched[:5] == [("1 process", None, 1, False), ("2 ranks", None, 2, False),
                            ("default", 16, 2, False), ("shards, 1 process", 16, 1, False),
                            ("shards, 2 ranks", 16, 2, False)]
    assert launched[7] == ("default", 16, 1, True)


def test_the_verdicts_compare_with_the_fastest_earlier_layout(monkeypatch):
    timings = {"1 process": (4.0, 1), "2 ranks": (5.0, 2), "default": (4.8, 1),
               "shards, 1 process": (4.8, 1), "shards, 2 ranks": (5.0, 2)}
    monkeypatch.setattr(determinism, "machine_info", lambda: "a machine")
    monkeypatch.setattr(determinism, "measure", lambda *args, **kwargs: {
        name: fake_result(seconds, processes) for name, (seconds, processes) in timings.items()})
    lines = []
    verdicts = determinism.bench_determinism(("lenet5",), steps=2, runs=2, log=lines.append)
    assert verdicts == {("lenet5", "as it is"): pytest.approx(1.2),
                        ("lenet5", "one core busy"): pytest.approx(1.2)}
    said = "\n".join(lines)
    assert ("lenet5, machine as it is: the deterministic default takes 1.20 times the fastest "
            "earlier layout's epoch (over the 1.05 budget); its shards against the earlier cut "
            "of the same layout: 1 process 1.20 (CPU 1.20); 2 ranks 1.00 (CPU 1.00)") in said
    rows = [line.split("|")[1:-1] for line in said.splitlines() if line.startswith("| lenet5")]
    assert [cell.strip() for cell in rows[2]] == ["lenet5", "as it is", "default", "1, 1",
                                                  "3750.00", "3750.00", "1.20"]


def test_the_default_is_the_one_bench_train_measures(monkeypatch):
    from convnet.apps.bench import train
    monkeypatch.setattr(distributed, "mpi_available", lambda: True)
    for idle in (1, 2):
        monkeypatch.setattr(distributed, "default_processes",
                            lambda batch_size=32, micro_batch=None, window=0.3, n=idle: n)
        for model in ("lenet5", "mnist-cnn", "mlp"):
            spec, batch, _ = determinism.train_setting(model)
            processes, _, shard = train.default_run(spec, batch)
            assert determinism.default_choice(spec, batch) == (processes, shard)


def test_a_model_trained_on_whole_batches_is_refused_before_any_run(monkeypatch, capsys):
    monkeypatch.setattr(determinism, "measure", lambda *args, **kwargs: pytest.fail("ran"))
    with pytest.raises(ValueError, match="happy-model has BatchNormalization"):
        determinism.bench_determinism(("lenet5", "happy-model"), steps=2, runs=1,
                                      log=lambda line: None)
    with pytest.raises(SystemExit) as stopped:
        determinism.main(["--model", "happy-model"])
    assert stopped.value.code == 2
    assert "error: model happy-model has BatchNormalization" in capsys.readouterr().err
