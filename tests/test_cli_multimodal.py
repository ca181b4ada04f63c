"""`keras-mim pretrain` on several inputs: MultiMAE on a user folder of paired files (items
missing a partner skipped and listed, the trunk is what knn / probe / finetune take), SatMAE
on a folder of 10-band TIFFs (each band normalised with the training set's statistics),
and the options' checks. The built-in sets (scenes, multispectral) run in
tests/test_cli.py's per-method test; each model's fit on every backend is the method
suite's."""

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from keras_mim import cli
from keras_mim.data.multispectral import SATMAE_BANDS, multispectral_scenes
from keras_mim.data.paired_scenes import paired_scenes

pytestmark = pytest.mark.one_backend

TINY = ["--epochs", "1", "--batch-size", "2"]


def _paired_folder(root, count=12):
    s = paired_scenes(count, image_size=16, seed=3)
    root.mkdir()
    for i in range(count):
        Image.fromarray((s["rgb"][i] * 255).astype("uint8")).save(root / f"scene_{i:04d}_rgb.png")
        tifffile.imwrite(root / f"scene_{i:04d}_depth.tif", s["depth"][i, ..., 0])  # float, scene units
        Image.fromarray(s["semseg"][i].astype("uint8"), mode="L").save(root / f"scene_{i:04d}_semseg.png")
    Image.fromarray((s["rgb"][0] * 255).astype("uint8")).save(root / "lonely_rgb.png")  # no partners


def test_multimae_on_a_paired_folder(tmp_path):
    import keras

    from keras_mim.evaluation import load_encoder

    _paired_folder(tmp_path / "pairs")
    run = tmp_path / "run"
    argv = ["pretrain", "--method", "multimae", "--preset", "multimae_vit_test", *TINY,
            "--data", str(tmp_path / "pairs"), "--output", str(run)]
    assert cli.main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert config["resolved"]["num_train_images"] == 4 and config["resolved"]["num_tokens"] == 48  # 12 - 8; 3 x 16
    assert np.isfinite(history["loss"][0]) and np.isfinite(history["heldout_pixel_mse"])
    assert "lonely_rgb.png" in (run / "skipped_files.txt").read_text(encoding="utf-8")
    assert (run / "reconstructions.png").is_file() and (run / "figures" / "reconstruction_epoch0001.png").is_file()
    model = keras.saving.load_model(run / "model.keras")
    assert type(model).__name__ == "MultiMAE"
    encoder = load_encoder(run / "model.keras")  # what knn / probe / finetune evaluate: the RGB ViT
    assert type(encoder).__name__ == "ViTEncoder" and encoder.num_channels == 3


def test_satmae_on_a_folder_of_band_stacks(tmp_path):
    import keras

    tiles = multispectral_scenes(12, image_size=16, seed=1)[0][..., list(SATMAE_BANDS)]
    folder = tmp_path / "tiles"
    folder.mkdir()
    for i, tile in enumerate(tiles):
        # Sentinel-2 L2A style: reflectance x 10000 in uint16, band-separate (C, H, W) as GeoTIFF exports
        tifffile.imwrite(folder / f"tile{i}.tif", np.moveaxis((tile * 10000).astype("uint16"), -1, 0))
    run = tmp_path / "run"
    argv = ["pretrain", "--method", "satmae", "--preset", "satmae_vit_test", *TINY, "--augmentation", "none",
            "--data", str(folder), "--output", str(run)]
    assert cli.main(argv) == 0
    history = json.loads((run / "history.json").read_text())
    assert np.isfinite(history["loss"][0]) and np.isfinite(history["heldout_pixel_mse"])
    model = keras.saving.load_model(run / "model.keras")
    # the band statistics of the 4 training tiles, as read (16-bit / 65535)
    train = tiles[np.setdiff1d(np.arange(12), np.linspace(0, 11, 8).round().astype(int))]
    read = (train * 10000).astype("uint16") / 65535.0
    np.testing.assert_allclose(model.encoder.band_mean, read.reshape(-1, 10).mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.encoder.band_std, read.reshape(-1, 10).std(0), rtol=1e-3, atol=1e-6)


@pytest.mark.backend_independent
@pytest.mark.parametrize("argv, message", [
    (["--method", "multimae", "--modalities", "rgb:x"], "is not NAME:CHANNELS or NAME:classes=K"),
    (["--method", "multimae", "--modalities", "rgb:3,depth:2"], "--dataset scenes holds"),
    (["--method", "mae", "--modalities", "rgb:3"], "--modalities applies to methods on paired modalities"),
    (["--method", "mae", "--channel-groups", "0;1"], "--channel-groups applies to methods on band groups"),
    (["--method", "satmae", "--channel-groups", "0,a"], "is not band indices"),
    (["--method", "multimae", "--dataset", "digits"], "pretrains on paired; use --dataset scenes"),
    (["--method", "satmae", "--dataset", "scenes"], "pretrains on multispectral; use --dataset multispectral"),
    (["--method", "multimae", "--data", "tfds:mnist"], "takes --data as a folder of paired files"),
])
def test_bad_arguments_exit_2(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(["pretrain", *argv, "--output", str(tmp_path / "run")])
    assert error.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
