"""The curriculum's requirements on every file of ``0x07-cnn/``.

Each ``N-*.py`` file must start with exactly ``#!/usr/bin/env python3``, be
executable, end with a newline and be pycodestyle-clean. Task files (not the
``N-main.py`` examples) must also document every module, class and function and
import only what their task allows; they are imported exactly as the
curriculum's checkers do, ``__import__('0-conv_forward')`` from inside the folder,
in a fresh interpreter each. The folder must also survive ``cp -r``: a copy of it,
given a (small) MNIST.npz, runs every example.
"""
import ast
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TASK_DIR = Path(__file__).resolve().parent.parent / "0x07-cnn"
SHEBANG = b"#!/usr/bin/env python3"
REQUIRED = (
    "0-conv_forward.py", "1-pool_forward.py", "2-conv_backward.py", "3-pool_backward.py",
    "4-lenet5.py", "5-lenet5.py",
)
# The one package (and its submodules) each task may import.
ALLOWED_IMPORT = {
    0: "numpy", 1: "numpy", 2: "numpy", 3: "numpy",
    4: "tensorflow.compat.v1",
    5: "tensorflow.keras",
}
ALL_FILES = sorted(set(REQUIRED) | {path.name for path in TASK_DIR.glob("[0-9]-*.py")})
TASK_FILES = [name for name in ALL_FILES if not name.endswith("-main.py")]


def task_number(name):
    return int(name.split("-", 1)[0])


def existing(name):
    path = TASK_DIR / name
    if not path.exists():
        pytest.fail(f"{path} does not exist")
    return path


# ---------------------------------------------------------------- checkers
def missing_docstrings(source):
    """Names of the module, classes and functions (nested too) that lack a docstring."""
    tree = ast.parse(source)
    missing = [] if ast.get_docstring(tree) else ["<module>"]

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not ast.get_docstring(child):
                    missing.append(f"{name} (line {child.lineno})")
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return missing


def forbidden_imports(source, allowed):
    """Import statements of ``source`` that bring in anything outside package ``allowed``."""
    def inside(module):
        return module == allowed or module.startswith(allowed + ".")

    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            bad += [f"line {node.lineno}: import {alias.name}" for alias in node.names
                    if not inside(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            for alias in node.names:
                if node.level or not (inside(module) or inside(f"{module}.{alias.name}")):
                    bad.append(f"line {node.lineno}: from {'.' * node.level}{module} "
                               f"import {alias.name}")
    return bad


IMPORT_PROBE = r"""
import inspect, json, os, sys
sys.path.insert(0, os.getcwd())
name = sys.argv[1]
module = __import__(name)
missing = [] if (module.__doc__ or "").strip() else ["<module>"]
seen = set()

def walk(owner, prefix):
    for attr, value in vars(owner).items():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif isinstance(value, property):
            value = value.fget
        if not (inspect.isfunction(value) or inspect.isclass(value)):
            continue
        if value.__module__ != module.__name__ or id(value) in seen:
            continue
        seen.add(id(value))
        if not (value.__doc__ or "").strip():
            missing.append(prefix + attr)
        if inspect.isclass(value):
            walk(value, prefix + attr + ".")

walk(module, "")
print(json.dumps(missing))
"""


# ---------------------------------------------------------------- the checkers can fail
def test_missing_docstrings_finds_every_kind_of_definition():
    source = (
        '"""Module."""\n'
        "def documented():\n    \"\"\"Yes.\"\"\"\n    def inner():\n        pass\n"
        "class Bare:\n    def method(self):\n        \"\"\"Yes.\"\"\"\n"
        "    def other(self):\n        pass\n"
        "async def coroutine():\n    pass\n"
    )
    assert missing_docstrings(source) == [
        "documented.inner (line 4)", "Bare (line 6)", "Bare.other (line 9)",
        "coroutine (line 11)",
    ]
    assert missing_docstrings("x = 1\n") == ["<module>"]


@pytest.mark.parametrize("allowed, source, expected", [
    ("numpy", "import numpy as np\nfrom numpy.lib import stride_tricks\n", []),
    ("numpy", "import numpy as np\nimport os\n", ["line 2: import os"]),
    ("numpy", "def f():\n    from scipy import signal\n", ["line 2: from scipy import signal"]),
    ("numpy", "from . import ops\n", ["line 1: from . import ops"]),
    ("tensorflow.compat.v1", "import tensorflow.compat.v1 as tf\n", []),
    ("tensorflow.compat.v1", "from tensorflow.compat import v1 as tf\n", []),
    ("tensorflow.compat.v1", "import tensorflow as tf\n", ["line 1: import tensorflow"]),
    ("tensorflow.compat.v1", "import tensorflow.compat.v1 as tf\nimport numpy as np\n",
     ["line 2: import numpy"]),
    ("tensorflow.keras", "from tensorflow import keras as K\n", []),
    ("tensorflow.keras", "import tensorflow.keras as K\n", []),
    ("tensorflow.keras", "from tensorflow import nn\n", ["line 1: from tensorflow import nn"]),
    ("tensorflow.keras", "import keras as K\n", ["line 1: import keras"]),
])
def test_forbidden_imports(allowed, source, expected):
    assert forbidden_imports(source, allowed) == expected


# ---------------------------------------------------------------- every file
@pytest.mark.parametrize("name", REQUIRED)
def test_required_task_file_exists(name):
    assert (TASK_DIR / name).is_file(), f"{TASK_DIR / name} is missing"


@pytest.mark.parametrize("name", ALL_FILES)
def test_shebang_executable_and_final_newline(name):
    path = existing(name)
    content = path.read_bytes()
    assert content.split(b"\n", 1)[0] == SHEBANG, f"{name}: first line must be {SHEBANG!r}"
    assert os.access(path, os.X_OK) and path.stat().st_mode & stat.S_IXUSR, \
        f"{name} (-> {path.resolve()}) is not executable"
    assert content.endswith(b"\n"), f"{name} does not end with a newline"


@pytest.mark.parametrize("name", ALL_FILES)
def test_pycodestyle_clean(name):
    path = existing(name)
    result = subprocess.run([sys.executable, "-m", "pycodestyle", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"pycodestyle {name}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("name", TASK_FILES)
def test_every_definition_has_a_docstring(name):
    missing = missing_docstrings(existing(name).read_text(encoding="utf-8"))
    assert not missing, f"{name}: no docstring on {', '.join(missing)}"


@pytest.mark.parametrize("name", [name for name in TASK_FILES if task_number(name) in ALLOWED_IMPORT])
def test_imports_only_what_the_task_allows(name):
    allowed = ALLOWED_IMPORT[task_number(name)]
    bad = forbidden_imports(existing(name).read_text(encoding="utf-8"), allowed)
    assert not bad, f"{name} may import only {allowed}, found: {'; '.join(bad)}"


def import_and_list_undocumented(folder, module_name):
    """Import ``module_name`` from ``folder`` in a fresh interpreter; return what lacks a docstring."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-c", IMPORT_PROBE, module_name], cwd=folder,
                            env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"__import__({module_name!r}) failed:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_probe_finds_undocumented_objects(tmp_path):
    (tmp_path / "9-sample.py").write_text(
        '"""Module."""\nimport json\n\n\ndef documented():\n    """Yes."""\n\n\n'
        "def bare():\n    pass\n\n\nclass Thing:\n    \"\"\"Yes.\"\"\"\n\n"
        "    @staticmethod\n    def helper():\n        pass\n\n"
        "    @property\n    def size(self):\n        return 1\n"
    )
    assert sorted(import_and_list_undocumented(tmp_path, "9-sample")) == [
        "Thing.helper", "Thing.size", "bare",
    ]


@pytest.mark.parametrize("name", TASK_FILES)
def test_imports_like_the_curriculum_and_is_documented(name):
    existing(name)
    missing = import_and_list_undocumented(TASK_DIR, name[:-3])
    assert not missing, f"{name}: no docstring on {', '.join(missing)}"


# ---------------------------------------------------------------- real files
# Tasks 4 and 5 are checked against the zoo's lenet5 spec in test_lenet5_tf.py.
@pytest.mark.parametrize("name", TASK_FILES)
def test_task_files_are_real_files(name):
    path = existing(name)
    assert path.is_file() and not path.is_symlink(), f"{name} must be a real file, not a link"


def test_task_6_review_and_its_figure_are_in_the_folder():
    review = existing("6-alexnet.md")
    assert review.is_file() and not review.is_symlink()
    text = review.read_text(encoding="utf-8")
    assert "](alexnet.png)" in text.split("## Introduction")[0]   # the picture at the top
    for heading in ("Introduction", "Procedures", "Results", "Conclusion", "Personal Notes"):
        assert f"## {heading}" in text
    figure = existing("alexnet.png")
    assert figure.is_file() and not figure.is_symlink()
    assert figure.read_bytes().startswith(b"\x89PNG")
    # The review has one copy, in the folder: docs/ links to it rather than holding another.
    assert not (TASK_DIR.parent / "docs" / "alexnet.md").exists()


def small_mnist(path, train=40, valid=20):
    """Write an MNIST.npz with the curriculum's keys, dtypes and ranges but few images."""
    rng = np.random.default_rng(0)

    def images(count):
        return rng.random((count, 28, 28), dtype=np.float32) * 0.999

    def labels(count):
        return np.arange(count) % 10

    np.savez(path, X_train=images(train), Y_train=labels(train), X_valid=images(valid),
             Y_valid=labels(valid), X_test=images(valid), Y_test=labels(valid))


# What each example prints on the small file: (arguments, patterns in its output).
MAIN_RUNS = {
    "0-main.py": ([], [r"^\(40, 26, 26, 2\)$"]),
    "1-main.py": ([], [r"^\(40, 28, 28, 2\)$", r"^\(40, 14, 14, 2\)$"]),
    "2-main.py": ([], [r"^\(array\(\[\[\[\[", r"^\s+\[\[\[-?\d"]),
    "3-main.py": ([], [r"^\(10, 28, 28, 2\)$", r"^\[\[\[\["]),
    "4-main.py": (["1"], [r"^After 0 epochs: cost \d", (r"^After 1 epochs: cost [\d.]+, "
                          r"accuracy [\d.]+, validation cost [\d.]+, validation accuracy")]),
    "5-main.py": (["1"], [r"accuracy: [\d.]+ - loss: [\d.]+ - val_accuracy: [\d.]+",
                          r"^\[[\d.e\- ]+"]),
}


@pytest.fixture(scope="module")
def copied_folder(tmp_path_factory):
    """The task folder copied the way ``cp -r`` does (links stay links), with a small MNIST."""
    import shutil
    target = tmp_path_factory.mktemp("student") / "0x07-cnn"
    shutil.copytree(TASK_DIR, target, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "MNIST.npz", "[0-9]-main.png"))
    small_mnist(target / "MNIST.npz")
    return target


def test_copied_folder_holds_no_links(copied_folder):
    links = [path.name for path in copied_folder.iterdir() if path.is_symlink()]
    assert links == [], f"these files would not survive a copy of the folder: {links}"


@pytest.mark.parametrize("main", sorted(MAIN_RUNS))
def test_every_main_runs_in_a_copy_of_the_folder(copied_folder, main):
    arguments, patterns = MAIN_RUNS[main]
    env = {key: value for key, value in os.environ.items()
           if key not in ("DISPLAY", "PYTHONPATH", "MPLBACKEND")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONDONTWRITEBYTECODE="1", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, main, *arguments], cwd=copied_folder, env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"{main} failed in the copy:\n{result.stderr[-3000:]}"
    for pattern in patterns:
        assert re.search(pattern, result.stdout, re.MULTILINE), (
            f"{main}: no line matching {pattern!r} in:\n{result.stdout[-2000:]}")
    if main in ("0-main.py", "1-main.py", "4-main.py", "5-main.py"):
        assert (copied_folder / main.replace(".py", ".png")).stat().st_size > 0
