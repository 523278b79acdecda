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

from convnet.checks import check_count
from convnet.data import MNIST_CLASS_NAMES
from convnet.errors import BadImageError, BadOptionError
from convnet.storage import atomic_path

DPI = 100
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
HISTORY_SIZE = (10.0, 4.0)

TRAIN_COLOUR = "tab:blue"
VALID_COLOUR = "tab:orange"


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


def plot_history(history, path, first_epoch=1):
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
    first_epoch : int, optional
        Epoch number of the first entries: 1 for Keras-style histories (one
        entry after each epoch), 0 when the first entry measures the
        untrained network (task 4's "After 0 epochs" line).

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
    check_count("first_epoch", first_epoch, non_negative=True)
    epochs = np.arange(first_epoch, first_epoch + lengths["loss"])
    if len(epochs) == 0:
        raise ValueError("history has no epochs: every list is empty")
    return save_figure(_history_figure(curves, epochs), path)


def _history_figure(curves, epochs):
    """The figure of :func:`plot_history` for checked ``curves`` and their ``epochs``.

    The x axis always starts at epoch 0 (training starts there), so a
    one-epoch Keras history is one point at epoch 1 on an axis from 0 to 1,
    not a lone point on an axis of fractional epochs.
    """
    figure = new_figure(HISTORY_SIZE)
    axes_loss, axes_acc = figure.subplots(1, 2)
    panels = ((axes_loss, "loss", "Loss (cross-entropy)"),
              (axes_acc, "accuracy", "Accuracy"))
    for axes, key, title in panels:
        axes.plot(epochs, curves[key], marker="o", color=TRAIN_COLOUR, label="training")
        axes.plot(epochs, curves["val_" + key], marker="o", color=VALID_COLOUR,
                  label="validation")
        axes.set_title(title)
        axes.set_xlabel("epochs completed")
        axes.set_ylabel(key)
        axes.grid(True, alpha=0.3)
        axes.legend()
        # Integer ticks only: a fractional epoch means nothing.
        axes.xaxis.get_major_locator().set_params(integer=True)
        last = max(int(epochs[-1]), 1)
        # Room around the first and last points, which would touch the frame.
        margin = max(0.05 * last, 0.25)
        axes.set_xlim(-margin, last + margin)
    # The loss falls by orders of magnitude (2.3 untrained, a few hundredths
    # trained): a log scale keeps the late epochs readable.
    losses = np.concatenate([curves["loss"], curves["val_loss"]])
    if np.all(losses[np.isfinite(losses)] > 0):
        axes_loss.set_yscale("log")
    trained = epochs[-1]
    figure.suptitle(f"Training history ({trained} epoch{'s' if trained != 1 else ''})")
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------- pictures of a checkpoint
FILTERS_SIZE = (9.0, 2.4)
PREDICTIONS_SIZE = (8.0, 9.0)
CONFUSION_SIZE = (7.5, 6.5)
INPUT_SIZE = (8.0, 3.6)
FEATURE_MAPS_WIDTH = 12.0
# Heights in inches of the rows of the feature-map figure.
_TITLE_HEIGHT = 0.5
_MAP_ROW_HEIGHT = 1.05
_STRIP_HEIGHT = 0.7
_BARS_HEIGHT = 1.3
_MAP_COLUMNS = 16
# Width of a feature-map row's colour bar, as a fraction of one channel's picture.
_COLOUR_BAR_WIDTH = 0.12
_CORRECT_COLOUR = "tab:blue"
_WRONG_COLOUR = "tab:red"
DIVERGING_CMAP = "RdBu_r"


def confusion_matrix(y_true, y_pred, n_classes=10):
    """Count how often each true class was predicted as each class.

    Parameters
    ----------
    y_true : array_like of int, shape (m,)
        True labels in ``0 .. n_classes - 1``.
    y_pred : array_like of int, shape (m,)
        Predicted labels in ``0 .. n_classes - 1``.
    n_classes : int, optional
        Number of classes.

    Returns
    -------
    ndarray of int64, shape (n_classes, n_classes)
        ``matrix[t, p]`` is the number of examples of true class ``t``
        predicted as ``p``: the diagonal holds the correct predictions and
        every row sums to the number of examples of its class.
    """
    check_count("n_classes", n_classes)
    labels = {}
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        values = np.asarray(values)
        if values.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array of labels, received shape {values.shape}")
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise TypeError(f"{name} must hold integer labels, received dtype {values.dtype}")
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{name} labels must be in 0..{n_classes - 1}, received values "
                             f"from {values.min()} to {values.max()}")
        labels[name] = values.astype(np.int64)
    if labels["y_true"].shape != labels["y_pred"].shape:
        raise ValueError(f"y_true and y_pred must have the same length, received "
                         f"{labels['y_true'].size} and {labels['y_pred'].size}")
    # Each (true, predicted) pair is one cell of the flattened matrix.
    cells = labels["y_true"] * n_classes + labels["y_pred"]
    counts = np.bincount(cells, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def draw_first_layer_filters(kernels, path, title="First-layer filters (conv1)"):
    """Draw the kernels of a first convolutional layer with one input channel.

    Parameters
    ----------
    kernels : ndarray of shape (kh, kw, 1, c_new)
        The layer's weights (e.g. LeNet-5's conv1 kernel of shape (5, 5, 1, 6)).
        Every kernel shares one colour scale, symmetric around zero, on a
        diverging colour map: red weights are positive, blue negative.
    path : str or Path
        Destination PNG, ``FILTERS_SIZE * DPI`` pixels.
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        ``path``.
    """
    kernels = np.asarray(kernels, dtype=np.float64)
    if kernels.ndim != 4 or kernels.shape[2] != 1:
        raise ValueError(f"kernels must have shape (kh, kw, 1, c_new), received {kernels.shape}")
    n_kernels = kernels.shape[3]
    limit = float(np.abs(kernels).max()) or 1.0
    figure = new_figure(FILTERS_SIZE)
    grid = figure.add_gridspec(1, n_kernels + 1, width_ratios=[1] * n_kernels + [0.08])
    for k in range(n_kernels):
        axes = figure.add_subplot(grid[0, k])
        image = axes.imshow(kernels[:, :, 0, k], cmap=DIVERGING_CMAP, vmin=-limit, vmax=limit)
        axes.set_title(f"filter {k}", fontsize=10)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.colorbar(image, cax=figure.add_subplot(grid[0, n_kernels]), label="weight")
    figure.suptitle(f"{title}: {n_kernels} kernels {kernels.shape[0]}x{kernels.shape[1]}, "
                    "shared colour scale")
    figure.subplots_adjust(left=0.02, right=0.9, top=0.78, bottom=0.05, wspace=0.15)
    return save_figure(figure, path)


def _is_channels(activation):
    """True for an (h, w, c) activation, drawn as one small image per channel."""
    return activation.ndim == 3


def _row_height(activation, n_classes):
    """Height in inches of one layer's row in the feature-map figure."""
    if _is_channels(activation):
        return _MAP_ROW_HEIGHT
    return _BARS_HEIGHT if activation.size == n_classes else _STRIP_HEIGHT


def feature_maps_size(maps, n_classes=10):
    """Return the (width, height) in inches of :func:`draw_feature_maps`' figure.

    Parameters
    ----------
    maps : list of (str, ndarray)
        As given to :func:`draw_feature_maps`.
    n_classes : int, optional
        Length of the vectors drawn as bar charts of class scores.
    """
    rows = sum(_row_height(np.asarray(a), n_classes) for _, a in maps)
    return FEATURE_MAPS_WIDTH, _TITLE_HEIGHT + rows


def _limits(activation):
    """Colour map and limits for one layer, shared by all its channels.

    Signed values (a convolution before its ReLU, logits) get a diverging map
    centred on zero, so what the ReLU removes shows in blue; non-negative
    values a grey scale from zero (white) to the layer's maximum (black).
    """
    low, high = float(activation.min()), float(activation.max())
    if low < 0:
        limit = max(-low, high) or 1.0
        return DIVERGING_CMAP, -limit, limit
    return "gray_r", 0.0, high or 1.0


def draw_feature_maps(maps, path, title="Feature maps", names=MNIST_CLASS_NAMES):
    """Draw what every layer computes for one input image, one row per layer.

    Parameters
    ----------
    maps : list of (str, ndarray)
        ``(layer_name, activation)`` for every layer in order, for one image
        (e.g. ``model.feature_maps(X[i:i + 1])`` with the batch axis
        removed). Activations of shape (h, w, c) are drawn as one small image
        per channel (up to 16 per row); vectors of shape (n,) as a one-row
        strip, or, if they have ``len(names)`` entries, as a bar chart of
        class scores. All channels of a layer share one colour scale.
    path : str or Path
        Destination PNG; its size in inches is ``feature_maps_size(maps)``.
    title : str, optional
        Figure title.
    names : sequence of str, optional
        Class names labelling the bars.

    Returns
    -------
    Path
        ``path``.
    """
    maps = [(name, np.asarray(activation, dtype=np.float64)) for name, activation in maps]
    if not maps:
        raise ValueError("maps must hold at least one (name, activation) pair")
    for name, activation in maps:
        if activation.ndim not in (1, 3) or (_is_channels(activation)
                                             and activation.shape[2] > _MAP_COLUMNS):
            raise ValueError(f"feature map {name!r} must have shape (h, w, c) with "
                             f"c <= {_MAP_COLUMNS}, or (n,), received {activation.shape}")
    width, height = feature_maps_size(maps, len(names))
    figure = new_figure((width, height))
    heights = [_row_height(activation, len(names)) for _, activation in maps]
    title_row, *rows = figure.subfigures(len(maps) + 1, 1,
                                         height_ratios=[_TITLE_HEIGHT] + heights)
    title_row.suptitle(title, fontsize=13, y=0.7)
    for row, (name, activation) in zip(rows, maps):
        if _is_channels(activation):
            _draw_channels(row, name, activation)
        elif activation.size == len(names):
            _draw_class_bars(row, name, activation, names)
        else:
            _draw_strip(row, name, activation)
    return save_figure(figure, path)


def _draw_channels(subfigure, name, activation):
    """Draw the channels of an (h, w, c) activation as small images in one row."""
    h, w, channels = activation.shape
    cmap, vmin, vmax = _limits(activation)
    grid = subfigure.add_gridspec(1, _MAP_COLUMNS + 1,
                                  width_ratios=[1] * _MAP_COLUMNS + [_COLOUR_BAR_WIDTH])
    for k in range(_MAP_COLUMNS):
        ax = subfigure.add_subplot(grid[0, k])
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= channels:
            ax.set_axis_off()
            continue
        image = ax.imshow(activation[:, :, k], cmap=cmap, vmin=vmin, vmax=vmax)
        if channels > 1:
            ax.set_xlabel(str(k), fontsize=7, labelpad=1)
    _colour_bar(subfigure, image, subfigure.add_subplot(grid[0, _MAP_COLUMNS]))
    subfigure.suptitle(f"{name}: {h}x{w}x{channels}", fontsize=10, x=0.01, ha="left")
    subfigure.subplots_adjust(left=0.01, right=0.96, bottom=0.14, top=0.78, wspace=0.1)


def _colour_bar(subfigure, image, cax):
    """A slim colour bar with small labels: the values behind a row's colours."""
    bar = subfigure.colorbar(image, cax=cax)
    bar.ax.tick_params(labelsize=6, length=2, pad=1)
    bar.ax.yaxis.get_major_locator().set_params(nbins=3)


def _draw_strip(subfigure, name, activation):
    """Draw a vector activation of shape (n,) as a one-row heat strip."""
    cmap, vmin, vmax = _limits(activation)
    grid = subfigure.add_gridspec(1, 2, width_ratios=[_MAP_COLUMNS, _COLOUR_BAR_WIDTH])
    ax = subfigure.add_subplot(grid[0, 0])
    image = ax.imshow(activation[None, :], cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    ax.set_yticks([])
    ax.tick_params(labelsize=7)
    ax.set_title(f"{name}: {activation.size} units", fontsize=10, loc="left")
    _colour_bar(subfigure, image, subfigure.add_subplot(grid[0, 1]))
    subfigure.subplots_adjust(left=0.01, right=0.96, bottom=0.3, top=0.7, wspace=0.02)


def _draw_class_bars(subfigure, name, activation, names):
    """Draw class scores as bars, the highest one highlighted."""
    ax = subfigure.subplots(1, 1)
    best = int(activation.argmax())
    colours = ["tab:blue" if k == best else "tab:gray" for k in range(activation.size)]
    ax.bar(np.arange(activation.size), activation, color=colours)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xticks(np.arange(activation.size), names, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    is_probability = activation.min() >= 0 and abs(activation.sum() - 1) < 1e-3
    kind = "class probabilities" if is_probability else "class scores (logits)"
    ax.set_title(f"{name}: {activation.size} {kind}, highest: {names[best]}",
                 fontsize=10, loc="left")
    subfigure.subplots_adjust(left=0.05, right=0.99, bottom=0.2, top=0.78)


def draw_predictions(images, y_pred, y_true, path, names=MNIST_CLASS_NAMES,
                     title="Predictions"):
    """Draw a grid of images, each titled "prediction (truth)".

    Parameters
    ----------
    images : ndarray of shape (n, h, w) or (n, h, w, 1)
        At most 25 images, drawn on a 5 x 5 grid.
    y_pred, y_true : ndarray of int, shape (n,)
        Predicted and true labels. Correct predictions are titled in blue,
        wrong ones in red.
    path : str or Path
        Destination PNG, ``PREDICTIONS_SIZE * DPI`` pixels.
    names : sequence of str, optional
        Class names used in the titles.
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        ``path``.
    """
    images = np.asarray(images)
    images = images[..., 0] if images.ndim == 4 else images
    if images.ndim != 3 or len(images) > 25:
        raise ValueError(f"images must have shape (n, h, w) with n <= 25, "
                         f"received {images.shape}")
    if len(y_pred) != len(images) or len(y_true) != len(images):
        raise ValueError(f"y_pred and y_true must have {len(images)} labels, "
                         f"received {len(y_pred)} and {len(y_true)}")
    figure = new_figure(PREDICTIONS_SIZE)
    axes = figure.subplots(5, 5)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(images):
            continue
        ax.imshow(images[k], cmap="gray_r")
        correct = y_pred[k] == y_true[k]
        ax.set_title(f"{names[y_pred[k]]} ({names[y_true[k]]})", fontsize=11,
                     color=_CORRECT_COLOUR if correct else _WRONG_COLOUR)
    figure.suptitle(f"{title}\nprediction (truth): blue = correct, red = wrong", fontsize=12)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.86, hspace=0.35)
    return save_figure(figure, path)


def draw_input_and_probabilities(image, probabilities, path, names=MNIST_CLASS_NAMES,
                                 title="What the network saw"):
    """Draw the 28x28 image a model was given beside its class probabilities.

    Parameters
    ----------
    image : ndarray of shape (h, w) or (h, w, 1)
        The prepared input (e.g. from ``convnet.data.images.load_digit_image``),
        drawn pixel by pixel with a colour bar of its values.
    probabilities : ndarray of shape (n_classes,)
        The model's softmax output; the most likely class is highlighted.
    path : str or Path
        Destination PNG, ``INPUT_SIZE * DPI`` pixels.
    names : sequence of str, optional
        Class names.
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        ``path``.
    """
    image = np.asarray(image, dtype=np.float64)
    image = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must have shape (h, w) or (h, w, 1), received {image.shape}")
    if probabilities.shape != (len(names),):
        raise ValueError(f"probabilities must have shape ({len(names)},), "
                         f"received {probabilities.shape}")
    figure = new_figure(INPUT_SIZE)
    grid = figure.add_gridspec(1, 3, width_ratios=[1, 0.05, 1.4], wspace=0.55)
    ax = figure.add_subplot(grid[0, 0])
    picture = ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(f"input {image.shape[0]}x{image.shape[1]}", fontsize=10)
    ax.set_xticks([0, image.shape[1] - 1])
    ax.set_yticks([0, image.shape[0] - 1])
    ax.tick_params(labelsize=7)
    figure.colorbar(picture, cax=figure.add_subplot(grid[0, 1]), label="pixel value")
    bars = figure.add_subplot(grid[0, 2])
    best = int(probabilities.argmax())
    positions = np.arange(len(names))
    bars.barh(positions, probabilities,
              color=[_CORRECT_COLOUR if k == best else "tab:gray" for k in positions])
    for k, p in enumerate(probabilities):
        bars.text(min(p, 1.0) + 0.01, k, f"{p:.3f}", va="center", fontsize=7)
    bars.set_yticks(positions, names, fontsize=8)
    bars.invert_yaxis()
    bars.set_xlim(0, 1.15)
    bars.set_xlabel("probability")
    bars.set_title(f"prediction: {names[best]} ({probabilities[best]:.1%})", fontsize=10)
    figure.suptitle(title, fontsize=11)
    figure.subplots_adjust(left=0.05, right=0.97, bottom=0.15, top=0.8)
    return save_figure(figure, path)


def input_picture_names(paths):
    """File names of ``convnet predict --show``'s pictures: ``input_<stem>.png``, unique.

    Images whose names share a stem (``a/1.png``, ``b/1.png``) get the
    position of the image in the list appended: ``input_1.png``, ``input_1_2.png``.
    """
    names, seen = [], set()
    for index, path in enumerate(paths):
        name = f"input_{Path(path).stem}.png"
        if name in seen:
            name = f"input_{Path(path).stem}_{index + 1}.png"
        seen.add(name)
        names.append(name)
    return names


def draw_confusion_matrix(matrix, path, names=MNIST_CLASS_NAMES, title="Confusion matrix"):
    """Draw a confusion matrix with every count written in its cell.

    Parameters
    ----------
    matrix : ndarray of int, shape (n_classes, n_classes)
        As returned by :func:`confusion_matrix`: rows are true classes,
        columns predicted classes.
    path : str or Path
        Destination PNG, ``CONFUSION_SIZE * DPI`` pixels.
    names : sequence of str, optional
        Class names for the axis labels.
    title : str, optional
        Figure title; the accuracy (trace / total) is appended.

    Returns
    -------
    Path
        ``path``.
    """
    matrix = np.asarray(matrix)
    n_classes = len(names)
    if matrix.shape != (n_classes, n_classes):
        raise ValueError(f"matrix must have shape ({n_classes}, {n_classes}), "
                         f"received {matrix.shape}")
    total = int(matrix.sum())
    accuracy = np.trace(matrix) / total if total else float("nan")
    figure = new_figure(CONFUSION_SIZE)
    ax = figure.subplots(1, 1)
    # On one scale the diagonal (about a thousand per class) would wash every
    # mistake out to white, so the correct counts (green) and the mistakes (red)
    # are coloured on separate scales; the written numbers stay exact.
    diagonal = np.eye(n_classes, dtype=bool)
    scales = {True: max(int(matrix[diagonal].max()), 1),
              False: max(int(matrix[~diagonal].max()), 1)}
    ax.imshow(np.ma.masked_where(~diagonal, matrix), cmap="Greens", vmin=0,
              vmax=scales[True])
    mistakes = ax.imshow(np.ma.masked_where(diagonal, matrix), cmap="Reds", vmin=0,
                         vmax=scales[False])
    for t in range(n_classes):
        for p in range(n_classes):
            dark = matrix[t, p] > 0.6 * scales[t == p]
            ax.text(p, t, str(matrix[t, p]), ha="center", va="center", fontsize=8,
                    color="white" if dark else "black",
                    fontweight="bold" if t == p else "normal")
    ax.set_xticks(range(n_classes), names, rotation=45 if len(max(names, key=len)) > 2 else 0)
    ax.set_yticks(range(n_classes), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    figure.colorbar(mistakes, ax=ax, label="mistakes (off-diagonal count)")
    ax.set_title(f"{title}: accuracy {accuracy:.2%} on {total} images")
    figure.tight_layout()
    return save_figure(figure, path)


def first_conv_kernels(model):
    """Return ``(name, kernels)`` of a model's first convolution, or None if it has none.

    ``kernels`` has shape (kh, kw, c_in, filters).
    """
    for name, weights in model.get_weights().items():
        if name.endswith("/kernel") and weights.ndim == 4:
            return name[:-len("/kernel")], weights
    return None


def draw_checkpoint_pictures(model, label, X_valid, Y_valid, index, out, names, mistakes=False):
    """Draw the pictures of a trained model on the validation split; return their paths.

    Writes into ``out``: ``filters.png`` (the first convolution's kernels,
    when it reads one channel), ``feature_maps_<index>.png`` (every layer's
    output for validation image ``index``), ``predictions.png`` (25
    validation images from ``index`` on, titled "prediction (truth)") and
    ``confusion_matrix.png`` (over the whole validation split); with
    ``mistakes`` also ``mistakes.png`` (the first 25 wrongly predicted
    validation images).

    Parameters
    ----------
    model : Sequential
    label : str
        What the model is called in titles (its checkpoint's path).
    X_valid : ndarray of shape (m, h, w) or (m, h, w, c)
        Validation images.
    Y_valid : ndarray of shape (m,)
        Their integer labels.
    index : int
        A validation image, 0 to m - 1.
    out : Path
        Folder of the pictures.
    names : sequence of str
        Class names, in label order.
    mistakes : bool
        Also draw the mistakes.

    Returns
    -------
    list of Path

    Raises
    ------
    BadOptionError
        If ``index`` is not a validation image.
    """
    if not 0 <= index < len(X_valid):
        raise BadOptionError(f"--index must be between 0 and {len(X_valid) - 1} (the validation "
                             f"split has {len(X_valid)} images), received {index}")
    out = Path(out)
    paths = []
    first = first_conv_kernels(model)
    if first is not None and first[1].shape[2] == 1:
        paths.append(draw_first_layer_filters(first[1], out / "filters.png",
                                              title=f"{first[0]} filters of {label}"))

    # feature_maps works on a batch: give it one image and drop the batch axis.
    batch_maps = model.feature_maps(X_valid[index:index + 1])
    maps = [(name, activation[0]) for name, activation in batch_maps]
    paths.append(draw_feature_maps(
        maps, out / f"feature_maps_{index}.png", names=names,
        title=f"Every layer's output for validation image {index} "
              f"(truth: {names[Y_valid[index]]})"))

    y_pred = predicted_classes(model, X_valid)
    start = max(0, min(index, len(X_valid) - 25))
    shown = slice(start, start + 25)
    paths.append(draw_predictions(
        X_valid[shown], y_pred[shown], Y_valid[shown], out / "predictions.png", names=names,
        title=f"Validation images {start} to {min(start + 25, len(X_valid)) - 1}"))

    matrix = confusion_matrix(Y_valid, y_pred, n_classes=len(names))
    paths.append(draw_confusion_matrix(matrix, out / "confusion_matrix.png", names=names,
                                       title="Validation"))
    if mistakes:
        wrong = np.flatnonzero(y_pred != Y_valid)[:25]
        paths.append(draw_predictions(
            X_valid[wrong], y_pred[wrong], Y_valid[wrong], out / "mistakes.png", names=names,
            title=f"The first {len(wrong)} of {int((y_pred != Y_valid).sum())} mistakes on "
                  f"the {len(Y_valid)} validation images"))
    return paths


def predicted_classes(model, X):
    """Return the predicted class of each image: argmax, or probability above 0.5 for a sigmoid.

    Returns
    -------
    ndarray of shape (m,), int64
    """
    probabilities = model.predict_proba(X)
    if probabilities.shape[1] == 1:
        return (probabilities[:, 0] > 0.5).astype(np.int64)
    return probabilities.argmax(axis=1)


def draw_image_maps(model, image_path, out, names):
    """Draw every layer's output for a digit image file; return the PNG path.

    The picture is prepared as ``convnet predict`` prepares it (a 28x28 digit).
    """
    from convnet.data.images import load_digit_image
    image = load_digit_image(image_path)
    maps = [(name, activation[0]) for name, activation in model.feature_maps(image[None])]
    probabilities = maps[-1][1]
    return draw_feature_maps(
        maps, out / f"feature_maps_{image_path.stem}.png", names=names,
        title=f"Every layer's output for {image_path.name} "
              f"(prediction: {names[int(probabilities.argmax())]})")


# ---------------------------------------------------------------- classic filters
# Hand-made 3x3 kernels, written as they are applied: by cross-correlation, so
# "sobel_x" is right minus left (bright where brightness rises to the right).
CLASSIC_KERNELS = {
    "sobel_x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64),
    "sobel_y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64),
    "box_blur": np.full((3, 3), 1 / 9),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64),
    "edges": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=np.float64),
}
CLASSIC_TITLES = {
    "sobel_x": "Sobel x: vertical edges\n[-1 0 1] [-2 0 2] [-1 0 1]",
    "sobel_y": "Sobel y: horizontal edges\n[-1 -2 -1] [0 0 0] [1 2 1]",
    "box_blur": "box blur: mean of 3x3\nevery weight 1/9",
    "sharpen": "sharpen\n[0 -1 0] [-1 5 -1] [0 -1 0]",
    "edges": "edges (Laplacian, 8 neighbours)\n[-1 -1 -1] [-1 8 -1] [-1 -1 -1]",
}
# Responses that are differences of pixels: signed, centred on zero.
SIGNED_FILTERS = ("sobel_x", "sobel_y", "edges")
CLASSIC_SIZE = (11.0, 8.0)
SAMPLE_PHOTO = "grace_hopper.jpg"


def _identity(Z):
    """Activation that returns its input: the filters' raw responses."""
    return Z


def apply_classic_filters(image):
    """Filter a grayscale image with every kernel of ``CLASSIC_KERNELS``.

    The kernels are stacked into one (3, 3, 1, 5) array and applied in a single
    call to :func:`convnet.conv_forward` (zero bias, identity activation,
    ``'same'`` padding, stride 1): exactly a convolutional layer with five
    hand-set kernels.

    Parameters
    ----------
    image : ndarray of shape (h, w)
        Grayscale image, floats (normally in [0, 1]).

    Returns
    -------
    dict of str to ndarray of shape (h, w)
        The filtered image for each kernel name, in ``CLASSIC_KERNELS`` order.
    """
    from convnet.nn.ops import conv_forward

    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be a 2-D grayscale array, received shape {image.shape}")
    image = image.astype(np.float64, copy=False)
    kernels = np.stack(list(CLASSIC_KERNELS.values()), axis=-1)[:, :, np.newaxis, :]
    bias = np.zeros((1, 1, 1, kernels.shape[3]))
    responses = conv_forward(image[np.newaxis, :, :, np.newaxis], kernels, bias, _identity,
                             padding="same", stride=(1, 1))[0]
    return {name: responses[:, :, k] for k, name in enumerate(CLASSIC_KERNELS)}


def sample_photo_path():
    """Return the path of the sample photograph shipped with matplotlib."""
    from matplotlib import get_data_path
    return Path(get_data_path()) / "sample_data" / SAMPLE_PHOTO


def load_grayscale(path):
    """Read an image file as a grayscale float64 array of shape (h, w) in [0, 1].

    Raises
    ------
    BadImageError
        A ``ValueError`` naming ``path`` if it does not exist, is not an image
        Pillow can decode, or is too large (see ``convnet.data.images.read_grey``).
    """
    from convnet.data.images import read_grey

    path = Path(path)
    if not path.is_file():
        raise BadImageError(f"image {path} not found")
    return read_grey(path).astype(np.float64)


def filter_colour_limit(response, margin=1, percentile=99):
    """Colour limit of a signed filter response: a high percentile of its magnitude inside.

    Parameters
    ----------
    response : ndarray of shape (h, w)
        A filtered image (``'same'`` padding).
    margin : int
        Rows and columns left out on each side: those the zero padding
        reaches (1 for a 3x3 kernel). On a photograph the padding's black
        frame meets bright pixels and gives the strongest responses of the
        whole image; counted in, they set the scale and leave the inside
        almost white.
    percentile : float
        Percentile of the magnitudes that saturates the colour map.

    Returns
    -------
    float
        The limit (1.0 when the inside is all zeros, or the image has no inside).
    """
    response = np.asarray(response, dtype=np.float64)
    if response.ndim != 2:
        raise ValueError(f"response must be a 2-D array, received shape {response.shape}")
    check_count("margin", margin, non_negative=True)
    inside = response[margin:response.shape[0] - margin, margin:response.shape[1] - margin]
    if inside.size == 0:
        return 1.0
    return float(np.percentile(np.abs(inside), percentile)) or 1.0


def draw_classic_filters(image, filtered, path, title="Classic 3x3 filters", size=CLASSIC_SIZE):
    """Draw an image and its filtered versions side by side.

    Parameters
    ----------
    image : ndarray of shape (h, w)
        Grayscale original, values in [0, 1].
    filtered : dict of str to ndarray of shape (h, w)
        As returned by :func:`apply_classic_filters`. The responses of
        ``SIGNED_FILTERS`` (differences of pixels) use a diverging colour map
        centred on zero, saturated at the 99th percentile of their magnitude
        inside the frame the padding reaches (:func:`filter_colour_limit`),
        so that neither a few strong edges nor the padding wash the rest
        out; the others are grey images clipped to [0, 1].
    path : str or Path
        Destination PNG, ``size * DPI`` pixels.
    title : str, optional
        Figure title.
    size : tuple of float, optional
        (width, height) of the figure in inches.

    Returns
    -------
    Path
        ``path``.
    """
    panels = [("original", np.asarray(image))] + list(filtered.items())
    figure = new_figure(size)
    axes = figure.subplots(2, -(-len(panels) // 2))
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (name, picture) in zip(axes.flat, panels):
        if name in SIGNED_FILTERS:
            limit = filter_colour_limit(picture)
            ax.imshow(picture, cmap=DIVERGING_CMAP, vmin=-limit, vmax=limit)
        else:
            ax.imshow(np.clip(picture, 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(CLASSIC_TITLES.get(name, name), fontsize=10)
    figure.suptitle(title, fontsize=13, y=0.99)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.88, wspace=0.05,
                           hspace=0.22)
    return save_figure(figure, path)


def draw_classic_filters_of(path, out):
    """Apply the classic kernels to the photograph at ``path``; return the PNG written in ``out``.

    Parameters
    ----------
    path : str or Path, or None
        A picture file; None for matplotlib's sample photograph.
    out : str or Path
        Folder receiving ``classic_filters.png``.

    Raises
    ------
    FileNotFoundError
        If matplotlib's sample photograph is missing.
    """
    photo = sample_photo_path() if path is None else Path(path)
    if path is None and not photo.is_file():
        raise FileNotFoundError(f"matplotlib's sample photograph {photo} is missing; "
                                "pass --image PATH")
    image = load_grayscale(photo)
    filtered = apply_classic_filters(image)
    return draw_classic_filters(image, filtered, Path(out) / "classic_filters.png",
                                title=f"Classic 3x3 kernels applied with conv_forward to "
                                      f"{photo.name}")
