"""The Browse view's data: a split's images and the model's predictions on them.

:class:`SplitBrowser` computes the model's predictions on the validation and
test splits once each (again after ``forget``, when the served weights
change), and serves the summary (confusion matrix, accuracy), the images of
a cell of the matrix or the mistakes, and single images for the other views
to take as their input.
"""
import base64
import threading

import numpy as np

from convnet.apps.page.views import two_classes

BROWSE_SPLITS = ("valid", "test")
BROWSE_LIMIT = 100


class SplitBrowser:
    """The model's predictions on the validation and test splits, computed once each.

    Parameters
    ----------
    view : NetworkView
    load : callable
        Returns ``(X_train, Y_train, X_valid, Y_valid, X_test, Y_test)``;
        called on the first request only.
    """

    def __init__(self, view, load):
        self.view = view
        self._load = load
        self._arrays = None
        self._splits = {}
        self._lock = threading.Lock()

    def _images_of(self, name):
        """``(images (m, h, w[, c]), labels (m,))`` of split ``name``, loaded on first use."""
        if name not in BROWSE_SPLITS:
            raise ValueError(f"split must be one of {', '.join(BROWSE_SPLITS)}, received {name!r}")
        if self._arrays is None:
            self._arrays = self._load()
        return self._arrays[2:4] if name == "valid" else self._arrays[4:6]

    def forget(self):
        """Drop the predictions computed so far: the served weights have changed."""
        with self._lock:
            self._splits = {}

    def split(self, name):
        """Return ``(images (m, h, w[, c]), labels (m,), predictions (m,), probabilities (m, k))``.

        ``k`` is the number of classes (2 for a sigmoid output: 1 - p and p).
        """
        with self._lock:
            if name not in self._splits:
                images, labels = self._images_of(name)
                with self.view.lock:
                    probabilities = two_classes(self.view.model.predict_proba(images))
                self._splits[name] = (images, labels, probabilities.argmax(axis=1),
                                      probabilities)
            return self._splits[name]

    def image(self, name, index):
        """Image ``index`` of split ``name``, as the model takes it: (h, w, c) float32.

        Raises
        ------
        ValueError
            For an unknown split or an index outside it.
        """
        with self._lock:
            images, _ = self._images_of(name)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
                or not 0 <= index < len(images):
            raise ValueError(f"index must be an integer from 0 to {len(images) - 1} for the "
                             f"{name} split, received {index!r}")
        return np.asarray(images[index], dtype=self.view.dtype).reshape(self.view.input_shape)

    def summary(self, name):
        """Confusion matrix (true x predicted), accuracy and size of split ``name``."""
        from convnet.apps.pictures.plots import confusion_matrix
        _, labels, predictions, _ = self.split(name)
        matrix = confusion_matrix(labels, predictions, n_classes=len(self.view.class_names))
        return {"split": name, "count": len(labels), "matrix": matrix.tolist(),
                "accuracy": float(np.trace(matrix) / max(len(labels), 1)),
                "mistakes": int(len(labels) - np.trace(matrix)),
                "class_names": list(self.view.class_names)}

    def cell(self, name, true, predicted, limit=BROWSE_LIMIT):
        """The first ``limit`` images of true class ``true`` predicted as ``predicted``.

        ``true`` or ``predicted`` None means any class: both None gives the
        split's first images, which the page offers to pick from.
        """
        images, labels, predictions, probabilities = self.split(name)
        n_classes = len(self.view.class_names)
        for argument, value in (("true", true), ("predicted", predicted)):
            if value is not None and not 0 <= value < n_classes:
                raise ValueError(f"{argument} must be a class from 0 to {n_classes - 1}, "
                                 f"received {value}")
        chosen = np.ones(len(labels), dtype=bool)
        if true is not None:
            chosen &= labels == true
        if predicted is not None:
            chosen &= predictions == predicted
        return self._rows(name, np.flatnonzero(chosen), limit, images, labels, predictions,
                          probabilities)

    def mistakes(self, name, limit=BROWSE_LIMIT):
        """The first ``limit`` wrongly predicted images of split ``name``, in index order."""
        images, labels, predictions, probabilities = self.split(name)
        return self._rows(name, np.flatnonzero(labels != predictions), limit, images, labels,
                          predictions, probabilities)

    @staticmethod
    def _rows(name, indices, limit, images, labels, predictions, probabilities):
        """Each image's index, label, prediction, confidence and pixels (bytes, base64).

        ``codes`` holds round(255 * value) channel-last, ``shape`` (h, w, c);
        grey images also keep ``pixels``, their values rounded to 3 decimals.
        """
        shown = indices[:limit]
        rows = []
        for i in shown:
            picture = np.asarray(images[i], dtype=np.float64)
            if picture.ndim == 2:
                picture = picture[:, :, np.newaxis]
            row = {"index": int(i), "label": int(labels[i]), "predicted": int(predictions[i]),
                   "confidence": round(float(probabilities[i, predictions[i]]), 4),
                   "shape": list(picture.shape),
                   "codes": base64.b64encode(_bytes(picture).tobytes()).decode("ascii")}
            if picture.shape[2] == 1:
                row["pixels"] = np.round(picture, 3).ravel().tolist()
            rows.append(row)
        return {"split": name, "total": len(indices), "images": rows}


def _bytes(picture):
    """Values in [0, 1] as bytes, round(255 * value), in the array's own order."""
    return np.rint(np.clip(picture, 0.0, 1.0) * 255).astype(np.uint8)


def browser_for(view, dataset="mnist", data_path=None):
    """Return a :class:`SplitBrowser` reading ``dataset`` (from ``data_path``) on first use."""
    from convnet import data

    return SplitBrowser(view, lambda: data.load_dataset(dataset, data_path))
