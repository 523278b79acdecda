"""The documentation leads somewhere: its links resolve, and the files and modules it names exist.

Markdown files read: README.md, docs/**/*.md and 0x07-cnn/*.md. A relative
link must reach an existing file or folder, and its ``#anchor`` a heading of
the target (GitHub's slugs) or, in another kind of file, a line (``#L12``).
In code (inline spans and fenced blocks) a path into the repository
(``convnet/nn/ops.py``, ``0x07-cnn/0-main.py``, ``tests/test_ops.py``,
``docs/guide.md``) must exist, and a dotted name ``convnet.x.y`` must be a
module, or a name defined at the top of one.
"""
import ast
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target); the text may hold brackets of its own.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
LINE_ANCHOR = re.compile(r"^L(\d+)(?:-L(\d+))?$")
# A path written from the repository's root; one that continues another path
# (``~/.cache/convnet/MNIST.npz``, ``/opt/convnet/.venv``) is not one.
REPO_PATH = re.compile(r"(?<![\w./~-])(convnet/(?:\w+/)*\w+(?:\.py|/)|0x07-cnn/[\w.-]*"
                       r"|tests/(?:\w+/)*\w+\.py|docs/(?:[\w-]+/)*[\w-]+\.(?:md|py|png))")
DOTTED_NAME = re.compile(r"(?<![\w./-])convnet(?:\.\w+)+")


def markdown_files(root=ROOT):
    """README.md, docs/**/*.md and 0x07-cnn/*.md under ``root``, as paths."""
    found = [root / "README.md"] if (root / "README.md").is_file() else []
    return found + sorted((root / "docs").rglob("*.md")) + sorted((root / "0x07-cnn").glob("*.md"))


def fenced_and_not(text):
    """Return ``(outside, fenced)``: (line number, line) outside and inside fenced blocks."""
    outside, fenced, fence = [], [], None
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1) == fence:
                fence = None
            else:
                fenced.append((number, line))
        elif opening:
            fence = opening.group(1)
        else:
            outside.append((number, line))
    return outside, fenced


def split_markdown(text):
    """Return ``(prose, code)``: the lines outside fenced blocks, code spans blanked; the code.

    ``prose`` is a list of (line number, text); ``code`` a list of
    (line number, text) of every inline span and fenced line.
    """
    outside, code = fenced_and_not(text)
    prose = []
    for number, line in outside:
        code += [(number, span.group(2)) for span in CODE_SPAN.finditer(line)]
        prose.append((number, CODE_SPAN.sub(lambda span: " " * len(span.group(0)), line)))
    return prose, sorted(code, key=lambda item: item[0])


def github_slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # a link reads as its text
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def heading_anchors(path):
    """Every anchor of a Markdown file's headings, ``-1``, ``-2`` ... added to repeats."""
    outside, _ = fenced_and_not(path.read_text(encoding="utf-8"))
    anchors, seen = set(), {}
    for _, line in outside:
        match = HEADING.match(line)
        if match is None:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def links(path):
    """``(line number, target)`` of every link of a Markdown file, outside code."""
    prose, _ = split_markdown(path.read_text(encoding="utf-8"))
    found = []
    for number, line in prose:
        found += [(number, match.group(1)) for match in INLINE_LINK.finditer(line)]
        reference = REFERENCE_LINK.match(line)
        if reference is not None:
            found.append((number, reference.group(1)))
    return found


def broken_links(path, root=ROOT):
    """A line of text for every relative link of ``path`` that leads nowhere."""
    problems = []
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        address, _, anchor = target.partition("#")
        address = unquote(address)
        if not address:
            destination = path
        elif address.startswith("/"):
            destination = root / address.lstrip("/")
        else:
            destination = path.parent / address
        where = f"{path.relative_to(root)}:{number}: {target}"
        if not destination.exists():
            problems.append(f"{where}: no such file")
        elif anchor and destination.is_file():
            problem = _anchor_problem(destination, unquote(anchor))
            if problem:
                problems.append(f"{where}: {problem}")
    return problems


def _anchor_problem(destination, anchor):
    """Why ``anchor`` names nothing in ``destination`` (a heading or a line), or None."""
    if destination.suffix == ".md":
        if anchor.lower() not in heading_anchors(destination):
            return f"no heading with the anchor #{anchor}"
        return None
    lines = LINE_ANCHOR.match(anchor)
    if lines is None:
        return f"#{anchor} is neither a heading of Markdown nor a line (#L12)"
    count = len(destination.read_text(encoding="utf-8").splitlines())
    if max(int(number) for number in lines.groups() if number) > count:
        return f"the file has {count} lines"
    return None


def _top_level_names(module_path):
    """Names defined at the top of a Python module: functions, classes, variables, imports,
    and those its ``__all__`` lists."""
    tree = ast.parse(module_path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(name.id for name in ast.walk(target) if isinstance(name, ast.Name))
            # What ``__all__`` lists is the module's, even when made on first use.
            if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
                names.update(item.value for item in ast.walk(node.value)
                             if isinstance(item, ast.Constant) and isinstance(item.value, str))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def dotted_name_problem(name, root=ROOT):
    """Why ``convnet.x.y`` names nothing in the package under ``root``, or None."""
    parts = name.split(".")
    folder = root
    for index, part in enumerate(parts):
        package = folder / part
        if (package / "__init__.py").is_file():
            folder = package
            continue
        module = folder / f"{part}.py"
        if module.is_file():
            rest = parts[index + 1:]
        else:
            module, rest = folder / "__init__.py", parts[index:]
        if rest and rest[0] not in _top_level_names(module):
            return f"{rest[0]} is not defined in {module.relative_to(root)}"
        return None
    return None


def stale_paths(path, root=ROOT):
    """A line of text for every repository path or ``convnet.`` name in the code of ``path``
    that does not exist."""
    _, code = split_markdown(path.read_text(encoding="utf-8"))
    problems = []
    for number, text in code:
        where = f"{path.relative_to(root)}:{number}"
        for match in REPO_PATH.finditer(text):
            if not (root / match.group(1)).exists():
                problems.append(f"{where}: {match.group(1)} does not exist")
        for match in DOTTED_NAME.finditer(text):
            problem = dotted_name_problem(match.group(0), root)
            if problem:
                problems.append(f"{where}: {match.group(0)}: {problem}")
    return problems


DOCUMENTS = markdown_files()


def _name(path):
    return str(path.relative_to(ROOT))


def test_the_documents_are_found():
    names = [_name(path) for path in DOCUMENTS]
    assert {"README.md", "docs/guide.md", "0x07-cnn/README.md", "0x07-cnn/6-alexnet.md"} <= \
        set(names)


@pytest.mark.parametrize("path", DOCUMENTS, ids=_name)
def test_every_relative_link_resolves(path):
    assert broken_links(path) == []


@pytest.mark.parametrize("path", DOCUMENTS, ids=_name)
def test_every_path_and_module_named_in_code_exists(path):
    assert stale_paths(path) == []


@pytest.mark.parametrize("heading, slug", [
    ("6. Reading the pictures", "6-reading-the-pictures"),
    ("Speed of the zoo models against Keras", "speed-of-the-zoo-models-against-keras"),
    ("The page: `convnet serve`", "the-page-convnet-serve"),
    ("conv_forward, step by step", "conv_forward-step-by-step"),
    ("A & B", "a--b"),
    ("[Linked](elsewhere.md) title", "linked-title"),
])
def test_github_slug(heading, slug):
    assert github_slug(heading) == slug


def _small_repository(root):
    """Under ``root``: a guide, a task folder's README and a package of one module."""
    (root / "docs").mkdir()
    (root / "0x07-cnn").mkdir()
    (root / "convnet" / "nn").mkdir(parents=True)
    (root / "convnet" / "__init__.py").write_text("from convnet.nn.ops import conv_forward\n")
    (root / "convnet" / "nn" / "__init__.py").write_text("")
    (root / "convnet" / "nn" / "ops.py").write_text("def conv_forward():\n    pass\n")
    (root / "0x07-cnn" / "README.md").write_text("# Tasks\n\n## Task 0\n")
    (root / "docs" / "guide.md").write_text(
        "# Guide\n\n## Step one\n\n## Step one\n\nSee [the tasks](../0x07-cnn/README.md#task-0),\n"
        "[again](#step-one-1), [the engine](../convnet/nn/ops.py#L2) and "
        "[the web](https://example.org/missing.md).\n")


def test_a_broken_link_or_anchor_is_reported(tmp_path):
    _small_repository(tmp_path)
    assert broken_links(tmp_path / "docs" / "guide.md", tmp_path) == []
    page = tmp_path / "docs" / "broken.md"
    page.write_text(
        "# Broken\n\n"
        "[gone](missing.md) and ![picture](alexnet.png)\n"
        "[a heading that is not there](guide.md#step-two)\n"
        "[past the end](../convnet/nn/ops.py#L9)\n"
        "`[in code](missing.md)` is not a link\n"
        "```\n[in a block](missing.md)\n```\n"
        "[fine](guide.md#step-one) [here](#broken)\n"
        "[ref]: ../nowhere/file.py\n")
    assert broken_links(page, tmp_path) == [
        "docs/broken.md:3: missing.md: no such file",
        "docs/broken.md:3: alexnet.png: no such file",
        "docs/broken.md:4: guide.md#step-two: no heading with the anchor #step-two",
        "docs/broken.md:5: ../convnet/nn/ops.py#L9: the file has 2 lines",
        "docs/broken.md:11: ../nowhere/file.py: no such file",
    ]


def test_a_stale_path_or_module_in_code_is_reported(tmp_path):
    _small_repository(tmp_path)
    page = tmp_path / "docs" / "paths.md"
    page.write_text(
        "The engine is `convnet/nn/ops.py` (`convnet.nn.ops.conv_forward`, also\n"
        "`convnet.conv_forward`), the tasks are in `0x07-cnn/README.md`; the data in\n"
        "`~/.cache/convnet/MNIST.npz`. Moved: `convnet/ops.py`, `convnet.ops`,\n"
        "`convnet.nn.ops.pool_forward`, `convnet/web/` and `0x07-cnn/9-main.py`.\n"
        "```\npython docs/figures/draw.py\n```\n")
    assert stale_paths(page, tmp_path) == [
        "docs/paths.md:3: convnet/ops.py does not exist",
        "docs/paths.md:3: convnet.ops: ops is not defined in convnet/__init__.py",
        ("docs/paths.md:4: convnet.nn.ops.pool_forward: pool_forward is not defined in "
         "convnet/nn/ops.py"),
        "docs/paths.md:4: convnet/web/ does not exist",
        "docs/paths.md:4: 0x07-cnn/9-main.py does not exist",
        "docs/paths.md:6: docs/figures/draw.py does not exist",
    ]
