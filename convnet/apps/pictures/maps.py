"""Feature maps: what every layer computes for one image, and the input beside its probabilities."""
from pathlib import Path

import numpy as np

from convnet.apps.pictures.canvas import (
    CORRECT_COLOUR,
    DIVERGING_CMAP,
    names_or_digits,
    new_figure,
    save_figure,
)

INPUT_SIZE = (8.0, 3.6)
FEATURE_MAPS_WIDTH = 12.0
# Heights in inches of the rows of the feature-map figure.
_TITLE_HEIGHT = 0.5
_MAP_ROW_HEIGHT = 1.05
# Each further line of channels of a layer with more than _MAP_COLUMNS channels.
_MAP_LINE_HEIGHT = 0.85
_STRIP_HEIGHT = 0.7
_BARS_HEIGHT = 1.3
_MAP_COLUMNS = 16
# Width of a feature-map row's colour bar, as a fraction of one channel's picture.
_COLOUR_BAR_WIDTH = 0.12
# The channels of a colour image, each drawn in its own colour.
_CHANNEL_CMAPS = (("red", "Reds"), ("green", "Greens"), ("blue", "Blues"))


def _is_channels(activation):
    """True for an (h, w, c) activation, drawn as one small image per channel."""
    return activation.ndim == 3


def _is_colour_image(name, activation):
    """True for the input of a colour model: drawn as a picture, then its three channels."""
    return name == "input" and activation.ndim == 3 and activation.shape[2] == 3


def _channel_lines(activation):
    """How many lines of ``_MAP_COLUMNS`` pictures the channels of an (h, w, c) activation take."""
    return -(-activation.shape[2] // _MAP_COLUMNS)


def _row_height(name, activation, n_classes):
    """Height in inches of one layer's row in the feature-map figure."""
    if _is_colour_image(name, activation):
        return _MAP_ROW_HEIGHT
    if _is_channels(activation):
        return _MAP_ROW_HEIGHT + _MAP_LINE_HEIGHT * (_channel_lines(activation) - 1)
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
    rows = sum(_row_height(name, np.asarray(a), n_classes) for name, a in maps)
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


def draw_feature_maps(maps, path, title="Feature maps", names=None):
    """Draw what every layer computes for one input image, one row per layer.

    Parameters
    ----------
    maps : list of (str, ndarray)
        ``(layer_name, activation)`` for every layer in order, for one image
        (e.g. :func:`model_maps`). Activations of shape (h, w, c) are drawn as
        one small image per channel, ``_MAP_COLUMNS`` (16) to a line and as
        many lines as the channels need; an ``"input"`` of three channels as
        the colour picture followed by its red, green and blue channels.
        Vectors of shape (n,) are drawn as a one-row strip, or, if they have
        ``len(names)`` entries, as a bar chart of class scores. All channels
        of a layer share one colour scale.
    path : str or Path
        Where the PNG goes; its size in inches is ``feature_maps_size(maps)``.
    title : str, optional
        Heading, in a row of its own above the layers' rows.
    names : sequence of str, optional
        Class names labelling the bars (default: the digits 0 to 9).

    Returns
    -------
    Path
        ``path``, one row per layer.
    """
    names = names_or_digits(names)
    maps = [(name, np.asarray(activation, dtype=np.float64)) for name, activation in maps]
    if not maps:
        raise ValueError("maps must hold at least one (name, activation) pair")
    for name, activation in maps:
        if activation.ndim not in (1, 3) or activation.size == 0:
            raise ValueError(f"feature map {name!r} must have shape (h, w, c) or (n,) with at "
                             f"least one value, received {activation.shape}")
    width, height = feature_maps_size(maps, len(names))
    figure = new_figure((width, height))
    heights = [_row_height(name, activation, len(names)) for name, activation in maps]
    title_row, *rows = figure.subfigures(len(maps) + 1, 1,
                                         height_ratios=[_TITLE_HEIGHT] + heights)
    title_row.suptitle(title, fontsize=13, y=0.7)
    for row, (name, activation) in zip(rows, maps):
        if _is_colour_image(name, activation):
            _draw_colour_image(row, name, activation)
        elif _is_channels(activation):
            _draw_channels(row, name, activation)
        elif activation.size == len(names):
            _draw_class_bars(row, name, activation, names)
        else:
            _draw_strip(row, name, activation)
    return save_figure(figure, path)


def model_maps(model, image):
    """Every layer's output for one image, ready for :func:`draw_feature_maps`.

    Parameters
    ----------
    model : Sequential
    image : ndarray of shape (h, w, c) (or (h, w) for a grey model)

    Returns
    -------
    list of (str, ndarray)
        ``model.outputs`` of the image without the batch axis. A sigmoid's
        probability p of class 1 becomes the two class probabilities
        ``(1 - p, p)``, drawn like a softmax's.
    """
    maps = [(name, activation[0]) for name, activation in model.outputs(image[None]).items()]
    name, last = maps[-1]
    if last.shape == (1,):
        maps[-1] = (name, np.concatenate([1 - last, last]))
    return maps


def _gaps(h, w):
    """Pixels between two pictures of a line (``gx``) and below each, for its label (``gy``)."""
    return max(1, round(0.1 * w)), max(2, round(0.35 * h))


def _draw_tiles(subfigure, name, shape, tiles, labels):
    """Draw pictures (n, h, w, 4) RGBA, ``_MAP_COLUMNS`` to a line, each framed and labelled.

    The pictures are laid into one mosaic drawn by a single image (far
    faster than one axes, or one image, per channel); the gaps are
    transparent. Returns the colour bar's axes, beside the mosaic.
    """
    n, h, w = tiles.shape[:3]
    gx, gy = _gaps(h, w)
    lines = -(-n // _MAP_COLUMNS)
    mosaic = np.zeros((lines * (h + gy), _MAP_COLUMNS * (w + gx), 4))
    corners = []
    for k in range(n):
        line, column = divmod(k, _MAP_COLUMNS)
        top, left = line * (h + gy), column * (w + gx)
        mosaic[top:top + h, left:left + w] = tiles[k]
        corners.append((left, top))
    grid = subfigure.add_gridspec(1, 2, width_ratios=[_MAP_COLUMNS, _COLOUR_BAR_WIDTH])
    ax = subfigure.add_subplot(grid[0, 0])
    ax.set_axis_off()
    ax.imshow(mosaic, extent=(0, mosaic.shape[1], mosaic.shape[0], 0),
              interpolation="nearest")
    ax.set_aspect("equal", anchor="W")
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle
    ax.add_collection(PatchCollection([Rectangle(corner, w, h) for corner in corners],
                                      facecolor="none", edgecolor="#999999", linewidth=0.5))
    for (left, top), label in zip(corners, labels):
        if label is not None:
            ax.text(left + w / 2, top + h + 0.1 * gy, label, ha="center", va="top", fontsize=7)
    height = _MAP_ROW_HEIGHT + _MAP_LINE_HEIGHT * (lines - 1)
    subfigure.subplots_adjust(left=0.01, right=0.96, bottom=0.02, top=1 - 0.26 / height,
                              wspace=0.02)
    subfigure.suptitle(f"{name}: {'x'.join(map(str, shape))}", fontsize=10, x=0.01, ha="left")
    return subfigure.add_subplot(grid[0, 1])


def _draw_channels(subfigure, name, activation):
    """Draw the channels of an (h, w, c) activation as small images, 16 to a line."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    channels = activation.shape[2]
    cmap, vmin, vmax = _limits(activation)
    norm = Normalize(vmin, vmax)
    tiles = colormaps[cmap](norm(activation.transpose(2, 0, 1)))
    # Beyond one line, every fourth channel is numbered: enough to count, and the
    # labels no longer outnumber what they label.
    step = 1 if channels <= _MAP_COLUMNS else 4
    labels = [str(k) if channels > 1 and k % step == 0 else None for k in range(channels)]
    cax = _draw_tiles(subfigure, name, activation.shape, tiles, labels)
    _colour_bar(subfigure, ScalarMappable(norm, colormaps[cmap]), cax)


def _draw_colour_image(subfigure, name, activation):
    """Draw a colour input: the picture, then its red, green and blue channels."""
    from matplotlib import colormaps
    picture = np.clip(activation, 0, 1)
    opaque = np.ones(picture.shape[:2] + (1,))
    tiles = [np.concatenate([picture, opaque], axis=2)]
    tiles += [colormaps[cmap](picture[:, :, k]) for k, (_, cmap) in enumerate(_CHANNEL_CMAPS)]
    labels = ["colour"] + [label for label, _ in _CHANNEL_CMAPS]
    cax = _draw_tiles(subfigure, name, activation.shape, np.stack(tiles), labels)
    # Each channel has its own colours, all from 0 (white) to 1: one bar would mislead.
    cax.set_axis_off()


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
    if activation.size == 1:
        # One unit (a sigmoid's logit, say): its value says more than a colour.
        ax.set_xticks([])
        ax.set_title(f"{name}: 1 unit, value {activation[0]:.4g}", fontsize=10, loc="left")
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)
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


def _picture(image):
    """``image`` (h, w), (h, w, 1) or (h, w, 3) as (h, w) grey or (h, w, 3) colour, float64."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim != 2 and not (image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"image must have shape (h, w), (h, w, 1) or (h, w, 3), received "
                         f"{image.shape}")
    return image


def draw_input_and_probabilities(image, probabilities, path, names=None,
                                 title="What the network saw"):
    """Draw the image a model was given beside its class probabilities.

    Parameters
    ----------
    image : ndarray of shape (h, w), (h, w, 1) or (h, w, 3)
        The prepared input (e.g. from ``convnet.data.images.prepare_image``),
        drawn pixel by pixel: grey with a colour bar of its values, or in
        colour.
    probabilities : ndarray of shape (n_classes,)
        The model's probability of each class; the most likely is highlighted.
    path : str or Path
        Where the PNG goes, ``INPUT_SIZE * DPI`` pixels.
    names : sequence of str, optional
        Class names (default: the digits 0 to 9).
    title : str, optional
        Heading above the picture and the bars (``convnet predict --show``
        names the image file in it).

    Returns
    -------
    Path
        ``path``, the picture on the left and the bars on the right.
    """
    names = names_or_digits(names)
    image = _picture(image)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (len(names),):
        raise ValueError(f"probabilities must have shape ({len(names)},), "
                         f"received {probabilities.shape}")
    figure = new_figure(INPUT_SIZE)
    grid = figure.add_gridspec(1, 3, width_ratios=[1, 0.05, 1.4], wspace=0.55)
    ax = figure.add_subplot(grid[0, 0])
    bar_axes = figure.add_subplot(grid[0, 1])
    if image.ndim == 2:
        picture = ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        figure.colorbar(picture, cax=bar_axes, label="pixel value")
        kind = "grey"
    else:
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
        bar_axes.set_axis_off()
        kind = "colour"
    ax.set_title(f"input {image.shape[0]}x{image.shape[1]} {kind}", fontsize=10)
    ax.set_xticks([0, image.shape[1] - 1])
    ax.set_yticks([0, image.shape[0] - 1])
    ax.tick_params(labelsize=7)
    bars = figure.add_subplot(grid[0, 2])
    best = int(probabilities.argmax())
    positions = np.arange(len(names))
    bars.barh(positions, probabilities,
              color=[CORRECT_COLOUR if k == best else "tab:gray" for k in positions])
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


def draw_image_maps(model, image_path, out, names):
    """Draw every layer's output for a picture file; return the PNG path.

    The picture is prepared for the model's input as ``convnet predict``
    prepares it (``convnet.data.images.prepare_image``): a digit for a grey
    model, a resized colour picture for a colour one. The PNG is
    ``out / feature_maps_<stem>.png``.
    """
    from convnet.data.images import prepare_image
    image_path = Path(image_path)
    image = prepare_image(image_path, model.input_shape)
    maps = model_maps(model, image)
    probabilities = maps[-1][1]
    return draw_feature_maps(
        maps, Path(out) / f"feature_maps_{image_path.stem}.png", names=names,
        title=f"Every layer's output for {image_path.name} "
              f"(prediction: {names[int(probabilities.argmax())]})")
