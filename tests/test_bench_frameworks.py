"""Tests of the NumPy engine beside Keras, PyTorch and JAX: FLOPs, weight transfer, the table.

Nothing here is timed: the seconds in these tests are made up.
"""
import numpy as np
import pytest
from mpi_available import needs_mpi

from convnet.apps.bench import epoch_worker, frameworks
from convnet.apps.bench.flops import gemm_gflops
from convnet.apps.bench.train import run_engine
from convnet.nn import flops
from convnet.nn.sequential import Sequential, normalise_spec
from convnet.nn.zoo import load_spec

TINY = {"name": "tiny", "optimizer": "sgd", "layers": [
    {"layer": "Input", "shape": [6, 6, 1]},
    {"layer": "Conv2D", "name": "conv1", "filters": 2, "kernel": 3, "activation": "relu"},
    {"layer": "MaxPool2D", "name": "pool1", "pool": 2},
    {"layer": "Conv2D", "name": "conv2", "filters": 4, "kernel": 3, "stride": 2,
     "padding": "same", "activation": "relu"},
    {"layer": "Flatten", "name": "flatten"},
    {"layer": "Dense", "name": "dense1", "units": 3, "activation": "softmax"},
]}


def test_flops_of_a_tiny_spec_match_a_hand_count():
    # conv1: 3x3x1 windows into 2 maps of 4x4 (valid): 2 * 9 * 1 * 2 * 16 = 576 forward,
    # as many for its kernel's gradient, no input gradient (the first layer).
    # pool1 -> 2x2x2; conv2, 'same' at stride 2 -> ceil(2 / 2) = 1x1x4:
    # 2 * 9 * 2 * 4 * 1 = 144, three times. dense1: 4 -> 3, 2 * 4 * 3 = 24, three times.
    counts = flops.layer_flops(TINY)
    assert [(layer.name, layer.forward, layer.kernel_gradient, layer.input_gradient)
            for layer in counts] == [("conv1", 576, 576, 0), ("conv2", 144, 144, 144),
                                     ("dense1", 24, 24, 24)]
    assert flops.training_flops(TINY) == 576 * 2 + 144 * 3 + 24 * 3
    assert flops.training_flops(TINY, images=10) == 10 * 1656


def test_flops_of_lenet5_and_the_mlp():
    lenet5 = 2 * 25 * 6 * 28 * 28 * 2 + 2 * 150 * 16 * 100 * 3 + 2 * (400 * 120 + 120 * 84
                                                                   + 84 * 10) * 3
    assert flops.training_flops(load_spec("lenet5")) == lenet5
    mlp = 2 * 784 * 512 * 2 + 2 * (512 * 512 + 512 * 10) * 3
    assert flops.training_flops(load_spec("mlp"), 50000) == 50000 * mlp


def test_gemm_rate_is_a_positive_number():
    assert gemm_gflops(size=64, threads=1, repeats=1) > 0


def result(seconds, accuracy=0.9, load=1.0, processes=1, threads=1, images=100, total=1000):
    return {"seconds": seconds, "accuracy": accuracy, "load": load, "processes": processes,
            "threads": threads, "images": images, "total": total, "source": "MNIST"}


def test_framework_rows_are_medians_rates_and_round_by_round_loads():
    rounds = [
        {"convnet": result(0.4, load=1.5, processes=2), "pytorch": result(0.6, 0.91, 2.0,
                                                                          threads=2),
         "jax": result(0.2, load=2.5)},
        {"convnet": result(0.2, load=0.5, processes=2), "pytorch": result(0.6, 0.92, 1.0,
                                                                          threads=2),
         "jax": {"error": "the jax benchmark worker failed", "load": 3.0}},
        {"convnet": result(0.3, load=0.7, processes=2), "pytorch": result(0.3, 0.93, 0.7,
                                                                          threads=2),
         "jax": result(0.4, load=0.7)},
    ]
    rows = frameworks.framework_rows(rounds, flops_per_epoch=60e9,
                                     gemm_rates={"all": 200.0, "one": 100.0})
    assert all(len(row) == len(frameworks.FRAMEWORK_HEADERS) for row in rows)
    convnet, pytorch, jax = rows
    # Seconds scaled from 100 timed images to the 1,000 of the epoch: median 3 s.
    assert convnet == ["convnet", "2 processes, 1 thread", "3.00", "1.00", "20.0", "10 %",
                       "0.9000", "1.5, 0.5, 0.7"]
    # The ratio is the median of the rounds' ratios (1.5, 3, 1), not of the medians.
    assert pytorch[:4] == ["pytorch", "2 threads", "6.00", "1.50"]
    assert pytorch[6] == "0.9100, 0.9200, 0.9300"
    # A failed round counts in no median (ratios 0.5 and 1.33); one core is compared
    # with one thread's rate.
    assert jax == ["jax", "1 thread", "3.00", "0.92", "20.0", "20 %", "0.9000",
                   "2.5, 3.0, 0.7"]
    mixed = frameworks.framework_rows([{"convnet": result(1.0, processes=2)},
                                       {"convnet": result(1.0)}], 1e9, {"all": 1.0, "one": 1.0})
    assert mixed[0][1] == "2 processes, 1 thread; 1 thread"
    failed = frameworks.framework_rows([{"convnet": {"error": "x", "load": 1.0}}], 1e9,
                                       {"all": 1.0, "one": 1.0})
    assert failed == [["convnet", "", "failed", "", "", "", "", "1.0"]]
    untrained = dict(result(1.0, processes=2), accuracy=None)
    bound = frameworks.framework_rows([{"convnet": result(2.0, processes=2),
                                        "convnet without exchange": untrained}], 1e9,
                                      {"all": 1.0, "one": 1.0})
    assert bound[1][:4] == ["convnet without exchange", "2 processes, 1 thread", "10.0",
                            "0.50"] and bound[1][6] == "-"


def test_the_heading_names_the_batch_the_data_and_the_flops():
    heading = frameworks.model_heading({"name": "lenet5", "batch": 32, "optimizer": "adam",
                                        "images": 50000, "source": "MNIST",
                                        "flops": 50000 * 2263920})
    assert heading == ("lenet5: batch 32, adam, an epoch of 50,000 images (MNIST); 2.26 MFLOP "
                       "per image forward and backward, 113.2 GFLOP per epoch")


def test_an_engine_whose_framework_is_missing_is_skipped_with_a_line():
    ready, skipped = frameworks.split_installed(
        ["convnet", "pytorch", "jax 1 thread", "keras"],
        installed=lambda module: module not in ("torch", "jax"))
    assert ready == ["convnet", "keras"]
    assert len(skipped) == 2
    assert skipped[0].startswith("pytorch: skipped, PyTorch is not installed in ")
    assert skipped[0].endswith("(`make bench-frameworks` installs it)")
    assert skipped[1].startswith("jax 1 thread: skipped, JAX is not installed in ")


def test_the_benchmark_says_what_it_skips_and_refuses_when_nothing_runs(monkeypatch):
    lines = []
    monkeypatch.setattr(frameworks.importlib.util, "find_spec", lambda module: None)
    with pytest.raises(frameworks.BadOptionError, match="none of the engines named can run"):
        frameworks.bench_frameworks(["lenet5"], ["pytorch"], log=lines.append)
    assert lines == [frameworks.skip_message("pytorch")]


@pytest.mark.parametrize("argv, message", [
    (["--runs", "0"], "--runs must be a positive integer, received 0"),
    (["--steps", "-1"], "--steps must be a positive integer, received -1"),
    (["--engine", "torch"], "received 'torch'"),
    (["--model", "no-such-model"], "no-such-model"),
    (["--engine", "jax", "--one-core"], "give one of them"),
])
def test_the_module_refuses_bad_options_in_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as stopped:
        frameworks.main(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]


def _model(name):
    """The zoo model ``name`` with seed 0; batch normalisation given non-trivial statistics."""
    model = Sequential(load_spec(name), seed=0)
    for layer in model.layers:
        for key, value in getattr(layer, "state", {}).items():
            value[...] = np.linspace(0.5, 1.5, value.size) if key == "moving_variance" else \
                np.linspace(-0.2, 0.2, value.size)
    return model


ZOO = ["lenet5", "lenet5-classic", "mlp", "mnist-cnn", "cifar-cnn", "happy-model", "signs-cnn"]


@pytest.mark.parametrize("name", ZOO)
def test_pytorch_twin_gives_the_numpy_models_outputs(name):
    pytest.importorskip("torch")
    from convnet.apps.bench import torch_twin
    model = _model(name)
    X = np.random.default_rng(1).random((8, *model.input_shape), dtype=np.float32)
    twin = torch_twin.TorchTrainer(model.spec, model.get_weights(), "adam")
    np.testing.assert_allclose(twin.logits(X), model.forward(X), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ZOO)
def test_jax_twin_gives_the_numpy_models_outputs(name):
    pytest.importorskip("jax")
    from convnet.apps.bench import jax_twin
    model = _model(name)
    X = np.random.default_rng(1).random((8, *model.input_shape), dtype=np.float32)
    twin = jax_twin.JaxTrainer(model.spec, model.get_weights(), "adam")
    np.testing.assert_allclose(twin.logits(X), model.forward(X), rtol=1e-4, atol=1e-5)


def _job(engine, optimizer="sgd", steps=3):
    return {"engine": engine, "spec": normalise_spec(TINY | {"optimizer": optimizer}),
            "batch": 16, "optimizer": optimizer, "steps": steps, "seed": 0, "threads": 1}


def test_the_numpy_engine_trains_an_epoch_without_tensorflow():
    outcome = epoch_worker.run_epoch(_job("convnet"))
    assert outcome["images"] == 48 and outcome["total"] == 1000
    assert outcome["source"].startswith("synthetic 6x6x1")
    assert 0 <= outcome["accuracy"] <= 1 and outcome["seconds"] > 0
    assert outcome["processes"] == 1


@pytest.mark.parametrize("engine, module", [("pytorch", "torch"), ("jax", "jax")])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_every_engine_learns_what_the_numpy_engine_learns(engine, module, optimizer):
    """The same weights, batches and update rule: the same predictions after the steps."""
    pytest.importorskip(module)
    numpy_run = epoch_worker.run_epoch(_job("convnet", optimizer, steps=20))
    twin_run = epoch_worker.run_epoch(_job(engine, optimizer, steps=20))
    assert abs(twin_run["accuracy"] - numpy_run["accuracy"]) <= 0.02


@needs_mpi
def test_steps_without_exchange_time_the_ranks_and_train_no_model():
    job = dict(_job("convnet"), micro_batch=8, exchange=False)
    outcome = run_engine("convnet without exchange", job, 2, module=frameworks.WORKER)
    assert outcome["processes"] == 2 and outcome["accuracy"] is None
    assert outcome["seconds"] > 0 and outcome["images"] == 48
    # One process has nothing to exchange: it trains as usual.
    alone = epoch_worker.run_epoch(dict(job))
    assert alone["processes"] == 1 and 0 <= alone["accuracy"] <= 1


def test_the_worker_refuses_an_unknown_engine():
    with pytest.raises(ValueError, match="engine must be one of convnet, keras"):
        epoch_worker.run_epoch(_job("mxnet"))
