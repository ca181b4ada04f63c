"""Presets that carry weights: a folder written by `save_to_preset` loads back with the same
weights (or without them), as the model or as its encoder; remote handles fail at once
offline; nothing the user has is overwritten."""

import json
import os
import socket
import time

import numpy as np
import pytest

from keras_mim import ImageClassifier, MaskedAutoencoder, ViTEncoder
from keras_mim.models import preset_io
from tests.conftest import to_numpy


def weights(model):
    return [to_numpy(v) for v in model.weights]


def trained_mae(rng):
    model = MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
    for v in model.trainable_weights:  # stands in for training: every weight moved
        v.assign(to_numpy(v) + rng.normal(0, 0.1, v.shape).astype("float32"))
    return model


def test_folder_round_trip_keeps_weights_and_writes_a_card(rng, tmp_path):
    model = trained_mae(rng)
    path = model.save_to_preset(tmp_path / "mae", data="digits", epochs=3, command="keras-mim pretrain --epochs 3")
    assert sorted(os.listdir(path)) == ["README.md", "config.json", "metadata.json", "model.weights.h5"]
    loaded = MaskedAutoencoder.from_preset(str(path))
    assert type(loaded) is MaskedAutoencoder and loaded.get_config()["mask_ratio"] == 0.75
    for a, b in zip(weights(model), weights(loaded)):
        np.testing.assert_array_equal(a, b)
    card = (tmp_path / "mae" / "README.md").read_text()
    for text in ("`MaskedAutoencoder`", "| method | mae |", "| data | digits |", "| epochs | 3 |",
                 "keras-mim pretrain --epochs 3"):
        assert text in card
    meta = json.loads((tmp_path / "mae" / "metadata.json").read_text())
    assert meta["parameter_count"] == model.count_params() and meta["method"] == "mae"
    # the encoder of a pretraining preset, as an encoder; and the architecture only
    encoder = ViTEncoder.from_preset(str(path))
    for a, b in zip(weights(model.encoder), weights(encoder)):
        np.testing.assert_array_equal(a, b)
    fresh = MaskedAutoencoder.from_preset(str(path), load_weights=False, mask_ratio=0.5)
    assert fresh.mask_ratio == 0.5 and fresh.mask_generator.mask_ratio == 0.5
    assert not np.array_equal(weights(fresh.encoder)[0], weights(model.encoder)[0])


def test_encoders_and_classifiers_save_and_load(rng, tmp_path):
    encoder = ViTEncoder.from_preset("mae_vit_test")  # built-in names keep working
    classifier = ImageClassifier(encoder, num_classes=3)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    expected = to_numpy(classifier(x))
    classifier.save_to_preset(tmp_path / "clf")
    loaded = ImageClassifier.from_preset(str(tmp_path / "clf"))
    np.testing.assert_allclose(to_numpy(loaded(x)), expected, rtol=1e-6, atol=1e-6)
    assert json.loads((tmp_path / "clf" / "metadata.json").read_text())["method"] is None


@pytest.mark.backend_independent
def test_nothing_is_overwritten_and_bad_presets_are_named(rng, tmp_path):
    model = MaskedAutoencoder.from_preset("mae_vit_test")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save_to_preset(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="without config.json"):
        MaskedAutoencoder.from_preset(str(tmp_path / "mine"))
    with pytest.raises(ValueError, match="Unknown preset 'nope'.*hf://"):
        MaskedAutoencoder.from_preset("nope")
    model.save_to_preset(tmp_path / "mae")
    with pytest.raises(TypeError, match="holds a MaskedAutoencoder, not a ImageClassifier"):
        ImageClassifier.from_preset(str(tmp_path / "mae"))
    with pytest.raises(TypeError, match="Unknown overrides \\['not_an_arg'\\]"):
        MaskedAutoencoder.from_preset(str(tmp_path / "mae"), not_an_arg=1)


@pytest.mark.backend_independent
@pytest.mark.parametrize("handle", ["hf://keras-mim/not-cached", "kaggle://keras-mim/mae/keras/not-cached"])
def test_remote_handle_offline_fails_at_once(monkeypatch, handle):
    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)  # as on a machine without network
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    with pytest.raises((ConnectionError, ImportError), match="does not answer|pip install"):
        MaskedAutoencoder.from_preset(handle)
    assert time.perf_counter() - start < 1.0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if handle.startswith("hf://"):
        with pytest.raises((ConnectionError, ImportError), match="HF_HUB_OFFLINE is set|pip install"):
            preset_io.resolve_preset(handle)
