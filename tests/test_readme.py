"""README's library example runs as it is written there."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text):
    """The fenced ```python blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_python_blocks_are_found():
    assert python_blocks("a\n```python\nx = 1\n```\nb\n```\ny\n```\n") == ["x = 1\n"]


def test_the_readme_library_example_trains_and_evaluates(mnist_slice, tmp_path, monkeypatch,
                                                          capsys):
    [example] = python_blocks(README.read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    mnist_slice(tmp_path / "MNIST.npz", 256, 100, 100)
    namespace = {}
    exec(compile(example, str(README), "exec"), namespace)   # noqa: S102 -- the README's own code
    run, score = namespace["run"], namespace["score"]
    assert (tmp_path / "runs" / "notebook" / "checkpoint.npz").is_file()
    assert score.accuracy == run.valid_accuracy and score.images == 100
    kinds = {type(event).__name__ for event in namespace["events"]}
    assert {"RunStarted", "EpochEnded", "RunFinished"} <= kinds
    assert re.fullmatch(r"validation \d\.\d{3}, test \d\.\d{3}\n", capsys.readouterr().out)
