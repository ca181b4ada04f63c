"""Generated multispectral tiles (Sentinel-2's 13 bands) and time series of them, numpy only,
for SatMAE demos and tests without a download; and SatMAE's per-band normalisation.

The tiles are the generated scenes of `paired_scenes` seen from above by a multispectral
sensor: the floor is bare soil and each kind of shape (square, disc, triangle) is one of the
other land covers (vegetation, water, built-up), a random assignment per tile, so a patch's
cover shows in its spectrum while the kind of shape it belongs to shows only in the shape's
outline. Each cover has its own reflectance spectrum over the 13 bands (`SPECTRA`, values
typical of Sentinel-2 surface reflectance), scaled per tile and cover (0.8 to 1.2), shaded by
the scene's RGB brightness (0.7 to 1.0) and given sensor noise (std 0.005). The three atmospheric bands (B1 aerosol,
B9 water vapour, B10 cirrus) are 60 m bands: block-averaged over 4 x 4 pixels, so they hold
little detail, which is why SatMAE drops them. In a time series a tile keeps its covers;
vegetation greens up and fades with the month (its red-edge and near-infrared reflectance
scale with `season(month)`), the rest stays, so the timestamps explain part of the change.
"""

import numpy as np

from keras_mim.data.paired_scenes import CLASS_NAMES, paired_scenes
from keras_mim.utils import check_positive_int, to_2tuple

#: Sentinel-2 MSI bands, in product order.
SENTINEL2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
#: The 10 bands SatMAE keeps (B1, B9 and B10 dropped), indices into SENTINEL2_BANDS.
SATMAE_BANDS = (1, 2, 3, 4, 5, 6, 7, 8, 11, 12)
#: Land covers of the cover maps (the floor is always soil).
COVER_NAMES = ("soil", "vegetation", "water", "built-up")
#: Reflectance spectra over SENTINEL2_BANDS (typical surface reflectance).
SPECTRA = {
    "soil": (0.08, 0.10, 0.13, 0.17, 0.20, 0.22, 0.24, 0.26, 0.27, 0.25, 0.02, 0.33, 0.28),
    "vegetation": (0.04, 0.05, 0.08, 0.04, 0.12, 0.30, 0.38, 0.42, 0.44, 0.40, 0.01, 0.22, 0.12),
    "water": (0.07, 0.06, 0.05, 0.03, 0.025, 0.02, 0.015, 0.012, 0.01, 0.008, 0.001, 0.005, 0.003),
    "built-up": (0.12, 0.14, 0.16, 0.18, 0.19, 0.20, 0.21, 0.22, 0.22, 0.20, 0.02, 0.28, 0.26),
}
#: Bands at 60 m (B1, B9, B10): block-averaged over ATMOSPHERIC_BLOCK pixels.
ATMOSPHERIC, ATMOSPHERIC_BLOCK = (0, 9, 10), 4
#: Vegetation bands whose reflectance follows the season (B5 to B8A).
SEASONAL = (4, 5, 6, 7, 8)


def season(month):
    """Vegetation vigour of a month (1-12), from 0.4 in winter to 1.0 in early summer."""
    return 0.7 + 0.3 * np.sin(2.0 * np.pi * (np.asarray(month, "float32") - 3.0) / 12.0)


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0, got {seed!r}.")


def _render(covers, brightness, scale, month, rng):
    """Reflectance `(n, H, W, 13)` of cover maps `(n, H, W)` with per-tile cover `scale`
    `(n, 4)`, `brightness` `(n, H, W)` in [0, 1] and the vegetation's `month` `(n,)`."""
    spectra = np.array([SPECTRA[name] for name in COVER_NAMES], "float32")  # (4, 13)
    spectra = np.broadcast_to(spectra, (len(covers),) + spectra.shape).copy()  # (n, 4, 13)
    vegetation = COVER_NAMES.index("vegetation")
    spectra[:, vegetation, list(SEASONAL)] *= season(month)[:, None]
    spectra *= scale[..., None]
    cube = np.take_along_axis(spectra[:, None, None], covers[..., None, None], axis=3)[..., 0, :]  # (n, H, W, 13)
    cube = cube * (0.7 + 0.3 * brightness[..., None])
    cube = cube + rng.normal(0.0, 0.005, cube.shape)
    n, h, w, _ = cube.shape
    b = ATMOSPHERIC_BLOCK
    hb, wb = -(-h // b) * b, -(-w // b) * b
    for band in ATMOSPHERIC:  # 60 m bands: one value per b x b block
        padded = np.pad(cube[..., band], ((0, 0), (0, hb - h), (0, wb - w)), mode="edge")
        blocks = padded.reshape(n, hb // b, b, wb // b, b).mean(axis=(2, 4))
        cube[..., band] = np.repeat(np.repeat(blocks, b, axis=1), b, axis=2)[:, :h, :w]
    return np.clip(cube, 0.0, 1.0).astype("float32")


def _scenes(num, image_size, num_shapes, rng):
    """`(covers, kinds, brightness)` of `num` generated scenes: the kinds of shape
    (`paired_scenes.CLASS_NAMES`), each kind given a random non-soil cover per scene."""
    scenes = paired_scenes(num, image_size=image_size, num_shapes=num_shapes, seed=int(rng.integers(2**31)))
    rgb = scenes["rgb"].mean(axis=-1)
    brightness = rgb / np.maximum(rgb.max(axis=(1, 2), keepdims=True), 1e-6)
    kinds = scenes["semseg"]
    cover_of_kind = np.concatenate([np.zeros((num, 1), "int32"),
                                    1 + np.argsort(rng.random((num, len(CLASS_NAMES) - 1)), axis=1)], axis=1)
    covers = np.take_along_axis(cover_of_kind, kinds.reshape(num, -1), axis=1).reshape(kinds.shape)
    return covers.astype("int32"), kinds, brightness


def multispectral_scenes(num_tiles, image_size=32, num_shapes=3, seed=0):
    """Tiles of 13 Sentinel-2-like bands and their land-cover maps.

    Args:
        num_tiles: number of tiles, a positive int.
        image_size: int or `(H, W)`, each at least 8.
        num_shapes: covers drawn on the soil per tile (`paired_scenes`' shapes).
        seed: non-negative int; the same arguments always give the same tiles.

    Returns:
        `(tiles, covers, kinds)`: float32 reflectance `(n, H, W, 13)` in `[0, 1]` (band order
        `SENTINEL2_BANDS`; `tiles[..., SATMAE_BANDS]` are SatMAE's 10), int32 land-cover maps
        `(n, H, W)` (`COVER_NAMES`) and int32 maps of the kind of shape `(n, H, W)`
        (`paired_scenes.CLASS_NAMES`: floor, square, disc, triangle).

    Examples:
        >>> tiles, covers, kinds = multispectral_scenes(4, image_size=16, seed=0)
        >>> tiles.shape, covers.shape, kinds.shape
        ((4, 16, 16, 13), (4, 16, 16), (4, 16, 16))
        >>> water, vegetation = covers == 2, covers == 1  # water reflects almost no near-infrared (B8)
        >>> bool(tiles[..., 7][water].mean() < tiles[..., 7][vegetation].mean())
        True
    """
    n = check_positive_int(num_tiles, "num_tiles")
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    covers, kinds, brightness = _scenes(n, image_size, num_shapes, rng)
    scale = rng.uniform(0.8, 1.2, size=(n, len(COVER_NAMES))).astype("float32")
    month = rng.integers(1, 13, size=n)
    return _render(covers, brightness, scale, month, rng), covers, kinds


def multispectral_series(num_series, num_frames=3, image_size=32, num_shapes=3, seed=0):
    """Time series of tiles of the same places (SatMAE's temporal input), with timestamps.

    Each series keeps its land covers and shading; every frame is a fresh acquisition
    (its own date, cover brightness varying by 5 %, sensor noise) and vegetation follows
    the season of its month.

    Args:
        num_series: number of series, a positive int.
        num_frames: frames per series (SatMAE: 3).
        image_size: int or `(H, W)`, each at least 8.
        num_shapes: covers drawn per tile.
        seed: non-negative int.

    Returns:
        `(frames, timestamps, covers)`: float32 `(n, T, H, W, 13)`, int32 `(n, T, 3)` of
        (year, month 1-12, hour 0-23), frames in time order, and the land-cover maps
        `(n, H, W)` (`COVER_NAMES`).

    Examples:
        >>> frames, timestamps, covers = multispectral_series(2, num_frames=3, image_size=16)
        >>> frames.shape, timestamps.shape, covers.shape
        ((2, 3, 16, 16, 13), (2, 3, 3), (2, 16, 16))
    """
    n = check_positive_int(num_series, "num_series")
    t = check_positive_int(num_frames, "num_frames")
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    covers, _, brightness = _scenes(n, image_size, num_shapes, rng)
    scale = rng.uniform(0.8, 1.2, size=(n, len(COVER_NAMES))).astype("float32")
    days = np.sort(rng.integers(0, 6 * 365, size=(n, t)), axis=1)  # 2015 to 2020
    year, month = 2015 + days // 365, 1 + (days % 365) // 31 % 12
    hour = rng.integers(9, 13, size=(n, t))  # morning overpasses
    frames = np.stack([_render(covers, brightness, scale * rng.uniform(0.95, 1.05, scale.shape).astype("float32"),
                               month[:, k], rng) for k in range(t)], axis=1)
    return frames, np.stack([year, month, hour], axis=-1).astype("int32"), covers


def band_statistics(images):
    """Per-band mean and std `(C,)` of float images `(..., C)` (e.g. a training set)."""
    x = np.asarray(images, "float64").reshape(-1, np.shape(images)[-1])
    return x.mean(axis=0).astype("float32"), x.std(axis=0).astype("float32")


def band_normalize(images, mean, std):
    """SatMAE's Sentinel normalisation: each band mapped from `[mean - 2 std, mean + 2 std]`
    to `[0, 1]` and clipped (the official `SentinelNormalize`, without its 8-bit rounding).

    Args:
        images: float `(..., C)`.
        mean: per-band means `(C,)` (`band_statistics` of the training set).
        std: per-band standard deviations `(C,)`.

    Returns:
        float32 array of the shape of `images`.

    Examples:
        >>> x = np.array([[0.0, 1.0, 2.0, 10.0]], "float32").T  # one band, 4 pixels
        >>> band_normalize(x, [1.0], [0.5]).ravel().tolist()
        [0.0, 0.5, 1.0, 1.0]
    """
    mean, std = np.asarray(mean, "float32"), np.asarray(std, "float32")
    x = np.asarray(images, "float32")
    if mean.shape != (x.shape[-1],) or std.shape != mean.shape:
        raise ValueError(f"`mean` and `std` must have one value per band ({x.shape[-1]}), got shapes "
                         f"{mean.shape} and {std.shape}.")
    low, width = mean - 2.0 * std, np.maximum(4.0 * std, 1e-12)
    return np.clip((x - low) / width, 0.0, 1.0).astype("float32")
