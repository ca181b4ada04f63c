import numpy as np
import pytest

from keras_mim.layers import PatchEmbedding, patchify, unpatchify
from tests.conftest import to_numpy


def official_patchify(images_nhwc, p):
    """The official MAE patchify on NCHW input (reshape + einsum 'nchpwq->nhwpqc')."""
    x = np.transpose(images_nhwc, (0, 3, 1, 2))
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // p, p, w // p, p)
    x = np.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


@pytest.mark.parametrize("shape,p", [((2, 8, 8, 3), 4), ((1, 8, 12, 1), 2), ((2, 4, 6, 5), 2)])
def test_patchify_matches_official_layout(rng, shape, p):
    x = rng.normal(size=shape).astype("float32")
    np.testing.assert_array_equal(to_numpy(patchify(x, p)), official_patchify(x, p))


def test_patchify_rectangular_patches(rng):
    x = rng.normal(size=(2, 6, 8, 2)).astype("float32")
    out = to_numpy(patchify(x, (3, 4)))
    assert out.shape == (2, 4, 24)
    # token 1 is row 0, col 1 of the grid; its first value is pixel (0, 4, channel 0)
    assert out[0, 1, 0] == x[0, 0, 4, 0]
    np.testing.assert_array_equal(to_numpy(unpatchify(out, (3, 4), (6, 8, 2))), x)


def test_unpatchify_inverts_patchify(rng):
    x = rng.normal(size=(3, 8, 12, 4)).astype("float32")
    np.testing.assert_array_equal(to_numpy(unpatchify(patchify(x, 4), 4, (8, 12, 4))), x)


def test_patchify_rejects_indivisible_size():
    with pytest.raises(ValueError, match=r"not divisible by the patch size"):
        patchify(np.zeros((1, 10, 8, 3), "float32"), 4)


def test_unpatchify_rejects_wrong_token_count():
    with pytest.raises(ValueError, match="needs 4"):
        unpatchify(np.zeros((1, 5, 12), "float32"), 2, (4, 4, 3))


def test_patch_embedding_is_dense_on_flattened_patch(rng):
    x = rng.normal(size=(2, 8, 12, 3)).astype("float32")
    layer = PatchEmbedding(4, 16)
    out = to_numpy(layer(x))
    kernel = to_numpy(layer.proj.kernel).reshape(4 * 4 * 3, 16)
    bias = to_numpy(layer.proj.bias)
    np.testing.assert_allclose(out, official_patchify(x, 4) @ kernel + bias, rtol=1e-4, atol=1e-4)


def test_patch_embedding_init_is_dense_xavier():
    # Dense xavier-uniform on (p*p*C, D): limit sqrt(6 / (p*p*C + D)); uniform std = limit / sqrt(3)
    p, c, d = 16, 3, 768
    layer = PatchEmbedding(p, d)
    layer.build((None, 32, 32, c))
    kernel = to_numpy(layer.proj.kernel)
    limit = np.sqrt(6.0 / (p * p * c + d))
    assert np.abs(kernel).max() <= limit
    np.testing.assert_allclose(kernel.std(), limit / np.sqrt(3), rtol=0.02)
    np.testing.assert_array_equal(to_numpy(layer.proj.bias), 0.0)


def videomae_tubelets(clips, t, p):
    """VideoMAE's `b (t p0) (h p1) (w p2) c -> b (t h w) (p0 p1 p2 c)` written out in numpy."""
    b, frames, h, w, c = clips.shape
    x = clips.reshape(b, frames // t, t, h // p, p, w // p, p, c)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)  # (b, T', gh, gw, p0, p1, p2, c)
    return x.reshape(b, (frames // t) * (h // p) * (w // p), t * p * p * c)


def test_tubelet_patchify_matches_videomae_layout(rng):
    x = rng.normal(size=(2, 6, 8, 12, 3)).astype("float32")
    out = to_numpy(patchify(x, (2, 4, 4)))
    np.testing.assert_array_equal(out, videomae_tubelets(x, 2, 4))
    np.testing.assert_array_equal(to_numpy(unpatchify(out, (2, 4, 4), (6, 8, 12, 3))), x)


def test_tubelet_embedding_is_dense_on_flattened_tubelet(rng):
    x = rng.normal(size=(2, 4, 8, 8, 3)).astype("float32")
    layer = PatchEmbedding((2, 4, 4), 16)
    out = to_numpy(layer(x))
    assert out.shape == (2, 2 * 2 * 2, 16)
    kernel = to_numpy(layer.proj.kernel).reshape(2 * 4 * 4 * 3, 16)
    expected = videomae_tubelets(x, 2, 4) @ kernel + to_numpy(layer.proj.bias)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_clip_sizes_are_checked():
    with pytest.raises(ValueError, match="T=5 frames, which is not divisible by the tubelet size 2"):
        patchify(np.zeros((1, 5, 8, 8, 3), "float32"), (2, 4, 4))
    with pytest.raises(ValueError, match=r"needs clips \(B, T, H, W, C\)"):
        patchify(np.zeros((1, 8, 8, 3), "float32"), (2, 4, 4))
    with pytest.raises(ValueError, match=r"positive ints \(t, ph, pw\)"):
        patchify(np.zeros((1, 4, 8, 8, 3), "float32"), (2, 0, 4))
