"""Shards computed by threads in one process: the weights of one thread, to the bit."""
import sys
from pathlib import Path

import numpy as np
import pytest

from convnet.nn.memory import views_like
from convnet.nn.optim import Adam
from convnet.nn.sequential import Sequential
from convnet.nn.zoo import load_spec
from convnet.parallel import distributed
from convnet.parallel import layout as spread
from convnet.training.steps import LocalSteps, default_micro_batch

sys.path.insert(0, str(Path(__file__).parent))
import distributed_run


def _train(name, shard_threads, steps=3, **cut):
    """(losses, parameters) after ``steps`` steps of model ``name`` on made-up images."""
    X, Y = distributed_run.made_up_data(160)
    model, optimizer = distributed_run.build(name)
    trainer = LocalSteps(model, optimizer, seed=5, shard_threads=shard_threads, **cut)
    losses = [trainer.step(X, Y) for X, Y in distributed_run.batches(steps, X, Y)]
    return losses, [param.copy() for param in model.parameters()]


@pytest.mark.parametrize("name", ["lenet5", "dropout"])
@pytest.mark.parametrize("cut", [{"micro_batch": 8}, {"micro_batch": 16}, {"slices": 3}])
@pytest.mark.parametrize("shard_threads", [2, 3])
def test_threads_give_the_weights_of_one_thread(name, cut, shard_threads):
    losses, weights = _train(name, 1, **cut)
    threaded_losses, threaded_weights = _train(name, shard_threads, **cut)
    assert threaded_losses == losses
    for threaded, alone in zip(threaded_weights, weights):
        assert np.array_equal(threaded, alone)
    # The threads did compute something: another cut gives other weights.
    _, other = _train(name, shard_threads, micro_batch=5)
    assert not all(np.array_equal(a, b) for a, b in zip(other, weights))


class _Plain:
    """Only what LocalSteps needs of a model: no ``place_gradients``, no ``replica``."""

    def __init__(self, model):
        self._model = model

    def parameters(self):
        return self._model.parameters()

    def loss_and_grads(self, X, Y):
        return self._model.loss_and_grads(X, Y)


def _apart(model):
    """The model with every parameter moved to an array of its own (not one buffer)."""
    for layer in model.layers:
        for key, value in layer.params.items():
            layer.params[key] = value.copy()
    return model


def _step_by_hand(model, optimizer, X, Y, shard):
    """The step's definition: shard by shard, loss and gradients weighted and added in order."""
    loss, total = 0.0, None
    for start in range(0, len(X), shard):
        stop = min(start + shard, len(X))
        weight = (stop - start) / len(X)
        part, grads = model.loss_and_grads(X[start:stop], Y[start:stop])
        loss += weight * part
        weighted = np.concatenate([grad.ravel() for grad in grads]) * np.float32(weight)
        total = weighted if total is None else total + weighted
    optimizer.step(views_like(total, model.parameters()))
    return loss


@pytest.mark.parametrize("kind, shard_threads", [
    ("one buffer", 1), ("one buffer", 2), ("one buffer", 3),
    ("apart", 1), ("apart", 2), ("plain", 1)])
def test_micro_batches_add_up_as_by_hand(kind, shard_threads):
    """Five shards a step: waves of one, two and three threads, the earlier ones folded."""
    X, Y = distributed_run.made_up_data(76)
    models = []
    for _ in range(2):
        model = Sequential(load_spec("lenet5"), seed=0)
        model = _apart(model) if kind == "apart" else model
        models.append((model, Adam(model.parameters())))
    (model, optimizer), (reference, reference_optimizer) = models
    trainer = LocalSteps(_Plain(model) if kind == "plain" else model, optimizer,
                         micro_batch=8, shard_threads=shard_threads)
    for batch in (slice(0, 40), slice(40, 76)):   # 8 + 8 + 8 + 8 + 8, then 8 x 4 + 4
        loss = trainer.step(X[batch], Y[batch])
        assert loss == _step_by_hand(reference, reference_optimizer, X[batch], Y[batch], 8)
    for param, expected in zip(model.parameters(), reference.parameters()):
        assert param.tobytes() == expected.tobytes()
    assert optimizer.iterations == 2


def test_a_replica_shares_the_weights_and_keeps_its_own_gradients():
    model = Sequential(load_spec("lenet5"), seed=0, dtype=np.float64)
    twin = model.replica()
    X, Y = distributed_run.made_up_data(6)
    for mine, theirs in zip(model.parameters(), twin.parameters()):
        assert mine is theirs
    loss, grads = model.loss_and_grads(X.astype(np.float64), Y)
    twin_loss, twin_grads = twin.loss_and_grads(X.astype(np.float64), Y)
    assert twin_loss == loss
    for mine, theirs in zip(grads, twin_grads):
        assert mine is not theirs and np.array_equal(mine, theirs)
    model.parameters()[0][...] += 1.0
    assert np.shares_memory(twin.flat_parameters(), model.parameters()[0])
    assert twin.loss_and_grads(X.astype(np.float64), Y)[0] != loss


def test_a_shard_that_fails_in_a_thread_fails_the_step_and_changes_nothing():
    X, Y = distributed_run.made_up_data(32)
    Y = Y.copy()
    Y[20] = 10   # out of range, in the second shard of 16
    model, optimizer = distributed_run.build("lenet5")
    before = [param.copy() for param in model.parameters()]
    trainer = LocalSteps(model, optimizer, micro_batch=16, shard_threads=2)
    with pytest.raises(ValueError, match="labels"):
        trainer.step(X, Y)
    assert optimizer.iterations == 0
    for param, old in zip(model.parameters(), before):
        assert np.array_equal(param, old)


def test_whole_batches_take_one_thread():
    model = Sequential(load_spec("happy-model"), seed=0)
    trainer = LocalSteps(model, Adam(model.parameters()), shard_threads=2)
    assert trainer.shard_threads == 1 and trainer.micro_batches(32) == [(0, 32)]


@pytest.mark.parametrize("shard_threads", [0, -2, 1.5])
def test_bad_shard_threads(shard_threads):
    model, optimizer = distributed_run.build("lenet5")
    with pytest.raises((ValueError, TypeError), match="shard_threads"):
        LocalSteps(model, optimizer, shard_threads=shard_threads)


@pytest.mark.parametrize("model, batch, processes, mpi, idle, expected", [
    ("mnist-cnn", 64, 1, True, 2, (1, 32, 2)),     # one process asked for: threads
    ("mnist-cnn", 64, None, True, 2, (2, 32, 1)),  # the default: ranks
    ("mnist-cnn", 64, None, False, 2, (1, 32, 2)), # no MPI: threads instead of ranks
    ("mnist-cnn", 64, 1, True, 1, (1, 32, 1)),     # one idle processor
    ("mnist-cnn", 64, 2, True, 2, (2, 32, 1)),
    ("cifar-cnn", 32, 1, True, 2, (1, 16, 2)),     # 304 MFLOP a shard
    ("lenet5", 32, 1, True, 2, (1, 16, 1)),        # 36 MFLOP a shard: threads would slow it
    ("lenet5", 32, None, False, 2, (1, 16, 1)),
    ("lenet5", 32, None, True, 2, (2, 16, 1)),
    ("mlp", 128, None, True, 2, (2, 64, 1)),       # dense layers only: halves of 64, ranks
    ("mlp", 128, 1, True, 2, (1, 64, 2)),          # 257 MFLOP a half: threads
    ("mlp", 64, None, True, 2, (1, 64, 1)),        # halves of 32 would not pay: whole batches
    ("happy-model", 32, None, True, 2, (1, None, 1)),
])
def test_one_process_gives_its_idle_processors_to_threads(monkeypatch, model, batch, processes,
                                                           mpi, idle, expected):
    # One process per idle processor, at most one per shard (the rule has tests of its own).
    monkeypatch.setattr(distributed, "default_processes",
                        lambda batch_size=32, micro_batch=None, window=0.3:
                        min(idle, -(-batch_size // (micro_batch
                                                    or default_micro_batch(batch_size)))))
    monkeypatch.setattr(distributed, "mpi_available", lambda: mpi)
    layout = spread.choose(load_spec(model), batch, processes)
    assert (layout.processes, layout.micro_batch, layout.shard_threads) == expected
