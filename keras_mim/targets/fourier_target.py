"""Fourier spectra of images and patches (MFM's frequency domain; a per-token spectrum target).

Spectra are centred as `numpy.fft.fftshift` does: the zero frequency of an `H x W` FFT
sits at index `(H // 2, W // 2)`. Everything is computed in float32 with `keras.ops`
(real and imaginary parts as separate tensors), so it runs on every backend.
"""

import keras
import numpy as np
from keras import ops

from keras_mim.layers.patching import patchify
from keras_mim.targets.target import Target
from keras_mim.utils import to_2tuple

NORMS = ("backward", "ortho")


def _check_norm(norm):
    if norm not in NORMS:
        raise ValueError(f"`norm` must be one of {NORMS}, got {norm!r}.")
    return norm


def _check_static_image(images, name="images"):
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        raise ValueError(f"`{name}` must be (B, H, W, C) with static H and W, got shape {shape}.")
    return shape[1], shape[2]


def centered_spectrum(images, norm="backward"):
    """2D FFT over H and W of each channel, zero frequency moved to the centre.

    Args:
        images: real `(B, H, W, C)`.
        norm: `"backward"` (no scaling, as `numpy.fft.fft2`) or `"ortho"` (divided by
            `sqrt(H * W)`, as MFM's frequency loss).

    Returns:
        `(real, imag)`, each float32 `(B, H, W, C)`: `fftshift(fft2(images))` per channel.

    Examples:
        >>> import numpy as np
        >>> real, imag = centered_spectrum(np.ones((1, 4, 4, 1), "float32"))
        >>> keras.ops.convert_to_numpy(real)[0, :, :, 0].tolist()[2]  # all energy at the centre (2, 2)
        [0.0, 0.0, 16.0, 0.0]
    """
    h, w = _check_static_image(images)
    x = ops.transpose(ops.cast(images, "float32"), (0, 3, 1, 2))  # (B, C, H, W)
    real, imag = ops.fft2((x, ops.zeros_like(x)))
    if _check_norm(norm) == "ortho":
        real, imag = real / np.sqrt(h * w), imag / np.sqrt(h * w)
    # fftshift, then back to channels-last: (B, C, H, W) -> (B, H, W, C)
    real, imag = (ops.transpose(ops.roll(t, (h // 2, w // 2), axis=(2, 3)), (0, 2, 3, 1)) for t in (real, imag))
    return real, imag


def images_from_centered_spectrum(real, imag, norm="backward"):
    """Inverse of `centered_spectrum`: undo the shift, inverse 2D FFT, keep the real part.

    Args:
        real: `(B, H, W, C)` real part of a centred spectrum.
        imag: `(B, H, W, C)` imaginary part.
        norm: the `norm` the spectrum was computed with.

    Returns:
        float32 `(B, H, W, C)` images.

    Examples:
        >>> import numpy as np
        >>> x = np.random.rand(2, 6, 4, 3).astype("float32")
        >>> y = images_from_centered_spectrum(*centered_spectrum(x, "ortho"), norm="ortho")
        >>> bool(np.allclose(keras.ops.convert_to_numpy(y), x, atol=1e-5))
        True
    """
    h, w = _check_static_image(real, "real")
    # channels-first (B, C, H, W), then ifftshift
    real, imag = (
        ops.roll(ops.transpose(ops.cast(t, "float32"), (0, 3, 1, 2)), (-(h // 2), -(w // 2)), axis=(2, 3))
        for t in (real, imag)
    )
    x, _ = ops.ifft2((real, imag))  # (B, C, H, W)
    if _check_norm(norm) == "ortho":
        x = x * np.sqrt(h * w)
    return ops.transpose(x, (0, 2, 3, 1))


def frequency_radius(height, width):
    """Distance of each centred frequency from the zero frequency, in index units.

    Entry `(y, x)` is `sqrt((y - H // 2) ** 2 + (x - W // 2) ** 2)`, the layout of
    `centered_spectrum` and of the official MFM filter.

    Args:
        height: H.
        width: W.

    Returns:
        numpy float32 `(H, W)`.

    Examples:
        >>> frequency_radius(4, 4)[2].tolist()
        [2.0, 1.0, 0.0, 1.0]
    """
    y = np.arange(height, dtype="float64")[:, None] - height // 2
    x = np.arange(width, dtype="float64")[None, :] - width // 2
    return np.sqrt(y**2 + x**2).astype("float32")


@keras.saving.register_keras_serializable(package="keras_mim")
class FourierTarget(Target):
    """Per-token spectrum: the centred 2D FFT of each patch, per channel, flattened.

    Each `ph x pw` patch channel is transformed on its own (`fftshift(fft2(patch))`),
    values laid out per token in (row, col, channel) order like `patchify`.

    - `mode="complex"` (default): real and imaginary parts, the last axis pairing them:
      `(row, col, channel, [real, imag])`, `2 * ph * pw * C` values per token. Lossless;
      an MSE on it is the squared distance between complex spectra (the spectrum of a
      real patch is conjugate-symmetric, so about half the values are redundant).
    - `mode="log_amplitude"`: `log(1 + |F|)`, `ph * pw * C` values; phase is dropped and
      the large low-frequency amplitudes are compressed.

    Args:
        mode: `"complex"` or `"log_amplitude"`.
        norm: `"ortho"` (default; the FFT divided by `sqrt(ph * pw)`, so values keep the
            pixels' scale) or `"backward"` (unscaled, as `numpy.fft.fft2`).
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> target = FourierTarget()
        >>> t = target(np.random.rand(2, 8, 8, 3).astype("float32"), patch_size=4)
        >>> tuple(t.shape), target.output_dim(4, 3)
        ((2, 4, 96), 96)
    """

    MODES = ("complex", "log_amplitude")

    def __init__(self, mode="complex", norm="ortho", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"`mode` must be one of {self.MODES}, got {mode!r}.")
        self.mode = mode
        self.norm = _check_norm(norm)

    def output_dim(self, patch_size, num_channels):
        ph, pw = to_2tuple(patch_size, "patch_size")
        return ph * pw * num_channels * (2 if self.mode == "complex" else 1)

    def call(self, images, patch_size):
        ph, pw = to_2tuple(patch_size, "patch_size")
        c = images.shape[-1]
        patches = patchify(images, (ph, pw))  # (B, N, ph*pw*C)
        n = patches.shape[1]
        real, imag = centered_spectrum(ops.reshape(patches, (-1, ph, pw, c)), self.norm)  # (B*N, ph, pw, C)
        if self.mode == "complex":
            values = ops.stack([real, imag], axis=-1)  # (B*N, ph, pw, C, 2)
        else:
            values = ops.log1p(ops.sqrt(ops.square(real) + ops.square(imag)))
        return ops.reshape(values, (-1, n, self.output_dim((ph, pw), c)))

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, norm=self.norm)
        return config
