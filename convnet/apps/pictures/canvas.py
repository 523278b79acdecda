"""The canvas every picture is drawn on: an Agg figure of known pixel size, saved atomically.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg
canvas directly, never through ``pyplot``: no global state, no window, and an
interactive session that imports these modules keeps its own backend. Each
figure has a fixed size in inches and a fixed resolution, so its pixel size
is known in advance (``figsize * dpi``), and it is written atomically through
``convnet.storage.atomic_path``.
"""
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from convnet import data
from convnet.storage import atomic_path

DPI = 100
# Signed values (weights, responses before a ReLU, logits): red above zero, blue below.
DIVERGING_CMAP = "RdBu_r"
CORRECT_COLOUR = "tab:blue"
WRONG_COLOUR = "tab:red"


def new_figure(size):
    """Return an empty Agg-backed figure of ``size`` inches (width, height)."""
    figure = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path):
    """Write ``figure`` to ``path`` as a PNG atomically and return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def names_or_digits(names):
    """``names`` as given, or MNIST's digits ``"0"`` to ``"9"`` when it is None.

    The drawing functions label classes with ``names``; without any they
    draw a digit network's ten classes.
    """
    return tuple(data.class_names("mnist")) if names is None else names
