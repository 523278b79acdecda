"""Training curves: loss and accuracy per epoch, training against validation."""
import numpy as np

from convnet.apps.pictures.canvas import new_figure, save_figure
from convnet.checks import check_count

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
HISTORY_SIZE = (10.0, 4.0)

TRAIN_COLOUR = "tab:blue"
VALID_COLOUR = "tab:orange"


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
