"""``convnet train --backend keras --workers N``: Keras on MultiWorkerMirroredStrategy."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from convnet.apps.cli.cli import build_parser, main
from convnet.errors import BadOptionError
from convnet.tf import keras_workers

pytest.importorskip("tensorflow")

TRAIN = ["train", "--backend", "keras", "--limit", "320", "--epochs", "1"]
# Plain SGD for the runs whose weights are compared: unlike Adam or RMSprop, which divide
# the gradient by its own size, its steps show a gradient of the wrong scale (averaged
# over the workers instead of summed, or counted twice).
SGD = ["--optimizer", "sgd", "--lr", "0.1"]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, mnist_slice):
    """A small MNIST.npz: 400 training, 100 validation and 100 test images."""
    return mnist_slice(tmp_path_factory.mktemp("data") / "MNIST.npz", 400, 100, 100)


def convnet(arguments, env=None, **options):
    """Run ``python -m convnet.apps.cli.cli ARGUMENTS`` without TF_CONFIG unless ``env`` sets one."""
    environ = {key: value for key, value in os.environ.items()
               if key not in ("TF_CONFIG", keras_workers.LAUNCHER_ENV,
                              keras_workers.WORKER_WEIGHTS_ENV)}
    return subprocess.Popen([sys.executable, "-m", "convnet", *map(str, arguments)],
                            env=dict(environ, **(env or {})), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, small_data):
    """One 2-worker run on loopback; every worker also writes its weights (the test hook)."""
    folder = tmp_path_factory.mktemp("two-workers")
    out, each = folder / "run", folder / "each"
    each.mkdir()
    process = convnet([*TRAIN, *SGD, "--data", small_data, "--workers", "2", "--out", out],
                      env={keras_workers.WORKER_WEIGHTS_ENV: str(each)})
    stdout, stderr = process.communicate(timeout=240)
    return process.returncode, stdout, stderr, out, each


def lenet5_weights(path):
    from convnet.tf.tf_training import EXCHANGE_NAMES
    with np.load(path, allow_pickle=False) as arrays:
        return [arrays[name] for name in EXCHANGE_NAMES]


@pytest.mark.slow
def test_two_workers_train_and_the_chief_alone_writes_the_run(two_workers):
    status, stdout, stderr, out, _ = two_workers
    assert status == 0, stderr
    assert "Traceback" not in stderr
    lines = stdout.splitlines()
    assert lines[0] == ("training lenet5 (keras) on 320 mnist images, 1 epoch, batch 32, sgd, "
                        "lr 0.1, seed 0, 2 workers")
    assert sum(line.startswith("After ") for line in lines) == 1
    assert lines[1].startswith("After 1 epoch: cost ")
    assert lines[2].startswith("validation accuracy ")
    run = json.loads((out / "run.json").read_text())
    assert (run["workers"], run["backend"], run["train_size"], run["epochs"]) == (
        2, "keras", 320, 1)
    history = json.loads((out / "history.json").read_text())
    assert {key: len(values) for key, values in history.items()} == {
        "loss": 1, "accuracy": 1, "val_loss": 1, "val_accuracy": 1, "epoch_seconds": 1}
    assert np.isclose(history["val_accuracy"][0], run["valid_accuracy"])
    assert len(lenet5_weights(out / "weights.npz")) == 10
    names = {path.name for path in out.iterdir()}
    assert {"history.json", "run.json", "weights.npz"} <= names
    assert names <= {"history.json", "run.json", "weights.npz", "history.png"}


@pytest.mark.slow
def test_the_workers_end_with_bit_identical_weights(two_workers):
    from convnet.nn.sequential import Sequential
    from convnet.nn.zoo import load_spec
    status, _, stderr, out, each = two_workers
    assert status == 0, stderr
    initial = list(Sequential(load_spec("lenet5"), seed=0).get_weights().values())
    with np.load(each / "worker-0.npz") as chief, np.load(each / "worker-1.npz") as other:
        assert sorted(chief.files) == sorted(other.files) == [f"w{n}" for n in range(10)]
        for number, (written, start) in enumerate(zip(lenet5_weights(out / "weights.npz"),
                                                      initial)):
            key = f"w{number}"
            assert np.array_equal(chief[key], other[key]), key
            assert np.array_equal(chief[key], written), key
            assert not np.array_equal(written, start), f"{key} did not train"


@pytest.mark.slow
def test_two_workers_give_the_weights_of_one_worker(two_workers, small_data, tmp_path):
    # A 1-worker cluster runs the same loop on whole batches: the sharding and the sum of the
    # gradients over the workers must give the same steps. Only the order of the float32 sums
    # differs (each worker sums its half of the batch, then the halves are added): about 1e-7
    # relative in each gradient, so about 1e-8 in each of the ten steps of lr 0.1 times a
    # gradient of at most a few tenths. 1e-6 leaves room for that to grow through the steps
    # (6e-8 was measured); a worker training on the wrong slice, or a gradient of the wrong
    # scale, moves weights by a large part of the 0.03 to 0.1 they travel from their start.
    status, _, stderr, out, _ = two_workers
    assert status == 0, stderr
    alone = tmp_path / "alone"
    process = convnet([*TRAIN, *SGD, "--data", small_data, "--out", alone],
                      env={"TF_CONFIG": keras_workers.loopback_configs(1)[0]})
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr
    assert "1 worker" in stdout.splitlines()[0]
    assert json.loads((alone / "run.json").read_text())["workers"] == 1
    for two, one in zip(lenet5_weights(out / "weights.npz"), lenet5_weights(alone / "weights.npz")):
        np.testing.assert_allclose(two, one, rtol=0, atol=1e-6)
    histories = [json.loads((folder / "history.json").read_text()) for folder in (out, alone)]
    assert np.isclose(histories[0]["loss"][0], histories[1]["loss"][0], rtol=1e-5)
    # A rounding difference could at most flip the answer on an example near a tie.
    assert abs(histories[0]["accuracy"][0] - histories[1]["accuracy"][0]) <= 1 / 320


def worker_index(pid):
    """The TF_CONFIG index of the worker process ``pid``, or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            variables = handle.read().split(b"\0")
    except FileNotFoundError:
        return None
    for variable in variables:
        if variable.startswith(b"TF_CONFIG="):
            return json.loads(variable[len("TF_CONFIG="):])["task"]["index"]
    return None


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except FileNotFoundError:
        return []


def running(marker):
    """Process ids whose command line holds ``marker`` (read whole from /proc, as ``ps``
    would cut long lines to the terminal's width)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read()
        except OSError:   # not a process, or it ended meanwhile
            continue
        if marker.encode() in command:
            found.append(int(entry))
    return found


def wait_until_gone(marker, seconds=30):
    deadline = time.monotonic() + seconds
    while running(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running(marker)


@pytest.mark.slow
def test_a_killed_worker_stops_the_run_with_one_line_and_no_process_left(small_data, tmp_path):
    out = tmp_path / "killed-run"
    process = convnet([*TRAIN, "--data", small_data, "--workers", "2", "--out", out])
    # The chief's first line: both workers are up, the chief is about to meet the other.
    assert process.stdout.readline().startswith("training lenet5")
    victims = [child for child in children_of(process.pid) if worker_index(child) == 1]
    assert len(victims) == 1
    os.kill(victims[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert stderr == "convnet: error: Keras worker 1 of 2 stopped: killed by signal SIGKILL\n"
    assert wait_until_gone(str(out)) == []
    assert not (out / "weights.npz").exists()


# ---------------------------------------------------------------- bad options
@pytest.mark.parametrize("options, message", [
    (["--backend", "numpy", "--workers", "2"],
     "--workers is available with --backend keras only, received --backend numpy"),
    (["--backend", "tf1", "--workers", "1"], "--workers is available with --backend keras only"),
    (["--backend", "keras", "--workers", "64"],
     r"--workers 64 is more than this machine can run at once: \d+ processors? available"),
])
def test_bad_worker_options_are_refused_before_anything_runs(options, message, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    out = tmp_path / "run"
    assert main(["train", *options, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("convnet: error: ")
    assert re.search(message, lines[0])
    assert not out.exists()


def test_zero_workers_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--backend", "keras", "--workers", "0"])
    assert exit_info.value.code == 2
    assert "argument --workers: must be a positive integer, received 0" in capsys.readouterr().err


def test_a_model_with_batch_normalization_trains_on_one_worker():
    from convnet.nn.sequential import normalise_spec
    from convnet.nn.zoo import load_spec
    spec = normalise_spec(load_spec("happy-model"))
    keras_workers.check_spec(spec, 1)
    keras_workers.check_spec(normalise_spec(load_spec("lenet5")), 4)
    with pytest.raises(BadOptionError, match="a model with BatchNormalization trains on one "
                                             "worker only .* received workers 2"):
        keras_workers.check_spec(spec, 2)


@pytest.mark.parametrize("config, message", [
    ("{", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG must give cluster.worker .* missing 'task'"),
    ('{"cluster": {"worker": ["a:1"], "chief": ["b:1"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG may list workers only"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}',
     "cluster.worker must be a non-empty list"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
     "task.index must be an integer from 0 to 1, received 2"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}',
     "task.index must be an integer from 0 to 0, received '0'"),
])
def test_a_bad_tf_config_gets_one_line(config, message):
    with pytest.raises(BadOptionError, match=message):
        keras_workers.cluster_task({"TF_CONFIG": config})


def test_workers_must_match_the_tf_config_cluster(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", keras_workers.loopback_configs(2)[1])
    out = tmp_path / "run"
    assert main(["train", "--backend", "keras", "--workers", "3", "--out", str(out)]) == 2
    assert capsys.readouterr().err == ("convnet: error: --workers 3 does not match TF_CONFIG, "
                                       "whose cluster has 2 workers\n")
    assert not out.exists()


def test_only_a_chief_started_by_hand_claims_the_run_folder():
    chief, other = keras_workers.loopback_configs(2)
    launcher = {keras_workers.LAUNCHER_ENV: "1"}
    assert keras_workers.claims_run_folder({})
    assert keras_workers.claims_run_folder({"TF_CONFIG": chief})
    assert not keras_workers.claims_run_folder({"TF_CONFIG": other})
    assert not keras_workers.claims_run_folder({"TF_CONFIG": chief, **launcher})
    assert not keras_workers.claims_run_folder({"TF_CONFIG": other, **launcher})


def test_loopback_configs_give_each_worker_its_index_and_distinct_ports():
    configs = [json.loads(text) for text in keras_workers.loopback_configs(3)]
    hosts = configs[0]["cluster"]["worker"]
    assert len(set(hosts)) == 3 and all(host.startswith("127.0.0.1:") for host in hosts)
    assert [config["task"] for config in configs] == [
        {"type": "worker", "index": index} for index in range(3)]
    assert all(config["cluster"] == configs[0]["cluster"] for config in configs)
    assert [keras_workers.cluster_task({"TF_CONFIG": json.dumps(config)})
            for config in configs] == [(0, 3), (1, 3), (2, 3)]


@pytest.mark.parametrize("options", [
    [],
    ["--model", "mnist-cnn", "--dataset", "fashion-mnist", "--data", "x.npz", "--optimizer",
     "sgd", "--lr", "0.05", "--limit", "100", "--seed", "7", "--epochs", "3",
     "--batch-size", "64"]])
def test_a_worker_runs_the_same_training(options):
    # TensorFlow's log level (--verbose) reaches the workers through their environment.
    from convnet.apps.cli.train import config_of
    from convnet.training.config import TrainConfig
    parser = build_parser()
    args = parser.parse_args(["--verbose", "train", "--backend", "keras", "--workers", "2",
                              "--overwrite", "--out", "runs/x", *options])
    config = config_of(args)
    [text] = keras_workers.worker_command(config)
    again = TrainConfig.from_json(text)
    for key in ("backend", "model", "dataset", "data", "epochs", "batch_size", "optimizer", "lr",
                "seed", "out", "limit", "workers"):
        assert getattr(again, key) == getattr(config, key) == getattr(args, key), key
    assert not again.overwrite   # the launcher claims the folder, the workers do not


# ---------------------------------------------------------------- the launcher alone
# A stand-in worker: worker 1 fails as convnet does when FAIL is set; worker 0 talks, then
# waits for ever unless told to stop.
FAKE_WORKER = """
import json, os, sys, time
from convnet.tf import keras_workers
keras_workers.end_with_launcher(int(os.environ[keras_workers.LAUNCHER_ENV]))
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
if index == 0:
    print("line one", flush=True)
    print("line two", flush=True)
if index == 1 and os.environ.get("FAIL"):
    time.sleep(0.3)
    print("a warning", file=sys.stderr)
    print("convnet: error: the data is bad", file=sys.stderr)
    sys.exit(2)
time.sleep(float(os.environ.get("SLEEP", "60")))
"""


def fake_launch(lines):
    keras_workers.run_workers(["train"], 2, lines.append, timeout=30,
                              program=[sys.executable, "-c", FAKE_WORKER])


def test_a_failing_worker_stops_the_others_and_is_named_in_one_line(monkeypatch):
    monkeypatch.setenv("FAIL", "1")
    started = time.monotonic()
    with pytest.raises(keras_workers.WorkerError,
                       match=r"^Keras worker 1 of 2 stopped: the data is bad$"):
        fake_launch([])
    assert time.monotonic() - started < 20   # worker 0, which waits 60 s, was stopped


def test_the_chief_output_is_relayed_and_the_others_kept_quiet(monkeypatch):
    monkeypatch.setenv("SLEEP", "0.5")
    lines = []
    fake_launch(lines)
    assert lines == ["line one", "line two"]


def test_workers_out_of_time_are_stopped():
    with pytest.raises(keras_workers.WorkerError, match="did not finish within 0.5 s"):
        keras_workers.run_workers(["train"], 2, print, timeout=0.5,
                                  program=[sys.executable, "-c", "import time; time.sleep(60)"])

LAUNCHER = """
import sys
from convnet.tf import keras_workers
keras_workers.run_workers(["train", sys.argv[1]], 2, print, program=[sys.executable, "-c", sys.argv[2]])
"""


def test_workers_end_when_their_launcher_is_killed(tmp_path):
    marker = str(tmp_path / "launcher-killed")
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, marker, FAKE_WORKER],
        stdout=subprocess.PIPE, text=True)
    try:
        assert launcher.stdout.readline() == "line one\n"
        assert len(running(marker)) == 3
    finally:
        launcher.kill()
    launcher.communicate(timeout=30)
    assert wait_until_gone(marker) == []


BINARY_SPEC = {"name": "binary", "layers": [
    {"layer": "Input", "shape": [28, 28, 1]},
    {"layer": "Conv2D", "filters": 2, "kernel": [5, 5], "activation": "relu"},
    {"layer": "Flatten"},
    {"layer": "Dense", "units": 1, "activation": "sigmoid"}]}


@pytest.mark.parametrize("model", ["lenet5", "binary"])
def test_the_workers_measure_loss_and_accuracy_as_keras_does(model, mnist):
    # The workers' own measure (Keras's evaluate does not run under their strategy)
    # against Keras's evaluate, for a softmax and a sigmoid output.
    from convnet.nn.sequential import normalise_spec
    from convnet.nn.zoo import load_spec
    from convnet.tf import keras_cluster, tf_training
    spec = normalise_spec(BINARY_SPEC if model == "binary" else load_spec(model))
    X = mnist[2][:300, ..., np.newaxis]
    labels = mnist[3][:300] % (2 if model == "binary" else 10)
    network = tf_training.build_keras(spec, seed=3)
    expected = tf_training.evaluate_keras(network, spec, X, labels)
    measured = keras_cluster.evaluate(network, spec, X, tf_training.keras_targets(spec, labels),
                                      batch_size=128)
    assert measured == pytest.approx(expected, rel=1e-5)
