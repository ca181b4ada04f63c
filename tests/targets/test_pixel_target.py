import keras
import numpy as np
import pytest

from keras_mim import MaskedAutoencoder
from keras_mim.targets import PixelTarget, get_target
from tests.conftest import to_numpy


def patches(x, p):
    n, h, w, c = x.shape
    x = x.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // p) * (w // p), p * p, c)  # (B, N, p*p, C)


@pytest.mark.parametrize("unbiased", [True, False])
def test_patch_normalisation_matches_mae(rng, unbiased):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    t = patches(x.astype(np.float64), 4).reshape(2, 4, 48)
    ref = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, ddof=int(unbiased), keepdims=True) + 1e-6)
    out = PixelTarget(unbiased=unbiased)(x, patch_size=4)
    np.testing.assert_allclose(to_numpy(out), ref, rtol=1e-4, atol=1e-5)


def test_per_channel_normalisation_matches_videomae(rng):
    # VideoMAE: (x - mean) / (var(unbiased).sqrt() + 1e-6) over each patch's pixels, per channel
    x = rng.random((2, 8, 8, 3)).astype("float32")
    t = patches(x.astype(np.float64), 4)
    ref = (t - t.mean(-2, keepdims=True)) / (t.std(-2, ddof=1, keepdims=True) + 1e-6)
    target = PixelTarget(per_channel=True, eps_on_std=True)
    out = to_numpy(target(x, patch_size=4))
    np.testing.assert_allclose(out, ref.reshape(2, 4, 48), rtol=1e-4, atol=1e-5)
    back = to_numpy(target.denormalize(out, x, 4))
    np.testing.assert_allclose(back, patches(x, 4).reshape(2, 4, 48), atol=1e-5)


def test_raw_pixels_and_output_dim(rng):
    x = rng.random((1, 4, 6, 2)).astype("float32")
    out = to_numpy(PixelTarget(normalize=False)(x, patch_size=(2, 3)))
    assert out.shape == (1, 4, 12) and PixelTarget().output_dim((2, 3), 2) == 12
    np.testing.assert_allclose(out[0, 1], x[0, 0:2, 3:6].reshape(-1))


def test_one_pixel_patch_cannot_be_normalised():
    with pytest.raises(ValueError, match="at least 2 values"):
        PixelTarget().output_dim(1, 1)
    with pytest.raises(ValueError, match="at least 2 values"):
        MaskedAutoencoder.from_preset("mae_vit_test", patch_size=1, num_channels=1)
    assert PixelTarget(normalize=False).output_dim(1, 1) == 1


def test_get_target_and_model_argument():
    assert isinstance(get_target("pixels"), PixelTarget)
    cfg = keras.saving.serialize_keras_object(PixelTarget(per_channel=True))
    assert get_target(cfg).per_channel
    with pytest.raises(ValueError, match="Unknown `target` 'pixel'"):
        get_target("pixel")
    with pytest.raises(ValueError, match="leave them unset"):
        MaskedAutoencoder.from_preset("mae_vit_test", target="pixels", norm_pix_loss=False)
    model = MaskedAutoencoder.from_preset("mae_vit_test", target=PixelTarget(normalize=False))
    assert not model.norm_pix_loss


def test_eps_is_checked():
    with pytest.raises(ValueError, match="`eps` must be a float >= 0, got -1"):
        PixelTarget(eps=-1)
