#!/usr/bin/env python3
"""Draw AlexNet's architecture as blocks, one per layer, split over two GPUs.

Every number on the figure (shapes, kernel sizes, parameter counts) comes
from ``convnet.nn.architectures.ALEXNET``; nothing is typed here. Each block is a
feature map: its height grows with the map's side, its depth with the number
of channels the GPU holds. The upper row is GPU 1, the lower row GPU 2;
grey arrows stay on one GPU, orange arrows are the layers where the two GPUs
exchange activations.

Usage: ``python docs/figures/draw_alexnet.py [--out PATH]`` (default:
``0x07-cnn/alexnet.png``, beside the review it illustrates). The file is
written atomically.
"""
import argparse
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Polygon

from convnet.nn.architectures import ALEXNET, analyse, total_params
from convnet.storage import atomic_path

FIGSIZE = (15.0, 7.0)
DPI = 100
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "0x07-cnn" / "alexnet.png"

GPU_COLOURS = ("#4C78A8", "#54A24B")
INPUT_COLOUR = "#B0B0B0"
DENSE_COLOUR = ("#9ECAE9", "#A8D5A2")
CROSS_COLOUR = "#E45756"
SAME_COLOUR = "#555555"
ROW_Y = (27.0, 5.0)          # bottom of the GPU 1 and GPU 2 rows
SLANT = (0.45, 0.32)         # direction in which a map's width is drawn


def stages(architecture):
    """Group the layers: each conv/dense layer with the parameter-free layers after it.

    Returns
    -------
    list of (LayerReport, list of LayerReport)
    """
    groups = []
    for report in analyse(architecture):
        if report.layer.kind in ("conv", "dense"):
            groups.append((report, []))
        elif groups:
            groups[-1][1].append(report)
    return groups


def _shade(colour, factor):
    """Return ``colour`` (hex) lighter (factor > 1) or darker (factor < 1)."""
    rgb = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    if factor > 1:
        rgb = [c + (1 - c) * (factor - 1) for c in rgb]
    else:
        rgb = [c * factor for c in rgb]
    return tuple(min(max(c, 0.0), 1.0) for c in rgb)


def cuboid(ax, x, y, depth, height, width, colour):
    """Draw a box with front face depth x height and a slanted side of ``width``.

    Returns the (x, y) of the middle of the front face's right edge and of
    its left edge, where arrows attach.
    """
    dx, dy = SLANT[0] * width, SLANT[1] * width
    front = [(x, y), (x + depth, y), (x + depth, y + height), (x, y + height)]
    top = [(x, y + height), (x + depth, y + height), (x + depth + dx, y + height + dy),
           (x + dx, y + height + dy)]
    side = [(x + depth, y), (x + depth + dx, y + dy), (x + depth + dx, y + height + dy),
            (x + depth, y + height)]
    for face, factor in ((side, 0.75), (top, 1.35), (front, 1.0)):
        ax.add_patch(Polygon(face, closed=True, facecolor=_shade(colour, factor),
                             edgecolor="#333333", linewidth=0.8))
    return (x + depth + dx, y + height / 2 + dy / 2), (x, y + height / 2)


def _side(size):
    """Drawn height of a feature map whose side is ``size`` pixels."""
    return 2.0 + 9.0 * (size / 55.0) ** 0.6


def _depth(channels):
    """Drawn depth of a block holding ``channels`` channels."""
    return 0.5 + 0.9 * math.log2(max(channels, 2) / 8)


def _arrow(ax, start, end, colour, width=1.2):
    """Draw an arrow from ``start`` to ``end`` (data coordinates)."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10,
                                 color=colour, linewidth=width, shrinkA=1, shrinkB=1))


def _times(shape):
    """Return a shape as '55×55×48'."""
    return "×".join(str(dim) for dim in shape)


def _after_text(followers):
    """Describe the parameter-free layers that follow a stage, e.g. 'LRN, max 3×3/2'."""
    parts = []
    for report in followers:
        layer = report.layer
        if layer.kind == "lrn":
            parts.append("LRN")
        elif layer.kind == "pool":
            parts.append(f"max pool {_times(layer.kernel)}/{layer.stride[0]}")
        elif layer.kind == "dropout":
            parts.append(f"dropout {layer.rate:g}")
    return "\n".join(parts)


def draw(architecture, path):
    """Draw ``architecture`` (two devices) and save the PNG to ``path`` atomically."""
    devices = architecture.devices
    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, 142)
    ax.set_ylim(-9, 61)
    ax.axis("off")

    total = total_params(architecture)
    ax.text(71, 58.5, f"AlexNet (Krizhevsky, Sutskever & Hinton, 2012): {total:,} parameters",
            ha="center", va="center", fontsize=15, weight="bold")
    ax.text(71, 55.3, "upper row: GPU 1, lower row: GPU 2; each block is one GPU's half "
            "of a layer's output (height × width × channels)   ·   "
            "grey arrows stay on a GPU, red arrows cross between GPUs",
            ha="center", va="center", fontsize=9.5, color="#444444")
    for device, row in enumerate(ROW_Y):
        ax.text(1.0, row + 6, f"GPU {device + 1}", rotation=90, ha="left", va="center",
                fontsize=11, color=GPU_COLOURS[device], weight="bold")

    in_height = _side(architecture.input_shape[0])
    in_y = (ROW_Y[0] + ROW_Y[1] + 12) / 2 - in_height / 2
    # The image is drawn face on (height x width), its 3 channels as a thin slab.
    in_width = in_height * 0.6
    right, _ = cuboid(ax, 4.0, in_y, in_width, in_height, 2.0, INPUT_COLOUR)
    ax.text(4.0 + in_width / 2, in_y + in_height / 2, "RGB\nimage", ha="center",
            va="center", fontsize=10, color="white", weight="bold")
    ax.text(4.0 + in_width / 2, in_y - 1.0, f"input\n{_times(architecture.input_shape)}",
            ha="center", va="top", fontsize=10)
    previous = [right] * devices   # where each GPU's arrow starts
    previous_split = False         # the image is read whole by both GPUs

    x = 24.0
    column = 15.2
    for report, followers in stages(architecture):
        layer = report.layer
        pooled = [r.output_shape for r in followers if r.layer.kind == "pool"]
        conv = layer.kind == "conv"
        per_device = (*report.output_shape[:-1], report.output_shape[-1] // devices)
        lefts, rights = [], []
        for device, row in enumerate(ROW_Y):
            if conv:
                height = _side(per_device[0])
                depth = _depth(per_device[-1])
                width = height * 0.8
                colour = GPU_COLOURS[device]
            else:
                height = 4.0 + 2.0 * math.log2(per_device[0] / 256)
                depth, width, colour = 1.0, 1.0, DENSE_COLOUR[device]
            y = row + 6 - height / 2
            right, left = cuboid(ax, x, y, depth, height, width, colour)
            rights.append(right)
            lefts.append(left)
            ax.text(x + depth / 2, y - 0.8, _times(per_device), ha="center", va="top",
                    fontsize=8.5, color="#222222")
        # Arrows into this stage: crossing when the layer reads both GPUs' maps.
        reads_both = previous_split and layer.groups == 1
        for device in range(devices):
            _arrow(ax, previous[device], lefts[device], SAME_COLOUR)
            if reads_both:
                _arrow(ax, previous[1 - device], lefts[device], CROSS_COLOUR, width=1.4)
        previous, previous_split = rights, True

        if conv:
            kh, kw = layer.kernel
            kernel = f"{layer.units} × {kh}×{kw}×{report.input_shape[-1] // layer.groups}"
            hyper = f"{kernel}\nstride {layer.stride[0]}, {layer.padding}"
        else:
            hyper = f"{layer.units} units\n{layer.activation}"
        ax.text(x + 1.5, 51.5, layer.name, ha="center", va="center", fontsize=12,
                weight="bold")
        ax.text(x + 1.5, 48.3, hyper, ha="center", va="center", fontsize=8.5,
                linespacing=1.3)
        after = _after_text(followers)
        if pooled:
            after += f"\n→ {_times(pooled[-1])}"
        ax.text(x + 1.5, 1.5, after, ha="center", va="top", fontsize=8.5,
                color="#444444", linespacing=1.3)
        ax.text(x + 1.5, -5.5, f"{report.params:,}\nparameters", ha="center", va="center",
                fontsize=8.5, color="#7A3E9D", linespacing=1.2)
        x += column
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def main(argv=None):
    """Parse the command line and draw the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", metavar="PATH", default=str(DEFAULT_OUT),
                        help="PNG file to write (default: 0x07-cnn/alexnet.png)")
    args = parser.parse_args(argv)
    print(draw(ALEXNET, args.out))


if __name__ == "__main__":
    main()
