"""HieraEncoder: visible-only encoding without leaks, mask units on the right pixels, the
official sizes' parameter counts, fine-tuning through ImageClassifier, bad input."""

import keras
import numpy as np
import pytest

from keras_mim import HieraEncoder, ImageClassifier
from keras_mim.models.hiera_encoder import HIERA_SIZES
from keras_mim.optimizers.layer_decay import layer_ids
from tests.conftest import to_numpy

SMALL = dict(image_size=64, embed_dim=8, stages=(1, 1, 1, 1), q_pool=2, patch_kernel=3, patch_stride=2,
             patch_padding=1)


def encoder(**kwargs):
    keras.utils.set_random_seed(0)
    return HieraEncoder(**{**SMALL, **kwargs})


def unit_pixels(units, grid, cell):
    """Visible-pixel map `(B, H, W, 1)` of the kept units `(B, K)` on a unit grid of `cell` px."""
    out = np.zeros((units.shape[0],) + tuple(g * cell for g in grid) + (1,), "float32")
    for b, kept in enumerate(units):
        for u in kept:
            y, x = divmod(int(u), grid[1])
            out[b, y * cell:(y + 1) * cell, x * cell:(x + 1) * cell] = 1.0
    return out


def test_hidden_units_pixels_reach_no_output(rng):
    enc = encoder()
    ids_keep = np.array([[0, 5, 6, 15], [3, 4, 9, 10]])
    x = rng.random((2, 64, 64, 3)).astype("float32")
    hidden = 1.0 - unit_pixels(ids_keep, enc.grid_shape, 16)
    y = x + hidden * rng.normal(size=x.shape).astype("float32") * 3.0  # hidden pixels changed only
    for a, b in zip(enc.stage_units(x, ids_keep, training=True), enc.stage_units(y, ids_keep, training=True)):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-5)


@pytest.mark.one_backend
def test_visible_units_are_encoded_as_their_place_in_the_full_image(rng):
    # mask units attend only inside themselves in the first two stages: a kept unit's features
    # equal the dense encoder's at that unit's pixels when the hidden pixels are zero in both
    enc = encoder()
    ids_keep = np.array([[1, 6, 11, 12], [0, 2, 13, 15]])
    x = rng.random((2, 64, 64, 3)).astype("float32") * unit_pixels(ids_keep, enc.grid_shape, 16)
    dense = [to_numpy(m) for m in enc.feature_maps(x)]
    sparse = [to_numpy(u) for u in enc.stage_units(x, ids_keep)]
    gw = enc.grid_shape[1]
    for stage in (0, 1):
        unit = sparse[stage].shape[2]
        for b in range(2):
            for k, u in enumerate(ids_keep[b]):
                y0, x0 = (u // gw) * unit, (u % gw) * unit
                np.testing.assert_allclose(sparse[stage][b, k], dense[stage][b, y0:y0 + unit, x0:x0 + unit],
                                           rtol=1e-4, atol=1e-5)
    everything = np.tile(np.arange(16), (2, 1))  # every unit kept: the dense encoder itself
    np.testing.assert_allclose(to_numpy(enc(x, ids_keep=everything)).mean(1), to_numpy(enc(x)).mean(1), atol=1e-5)


@pytest.mark.one_backend
def test_official_sizes_have_the_published_parameter_counts():
    # Ryali et al. (2023), Table: Hiera-T 28M, Hiera-B 52M with the 1000-class head and its norm
    for size, published in (("tiny", 28e6), ("base", 52e6)):
        embed_dim, heads, stages = HIERA_SIZES[size]
        enc = HieraEncoder(embed_dim=embed_dim, num_heads=heads, stages=stages)
        head = enc.output_dim * 1000 + 1000 + 2 * enc.output_dim
        assert abs(enc.count_params() + head - published) < 0.5e6, (size, enc.count_params())
        assert enc.grid_shape == (7, 7) and enc.patch_size == (32, 32) and enc.output_grid_shape == (7, 7)


@pytest.mark.one_backend
def test_classifier_pools_the_last_stage_and_round_trips(tmp_path, rng):
    enc = encoder(drop_path_rate=0.1, seed=1)
    clf = ImageClassifier(enc, num_classes=3)
    x = rng.random((2, 64, 64, 3)).astype("float32")
    feats = to_numpy(clf.encoder(x)).mean(axis=1)
    mean, var = feats.mean(-1, keepdims=True), feats.var(-1, keepdims=True)
    normed = (feats - mean) / np.sqrt(var + 1e-6)  # fc_norm at its initial scale 1, offset 0
    np.testing.assert_allclose(to_numpy(clf.forward_features(x)), normed, rtol=1e-4, atol=1e-4)
    ids = layer_ids(clf)
    assert ids[clf.encoder.pos_embed.path] == 0 and ids[clf.encoder.blocks[2].norm1.gamma.path] == 3
    clf.save(tmp_path / "clf.keras")
    loaded = keras.saving.load_model(tmp_path / "clf.keras")
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(clf(x)), atol=1e-5)
    assert loaded.encoder.get_config() == clf.encoder.get_config()
    pooled3 = enc.with_q_pool(3)  # as the official fine-tuning: same weights, one more pooling
    assert pooled3.output_grid_shape == (4, 4) and tuple(pooled3(x).shape) == (2, 16, 64)
    for a, b in zip(pooled3.weights, enc.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


@pytest.mark.parametrize("kwargs, match", [
    (dict(image_size=40), "image_size"),
    (dict(q_pool=4), "q_pool"),
    (dict(mask_unit_attn=(True, False)), "mask_unit_attn"),
    (dict(stages=(2,)), "stages"),
    (dict(patch_kernel=7), "patch_kernel"),
])
def test_bad_configs_fail_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HieraEncoder(**{**SMALL, **kwargs})


def test_images_of_another_size_fail_clearly():
    with pytest.raises(ValueError, match="image_size"):
        encoder().check_images(np.zeros((1, 32, 32, 3), "float32"))
