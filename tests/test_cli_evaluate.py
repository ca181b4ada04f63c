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
    assert cli.main(["probe", str(saved_mae), "--output", str(run), "--epochs", "1", "--batch-size", "256",
                     "--block", "last"]) == 0
    result = _results(run)
    assert len(result["train_loss"]) == 1 and 0.0 <= result["top1"] <= 1.0
    probe = keras.saving.load_model(run / "probe.keras")
    mae = keras.saving.load_model(saved_mae)
    for a, b in zip(probe.encoder.get_weights(), mae.encoder.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (run / "history.csv").read_text().splitlines()[1].startswith("1,")  # epochs from 1, as pretrain's
    # the head norm's moving statistics are the training features' (6 steps from 0 and 1 were
    # not enough: a short probe was scored with statistics far from its features')
    x_train = load_labelled_digits("train")[0]
    feats = keras.ops.convert_to_numpy(mae.encoder(x_train))[:, 0].astype("float64")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(probe.head_norm.moving_variance), feats.var(0), rtol=1e-3)
    # the head started at the ridge classifier, recorded with its leave-one-out accuracy
    assert set(result["ridge_head"]) == {"l2", "scale", "loo_accuracy"}
    assert json.loads((run / "config.json").read_text())["resolved"]["head_init"] == "ridge"


def test_attentive_probe_trains_a_pooler_on_the_saved_encoders_tokens(saved_mae, tmp_path):
    run = tmp_path / "probe"
    assert cli.main(["probe", str(saved_mae), "--head", "attentive", "--output", str(run), "--epochs", "2",
                     "--batch-size", "256"]) == 0
    result = _results(run)
    assert result["head"] == "attentive" and result["block"] is None and len(result["train_loss"]) == 2
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    probe = keras.saving.load_model(run / "probe.keras")
    assert type(probe).__name__ == "AttentiveProbe" and probe.standardize_tokens and probe.num_queries == 1
    mae = keras.saving.load_model(saved_mae)
    for a, b in zip(probe.encoder.get_weights(), mae.encoder.get_weights()):
        np.testing.assert_array_equal(a, b)
    # the token norm's statistics: all the training tokens' (cls and patches), per channel
    tokens = keras.ops.convert_to_numpy(mae.encoder(load_labelled_digits("train")[0])).astype("float64")
    tokens = tokens.reshape(-1, tokens.shape[-1])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(probe.token_norm.moving_variance), tokens.var(0), rtol=1e-3)
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["head"] == "attentive" and config["resolved"]["standardize_tokens"] is True
    assert (config["args"]["learning_rate"], config["args"]["weight_decay"], config["args"]["warmup_epochs"]) == (
        1e-3, 1e-3, 0)  # V-JEPA's
    assert (run / "history.csv").read_text().splitlines()[2].startswith("2,")


@pytest.mark.parametrize("argv, expected", [
    ([], (90, 128, 10, 0.1, None)),  # MAE's linear probe
    (["--head", "attentive"], (20, 32, 0, None, 1e-3)),  # V-JEPA's attentive probe, batch 32
    (["--head", "attentive", "--epochs", "90", "--batch-size", "128"], (90, 128, 0, None, 1e-3)),  # given: kept
])
def test_each_head_takes_its_own_defaults_unless_given(saved_mae, tmp_path, argv, expected):
    from keras_mim.cli.probe import resolve_probe

    parser = cli.build_parser()
    args = parser.parse_args(["probe", str(saved_mae), "--output", str(tmp_path / "o"), *argv])
    resolve_probe(parser.subparsers["probe"], args)
    assert (args.epochs, args.batch_size, args.warmup_epochs, args.base_learning_rate, args.learning_rate) == expected


def test_attentive_default_epochs_give_at_least_the_minimum_steps(saved_mae, tmp_path, monkeypatch):
    from keras_mim.cli import probe as probe_command

    monkeypatch.setattr(probe_command, "ATTENTIVE_MIN_STEPS", 60)  # the default is 1000
    run = tmp_path / "probe"
    argv = ["probe", str(saved_mae), "--head", "attentive", "--labels-per-class", "2", "--batch-size", "10"]
    assert cli.main(argv + ["--output", str(run)]) == 0  # 20 images: 2 steps an epoch, so 30 epochs, not 20
    assert len(_results(run)["train_loss"]) == 30 == json.loads((run / "config.json").read_text())["args"]["epochs"]
    assert cli.main(argv + ["--epochs", "3", "--output", str(tmp_path / "given")]) == 0  # given: kept
    assert len(_results(tmp_path / "given")["train_loss"]) == 3


def test_random_init_is_a_fresh_encoder_of_the_same_architecture(saved_mae, tmp_path):
    run = tmp_path / "probe"
    argv = ["probe", str(saved_mae), "--random-init", "--seed", "1", "--output", str(run), "--epochs", "1",
            "--batch-size", "256", "--head-init", "random"]
    assert cli.main(argv) == 0
    probe = keras.saving.load_model(run / "probe.keras")
    mae = keras.saving.load_model(saved_mae)
    assert probe.encoder.get_config()["embed_dim"] == mae.encoder.embed_dim
    assert not np.allclose(probe.encoder.patch_embed.get_weights()[0], mae.encoder.patch_embed.get_weights()[0])
    assert _results(run)["weights"] == "random-init" and "ridge_head" not in _results(run)


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
      "y_test": np.zeros(4, int)}, "bad.npz' has shape (4, 8, 8, 1); this encoder takes (N, 16, 16, 1)"),
    ({"x_train": np.zeros((4, 16, 16)), "y_train": np.zeros(4), "x_test": np.zeros((4, 16, 16)),
      "y_test": np.zeros(4, int)}, "y_train must be 4 non-negative integer labels"),
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
    (["knn", "missing.keras"], "model 'missing.keras' does not exist"),
    (["probe", "{model}", "--dataset", "digits", "--data", "x.npz"], "either --dataset or --data"),
    (["knn", "{model}", "--k", "5000"], "--k 5000 is more than the 1438 training digits"),
    (["probe", "{model}", "--epochs", "0"], "must be a positive int"),
    (["knn", "{model}", "--pooling", "max"], "invalid choice"),
    (["probe", "{model}", "--head", "attentive", "--pooling", "cls"], "--pooling applies to --head linear only"),
    (["probe", "{model}", "--learning-rate", "0.01"], "--learning-rate applies to --head attentive only"),
    (["probe", "{model}", "--head", "attentive", "--block", "auto"], "--block auto chooses by ridge probes"),
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


def _png_folder(root, layout):
    """Two classes of 16 x 16 grayscale PNGs, bright and dark, and one file that is no PNG."""
    from PIL import Image

    rng = np.random.default_rng(0)
    splits = {"": 6} if layout == "classes" else {"train": 4, "val": 2}
    for split, count in splits.items():
        for name, low in (("bright", 150), ("dark", 0)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(low, low + 100, (16, 16)).astype("uint8")
                Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    (root / ("" if layout == "classes" else "train") / "dark" / "broken.png").write_bytes(b"not a png")
    return root


@pytest.mark.parametrize("layout", ["classes", "train_val"])
def test_image_folder_data(saved_mae, tmp_path, capsys, layout):
    data = _png_folder(tmp_path / "images", layout)
    run = tmp_path / "run"
    assert cli.main(["knn", str(saved_mae), "--data", str(data), "--k", "3", "--output", str(run)]) == 0
    assert f"skipped 1 unreadable file(s) of --data, listed in {run / 'skipped_files.txt'}" in capsys.readouterr().out
    resolved = json.loads((run / "config.json").read_text())["resolved"]
    # classes: 6 a class, a fixed 20% (1) of each held out; train_val: 4 and 2 a class as given
    assert resolved["class_names"] == ["bright", "dark"]
    assert (resolved["num_train"], resolved["num_test"]) == ((10, 2) if layout == "classes" else (8, 4))
    assert _results(run)["top1"] == 1.0  # bright against dark
    assert (run / "skipped_files.txt").read_text().startswith(str(data / ("" if layout == "classes" else "train")
                                                                  / "dark" / "broken.png"))


def test_help_names_the_data_folder_layout(capsys):
    with pytest.raises(SystemExit):
        cli.main(["probe", "--help"])
    assert "one subfolder per class (labels are the subfolder names in sorted order" in " ".join(
        capsys.readouterr().out.split())


def test_block_auto_chooses_on_training_images_only(saved_mae, tmp_path, monkeypatch):
    from keras_mim.evaluation import probe_selection

    seen = []
    choose = probe_selection.select_probe_features

    def recording(model, images, labels, **kwargs):
        seen.append((images, labels))
        return choose(model, images, labels, **kwargs)

    monkeypatch.setattr(probe_selection, "select_probe_features", recording)
    run = tmp_path / "probe"
    argv = ["probe", str(saved_mae), "--output", str(run), "--epochs", "1", "--batch-size", "256"]  # auto: the default
    assert cli.main(argv) == 0
    x_train, y_train = load_labelled_digits("train")
    [(images, labels)] = seen  # the training split, nothing of the test split
    np.testing.assert_array_equal(images, x_train)
    np.testing.assert_array_equal(labels, y_train)
    selection = json.loads((run / "config.json").read_text())["resolved"]["block_selection"]
    result = _results(run)
    best = f"{'last' if result['block'] is None else result['block']}/{result['pooling']}"
    assert selection["table"][best] == max(selection["table"].values())
    assert keras.saving.load_model(run / "probe.keras").block == result["block"]


def test_block_auto_with_one_image_a_class_probes_the_last_block(saved_mae, tmp_path, capsys):
    run = tmp_path / "probe"
    argv = ["probe", str(saved_mae), "--labels-per-class", "1", "--output", str(run), "--epochs", "1"]
    assert cli.main(argv) == 0
    assert "--block auto cannot choose" in capsys.readouterr().out and _results(run)["block"] is None
