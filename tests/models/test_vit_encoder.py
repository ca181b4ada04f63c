import numpy as np
import pytest

from keras_mim.models import ViTEncoder
from tests.conftest import to_numpy


def tiny(**kw):
    args = dict(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
    args.update(kw)
    return ViTEncoder(**args)


def test_all_tokens_without_mask(rng):
    enc = tiny()
    out = enc(rng.random((2, 16, 16, 3)).astype("float32"))
    assert tuple(out.shape) == (2, 1 + 16, 32)


def test_subset_in_grid_order_equals_full_encoding(rng):
    enc = tiny()
    x = rng.random((2, 16, 16, 3)).astype("float32")
    full = to_numpy(enc(x))
    same = to_numpy(enc(x, ids_keep=np.tile(np.arange(16), (2, 1))))
    np.testing.assert_allclose(full, same, atol=1e-5)
    sub = enc(x, ids_keep=np.array([[0, 5, 9], [1, 2, 3]]))
    assert tuple(sub.shape) == (2, 4, 32)


def test_non_square_grayscale_no_cls(rng):
    enc = tiny(image_size=(8, 16), num_channels=1, cls_token=False, pos_embed="learned")
    assert enc.grid_shape == (2, 4)
    assert tuple(enc(rng.random((3, 8, 16, 1)).astype("float32")).shape) == (3, 8, 32)


def test_other_image_size_interpolates_positions(rng):
    enc = tiny()
    assert tuple(enc(rng.random((1, 24, 24, 3)).astype("float32")).shape) == (1, 1 + 36, 32)


def test_official_init():
    enc = tiny(embed_dim=64, depth=1, num_heads=4)
    enc.build()
    cls = to_numpy(enc.cls_token)
    assert abs(cls.std() - 0.02) < 0.01
    qkv = to_numpy(enc.blocks[0].attn.qkv.kernel)
    # xavier-uniform over the fused (D, 3D) matrix
    assert np.abs(qkv).max() <= np.sqrt(6 / (64 + 192))
    np.testing.assert_array_equal(to_numpy(enc.blocks[0].attn.qkv.bias), 0.0)
    np.testing.assert_array_equal(to_numpy(enc.norm.gamma), 1.0)
    assert enc.norm.epsilon == 1e-6


def test_drop_path_rises_linearly():
    enc = tiny(depth=3, drop_path_rate=0.2)
    assert [b.drop_path for b in enc.blocks] == pytest.approx([0.0, 0.1, 0.2])


@pytest.mark.parametrize(
    "images,error,match",
    [
        (np.zeros((16, 16, 3), "float32"), ValueError, "rank 3"),
        (np.zeros((1, 16, 16, 3), "int32"), TypeError, "float tensor"),
        (np.zeros((1, 16, 16, 1), "float32"), ValueError, "`num_channels`=3"),
        (np.zeros((1, 18, 16, 3), "float32"), ValueError, "not divisible by the patch size"),
    ],
)
def test_bad_images(images, error, match):
    with pytest.raises(error, match=match):
        tiny()(images)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(image_size=15), "not divisible"),
        (dict(num_heads=3), "must divide `embed_dim`"),
        (dict(embed_dim=30, num_heads=2), "divisible by 4"),
        (dict(patch_size=0), "`patch_size`"),
        (dict(num_channels=0), "`num_channels`"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)
