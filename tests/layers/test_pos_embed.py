import math

import numpy as np
import pytest

from keras_mim.layers import PositionEmbedding, sincos_2d, sincos_3d, sincos_flat
from tests.conftest import to_numpy


def reference_sincos(dim, gh, gw):
    """Independent loop form of the MAE table: channels [0, dim/2) encode the column,
    [dim/2, dim) the row; each half is [sin(pos*w_0..), cos(pos*w_0..)], w_i = 10000^(-i/(dim/4))."""
    quarter = dim // 4
    table = np.zeros((gh * gw, dim))
    for r in range(gh):
        for c in range(gw):
            t = r * gw + c
            for i in range(quarter):
                w = 1.0 / (10000 ** (i / quarter))
                table[t, i] = math.sin(c * w)
                table[t, quarter + i] = math.cos(c * w)
                table[t, 2 * quarter + i] = math.sin(r * w)
                table[t, 3 * quarter + i] = math.cos(r * w)
    return table


@pytest.mark.parametrize("dim,gh,gw", [(16, 3, 3), (8, 2, 5), (32, 4, 2)])
def test_sincos_matches_reference(dim, gh, gw):
    np.testing.assert_allclose(sincos_2d(dim, (gh, gw)), reference_sincos(dim, gh, gw), atol=1e-12)


def test_sincos_known_values():
    # row 0, col 1, dim 8: first channel is sin(1 * 1) and the cos part of the row half is 1
    table = sincos_2d(8, (2, 2))
    assert table[1, 0] == pytest.approx(math.sin(1.0))
    assert table[1, 6] == pytest.approx(1.0)


def test_layer_adds_fixed_table_with_zero_cls_row():
    layer = PositionEmbedding((2, 3), cls_token=True)
    out = to_numpy(layer(np.zeros((1, 6, 8), "float32")))
    np.testing.assert_allclose(out[0], reference_sincos(8, 2, 3), atol=1e-6)
    np.testing.assert_array_equal(to_numpy(layer.cls_embedding()), 0.0)
    assert not layer.pos_embed.trainable


def test_learned_mode_is_trainable_and_resizes():
    layer = PositionEmbedding((4, 4), mode="learned", cls_token=False)
    layer.build((None, 16, 8))
    assert layer.pos_embed.trainable
    assert tuple(layer.patch_embedding((2, 2)).shape) == (1, 4, 8)
    out = layer(np.zeros((1, 36, 8), "float32"), grid_shape=(6, 6))
    assert tuple(out.shape) == (1, 36, 8)


def test_sincos_other_grid_is_recomputed():
    layer = PositionEmbedding((2, 2), cls_token=False)
    out = to_numpy(layer(np.zeros((1, 6, 8), "float32"), grid_shape=(2, 3)))
    np.testing.assert_allclose(out[0], reference_sincos(8, 2, 3), atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="`mode`"):
        PositionEmbedding((2, 2), mode="rope")
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(6, (2, 2))
    layer = PositionEmbedding((2, 2))
    with pytest.raises(ValueError, match="grid is"):
        layer(np.zeros((1, 5, 8), "float32"))


def test_sincos_3d_is_time_quarter_then_mae_table():
    dim, (t, gh, gw) = 32, (3, 2, 2)
    table = sincos_3d(dim, (t, gh, gw))
    assert table.shape == (t * gh * gw, dim)
    space = reference_sincos(dim - dim // 4, gh, gw)
    eighth = dim // 8
    for ti in range(t):
        for s in range(gh * gw):
            row = table[ti * gh * gw + s]
            w = 1.0 / 10000 ** (np.arange(eighth) / eighth)
            np.testing.assert_allclose(row[:eighth], np.sin(ti * w), atol=1e-12)
            np.testing.assert_allclose(row[eighth: 2 * eighth], np.cos(ti * w), atol=1e-12)
            np.testing.assert_allclose(row[2 * eighth:], space[s], atol=1e-12)
    with pytest.raises(ValueError, match="divisible by 16"):
        sincos_3d(24, (2, 2, 2))


def test_flat_table_is_videomae_sinusoid_table():
    # VideoMAE's get_sinusoid_encoding_table: angle = pos / 10000^(2 * (j // 2) / d);
    # sin on even channels, cos on odd ones.
    n, d = 7, 10
    expected = np.zeros((n, d))
    for pos in range(n):
        for j in range(d):
            angle = pos / np.power(10000, 2 * (j // 2) / d)
            expected[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    np.testing.assert_allclose(sincos_flat(d, n), expected, atol=1e-12)
    layer = PositionEmbedding((2, 2, 2), mode="sincos_1d", cls_token=False)
    out = to_numpy(layer(np.zeros((1, 8, 10), "float32")))
    np.testing.assert_allclose(out[0], sincos_flat(10, 8), atol=1e-6)


def test_learned_3d_table_resizes_spatially_only():
    layer = PositionEmbedding((2, 2, 2), mode="learned", cls_token=False)
    out = layer(np.zeros((1, 2 * 3 * 3, 16), "float32"), grid_shape=(2, 3, 3))
    assert tuple(out.shape) == (1, 18, 16)
    with pytest.raises(ValueError, match="can only be resized spatially"):
        layer(np.zeros((1, 3 * 2 * 2, 16), "float32"), grid_shape=(3, 2, 2))
