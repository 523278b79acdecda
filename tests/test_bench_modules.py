"""The benchmark modules run on their own (``python -m convnet.apps.bench.<name>``) and
the package's modules import no command and no module above them."""
import ast
import io
import sys
from pathlib import Path

import numpy as np
import pytest

from convnet.apps.bench import layers, ops, serve, twin_agreement

PACKAGE = Path(ops.__file__).resolve().parents[2]


def _run_main(monkeypatch, module, argv):
    """Run ``module.main()`` as ``python -m module *argv`` would."""
    monkeypatch.setattr(sys, "argv", [module.__name__, *argv])
    return module.main()


def test_ops_module_prints_the_machine_then_the_table(monkeypatch, capsys):
    seen = []

    def fake_bench_ops(quick, log):
        seen.append(quick)
        log("0-main: load average 1.00")
        return [["conv", "1.00", "", "", "", "", "", "yes"]]

    monkeypatch.setattr(ops, "bench_ops", fake_bench_ops)
    monkeypatch.setattr(ops.timing, "machine_info", lambda: "test machine")
    _run_main(monkeypatch, ops, ["--quick"])
    printed = capsys.readouterr().out.splitlines()
    assert seen == [True]
    assert printed[:2] == ["test machine", "0-main: load average 1.00"]
    assert printed[2].startswith("| workload") and printed[4].startswith("| conv ")


def test_layers_module_prints_the_layer_table(monkeypatch, capsys):
    rates = []
    monkeypatch.setattr(layers, "gemm_gflops", lambda threads=None: rates.append(threads) or 95.6)
    _run_main(monkeypatch, layers, ["--model", "lenet5", "--steps", "2"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].startswith("lenet5: NumPy training step, ")
    assert printed[2].startswith("| layer ") and printed[-2].startswith("| whole step ")
    assert any(line.startswith("| conv1 ") for line in printed)
    # The reference of the GFLOP/s column: one BLAS thread, as the steps were timed.
    assert rates == [1]
    assert printed[-1] == ("the float32 product of two 2048x2048 matrices on one BLAS "
                           "thread: 96 GFLOP/s")


def test_layers_module_profiles_with_profile(monkeypatch, capsys):
    _run_main(monkeypatch, layers, ["--model", "mlp", "--steps", "2", "--profile"])
    assert "function calls" in capsys.readouterr().out


@pytest.mark.parametrize("module, argv, message", [
    (layers, ["--steps", "0"], "--steps must be a positive integer, received 0"),
    (serve, ["--clients", "0"], "--clients must be between 1 and 100, received 0"),
    (serve, ["--seconds", "500"], "--seconds must be in (0, 120], received 500.0"),
    (serve, ["--digits", "51"], "--digits must be between 1 and 50, received 51"),
])
def test_modules_refuse_bad_options_in_one_line(monkeypatch, capsys, module, argv, message):
    with pytest.raises(SystemExit) as stopped:
        _run_main(monkeypatch, module, argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.splitlines()[-1].endswith(message)


def test_serve_module_draws_a_digit_and_finds_a_free_port():
    from PIL import Image
    image = Image.open(io.BytesIO(serve.digit_png()))
    assert image.size == (280, 280) and image.getextrema() == (0, 255)
    assert 0 < serve.free_port() < 65536
    empty = serve.percentiles([])
    assert list(empty) == ["p50", "p95", "p99", "max"] and np.isnan(list(empty.values())).all()
    assert serve.percentiles([1.0, 2.0, 3.0])["p50"] == 2.0


def test_twin_agreement_of_lenet5(mnist):
    pytest.importorskip("tensorflow")
    gap, count, relative = twin_agreement.twin_agreement("lenet5", np.asarray(mnist[2][:64]))
    assert count == 64
    assert gap < 1e-4 and relative < 1e-7


def _imports(path):
    """Every module a file imports, at its top or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("folder", ["apps/bench", "apps/pictures"])
def test_modules_import_neither_the_command_nor_the_gathering_modules(folder):
    """The concept modules stand alone: none reaches the command line, the page, or the
    modules that only gather names (``bench.py``, ``plots.py``), which would make a cycle."""
    forbidden = ("convnet.apps.cli", "convnet.apps.page", "convnet.apps.bench.bench",
                 "convnet.apps.pictures.plots")
    found = {}
    for path in sorted((PACKAGE / folder).glob("*.py")):
        if path.name in ("bench.py", "plots.py"):
            continue
        bad = sorted(name for name in _imports(path) if name.startswith(forbidden))
        if bad:
            found[path.name] = bad
    assert found == {}


def test_the_machine_line_names_tensorflow_without_importing_it():
    """A benchmark's first line reads TensorFlow's version from its metadata: no import,
    so none of the log lines TensorFlow writes while it loads (whatever the CPU)."""
    import os
    import subprocess
    code = ("import sys; from convnet.apps.bench.timing import machine_info; "
            "line = machine_info(); print('tensorflow' in sys.modules, 'TensorFlow 2.' in line)")
    environment = {key: value for key, value in os.environ.items()
                   if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, timeout=120, check=True)
    assert done.stdout.split() == ["False", "True"]
    assert done.stderr == ""
