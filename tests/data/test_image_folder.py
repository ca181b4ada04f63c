import os

import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage import data as samples

from keras_mim.data.image_folder import ImageFolder


def small(image, size=(24, 32)):
    """A scikit-image sample shrunk (PIL, antialiased) to `size` `(H, W)`, uint8."""
    return np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR))


def write_folder(root):
    """Real images of every supported kind under `root/<class>/`, plus junk. Returns the
    expected float32 pixels of the readable files, by file name."""
    rgb, gray = small(samples.astronaut()), small(samples.camera(), (20, 20))
    rng = np.random.default_rng(0)
    gray16 = (rng.random((10, 12)) * 65535).astype("uint16")
    floats = rng.random((8, 8)).astype("float32")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 77, "uint8")])
    for name in ("people", "scans", "junk", ".hidden"):
        os.makedirs(root / name, exist_ok=True)
    Image.fromarray(rgb).save(root / "people" / "img10.png")
    Image.fromarray(rgb).save(root / "people" / "img2.JPG", quality=95)
    Image.fromarray(rgba).save(root / "people" / "rgba.png")
    Image.fromarray(rgb).save(root / "people" / "anim.gif")
    Image.fromarray(gray).save(root / "scans" / "camera.bmp")
    Image.fromarray(gray16).save(root / "scans" / "xray16.png")
    tifffile.imwrite(root / "scans" / "xray16.tif", gray16)
    tifffile.imwrite(root / "scans" / "float.tiff", floats)
    Image.fromarray(rgb).save(root / "scans" / "photo.webp", lossless=True)
    # junk: skipped with a reason, or ignored
    buffer = (root / "people" / "img2.JPG").read_bytes()
    (root / "junk" / "truncated.jpg").write_bytes(buffer[: len(buffer) // 2])  # header reads, body cut: skipped
    png = bytearray((root / "people" / "img10.png").read_bytes())
    start = png.index(b"IDAT") + 20
    png[start:start + 64] = b"\xff" * 64  # complete, but its pixels do not decode: skipped while decoding
    (root / "junk" / "corrupt.png").write_bytes(bytes(png))
    (root / "junk" / "random.png").write_bytes(rng.bytes(300))
    (root / "junk" / "empty.png").write_bytes(b"")
    (root / "junk" / "notes.jpg").write_text("not an image")
    (root / "junk" / "readme.txt").write_text("ignored")
    Image.fromarray(rgb).save(root / ".hidden" / "secret.png")
    Image.fromarray(rgb).save(root / "people" / ".also_hidden.png")
    return {"img10.png": rgb / 255, "rgba.png": rgb / 255, "camera.bmp": gray[..., None] / 255,
            "xray16.png": gray16[..., None] / 65535, "xray16.tif": gray16[..., None] / 65535,
            "float.tiff": floats[..., None], "photo.webp": rgb / 255}


@pytest.fixture
def folder_path(tmp_path):
    write_folder(tmp_path)
    return tmp_path


def test_scan_order_skipped_and_labels(folder_path):
    folder = ImageFolder(folder_path)
    names = [os.path.relpath(f, folder_path) for f in folder.files]
    assert names == [os.path.join("junk", "corrupt.png")] + [os.path.join("people", n) for n in (
        "anim.gif", "img2.JPG", "img10.png", "rgba.png")] + [os.path.join("scans", n) for n in (
            "camera.bmp", "float.tiff", "photo.webp", "xray16.png", "xray16.tif")]
    assert sorted(os.path.basename(p) for p, _ in folder.skipped) == [
        "empty.png", "notes.jpg", "random.png", "truncated.jpg"]
    assert all(reason for _, reason in folder.skipped)
    assert folder.class_names == ["junk", "people", "scans"]
    assert folder.labels.tolist() == [0, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    assert folder.channel_counts() == {1: 4, 3: 6} and folder.num_channels == 3
    assert folder.sizes[1] == (24, 32) and folder.sizes[5] == (20, 20)


def test_pixels_match_numpy_formulas(folder_path):
    expected = write_folder(folder_path)
    folder = ImageFolder(folder_path)
    for index, path in enumerate(folder.files):
        name = os.path.basename(path)
        if name in expected:
            image = folder.load(index)
            assert image.dtype == np.float32 and image.shape == expected[name].shape, name
            np.testing.assert_allclose(image, expected[name], atol=1e-6, err_msg=name)
    gif = folder.load(folder.files.index(str(folder_path / "people" / "anim.gif")))
    assert gif.shape == (24, 32, 3)
    jpeg = folder.load(folder.files.index(str(folder_path / "people" / "img2.JPG")))
    assert np.abs(jpeg - expected["img10.png"]).mean() < 0.03  # lossy, but the same picture


def test_truncated_file_skipped_when_scanned_and_corrupt_one_raises_on_load(folder_path):
    folder = ImageFolder(folder_path)
    reasons = {os.path.basename(p): r for p, r in folder.skipped}
    assert "truncated JPEG: no end-of-image marker" in reasons["truncated.jpg"]
    with pytest.raises(ValueError, match="corrupt.png"):
        folder.load(0)


def test_read_converts_and_resizes(folder_path):
    folder = ImageFolder(folder_path / "scans")
    assert folder.class_names == [] and (folder.labels == -1).all()
    batch = folder.read([0, 3], image_size=(8, 10), num_channels=1)
    assert batch.shape == (2, 8, 10, 1) and batch.dtype == np.float32
    gray = folder.read(2, num_channels=1)  # the RGB webp to BT.601 luma
    rgb = folder.read(2)
    np.testing.assert_allclose(gray[..., 0], rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-5)
    with pytest.raises(ValueError, match="differ in size"):
        folder.read([0, 1])


def test_multichannel_tiff_keeps_every_band(tmp_path):
    bands = (np.random.default_rng(1).random((6, 16, 20)) * 65535).astype("uint16")
    tifffile.imwrite(tmp_path / "tile_planar.tif", bands)  # (C, H, W)
    tifffile.imwrite(tmp_path / "tile_last.tif", np.moveaxis(bands, 0, -1), planarconfig="contig")
    folder = ImageFolder(tmp_path)
    assert folder.channels == [6, 6] and folder.num_channels == 6
    for i in range(2):
        np.testing.assert_allclose(folder.load(i), np.moveaxis(bands, 0, -1) / 65535, atol=1e-6)


def test_extensions_recursive_and_write_skipped(folder_path, tmp_path_factory):
    folder = ImageFolder(folder_path, extensions=["PNG"])
    assert all(f.lower().endswith(".png") for f in folder.files) and len(folder.skipped) == 2
    assert ImageFolder(folder_path / "people", recursive=False).class_names == []
    out = tmp_path_factory.mktemp("run") / "skipped_files.txt"
    assert folder.write_skipped(out) == 2
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(folder_path)) and "\t" in lines[0]
    with pytest.raises(FileExistsError):  # never overwrites
        folder.write_skipped(out)


def test_empty_missing_and_unreadable_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolder(tmp_path / "nowhere")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"No image file .* found under `path`"):
        ImageFolder(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"No readable image .*skipped 1 file\(s\): .*bad.png"):
        ImageFolder(tmp_path)
    with pytest.raises(ValueError, match="must be a folder"):
        ImageFolder(tmp_path / "a.txt")
    with pytest.raises(TypeError, match="`path`"):
        ImageFolder(3)
    with pytest.raises(ValueError, match="`extensions`"):
        ImageFolder(tmp_path, extensions=".png")


def test_subset_is_a_view_sharing_skipped(folder_path):
    folder = ImageFolder(folder_path)
    heldout, train = folder.subset([1, 2]), folder.subset(range(2, len(folder)))
    assert heldout.files == folder.files[1:3] and heldout.labels.tolist() == [1, 1]
    assert len(train) == len(folder) - 2 and train.sizes == folder.sizes[2:]
    assert train.num_channels == folder.num_channels and train.class_names == folder.class_names
    with pytest.raises(ValueError, match=r"Cannot read .*corrupt.png"):
        folder.subset([0]).load(0)
    folder.subset([0]).mark_skipped(0, OSError("broken"))
    assert len(folder.skipped) == 5  # recorded in the shared list
    with pytest.raises(ValueError, match=r"`indices` must be a non-empty list of ints in \[0, 10\)"):
        folder.subset([10])
