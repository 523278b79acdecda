"""Tests of convnet.plots: training curves, checkpoint pictures, classic filters."""
import numpy as np
import pytest
from matplotlib.image import imread

from convnet import plots


def _png_shape(path):
    """Return (height, width) in pixels of the PNG at ``path``."""
    return imread(path).shape[:2]


def _history(epochs=3):
    rng = np.random.default_rng(0)
    return {key: list(rng.random(epochs)) for key in plots.HISTORY_KEYS}


@pytest.mark.parametrize("epochs", [1, 4])
def test_plot_history_writes_png_of_expected_size(tmp_path, epochs):
    path = tmp_path / "sub" / "history.png"
    returned = plots.plot_history(_history(epochs), path)
    assert returned == path
    assert path.stat().st_size > 0
    width, height = plots.HISTORY_SIZE
    assert _png_shape(path) == (int(height * plots.DPI), int(width * plots.DPI))
    assert [p.name for p in path.parent.iterdir()] == ["history.png"]


def test_plot_history_accepts_extra_keys(tmp_path):
    history = _history(2)
    history["lr"] = [1e-3, 1e-3]
    plots.plot_history(history, tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 0


@pytest.mark.parametrize("key", plots.HISTORY_KEYS)
def test_plot_history_rejects_missing_key(tmp_path, key):
    history = _history()
    del history[key]
    with pytest.raises(ValueError, match=f"missing the key.*'{key}'"):
        plots.plot_history(history, tmp_path / "h.png")
    assert not list(tmp_path.iterdir())


def test_plot_history_rejects_unequal_lengths(tmp_path):
    history = _history(3)
    history["val_loss"] = history["val_loss"][:2]
    with pytest.raises(ValueError, match="same length"):
        plots.plot_history(history, tmp_path / "h.png")


@pytest.mark.parametrize("history, message", [
    ({key: [] for key in plots.HISTORY_KEYS}, "no epochs"),
    ({key: [[1.0, 2.0]] for key in plots.HISTORY_KEYS}, "flat list"),
    ({**{key: [1.0] for key in plots.HISTORY_KEYS}, "loss": ["a"]}, "list of numbers"),
    ([1, 2, 3], "dict of lists"),
])
def test_plot_history_rejects_bad_values(tmp_path, history, message):
    with pytest.raises(ValueError, match=message):
        plots.plot_history(history, tmp_path / "h.png")
