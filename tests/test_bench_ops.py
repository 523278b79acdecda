"""Tests of the benchmark helpers in convnet/bench.py (not of speed itself)."""
import argparse
import os
import time
from pathlib import Path

import pytest

from convnet import bench


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


def test_bench_cli_dispatches_ops(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "bench_ops", lambda quick: seen.append(quick))
    bench.bench_cli(argparse.Namespace(which="ops", quick=True))
    assert seen == [True]


def test_time_layers_reports_every_layer_inside_real_steps(capsys):
    rows, step_ms = bench.time_layers(steps=3, batch=4)
    names = [row[0] for row in rows]
    assert names[:2] == ["conv1", "conv1/relu"] and names[-3:] == ["softmax", "Adam step", "whole step"]
    assert step_ms > 0
    timed = [float(row[1]) + float(row[2] or 0) for row in rows[:-1]]
    assert all(value >= 0 for value in timed) and 0 < sum(timed) <= step_ms
    assert "| conv2 " in capsys.readouterr().out


def test_training_rows_give_each_run_and_the_medians():
    runs = [(5.0, 4.0, 10.0), (6.0, 3.0, 5.0), (5.5, 4.4, 8.0)]
    rows = bench._train_rows(32, "50000", runs)
    assert [row[0] for row in rows] == ["32 (run 1)", "32 (run 2)", "32 (run 3)", "32 (median of 3)"]
    assert rows[1][2:7] == ["6.0", "3.0", "5.0", "1.20", "0.60"]
    # Medians of the times, and of the ratios measured within each run.
    assert rows[3][2:7] == ["5.5", "4.0", "8.0", "0.69", "0.55"]
    assert [row[8] for row in rows] == ["", "", "", "no (1.10x over)"]


def test_training_rows_judge_the_faster_trainer_unrounded():
    [row] = bench._train_rows(128, "6400 (scaled to 50000)", [(4.0, 2.52, 5.0)])
    assert row[0] == "128" and row[5:] == ["0.80", "0.50", "<= 0.5", "no (1.01x over)"]
    [row] = bench._train_rows(32, "50000", [(2.0, 9.0, 5.0)])
    assert row[7:] == ["<= 0.5", "yes"]


def test_bench_train_rejects_a_bad_number_of_runs():
    with pytest.raises(ValueError, match="runs must be a positive integer, received 0"):
        bench.bench_train(runs=0)


def test_ratio_row_judges_the_task_file_on_the_slower_thread_setting():
    faster = bench._ratio_row("x", 3.0, 0.5, 1.0, 1.0)
    both = bench._ratio_row("x", 3.0, 0.5, 1.0, 1.0, judge="both")
    assert faster[-1] == "yes" and both[-1] == "no (3.00x over)"
    assert bench._ratio_row("x", 0.9, 0.5, 1.0, 1.0, judge="both")[-1] == "yes"


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
