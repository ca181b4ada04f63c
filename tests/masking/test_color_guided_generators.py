import keras
import numpy as np
import pytest
from skimage.measure import label

from keras_mim.masking.color_noise_mask_generator import ColorNoiseMaskGenerator
from keras_mim.masking.guided_mask_generator import GuidedMaskGenerator
from tests.conftest import expected_visible, to_numpy

GRID = (16, 16)
N = GRID[0] * GRID[1]
RATIO = 0.75
KEEP = int(N * (1 - RATIO))
BANDS = ((0.0, 1 / 6), (1 / 6, 1 / 3), (1 / 3, 1.0))  # radial |f| in cycles per token


# ---------------------------------------------------------------- independent numpy references


def numpy_random_masks(batch, seed=0):
    """MAE random masks drawn with numpy, (batch, gh, gw), 1 = hidden."""
    scores = np.random.default_rng(seed).random((batch, N))
    mask = np.ones((batch, N))
    np.put_along_axis(mask, np.argsort(scores, axis=1)[:, :KEEP], 0.0, axis=1)
    return mask.reshape(batch, *GRID)


def band_fractions(masks):
    """Fraction of the (mean-removed) masks' power spectrum in each radial band."""
    centred = masks - masks.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(centred)) ** 2).mean(0)
    radius = np.hypot(np.fft.fftfreq(GRID[0])[:, None], np.fft.fftfreq(GRID[1])[None, :])
    total = power.sum()
    return np.array([power[(radius > lo) & (radius <= hi)].sum() / total for lo, hi in BANDS])


def mean_visible_cluster(masks):
    """Mean size of the 4-connected components of visible tokens."""
    sizes = []
    for mask in masks:
        labels = label(mask == 0, connectivity=1)  # 4-connectivity
        sizes.extend(np.bincount(labels.ravel())[1:].tolist())
    return float(np.mean(sizes))


def color_masks(color, batch=64, seed=0, **kwargs):
    gen = ColorNoiseMaskGenerator(color, RATIO, seed=seed, **kwargs)
    return to_numpy(gen(np.zeros((batch, N, 1), "float32"), grid_shape=GRID)["mask"]).reshape(batch, *GRID)


@pytest.fixture(scope="module")
def spectra():
    masks = {c: color_masks(c, seed=i) for i, c in enumerate(("red", "green", "blue", "purple"))}
    masks["random"] = numpy_random_masks(1024)
    return {k: band_fractions(v) for k, v in masks.items()}, masks


# ---------------------------------------------------------------- ColorMAE


def test_color_spectral_signatures(spectra):
    frac, _ = spectra
    low, mid, high = 0, 1, 2
    rand = frac["random"]
    # red: power concentrated at low frequencies
    assert frac["red"][low] > 0.4 and frac["red"][low] > 3 * rand[low]
    # blue: low frequencies suppressed, high ones enhanced
    assert frac["blue"][low] < 0.75 * rand[low] and frac["blue"][high] > rand[high] + 0.05
    # green: the middle band dominates
    assert frac["green"][mid] > rand[mid] + 0.15 and frac["green"][mid] > max(frac["green"][low], frac["green"][high])
    assert frac["green"][low] < frac["red"][low] and frac["green"][high] < frac["blue"][high]
    # purple: band-stop, the middle band is the one depleted relative to random masks
    ratio = frac["purple"] / rand
    assert ratio[mid] < 0.8 and ratio[mid] < ratio[low] and ratio[mid] < ratio[high]
    assert frac["purple"][mid] < frac["green"][mid]


def test_color_cluster_sizes(spectra):
    _, masks = spectra
    size = {k: mean_visible_cluster(v) for k, v in masks.items()}
    assert size["green"] < 0.5 * size["red"]  # green: small clusters; red: big blobs
    assert size["green"] > size["random"] > size["blue"]  # blue: scattered single tokens


@pytest.mark.parametrize("color", ["red", "green", "blue", "purple"])
def test_color_counts_and_batch_diversity(color, spectra):
    _, masks = spectra
    m = masks[color]
    assert m.dtype == np.float32
    np.testing.assert_array_equal(m.reshape(len(m), -1).sum(1), N - KEEP)
    assert len({x.tobytes() for x in m}) == len(m)


def test_color_non_square_grid_counts():
    gen = ColorNoiseMaskGenerator("red", 0.6, seed=3)
    out = gen(np.zeros((5, 3)), grid_shape=(6, 10))
    mask = to_numpy(out["mask"])
    assert mask.shape == (5, 60) and tuple(out["ids_keep"].shape) == (5, int(60 * 0.4))
    np.testing.assert_array_equal(mask.sum(1), 60 - int(60 * 0.4))


def test_color_seed_determinism_and_calls_differ():
    x = np.zeros((4, N, 1), "float32")
    g1, g2 = ColorNoiseMaskGenerator("green", seed=5), ColorNoiseMaskGenerator("green", seed=5)
    m1, m2 = to_numpy(g1(x, grid_shape=GRID)["mask"]), to_numpy(g2(x, grid_shape=GRID)["mask"])
    np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(m1, to_numpy(g1(x, grid_shape=GRID)["mask"]))


def test_color_highest_field_values_stay_visible():
    gen = ColorNoiseMaskGenerator("green", RATIO, seed=1)
    scores = to_numpy(gen.scores(3, GRID))
    assert scores.shape == (3, N) and scores.dtype == np.float32
    fixed = to_numpy(gen(np.zeros((3, 1)), grid_shape=GRID, noise=scores)["mask"])
    field = -scores
    for b in range(3):
        threshold = np.sort(field[b])[::-1][KEEP - 1]
        assert np.all(field[b][fixed[b] == 0] >= threshold)
        assert np.all(field[b][fixed[b] == 1] <= threshold)


def test_color_config_round_trip():
    gen = ColorNoiseMaskGenerator("purple", 0.6, sigma=0.08, seed=2, center=0.3)
    config = gen.get_config()
    assert (config["color"], config["sigma"], config["center"], config["mask_ratio"], config["seed"]) == (
        "purple",
        0.08,
        0.3,
        0.6,
        2,
    )
    clone = ColorNoiseMaskGenerator.from_config(config)
    x = np.zeros((2, N, 1), "float32")
    expected = to_numpy(gen(x, grid_shape=GRID)["mask"])
    np.testing.assert_array_equal(expected, to_numpy(clone(x, grid_shape=GRID)["mask"]))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(gen))
    assert isinstance(restored, ColorNoiseMaskGenerator) and restored.get_config() == config
    assert ColorNoiseMaskGenerator("red").get_config()["sigma"] == 0.1  # defaults are explicit


def test_color_bad_arguments():
    with pytest.raises(ValueError, match=r"`color` must be one of \['blue', 'green', 'purple', 'red'\], got 'pink'"):
        ColorNoiseMaskGenerator("pink")
    with pytest.raises(ValueError, match="`sigma` must be a positive float"):
        ColorNoiseMaskGenerator("red", sigma=-0.1)
    with pytest.raises(TypeError, match="`sigma`"):
        ColorNoiseMaskGenerator("red", sigma="wide")
    with pytest.raises(ValueError, match="`center` only applies"):
        ColorNoiseMaskGenerator("blue", center=0.2)
    with pytest.raises(ValueError, match="`center` must be a positive float"):
        ColorNoiseMaskGenerator("green", center=0.9)
    with pytest.raises(ValueError, match=r"`mask_ratio` must be in \[0, 1\)"):
        ColorNoiseMaskGenerator("green", 1.0)
    with pytest.raises(ValueError, match=r"\(gh, gw\) image token grids"):
        ColorNoiseMaskGenerator("green")(np.zeros((2, 1)), grid_shape=(2, 4, 4))


# ---------------------------------------------------------------- guided


def guided_masks(importance, grid, ratio, seed=0, **kwargs):
    gen = GuidedMaskGenerator(ratio, seed=seed, **kwargs)
    importance = np.asarray(importance, "float32")
    return to_numpy(gen(np.zeros((len(importance), 1)), grid_shape=grid, importance=importance)["mask"])


def numpy_successive_sampling(p, size, draws, seed=0):
    """Frequency with which each token is drawn, sampling `size` without replacement with `p`."""
    rng = np.random.default_rng(seed)
    counts = np.zeros(len(p))
    for _ in range(draws):
        counts[rng.choice(len(p), size=size, replace=False, p=p)] += 1
    return counts / draws


def test_guided_peaked_importance_hides_the_important_half():
    importance = np.ones((64, N), "float32")
    importance[:, : N // 2] = 100.0
    mask = guided_masks(importance, GRID, 0.5)
    np.testing.assert_array_equal(mask.sum(1), N // 2)
    hidden_important = mask[:, : N // 2].sum() / mask.sum()
    # An independent sampler puts ~96% of the hidden tokens in the important half.
    assert hidden_important > 0.9
    # ... and MaskAlign's direction keeps them visible instead.
    mask = guided_masks(importance, GRID, 0.5, sample="visible")
    assert mask[:, : N // 2].sum() / mask.sum() < 0.1


@pytest.mark.parametrize("sample,temperature", [("hidden", 1.0), ("visible", 1.0), ("hidden", 2.0)])
def test_guided_frequencies_follow_sampling_without_replacement(sample, temperature):
    n, ratio, batch = 16, 0.75, 4096
    keep = expected_visible(n, ratio)
    weights = np.arange(1, n + 1, dtype="float64")
    mask = guided_masks(np.tile(weights, (batch, 1)), (4, 4), ratio, seed=11, sample=sample, temperature=temperature)
    np.testing.assert_array_equal(mask.sum(1), n - keep)
    p = weights ** (1 / temperature)
    p /= p.sum()
    if sample == "hidden":
        observed, expected = mask.mean(0), numpy_successive_sampling(p, n - keep, 20000)
        # Hidden frequency increases with importance (up to sampling noise).
        assert np.all(np.diff(observed) > -0.03) and observed[-1] - observed[0] > 0.3 / temperature
    else:
        observed, expected = 1 - mask.mean(0), numpy_successive_sampling(p, keep, 20000)
    np.testing.assert_allclose(observed, expected, atol=0.04)


def test_guided_without_importance_is_uniform():
    gen = GuidedMaskGenerator(0.75, seed=4)
    mask = to_numpy(gen(np.zeros((4096, 1)), grid_shape=(4, 4))["mask"])
    np.testing.assert_array_equal(mask.sum(1), 12)
    np.testing.assert_allclose(mask.mean(0), 0.75, atol=0.04)
    # uniform importances give the same distribution
    mask = guided_masks(np.full((4096, 16), 0.3), (4, 4), 0.75, seed=5)
    np.testing.assert_allclose(mask.mean(0), 0.75, atol=0.04)


def test_guided_zero_importance_is_finite_and_last_to_hide():
    importance = np.zeros((32, 16), "float32")
    importance[:, 8:] = 1.0
    mask = guided_masks(importance, (4, 4), 0.75)  # hides 12: all 8 important + 4 of the zeros
    np.testing.assert_array_equal(mask[:, 8:], 1.0)
    np.testing.assert_array_equal(mask[:, :8].sum(1), 4)


def test_guided_seed_determinism_and_config():
    importance = np.random.default_rng(0).random((8, 16)).astype("float32")
    a = guided_masks(importance, (4, 4), 0.5, seed=9, temperature=0.5)
    b = guided_masks(importance, (4, 4), 0.5, seed=9, temperature=0.5)
    np.testing.assert_array_equal(a, b)
    gen = GuidedMaskGenerator(0.7, temperature=0.5, seed=9, sample="visible")
    config = gen.get_config()
    assert (config["mask_ratio"], config["temperature"], config["seed"], config["sample"]) == (0.7, 0.5, 9, "visible")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(gen))
    assert isinstance(restored, GuidedMaskGenerator) and restored.get_config() == config


def test_guided_bad_arguments():
    gen = GuidedMaskGenerator(0.5)
    x = np.zeros((2, 1))
    with pytest.raises(ValueError, match=r"`importance` must have shape \(2, 16\) = \(batch, N\), got \(2, 15\)"):
        gen(x, grid_shape=(4, 4), importance=np.ones((2, 15), "float32"))
    with pytest.raises(ValueError, match="`importance` must have shape"):
        gen(x, grid_shape=(4, 4), importance=np.ones((2, 4, 4), "float32"))
    with pytest.raises(ValueError, match="`importance` must have shape"):
        gen(x, grid_shape=(4, 4), importance=np.ones((3, 16), "float32"))
    with pytest.raises(ValueError, match="either `noise` or `importance`"):
        gen(x, grid_shape=(4, 4), noise=np.ones((2, 16), "float32"), importance=np.ones((2, 16), "float32"))
    with pytest.raises(ValueError, match="`temperature` must be a positive"):
        GuidedMaskGenerator(temperature=0.0)
    with pytest.raises(TypeError, match="`temperature`"):
        GuidedMaskGenerator(temperature="hot")
    with pytest.raises(ValueError, match=r"`sample` must be one of \['hidden', 'visible'\]"):
        GuidedMaskGenerator(sample="kept")
