"""`keras-mim finetune` on a saved model."""

import json

import keras
import numpy as np
import pytest

from keras_mim import ImageClassifier, cli
from tests.test_cli_evaluate import saved_mae  # noqa: F401  (fixture)

pytestmark = pytest.mark.one_backend  # end to end: one pass of a CI run runs each test (tests/conftest.py);
# the per-backend parts (each method's fit, saving, the data pipelines) are tested on every backend


def test_finetune_run_folder(saved_mae, tmp_path):  # noqa: F811
    run = tmp_path / "ft"
    argv = ["finetune", str(saved_mae), "--output", str(run), "--epochs", "1", "--batch-size", "128",
            "--warmup-epochs", "0"]
    assert cli.main(argv) == 0
    result = json.loads((run / "results.json").read_text())
    assert result["weights"] == "pretrained" and 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert len(result["train_loss"]) == 1 and np.isfinite(result["train_loss"][0])
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["steps_per_epoch"] == 1438 // 128 and config["args"]["layer_decay"] == 0.75
    # 1438 training images: the light recipe (flips only, base lr 4e-3)
    assert {k: config["args"][k] for k in ("augmentation", "rand_augment_ops", "mixup", "cutmix", "translate",
                                           "base_learning_rate")} == {
        "augmentation": "light", "rand_augment_ops": 0, "mixup": 0.0, "cutmix": 0.0, "translate": 0.0,
        "base_learning_rate": 4e-3}
    model = keras.saving.load_model(run / "classifier.keras")
    assert isinstance(model, ImageClassifier) and model.pooling == "avg" and model.drop_path_rate == 0.1
    assert (run / "history.csv").read_text().splitlines()[1].startswith("1,")  # epochs from 1, as pretrain's
    # the fine-tuned encoder started from the saved one and moved
    mae = keras.saving.load_model(saved_mae)
    assert not np.allclose(model.encoder.patch_embed.get_weights()[0], mae.encoder.patch_embed.get_weights()[0])


@pytest.mark.parametrize("argv, message", [
    (["--cutmix", "2"], "--cutmix must be in [0, 1]"),
    (["--layer-decay", "0"], "must be a number in (0, 1]"),
    (["--drop-path", "1.5"], "must be a number in [0, 1)"),
    (["--mixup", "-1"], "must be a non-negative number"),
    (["--rand-augment-ops", "9"], "invalid choice"),
])
def test_bad_arguments_exit_2(saved_mae, tmp_path, capsys, argv, message):  # noqa: F811
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["finetune", str(saved_mae), "--output", str(tmp_path / "out"), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.backend_independent
@pytest.mark.parametrize("argv, expected", [
    ([], {"augmentation": "light", "rand_augment_ops": 0, "mixup": 0.0, "translate": 0.0}),  # 1438 images
    (["--augmentation", "mae"], {"rand_augment_ops": 2, "mixup": 0.8, "cutmix": 1.0, "translate": 0.0,
                                 "base_learning_rate": 1e-3}),
    (["--augmentation", "mae", "--mixup", "0.2", "--translate", "0.05"],  # given options win
     {"rand_augment_ops": 2, "mixup": 0.2, "translate": 0.05}),
])
def test_augmentation_recipe_fills_what_is_not_given(saved_mae, tmp_path, monkeypatch, argv, expected):  # noqa: F811
    from keras_mim.cli import finetune

    seen = {}
    monkeypatch.setattr(cli, "run_finetune", lambda args: seen.update(vars(args)))
    cli.main(["finetune", str(saved_mae), "--output", str(tmp_path / "out"), *argv])
    assert {k: seen[k] for k in expected} == expected
    assert finetune.LIGHT_BELOW > 1438


def test_batch_larger_than_the_data(saved_mae, tmp_path, capsys):  # noqa: F811
    with pytest.raises(SystemExit):
        cli.main(["finetune", str(saved_mae), "--output", str(tmp_path / "out"), "--batch-size", "5000"])
    assert "--batch-size 5000 is more than the 1438 training images" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
