"""Keras on MultiWorkerMirroredStrategy: two workers over loopback end with the same weights."""
import json
import math

import numpy as np
import pytest

from convnet import keras_workers

pytest.importorskip("tensorflow")


@pytest.mark.slow
def test_two_loopback_workers_agree(tmp_path, mnist):
    from convnet.sequential import Sequential
    from convnet.zoo import load_spec

    out = tmp_path / "weights.npz"
    outputs = keras_workers.run_workers(
        2, ["--images", 320, "--epochs", 1, "--out", out, "--every-worker-writes"], timeout=240)
    reports = [json.loads(text.strip().splitlines()[-1]) for text in outputs]
    assert [report["worker"] for report in reports] == [0, 1]
    assert all(math.isfinite(report["loss"][0]) for report in reports)
    assert reports[0]["loss"] == reports[1]["loss"]
    initial = list(Sequential(load_spec("lenet5"), seed=0).get_weights().values())
    with np.load(tmp_path / "weights-0.npz") as first, \
            np.load(tmp_path / "weights-1.npz") as second:
        assert len(first.files) == len(initial) == 10
        for number, start in enumerate(initial):
            key = f"w{number}"
            assert np.array_equal(first[key], second[key]), key
            assert first[key].shape == start.shape
            assert not np.array_equal(first[key], start), f"{key} did not train"


def test_loopback_configs_give_each_worker_its_index_and_distinct_ports():
    configs = [json.loads(text) for text in keras_workers.loopback_configs(3)]
    hosts = configs[0]["cluster"]["worker"]
    assert len(set(hosts)) == 3 and all(host.startswith("127.0.0.1:") for host in hosts)
    assert [config["task"] for config in configs] == [
        {"type": "worker", "index": index} for index in range(3)]
    assert all(config["cluster"] == configs[0]["cluster"] for config in configs)


def test_a_worker_without_tf_config_gets_one_line(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(keras_workers.WorkerError, match="TF_CONFIG must give cluster.worker"):
        keras_workers.train_worker()


def test_a_failing_worker_is_reported_in_one_line():
    with pytest.raises(keras_workers.WorkerError,
                       match=r"^Keras worker [01] of 2 stopped: .*--images: invalid int value"):
        keras_workers.run_workers(2, ["--images", "many"], timeout=60)


def test_workers_out_of_time_are_stopped():
    with pytest.raises(keras_workers.WorkerError, match="did not finish within 0.5 s"):
        keras_workers.run_workers(2, ["--images", 320], timeout=0.5)
