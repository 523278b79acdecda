"""Turn a photo or drawing of one digit into an MNIST-like 28x28 image.

MNIST digits are white on black, their bounding box scaled to fit a 20x20
square (aspect ratio kept) and placed in a 28x28 field so that their centre
of mass is at the centre. ``load_digit_image`` applies the same recipe to any
PNG or JPEG, so a digit drawn in a paint program can be classified by a model
trained on MNIST.

Every mode Pillow reads is accepted and read at its full depth: 1-bit, 8-bit
grey, palette, RGB(A), CMYK, YCbCr, LAB, HSV, 16-bit grey (``I;16``), 32-bit
integers (``I``) and floats (``F``). Each is turned into grey in [0, 1] by
its own range, never clipped to 8 bits: a 16-bit image gives the same digit
as the same picture saved in 8 bits. Modes whose range the file does not
state, ``I`` and ``F``, are scaled by the smallest of the usual ranges that
holds every value: [0, 1], [0, 255], [0, 65535], else their own minimum to
maximum.

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


def load_digit_image(path, *, max_pixels=MAX_PIXELS, label=None):
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

    Returns
    -------
    ndarray of shape (28, 28), float32 in [0, 1)
        The digit bright on a dark background (the image is inverted when
        its border is mostly light), its bounding box scaled to fit 20x20
        keeping the aspect ratio, its centre of mass at pixel (14, 14).

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
    digit = _fit_box(crop / peak)
    return _centre_by_mass(digit)


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
            return _grey(image)
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


def _fit_box(crop):
    """Scale ``crop`` (h, w) in [0, 1] so its longer side is ``BOX``; keep the aspect ratio."""
    from PIL import Image
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.LANCZOS)
    return np.asarray(resized, dtype=np.float32) / 255.0


def _centre_by_mass(digit):
    """Place ``digit`` (h, w), h, w <= 20, in a 28x28 field with its centre of mass centred."""
    height, width = digit.shape
    mass = digit.sum()
    rows, cols = np.indices(digit.shape)
    # MNIST's digits have their centre of mass at pixel (14, 14) (measured on
    # the data set: mean 14.0, standard deviation 0.3 on either axis).
    centre = FIELD // 2
    top = round(centre - float((rows * digit).sum() / mass))
    left = round(centre - float((cols * digit).sum() / mass))
    # Keep the whole box inside the field even for a very lopsided digit.
    top = min(max(top, 0), FIELD - height)
    left = min(max(left, 0), FIELD - width)
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top:top + height, left:left + width] = digit
    # MNIST's pixels are bytes / 256, so the brightest value is 255/256 < 1.
    return field * np.float32(255 / 256)
