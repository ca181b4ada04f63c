"""ColorMAE's data-independent masks from filtered ("coloured") random noise."""

import math

import keras
import numpy as np
from keras import ops

from keras_mim.masking.mask_generator import MaskGenerator, check_grid_shape

COLORS = ("blue", "green", "purple", "red")

# Defaults in cycles per token (the token grid's Nyquist frequency is 0.5).
DEFAULT_SIGMA = {"red": 0.1, "blue": 0.25, "green": 0.06, "purple": 0.06}
DEFAULT_CENTER = 0.25  # band centre of green / purple
PAD_FACTOR = 2  # noise is filtered on a grid PAD_FACTOR times larger, then cropped


def _positive_float(value, name, upper=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"`{name}` must be a positive float (cycles per token), got {value!r}.")
    if value <= 0 or (upper is not None and value > upper):
        bound = f" and at most {upper}" if upper is not None else ""
        raise ValueError(f"`{name}` must be a positive float{bound} (cycles per token), got {value!r}.")
    return float(value)


def color_filter(color, shape, sigma, center=None):
    """Radial frequency response of a colour's filter, as a numpy `float32` array.

    Args:
        color: one of `"red"`, `"blue"`, `"green"`, `"purple"`.
        shape: `(P, Q)`, the size of the noise field the filter is applied to.
        sigma: width of the Gaussian, in cycles per token.
        center: band centre for green / purple, in cycles per token.

    Returns:
        `(P, Q)` array in unshifted FFT order (DC at `[0, 0]`), real and symmetric, so
        filtering real noise gives a real field.

    Examples:
        >>> h = color_filter("red", (8, 8), 0.1)
        >>> h.shape, float(h[0, 0])
        ((8, 8), 1.0)
    """
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    if color in ("red", "blue"):
        low_pass = np.exp(-(radius**2) / (2.0 * sigma**2))
        response = low_pass if color == "red" else 1.0 - low_pass
    else:
        band_pass = np.exp(-((radius - center) ** 2) / (2.0 * sigma**2))
        response = band_pass if color == "green" else 1.0 - band_pass
    return response.astype("float32")


@keras.saving.register_keras_serializable(package="keras_mim")
class ColorNoiseMaskGenerator(MaskGenerator):
    """Data-independent masks from filtered random noise (ColorMAE, Hinojosa et al. 2024).

    For every sample, white Gaussian noise is drawn on the token grid, filtered in the
    Fourier domain with a radial filter on the frequency magnitude `|f|` (cycles per
    token), and the real part is read back; the tokens with the HIGHEST filtered values
    stay visible (`int(N * (1 - mask_ratio))` of them). The colour sets the filter:

    - `"red"`: Gaussian low-pass `exp(-|f|^2 / 2 sigma^2)`, sigma = 0.1: a few large
      visible blobs (spatial correlation length ~ 1 / (2 pi sigma) = 1.6 tokens).
    - `"blue"`: high-pass `1 - exp(-|f|^2 / 2 sigma^2)`, sigma = 0.25: scattered,
      evenly spread single tokens (for 25% visible, ideal blue noise peaks at
      sqrt(0.25) = 0.5 cycles per token, the Nyquist frequency).
    - `"green"`: band-pass, a Gaussian ring `exp(-(|f| - center)^2 / 2 sigma^2)`,
      center = 0.25, sigma = 0.06: small clusters spread evenly (the paper's best).
      Green-noise halftoning puts the principal frequency at sqrt(g / M) for a visible
      fraction g and cluster size M; g = 0.25 and clusters of ~4 tokens give 0.25.
    - `"purple"`: band-stop, 1 - the green ring: low and high frequencies only.

    The official code does not filter on the fly: it loads a precomputed bank of noise
    patterns (one `.npz` per colour, generation parameters not published in the
    repository) and, per step, crops one random window of the grid size at the same
    offset from all of them, with random horizontal/vertical flips. Here a fresh noise
    field is drawn and filtered for every sample instead: patterns are independent
    across samples and steps, nothing needs downloading, any grid size works, and the
    cost is one small FFT per sample. Because FFT filtering is circular, the noise is
    generated on a grid twice as large in each direction and the centre crop is used,
    so opposite edges of a mask are not correlated through wrap-around.

    Args:
        color: `"red"`, `"blue"`, `"green"` (default) or `"purple"`.
        mask_ratio: fraction of tokens to hide, in [0, 1) (ColorMAE: 0.75).
        sigma: Gaussian width in cycles per token (low-pass width for red / blue, ring
            width for green / purple); `None` uses the colour's default above.
        seed: optional int for repeatable masks.
        center: band centre in cycles per token for green / purple, in (0, 0.5 * sqrt(2)];
            `None` uses 0.25. Not accepted for red / blue.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> gen = ColorNoiseMaskGenerator("green", 0.75, seed=0)
        >>> out = gen(np.zeros((2, 196, 8), "float32"), grid_shape=(14, 14))
        >>> tuple(out["ids_keep"].shape), float(keras.ops.sum(out["mask"]))
        ((2, 49), 294.0)
    """

    grid_rank = 2

    def __init__(self, color="green", mask_ratio=0.75, sigma=None, seed=None, center=None, **kwargs):
        if not isinstance(color, str) or color.lower() not in COLORS:
            raise ValueError(f"`color` must be one of {list(COLORS)}, got {color!r}.")
        color = color.lower()
        sigma = DEFAULT_SIGMA[color] if sigma is None else _positive_float(sigma, "sigma")
        if color in ("red", "blue"):
            if center is not None:
                raise ValueError(f"`center` only applies to 'green' and 'purple', got center={center!r} for {color!r}.")
        else:
            center = DEFAULT_CENTER if center is None else _positive_float(center, "center", 0.5 * math.sqrt(2))
        super().__init__(mask_ratio=mask_ratio, seed=seed, **kwargs)
        self.color = color
        self.sigma = sigma
        self.center = center

    def scores(self, batch_size, grid_shape):
        grid_shape = check_grid_shape(grid_shape)
        if len(grid_shape) != 2:
            raise ValueError(
                f"`grid_shape` must be a 2D token grid (gh, gw) for {type(self).__name__}, got {grid_shape!r}."
            )
        gh, gw = grid_shape
        ph, pw = PAD_FACTOR * gh, PAD_FACTOR * gw
        response = ops.convert_to_tensor(color_filter(self.color, (ph, pw), self.sigma, self.center))
        noise = keras.random.normal((batch_size, ph, pw), dtype="float32", seed=self.seed_generator)
        real, imag = ops.fft2((noise, ops.zeros_like(noise)))
        field, _ = ops.ifft2((real * response, imag * response))
        top, left = (ph - gh) // 2, (pw - gw) // 2
        field = field[:, top : top + gh, left : left + gw]
        # Highest filtered values stay visible; selection keeps the lowest scores.
        return ops.reshape(-ops.cast(field, "float32"), (-1, gh * gw))

    def get_config(self):
        config = super().get_config()
        config.update(color=self.color, sigma=self.sigma, center=self.center)
        return config
