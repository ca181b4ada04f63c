import keras
import numpy as np
import pytest
from skimage import data
from skimage.feature import hog

from keras_mim import MaskedAutoencoder
from keras_mim.targets import HOGTarget, get_target
from tests.conftest import to_numpy


def cells_from_tokens(tokens, grid, cells_per_patch, channels, bins=9):
    """Undo the token layout (channel, bin, cell row, cell col) -> (B, Hc, Wc, C, K)."""
    (gh, gw), (cph, cpw) = grid, cells_per_patch
    x = tokens.reshape(-1, gh, gw, channels, bins, cph, cpw)
    return x.transpose(0, 1, 5, 2, 6, 3, 4).reshape(-1, gh * cph, gw * cpw, channels, bins)


def skimage_cells(channel):
    """scikit-image HOG with one-cell blocks, L2: `(Hc, Wc, 9)`."""
    out = hog(channel, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(1, 1),
              block_norm="L2", feature_vector=False)
    return out[:, :, 0, 0]


def test_central_matches_scikit_image_on_camera():
    # skimage: g_row/g_col = [-1, 0, 1] differences, zero on the border rows/columns;
    # orientation = degrees(arctan2(g_row, g_col)) % 180, bin i = [20 i, 20 (i + 1));
    # cell value = mean magnitude of its votes; L2 norm h / sqrt(|h|^2 + 1e-5^2).
    img = data.camera()[96:224, 160:320].astype("float32") / 255.0  # (128, 160)
    tokens = to_numpy(HOGTarget(gradient="central")(img[None, :, :, None], patch_size=16))
    assert tokens.shape == (1, 8 * 10, 2 * 2 * 9)
    ours = cells_from_tokens(tokens, (8, 10), (2, 2), 1)[0, :, :, 0]
    ref = skimage_cells(img)
    # Every cell agrees to float32 round-off: no pixel falls into a different bin here.
    # Bins could only differ for an angle within ~1e-5 degrees of a multiple of 20 (float32
    # atan2 here vs float64 there); gradients of 8-bit images are multiples of 1/255, whose
    # angles never come that close (also true on the full 512 x 512 image: 0 of 4096 cells).
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_central_matches_scikit_image_per_rgb_channel():
    img = data.astronaut()[:64, 96:192].astype("float32") / 255.0  # (64, 96, 3)
    tokens = to_numpy(HOGTarget(gradient="central")(img[None], patch_size=16))
    assert tokens.shape == (1, 4 * 6, 108)  # MaskFeat's 108 values per RGB 16 px patch
    ours = cells_from_tokens(tokens, (4, 6), (2, 2), 3)[0]
    for c in range(3):  # skimage picks the strongest channel per pixel; compare channel-wise
        np.testing.assert_allclose(ours[:, :, c], skimage_cells(np.ascontiguousarray(img[..., c])), atol=1e-6)


def maskfeat_reference(img, cell=8, bins=9, window=None):
    """SlowFast's HOGLayerC written out as loops, float64: reflect pad, Sobel cross-correlation,
    phase = atan2(gx, gy) / pi * bins, bin = floor(phase) mod bins, votes summed per cell
    (optionally Gaussian-weighted, window tiled, sum 1), x / max(|x|, 1e-12)."""
    h, w, c = img.shape
    wx = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], "float64")
    wy = wx.T
    weight = np.ones((h, w))
    if window:
        n = np.arange(window, dtype="float64")
        g = np.exp(-0.5 * ((n - n.mean()) / (window // 2)) ** 2)
        g2 = np.outer(g, g)
        weight = np.tile(g2 / g2.sum(), (h // window, w // window))
    out = np.zeros((h // cell, w // cell, c, bins))
    for ch in range(c):
        p = np.pad(img[..., ch].astype("float64"), 1, mode="reflect")
        for i in range(h):
            for j in range(w):
                win = p[i : i + 3, j : j + 3]
                gx, gy = (win * wx).sum(), (win * wy).sum()
                b = int(np.floor(np.arctan2(gx, gy) / np.pi * bins)) % bins
                out[i // cell, j // cell, ch, b] += np.hypot(gx, gy) * weight[i, j]
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


@pytest.mark.parametrize("window", [False, True])
def test_sobel_matches_maskfeat_loop(rng, window):
    img = rng.random((32, 48, 3)).astype("float32")
    tokens = to_numpy(HOGTarget(gaussian_window=window)(img[None], patch_size=16))
    assert tokens.shape == (1, 6, 108)
    ours = cells_from_tokens(tokens, (2, 3), (2, 2), 3)[0]
    ref = maskfeat_reference(img, window=16 if window else None)
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_orientation_conventions_on_a_ramp():
    # Brightness rising to the right: skimage's angle is 0 deg (bin 0); MaskFeat measures from
    # the vertical axis, atan2(gx, gy) = atan2(-, 0) = -90 deg -> floor(-4.5) mod 9 = bin 4.
    img = np.tile(np.arange(16, dtype="float32"), (16, 1))[None, :, :, None] / 16
    for gradient, expected in (("central", 0), ("sobel", 4)):
        hist = to_numpy(HOGTarget(gradient=gradient).histograms(img))  # (1, 2, 2, 1, 9)
        assert (hist.argmax(-1) == expected).all(), gradient
        np.testing.assert_allclose(np.linalg.norm(hist, axis=-1), 1.0, atol=1e-4)


def test_flat_image_gives_zero_histograms_and_any_channel_count():
    out = to_numpy(HOGTarget(cell_size=4)(np.full((2, 8, 8, 5), 0.3, "float32"), patch_size=8))
    assert out.shape == (2, 1, 2 * 2 * 9 * 5) and np.all(out == 0)


def test_output_dim_and_incompatible_patches():
    assert HOGTarget().output_dim(16, 3) == 108
    assert HOGTarget(orientations=6, cell_size=(4, 8)).output_dim((8, 16), 1) == 2 * 2 * 6
    for patch in (1, 4, (16, 12)):
        with pytest.raises(ValueError, match=r"cells of \(8, 8\) px, which must divide the patch size"):
            HOGTarget().output_dim(patch, 3)
    with pytest.raises(ValueError, match="`gaussian_window`=3 must divide"):
        HOGTarget(cell_size=4, gaussian_window=3).output_dim(8, 3)
    # the model refuses at construction: MAE's test ViT has 4 px patches
    with pytest.raises(ValueError, match="must divide the patch size"):
        MaskedAutoencoder.from_preset("mae_vit_test", target="hog")


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(orientations=0), "`orientations` must be a positive int"),
        (dict(cell_size=0), "`cell_size` must be a positive int"),
        (dict(gradient="prewitt"), "`gradient` must be one of"),
        (dict(gaussian_window=-2), "`gaussian_window` must be a positive int"),
        (dict(eps=0), "`eps` must be a float > 0"),
    ],
)
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        HOGTarget(**kw)


def test_registry_config_and_mae_with_hog(rng):
    assert isinstance(get_target("hog"), HOGTarget)
    target = HOGTarget(cell_size=4, gradient="central", gaussian_window=True)
    clone = get_target(keras.saving.serialize_keras_object(target))
    assert clone.get_config() == target.get_config()
    x = rng.random((2, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(to_numpy(clone(x, patch_size=4)), to_numpy(target(x, patch_size=4)))
    # a model sizes its head from the target: 4 px patches, 4 px cells, 9 bins, RGB -> 27
    model = MaskedAutoencoder.from_preset("mae_vit_test", target=HOGTarget(cell_size=4))
    assert model.decoder.output_dim == 27
