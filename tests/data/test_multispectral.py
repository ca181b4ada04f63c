"""Generated multispectral tiles: shapes, range and repeatability, one cover per kind of shape
in a tile (any kind any cover across tiles), the covers' spectra (water darkest in the
near-infrared, vegetation's red edge), the 60 m bands constant over 4 x 4
blocks, time series whose vegetation follows the season of each frame's month, and SatMAE's
band normalisation against its formula."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_mim.data.multispectral import (ATMOSPHERIC, SATMAE_BANDS, SENTINEL2_BANDS, band_normalize,
                                          band_statistics, multispectral_scenes, multispectral_series, season)

pytestmark = pytest.mark.backend_independent  # numpy only


@settings(max_examples=15, deadline=None)
@given(h=st.integers(8, 24), w=st.integers(8, 24), seed=st.integers(0, 10_000))
def test_property_tiles(h, w, seed):
    tiles, covers, kinds = multispectral_scenes(3, image_size=(h, w), seed=seed)
    assert tiles.shape == (3, h, w, 13) and covers.shape == kinds.shape == (3, h, w) and tiles.dtype == np.float32
    assert ((covers == 0) == (kinds == 0)).all()  # the floor is soil, every shape another cover
    for i in range(3):  # one cover per kind of shape in a tile
        for k in np.unique(kinds[i][kinds[i] > 0]):
            assert len(np.unique(covers[i][kinds[i] == k])) == 1
    assert 0.0 <= tiles.min() and tiles.max() <= 1.0
    for band in ATMOSPHERIC:  # one value per whole 4 x 4 block (60 m bands)
        x = tiles[:, : h // 4 * 4, : w // 4 * 4, band]
        blocks = x.reshape(3, h // 4, 4, w // 4, 4)
        assert np.allclose(blocks, blocks[:, :, :1, :, :1], atol=1e-6)


def test_covers_spectra_and_repeatability():
    tiles, classes, kinds = multispectral_scenes(64, image_size=32, seed=0)
    again = multispectral_scenes(64, image_size=32, seed=0)[0]
    np.testing.assert_array_equal(tiles, again)
    pairs = {(k, c) for k, c in zip(kinds[kinds > 0], classes[kinds > 0])}
    assert len(pairs) == 9  # every kind of shape is seen as every cover (the assignment is per tile)
    b8, b4 = SENTINEL2_BANDS.index("B8"), SENTINEL2_BANDS.index("B4")
    nir = [tiles[..., b8][classes == k].mean() for k in range(4)]  # soil, vegetation, water, built-up
    assert nir[2] < min(nir[0], nir[1], nir[3])  # water absorbs the near-infrared
    ndvi = (tiles[..., b8] - tiles[..., b4]) / (tiles[..., b8] + tiles[..., b4] + 1e-6)
    assert ndvi[classes == 1].mean() > 0.5 > ndvi[classes == 0].mean()  # vegetation's red edge
    assert len(SATMAE_BANDS) == 10 and {SENTINEL2_BANDS[b] for b in ATMOSPHERIC} == {"B1", "B9", "B10"}


def test_series_follow_the_season():
    frames, stamps, classes = multispectral_series(64, num_frames=3, image_size=16, seed=0)
    assert frames.shape == (64, 3, 16, 16, 13) and stamps.shape == (64, 3, 3)
    dates = stamps[..., 0] * 12 + stamps[..., 1]
    assert (np.diff(dates, axis=1) >= 0).all() and stamps[..., 1].min() >= 1 and stamps[..., 1].max() <= 12
    b8 = SENTINEL2_BANDS.index("B8")
    vegetation = classes == 1
    keep = vegetation.reshape(64, -1).any(1)
    nir = np.array([[frames[i, t, ..., b8][vegetation[i]].mean() for t in range(3)] for i in np.flatnonzero(keep)])
    expected = season(stamps[keep, :, 1])  # the vegetation's vigour in each frame's month
    ratio = (nir[:, 1:] / nir[:, :1]) / (expected[:, 1:] / expected[:, :1])
    assert np.median(np.abs(ratio - 1)) < 0.06  # the rest: per-frame brightness (5 %) and noise


def test_band_normalize_formula():
    x = np.random.default_rng(0).normal(0.2, 0.05, (4, 8, 8, 3)).astype("float32")
    mean, std = band_statistics(x)
    np.testing.assert_allclose(mean, x.reshape(-1, 3).mean(0), rtol=1e-5)
    got = band_normalize(x, mean, std)
    expected = np.clip((x - (mean - 2 * std)) / (4 * std), 0, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one value per band"):
        band_normalize(x, mean[:2], std[:2])
