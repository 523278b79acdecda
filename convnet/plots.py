"""Every figure the project draws: training curves, filters, feature maps, predictions.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg
canvas directly, never through ``pyplot``: no global state, no window, and an
interactive session that imports this module keeps its own backend. Each
figure has a fixed size in inches and a fixed resolution, so its pixel size
is known in advance (``figsize * dpi``), and it is written atomically through
``convnet.storage.atomic_path``.
"""
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from convnet.storage import atomic_path

DPI = 100
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
HISTORY_SIZE = (10.0, 4.0)

TRAIN_COLOUR = "tab:blue"
VALID_COLOUR = "tab:orange"


def _new_figure(size):
    """Return an empty Agg-backed figure of ``size`` inches (width, height)."""
    figure = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path):
    """Write ``figure`` to ``path`` as a PNG atomically and return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def plot_history(history, path):
    """Draw training curves: loss and accuracy per epoch, training vs validation.

    Parameters
    ----------
    history : mapping
        Equal-length sequences of numbers (one value per epoch) under the keys
        ``"loss"``, ``"accuracy"``, ``"val_loss"`` and ``"val_accuracy"``, as in
        Keras' ``History.history``. Other keys are ignored.
    path : str or Path
        Destination PNG, written atomically; its folder is created if needed.
        The image is 1000 x 400 pixels.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If a key is missing, a value is not a flat list of numbers, the
        lengths differ, or there are no epochs.
    """
    if not hasattr(history, "keys"):
        raise ValueError(f"history must be a dict of lists, received {type(history).__name__}")
    missing = [key for key in HISTORY_KEYS if key not in history]
    if missing:
        raise ValueError(f"history is missing the key(s) {', '.join(map(repr, missing))}; "
                         f"expected {', '.join(map(repr, HISTORY_KEYS))}")
    curves = {}
    for key in HISTORY_KEYS:
        try:
            curves[key] = np.asarray(history[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"history[{key!r}] must be a list of numbers") from None
        if curves[key].ndim != 1:
            raise ValueError(f"history[{key!r}] must be a flat list of numbers, "
                             f"received shape {curves[key].shape}")
    lengths = {key: len(values) for key, values in curves.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"history lists must all have the same length, received {lengths}")
    epochs = np.arange(1, lengths["loss"] + 1)
    if len(epochs) == 0:
        raise ValueError("history has no epochs: every list is empty")

    figure = _new_figure(HISTORY_SIZE)
    axes_loss, axes_acc = figure.subplots(1, 2)
    panels = ((axes_loss, "loss", "Loss (cross-entropy)"),
              (axes_acc, "accuracy", "Accuracy"))
    for axes, key, title in panels:
        axes.plot(epochs, curves[key], marker="o", color=TRAIN_COLOUR, label="training")
        axes.plot(epochs, curves["val_" + key], marker="o", color=VALID_COLOUR,
                  label="validation")
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.set_ylabel(key)
        axes.grid(True, alpha=0.3)
        axes.legend()
        # Integer ticks only: a fractional epoch means nothing.
        axes.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(f"Training history ({len(epochs)} epoch{'s' if len(epochs) != 1 else ''})")
    figure.tight_layout()
    return _save(figure, path)
