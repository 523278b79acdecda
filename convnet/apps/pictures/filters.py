"""Filters: a network's learned first-layer kernels, and classic kernels on a photograph."""
from pathlib import Path

import numpy as np

from convnet.apps.pictures.canvas import DIVERGING_CMAP, new_figure, save_figure
from convnet.checks import check_count
from convnet.errors import BadImageError

# The figure of up to FILTER_COLUMNS kernels: one row.
FILTERS_SIZE = (9.0, 2.4)
FILTER_COLUMNS = 8
_FILTERS_TITLE_HEIGHT = 0.9
_FILTER_ROW_HEIGHT = 1.5


def filters_size(n_kernels):
    """Return the (width, height) in inches of a figure of ``n_kernels`` first-layer kernels.

    Kernels are drawn ``FILTER_COLUMNS`` to a row; one row is ``FILTERS_SIZE``.
    """
    rows = -(-int(n_kernels) // FILTER_COLUMNS)
    return FILTERS_SIZE[0], _FILTERS_TITLE_HEIGHT + _FILTER_ROW_HEIGHT * max(rows, 1)


def _kernel_figure(kernels, channels, colour_bar):
    """A figure with one titled axes per kernel, ``FILTER_COLUMNS`` to a row.

    Parameters
    ----------
    kernels : array_like of shape (kh, kw, channels, c_new)
        Checked here: ValueError for another shape, or no kernel.
    channels : int
        The input channels the caller draws: 1 (grey) or 3 (colour).
    colour_bar : bool
        Keep a narrow column at the right for a colour bar.

    Returns
    -------
    kernels : ndarray of shape (kh, kw, channels, c_new), float64
    figure : matplotlib.figure.Figure
        ``filters_size(c_new)`` inches; its margins are set in inches, so
        that every row has the same height.
    axes : list of c_new Axes
        Kernel k's axes, without ticks, titled "filter k".
    bar : Axes or None
        The colour bar's axes, if asked for.
    """
    kernels = np.asarray(kernels, dtype=np.float64)
    if kernels.ndim != 4 or kernels.shape[2] != channels or kernels.shape[3] == 0:
        raise ValueError(f"kernels must have shape (kh, kw, {channels}, c_new), received "
                         f"{kernels.shape}")
    n_kernels = kernels.shape[3]
    figure = new_figure(filters_size(n_kernels))
    columns = min(n_kernels, FILTER_COLUMNS)
    rows = -(-n_kernels // columns)
    ratios = [1] * columns + ([0.08] if colour_bar else [])
    grid = figure.add_gridspec(rows, len(ratios), width_ratios=ratios)
    axes = []
    for k in range(n_kernels):
        ax = figure.add_subplot(grid[k // columns, k % columns])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"filter {k}", fontsize=10)
        axes.append(ax)
    bar = figure.add_subplot(grid[:, columns]) if colour_bar else None
    height = figure.get_size_inches()[1]
    figure.subplots_adjust(left=0.02, right=0.9, top=1 - 0.53 / height,
                           bottom=0.12 / height, wspace=0.15, hspace=0.35)
    return kernels, figure, axes, bar


def draw_first_layer_filters(kernels, path, title="First-layer filters (conv1)"):
    """Draw the kernels of a first convolutional layer with one input channel.

    Parameters
    ----------
    kernels : ndarray of shape (kh, kw, 1, c_new)
        The layer's weights (e.g. LeNet-5's conv1 kernel of shape (5, 5, 1, 6)).
        Every kernel shares one colour scale, symmetric around zero, on a
        diverging colour map: red weights are positive, blue negative.
        Kernels are drawn ``FILTER_COLUMNS`` to a row.
    path : str or Path
        Where the PNG goes: ``filters_size(c_new) * DPI`` pixels
        (``FILTERS_SIZE`` for up to ``FILTER_COLUMNS`` kernels).
    title : str, optional
        Heading; the number and size of the kernels and "shared colour
        scale" follow it.

    Returns
    -------
    Path
        ``path``, the grid of kernels and its colour bar of weights.
    """
    kernels, figure, axes, bar = _kernel_figure(kernels, 1, colour_bar=True)
    limit = float(np.abs(kernels).max()) or 1.0
    for k, ax in enumerate(axes):
        image = ax.imshow(kernels[:, :, 0, k], cmap=DIVERGING_CMAP, vmin=-limit, vmax=limit)
    figure.colorbar(image, cax=bar, label="weight")
    figure.suptitle(f"{title}: {len(axes)} kernels {kernels.shape[0]}x{kernels.shape[1]}, "
                    "shared colour scale")
    return save_figure(figure, path)


def colour_patches(kernels):
    """Kernels of three input channels as colours: grey is 0, each channel scaled alike.

    Parameters
    ----------
    kernels : ndarray of shape (kh, kw, 3, c_new)

    Returns
    -------
    ndarray of shape (c_new, kh, kw, 3), float64 in [0, 1]
        ``0.5 + W / (2 * limit)`` with ``limit`` the largest magnitude of
        all the weights: a kernel that adds red where it looks is red, one
        that subtracts red is cyan, and zero weights are mid-grey.
    """
    kernels = np.asarray(kernels, dtype=np.float64)
    limit = float(np.abs(kernels).max()) or 1.0
    return (0.5 + kernels / (2 * limit)).transpose(3, 0, 1, 2)


def draw_colour_filters(kernels, path, title="First-layer filters (conv1)"):
    """Draw the kernels of a first convolutional layer that reads colour images.

    Parameters
    ----------
    kernels : ndarray of shape (kh, kw, 3, c_new)
        The layer's weights, each kernel drawn as a small colour picture
        (:func:`colour_patches`): the colour it responds to most, on grey.
        Kernels are drawn ``FILTER_COLUMNS`` to a row.
    path : str or Path
        Where the PNG goes, of the same size as :func:`draw_first_layer_filters`'s
        for as many kernels.
    title : str, optional
        Heading; the number and size of the kernels and how their colours
        read follow it.

    Returns
    -------
    Path
        ``path``, the grid of colour patches (no colour bar: the heading
        says how their colours read).
    """
    kernels, figure, axes, _ = _kernel_figure(kernels, 3, colour_bar=False)
    for ax, patch in zip(axes, colour_patches(kernels)):
        ax.imshow(patch, interpolation="nearest")
    figure.suptitle(f"{title}: {len(axes)} kernels {kernels.shape[0]}x{kernels.shape[1]}x3 "
                    "as colours (grey = 0, one scale for all)")
    return save_figure(figure, path)


def draw_kernels(kernels, path, title="First-layer filters (conv1)"):
    """Draw first-layer kernels of one (grey) or three (colour) input channels.

    :func:`draw_first_layer_filters` for ``(kh, kw, 1, c_new)``,
    :func:`draw_colour_filters` for ``(kh, kw, 3, c_new)``; returns the path.
    """
    kernels = np.asarray(kernels)
    if kernels.ndim == 4 and kernels.shape[2] == 3:
        return draw_colour_filters(kernels, path, title)
    return draw_first_layer_filters(kernels, path, title)


def first_conv_kernels(model):
    """Return ``(name, kernels)`` of a model's first convolution, or None if it has none.

    ``kernels`` has shape (kh, kw, c_in, filters).
    """
    for name, weights in model.get_weights().items():
        if name.endswith("/kernel") and weights.ndim == 4:
            return name[:-len("/kernel")], weights
    return None


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
        Where the PNG goes, ``size * DPI`` pixels.
    title : str, optional
        Heading above the panels, which are titled by filter name.
    size : tuple of float, optional
        (width, height) of the figure in inches.

    Returns
    -------
    Path
        ``path``, the original and one panel per filter.
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
