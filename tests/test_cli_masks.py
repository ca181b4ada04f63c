"""`keras-mim masks`: the gallery of every masking strategy, on a sample photo or an image file."""

import os

import numpy as np
import pytest

from keras_mim import cli

pytestmark = pytest.mark.one_backend  # end to end; the mask generators are tested on every backend


def test_masks_gallery(tmp_path, capsys):
    out = tmp_path / "gallery.png"
    argv = ["masks", "--image-size", "64", "--patch-size", "8", "--samples", "2", "--output", str(out),
            "--strategies", "random,green,tube,simmim"]
    # simmim's 32 px cells over 8 px patches tile the 64 px image as 2 x 2 cells
    assert cli.main(argv) == 0
    image = __import__("matplotlib.image", fromlist=["imread"]).imread(out)
    assert image.ndim == 3 and image.shape[0] > image.shape[1] / 2  # four rows
    before = out.read_bytes()
    with pytest.raises(SystemExit) as error:  # never overwritten silently
        cli.main(argv)
    assert error.value.code == 2 and "already exists" in capsys.readouterr().err
    assert out.read_bytes() == before
    photo = tmp_path / "photo.png"  # --image: a file of the user's, not only a scikit-image sample
    __import__("PIL.Image", fromlist=["Image"]).fromarray(np.full((40, 60, 3), 200, "uint8")).save(photo)
    assert cli.main(argv + ["--overwrite", "--seed", "3", "--image", str(photo)]) == 0
    assert out.read_bytes() != before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--strategies", "random,chessboard"], "unknown --strategies ['chessboard']"),
        (["--image-size", "100", "--patch-size", "16"], "--image-size 100 is not divisible by --patch-size 16"),
        (["--image", "{tmp}/missing.png"], "missing.png': no such file, and not a scikit-image sample photo"),
        (["--image", "no_such_sample"], "--image 'no_such_sample': no such file, and not a scikit-image sample"),
        (["--image", "{tmp}/x.png"], "x.png' cannot be read as an image"),
        (["--output", "{tmp}", "--overwrite"], "is a folder; give the PNG file to write"),
    ],
)
def test_masks_bad_arguments(argv, message, tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"not a png")
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as error:
        cli.main(["masks", *argv] + ([] if "--output" in argv else ["--output", str(tmp_path / "new.png")]))
    assert error.value.code == 2 and message in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["x.png"]  # nothing written
