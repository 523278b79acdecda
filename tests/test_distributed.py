"""Data parallelism over MPI: the same weights for 1, 2 and 3 ranks, failures, the default count."""
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mpi_available import needs_mpi

from convnet.errors import BadOptionError, UserError
from convnet.nn.optim import Adam
from convnet.nn.sequential import Sequential
from convnet.nn.zoo import load_spec
from convnet.parallel import distributed, launch
from convnet.parallel.distributed import DataParallel, DistributedJobError

sys.path.insert(0, str(Path(__file__).parent))
import distributed_run

RUN = Path(__file__).with_name("distributed_run.py")




def _run(model, steps, out, processes=None, extra=()):
    """Run distributed_run.py alone (``processes`` None) or as MPI ranks; return its arrays."""
    argv = [model, steps, out, *extra]
    if processes is None:
        subprocess.run([sys.executable, str(RUN), *map(str, argv)], check=True, timeout=60)
    else:
        assert distributed.launch(argv, processes, output=io.BytesIO(),
                                  program=(RUN,)) == 0
    with np.load(out, allow_pickle=False) as arrays:
        return dict(arrays)


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """The one-process runs, by model: the reference the ranks must match."""
    folder = tmp_path_factory.mktemp("alone")
    return {model: _run(model, 4, folder / f"{model}.npz") for model in ("lenet5", "dropout", "mlp")}


# ---------------------------------------------------------------- one process
def _plain_steps(model, batches):
    """Reference: ``loss_and_grads`` on each whole batch, then Adam."""
    optimizer = Adam(model.parameters())
    losses = []
    for X, Y in batches:
        loss, grads = model.loss_and_grads(X, Y)
        optimizer.step(grads)
        losses.append(loss)
    return losses


def test_one_process_micro_batches_sum_to_the_whole_batch_gradient():
    X, Y = distributed_run.made_up_data(96)
    batches = list(distributed_run.batches(3, X, Y))
    reference = Sequential(load_spec("lenet5"), seed=0, dtype=np.float64)
    expected = _plain_steps(reference, batches)
    model = Sequential(load_spec("lenet5"), seed=0, dtype=np.float64)
    trainer = DataParallel(model, Adam(model.parameters()), micro_batch=7)
    assert trainer.size == 1 and trainer.rule == "micro-batch 7"
    assert trainer.micro_batches(20) == [(0, 7), (7, 14), (14, 20)]
    losses = [trainer.step(X, Y) for X, Y in batches]
    np.testing.assert_allclose(losses, expected, rtol=1e-12)
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_one_process_without_micro_batches_is_plain_training_bit_for_bit():
    X, Y = distributed_run.made_up_data(96)
    batches = list(distributed_run.batches(3, X, Y))
    reference = Sequential(load_spec("lenet5"), seed=0)
    expected = _plain_steps(reference, batches)
    model = Sequential(load_spec("lenet5"), seed=0)
    trainer = DataParallel(model, Adam(model.parameters()))
    assert trainer.rule == "processes 1"
    assert [trainer.step(X, Y) for X, Y in batches] == expected
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        assert np.array_equal(ours, theirs)


def test_dropout_masks_come_from_seed_step_and_micro_batch():
    X, Y = distributed_run.made_up_data(32)
    results = []
    for seed in (3, 3, 4):
        model, optimizer = distributed_run.build("dropout")
        trainer = DataParallel(model, optimizer, micro_batch=8, seed=seed)
        results.append(trainer.step(X, Y))
    assert results[0] == results[1] != results[2]


class _FakeCommunicator:
    """Just enough of a communicator of ``size`` ranks for the checks made before any exchange."""

    def __init__(self, size):
        self.size = size

    def Get_rank(self):
        return 0

    def Get_size(self):
        return self.size


def test_batch_normalization_refuses_several_processes_and_trains_whole_batches():
    model = Sequential(load_spec("happy-model"), seed=0)
    with pytest.raises(BadOptionError, match="BatchNormalization trains on one process only.*"
                                             "2 processes; use processes 1"):
        DataParallel(model, Adam(model.parameters()), comm=_FakeCommunicator(2), micro_batch=8)
    trainer = DataParallel(model, Adam(model.parameters()), micro_batch=8)
    assert trainer.micro_batches(32) == [(0, 32)] and trainer.rule == "whole batches"


@pytest.mark.parametrize("micro_batch", [0, -1, 2.5])
def test_bad_micro_batch(micro_batch):
    model = Sequential(load_spec("lenet5"), seed=0)
    with pytest.raises((ValueError, TypeError), match="micro_batch"):
        DataParallel(model, Adam(model.parameters()), micro_batch=micro_batch)


def test_resume_under_another_rule_is_refused():
    distributed.check_same_rule(None, "processes 2")
    distributed.check_same_rule("micro-batch 16", "micro-batch 16")
    with pytest.raises(BadOptionError, match="trained with 'processes 2' and would resume "
                                             "with 'processes 1'"):
        distributed.check_same_rule("processes 2", "processes 1")


def test_in_mpi_job_reads_the_process_manager_variables(monkeypatch):
    for name in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.in_mpi_job()
    monkeypatch.setenv("PMI_RANK", "1")
    assert distributed.in_mpi_job()


# ---------------------------------------------------------------- MPI ranks
@needs_mpi
@pytest.mark.parametrize("model", ["lenet5", "dropout", "mlp"])
@pytest.mark.parametrize("processes, exchange", [(1, "shared memory"), (2, "shared memory"),
                                                   (3, "shared memory"), (2, "messages"),
                                                   (3, "messages")])
def test_ranks_give_bit_identical_weights(alone, tmp_path, model, processes, exchange):
    extra = ["--messages"] if exchange == "messages" else []
    ranks = _run(model, 4, tmp_path / "ranks.npz", processes=processes, extra=extra)
    assert int(ranks["size"]) == processes and bool(ranks["agree"])
    assert bool(ranks["shares_memory"]) == (processes > 1 and exchange == "shared memory")
    expected = alone[model]
    params = [key for key in expected if key.startswith("param")]
    state = [key for key in expected if key.startswith("state_")]
    assert params and "state_m0" in state and sorted(ranks) == sorted(expected)
    for key in params + state + ["losses"]:
        assert ranks[key].tobytes() == expected[key].tobytes(), key
    np.testing.assert_allclose(ranks["evaluation"], expected["evaluation"], rtol=1e-12)


@needs_mpi
def test_launch_runs_the_command_line_as_every_rank():
    output = io.BytesIO()
    assert distributed.launch(["--help"], 2, output=output) == 0
    assert output.getvalue().count(b"usage: convnet") == 2
    output = io.BytesIO()
    assert distributed.launch(["train", "--epochs", "-1"], 2, output=output) == 2


def _running(marker):
    """Process ids whose command line holds ``marker``."""
    found = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True,
                           check=True).stdout
    return [line for line in found.splitlines() if marker in line]


@needs_mpi
def test_a_killed_rank_ends_the_job_with_one_line_and_no_orphans(tmp_path):
    out = tmp_path / "never-written.npz"
    output = io.BytesIO()
    with pytest.raises(DistributedJobError, match=r"^a rank \(pid \d+\) stopped: Killed "
                                                  r"\(signal 9\); every rank of the job was "
                                                  r"stopped$") as caught:
        distributed.launch(["lenet5", 50, out, "--kill-rank", 1, "--kill-step", 2], 3,
                           output=output, program=(RUN,))
    assert isinstance(caught.value, UserError) and "\n" not in str(caught.value)
    assert b"BAD TERMINATION" not in output.getvalue()
    assert not out.exists()
    deadline = time.monotonic() + 5
    while _running(str(out)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(str(out)) == []


@needs_mpi
@pytest.mark.parametrize("extra", [[], ["--messages"]])
def test_a_rank_that_fails_stops_every_rank_before_the_update(tmp_path, extra):
    # Run without mpi4py's runner (no MPI_Abort on an exception): the ranks must
    # learn of the failure inside the exchange itself, or they would wait for ever.
    out = tmp_path / "never-written.npz"
    command = [distributed.mpiexec_path(), "-n", "3", sys.executable, RUN, "lenet5", "5", out,
               "--bad-label-rank", "2", "--kill-step", "1", *extra]
    job = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert job.returncode != 0
    assert job.stderr.count("DistributedJobError: rank 2 of 3 failed to compute micro-batch 2 "
                            "of step 2; no rank updated") == 2
    assert job.stderr.count("ValueError: Y must hold labels 0-9") == 1
    assert not out.exists()
    assert _running(str(out)) == []


BANNER = (b"\n" + b"=" * 83 + b"\n=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\n"
          b"=   PID 32657 RUNNING AT vm\n=   EXIT CODE: 9\n=   CLEANING UP REMAINING PROCESSES\n"
          b"=   YOU CAN IGNORE THE BELOW CLEANUP MESSAGES\n" + b"=" * 83 + b"\n"
          b"YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)\n"
          b"This typically refers to a problem with your application.\n")
RANKS_SAID = b"epoch 1\r 50%\r100%\n=====\nsection\n==\n"


@pytest.mark.parametrize("tail", [b"", BANNER])
@pytest.mark.parametrize("width", [1, 2, 7, 64, 10_000])
def test_the_ranks_output_passes_and_the_banner_is_kept_back(tail, width):
    text = RANKS_SAID + tail
    out = io.BytesIO()
    banner = launch._forward((text[i:i + width] for i in range(0, len(text), width)), out)
    assert out.getvalue() == RANKS_SAID + (b"\n" if tail else b"")
    assert banner == tail[1:]
    if tail:
        assert launch._describe_failure(banner, 9) == (
            "a rank (pid 32657) stopped: Killed (signal 9); every rank of the job was stopped")


def test_launch_without_mpiexec_names_the_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(BadOptionError, match="pip install mpi4py mpich"):
        distributed.launch_command(["train"], 2)


# ---------------------------------------------------------------- the default count
@pytest.mark.parametrize("idle, available, limit, expected", [
    (1.98, 2, 2, 2), (1.8, 2, 2, 2), (1.7, 2, 2, 1), (1.0, 2, 2, 1), (0.1, 2, 2, 1),
    (3.9, 4, 2, 2), (3.9, 4, 32, 4), (2.6, 4, 32, 2), (0.0, 1, 32, 1)])
def test_one_process_per_processor_three_quarters_idle(idle, available, limit, expected):
    assert distributed.processes_for(idle, available, limit) == expected


def test_idle_processors_sees_a_busy_child():
    available = len(os.sched_getaffinity(0))
    if available < 2:
        pytest.skip("needs two processors")
    burn = "import time\nend = time.time() + 4\nwhile time.time() < end: pass\n"
    burners = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(available - 1)]
    try:
        time.sleep(0.3)   # let them start burning
        idle = distributed.idle_processors(window=0.5)
        chosen = distributed.default_processes(batch_size=64, window=0.5)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert idle < 1.5
    assert chosen == 1


@pytest.mark.parametrize("dense_only, batch, micro_batch, shard", [
    (True, 128, None, 64),     # the MLP at batch 128: two halves of 64
    (True, 64, None, 64),      # at batch 64 whole batches: one shard, so one process
    (False, 128, None, 32),    # a convolution: shards of 32
    (True, 128, 8, 8),         # micro-batches asked for: ranks share them
])
def test_the_default_layout_gives_free_processors_to_ranks_never_to_threads(
        monkeypatch, dense_only, batch, micro_batch, shard):
    asked = []

    def default_processes(batch_size, micro_batch, window):
        asked.append((batch_size, micro_batch))
        return 2

    monkeypatch.setattr(distributed, "default_processes", default_processes)
    assert distributed.default_layout(dense_only, batch, micro_batch) == (2, 1)
    assert asked == [(batch, shard)]


@pytest.mark.parametrize("layout", [(1, 1), (2, 1), (1, 2), (3, 4)])
def test_a_rule_gives_back_its_layout(layout):
    rule = distributed.rule_of(*layout[:1], threads=layout[1])
    assert distributed.layout_of_rule(rule) == layout
    assert distributed.layout_of_rule(distributed.rule_of(2, micro_batch=16)) is None
    assert distributed.layout_of_rule(distributed.rule_of(1, whole_batches=True)) is None
    assert distributed.layout_of_rule(None) is None


@needs_mpi
def test_every_shared_row_starts_on_the_boundary():
    from mpi4py import MPI

    from convnet.nn.memory import ALIGNMENT
    from convnet.parallel.shared_memory import SharedRows
    rows = SharedRows(MPI.COMM_SELF, 3, 61706, np.float32, tail=2)
    try:
        assert rows.values.shape == (3, 61706) and rows.tails.shape == (3, 2)
        for row in rows.values:
            assert row.flags.c_contiguous and row.ctypes.data % ALIGNMENT == 0
        # The rows and the tails do not overlap.
        for index, row in enumerate(rows.values):
            row[...] = index
        rows.tails[:] = -1.0
        for index, row in enumerate(rows.values):
            assert (row == index).all()
    finally:
        rows.free()
