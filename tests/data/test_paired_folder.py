"""PairedFolder: items paired by file name read back exactly (8-bit RGB, 16-bit and float
TIFF depth, class-id PNGs), items without a partner or with a broken / out-of-range file
skipped and listed, resizing (nearest for class maps)."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from keras_mim.data.paired_folder import PairedFolder
from keras_mim.data.paired_scenes import paired_scenes

pytestmark = pytest.mark.backend_independent  # numpy and files only
MODALITIES = {"rgb": 3, "depth": 1, "semseg": {"classes": 4}}


def write_scenes(root, n=5):
    s = paired_scenes(n, image_size=16, seed=0)
    rgb8 = np.round(s["rgb"] * 255).astype("uint8")
    depth16 = np.round(s["depth"][..., 0] / 8.0 * 65535).astype("uint16")
    for i in range(n):
        Image.fromarray(rgb8[i]).save(root / f"scene_{i:04d}_rgb.png")
        if i % 2:
            tifffile.imwrite(root / f"scene_{i:04d}_depth.tif", s["depth"][i, ..., 0])  # float, metres
        else:
            Image.fromarray(depth16[i]).save(root / f"scene_{i:04d}_depth.png")
        Image.fromarray(s["semseg"][i].astype("uint8"), mode="L").save(root / f"scene_{i:04d}_semseg.png")
    return s, rgb8, depth16


def test_items_read_back_exactly_and_bad_ones_are_listed(tmp_path):
    s, rgb8, depth16 = write_scenes(tmp_path)
    Image.fromarray(rgb8[0]).save(tmp_path / "lonely_rgb.png")  # no depth, no semseg
    Image.fromarray(rgb8[0]).save(tmp_path / "broken_rgb.png")
    Image.fromarray(depth16[0]).save(tmp_path / "broken_depth.png")
    (tmp_path / "broken_semseg.png").write_bytes(b"not a png")
    Image.fromarray(rgb8[0]).save(tmp_path / "wide_rgb.png")
    Image.fromarray(depth16[0]).save(tmp_path / "wide_depth.png")
    Image.fromarray(np.full((16, 16), 7, "uint8"), mode="L").save(tmp_path / "wide_semseg.png")  # class 7 of 4
    Image.fromarray(rgb8[0]).save(tmp_path / "notes.png")  # names no modality: ignored
    with pytest.warns(UserWarning, match="skipped 3 file"):
        folder = PairedFolder(tmp_path, MODALITIES)
    assert len(folder) == 5
    x = folder.arrays()
    np.testing.assert_array_equal(x["rgb"], rgb8 / np.float32(255))
    for i in range(5):
        expected = s["depth"][i] if i % 2 else depth16[i][..., None] / np.float32(65535)
        np.testing.assert_allclose(x["depth"][i], expected, rtol=1e-6)
    np.testing.assert_array_equal(x["semseg"], s["semseg"])
    reasons = {p.split("/")[-1]: r for p, r in folder.skipped}
    assert "no depth or semseg partner" in reasons["lonely_rgb.png"]
    assert "broken_semseg.png" in reasons and "not in [0, 4)" in reasons["wide_semseg.png"]
    assert folder.write_skipped(tmp_path / "skipped.txt") == 3
    assert "lonely_rgb.png\tno depth or semseg partner" in (tmp_path / "skipped.txt").read_text()
    with pytest.raises(FileExistsError):
        folder.write_skipped(tmp_path / "skipped.txt")  # never overwritten
    small = folder.arrays(image_size=8)
    assert small["rgb"].shape == (5, 8, 8, 3) and small["semseg"].dtype == np.int32
    assert set(np.unique(small["semseg"])) <= set(np.unique(s["semseg"]))  # nearest: no new class ids


def test_no_complete_item(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a_rgb.png")
    with pytest.raises(ValueError, match="No complete item"):
        PairedFolder(tmp_path, MODALITIES)
