"""The data part of the bad-input catalogue (see tests/test_bad_inputs.py): images that were
once taken silently wrong now raise a clear error or are converted, as `image_dataset`'s
docstring says.

Each case writes the user's files into the working folder, then feeds them to the public
API. It must raise the expected error (type, and a message naming the argument and the value
found) or convert as documented (checked against numpy formulas), and leave the user's files
byte for byte as they were.
"""

import os
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from keras_mim import data
from tests.test_bad_inputs import _snapshot, assert_refused, workspace  # noqa: F401 (`workspace` is the fixture)

pytestmark = pytest.mark.backend_independent  # numpy, Pillow and tf.data only: no Keras op


def _rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype="uint8")


def _save(path, image, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path, **kwargs)
    return path


def _blocks(seed=0):
    """A 16 x 32 RGB image of eight solid 8 x 8 blocks (what JPEG keeps almost exactly)."""
    colours = np.random.default_rng(seed).integers(0, 256, (2, 4, 3))
    return np.repeat(np.repeat(colours, 8, axis=0), 8, axis=1).astype("uint8")


def _folder(path, **kwargs):
    with pytest.warns(UserWarning) as record:
        folder = data.ImageFolder(path, **kwargs)
    return folder, " ".join(str(w.message) for w in record)


def _batches(ds):
    return np.concatenate([np.asarray(batch) for batch in ds])


# (id, make(workspace) -> the call, expected exception, regex its message must match)
ERROR_CASES = [
    ("channels-first array", lambda ws: lambda: data.image_dataset(np.zeros((4, 3, 16, 16), "float32")),
     ValueError, (r"`source` array has shape \(4, 3, 16, 16\), which looks channels-first .* 3 x 16 images "
                  r"of 16 channels.* pass np\.moveaxis\(x, 1, -1\)")),
    ("channels-first tf.data dataset",
     lambda ws: lambda: data.image_dataset(_tf().data.Dataset.from_tensor_slices(np.zeros((4, 3, 16, 16), "uint8"))),
     ValueError, r"`source` dataset has shape \(3, 16, 16\), which looks channels-first .*tf\.transpose"),
    ("one image where a batch is expected", lambda ws: lambda: data.image_dataset(_rgb(16, 16)),
     ValueError, r"`source` array of shape \(16, 16, 3\) looks like one \(H, W, C\) image.*x\[None\]"),
    ("0-255 float images", lambda ws: lambda: data.image_dataset(_float_images(254.0)),
     ValueError, (r"`source` array holds float pixels in \[0, 254\], expected \[0, 1\]: they look like 0-255 "
                  r"pixels; divide them by 255 .*\(first out of range: image 2\)")),
    ("[-1, 1] float images", lambda ws: lambda: data.image_dataset(_float_images(1.0) * 2 - 1),
     ValueError, r"`source` array holds float pixels in \[-1, 1\], expected \[0, 1\].*\(x \+ 1\) / 2"),
    ("ragged list of arrays",
     lambda ws: lambda: data.image_dataset([_rgb(8, 8), _rgb(8, 8), _rgb(10, 8)], image_size=8),
     ValueError, (r"`source` list holds images of different shapes: image 0 is \(8, 8, 3\) but image 2 is "
                  r"\(10, 8, 3\)")),
    ("folder of float TIFFs above 1", lambda ws: _float_tiff(ws / "tiles", scan=True),
     ValueError, (r"No readable image under `path` '.*tiles'; skipped 1 file\(s\): .*tile\.tif \(ValueError: "
                  r"float pixels in \[0, 300\], expected \[0, 1\]: rescale them")),
]


def _tf():
    import tensorflow as tf

    return tf


def _float_images(top):
    images = np.zeros((4, 8, 8, 3), "float32")
    images[2, 1, 1, 0] = top
    return images


def _float_tiff(folder, scan=False):
    """Write a float TIFF with pixels in [0, 300] into `folder`; return the folder, or (`scan`)
    a call that scans it."""
    os.makedirs(folder, exist_ok=True)
    tifffile.imwrite(folder / "tile.tif", np.linspace(0, 300, 64, dtype="float32").reshape(8, 8))
    return (lambda: data.ImageFolder(folder)) if scan else folder


# --------------------------------------------------------------------- conversions and skips
def _float64(ws):
    x = np.random.default_rng(0).random((3, 8, 8, 3))  # float64 in [0, 1]

    def check(out):
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, x, atol=1e-7)
    return lambda: _batches(data.image_dataset(x, shuffle=False)), check


def _equal_list(ws):
    images = [_rgb(8, 6, seed) for seed in range(3)]
    return lambda: _batches(data.image_dataset(images, shuffle=False)), lambda out: np.testing.assert_allclose(
        out, np.stack(images) / 255, atol=1e-6)


def _float_tiff_among_images(ws):
    _save(ws / "tiles" / "good.png", _rgb(8, 8))
    _float_tiff(ws / "tiles")

    def check(result):
        folder, warning = result
        assert [os.path.basename(f) for f in folder.files] == ["good.png"]
        assert folder.skipped[0][0].endswith("tile.tif") and "float pixels in [0, 300]" in folder.skipped[0][1]
        assert "skipped 1" in warning and "tile.tif" in warning
    return lambda: _folder(ws / "tiles"), check


def _png16(ws):
    rng = np.random.default_rng(1)
    gray16, rgb16 = rng.integers(0, 65536, (8, 12), dtype="uint16"), rng.integers(0, 65536, (8, 12, 3), dtype="uint16")
    _save(ws / "scans" / "gray16.png", gray16)
    _write_png16_rgb(ws / "scans" / "rgb16.png", rgb16)  # Pillow cannot write one

    def check(folder):
        np.testing.assert_allclose(folder.load(0)[..., 0], gray16.astype("float64") / 65535, atol=1e-7)
        # Pillow reads a 16-bit colour PNG at 8 bits (its high byte): within 1/255 of x / 65535
        np.testing.assert_allclose(folder.load(1), (rgb16 >> 8) / 255, atol=1e-7)
        assert np.abs(folder.load(1) - rgb16 / 65535).max() <= 1 / 255
    return lambda: data.ImageFolder(ws / "scans"), check


def _write_png16_rgb(path, pixels):
    """A 16-bit RGB PNG written by hand (signature, IHDR, one IDAT of unfiltered rows, IEND)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _cmyk_jpeg(ws):
    ink = np.array([30, 200, 90, 60])  # C, M, Y, K
    path = _save(ws / "print" / "cmyk.jpg", Image.new("CMYK", (16, 8), tuple(int(v) for v in ink)), quality=100)

    def check(result):
        folder, image = result
        expected = (1 - ink[:3] / 255) * (1 - ink[3] / 255)  # Pillow's CMYK -> RGB
        assert folder.channels == [3] and image.shape == (8, 16, 3)
        np.testing.assert_allclose(image, np.broadcast_to(expected, image.shape), atol=3 / 255)
    def call():
        folder = data.ImageFolder(path.parent)
        return folder, folder.load(0)
    return call, check


def _exif_jpeg(ws):
    pixels = _blocks()
    exif = Image.Exif()
    for orientation in (6, 8):
        exif[0x0112] = orientation
        _save(ws / "camera" / f"o{orientation}.jpg", pixels, quality=100, subsampling=0, exif=exif)

    def check(folder):
        assert folder.sizes == [(32, 16), (32, 16)]  # upright sizes
        for index, turns in ((0, -1), (1, 1)):  # 6: turn 90 degrees clockwise; 8: counter-clockwise
            image = folder.load(index)
            np.testing.assert_allclose(image, np.rot90(pixels, turns) / 255, atol=4 / 255)
            assert np.abs(image - np.rot90(pixels, -turns) / 255).max() > 0.2  # not the other way
    return lambda: data.ImageFolder(ws / "camera"), check


def _animated_gif(ws):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = ws / "gifs" / "anim.gif"
    os.makedirs(path.parent)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)

    def check(result):
        folder, warning = result
        assert folder.animated == [str(path)] and "first frame" in warning and "anim.gif" in warning
        np.testing.assert_allclose(folder.load(0), np.broadcast_to([1.0, 0.0, 0.0], (8, 8, 3)), atol=1e-6)
    return lambda: _folder(path.parent), check


def _text_named_png(ws):
    _save(ws / "imgs" / "good.png", _rgb(8, 8))
    (ws / "imgs" / "notes.png").write_text("not an image, whatever the name says\n")

    def check(result):
        folder, warning = result
        assert [os.path.basename(f) for f in folder.files] == ["good.png"]
        assert [os.path.basename(p) for p, _ in folder.skipped] == ["notes.png"] and folder.skipped[0][1]
        assert "skipped 1" in warning and "notes.png" in warning
    return lambda: _folder(ws / "imgs"), check


def _symlink_loop(ws):
    _save(ws / "imgs" / "a" / "good.png", _rgb(8, 8))
    os.symlink(ws / "imgs", ws / "imgs" / "a" / "loop")

    def check(result):
        folder, warning = result
        assert len(folder) == 1 and "symlink loop" in warning
        assert [(os.path.relpath(p, ws), "symlink loop" in r) for p, r in folder.skipped] == [
            (os.path.join("imgs", "a", "loop"), True)]
    return lambda: _folder(ws / "imgs"), check


def _symlinked_class(ws):
    _save(ws / "imgs" / "cats" / "c.png", _rgb(8, 8, 1))
    _save(ws / "elsewhere" / "dogs" / "d.png", _rgb(8, 8, 2))
    os.symlink(ws / "elsewhere" / "dogs", ws / "imgs" / "dogs")

    def check(folder):
        assert folder.class_names == ["cats", "dogs"] and folder.labels.tolist() == [0, 1] and not folder.skipped
        np.testing.assert_allclose(folder.load(1), _rgb(8, 8, 2) / 255, atol=1e-6)
    return lambda: data.ImageFolder(ws / "imgs"), check


def _unicode_names(ws):
    _save(ws / "my photos" / "été 2" / "çà 1.png", _rgb(8, 8, 3))
    _save(ws / "my photos" / "日本" / "a b.jpg", np.full((8, 8, 3), 120, "uint8"), quality=100)

    def check(result):
        (images, labels), folder = result
        assert folder.class_names == ["été 2", "日本"] and not folder.skipped
        np.testing.assert_allclose(images[labels == 0][0], _rgb(8, 8, 3) / 255, atol=1e-6)
        np.testing.assert_allclose(images[labels == 1][0], 120 / 255, atol=2 / 255)

    def call():
        folder = data.ImageFolder(ws / "my photos")
        images, labels = next(iter(data.image_dataset(folder, labels="inferred", shuffle=False)))
        return (np.asarray(images), np.asarray(labels)), folder
    return call, check


def _truncated(ws):
    _save(ws / "imgs" / "good.jpg", _rgb(64, 64))  # noise: a body much longer than the header
    _save(ws / "imgs" / "whole.png", _rgb(64, 64, 1))
    for name in ("good.jpg", "whole.png"):
        body = (ws / "imgs" / name).read_bytes()
        (ws / "imgs" / f"cut_{name}").write_bytes(body[: len(body) * 2 // 3])  # the header reads, the body is cut

    def check(result):
        folder, warning = result
        assert sorted(os.path.basename(f) for f in folder.files) == ["good.jpg", "whole.png"]  # counted: 2
        reasons = {os.path.basename(p): r for p, r in folder.skipped}
        assert sorted(reasons) == ["cut_good.jpg", "cut_whole.png"]
        assert "truncated JPEG" in reasons["cut_good.jpg"] and "truncated PNG" in reasons["cut_whole.png"]
        assert warning.count("skipped 2") == 1
        assert len(_batches(data.image_dataset(folder, batch_size=4))) == 2
    return lambda: _folder(ws / "imgs"), check


# (id, make(workspace) -> (the call, a check of what it returns))
CONVERSION_CASES = [
    ("float64 images", _float64),
    ("list of equal-shape arrays", _equal_list),
    ("float TIFF above 1 among images", _float_tiff_among_images),
    ("16-bit PNG", _png16),
    ("CMYK JPEG", _cmyk_jpeg),
    ("EXIF-rotated JPEG", _exif_jpeg),
    ("animated GIF", _animated_gif),
    ("non-image with an image extension", _text_named_png),
    ("symlink loop in a folder", _symlink_loop),
    ("symlinked class subfolder", _symlinked_class),
    ("non-ASCII and space-containing names", _unicode_names),
    ("truncated image files", _truncated),
]

DATA_CASES = [c[0] for c in ERROR_CASES + CONVERSION_CASES]


@pytest.mark.parametrize("make, error, message", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_data_bad_input_raises(make, error, message, workspace):  # noqa: F811
    call = make(workspace)
    assert_refused(call, error, message, workspace)


@pytest.mark.parametrize("make", [c[1] for c in CONVERSION_CASES], ids=[c[0] for c in CONVERSION_CASES])
def test_data_bad_input_converted_or_skipped(make, workspace):  # noqa: F811
    call, check = make(workspace)
    before = _snapshot(workspace)
    check(call())
    assert _snapshot(workspace) == before


def test_data_catalogue_size():
    assert len(set(DATA_CASES)) == len(DATA_CASES) >= 12
