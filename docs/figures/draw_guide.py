"""Draw the pictures of docs/guide.md into docs/figures/guide/.

Usage (from the repository root), or ``make guide``::

    convnet train --epochs 3 --out runs/guide
    .venv/bin/python docs/figures/draw_guide.py --run runs/guide

It also prints the numbers section 6 quotes (accuracies, losses, the
filters' statistics, the frequent confusions), measured on the run.

The small diagrams (a convolution, 'same' padding with stride 2, pooling
forward and backward) are computed with the project's own ``convnet.nn.ops``;
the pictures of a trained network come from the checkpoint and history in
``--run``, drawn by the same functions as ``convnet show``. Every PNG is
reduced to a 128-colour palette (no dithering) so the folder stays small.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.patches import Rectangle
from PIL import Image

from convnet import conv_forward, pool_backward, pool_forward
from convnet.apps.pictures import plots
from convnet.data import load_mnist
from convnet.nn.lenet5 import LeNet5
from convnet.training.trainer import load_model

HERE = Path(__file__).resolve().parent / "guide"
FEATURE_MAP_INDEX = 0


def _identity(Z):
    """Activation that returns its input."""
    return Z


WINDOW_TINTS = ("#f8d0d0", "#fde2c0", "#d4eed0", "#cfe0f3")


def _grid(ax, values, title, boxes=(), shaded=None, tint=None, bold=None, fmt="{:g}"):
    """Draw a small matrix with its numbers written in the cells.

    Parameters
    ----------
    ax : matplotlib Axes
    values : ndarray of shape (h, w)
    title : str
    boxes : sequence of (row, col, height, width, colour)
        Rectangles outlining windows of the matrix.
    shaded : ndarray of bool, shape (h, w), optional
        Cells drawn in grey (e.g. zero padding).
    tint : ndarray of int, shape (h, w), optional
        Index into ``WINDOW_TINTS`` of each cell's background (pooling windows).
    bold : ndarray of bool, shape (h, w), optional
        Cells whose number is written in bold.
    """
    h, w = values.shape
    colours = np.ones((h, w, 3))
    if shaded is not None:
        colours[shaded] = 0.85
    if tint is not None:
        rgb = np.array([[int(code[k:k + 2], 16) / 255 for k in (1, 3, 5)]
                        for code in WINDOW_TINTS])
        colours = rgb[tint]
    ax.imshow(colours)
    for r in range(h):
        for c in range(w):
            weight = "bold" if bold is not None and bold[r, c] else "normal"
            ax.text(c, r, fmt.format(values[r, c]), ha="center", va="center", fontsize=11,
                    fontweight=weight)
    # Boxes are drawn slightly inside their cells so that neighbouring windows
    # keep two distinct outlines.
    inset = 0.07
    for row, col, height, width, colour in boxes:
        ax.add_patch(Rectangle((col - 0.5 + inset, row - 0.5 + inset), width - 2 * inset,
                               height - 2 * inset, fill=False, edgecolor=colour,
                               linewidth=2.5))
    ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, h, 1), minor=True)
    ax.grid(which="minor", color="black", linewidth=0.6)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_title(title, fontsize=11)


def draw_convolution(path):
    """A 5x5 image, a 3x3 vertical-edge kernel and their 'valid' correlation."""
    image = np.array([[0, 0, 1, 1, 1],
                      [0, 0, 1, 1, 1],
                      [0, 0, 1, 1, 1],
                      [0, 0, 0, 1, 1],
                      [0, 0, 0, 1, 1]], dtype=float)
    kernel = np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], dtype=float)
    out = conv_forward(image[None, :, :, None], kernel[:, :, None, None],
                       np.zeros((1, 1, 1, 1)), _identity, padding="valid")[0, :, :, 0]
    figure = plots.new_figure((10.0, 3.6))
    axes = figure.subplots(1, 3, width_ratios=[5, 3, 3])
    _grid(axes[0], image, "input A (5x5)", boxes=[(0, 0, 3, 3, "tab:red"),
                                                  (2, 2, 3, 3, "tab:blue")])
    _grid(axes[1], kernel, "kernel W (3x3)")
    _grid(axes[2], out, "output Z (3x3), 'valid'", boxes=[(0, 0, 1, 1, "tab:red"),
                                                         (2, 2, 1, 1, "tab:blue")])
    figure.suptitle("Z[y, x] = sum over i, j of A[y + i, x + j] * W[i, j]   "
                    "(red window -> red output, blue -> blue)", fontsize=11)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=0.8, wspace=0.15)
    return plots.save_figure(figure, path)


def draw_same_stride(path):
    """The specification's example: 3x3 ones, 3x3 kernel of ones, 'same', stride 2."""
    image = np.ones((3, 3))
    out = conv_forward(image[None, :, :, None], np.ones((3, 3, 1, 1)),
                       np.zeros((1, 1, 1, 1)), _identity, padding="same",
                       stride=(2, 2))[0, :, :, 0]
    padded = np.pad(image, 2)
    figure = plots.new_figure((8.0, 3.9))
    axes = figure.subplots(1, 2, width_ratios=[5, 3])
    _grid(axes[0], padded, "input 3x3 of ones, padded by 2 on each side",
          shaded=padded == 0,
          boxes=[(0, 0, 3, 3, "tab:red"), (0, 2, 3, 3, "tab:orange"),
                 (2, 2, 3, 3, "tab:blue")])
    _grid(axes[1], out, "output 3x3 (stride 2)",
          boxes=[(0, 0, 1, 1, "tab:red"), (0, 1, 1, 1, "tab:orange"),
                 (1, 1, 1, 1, "tab:blue")])
    figure.suptitle("'same' padding with stride (2, 2): total padding (3 - 1) * 2 + 3 - 3 = 4",
                    fontsize=11)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=0.8, wspace=0.15)
    return plots.save_figure(figure, path)


def draw_pooling(path):
    """Max and average pooling 2x2/2 on a 4x4 input, forward and backward."""
    image = np.array([[1, 3, 2, 0],
                      [3, 0, 1, 1],
                      [4, 2, 0, 5],
                      [1, 2, 6, 1]], dtype=float)
    dA = np.array([[1, 2], [3, 4]], dtype=float)
    batch = image[None, :, :, None]
    window = {"kernel_shape": (2, 2), "stride": (2, 2)}
    results = {mode: (pool_forward(batch, mode=mode, **window)[0, :, :, 0],
                      pool_backward(dA[None, :, :, None], batch, mode=mode, **window)[0, :, :, 0])
               for mode in ("max", "avg")}
    # Each 2x2 window of the input and the output cell it produces share a colour.
    tint_in = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    tint_out = np.array([[0, 1], [2, 3]])
    is_max = results["max"][1] != 0
    figure = plots.new_figure((12.0, 3.4))
    axes = figure.subplots(1, 6, width_ratios=[4, 2, 2, 2, 4, 4])
    _grid(axes[0], image, "input A_prev", tint=tint_in, bold=is_max)
    _grid(axes[1], results["max"][0], "max", tint=tint_out)
    _grid(axes[2], results["avg"][0], "avg", tint=tint_out, fmt="{:.2f}")
    _grid(axes[3], dA, "upstream dA", tint=tint_out)
    _grid(axes[4], results["max"][1], "dA_prev, max\n(both tied 3s get 1)", tint=tint_in,
          bold=is_max)
    _grid(axes[5], results["avg"][1], "dA_prev, avg\n(dA / 4 to every cell)", tint=tint_in)
    figure.suptitle("Pooling 2x2 with stride 2: forward (max, avg) and backward", fontsize=11)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.03, top=0.78, wspace=0.2)
    return plots.save_figure(figure, path)


def draw_trained(run, X_valid, Y_valid):
    """The pictures of ``convnet show`` and the training curves, for the guide."""
    model = load_model(run / "checkpoint.npz")[0]
    history = json.loads((run / "history.json").read_text())
    # The NumPy trainer measures the untrained network too (epoch 0), so its
    # metric lists are one longer than its list of epoch times.
    first_epoch = 1 - (len(history["loss"]) - len(history["epoch_seconds"]))
    paths = [plots.plot_history(history, HERE / "history.png", first_epoch=first_epoch),
             plots.draw_first_layer_filters(model.get_weights()["conv1/kernel"], HERE / "filters.png",
                                            title="conv1 filters after training")]
    image = X_valid[FEATURE_MAP_INDEX:FEATURE_MAP_INDEX + 1]
    maps = [(name, activation[0]) for name, activation in model.feature_maps(image)]
    paths.append(plots.draw_feature_maps(
        maps, HERE / "feature_maps.png",
        title=f"Every layer's output for validation image {FEATURE_MAP_INDEX} "
              f"(truth: {Y_valid[FEATURE_MAP_INDEX]})"))
    y_pred = model.predict_proba(X_valid).argmax(axis=1)
    # Show the first mistakes next to correct predictions: mistakes teach more.
    wrong = np.flatnonzero(y_pred != Y_valid)[:10]
    right = np.flatnonzero(y_pred == Y_valid)[:25 - len(wrong)]
    shown = np.sort(np.concatenate([wrong, right]))
    paths.append(plots.draw_predictions(
        X_valid[shown], y_pred[shown], Y_valid[shown], HERE / "predictions.png",
        title=f"Validation: {len(right)} correct predictions and the first {len(wrong)} mistakes"))
    paths.append(plots.draw_confusion_matrix(
        plots.confusion_matrix(Y_valid, y_pred), HERE / "confusion_matrix.png",
        title="Validation"))
    return paths


def guide_numbers(run, X_valid, Y_valid, X_test, Y_test):
    """Return the lines of the numbers section 6 of the guide quotes, for this run."""
    model = load_model(run / "checkpoint.npz")[0]
    history = json.loads((run / "history.json").read_text())
    with np.load(run / "checkpoint.npz", allow_pickle=False) as arrays:
        seed = int(arrays["seed"])
    accuracies = ", ".join(f"{a:.2%}" for a in history["val_accuracy"][1:])
    _, test_accuracy = model.evaluate(X_test, Y_test)
    seconds = ", ".join(f"{t:.1f}" for t in history["epoch_seconds"])
    kernels = model.get_weights()["conv1/kernel"][:, :, 0, :].astype(np.float64)
    initial = LeNet5(seed=seed).get_weights()["conv1/kernel"][:, :, 0, :].astype(np.float64)
    correlations = [np.corrcoef(kernels[..., k].ravel(), initial[..., k].ravel())[0, 1]
                    for k in range(kernels.shape[-1])]
    norm_changes = [np.linalg.norm(kernels[..., k]) / np.linalg.norm(initial[..., k]) - 1
                    for k in range(kernels.shape[-1])]
    sums = kernels.sum(axis=(0, 1))
    maps = dict(model.feature_maps(X_valid[FEATURE_MAP_INDEX:FEATURE_MAP_INDEX + 1]))
    conv1_means = maps["conv1"][0].mean(axis=(0, 1))
    empty_relu2 = int((maps["conv2/relu"][0].max(axis=(0, 1)) == 0).sum())
    logits = maps["dense3"][0]
    y_pred = model.predict_proba(X_valid).argmax(axis=1)
    matrix = plots.confusion_matrix(Y_valid, y_pred)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    worst = np.argsort(off, axis=None)[::-1][:4]
    confusions = ", ".join(f"{t} read as {p} ({off[t, p]})"
                           for t, p in zip(*np.unravel_index(worst, off.shape)))
    epochs = (f"epoch 0: loss {history['loss'][0]:.2f}, accuracy {history['accuracy'][0]:.1%}; "
              f"last epoch: training loss {history['loss'][-1]:.3f}, validation loss "
              f"{history['val_loss'][-1]:.3f}")
    filters = ("conv1 kernels against their initial values: correlation "
               f"{min(correlations):.2f} to {max(correlations):.2f}, norm changed by "
               f"{min(norm_changes):+.0%} to {max(norm_changes):+.0%}; largest sum: filter "
               f"{int(sums.argmax())} ({sums.max():+.2f}), most negative: filter "
               f"{int(sums.argmin())} ({sums.min():+.2f})")
    feature_maps = (f"feature maps of validation image {FEATURE_MAP_INDEX} (truth "
                    f"{Y_valid[FEATURE_MAP_INDEX]}): predicted {int(logits.argmax())}, top logit "
                    f"{logits.max():.1f}; conv1 channel with the most negative mean: "
                    f"{int(conv1_means.argmin())}; relu2 channels all zero: {empty_relu2} of 16")
    return [
        f"run: {run}, seed {seed}, {len(history['epoch_seconds'])} epochs",
        f"validation accuracy after each epoch: {accuracies}; test accuracy {test_accuracy:.2%}",
        f"seconds per epoch: {seconds}",
        epochs,
        filters,
        feature_maps,
        f"most frequent confusions on validation: {confusions}",
    ]


def draw_classic(path):
    """The classic kernels on the face in matplotlib's sample photograph."""
    photo = plots.load_grayscale(plots.sample_photo_path())
    # The face and the cap, at full resolution: fine edges stay visible.
    face = photo[40:340, 110:390]
    return plots.draw_classic_filters(face, plots.apply_classic_filters(face), path,
                                      title="Classic 3x3 kernels applied with conv_forward",
                                      size=(9.0, 6.6))


def shrink(path):
    """Re-save a PNG with a 128-colour palette (no dithering) (the figures have few colours)."""
    with Image.open(path) as picture:
        palette = picture.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT,
                                                  dither=Image.Dither.NONE)
    palette.save(path, optimize=True)


def main(argv=None):
    """Draw every guide picture; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/lenet5-numpy"),
                        help="folder with checkpoint.npz and history.json of a training run")
    args = parser.parse_args(argv)
    if not (args.run / "checkpoint.npz").is_file() or not (args.run / "history.json").is_file():
        print(f"draw_guide: {args.run} lacks checkpoint.npz or history.json; "
              "train first with `convnet train --epochs 3 --out runs/guide`", file=sys.stderr)
        return 2
    _, _, X_valid, Y_valid, X_test, Y_test = load_mnist()
    paths = [draw_convolution(HERE / "convolution.png"),
             draw_same_stride(HERE / "same_stride2.png"),
             draw_pooling(HERE / "pooling.png"),
             draw_classic(HERE / "classic_filters.png")]
    paths += draw_trained(args.run, X_valid, Y_valid)
    for path in paths:
        shrink(path)
        print(f"{path.relative_to(HERE.parent.parent.parent)}  {path.stat().st_size // 1024} KiB")
    print("The numbers section 6 quotes:")
    for line in guide_numbers(args.run, X_valid, Y_valid, X_test, Y_test):
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
