"""`keras-mim finetune --multi-label`: labels from a CSV beside the images (both layouts), a
sigmoid head trained with binary cross-entropy, and per-class AUC / AP whose means equal
scikit-learn's on the run's own predictions.csv; bad arguments exit 2 before Keras loads."""

import csv
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from keras_mim import MaskedAutoencoder
from keras_mim.cli import main
from keras_mim.data import load_labelled_digits
from keras_mim.data.multilabel_csv import read_multilabel_csv
from keras_mim.evaluation.multilabel import multilabel_metrics

pytestmark = pytest.mark.one_backend(backend="torch")  # end to end; ImageClassifier trains on every backend elsewhere


def mosaic_folder(root, count=24):
    """32 px mosaics of four 16 px digits; the labels are the digits 0-2 present (findings layout)."""
    digits, labels = load_labelled_digits("train", image_size=(16, 16), seed=0)
    rng = np.random.default_rng(0)
    root.mkdir()
    rows = ["Image Index,Finding Labels"]
    for i in range(count):
        pick = rng.choice(len(digits), 4, replace=False)
        tiles = digits[pick, :, :, 0]
        image = np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]])
        Image.fromarray((image * 255).astype("uint8")).save(root / f"m{i:02d}.png")
        found = sorted({f"digit{d}" for d in labels[pick] if d < 3})
        rows.append(f"m{i:02d}.png,{'|'.join(found) or 'No Finding'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ml") / "mae.keras"
    MaskedAutoencoder.from_preset("mae_vit_test", image_size=32, patch_size=8, num_channels=1, seed=0).save(path)
    return str(path)


def test_multilabel_finetune_reports_sklearns_mauc_and_map(model_file, tmp_path):
    data = mosaic_folder(tmp_path / "data")
    main(["finetune", model_file, "--multi-label", "--data", str(data), "--labels", str(data / "labels.csv"),
          "--epochs", "1", "--batch-size", "8", "--test-fraction", "0.5", "--output", str(tmp_path / "run")])
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    with open(tmp_path / "run" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    classes = ["digit0", "digit1", "digit2"]
    scores = np.array([[float(r[f"logit:{c}"]) for c in classes] for r in rows])
    truth = np.array([[int(r[f"label:{c}"]) for c in classes] for r in rows])
    scored = [j for j in range(3) if 0 < truth[:, j].sum() < len(truth)]
    assert result["mean_auc"] == pytest.approx(np.mean([roc_auc_score(truth[:, j], scores[:, j]) for j in scored]))
    assert result["mean_ap"] == pytest.approx(
        np.mean([average_precision_score(truth[:, j], scores[:, j]) for j in scored]))
    assert (tmp_path / "run" / "classifier.keras").is_file() and len(rows) == 12


@pytest.mark.backend_independent
def test_both_csv_layouts_read_the_same_labels(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "findings.csv").write_text("Image Index,Finding Labels\na.png,Mass|Effusion\nb.png,No Finding\n"
                                           "c.png,Mass\nd.png,Mass\n")
    (tmp_path / "columns.csv").write_text("Path,Effusion,Mass\na.png,1,1\nb.png,0,\nc.png,-1,1\n")
    findings = read_multilabel_csv(tmp_path / "findings.csv", tmp_path)
    columns = read_multilabel_csv(tmp_path / "columns.csv", tmp_path)
    assert findings["class_names"] == columns["class_names"] == ["Effusion", "Mass"]
    np.testing.assert_array_equal(findings["labels"], [[1, 1], [0, 0], [0, 1]])
    np.testing.assert_array_equal(columns["labels"], findings["labels"])  # -1 (uncertain) -> 0
    assert findings["missing"] == ["d.png"]
    assert read_multilabel_csv(tmp_path / "columns.csv", tmp_path, uncertain=1)["labels"][2].tolist() == [1, 1]


@pytest.mark.backend_independent
def test_metrics_match_sklearn_and_skip_one_valued_classes():
    rng = np.random.default_rng(0)
    y = (rng.random((40, 4)) < 0.4).astype(int)
    y[:, 3] = 0  # no positive: not scored
    s = rng.normal(size=(40, 4)) + y
    m = multilabel_metrics(y, s, ["a", "b", "c", "d"])
    assert m["unscored"] == ["d"]
    assert m["mean_auc"] == pytest.approx(np.mean([roc_auc_score(y[:, j], s[:, j]) for j in range(3)]))
    assert m["mean_ap"] == pytest.approx(np.mean([average_precision_score(y[:, j], s[:, j]) for j in range(3)]))


@pytest.mark.parametrize("args, message", [
    (["--multi-label"], "--multi-label needs --data FOLDER"),
    (["--multi-label", "--data", ".", "--labels", "no.csv"], "is not a file"),
    (["--multi-label", "--data", ".", "--labels", "x", "--mixup", "0.8"], "--mixup applies to single-label"),
    (["--labels", "x.csv"], "--labels goes with --multi-label"),
])
def test_bad_arguments_exit_2(model_file, args, message, capsys, tmp_path):
    (tmp_path / "x").write_text("")
    args = [str(tmp_path / "x") if a == "x" else a for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", model_file, *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.backend_independent
def test_medmae_presets_pretrain_with_the_medical_augmentation(tmp_path):
    from keras_mim.cli import build_parser
    from keras_mim.cli.pretrain import resolve_pretrain
    from keras_mim.models.presets import PRESETS

    for i in range(12):
        Image.fromarray(np.full((20, 20), i * 20, "uint8")).save(tmp_path / f"{i}.png")
    parser = build_parser()
    for preset, expected in (("medmae_vit_base_patch16", "medical"), ("mae_vit_test", "mae")):
        args = parser.parse_args(["pretrain", "--preset", preset, "--data", str(tmp_path), "--batch-size", "2",
                                  "--output", str(tmp_path / f"run_{preset}")])
        resolve_pretrain(parser.subparsers["pretrain"], args)
        assert args.augmentation == expected
    assert PRESETS["medmae_vit_base_patch16"]["kwargs"]["mask_ratio"] == 0.9
