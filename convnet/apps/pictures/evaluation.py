"""How a trained model does on labelled images: predictions, the confusion matrix, mistakes."""
from pathlib import Path

import numpy as np

from convnet.apps.pictures.canvas import (
    CORRECT_COLOUR,
    WRONG_COLOUR,
    names_or_digits,
    new_figure,
    save_figure,
)
from convnet.apps.pictures.filters import draw_kernels, first_conv_kernels
from convnet.apps.pictures.maps import draw_feature_maps, model_maps
from convnet.checks import check_count
from convnet.errors import BadOptionError

PREDICTIONS_SIZE = (8.0, 9.0)
CONFUSION_SIZE = (7.5, 6.5)


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


def _pictures(images):
    """``images`` as (n, h, w) grey or (n, h, w, 3) colour; ValueError for other shapes."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    colour = images.ndim == 4 and images.shape[3] == 3
    if not (images.ndim == 3 or colour) or len(images) > 25:
        raise ValueError(f"images must have shape (n, h, w), (n, h, w, 1) or (n, h, w, 3) "
                         f"with n <= 25, received {images.shape}")
    return images


def draw_predictions(images, y_pred, y_true, path, names=None,
                     title="Predictions"):
    """Draw a grid of images, each titled "prediction (truth)".

    Parameters
    ----------
    images : ndarray of shape (n, h, w), (n, h, w, 1) or (n, h, w, 3)
        At most 25 images, drawn on a 5 x 5 grid: grey ones dark on light
        (as a digit is written), colour ones as they are.
    y_pred, y_true : ndarray of int, shape (n,)
        Predicted and true labels. Correct predictions are titled in blue,
        wrong ones in red.
    path : str or Path
        Where the PNG goes, ``PREDICTIONS_SIZE * DPI`` pixels.
    names : sequence of str, optional
        Class names used in the titles (default: the digits 0 to 9). A
        title longer than a picture's width is written on two lines.
    title : str, optional
        Heading; a second line says how to read the pictures' titles.

    Returns
    -------
    Path
        ``path``, the grid of titled pictures.
    """
    names = names_or_digits(names)
    images = _pictures(images)
    if len(y_pred) != len(images) or len(y_true) != len(images):
        raise ValueError(f"y_pred and y_true must have {len(images)} labels, "
                         f"received {len(y_pred)} and {len(y_true)}")
    # About 14 characters of 11-point text fit above a picture of the 5 x 5 grid.
    long_titles = max(len(names[p]) + len(names[t]) for p, t in zip(y_pred, y_true)) > 11 \
        if len(images) else False
    figure = new_figure(PREDICTIONS_SIZE)
    axes = figure.subplots(5, 5)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(images):
            continue
        if images.ndim == 4:
            ax.imshow(np.clip(images[k], 0, 1), interpolation="nearest")
        else:
            ax.imshow(images[k], cmap="gray_r")
        correct = y_pred[k] == y_true[k]
        separator = "\n" if long_titles else " "
        ax.set_title(f"{names[y_pred[k]]}{separator}({names[y_true[k]]})",
                     fontsize=9 if long_titles else 11,
                     color=CORRECT_COLOUR if correct else WRONG_COLOUR)
    figure.suptitle(f"{title}\nprediction (truth): blue = correct, red = wrong", fontsize=12)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.86,
                           hspace=0.5 if long_titles else 0.35)
    return save_figure(figure, path)


def draw_confusion_matrix(matrix, path, names=None, title="Confusion matrix"):
    """Draw a confusion matrix with every count written in its cell.

    Parameters
    ----------
    matrix : ndarray of int, shape (n_classes, n_classes)
        As returned by :func:`confusion_matrix`: rows are true classes,
        columns predicted classes.
    path : str or Path
        Where the PNG goes, ``CONFUSION_SIZE * DPI`` pixels.
    names : sequence of str, optional
        Class names for the axis labels (default: the digits 0 to 9).
    title : str, optional
        Heading; the accuracy (trace / total) is appended.

    Returns
    -------
    Path
        ``path``, the matrix with its counts.
    """
    names = names_or_digits(names)
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


def draw_checkpoint_pictures(model, label, X_valid, Y_valid, index, out, names, mistakes=False):
    """Draw the pictures of a trained model on the validation split; return their paths.

    Writes into ``out``: ``filters.png`` (the first convolution's kernels:
    grey squares for one input channel, colour patches for three; none for
    a network without convolution), ``feature_maps_<index>.png`` (every
    layer's output for validation image ``index``), ``predictions.png`` (25
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
    if first is not None:
        paths.append(draw_kernels(first[1], out / "filters.png",
                                  title=f"{first[0]} filters of {label}"))

    paths.append(draw_feature_maps(
        model_maps(model, X_valid[index]), out / f"feature_maps_{index}.png", names=names,
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


def class_probabilities(model, X):
    """Return one probability per class for each image, whatever the output's activation.

    Parameters
    ----------
    model : Sequential
    X : ndarray of shape (m, h, w, c)

    Returns
    -------
    ndarray of shape (m, k)
        A softmax's probabilities as they are; a sigmoid's probability p of
        class 1 as the two columns ``(1 - p, p)``.
    """
    probabilities = model.predict_proba(X)
    if probabilities.shape[1] == 1:
        return np.concatenate([1 - probabilities, probabilities], axis=1)
    return probabilities


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
