"""``convnet train --serve``: the page's Watch-training view fed by a running training.

The trainer calls a :class:`TrainingWatcher` after every step; every few
steps it copies the trained weights into the model the page serves,
measures the accuracy on a slice of the validation split and publishes the
loss, that accuracy and the first layer's kernels to a :class:`TrainingFeed`,
which the server streams to every open page as server-sent events.
When the run ends, :meth:`TrainingWatcher.finish` (or ``stop``, when it
failed or was interrupted) publishes the last event, ``{"event": "finished",
...}`` with the final figures (or ``{"event": "stopped", "reason": ...}``):
each stream sends it after the history and ends, and a page that connects
later receives the history and that event again. :func:`watch_training`
starts the page for a training run.
"""
import math
import threading

import numpy as np

from convnet.apps.page.browse import SplitBrowser
from convnet.apps.page.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    LOOPBACK_HOSTS,
    LOOPBACK_NAMES,
    ServerThread,
    build_app,
)
from convnet.apps.page.views import NetworkView
from convnet.checks import check_count

# Decimals kept for the first-layer kernels streamed while training (drawn
# only); the Draw view's maps are sent one byte per value instead.
DRAWN_DECIMALS = 5


class TrainingFeed:
    """Training progress published by the trainer and streamed to every open page.

    ``publish`` may be called from any thread; each page listening on
    ``/api/train/events`` receives every event as a server-sent event.
    Events are kept (the last ``keep``) so a page opened late draws the
    curve from the start.
    """

    def __init__(self, keep=2000):
        self._events = []
        self._keep = keep
        self._condition = threading.Condition()
        self._count = 0
        self._closed = False
        self._final = None

    @property
    def count(self):
        """How many events were published (the last one's number)."""
        return self._count

    @property
    def final(self):
        """The run's last event (finished or stopped), or None while it runs."""
        return self._final

    def finish(self, event):
        """Publish the run's last event: every stream sends it after the others, then ends."""
        with self._condition:
            self._final = event
            self._condition.notify_all()

    @property
    def closed(self):
        """True once :meth:`close` was called: the streams end."""
        return self._closed

    def close(self):
        """End every stream: the training is over and the server stops."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def publish(self, event):
        """Add ``event`` (a JSON-ready dict) and wake the listeners."""
        with self._condition:
            self._events.append(event)
            del self._events[:-self._keep]
            self._count += 1
            self._condition.notify_all()

    def since(self, count, timeout):
        """Return ``(events after the first count published, new count)``, waiting up to ``timeout`` s."""
        events, count, _ = self.read(count, timeout)
        return events, count

    def read(self, count, timeout):
        """Like :meth:`since`, with the last event: ``(events, new count, final or None)``.

        ``final`` is given only with every event published before it, so a
        stream that sends the events and then ``final`` misses none.
        """
        with self._condition:
            if self._count <= count and not self._closed and self._final is None:
                self._condition.wait(timeout)
            new = self._count - count
            events = self._events[-new:] if new > 0 else []
            return events[-self._keep:], self._count, self._final


def _finite(value):
    """``value`` as a float, or None when it is missing or not finite (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def finished_event(step, epochs, valid_accuracy, test_accuracy, files):
    """Return the last event of a run that ended well.

    Parameters
    ----------
    step : int
        Training steps done by this run.
    epochs : int
        The last epoch trained (counting those of a resumed run).
    valid_accuracy, test_accuracy : float
        The final accuracies on the whole validation and test splits.
    files : dict of str to str
        What the run wrote, by kind (``checkpoint``, ``history``, ...).

    Returns
    -------
    dict
        ``{"event": "finished", "step", "epochs", "valid_accuracy",
        "test_accuracy", "checkpoint" (None if none was written), "files"}``.
    """
    files = {str(kind): str(path) for kind, path in dict(files).items()}
    return {"event": "finished", "step": int(step), "epochs": int(epochs),
            "valid_accuracy": _finite(valid_accuracy), "test_accuracy": _finite(test_accuracy),
            "checkpoint": files.get("checkpoint"), "files": files}


def stopped_event(step, reason):
    """Return the last event of a run that failed or was interrupted: ``reason`` is one line."""
    return {"event": "stopped", "step": int(step), "reason": str(reason)}


def training_event(step, epoch, loss, accuracy, kernels):
    """Return the event published every few steps: numbers and the first layer's kernels.

    Parameters
    ----------
    step, epoch : int
    loss : float
        Mean training loss over the steps since the previous event; a loss that is
        not a finite number (no step yet, or a diverged run) is sent as None, since
        JSON has no NaN.
    accuracy : float or None
        Accuracy on a fixed slice of the validation split.
    kernels : ndarray of shape (kh, kw, c_in, c_new), or None
        The first convolution's kernels now; None for a network without one.

    Returns
    -------
    dict
        ``event`` is ``"progress"``; ``kernels`` holds one list of kh * kw * c_in
        numbers per kernel, channel last, and ``kernel_shape`` the four sizes;
        both are empty without kernels.
    """
    event = {"event": "progress", "step": int(step), "epoch": int(epoch),
             "loss": _finite(loss), "accuracy": _finite(accuracy),
             "kernels": [], "kernel_shape": []}
    if kernels is not None:
        rounded = np.round(np.asarray(kernels, dtype=np.float64), DRAWN_DECIMALS)
        event["kernels"] = [rounded[..., k].ravel().tolist() for k in range(rounded.shape[3])]
        event["kernel_shape"] = list(rounded.shape)
    return event


class TrainingWatcher:
    """The trainer's per-step callback behind ``convnet train --serve``.

    Every ``every`` steps it copies the trained weights into the served
    model (so the Draw view shows the network as it learns), measures the
    accuracy on a fixed slice of the validation split and publishes the
    mean loss of those steps, that accuracy and conv1's kernels to ``feed``.

    Parameters
    ----------
    model : Sequential
        The model being trained (only read, between steps).
    view : NetworkView
        The served network: a separate model, so that requests never touch
        the layers the trainer is using.
    feed : TrainingFeed
    X_valid : ndarray of shape (m, 28, 28)
    Y_valid : ndarray of shape (m,)
        The validation slice whose accuracy is reported.
    every : int
        Steps between two events.
    browser : SplitBrowser, optional
        The Browse view's predictions, computed again after the weights change.
    """

    def __init__(self, model, view, feed, X_valid, Y_valid, every=50, browser=None):
        check_count("every", every)
        self.model = model
        self.view = view
        self.feed = feed
        self.X_valid, self.Y_valid = X_valid, Y_valid
        self.every = every
        self.browser = browser
        self.step = 0
        self._losses = []

    def __call__(self, epoch, loss):
        """Record one step's mean loss; publish an event every ``every`` steps."""
        self.step += 1
        self._losses.append(float(loss))
        if self.step % self.every == 0:
            self.publish(epoch)

    def publish(self, epoch):
        """Copy the weights into the served model and publish an event now."""
        with self.view.lock:
            self.view.model.set_weights(self.model.get_weights())
            accuracy = None
            if len(self.X_valid):
                _, accuracy = self.view.model.evaluate(self.X_valid, self.Y_valid)
            kernels = self.view.first_kernels()
        if self.browser is not None:
            self.browser.forget()
        loss = float(np.mean(self._losses)) if self._losses else float("nan")
        self._losses = []
        self.feed.publish(training_event(self.step, epoch, loss, accuracy, kernels))

    def finish(self, epochs, valid_accuracy, test_accuracy, files):
        """Publish the run's last event: it ended well (see :func:`finished_event`)."""
        self.feed.finish(finished_event(self.step, epochs, valid_accuracy, test_accuracy, files))

    def stop(self, reason):
        """Publish the run's last event: it failed or was interrupted, for ``reason``."""
        if self.feed.final is None:
            self.feed.finish(stopped_event(self.step, reason))


def watch_training(model, X_valid, Y_valid, host=DEFAULT_HOST, port=DEFAULT_PORT, every=50,
                   sample=500, *, class_names=None, dataset=None, load=None):
    """Serve the page for a training run; return ``(on_step callback, server thread)``.

    Parameters
    ----------
    model : Sequential
        The model being trained; the page serves a copy of it
        (:class:`NetworkView`), refreshed by the callback.
    X_valid : ndarray of shape (m, h, w) or (m, h, w, c)
    Y_valid : ndarray of shape (m,)
        The validation split; its first ``sample`` images give the accuracy.
    host, port : str, int
        Where the page listens.
    every : int
        Steps between two published events.
    class_names : sequence of str, optional
        The classes' display names (default: the ten digits).
    dataset : str, optional
        The dataset's name, shown on the page.
    load : callable, optional
        Returns the six arrays of the dataset (as ``load_dataset``) for the
        Browse view; without it that view says no data was given.

    Returns
    -------
    watcher : TrainingWatcher
        The callback, reporting the accuracy on the first ``sample``
        validation images.
    server : ServerThread
        Already listening; stopping it ends the pages' streams.

    Raises
    ------
    BadOptionError
        When ``host``:``port`` cannot be bound (a busy port, say).
    """
    view = NetworkView(model) if class_names is None else NetworkView(model, class_names)
    view.dataset = dataset
    browser = None if load is None else SplitBrowser(view, load)
    feed = TrainingFeed()
    watcher = TrainingWatcher(model, view, feed, X_valid[:sample], Y_valid[:sample], every,
                              browser=browser)
    app = build_app(view, browser=browser, feed=feed, checkpoint="(training)",
                    allowed_hosts=LOOPBACK_NAMES if host in LOOPBACK_HOSTS else None)
    server = ServerThread(app, host, port)
    return watcher, server.start()
