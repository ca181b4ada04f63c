"""Hiera's token orders and attention, each against numpy: the official reshape-and-permute
unroll, boolean unit selection, a 2 x 2 max pool, and attention computed window by window."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_mim.layers import HieraBlock, MaskUnitAttention
from keras_mim.layers.hiera_ops import keep_units, pool_first, reroll, undo_windowing, unroll
from tests.conftest import to_numpy


def official_unroll(x, stride, levels):
    """The official `Unroll` in numpy: `(B, H, W, C)` -> `(B, H * W, C)`, splitting the batch."""
    b0, h, w, c = x.shape
    b = b0
    for _ in range(levels):
        h, w = h // stride, w // stride
        x = x.reshape(b, h, stride, w, stride, c).transpose(0, 2, 4, 1, 3, 5)  # strides first
        b *= stride * stride
        x = x.reshape(b, h, w, c)
    return x.reshape(b0, -1, c)


shapes = st.tuples(st.integers(1, 3), st.sampled_from([2, 3]), st.integers(1, 3), st.integers(1, 2),
                   st.integers(1, 2), st.integers(1, 3))


@settings(max_examples=6, deadline=None)
@given(shapes)
def test_unroll_is_the_official_order_and_reroll_undoes_it(shape):
    levels, stride, uh, uw, b, c = shape
    u = stride ** levels
    x = np.random.default_rng(0).normal(size=(b, uh * u, uw * u, c)).astype("float32")
    unrolled = to_numpy(unroll(x.reshape(b, -1, c), (uh * u, uw * u), stride, levels))
    np.testing.assert_array_equal(unrolled, official_unroll(x, stride, levels))
    back = undo_windowing(reroll(unrolled, uh * uw, stride, levels), (uh, uw))  # round trip
    np.testing.assert_array_equal(to_numpy(back), x)


def test_keep_units_is_the_official_boolean_selection(rng):
    b, j, units, c = 2, 16, 6, 3
    x = rng.normal(size=(b, j * units, c)).astype("float32")
    ids_keep = np.array([[0, 2, 5], [1, 3, 4]])
    visible = np.zeros((b, units), bool)
    np.put_along_axis(visible, ids_keep, True, axis=1)
    expected = np.stack([x[i][np.tile(visible[i], j)] for i in range(b)])  # x[mask.tile(1, mu_size)]
    np.testing.assert_array_equal(to_numpy(keep_units(x, ids_keep, units)), expected)


def test_pool_first_is_a_2x2_max_pool_of_the_map(rng):
    stride, levels, grid = 2, 2, (2, 3)
    x = rng.normal(size=(2, 8, 12, 3)).astype("float32")
    pooled = pool_first(unroll(x.reshape(2, -1, 3), (8, 12), stride, levels), stride * stride)
    pooled_map = undo_windowing(reroll(pooled, 6, stride, levels - 1), grid)
    expected = x.reshape(2, 4, 2, 6, 2, 3).max(axis=(2, 4))
    np.testing.assert_array_equal(to_numpy(pooled_map), expected)


def numpy_attention(x, layer, windows):
    """MaskUnitAttention in numpy, window by window (window `w` = tokens `t * W + w`)."""
    wqkv, bqkv, wp, bp = (to_numpy(v).astype("float64") for v in (layer.qkv.kernel, layer.qkv.bias,
                                                                  layer.proj.kernel, layer.proj.bias))
    b, n, _ = x.shape
    t, h, hd, qs = n // windows, layer.num_heads, layer.head_dim, layer.q_stride
    out = np.zeros((b, n // qs, layer.dim_out))
    for w in range(windows):
        q, k, v = np.split(x[:, w::windows] @ wqkv + bqkv, 3, axis=-1)  # each (B, T, D)
        q = q.reshape(b, qs, t // qs, -1).max(axis=1)  # pool the queries over the leading blocks
        for head in range(h):
            sl = slice(head * hd, (head + 1) * hd)
            logits = q[..., sl] @ k[..., sl].transpose(0, 2, 1) / np.sqrt(hd)
            p = np.exp(logits - logits.max(-1, keepdims=True))
            out[:, w::windows, sl] = (p / p.sum(-1, keepdims=True)) @ v[..., sl]
    return out @ wp + bp


def test_mask_unit_attention_matches_numpy_window_by_window(rng):
    x = rng.normal(size=(2, 64, 8)).astype("float32")
    for q_stride, window, local in ((4, 4, True), (1, 16, True), (4, 0, False)):
        layer = MaskUnitAttention(16, 2, q_stride=q_stride, window_size=window, use_mask_unit_attn=local)
        out = to_numpy(layer(x))
        windows = 64 // (q_stride * window) if local else 1
        np.testing.assert_allclose(out, numpy_attention(x.astype("float64"), layer, windows), rtol=1e-4, atol=1e-5)


def test_mask_unit_attention_stays_inside_each_unit(rng):
    layer = MaskUnitAttention(8, 2, window_size=16, use_mask_unit_attn=True)  # 4 units of 16 tokens
    x = rng.normal(size=(1, 64, 8)).astype("float32")
    y = x.copy()
    y[:, 1::4] += 5.0  # change every token of unit 1
    changed = np.abs(to_numpy(layer(x)) - to_numpy(layer(y))).max(axis=(0, 2)).reshape(16, 4).max(axis=0)
    assert changed[1] > 0 and np.all(changed[[0, 2, 3]] == 0), changed


def test_hiera_block_pools_its_residual_at_a_stage_change(rng):
    block = HieraBlock(16, 2, q_stride=4, window_size=4, use_mask_unit_attn=True)
    x = rng.normal(size=(2, 64, 8)).astype("float32")
    out = to_numpy(block(x))
    # the residual branch alone: max over the leading 4 blocks of Dense(LN(x)) (attention and MLP zeroed)
    for w in (block.attn.proj.kernel, block.attn.proj.bias, block.mlp.fc2.kernel, block.mlp.fc2.bias):
        w.assign(np.zeros(w.shape, "float32"))
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    residual = ((x - mean) / np.sqrt(var + 1e-6)) @ to_numpy(block.proj.kernel) + to_numpy(block.proj.bias)
    np.testing.assert_allclose(to_numpy(block(x)), residual.reshape(2, 4, 16, 16).max(axis=1), rtol=1e-4, atol=1e-5)
    assert out.shape == (2, 16, 16)
