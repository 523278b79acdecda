"""Colour datasets made by the tests: a shape of its own colour for each class.

CIFAR-10 and the course's HDF5 files cannot be fetched here, so the tests of
colour models draw their own images: class ``k`` is a filled shape (disc,
square, triangle, cross or ring, by ``k % 5``) of hue ``k / n_classes`` on a
darker background of a random colour, at a random place and size, with a
little noise. A few hundred of them teach a small network something in one
epoch, and they look like something on the page's screenshots. The file is
written in the layout ``--data`` reads for ``cifar10``, ``happy`` and
``signs`` (the cache of ``convnet data``: uint8 ``X_*``, int ``Y_*`` and
``class_names``).
"""
import colorsys

import numpy as np


def _shape_image(rng, label, n_classes, size):
    """One (size, size, 3) uint8 picture of class ``label``."""
    from PIL import Image, ImageDraw

    background = tuple(int(v) for v in rng.integers(0, 90, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    hue = label / n_classes
    colour = tuple(int(255 * v) for v in colorsys.hsv_to_rgb(hue, 0.85, 0.95))
    radius = size * rng.uniform(0.2, 0.34)
    cx, cy = rng.uniform(radius, size - radius, 2)
    box = [cx - radius, cy - radius, cx + radius, cy + radius]
    kind = label % 5
    if kind == 0:
        draw.ellipse(box, fill=colour)
    elif kind == 1:
        draw.rectangle(box, fill=colour)
    elif kind == 2:
        draw.polygon([(cx, cy - radius), (cx + radius, cy + radius), (cx - radius, cy + radius)],
                     fill=colour)
    elif kind == 3:
        width = radius / 2.5
        draw.rectangle([cx - width, cy - radius, cx + width, cy + radius], fill=colour)
        draw.rectangle([cx - radius, cy - width, cx + radius, cy + width], fill=colour)
    else:
        draw.ellipse(box, outline=colour, width=max(2, int(radius / 3)))
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(0, 8, (size, size, 3))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def shapes_npz(path, classes, size=32, counts=(300, 60, 60), seed=0):
    """Write a colour dataset of shapes to ``path``; return ``(path, arrays)``.

    Parameters
    ----------
    path : Path
        The ``.npz`` to write.
    classes : sequence of str
        The class names (their number sets the labels 0 .. n - 1).
    size : int
        Images are (size, size, 3): 32 for cifar10, 64 for happy and signs.
    counts : tuple of int
        Images in the train, valid and test splits.
    seed : int

    Returns
    -------
    path : Path
    arrays : dict of str to ndarray
        What was written: uint8 images (n, size, size, 3) and int64 labels (n,).
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "valid", "test"), counts):
        labels = np.arange(count) % len(classes)
        rng.shuffle(labels)
        arrays["X_" + split] = np.stack([_shape_image(rng, int(label), len(classes), size)
                                         for label in labels])
        arrays["Y_" + split] = labels.astype(np.int64)
    np.savez(path, class_names=np.array(classes, dtype=str), **arrays)
    return path, arrays
