"""MultiModalEncoder: a class map's tokens against numpy (embedding lookup, then the patch
projection as a matrix product), any subset of modalities at inference, the main modality's
ViT (`trunk`) equal to the encoder on that modality alone, `.keras` round trips."""

import keras
import numpy as np
import pytest

from keras_mim import ImageClassifier, MultiModalEncoder
from tests.conftest import to_numpy

MODALITIES = {"rgb": 3, "depth": 1, "semseg": {"classes": 5}}


def encoder(**kwargs):
    return MultiModalEncoder(MODALITIES, image_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2,
                             class_embed_dim=8, **kwargs)


def inputs(rng, n=2):
    return {"rgb": rng.random((n, 16, 16, 3), dtype="float32"), "depth": rng.random((n, 16, 16, 1), dtype="float32"),
            "semseg": rng.integers(0, 5, (n, 16, 16)).astype("int32")}


def test_class_map_tokens_match_numpy(rng):
    enc = encoder()
    labels = rng.integers(0, 5, (2, 16, 16)).astype("int32")
    table = to_numpy(enc.class_embeds[0].embeddings)  # (5, 8)
    kernel = to_numpy(enc.patch_embeds[1].proj.kernel).reshape(4 * 4 * 8, 16)  # (ph, pw, E, D) row-major
    bias = to_numpy(enc.patch_embeds[1].proj.bias)
    pixels = table[labels].reshape(2, 4, 4, 4, 4, 8).transpose(0, 1, 3, 2, 4, 5).reshape(2, 16, 128)
    positions = to_numpy(enc.trunk.pos_embed(np.zeros((1, 16, 16), "float32")))  # the shared table
    expected = pixels @ kernel + bias + positions
    np.testing.assert_allclose(to_numpy(enc.embed_modality("semseg", labels)), expected, atol=1e-5)


def test_any_subset_of_modalities_and_the_trunk(rng):
    enc = encoder(modality_embedding=True)
    x = inputs(rng)
    assert tuple(enc(x).shape) == (2, 1 + 48, 16)
    assert tuple(enc({"rgb": x["rgb"], "semseg": x["semseg"]}).shape) == (2, 1 + 32, 16)
    # the main modality alone: the encoder is its ViTEncoder (no modality vector there)
    plain = encoder()
    np.testing.assert_allclose(to_numpy(plain({"rgb": x["rgb"]})), to_numpy(plain.trunk(x["rgb"])), atol=1e-6)
    classifier = ImageClassifier(plain.trunk, num_classes=3)  # every image tool takes the trunk
    assert tuple(classifier(x["rgb"]).shape) == (2, 3)


def test_keras_round_trip_with_dict_inputs(rng, tmp_path):
    enc = encoder(modality_embedding=True)
    x = inputs(rng)
    enc.save(tmp_path / "enc.keras")
    loaded = keras.saving.load_model(tmp_path / "enc.keras")
    assert loaded.get_config() == enc.get_config()
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(enc(x)), atol=1e-6)


@pytest.mark.one_backend
@pytest.mark.parametrize("modalities, message", [
    ({}, "non-empty dict"),
    ({"semseg": {"classes": 3}, "rgb": 3}, "first modality is the main one"),
    ({"rgb": 3, "depth": {"channels": 0}}, "depth"),
    ({"rgb": 3, "depth": "one"}, "must be a channel count"),
    ({"rgb": 3, "my depth": 1}, "identifiers"),
])
def test_bad_modalities(modalities, message):
    with pytest.raises(ValueError, match=message):
        MultiModalEncoder(modalities, image_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2)


@pytest.mark.one_backend
def test_bad_inputs_name_the_modality(rng):
    enc = encoder()
    x = inputs(rng)
    with pytest.raises(ValueError, match=r"x\['rgb'\]. has size \(8, 8\)"):
        enc.check_images({**x, "rgb": x["rgb"][:, :8, :8]})
    with pytest.raises(TypeError, match="float"):
        enc.check_images({**x, "depth": x["semseg"][..., None]})
    with pytest.raises(ValueError, match="no modality"):
        enc({})
