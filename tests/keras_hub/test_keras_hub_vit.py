"""keras_mim ViT encoders to and from keras-hub backbones (the keras-hub tier: tools/test.sh
runs this folder with keras-hub installed; the backend passes run without it).

The reference is keras-hub's own forward pass: after the conversion, keras-hub's
`ViTBackbone` / `DINOV2Backbone` must compute what the keras_mim encoder computes."""

import numpy as np
import pytest

import keras
from keras_mim import MaskedAutoencoder, ViTEncoder, to_keras_hub
from keras_mim.models.presets import TEST_DECODER
from tests.conftest import to_numpy

keras_hub = pytest.importorskip("keras_hub")

SIZE = (16, 24)  # non-square: ViTBackbone and keras_mim both take H != W


def tiny_encoder(**kwargs):
    args = dict(image_size=SIZE, patch_size=4, embed_dim=32, depth=2, num_heads=2, seed=0)
    return ViTEncoder(**{**args, **kwargs})


def images(rng, size=SIZE, n=2):
    return rng.random((n,) + tuple(size) + (3,)).astype("float32")


def perturb(model, rng):
    """Random values in every weight (biases, norms, the cls token too), so a copy that
    forgets one tensor shows."""
    for v in model.weights:
        v.assign(rng.normal(0, 0.2, v.shape).astype("float32") + (1.0 if "gamma" in v.path else 0.0))


def dinov2(**kwargs):
    args = dict(patch_size=4, num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=128,
                image_shape=(16, 16, 3), position_embedding_shape=(24, 24, 3), layer_scale_init_value=0.5)
    return keras_hub.models.DINOV2Backbone(**{**args, **kwargs})


@pytest.mark.parametrize("cls_token", [True, False])
def test_out_and_back_compute_the_same(rng, cls_token):
    enc = tiny_encoder(cls_token=cls_token)
    perturb(enc.blocks[0], rng)
    x = images(rng)
    backbone = to_keras_hub(enc)
    assert isinstance(backbone, keras_hub.models.ViTBackbone)
    np.testing.assert_allclose(to_numpy(backbone(x)), to_numpy(enc(x)), rtol=1e-5, atol=1e-5)
    # the fixed sin-cos table became keras-hub's learned one, same values (cls slot: zeros)
    table = to_numpy(backbone.get_layer("vit_patching_and_embedding").position_embedding.embeddings)
    np.testing.assert_array_equal(table, to_numpy(enc.pos_embed.pos_embed)[0])
    back = ViTEncoder.from_keras_hub(backbone)
    assert back.pos_embed_mode == "learned" and back.image_size == SIZE
    np.testing.assert_allclose(to_numpy(back(x)), to_numpy(enc(x)), rtol=1e-5, atol=1e-5)


def test_keras_hub_backbone_without_biases_comes_in(rng):
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
        use_mha_bias=False, use_mlp_bias=False, use_patch_bias=False)
    perturb(backbone, rng)
    enc = ViTEncoder.from_keras_hub(backbone, mask_token=True)
    assert enc.mlp_ratio == 2.0 and not enc.qkv_bias and enc.use_mask_token
    x = images(rng, (16, 16))
    np.testing.assert_allclose(to_numpy(enc(x)), to_numpy(backbone(x)), rtol=1e-5, atol=1e-5)


def test_keras_hub_classifier_fine_tunes_the_exported_backbone(rng, tmp_path):
    enc = tiny_encoder()
    backbone = enc.to_keras_hub()
    classifier = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=3, preprocessor=None)
    classifier.compile(optimizer=keras.optimizers.SGD(0.1),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = images(rng, n=4), np.array([0, 1, 2, 0])
    kernel = backbone.get_layer("vit_patching_and_embedding").patch_embedding.kernel
    before = to_numpy(kernel).copy()
    history = classifier.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(before, to_numpy(kernel))
    # a keras-hub preset of it loads back in keras-hub with the same function
    backbone.save_to_preset(str(tmp_path / "preset"))
    loaded = keras_hub.models.Backbone.from_preset(str(tmp_path / "preset"))
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(backbone(x)), rtol=1e-5, atol=1e-5)


def test_dinov2_comes_in_with_layer_scale_positions_and_mask_token(rng):
    backbone = dinov2()  # positions kept for 24 px, interpolated to 16 px inside keras-hub
    perturb(backbone, rng)
    backbone.embeddings.interpolated_position_embeddings.assign(
        backbone.embeddings._interpolate_position_embeddings(
            backbone.embeddings.position_embeddings, 4, (24, 24), (16, 16)))
    enc = ViTEncoder.from_keras_hub(backbone)
    assert enc.layer_scale == 0.5 and enc.use_mask_token and enc.pos_embed_mode == "learned"
    x = images(rng, (16, 16))
    np.testing.assert_allclose(to_numpy(enc(x)), to_numpy(backbone({"images": x})), rtol=1e-5, atol=1e-5)
    mask = np.zeros((2, 16), bool)
    mask[:, ::3] = True
    theirs = backbone.embeddings(x, masks=mask)  # mask token, cls, positions
    ours = enc.prepend_cls(enc.embed_patches(x, token_mask=mask.astype("float32")))
    np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-6, atol=1e-6)


@pytest.mark.one_backend(backend="torch")  # MAE trains on every backend elsewhere; the conversion is tested above
def test_mae_pretrains_further_from_a_dinov2_backbone(rng):
    enc = ViTEncoder.from_keras_hub(dinov2(), mask_token=False)  # MAE drops hidden tokens
    model = MaskedAutoencoder(enc, decoder=TEST_DECODER, seed=0)
    model.compile(optimizer="adam")
    history = model.fit(images(rng, (16, 16), n=4), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("kwargs, part", [
    (dict(layer_scale=0.1), "LayerScale"),
    (dict(qkv_bias=False), "qkv_bias"),
    (dict(num_frames=4, cls_token=False), "num_frames"),
])
def test_what_a_vit_backbone_lacks_is_refused_by_name(kwargs, part):
    with pytest.raises(ValueError, match=part):
        to_keras_hub(tiny_encoder(**kwargs))


@pytest.mark.parametrize("kwargs, part", [
    (dict(num_register_tokens=4), "register tokens"),
    (dict(use_swiglu_ffn=True), "SwiGLU"),
])
def test_what_keras_mim_lacks_is_refused_by_name(kwargs, part):
    with pytest.raises(ValueError, match=part):
        ViTEncoder.from_keras_hub(dinov2(**kwargs))


def test_bad_backbones_and_overrides():
    with pytest.raises(TypeError, match="ViTBackbone or DINOV2Backbone"):
        ViTEncoder.from_keras_hub(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(TypeError, match="embed_dim"):
        ViTEncoder.from_keras_hub(dinov2(), embed_dim=64)
