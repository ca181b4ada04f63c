"""Checks that turn silently wrong input into a clear error before any pixel is trained on:
channels-first arrays, float pixels that are not in `[0, 1]`, lists of images of different
shapes, and image files whose body was cut short (found from their last bytes, not decoded).

The input policy they enforce (the same for arrays, data loaders and files):

- images are channels-last, `(H, W, C)`; a shape that looks channels-first (`C` in 1, 3, 4
  first and more than 4 "channels" last) raises, naming the shape and the fix;
- integer pixels are scaled for the user (uint8 / 255, uint16 / 65535); float pixels are
  taken as already scaled and must lie in `[0, 1]` (overshoots up to `FLOAT_RANGE` pass, as
  after a bicubic resize); others are refused, never guessed at: an array or data loader
  raises, a file (a float TIFF) is skipped and listed with the range found and the fix;
- float64 (and float16) pixels are cast to float32 without a word.
"""

import os

import numpy as np

#: Float pixels are taken as `[0, 1]`; outside this range they are refused.
FLOAT_RANGE = (-0.5, 1.5)
_JPEG_EOI = b"\xff\xd9"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def looks_channels_first(shape):
    """Whether one image's `(H, W, C)` shape looks like `(C, H, W)`.

    Examples:
        >>> looks_channels_first((3, 32, 32)), looks_channels_first((32, 32, 3)), looks_channels_first((4, 4, 4))
        (True, False, False)
    """
    if len(shape) != 3 or None in (shape[0], shape[-1]):
        return False
    return shape[0] in (1, 3, 4) and shape[-1] > 4 and shape[-1] != shape[0]


def check_channels_last(image_shape, what, shape, fix):
    """Raise ValueError if `image_shape` (one image) looks channels-first.

    Args:
        image_shape: the shape of one image as read, `(H, W, C)`.
        what: the argument, e.g. "`source` array".
        shape: the shape to report (e.g. the whole array's).
        fix: the call that makes it channels-last, e.g. "np.moveaxis(x, 1, -1)".
    """
    if looks_channels_first(tuple(image_shape)):
        h, w, c = image_shape
        raise ValueError(
            f"{what} has shape {tuple(shape)}, which looks channels-first (C, H, W): read as channels-last "
            f"(H, W, C) it would be {h} x {w} images of {c} channels. keras_mim takes channels-last "
            f"images; pass {fix}.")


def float_range_problem(low, high):
    """None if float pixels spanning `[low, high]` pass as `[0, 1]` pixels, else what is
    wrong with them and the fix, in one phrase.

    Examples:
        >>> float_range_problem(0.0, 1.0) is None
        True
        >>> float_range_problem(0.0, 254.0)
        'float pixels in [0, 254], expected [0, 1]: they look like 0-255 pixels; divide them by 255 (or pass uint8)'
    """
    if FLOAT_RANGE[0] <= low and high <= FLOAT_RANGE[1]:
        return None
    if low >= 0 and high <= 255:
        fix = "they look like 0-255 pixels; divide them by 255 (or pass uint8)"
    elif low >= -1.5 and high <= 1.5:
        fix = "they look like [-1, 1] pixels; map them with (x + 1) / 2"
    else:
        fix = "rescale them to [0, 1], e.g. (x - x.min()) / (x.max() - x.min())"
    return f"float pixels in [{low:.4g}, {high:.4g}], expected [0, 1]: {fix}"


def check_float_pixels(images, what):
    """Raise ValueError (naming `what`, the range found, the first image out of range and the
    fix) if float `images` `(N, ...)` are not `[0, 1]` pixels. Integer arrays pass."""
    images = np.asarray(images)
    if not np.issubdtype(images.dtype, np.floating) or not images.size:
        return
    flat = images.reshape(len(images), -1)
    lows, highs = flat.min(axis=1), flat.max(axis=1)
    problem = float_range_problem(float(lows.min()), float(highs.max()))
    if problem:
        bad = int(np.flatnonzero((lows < FLOAT_RANGE[0]) | (highs > FLOAT_RANGE[1]))[0])
        raise ValueError(f"{what} holds {problem} (first out of range: image {bad}). Float pixels are taken "
                         "as already scaled to [0, 1]; uint8 and uint16 pixels are scaled for you.")


def stack_images(images, what="`source`"):
    """A list of same-shape image arrays as one array; raises ValueError naming the first
    image whose shape differs from image 0's.

    Examples:
        >>> stack_images([np.zeros((2, 2)), np.zeros((3, 2))])
        Traceback (most recent call last):
        ...
        ValueError: `source` list holds images of different shapes: image 0 is (2, 2) but image 1 is (3, 2)...
    """
    shapes = [np.shape(image) for image in images]
    for index, shape in enumerate(shapes):
        if shape != shapes[0]:
            raise ValueError(
                f"{what} list holds images of different shapes: image 0 is {shapes[0]} but image {index} is "
                f"{shape}. Resize them to one size first, or save them as files in a folder and pass the "
                "folder with `image_size`.")
    return np.stack(images)


def _jpeg_scan_start(data):
    """Offset of the first start-of-scan marker of a JPEG's own segments (markers inside an
    EXIF thumbnail are skipped with their segment), or -1."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:
            return pos
        elif 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            pos += 2
        else:
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return -1


def truncation_reason(path, image_format):
    """Why the file at `path` is cut short, or None, without decoding it: a JPEG must hold its
    end-of-image marker after the image data, a PNG its IEND chunk, a WebP the length its
    RIFF header gives. A complete file usually ends with its marker, so most files cost one
    small read of their end; trailing bytes (some cameras append data) cost one full read.
    Other formats are not checked here.

    Args:
        path: the file.
        image_format: Pillow's format name ("JPEG", "PNG", "WEBP", ...).
    """
    if image_format not in ("JPEG", "PNG", "WEBP"):
        return None
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        if image_format == "WEBP":
            declared = int.from_bytes(handle.read(8)[4:8], "little") + 8
            return None if size >= declared else (
                f"truncated WebP: its header gives {declared} bytes, the file has {size}")
        handle.seek(max(0, size - 64))
        tail = handle.read().rstrip(b"\x00")
        end = _JPEG_EOI if image_format == "JPEG" else _PNG_IEND
        if tail.endswith(end):
            return None
        handle.seek(0)
        data = handle.read()
    if image_format == "PNG":
        return None if _PNG_IEND in data else "truncated PNG: no IEND chunk after the image data"
    start = _jpeg_scan_start(data)
    if start < 0 or data.find(_JPEG_EOI, start) >= 0:  # segments that do not parse: left to the decoder
        return None
    return "truncated JPEG: no end-of-image marker after the image data"
