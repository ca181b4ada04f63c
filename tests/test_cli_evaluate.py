"""`keras-mim probe` and `keras-mim knn` on saved models (finetune: tests/test_cli_finetune.py)."""

import json

import keras
import numpy as np
import pytest

from keras_mim import MaskedAutoencoder, ViTEncoder, cli
from keras_mim.data import load_labelled_digits

pytestmark = pytest.mark.one_backend  # end to end: one pass of a CI run runs each test (tests/conftest.py);
# the per-backend parts (each method's fit, saving, the data pipelines) are tested on every backend


@pytest.fixture(scope="module")
def saved_mae(tmp_path_factory):
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("mae") / "model.keras"
    MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1, seed=0).save(path)
    return path


def _results(folder):
    return json.loads((folder / "results.json").read_text())


def test_knn_writes_results(saved_mae, tmp_path):
    assert cli.main(["knn", str(saved_mae), "--output", str(tmp_path / "knn"), "--k", "5"]) == 0
    result = _results(tmp_path / "knn")
    assert result["weights"] == "pretrained" and result["k"] == 5 and result["pooling"] == "cls"
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    config = json.loads((tmp_path / "knn" / "config.json").read_text())
    assert config["resolved"]["num_train"] == 1438 and config["resolved"]["num_test"] == 359


def test_probe_trains_only_the_head_on_the_saved_encoder(saved_mae, tmp_path):
    run = tmp_path / "probe"
    assert cli.main(["probe", str(saved_mae), "--output", str(run), "--epochs", "1", "--batch-size", "256"]) == 0
    result = _results(run)
    assert len(result["train_loss"]) == 1 and 0.0 <= result["top1"] <= 1.0
    probe = keras.saving.load_model(run / "probe.keras")
    mae = keras.saving.load_model(saved_mae)
    for a, b in zip(probe.encoder.get_weights(), mae.encoder.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (run / "history.csv").read_text().startswith("epoch")


def test_random_init_is_a_fresh_encoder_of_the_same_architecture(saved_mae, tmp_path):
    run = tmp_path / "probe"
    argv = ["probe", str(saved_mae), "--random-init", "--seed", "1", "--output", str(run), "--epochs", "1",
            "--batch-size", "256"]
    assert cli.main(argv) == 0
    probe = keras.saving.load_model(run / "probe.keras")
    mae = keras.saving.load_model(saved_mae)
    assert probe.encoder.get_config()["embed_dim"] == mae.encoder.embed_dim
    assert not np.allclose(probe.encoder.patch_embed.get_weights()[0], mae.encoder.patch_embed.get_weights()[0])
    assert _results(run)["weights"] == "random-init"


def test_npz_data(saved_mae, tmp_path):
    x, y = load_labelled_digits("test")
    data = tmp_path / "data.npz"
    u8 = (x[..., 0] * 255).astype("uint8")  # (N, H, W) uint8 is accepted
    np.savez(data, x_train=u8[:200], y_train=y[:200], x_test=u8[200:], y_test=y[200:])
    assert cli.main(["knn", str(saved_mae), "--data", str(data), "--output", str(tmp_path / "k")]) == 0
    assert _results(tmp_path / "k")["dataset"] == str(data)


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.zeros((4, 16, 16))}, "lacks y_train, x_test, y_test"),
    ({"x_train": np.zeros((4, 8, 8)), "y_train": np.zeros(4, int), "x_test": np.zeros((4, 8, 8)),
      "y_test": np.zeros(4, int)}, "x_train in --data has shape (4, 8, 8, 1); this encoder takes (N, 16, 16, 1)"),
    ({"x_train": np.zeros((4, 16, 16)), "y_train": np.zeros(4), "x_test": np.zeros((4, 16, 16)),
      "y_test": np.zeros(4, int)}, "y_train in --data must be 4 non-negative integer labels"),
    ({"x_train": np.full((4, 16, 16), np.nan), "y_train": np.zeros(4, int), "x_test": np.zeros((4, 16, 16)),
      "y_test": np.zeros(4, int)}, "NaN or infinite"),
])
def test_bad_npz_exits_2_before_writing(saved_mae, tmp_path, capsys, arrays, message):
    data = tmp_path / "bad.npz"
    np.savez(data, **arrays)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["knn", str(saved_mae), "--data", str(data), "--k", "2", "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err or pytest.fail(message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["knn", "missing.keras"], "must be an existing .keras file"),
    (["probe", "{model}", "--dataset", "digits", "--data", "x.npz"], "either --dataset or --data"),
    (["knn", "{model}", "--k", "5000"], "--k 5000 is more than the 1438 training digits"),
    (["probe", "{model}", "--epochs", "0"], "must be a positive int"),
    (["knn", "{model}", "--pooling", "max"], "invalid choice"),
])
def test_bad_arguments_exit_2(saved_mae, tmp_path, capsys, argv, message):
    argv = [a.replace("{model}", str(saved_mae)) for a in argv] + ["--output", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_existing_results_are_never_overwritten(saved_mae, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text("mine")
    with pytest.raises(SystemExit):
        cli.main(["knn", str(saved_mae), "--output", str(run)])
    assert (run / "results.json").read_text() == "mine"
    assert "already exists and is not empty" in capsys.readouterr().err


def test_cls_pooling_on_an_encoder_without_cls_token(tmp_path, capsys):
    path = tmp_path / "enc.keras"
    ViTEncoder(image_size=16, patch_size=4, num_channels=1, embed_dim=32, depth=1, num_heads=2,
               cls_token=False).save(path)
    with pytest.raises(SystemExit):
        cli.main(["knn", str(path), "--pooling", "cls", "--output", str(tmp_path / "o")])
    assert "needs an encoder with a cls token" in capsys.readouterr().err
