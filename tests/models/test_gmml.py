"""GMML's defining properties: groups of patches corrupted by noise or by another image,
the encoder on the corrupted image, L1 on the corrupted pixels only (official formula)."""

import numpy as np
import pytest
from scipy.special import erf

from keras_mim.models.gmml import GMML
from tests.conftest import to_numpy


def patches(x, p=4):
    """`(B, H, W, C)` -> `(B, N, p * p * C)`, row-major tokens (the official patchify)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, p * p * c)


def images(rng, b=4):
    return rng.random((b, 16, 16, 3)).astype("float32")


def test_only_corrupted_patches_change_and_replacement_takes_the_previous_image(rng):
    model = GMML.from_preset("gmml_vit_test", seed=0, replace_probability=1.0)
    x = images(rng)
    out = model(x)
    mask, seen = to_numpy(out["mask"]).astype(bool), patches(to_numpy(out["corrupted"]))
    assert (mask.sum(1) == 8).all()  # ratio 0.5 of 16 patches
    np.testing.assert_array_equal(seen[~mask], patches(x)[~mask])  # visible patches untouched
    other = patches(np.roll(x, 1, axis=0))
    np.testing.assert_allclose(seen[mask], other[mask], atol=1e-6)  # the same region of another image


def test_noise_follows_each_images_channel_statistics(rng):
    model = GMML.from_preset("gmml_vit_test", seed=0, replace_probability=0.0, mask_ratio=0.75)
    x = (0.2 + 0.1 * rng.random((2, 16, 16, 3))).astype("float32")
    x[1] += 0.5  # a brighter second image
    out = model(x)
    mask, seen = to_numpy(out["mask"]).astype(bool), patches(to_numpy(out["corrupted"])).reshape(2, 16, 16, 3)
    for b in range(2):
        noise = seen[b][mask[b]].reshape(-1, 3)
        np.testing.assert_allclose(noise.mean(0), x[b].mean((0, 1)), atol=0.01)
        np.testing.assert_allclose(noise.std(0), x[b].std((0, 1)), rtol=0.15)
        assert not np.allclose(noise, patches(x)[b][mask[b]].reshape(-1, 3))


def test_loss_is_l1_on_corrupted_pixels_only(rng):
    model = GMML.from_preset("gmml_vit_test", seed=0)
    x = images(rng, b=2)
    out = model(x)
    pred, mask = to_numpy(out["pred"]).astype("float64"), to_numpy(out["mask"])
    per_value = np.abs(pred - patches(x.astype("float64")))  # official F.l1_loss(..., reduction="none")
    expected = per_value[np.broadcast_to(mask[..., None] == 1, per_value.shape)].mean()  # recloss[mask==1].mean()
    np.testing.assert_allclose(float(model.compute_loss(x=x, y_pred=out)), expected, rtol=1e-5)


def test_head_is_the_official_mlp_then_a_per_token_projection(rng):
    model = GMML.from_preset("gmml_vit_test", seed=0)
    latent = rng.normal(size=(2, 17, 32)).astype("float32")  # cls + 16 tokens
    gelu = lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2)))  # noqa: E731  (exact GELU, nn.GELU)
    h = latent[:, 1:].astype("float64")
    for layer in model.head:
        kernel, bias = (to_numpy(w) for w in layer.weights)
        h = gelu(h @ kernel + bias)
    kernel, bias = (to_numpy(w) for w in model.decoder.weights)
    np.testing.assert_allclose(to_numpy(model.forward_decoder(latent)), h @ kernel + bias, rtol=1e-4, atol=1e-5)
    assert len(model.head) == 3 and model.decoder.units == 4 * 4 * 3


@pytest.mark.parametrize("kw,match", [
    (dict(replace_probability=1.5), r"`replace_probability` must be a number in \[0, 1\]"),
    (dict(replace_probability="half"), "`replace_probability`"),
    (dict(head_depth=-1), "`head_depth`"),
])
def test_bad_arguments(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        GMML.from_preset("gmml_vit_test", **kw)
