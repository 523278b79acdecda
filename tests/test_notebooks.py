"""The learner's notebooks in docs/notebooks run from top to bottom and say what they should.

Each notebook is executed by nbclient in a fresh IPython kernel of the
interpreter running the tests, started from a kernel spec written for the
test (so that no other Python found on the machine is used), with this
checkout first on its ``PYTHONPATH`` and ``docs/notebooks`` as its working
directory, where a reader opening the notebook would run it. Any cell that
raises fails the test; then the printed figures are read back: the task files
agree with the engine, the gradients agree with finite differences, the
networks learned something. The stored copies are checked too: executed in
order, without errors, small, and free of the temporary folders they wrote to.
"""
import json
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "docs" / "notebooks"
OPERATIONS = NOTEBOOKS / "01-operations.ipynb"
TRAINING = NOTEBOOKS / "02-training.ipynb"
KERNEL = "convnet-checkout"
# A stored notebook carries its pictures; past this it would weigh on every clone.
MAX_STORED_BYTES = 1_000_000
# Seconds a cell may take: the slowest trains cifar-cnn for three short epochs.
CELL_TIMEOUT = 180
# Printed by the notebooks' own cells.
AGREEMENT = re.compile(r"max difference task file vs engine = (\S+)")
GRADIENT_CHECK = re.compile(r"gradient check (\w+) .*: relative error = (\S+)")
LENET_RUN = re.compile(r"LeNet-5 after 1 epoch on (\d+) images: "
                       r"validation accuracy (\d\.\d+), test accuracy (\d\.\d+)")
EVALUATED = re.compile(r"evaluate: test accuracy (\d\.\d+), loss (\S+) on (\d+) images")
COLOUR_RUN = re.compile(r"cifar-cnn after 3 epochs on (\d+) pictures: "
                        r"validation accuracy (\d\.\d+), test accuracy (\d\.\d+)")
CHECKOUT_MARK = "kernel imports convnet from: "


def _require(module):
    """Import ``module``, or skip without it (fail in CI, where ``make test`` installs it)."""
    try:
        return pytest.importorskip(module)
    except pytest.skip.Exception:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is not installed in CI: the dev extra provides it")
        raise


def _kernel_spec(folder, tmpdir):
    """Write a kernel spec of this interpreter under ``folder``; return its kernels folder."""
    kernels = folder / "kernels"
    (kernels / KERNEL).mkdir(parents=True)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "convnet checkout", "language": "python",
            "env": {"PYTHONPATH": path, "TMPDIR": str(tmpdir)}}
    (kernels / KERNEL / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return kernels


def execute(path, tmp_path):
    """Run the notebook at ``path`` in a kernel of this checkout; return the run notebook.

    A last cell, added to the copy that runs, prints where the kernel found
    ``convnet``, so the caller can see it was this checkout.
    """
    nbformat = _require("nbformat")
    nbclient = _require("nbclient")
    _require("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    specs = KernelSpecManager(kernel_dirs=[str(_kernel_spec(tmp_path, tmpdir))])
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(
        f"import convnet\nprint({CHECKOUT_MARK!r} + convnet.__file__)"))
    client = nbclient.NotebookClient(
        notebook, km=KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs),
        timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return notebook


def printed(notebook):
    """Everything the notebook's cells printed to stdout, in order, as one text."""
    return "".join(output.get("text", "") for cell in notebook.cells
                   if cell.cell_type == "code" for output in cell.outputs
                   if output.output_type == "stream" and output.name == "stdout")


def pictures(notebook):
    """How many PNG pictures the notebook's cells displayed."""
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells
               if cell.cell_type == "code" for output in cell.outputs)


def numbers(pattern, text, group=1):
    """The floats of ``group`` of every match of ``pattern`` in ``text``."""
    return [float(match.group(group)) for match in pattern.finditer(text)]


def files_under(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def check_ran_here(text, tmp_path):
    """The kernel used this checkout's package and removed its temporary folder."""
    [where] = re.findall(re.escape(CHECKOUT_MARK) + r"(.+)", text)
    assert Path(where).resolve() == ROOT / "convnet" / "__init__.py"
    assert list((tmp_path / "tmp").glob("convnet-notebook-*")) == []


# ---------------------------------------------------------------- running them
@pytest.mark.slow
def test_the_operations_notebook_runs_and_its_implementations_agree(mnist, tmp_path):
    before = files_under(NOTEBOOKS)
    notebook = execute(OPERATIONS, tmp_path)
    text = printed(notebook)
    agreement = numbers(AGREEMENT, text)
    # conv_forward twice, pool_forward in two modes, conv_backward's three gradients,
    # pool_backward in two modes.
    assert len(agreement) == 9, text
    assert max(agreement) < 1e-6, text
    checks = {match.group(1): float(match.group(2)) for match in GRADIENT_CHECK.finditer(text)}
    assert set(checks) == {"dA_prev", "dW", "db"}, text
    assert max(checks.values()) < 1e-6, text
    assert pictures(notebook) >= 4
    check_ran_here(text, tmp_path)
    assert files_under(NOTEBOOKS) == before


@pytest.mark.slow
def test_the_training_notebook_trains_evaluates_and_draws(mnist, tmp_path):
    before = files_under(NOTEBOOKS)
    notebook = execute(TRAINING, tmp_path)
    text = printed(notebook)
    [lenet] = LENET_RUN.finditer(text)
    images, valid, test = int(lenet.group(1)), float(lenet.group(2)), float(lenet.group(3))
    assert images == 1000
    # Chance is 0.1: a thousand digits seen once take LeNet-5 well past it.
    assert valid > 0.5 and test > 0.5, text
    [evaluated] = EVALUATED.finditer(text)
    assert float(evaluated.group(1)) == test and int(evaluated.group(3)) == 500
    [colour] = COLOUR_RUN.finditer(text)
    assert int(colour.group(1)) == 600
    assert float(colour.group(2)) > 0.5, text
    assert "conv1: kernels of shape (5, 5, 1, 6)" in text
    assert "conv1: kernels of shape (3, 3, 3, 16)" in text
    # The digit, the grey filters, the feature maps, the colour pictures, the colour
    # filters and the colour model's answers.
    assert pictures(notebook) >= 5
    check_ran_here(text, tmp_path)
    assert files_under(NOTEBOOKS) == before


# ---------------------------------------------------------------- the stored copies
@pytest.mark.parametrize("path", [OPERATIONS, TRAINING], ids=lambda path: path.stem)
def test_the_stored_notebook_holds_its_outputs(path):
    nbformat = _require("nbformat")
    assert path.stat().st_size < MAX_STORED_BYTES
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), \
        "the stored notebook was not run from top to bottom in one go"
    outputs = [output for cell in code for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs)
    # The folders a notebook writes to are temporary ones of the machine it ran on: its
    # outputs name none of them.
    text = "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "")
                   for output in outputs)
    assert "convnet-notebook-" not in text
