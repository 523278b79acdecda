"""Turn a photo or drawing of one digit into an MNIST-like 28x28 image.

MNIST digits are white on black, their bounding box scaled to fit a 20x20
square (aspect ratio kept) and placed in a 28x28 field so that their centre
of mass is at the centre. ``load_digit_image`` applies the same recipe to any
PNG or JPEG, so a digit drawn in a paint program can be classified by a model
trained on MNIST.
"""
import numpy as np

FIELD = 28
BOX = 20
# Pixels darker than this fraction of the brightest ink count as background
# when the bounding box is looked for (JPEG noise stays out of the box).
INK_THRESHOLD = 0.2


def load_digit_image(path, *, max_pixels=None, label=None):
    """Load one digit image as MNIST does.

    Parameters
    ----------
    path : str, Path or binary file object
        PNG, JPEG or any image Pillow reads, of any size, colour or grey
        (a file object, e.g. ``io.BytesIO``, for an image received over the
        network).
    max_pixels : int, optional, keyword only
        Refuse an image whose width times height exceeds this, before its
        pixels are decoded (a small compressed file can hold a huge image).
    label : str, optional, keyword only
        How error messages name the image (default: ``path``).

    Returns
    -------
    ndarray of shape (28, 28), float32 in [0, 1)
        The digit bright on a dark background (the image is inverted when
        its border is mostly light), its bounding box scaled to fit 20x20
        keeping the aspect ratio, its centre of mass at pixel (14, 14).

    Raises
    ------
    ValueError
        Naming ``path`` if the file cannot be read as an image, is larger
        than ``max_pixels`` or shows no digit.
    """
    from PIL import Image, UnidentifiedImageError  # Pillow only when images are read

    name = path if label is None else label
    try:
        with Image.open(path) as image:
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise ValueError(f"image {name} is {image.width}x{image.height} pixels; "
                                 f"at most {max_pixels} pixels are accepted")
            image.load()
            grey = _flatten_alpha(image).convert("L")
    except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as error:
        # A file object's repr says nothing to the reader: drop it from the reason.
        reason = str(error) if label is None else str(error).replace(str(path), "").strip()
        raise ValueError(f"cannot read image {name}: {reason}") from None
    pixels = np.asarray(grey, dtype=np.float32) / 255.0
    if _border_mean(pixels) > 0.5:
        pixels = 1.0 - pixels
    pixels -= np.median(_border(pixels))
    np.clip(pixels, 0.0, None, out=pixels)
    peak = pixels.max()
    if peak <= 0:
        raise ValueError(f"image {name} shows no digit: nothing stands out from its background")
    ink_rows, ink_cols = np.nonzero(pixels >= INK_THRESHOLD * peak)
    crop = pixels[ink_rows.min():ink_rows.max() + 1, ink_cols.min():ink_cols.max() + 1]
    digit = _fit_box(crop / peak)
    return _centre_by_mass(digit)


def _flatten_alpha(image):
    """Composite a transparent image onto white (how it looks in a viewer)."""
    if image.mode in ("RGBA", "LA") or "transparency" in image.info:
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
