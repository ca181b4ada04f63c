"""HieraMAE: the prediction never depends on hidden pixels, the loss is the norm-pix MSE of the
patches of hidden mask units (numpy), the official fusion layout, token-grid mask generators
on the mask-unit grid."""

import keras
import numpy as np
import pytest

from keras_mim import HieraMAE
from keras_mim.models import build_method
from tests.conftest import to_numpy


def norm_pix_loss(images, pred, unit_mask, unit, patch):
    """Numpy reference: `patch` px patches normalised (unbiased variance, eps 1e-6), MSE over
    the patches inside hidden mask units of `unit` px."""
    b, h, w, c = images.shape
    cells = images.reshape(b, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    cells = cells.reshape(b, -1, patch * patch * c)
    target = (cells - cells.mean(-1, keepdims=True)) / np.sqrt(cells.var(-1, ddof=1, keepdims=True) + 1e-6)
    r = unit // patch  # prediction patches per unit side
    hidden = np.kron(unit_mask.reshape(b, h // unit, w // unit), np.ones((r, r))).reshape(b, -1)
    per_patch = ((pred - target) ** 2).mean(-1)
    return (per_patch * hidden).sum() / hidden.sum(), hidden


def test_prediction_ignores_hidden_pixels_and_loss_matches_numpy(rng):
    model = build_method("hiera_mae", seed=0)  # 64 px, 4 x 4 units of 16 px, predictions of 8 px patches
    noise = rng.random((2, 16)).astype("float32")
    x = rng.random((2, 64, 64, 3)).astype("float32")
    out = model(x, noise=noise, training=True)
    mask = to_numpy(out["mask"])
    np.testing.assert_array_equal(mask, noise >= np.sort(noise, axis=1)[:, [6]])  # 6 units kept (ratio 0.6)
    pixels = np.kron(mask.reshape(2, 4, 4), np.ones((16, 16), "float32"))[..., None]
    changed = x * (1 - pixels) + rng.random(x.shape).astype("float32") * pixels
    again = model(changed, noise=noise, training=True)
    np.testing.assert_allclose(to_numpy(again["pred"]), to_numpy(out["pred"]), rtol=1e-5, atol=1e-5)
    expected, hidden = norm_pix_loss(x, to_numpy(out["pred"]), mask, unit=16, patch=8)
    np.testing.assert_array_equal(to_numpy(out["pred_mask"]), hidden)
    np.testing.assert_allclose(float(model.compute_loss(x=x, y_pred=out)), expected, rtol=1e-4)


@pytest.mark.one_backend
def test_official_tiny_fuses_stages_one_two_and_four_into_196_decoder_tokens():
    model = HieraMAE.from_preset("hiera_mae_hiera_tiny")
    assert [h.kernel_size for h in model.fusion_heads] == [(4, 4), (2, 2)]  # 8 x 8 and 4 x 4 units -> 2 x 2
    assert model.pred_stride == 16 and model.decoder_pos_embed.shape == (1, 196, 512)
    assert model.decoder_pred.units == 16 * 16 * 3 and model.mask_ratio == 0.6


@pytest.mark.one_backend(backend="rotate")
@pytest.mark.parametrize("generator", ["random", "block", "grid", "green"])
def test_token_grid_mask_generators_work_on_the_unit_grid(generator):
    model = build_method("hiera_mae", mask_generator=generator, mask_ratio=0.75, seed=0)
    out = model(np.zeros((2, 64, 64, 3), "float32"))
    mask = to_numpy(out["mask"])
    assert mask.shape == (2, 16) and np.all(mask.sum(-1) == mask[0].sum()) and 0 < mask[0].sum() < 16


def test_reconstruct_and_bad_arguments():
    model = build_method("hiera_mae", seed=0)
    rec, pixel_mask, mask = model.reconstruct(np.random.rand(2, 64, 64, 3).astype("float32"))
    assert tuple(rec.shape) == (2, 64, 64, 3) and tuple(pixel_mask.shape) == (2, 64, 64, 1)
    np.testing.assert_array_equal(to_numpy(pixel_mask)[:, ::16, ::16, 0].reshape(2, 16), to_numpy(mask))
    with pytest.raises(ValueError, match="decoder_num_heads"):
        build_method("hiera_mae", decoder_dim=31)
    with pytest.raises(TypeError, match="HieraEncoder"):
        HieraMAE(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(
            build_method("fcmae").encoder)))
