"""Turn a picture file into the input of a model: MNIST-like digits, colour images.

A model takes images of one shape ``(h, w, c)``. :func:`prepare_image`
applies one stated rule per kind of input (:func:`preparation_rule` says it
in words):

- grey models (``c == 1``) get what MNIST did to its digits: white on black,
  their bounding box scaled to fit a 20x20 square (aspect ratio kept) and
  placed in a 28x28 field so that their centre of mass is at the centre
  (:func:`load_digit_image`; for another field size, the box keeps the same
  proportion, 5/7 of the shorter side);
- colour models (``c == 3``) get the picture in colour, the largest centred
  region of the model's aspect ratio resized to ``h x w``, values in [0, 1]
  as the datasets store them (bytes / 255). A picture already of the model's
  size is used exactly as it is.

Every mode Pillow reads is accepted and read at its full depth: 1-bit, 8-bit
grey, palette, RGB(A), CMYK, YCbCr, LAB, HSV, 16-bit grey (``I;16``), 32-bit
integers (``I``) and floats (``F``). Each is turned into grey in [0, 1] by
its own range, never clipped to 8 bits: a 16-bit image gives the same digit
as the same picture saved in 8 bits. Modes whose range the file does not
state, ``I`` and ``F``, are scaled by the smallest of the usual ranges that
holds every value: [0, 1], [0, 255], [0, 65535], else their own minimum to
maximum. A grey picture given to a colour model is repeated on the three
channels.

Images larger than ``MAX_PIXELS`` (4096 x 4096, 16.8 million pixels) are
refused from the size in their header, before anything is decoded: a small
file can declare an enormous image (a "decompression bomb"), and a digit
needs far fewer pixels. A 4096 x 4096 RGBA picture takes 64 MB once decoded.
"""
import warnings

import numpy as np

from convnet.errors import BadImageError

FIELD = 28
BOX = 20
# Pixels darker than this fraction of the brightest ink count as background
# when the bounding box is looked for (JPEG noise stays out of the box).
INK_THRESHOLD = 0.2
# Largest image read, in pixels (width times height), checked from the header.
MAX_PIXELS = 4096 * 4096
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def preparation_rule(input_shape):
    """Say in words how :func:`prepare_image` prepares a picture for inputs of ``input_shape``.

    Parameters
    ----------
    input_shape : tuple of int
        ``(h, w, c)`` of one input of the model.

    Returns
    -------
    str
        One sentence, e.g. "28x28 grey, as MNIST prepares its digits: ...".

    Raises
    ------
    BadImageError
        For a model of other than 1 or 3 channels, whose pictures cannot be prepared.
    """
    h, w, c = _checked_shape(input_shape)
    if c == 1:
        box = _box_side((h, w))
        return (f"{h}x{w} grey, as MNIST prepares its digits: light on dark (inverted when "
                f"the border is light), the ink's bounding box scaled to fit {box}x{box} and "
                "centred by mass")
    return (f"{h}x{w} colour: the largest centred part of the picture of the model's aspect "
            f"ratio, resized to {h}x{w}; values in [0, 1] as the dataset stores them")


def prepare_image(path, input_shape, *, max_pixels=MAX_PIXELS, label=None):
    """Read one picture as the input of a model that takes images of ``input_shape``.

    Parameters
    ----------
    path : str, Path or binary file object
        PNG, JPEG or any image Pillow reads, of any size, colour or grey.
    input_shape : tuple of int
        ``(h, w, c)`` of one input of the model: ``c`` 1 (grey) or 3 (colour).
    max_pixels : int, optional
        Largest width times height read, checked from the header.
    label : str, optional
        What messages call the image (default: ``path``).

    Returns
    -------
    ndarray of shape (h, w, c), float32
        Grey: the digit recipe of :func:`load_digit_image` in an ``h x w``
        field, values in [0, 1). Colour: the centred crop of the model's
        aspect ratio resized to ``h x w``, values in [0, 1]
        (see :func:`preparation_rule`).

    Raises
    ------
    BadImageError
        The file cannot be read, is too large, shows nothing (grey), or the
        model takes neither 1 nor 3 channels.
    """
    h, w, c = _checked_shape(input_shape)
    if c == 1:
        digit = load_digit_image(path, max_pixels=max_pixels, label=label, shape=(h, w))
        return digit[:, :, np.newaxis]
    pixels = read_colour(path, max_pixels=max_pixels, label=label)
    return _crop_and_resize(pixels, (h, w))


def _checked_shape(input_shape):
    """``(h, w, c)`` as ints; BadImageError unless ``c`` is 1 or 3."""
    h, w, c = (int(size) for size in input_shape)
    if c not in (1, 3):
        raise BadImageError(f"pictures are prepared for models of grey (1 channel) or colour "
                            f"(3 channels) images; this model takes {c} channels")
    return h, w, c


def _box_side(field):
    """Side of the square a digit is scaled into: 20 in MNIST's 28x28, 5/7 of the field."""
    return max(1, round(BOX * min(field) / FIELD))


def load_digit_image(path, *, max_pixels=MAX_PIXELS, label=None, shape=(FIELD, FIELD)):
    """Load one digit image as MNIST does.

    Parameters
    ----------
    path : str, Path or binary file object
        PNG, JPEG or any image Pillow reads, of any size, colour or grey.
    max_pixels : int, optional
        Largest width times height read, checked from the header
        (default ``MAX_PIXELS``).
    label : str, optional
        What messages call the image (default: ``path``), for images that
        arrive as file objects.
    shape : tuple of int, optional
        ``(h, w)`` of the field (default MNIST's (28, 28)).

    Returns
    -------
    ndarray of shape (h, w) (28x28 by default), float32 in [0, 1)
        The digit bright on a dark background (the image is inverted when
        its border is mostly light), its bounding box scaled to fit 20x20
        (5/7 of the field's shorter side) keeping the aspect ratio, its
        centre of mass at pixel (h // 2, w // 2).

    Raises
    ------
    BadImageError
        A ``ValueError`` naming ``path`` if the file cannot be read as an
        image, is larger than ``max_pixels``, or shows no digit.
    """
    name = path if label is None else label
    pixels = read_grey(path, max_pixels=max_pixels, label=label)
    if _border_mean(pixels) > 0.5:
        pixels = 1.0 - pixels
    pixels -= np.median(_border(pixels))
    np.clip(pixels, 0.0, None, out=pixels)
    peak = pixels.max()
    if peak <= 0:
        raise BadImageError(f"image {name} shows no digit: nothing stands out from its "
                            "background")
    ink_rows, ink_cols = np.nonzero(pixels >= INK_THRESHOLD * peak)
    crop = pixels[ink_rows.min():ink_rows.max() + 1, ink_cols.min():ink_cols.max() + 1]
    field = (int(shape[0]), int(shape[1]))
    digit = _fit_box(crop / peak, _box_side(field))
    return _centre_by_mass(digit, field)


def read_grey(path, *, max_pixels=MAX_PIXELS, label=None):
    """Read any image Pillow reads as grey levels in [0, 1], by its mode's own range.

    Parameters
    ----------
    path : str, Path or binary file object
        The image file.
    max_pixels : int, optional
        Largest width times height read (default ``MAX_PIXELS``).
    label : str, optional
        What messages call the image (default: ``path``).

    Returns
    -------
    ndarray of shape (h, w), float32 in [0, 1]
        Luminance; transparent parts are composited onto white, as a viewer
        shows them.

    Raises
    ------
    BadImageError
        Naming ``path`` if it does not exist, cannot be decoded, or declares
        more than ``max_pixels`` pixels (checked before decoding).
    """
    return _decoded(path, max_pixels, label, _grey)


def read_colour(path, *, max_pixels=MAX_PIXELS, label=None):
    """Read any image Pillow reads as red, green and blue levels in [0, 1].

    Parameters
    ----------
    path, max_pixels, label
        As :func:`read_grey`, which opens and checks the file the same way;
        only the conversion of the decoded picture differs.

    Returns
    -------
    ndarray of shape (h, w, 3), float32 in [0, 1]
        An 8-bit picture's bytes / 255, as the colour datasets store their
        images; a grey picture (of any depth, see :func:`read_grey`) on
        all three channels; transparent parts composited onto white.

    Raises
    ------
    BadImageError
        As :func:`read_grey`.
    """
    return _decoded(path, max_pixels, label, _colour)


def _decoded(path, max_pixels, label, convert):
    """Open ``path`` with Pillow, check its declared size, decode it and return ``convert(image)``."""
    from PIL import Image, UnidentifiedImageError  # Pillow only when images are read

    name = path if label is None else label

    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit; ours is lower and checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError:
        raise BadImageError(f"image {name} is too large: it declares more than "
                            f"{2 * Image.MAX_IMAGE_PIXELS} pixels, and at most {max_pixels} "
                            "are read") from None
    except FileNotFoundError:
        raise BadImageError(f"image {name} does not exist") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise BadImageError(f"cannot read image {name}: {_reason(error, path, label)}") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise BadImageError(f"image {name} is {width}x{height} pixels, more than the "
                                f"{max_pixels} that are read: scale it down first")
        try:
            image.load()
            return convert(image)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            reason = _reason(error, path, label)
            raise BadImageError(f"cannot read image {name}: {reason}") from None


def _reason(error, path, label):
    """The error's text; without a file object's repr, which says nothing to the reader."""
    return str(error) if label is None else str(error).replace(str(path), "").strip()


def _grey(image):
    """Grey levels (h, w) float32 in [0, 1] of a decoded Pillow image of any mode."""
    if image.mode in _HIGH_DEPTH_MODES:
        raw = np.asarray(image)
        values = raw.astype(np.float64)
        low, high = _value_range(image.mode, values)
        grey = (values - low) / (high - low)
        if "transparency" in image.info:
            grey[raw == image.info["transparency"]] = 1.0
        return np.clip(grey, 0.0, 1.0).astype(np.float32)
    if image.mode == "LAB":       # lightness is the first band
        image = image.getchannel(0)
    elif image.mode == "HSV":     # Pillow converts HSV to nothing but itself
        image = image.getchannel(2)
    grey = _flatten_alpha(image).convert("L")
    return np.asarray(grey, dtype=np.float32) / np.float32(255)


def _colour(image):
    """Red, green and blue (h, w, 3) float32 in [0, 1] of a decoded Pillow image of any mode."""
    if image.mode in _HIGH_DEPTH_MODES or image.mode in ("1", "L", "LA", "La"):
        return np.repeat(_grey(image)[:, :, np.newaxis], 3, axis=2)
    rgb = _flatten_alpha(image).convert("RGB")
    # The same division the datasets' loaders make, so a picture of a dataset's
    # own image gives back exactly that image.
    return np.asarray(rgb, dtype=np.float32) / np.float32(255)


def _crop_and_resize(pixels, size):
    """The centred crop of ``pixels`` (H, W, 3) with the aspect ratio of ``size`` (h, w), resized.

    Returns an (h, w, 3) float32 array in [0, 1]; a picture already of that
    size is returned unchanged.
    """
    from PIL import Image
    h, w = size
    height, width = pixels.shape[:2]
    if (height, width) == (h, w):
        return pixels
    # Keep the largest region of aspect w / h: crop the longer side evenly.
    if width * h > height * w:
        kept = max(1, round(height * w / h))
        left = (width - kept) // 2
        pixels = pixels[:, left:left + kept]
    else:
        kept = max(1, round(width * h / w))
        top = (height - kept) // 2
        pixels = pixels[top:top + kept]
    channels = [Image.fromarray(np.ascontiguousarray(pixels[:, :, k]), mode="F")
                .resize((w, h), Image.LANCZOS) for k in range(pixels.shape[2])]
    resized = np.stack([np.asarray(channel, dtype=np.float32) for channel in channels], axis=2)
    # Lanczos overshoots a little beside sharp edges.
    return np.clip(resized, 0.0, 1.0)


def _value_range(mode, values):
    """(low, high) of the values' scale: 16 bits for I;16, else the smallest usual range."""
    if mode.startswith("I;16"):
        return 0.0, 65535.0
    low, high = float(values.min(initial=0)), float(values.max(initial=0))
    if low >= 0:
        for top in ((1.0,) if mode == "F" else ()) + (255.0, 65535.0):
            if high <= top:
                return 0.0, top
    if mode == "I":
        return (0.0 if low >= 0 else -2.0 ** 31), 2.0 ** 31 - 1
    return low, (high if high > low else low + 1.0)


def _flatten_alpha(image):
    """Composite a transparent image onto white (how it looks in a viewer)."""
    bands = image.getbands()
    if "A" in bands or "a" in bands or "transparency" in image.info:
        from PIL import Image
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba)
    return image


def _border(pixels):
    """Return the pixels of the outermost rows and columns, as one flat array."""
    return np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])


def _border_mean(pixels):
    """Mean brightness of the border: the background's, for a centred digit."""
    return float(_border(pixels).mean())


def _fit_box(crop, box=BOX):
    """Scale ``crop`` (h, w) in [0, 1] so its longer side is ``box``; keep the aspect ratio."""
    from PIL import Image
    height, width = crop.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.LANCZOS)
    return np.asarray(resized, dtype=np.float32) / 255.0


def _centre_by_mass(digit, field=(FIELD, FIELD)):
    """Place ``digit`` (h, w), within the field, in a ``field`` array with its centre of mass centred."""
    height, width = digit.shape
    mass = digit.sum()
    rows, cols = np.indices(digit.shape)
    # MNIST's digits have their centre of mass at pixel (14, 14) (measured on
    # the data set: mean 14.0, standard deviation 0.3 on either axis).
    top = round(field[0] // 2 - float((rows * digit).sum() / mass))
    left = round(field[1] // 2 - float((cols * digit).sum() / mass))
    # Keep the whole box inside the field even for a very lopsided digit.
    top = min(max(top, 0), field[0] - height)
    left = min(max(left, 0), field[1] - width)
    placed = np.zeros(field, dtype=np.float32)
    placed[top:top + height, left:left + width] = digit
    # MNIST's pixels are bytes / 256, so the brightest value is 255/256 < 1.
    return placed * np.float32(255 / 256)
