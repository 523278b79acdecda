"""Same command, same weights: whatever the load, the processes or the BLAS threads.

Each run here is ``python -m convnet train`` in a process of its own whose
view of the machine is forced (how many processors it may use, how idle
they are), so that no test depends on the processor, its core count or its
load: a quiet machine's default and a busy one's are both made to happen.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpi_available import needs_mpi

from convnet.nn.optim import Adam
from convnet.nn.sequential import Sequential
from convnet.nn.threads import blas_threads
from convnet.nn.zoo import load_spec
from convnet.training import steps as training_steps

# ``python -m convnet`` on a machine of ``available`` processors, ``idle`` of them idle.
FORCED_MACHINE = """\
import runpy, sys
from convnet.parallel import distributed
distributed.available_processors = lambda: {available}
distributed.idle_processors = lambda window=0.3: {idle}
sys.argv[0] = "convnet"
runpy.run_module("convnet", run_name="__main__")
"""
QUIET = {"available": 2, "idle": 1.97}
BUSY = {"available": 2, "idle": 0.9}   # another job holds a processor
# A convolution, then Dropout: its masks must not depend on which process draws them.
DROPOUT_SPEC = {"name": "dropout-cnn", "layers": [
    {"layer": "Input", "shape": [28, 28, 1]},
    {"layer": "Conv2D", "name": "conv1", "filters": 4, "kernel": 3, "activation": "relu"},
    {"layer": "MaxPool2D", "name": "pool1", "pool": 2},
    {"layer": "Dropout", "name": "dropout1", "rate": 0.3},
    {"layer": "Flatten", "name": "flatten"},
    {"layer": "Dense", "name": "dense1", "units": 10, "activation": "softmax"}]}


@pytest.fixture(scope="module")
def data(mnist_slice, tmp_path_factory):
    """330 training images: batches of 32 end with one of 10, of 64 with one of 10."""
    return mnist_slice(tmp_path_factory.mktemp("data") / "MNIST.npz", 330, 60, 60)


def train(data, out, *options, machine=QUIET, epochs=2):
    """``python -m convnet train`` on a forced machine; return its banner ("training ...")."""
    command = [sys.executable, "-c", FORCED_MACHINE.format(**machine), "train",
               "--data", str(data), "--epochs", str(epochs), "--out", str(out), *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return next(line for line in done.stdout.splitlines() if line.startswith("training "))


def arrays(folder):
    with np.load(Path(folder) / "checkpoint.npz", allow_pickle=False) as saved:
        return {key: saved[key] for key in saved.files if key != "history_epoch_seconds"}


def assert_same_checkpoints(first, *others):
    """Every member but the epoch times bit for bit equal (signed zeros and NaN patterns too)."""
    expected = arrays(first)
    for other in others:
        found = arrays(other)
        assert sorted(found) == sorted(expected)
        for key, value in expected.items():
            assert found[key].dtype == value.dtype, key
            assert found[key].tobytes() == value.tobytes(), key


@needs_mpi
def test_the_default_gives_the_same_weights_on_a_quiet_and_a_busy_machine(data, tmp_path):
    quiet = train(data, tmp_path / "quiet", machine=QUIET)
    busy = train(data, tmp_path / "busy", machine=BUSY)
    assert quiet.endswith("seed 0, 2 processes") and busy.endswith("seed 0, 1 process")
    train(data, tmp_path / "one", "--processes", "1")
    train(data, tmp_path / "two", "--processes", "2")
    assert_same_checkpoints(tmp_path / "quiet", tmp_path / "busy", tmp_path / "one",
                            tmp_path / "two")
    assert str(arrays(tmp_path / "quiet")["rule"]) == "micro-batch 16"


@needs_mpi
def test_a_model_with_dropout_at_batch_64_gives_the_same_weights_too(data, tmp_path):
    spec = tmp_path / "dropout-cnn.json"
    spec.write_text(json.dumps(DROPOUT_SPEC))
    options = ("--model", str(spec), "--batch-size", "64")
    assert train(data, tmp_path / "quiet", *options, machine=QUIET).endswith(", 2 processes")
    assert train(data, tmp_path / "busy", *options, machine=BUSY).endswith(", 1 process")
    assert_same_checkpoints(tmp_path / "quiet", tmp_path / "busy")
    assert str(arrays(tmp_path / "quiet")["rule"]) == "micro-batch 32"


def test_one_process_gives_the_same_weights_on_two_threads_as_on_one(data, tmp_path):
    """mnist-cnn (with Dropout) in one process: its shards on two threads, or on one."""
    options = ("--model", "mnist-cnn", "--batch-size", "64", "--processes", "1", "--epochs", "1")
    threaded = train(data, tmp_path / "quiet", *options, machine=QUIET)
    alone = train(data, tmp_path / "busy", *options, machine=BUSY)
    assert threaded.endswith(", 1 process computing 2 shards at once")
    assert alone.endswith(", 1 process")
    assert_same_checkpoints(tmp_path / "quiet", tmp_path / "busy")
    assert str(arrays(tmp_path / "quiet")["rule"]) == "micro-batch 32"


def test_a_model_of_dense_layers_takes_no_blas_thread_from_idle_processors(data, tmp_path):
    options = ("--model", "mlp", "--batch-size", "64", "--epochs", "1")
    assert train(data, tmp_path / "quiet", *options, machine=QUIET).endswith(", 1 process")
    assert train(data, tmp_path / "busy", *options, machine=BUSY).endswith(", 1 process")
    assert_same_checkpoints(tmp_path / "quiet", tmp_path / "busy")


@needs_mpi
def test_an_older_run_of_eight_slices_resumes_on_the_processors_there_are(data, tmp_path):
    """A checkpoint of 8 ranks resumes on at most 2, each taking whole slices: the same weights."""
    train(data, tmp_path / "first", epochs=1, machine=BUSY)
    with np.load(tmp_path / "first" / "checkpoint.npz", allow_pickle=False) as saved:
        older = dict(saved)
    older["rule"] = np.asarray("processes 8")
    for name, machine, chosen in (("quiet", QUIET, "2 processes"), ("busy", BUSY, "1 process")):
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "checkpoint.npz", **older)
        assert train(data, tmp_path / name, "--resume", machine=machine).endswith(chosen)
    assert_same_checkpoints(tmp_path / "quiet", tmp_path / "busy")
    assert str(arrays(tmp_path / "quiet")["rule"]) == "processes 8"


def test_the_default_shard_depends_on_the_batch_and_the_model_only():
    default = training_steps.default_micro_batch
    assert [default(size) for size in (1, 20, 31, 32, 33, 48, 63, 64, 65, 128, 500)] == \
        [1, 20, 31, 16, 17, 24, 32, 32, 32, 32, 32]
    assert [default(size, shares_well=False) for size in (20, 32, 64, 127, 128, 129, 256)] == \
        [20, 32, 64, 127, 64, 65, 128]


def test_one_process_computes_the_slices_of_an_older_rule_as_its_ranks_did():
    """Eight slices in one process add up as eight ranks' would: the rule, not the count."""
    rng = np.random.default_rng(0)
    X, Y = rng.random((32, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 32)
    model = Sequential(load_spec("lenet5"), seed=0)
    steps = training_steps.LocalSteps(model, Adam(model.parameters()), slices=8)
    assert steps.rule == "processes 8"
    assert steps.micro_batches(32) == [(start, start + 4) for start in range(0, 32, 4)]
    assert steps.micro_batches(5) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    with blas_threads(1):
        steps.step(X, Y)
    assert np.isfinite(model.flat_parameters()).all()
