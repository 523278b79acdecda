"""Only the command layer (``convnet/apps/cli/``) prints, reads arguments and chooses exit codes.

The library modules compute and return: what a command shows comes back as a
value, an exception, or a line sent to a ``log`` callable the caller passes.
"""
import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from convnet import data
from convnet.errors import BadDataError
from convnet.training import trainer

PACKAGE = Path(trainer.__file__).parents[1]
COMMAND_LAYER = PACKAGE / "apps" / "cli"


def _is_main_guard(node):
    """True for ``if __name__ == "__main__":``."""
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__" and len(test.comparators) == 1
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def _own_command_parts(tree):
    """Nodes that belong to a module's own command (``python -m convnet.x``), not its library.

    Such a module's ``if __name__ == "__main__":`` block, and the top-level
    functions that block calls (``main``), are a command of their own.
    """
    guards = [node for node in tree.body if _is_main_guard(node)]
    called = {call.func.id for guard in guards for call in ast.walk(guard)
              if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)}
    functions = [node for node in tree.body
                 if isinstance(node, ast.FunctionDef) and node.name in called]
    return guards + functions


def _forbidden(node):
    """A description of what ``node`` does that only the command layer may do, or None."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [alias.name for alias in node.names]
        module = node.module if isinstance(node, ast.ImportFrom) else None
        if "argparse" in names or module == "argparse":
            return "imports argparse"
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("print", "input", "exit"):
            return f"calls {func.id}()"
        if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                and func.value.id == "sys" and func.attr == "exit"):
            return "calls sys.exit()"
        if (isinstance(func, ast.Attribute) and func.attr == "write"
                and isinstance(func.value, ast.Attribute) and isinstance(func.value.value, ast.Name)
                and func.value.value.id == "sys" and func.value.attr in ("stdout", "stderr")):
            return f"writes to sys.{func.value.attr}"
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "sys" and node.attr == "argv"):
        return "reads sys.argv"
    return None


def find_command_work(source, filename="<module>"):
    """``(line, what)`` for every print, exit or argument parsing outside a module's own command."""
    tree = ast.parse(source, filename)
    excluded = {id(node) for part in _own_command_parts(tree) for node in ast.walk(part)}
    found = []
    for node in ast.walk(tree):
        what = None if id(node) in excluded else _forbidden(node)
        if what is not None:
            found.append((node.lineno, what))
    return sorted(found)


@pytest.mark.parametrize("source, expected", [
    ("def f():\n    print('x')\n", [(2, "calls print()")]),
    ("import sys\ndef f():\n    sys.exit(2)\n", [(3, "calls sys.exit()")]),
    ("import sys\nsys.stderr.write('x')\n", [(2, "writes to sys.stderr")]),
    ("import sys\nname = sys.argv[1]\n", [(2, "reads sys.argv")]),
    ("from argparse import Namespace\n", [(1, "imports argparse")]),
    ("def main():\n    print('x')\n\n\nif __name__ == '__main__':\n    main()\n", []),
    ("def main():\n    print('x')\n", [(2, "calls print()")]),
    ("def f(log=print):\n    log('x')\n", []),
])
def test_the_scan_finds_what_only_a_command_may_do(source, expected):
    assert find_command_work(source) == expected


def test_library_modules_do_not_print_exit_or_parse_arguments():
    modules = sorted(path for path in PACKAGE.rglob("*.py")
                     if COMMAND_LAYER not in path.parents and path.name != "__main__.py")
    assert len(modules) > 10   # the scan really reads the package
    found = {path.name: find_command_work(path.read_text(encoding="utf-8"), str(path))
             for path in modules}
    assert {name: lines for name, lines in found.items() if lines} == {}


def _without_matplotlib(monkeypatch):
    # A None entry makes ``import convnet.apps.pictures.plots`` raise ImportError, as a missing matplotlib does.
    monkeypatch.setitem(sys.modules, "convnet.apps.pictures.plots", None)


def test_a_skipped_history_plot_is_a_note_sent_to_log(monkeypatch, tmp_path, capsys):
    from convnet.apps.cli.train import save_history_plot
    _without_matplotlib(monkeypatch)
    history = {key: [1.0, 0.5] for key in trainer.HISTORY_KEYS}
    notes = []
    assert save_history_plot(history, tmp_path / "h.png", 0, log=notes.append) is None
    assert save_history_plot(history, tmp_path / "h.png", 0) is None
    [note] = notes
    assert note.startswith("history plot skipped: ") and "convnet.apps.pictures.plots" in note
    assert not (tmp_path / "h.png").exists()
    assert capsys.readouterr() == ("", "")


def test_write_run_writes_no_picture_and_the_command_prints_the_note_on_stderr(
        monkeypatch, tmp_path, capsys):
    from convnet.apps.cli.train import RunPrinter
    from convnet.tf import exchange
    from convnet.training.config import TrainConfig
    from convnet.training.events import RunFinished
    _without_matplotlib(monkeypatch)
    history = {key: [1.0] for key in trainer.HISTORY_KEYS}
    history["epoch_seconds"] = [0.5]
    arrays = {"w": np.zeros(2)}
    written = exchange.write_run(tmp_path, history, {"run": 1}, arrays)
    assert [path.name for path in written] == ["history.json", "run.json", "weights.npz"]
    assert capsys.readouterr() == ("", "")
    files = dict(zip(("history", "run", "weights"), map(str, written)))
    printer = RunPrinter(TrainConfig(backend="keras", out=str(tmp_path)))
    printer(RunFinished("keras", history, 0.5, 0.5, 4, 2, files, plot_from=1))
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == "wrote " + ", ".join(files.values())
    assert captured.err.startswith("history plot skipped: ")


@pytest.mark.parametrize("dataset, path, expected", [
    ("mnist", None, str(data.default_mnist_path())),
    ("fashion-mnist", None, str(data.FASHION_MNIST_DIR)),
    ("cifar10", None, "the cached cifar10 data"),
    ("mnist", "/some/where/MNIST.npz", "/some/where/MNIST.npz"),
])
def test_data_source_names_the_place_the_data_comes_from(dataset, path, expected):
    assert trainer.data_source(dataset, path) == expected


def test_check_not_empty_names_the_source_and_the_first_empty_split():
    full, empty = np.zeros((2, 28, 28)), np.zeros((0, 28, 28))
    trainer.check_not_empty("somewhere", [("training", full), ("test", full)])
    with pytest.raises(BadDataError, match="^the validation split of somewhere is empty: "
                                           "it needs at least one image$"):
        trainer.check_not_empty("somewhere", [("training", full), ("validation", empty),
                                              ("test", empty)])
