"""`keras-mim pretrain --data`: your own image folder or a prepared tfds set."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image
from sklearn.datasets import load_digits
from skimage import data as samples

from keras_mim import cli

pytestmark = pytest.mark.one_backend  # end to end: one pass of a CI run runs each test (tests/conftest.py);
# the per-backend parts (each method's fit, saving, the data pipelines) are tested on every backend

TINY = ["--preset", "mae_vit_test", "--epochs", "1", "--batch-size", "4"]


def write_folder(root, n=14):
    """`n` crops of different sizes from scikit-image photos (PNG and JPEG, two levels deep)
    plus one corrupt file and one JPEG cut short."""
    photos = [samples.astronaut(), samples.coffee(), samples.chelsea()]
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        crop = photos[i % 3][10 * i: 10 * i + 40 + i, 5 * i: 5 * i + 50]
        Image.fromarray(crop).save(root / ("sub" if i % 2 else ".") / f"img{i}.{'jpg' if i % 3 else 'png'}")
    (root / "broken.png").write_bytes(b"not a png")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype="uint8")
    Image.fromarray(noise).save(root / "sub" / "cut.jpg")
    body = (root / "sub" / "cut.jpg").read_bytes()
    (root / "sub" / "cut.jpg").write_bytes(body[: len(body) // 2])  # its header reads, its body is cut
    return root


def test_folder_run_writes_skipped_files_and_holds_out_images(tmp_path, capsys):
    folder, run = write_folder(tmp_path / "my images été"), tmp_path / "run"  # spaces, non-ASCII
    assert cli.main(["pretrain", "--data", str(folder), "--output", str(run), *TINY]) == 0
    skipped = sorted((run / "skipped_files.txt").read_text(encoding="utf-8").splitlines())
    assert [line.split("\t")[0] for line in skipped] == [str(folder / "broken.png"), str(folder / "sub" / "cut.jpg")]
    assert "truncated JPEG" in skipped[1]
    out = capsys.readouterr().out
    summary = [line for line in out.splitlines() if "skipped 2" in line]  # one line for all, naming the list
    assert len(summary) == 1 and str(run / "skipped_files.txt") in summary[0]
    # 6 training images, batch 4, 1 epoch: 1 update in all, said with a better setting
    assert "only 1 optimizer updates in all" in out and "Try --batch-size 4 --epochs 500" in out
    config = json.loads((run / "config.json").read_text())
    assert config["args"]["data"] == str(folder) and config["args"]["augmentation"] == "mae"
    # 14 readable images (the cut one not counted): 8 held out for the figures, 6 trained on in full batches of 4
    assert config["resolved"]["num_train_images"] == 6 and config["resolved"]["steps_per_epoch"] == 1
    history = json.loads((run / "history.json").read_text())
    assert np.isfinite(history["final_loss"]) and (run / "reconstructions.png").exists()
    assert history["value_check"] is None and not (run / "value_check.json").exists()  # no class subfolders


def test_view_pair_method_cuts_its_views_from_the_folder(tmp_path):
    folder, run = write_folder(tmp_path / "images"), tmp_path / "run"
    argv = ["pretrain", "--data", str(folder), "--method", "ibot", "--preset", "ibot_vit_test", "--epochs", "1",
            "--batch-size", "2", "--output", str(run)]
    assert cli.main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["args"]["augmentation"] == "none"  # the view recipe crops
    assert config["resolved"]["num_train_images"] == 6 and config["resolved"]["steps_per_epoch"] == 3
    assert np.isfinite(json.loads((run / "history.json").read_text())["final_loss"])


def test_class_subfolders_end_with_the_value_check(tmp_path, capsys):
    digits = load_digits()
    for i in np.flatnonzero(digits.target < 3)[:36]:  # 3 classes of real digits, 12 each
        (tmp_path / "data" / f"class {digits.target[i]}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits.images[i] * 15).astype("uint8")).save(tmp_path / "data" / f"class {digits.target[i]}" / f"{i}.png")
    run = tmp_path / "run"
    argv = ["pretrain", "--data", str(tmp_path / "data"), "--output", str(run), "--image-size", "16", *TINY,
            "--monitor-every", "1"]
    assert cli.main(argv) == 0
    monitor = json.loads((run / "monitor.json").read_text())["records"]
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in monitor] == [0, 1] and history["probe_top1"] == [monitor[1]["probe_top1"]]
    assert history["knn_top1"] == [monitor[1]["knn_top1"]] and "probe_last_top1" in (run / "history.csv").read_text()
    check = json.loads((run / "value_check.json").read_text())
    assert check["classes"] == ["class 0", "class 1", "class 2"]
    assert check["num_train"] + check["num_test"] == 36 and 6 <= check["num_test"] <= 9 and check["k"] == 20
    assert 0 <= check["pretrained"] <= 1 and 0 <= check["random_init"] <= 1
    assert json.loads((run / "history.json").read_text())["value_check"] == check
    line = next(line for line in capsys.readouterr().out.splitlines() if "value check" in line)
    assert f"pretrained {check['pretrained']:.3f} vs random init {check['random_init']:.3f}" in line


class KerasMimCliImages(tfds.core.GeneratorBasedBuilder):
    """Twenty 16 x 16 gray images, generated (no download)."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = epath.Path(__file__)  # see tests/data/test_images.py

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"image": tfds.features.Image(shape=(16, 16, 1))}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(20):
            yield i, {"image": np.full((16, 16, 1), 10 * i, "uint8")}


def test_prepared_tfds_set_runs_offline(tmp_path):
    KerasMimCliImages(data_dir=str(tmp_path / "tfds")).download_and_prepare()
    run = tmp_path / "run"
    assert cli.main(["pretrain", "--data", "tfds:keras_mim_cli_images", "--data-dir", str(tmp_path / "tfds"),
                     "--augmentation", "none", "--output", str(run), *TINY]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["num_train_images"] == 12 and config["resolved"]["num_channels"] == 1
    assert config["resolved"]["steps_per_epoch"] == 3


@pytest.mark.parametrize("argv, message", [
    (["--data", "{folder}", "--dataset", "digits"], "--data and --dataset both choose the training images"),
    (["--data", "{folder}", "--method", "videomae"], "--data holds single images; --method videomae needs clips"),
    (["--augmentation", "mae"], "--augmentation, --data-dir and --split apply to --data only"),
    (["--data", "{folder}", "--split", "test"], "--data-dir and --split apply to --data tfds:NAME only"),
    (["--data", "{folder}", "--num-images", "7"], "--num-images 7 is more than the 6 training images"),
    (["--data", "{folder}", "--batch-size", "8"], "the 6 training images of --data"),
])
def test_bad_data_arguments_exit_2(argv, message, tmp_path, capsys):
    folder = write_folder(tmp_path / "images")
    argv = [a.format(folder=folder) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["pretrain", "--output", str(tmp_path / "run"), "--preset", "mae_vit_test", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
