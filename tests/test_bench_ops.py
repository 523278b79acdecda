"""Tests of the benchmark helpers in convnet/bench.py (not of speed itself)."""
import argparse
import time

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
    assert names[:2] == ["conv1", "relu1"] and names[-3:] == ["softmax", "Adam step", "whole step"]
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
