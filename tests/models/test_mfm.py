import numpy as np
import pytest

from keras_mim.models import ViTEncoder
from keras_mim.models.mfm import MFM
from tests.conftest import to_numpy
from tests.training import assert_roundtrip


def official_filter(size, radius):
    """Jiahao000/MFM data/data_mfm.py FreqMaskGenerator (radius2 = 999): 1 = kept by low-pass."""
    mask = np.ones((size, size), dtype=int)
    for y in range(size):
        for x in range(size):
            if (x - size // 2) ** 2 + (y - size // 2) ** 2 >= radius**2:
                mask[y, x] = 0
    return mask


def official_corruption(x, kept, clip=False):
    """MFM.frequency_transform in numpy (channels-last): fft2, fftshift, mask, ifftshift, ifft2, real."""
    f = np.fft.fftshift(np.fft.fft2(x.astype(np.float64), axes=(1, 2)), axes=(1, 2))
    out = np.fft.ifft2(np.fft.ifftshift(f * kept[..., None], axes=(1, 2)), axes=(1, 2)).real
    return np.clip(out, 0.0, 1.0) if clip else out


def spectrum(images, norm="backward"):
    return np.fft.fftshift(np.fft.fft2(images.astype(np.float64), axes=(1, 2), norm=norm), axes=(1, 2))


def official_loss(pred, x, kept):
    """FrequencyLoss (loss_gamma 1, no weight matrix, patch_factor 1) with RECOVER_TARGET_TYPE
    'masked': orthonormal centred FFT, |difference| per frequency, mean over removed ones and C."""
    d = spectrum(pred, "ortho") - spectrum(x, "ortho")
    loss = np.sqrt(d.real**2 + d.imag**2 + 1e-12)  # (B, H, W, C)
    removed = (1 - kept)[..., None]
    return (loss * removed).sum() / removed.sum() / x.shape[-1]


LOW_HIGH = np.array([1.0, 0.0], "float32")  # sample 0 low-pass, sample 1 high-pass


@pytest.mark.parametrize("clip", [False, True])
def test_corruption_and_loss_match_official(rng, clip):
    model = MFM.from_preset("mfm_vit_test", clip_range=(0.0, 1.0) if clip else None)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    out = model(x, low_pass=LOW_HIGH)
    low = official_filter(16, 4)
    kept = np.stack([low, 1 - low])  # per sample: low-pass keeps the disc, high-pass the rest
    np.testing.assert_array_equal(to_numpy(out["freq_mask"]), 1 - kept)
    np.testing.assert_array_equal(to_numpy(out["low_pass"]), LOW_HIGH)
    np.testing.assert_allclose(to_numpy(out["corrupted"]), official_corruption(x, kept, clip), atol=2e-5)
    pred = to_numpy(out["pred"])
    assert pred.shape == (2, 16, 16, 3)
    assert float(model.compute_loss(x=x, y_pred=out)) == pytest.approx(official_loss(pred, x, kept), rel=1e-4)


def test_removed_frequencies_are_gone_and_kept_ones_untouched(rng):
    model = MFM.from_preset("mfm_vit_test", radius=3.5)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    out = model(x, low_pass=LOW_HIGH)
    removed = to_numpy(out["freq_mask"]).astype(bool)[..., None].repeat(3, -1)
    fc, fx = spectrum(to_numpy(out["corrupted"])), spectrum(x)
    scale = np.abs(fx).max()
    assert np.abs(fc[removed]).max() < 1e-5 * scale
    np.testing.assert_allclose(fc[~removed], fx[~removed], atol=1e-5 * scale)
    # both filters remove something and keep something; together they cover every frequency
    r = removed[..., 0]
    assert 0 < r[0].sum() < r[0].size and 0 < r[1].sum() < r[1].size
    np.testing.assert_array_equal(r[0] ^ r[1], True)


def test_encoder_sees_the_whole_corrupted_image(rng):
    model = MFM.from_preset("mfm_vit_test")
    x = rng.random((2, 16, 16, 3)).astype("float32")
    out = model(x, low_pass=LOW_HIGH)
    latent = model.forward_encoder(out["corrupted"])
    assert tuple(latent.shape) == (2, 1 + 16, 32)  # cls + all N tokens
    np.testing.assert_allclose(to_numpy(model.forward_decoder(latent)), to_numpy(out["pred"]), atol=1e-6)
    # the prediction depends on the input only through the corrupted image: a change in
    # frequencies the filter removes changes nothing
    kept = 1 - to_numpy(out["freq_mask"])
    f = spectrum(rng.random((2, 16, 16, 3))) * (1 - kept)[..., None]
    f = f + np.conj(f[:, ::-1, ::-1][:, np.r_[-1, 0:15]][:, :, np.r_[-1, 0:15]])  # Hermitian: a real image
    y = x + np.fft.ifft2(np.fft.ifftshift(f, axes=(1, 2)), axes=(1, 2)).real.astype("float32")
    np.testing.assert_allclose(to_numpy(model(y, low_pass=LOW_HIGH)["pred"]), to_numpy(out["pred"]), atol=1e-4)


def test_low_or_high_pass_drawn_per_sample():
    model = MFM.from_preset("mfm_vit_test", seed=0)
    low = np.concatenate([to_numpy(model.frequency_masking(np.zeros((500, 16, 16, 1), "float32"))[1])
                          for _ in range(2)])
    assert 0.45 < low.mean() < 0.55 and set(np.unique(low)) == {0.0, 1.0}
    for p, lo, hi in [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.2, 0.15, 0.25)]:
        m = MFM.from_preset("mfm_vit_test", low_pass_probability=p, seed=1)
        frac = to_numpy(m.frequency_masking(np.zeros((1000, 16, 16, 1), "float32"))[1]).mean()
        assert lo <= frac <= hi, (p, frac)


def test_keras_roundtrip(rng, tmp_path):
    model = MFM.from_preset("mfm_vit_test", seed=3, radius=2.5, low_pass_probability=0.3, clip_range=(0, 1))
    x = rng.random((2, 16, 16, 3)).astype("float32")
    loaded = assert_roundtrip(model, x, tmp_path, call_kwargs={"low_pass": LOW_HIGH})
    assert (loaded.radius, loaded.low_pass_probability, loaded.clip_range) == (2.5, 0.3, (0.0, 1.0))


def test_paper_preset_and_plain_encoder():
    model = MFM.from_preset("mfm_vit_base_patch16", image_size=64, depth=1, embed_dim=32, num_heads=2)
    assert model.radius == 16 and model.low_pass_probability == 0.5 and model.decoder.scale == (16, 16)
    assert not model.encoder.use_mask_token  # no mask token needed
    MFM(ViTEncoder(16, 4, embed_dim=32, depth=1, num_heads=2), radius=4)


@pytest.mark.parametrize(
    "kw,error,match",
    [
        (dict(radius=0), ValueError, r"`radius`=0 must be in \(0, 11.31\)"),
        (dict(radius=-2), ValueError, "`radius`=-2"),
        (dict(radius=11.32), ValueError, "removes nothing"),
        (dict(radius="16"), TypeError, "`radius`"),
        (dict(radius=16), ValueError, r"for 16x16 images"),  # the 224 px default on 16 px images
        (dict(low_pass_probability=1.5), ValueError, r"`low_pass_probability`.*\[0, 1\]"),
        (dict(low_pass_probability=-0.1), ValueError, "`low_pass_probability`"),
        (dict(clip_range=(1, 0)), ValueError, "`clip_range`"),
        (dict(clip_range=1.0), ValueError, "`clip_range`"),
    ],
)
def test_bad_arguments(kw, error, match):
    with pytest.raises(error, match=match):
        MFM.from_preset("mfm_vit_test", **kw)


def test_bad_inputs():
    model = MFM.from_preset("mfm_vit_test")
    with pytest.raises(TypeError, match="`encoder` must be an encoder model"):
        MFM("vit")
    with pytest.raises(ValueError, match="`low_pass` must have shape"):
        model(np.zeros((2, 16, 16, 3), "float32"), low_pass=np.ones((2, 1), "float32"))
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="`num_channels`=3"):
        model.fit(np.zeros((4, 16, 16, 1), "float32"), verbose=0)
