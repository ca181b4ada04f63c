import keras
import numpy as np
import pytest

from keras_mim import MaskedAutoencoder
from keras_mim.targets import TARGETS, FourierTarget, centered_spectrum, frequency_radius, get_target
from keras_mim.targets.fourier_target import images_from_centered_spectrum
from tests.conftest import to_numpy


def np_centered(x, ortho=False):
    f = np.fft.fftshift(np.fft.fft2(x.astype(np.float64), axes=(1, 2)), axes=(1, 2))
    return f / np.sqrt(x.shape[1] * x.shape[2]) if ortho else f


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 6, 5, 2), (1, 7, 4, 1)])
@pytest.mark.parametrize("norm", ["backward", "ortho"])
def test_centered_spectrum_matches_numpy(rng, shape, norm):
    x = rng.random(shape).astype("float32")
    real, imag = centered_spectrum(x, norm=norm)
    ref = np_centered(x, ortho=norm == "ortho")
    assert to_numpy(real).dtype == np.float32 and tuple(real.shape) == shape
    np.testing.assert_allclose(to_numpy(real), ref.real, atol=2e-5 * np.abs(ref).max())
    np.testing.assert_allclose(to_numpy(imag), ref.imag, atol=2e-5 * np.abs(ref).max())


def test_zero_frequency_is_the_centre_and_inverse_matches_numpy(rng):
    x = rng.random((2, 6, 5, 3)).astype("float32")
    real, _ = centered_spectrum(x)
    np.testing.assert_allclose(to_numpy(real)[:, 3, 2], x.sum((1, 2)), rtol=1e-5)  # DC = sum, at (H//2, W//2)
    # an arbitrary centred spectrum goes back through ifftshift + ifft2, real part kept
    re, im = rng.standard_normal((2, 2, 6, 5, 3)).astype("float32")
    ref = np.fft.ifft2(np.fft.ifftshift(re + 1j * im, axes=(1, 2)), axes=(1, 2)).real
    np.testing.assert_allclose(to_numpy(images_from_centered_spectrum(re, im)), ref, atol=1e-5)
    back = images_from_centered_spectrum(*centered_spectrum(x, "ortho"), norm="ortho")
    np.testing.assert_allclose(to_numpy(back), x, atol=1e-5)


def test_frequency_radius_is_distance_from_the_shifted_zero():
    for h, w in [(4, 4), (5, 6), (224, 224)]:
        ref = np.array([[np.hypot(y - h // 2, x - w // 2) for x in range(w)] for y in range(h)])
        out = frequency_radius(h, w)
        assert out.dtype == np.float32 and out.shape == (h, w)
        np.testing.assert_allclose(out, ref, rtol=1e-6)
        # the zero frequency of numpy's fftshift is where the radius is 0
        freq = np.hypot(*np.meshgrid(np.fft.fftshift(np.fft.fftfreq(h)) * h,
                                     np.fft.fftshift(np.fft.fftfreq(w)) * w, indexing="ij"))
        np.testing.assert_allclose(out, freq, atol=1e-4)


def np_fourier_target(x, p, mode):
    b, h, w, c = x.shape
    t = x.astype(np.float64).reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    t = t.reshape(b, -1, p, p, c)  # (B, N, p, p, C)
    f = np.fft.fftshift(np.fft.fft2(t, axes=(2, 3)), axes=(2, 3)) / p  # ortho: / sqrt(p * p)
    if mode == "complex":
        return np.stack([f.real, f.imag], -1).reshape(b, t.shape[1], -1)
    return np.log1p(np.abs(f)).reshape(b, t.shape[1], -1)


@pytest.mark.parametrize("mode", ["complex", "log_amplitude"])
def test_target_matches_numpy_per_patch_fft(rng, mode):
    x = rng.random((2, 8, 12, 3)).astype("float32")
    target = FourierTarget(mode=mode)
    out = to_numpy(target(x, patch_size=4))
    assert out.shape == (2, 6, target.output_dim(4, 3))
    assert target.output_dim(4, 3) == (96 if mode == "complex" else 48)
    np.testing.assert_allclose(out, np_fourier_target(x, 4, mode), atol=1e-5)


def test_unnormalised_option_and_registry(rng):
    x = rng.random((1, 4, 4, 1)).astype("float32")
    out = to_numpy(FourierTarget(norm="backward")(x, patch_size=4))
    np.testing.assert_allclose(out, np_fourier_target(x, 4, "complex") * 4, atol=1e-5)
    assert TARGETS["fourier"] is FourierTarget and isinstance(get_target("fourier"), FourierTarget)
    t = FourierTarget(mode="log_amplitude", norm="backward")
    clone = get_target(keras.saving.serialize_keras_object(t))
    assert (clone.mode, clone.norm) == ("log_amplitude", "backward")


def test_serves_as_a_model_target(rng):
    model = MaskedAutoencoder.from_preset("mae_vit_test", target="fourier", num_channels=1)
    x = rng.random((2, 16, 16, 1)).astype("float32")
    out = model(x)
    assert tuple(out["pred"].shape) == (2, 16, 32)
    assert np.isfinite(float(model.compute_loss(x=x, y_pred=out)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="`mode`"):
        FourierTarget(mode="phase")
    with pytest.raises(ValueError, match="`norm`"):
        FourierTarget(norm="forward")
    with pytest.raises(ValueError, match="`norm`"):
        centered_spectrum(np.zeros((1, 4, 4, 1), "float32"), norm="none")
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        centered_spectrum(np.zeros((4, 4, 1), "float32"))
    with pytest.raises(ValueError, match="`patch_size`"):
        FourierTarget().output_dim(0, 3)
