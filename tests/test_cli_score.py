"""`keras-mim score`: a CSV ranking every image by its reconstruction error, the AUROC (equal
to scikit-learn's on the CSV's own scores) on the built-in constructed case and on a user
folder with a labels CSV; bad arguments exit 2 before anything is loaded."""

import csv
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from keras_mim import MaskedAutoencoder
from keras_mim.cli import main

pytestmark = pytest.mark.one_backend(backend="torch")  # the scores' numerics: tests/evaluation/test_anomaly.py


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("score") / "mae.keras"
    MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1, norm_pix_loss=False, seed=0).save(path)
    return str(path)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_builtin_case_ranks_every_image_and_reports_sklearns_auroc(model_file, tmp_path):
    main(["score", model_file, "--dataset", "digits-inverted", "--num-masks", "1", "--output", str(tmp_path / "s")])
    rows = read_csv(tmp_path / "s" / "scores.csv")
    assert len(rows) == 718 and [int(r["rank"]) for r in rows] == list(range(1, 719))
    scores = np.array([float(r["score"]) for r in rows])
    assert (np.diff(scores) <= 0).all()  # highest first
    result = json.loads((tmp_path / "s" / "results.json").read_text())
    assert result["auroc"] == pytest.approx(roc_auc_score([int(r["label"]) for r in rows], scores), abs=1e-4)


def test_user_folder_with_labels_csv(model_file, tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    files = ["a.png", "b.png", "sub/c.png", "sub/d.png"]
    for i, name in enumerate(files):
        Image.fromarray((rng.random((20, 20)) * 255 * (i + 1) / 4).astype("uint8")).save(data / name)
    (data / "broken.png").write_text("not an image")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\n" + "".join(f"{f},{int(i >= 2)}\n" for i, f in enumerate(files)))
    main(["score", model_file, "--data", str(data), "--labels", str(labels), "--num-masks", "2",
          "--output", str(tmp_path / "s")])
    rows = read_csv(tmp_path / "s" / "scores.csv")
    assert sorted(r["file"] for r in rows) == sorted(files)
    result = json.loads((tmp_path / "s" / "results.json").read_text())
    assert result["auroc"] == pytest.approx(
        roc_auc_score([int(r["label"]) for r in rows], [float(r["score"]) for r in rows]), abs=1e-4)
    assert "broken.png" in (tmp_path / "s" / "skipped_files.txt").read_text()


@pytest.mark.parametrize("args, message", [
    (["--dataset", "digits-inverted", "--data", "."], "one of --data FOLDER or --dataset"),
    (["--dataset", "digits-inverted", "--labels", "x.csv"], "--labels goes with --data"),
    (["--data", "no-such-folder"], "is not a folder"),
])
def test_bad_arguments_exit_2(model_file, args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["score", model_file, *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_bad_labels_csv_exits_2(model_file, tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("file,label\na.png,maybe\n")
    with pytest.raises(SystemExit):
        main(["score", model_file, "--data", str(tmp_path), "--labels", str(tmp_path / "labels.csv")])
    assert "expected 0 (normal) or 1 (anomalous)" in capsys.readouterr().err
