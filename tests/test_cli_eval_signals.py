"""`keras-mim knn | probe | finetune` on an Audio-MAE or Point-MAE model: built-in labelled
sets, folders of labelled audio files and point clouds, and the argument checks."""

import csv
import json

import numpy as np
import pytest
from scipy.io import wavfile

from keras_mim import cli
from keras_mim.data.sample_audio import tone_clips


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A test-preset AudioMAE and PointMAE saved as the model.keras of a pretraining run."""
    from keras_mim import AudioMAE, PointMAE

    folder = tmp_path_factory.mktemp("models")
    audio = AudioMAE.from_preset("audiomae_vit_test", seed=0, spectrogram_mean=-6.0, spectrogram_std=3.0)
    audio.save(folder / "audio.keras")
    PointMAE.from_preset("pointmae_test", seed=0).save(folder / "points.keras")
    return folder


def results(run):
    return json.loads((run / "results.json").read_text())


@pytest.mark.one_backend(backend="torch")  # end to end; the classifiers and features run on every backend elsewhere
def test_point_clouds_knn_probe_finetune(models, tmp_path):
    model = str(models / "points.keras")
    out = tmp_path / "knn"
    assert cli.main(["knn", model, "--dataset", "shapes3d", "--labels-per-class", "5", "--k", "5",
                     "--output", str(out)]) == 0
    record = results(out)
    assert record["dataset"] == "shapes3d" and 0.0 <= record["top1"] <= 1.0
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["num_train"] == 30 and config["resolved"]["num_test"] == 300
    folder = tmp_path / "clouds"
    rng = np.random.default_rng(0)
    for c, scale in (("flat", (1.0, 1.0, 0.05)), ("tall", (0.05, 0.05, 1.0))):
        (folder / c).mkdir(parents=True)
        for i in range(10):
            np.save(folder / c / f"{i}.npy", rng.normal(size=(80, 3)) * scale)
    (folder / "flat" / "broken.npy").write_text("no array")
    out = tmp_path / "probe"
    assert cli.main(["probe", model, "--data", str(folder), "--epochs", "2", "--batch-size", "8",
                     "--output", str(out)]) == 0
    assert results(out)["top1"] >= 0.5  # two elongated shapes, 4 test clouds
    assert "broken.npy" in (out / "skipped_files.txt").read_text()
    out = tmp_path / "finetune"
    assert cli.main(["finetune", model, "--data", str(folder), "--epochs", "1", "--batch-size", "8",
                     "--output", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["resolved"]
    assert config["classifier"] == "PointClassifier" and config["num_train"] == 16
    assert json.loads((out / "config.json").read_text())["args"]["layer_decay"] == 1.0  # official: none
    assert (out / "classifier.keras").is_file()


@pytest.mark.one_backend(backend="torch")
def test_audio_knn_and_finetune_with_specaugment(models, tmp_path):
    model = str(models / "audio.keras")
    out = tmp_path / "knn"
    assert cli.main(["knn", model, "--dataset", "tones", "--k", "5", "--output", str(out)]) == 0
    assert results(out)["dataset"] == "tones"
    folder = tmp_path / "sounds"
    waves, labels, names = tone_clips(16, sample_rate=8000, seconds=0.5, seed=1)
    for i, (wave, label) in enumerate(zip(waves, labels)):
        (folder / names[label]).mkdir(parents=True, exist_ok=True)
        wavfile.write(folder / names[label] / f"{i}.wav", 8000, (wave * 20000).astype("int16"))
    out = tmp_path / "finetune"
    assert cli.main(["finetune", model, "--data", str(folder), "--epochs", "1", "--batch-size", "4",
                     "--time-mask", "6", "--output", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["resolved"]
    assert config["classifier"] == "ImageClassifier" and config["augmentation"] == "SpecAugment"
    assert config["time_mask"] == 6 and config["frequency_mask"] == 6  # 48/128 of 16 bins
    assert config["mask_value"] == pytest.approx(1.0)  # raw log-mel 0: (0 - (-6)) / (2 * 3)
    assert config["class_names"] == sorted(names)


@pytest.mark.one_backend(backend="torch")
def test_audio_multilabel_finetune_scores_like_sklearn(models, tmp_path):
    """Clips holding a subset of three tones, labelled by a 0/1-column CSV: the run's mAUC / mAP
    are scikit-learn's on its own predictions.csv; SpecAugment and mixup on multi-hot labels."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    t = np.arange(4000) / 8000.0
    rows = ["file,low,mid,high"]
    for i in range(20):
        hot = rng.random(3) < 0.5
        wave = sum(np.sin(2 * np.pi * f * t) for f, on in zip((300.0, 1100.0, 2600.0), hot) if on) + 0.01 * rng.normal(size=t.shape)
        wavfile.write(tmp_path / f"c{i:02d}.wav", 8000, (wave / 3 * 20000).astype("int16"))
        rows.append(f"c{i:02d}.wav," + ",".join(str(int(v)) for v in hot))
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert cli.main(["finetune", str(models / "audio.keras"), "--multi-label", "--data", str(tmp_path), "--labels",
                     str(tmp_path / "labels.csv"), "--test-fraction", "0.5", "--epochs", "1", "--batch-size", "4",
                     "--mixup", "0.5", "--output", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["resolved"]
    assert config["augmentation"] == "SpecAugment" and config["mixup"] == 0.5 and config["num_classes"] == 3
    with open(out / "predictions.csv") as f:
        table = list(csv.DictReader(f))
    scores = np.array([[float(r[f"logit:{c}"]) for c in ("low", "mid", "high")] for r in table])
    truth = np.array([[int(r[f"label:{c}"]) for c in ("low", "mid", "high")] for r in table])
    scored = [j for j in range(3) if 0 < truth[:, j].sum() < len(truth)]
    record = results(out)
    assert len(table) == 10 and record["multi_label"]
    assert record["mean_auc"] == pytest.approx(np.mean([roc_auc_score(truth[:, j], scores[:, j]) for j in scored]))
    assert record["mean_ap"] == pytest.approx(
        np.mean([average_precision_score(truth[:, j], scores[:, j]) for j in scored]))


@pytest.mark.backend_independent
@pytest.mark.parametrize("model, argv, message", [
    ("points", ["--dataset", "digits"], "a Point-MAE model (point clouds); give --dataset shapes3d"),
    ("audio", ["--dataset", "shapes3d"], "give --dataset spoken-digits or tones"),
    ("points", ["--data", "missing-folder"], "must be a folder of class subfolders of point clouds"),
    ("points", ["--dataset", "shapes3d", "--test-fraction", "0.3"], "--test-fraction applies to --data FOLDER"),
    ("points", ["--dataset", "shapes3d", "--labels-per-class", "500"], "is more than the 100 training images"),
])
def test_bad_arguments_exit_2(models, model, argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(["knn", str(models / f"{model}.keras"), *argv, "--output", str(tmp_path / "run")])
    assert error.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.backend_independent
@pytest.mark.parametrize("model, argv, message", [
    ("points", ["--mixup", "0.5"], "--mixup does not apply to a Point-MAE model"),
    ("points", ["--time-mask", "4"], "--time-mask does not apply to a Point-MAE model"),
    ("audio", ["--augmentation", "mae"], "--augmentation mae is the image recipe"),
    ("audio", ["--rand-augment-ops", "2"], "--rand-augment-ops does not apply to an Audio-MAE model"),
    ("points", ["--multi-label"], "--multi-label fine-tunes image and Audio-MAE models"),
    ("audio", ["--multi-label", "--translate", "0.1"], "--translate applies to single-label fine-tuning"),
])
def test_bad_finetune_arguments_exit_2(models, model, argv, message, tmp_path, capsys):
    if "--multi-label" in argv:
        (tmp_path / "labels.csv").write_text("path,a\n")
        dataset = ["--data", str(tmp_path), "--labels", str(tmp_path / "labels.csv")]
    else:
        dataset = ["--dataset", "tones" if model == "audio" else "shapes3d"]
    with pytest.raises(SystemExit) as error:
        cli.main(["finetune", str(models / f"{model}.keras"), *dataset, *argv, "--output", str(tmp_path / "run")])
    assert error.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.backend_independent
def test_image_model_refuses_audio_sets(tmp_path, capsys):
    from keras_mim import MaskedAutoencoder

    MaskedAutoencoder.from_preset("mae_vit_test", seed=0).save(tmp_path / "mae.keras")
    with pytest.raises(SystemExit) as error:
        cli.main(["knn", str(tmp_path / "mae.keras"), "--dataset", "tones", "--output", str(tmp_path / "run")])
    assert error.value.code == 2 and "--dataset tones is not image data" in capsys.readouterr().err
