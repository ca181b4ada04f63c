"""`.keras` round trip of every public layer and model: same config, same outputs."""

import json

import keras
import numpy as np
import pytest

from keras_mim import MAEDecoder, MaskedAutoencoder, ViTEncoder, layers
from keras_mim.masking import RandomMaskGenerator
from tests.conftest import to_numpy

SINGLE_INPUT = {
    "PatchEmbedding": (lambda: layers.PatchEmbedding(4, 8), (8, 8, 3)),
    "PositionEmbedding": (lambda: layers.PositionEmbedding((2, 2), mode="learned"), (4, 8)),
    "MultiHeadSelfAttention": (lambda: layers.MultiHeadSelfAttention(2, qkv_bias=False), (5, 8)),
    "MLP": (lambda: layers.MLP(2.0), (5, 8)),
    "DropPath": (lambda: layers.DropPath(0.2, seed=3), (5, 8)),
    "LayerScale": (lambda: layers.LayerScale(0.3), (5, 8)),
    "TransformerBlock": (lambda: layers.TransformerBlock(2, layer_scale=0.1, drop_path=0.1), (5, 8)),
    "ViTEncoder": (lambda: ViTEncoder(16, 4, 1, 16, 1, 2, cls_token=False, pos_embed="learned"), (16, 16, 1)),
    "ViTEncoder(video)": (lambda: ViTEncoder(8, 4, 2, 16, 1, 2, num_frames=4, tubelet_size=2), (4, 8, 8, 2)),
    "PatchEmbedding(tubelet)": (lambda: layers.PatchEmbedding((2, 4, 4), 8), (4, 8, 8, 3)),
    "PositionEmbedding(3D)": (lambda: layers.PositionEmbedding((2, 2, 2), mode="sincos_1d"), (8, 8)),
    "GlobalResponseNorm": (lambda: layers.GlobalResponseNorm(), (4, 4, 8)),
    "ConvNeXtBlock": (lambda: layers.ConvNeXtBlock(8, drop_path_rate=0.1), (8, 8, 8)),
    "UNetBlock": (lambda: layers.UNetBlock(8, 4), (4, 4, 8)),
    "MaskUnitAttention": (lambda: layers.MaskUnitAttention(16, 2, q_stride=4, window_size=4, use_mask_unit_attn=True),
                          (64, 8)),
    "HieraBlock": (lambda: layers.HieraBlock(16, 2, q_stride=4, window_size=4, use_mask_unit_attn=True,
                                             drop_path=0.1), (64, 8)),
}


def same_config(a, b):
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))  # tuples and lists alike


def roundtrip(model, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    return keras.saving.load_model(path)


@pytest.mark.parametrize("name", sorted(SINGLE_INPUT))
def test_layer_roundtrip(name, tmp_path, rng):
    make, shape = SINGLE_INPUT[name]
    layer = make()
    inputs = keras.Input(shape)
    model = keras.Model(inputs, layer(inputs))
    x = rng.random((2,) + shape).astype("float32")
    loaded = roundtrip(model, tmp_path)
    assert same_config(loaded.layers[-1].get_config(), layer.get_config())
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-6)


def test_decoder_roundtrip(tmp_path, rng):
    latent = keras.Input((3, 8))
    ids = keras.Input((4,), dtype="int32")
    dec = MAEDecoder((2, 2), output_dim=12, decoder_dim=16, depth=1, num_heads=2)
    model = keras.Model([latent, ids], dec(latent, ids))
    x = [rng.random((2, 3, 8)).astype("float32"), np.array([[0, 2, 1, 3], [3, 1, 0, 2]], "int32")]
    loaded = roundtrip(model, tmp_path)
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-6)


def test_mask_generator_config_roundtrip():
    gen = RandomMaskGenerator(0.6, seed=5)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(gen))
    assert isinstance(again, RandomMaskGenerator) and again.get_config() == gen.get_config()


@pytest.mark.parametrize("kw", [{}, pytest.param(  # the other settings: one CI pass (the same code path)
    dict(norm_pix_loss=False, mask_ratio=0.5, num_channels=2, cls_token=False), marks=pytest.mark.one_backend)])
def test_mae_roundtrip_same_outputs_and_loss(kw, tmp_path, rng):
    model = MaskedAutoencoder.from_preset("mae_vit_test", seed=1, **kw)
    c = model.encoder.num_channels
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    x = rng.random((4, 16, 16, c)).astype("float32")
    model.fit(x, epochs=1, verbose=0)  # optimizer state travels too
    loaded = roundtrip(model, tmp_path)
    assert same_config(loaded.get_config(), model.get_config())
    noise = rng.random((4, 16)).astype("float32")
    a, b = model(x, noise=noise), loaded(x, noise=noise)
    for key in ("pred", "mask", "ids_restore"):
        np.testing.assert_allclose(to_numpy(a[key]), to_numpy(b[key]), atol=1e-6)
    assert float(model.compute_loss(x=x, y_pred=a)) == pytest.approx(float(loaded.compute_loss(x=x, y_pred=b)))
    # training resumes from the saved optimizer state
    assert np.isfinite(loaded.fit(x, epochs=1, verbose=0).history["loss"][0])
