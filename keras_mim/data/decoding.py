"""What the file sources of `keras_mim.data` (image folders, clip folders) share: the order
files are taken in, pillow images as float32 arrays, and how skipped files are reported."""

import re

import numpy as np

# Pillow modes read as one channel (alpha dropped); every other mode is read as RGB.
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
# EXIF orientation (tag 0x0112) -> the Pillow transpose that makes the image upright.
_UPRIGHT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
            7: "TRANSVERSE", 8: "ROTATE_90"}


def natural_key(name):
    """Sort key ordering numbers numerically: `f2` before `f10` (case-insensitive).

    Examples:
        >>> sorted(["f10.png", "F2.png", "f1.png"], key=natural_key)
        ['f1.png', 'F2.png', 'f10.png']
    """
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(name))]


def pil_to_array(image):
    """A pillow image as float32 `(H, W, C)` in [0, 1]; C = 1 for grayscale modes, else 3.

    8-bit modes are divided by 255, 16-bit ones by 65535, float ("F") images kept.

    Examples:
        >>> from PIL import Image
        >>> pil_to_array(Image.new("RGBA", (4, 2), (255, 0, 0, 9))).shape
        (2, 4, 3)
    """
    if image.mode in ("1", "LA"):
        image = image.convert("L")
    elif image.mode not in GRAY_MODES:
        image = image.convert("RGB")
    array = np.asarray(image)
    scale = 255.0 if array.dtype == np.uint8 else 1.0 if image.mode == "F" else 65535.0
    array = np.clip(array.astype("float32") / np.float32(scale), 0.0, 1.0)
    return array[..., None] if array.ndim == 2 else array


def exif_orientation(image):
    """The EXIF orientation (1-8, 1 = upright) of an opened, not yet decoded pillow image,
    read from its header (a PNG's eXIf chunk after the pixels is not looked for: Pillow
    would decode the image to find it).

    Examples:
        >>> from PIL import Image
        >>> exif_orientation(Image.new("L", (4, 2)))
        1
    """
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # an unreadable EXIF block: taken as upright
        return 1
    return value if value in range(1, 9) else 1


def upright_size(image, orientation):
    """`(H, W)` of `image` once turned upright by its EXIF `orientation` (5-8 swap the sides)."""
    return (image.width, image.height) if orientation >= 5 else (image.height, image.width)


def make_upright(image, orientation):
    """The decoded pillow `image` turned as its EXIF `orientation` says (as
    `PIL.ImageOps.exif_transpose`, from the orientation read before decoding).

    Examples:
        >>> from PIL import Image
        >>> make_upright(Image.new("L", (4, 2)), 6).size
        (2, 4)
    """
    if orientation == 1:
        return image
    from PIL import Image

    return image.transpose(getattr(Image.Transpose, _UPRIGHT[orientation]))


def error_reason(error):
    """Why a file was skipped, in one line: the exception's type and first line.

    Examples:
        >>> error_reason(ValueError("truncated file\\nmore detail"))
        'ValueError: truncated file'
    """
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def summarize_skipped(skipped, limit=3):
    """The first `limit` of a `[(path, reason)]` list on one line, with the count of the rest.

    Examples:
        >>> summarize_skipped([("a.png", "OSError: x"), ("b.png", "OSError: y")], limit=1)
        'a.png (OSError: x); ... 1 more'
    """
    if not skipped:
        return "none"
    shown = "; ".join(f"{p} ({r})" for p, r in skipped[:limit])
    return shown + (f"; ... {len(skipped) - limit} more" if len(skipped) > limit else "")


def write_skipped(path, skipped):
    """Write `(path, reason)` pairs, one `path<TAB>reason` a line, to a new text file `path`
    (an existing file is never overwritten: FileExistsError). Returns the count; the
    `write_skipped` of the folder sources."""
    with open(path, "x", encoding="utf-8") as handle:
        handle.writelines(f"{p}\t{r}\n" for p, r in skipped)
    return len(skipped)
