"""Sparse convolution by masking: GRN, sparse batch norm, the ConvNeXt V2 block, the
visible-map resampling, each against numpy."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_mim.layers import ConvNeXtBlock, GlobalResponseNorm, SparseBatchNormalization
from keras_mim.layers.sparse_ops import masked_moments, resize_active
from tests.conftest import backend_grads, to_numpy


def visible_map(rng, b, h, w, cell):
    """A random visible map `(b, h, w, 1)` made of `cell` x `cell` blocks, each sample with
    at least one visible and one hidden block."""
    cells = (rng.random((b, h // cell, w // cell)) < 0.5).astype("float32")
    cells[:, 0, 0], cells[:, -1, -1] = 1.0, 0.0
    return np.kron(cells, np.ones((cell, cell), "float32"))[..., None]


def test_grn_matches_its_formula(rng):
    x = rng.normal(size=(2, 4, 5, 6)).astype("float32")
    grn = GlobalResponseNorm()
    grn.build(x.shape)
    gamma, beta = rng.normal(size=6).astype("float32"), rng.normal(size=6).astype("float32")
    grn.set_weights([gamma, beta])
    g = np.sqrt((x.astype("float64") ** 2).sum(axis=(1, 2), keepdims=True))
    n = g / (g.mean(axis=-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(to_numpy(grn(x)), gamma * (x * n) + beta + x, rtol=1e-5, atol=1e-5)


def test_grn_gradient_is_finite_on_an_all_zero_channel():
    # a blank visible region of a sparse map (black digit background, zero biases): the
    # plain sqrt of a zero sum has an infinite gradient and made FCMAE's loss NaN
    grn = GlobalResponseNorm()
    grn.build((1, 2, 2, 3))
    grn.set_weights([np.ones(3, "float32"), np.zeros(3, "float32")])
    x = np.zeros((1, 2, 2, 3), "float32")
    x[..., 0] = 1.0
    [grad] = backend_grads(lambda t: keras.ops.sum(grn(t) ** 2), x)
    assert np.all(np.isfinite(grad))


def test_sparse_batch_norm_uses_visible_statistics_only(rng):
    x = rng.normal(2.0, 3.0, size=(3, 8, 8, 4)).astype("float32")
    active = visible_map(rng, 3, 8, 8, 4)
    bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    sparse = SparseBatchNormalization(bn)
    out = to_numpy(sparse(x, active, training=True))
    visible = x[active[..., 0] == 1]  # (n_visible, C)
    mean, var = visible.mean(axis=0), visible.var(axis=0)
    expected = (x - mean) / np.sqrt(var + 1e-3) * active
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(to_numpy(bn.moving_mean), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(bn.moving_variance), 0.9 + 0.1 * var, rtol=1e-5)
    # a coarser visible map (the mask cells) gives the same result
    coarse = active[:, ::4, ::4]
    np.testing.assert_allclose(to_numpy(sparse(x, coarse, training=False)),
                               to_numpy(bn(x, training=False)) * active, rtol=1e-5, atol=1e-5)


def test_masked_moments_against_numpy(rng):
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    active = visible_map(rng, 2, 4, 4, 2)
    mean, var = (to_numpy(t) for t in masked_moments(x, active, axes=(1, 2)))
    for b in range(2):
        v = x[b][active[b, ..., 0] == 1]
        np.testing.assert_allclose(mean[b, 0, 0], v.mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(var[b, 0, 0], v.var(axis=0), rtol=1e-5, atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(gh=st.integers(1, 4), gw=st.integers(1, 4), stride=st.sampled_from([1, 2, 4, 8]))
def test_visible_map_reaches_the_right_pixels(gh, gw, stride):
    cells = np.random.default_rng(gh * 10 + gw).integers(0, 2, (2, gh, gw, 1)).astype("float32")
    size = (gh * 32 // stride, gw * 32 // stride)  # a stage of stride `stride` px
    up = to_numpy(resize_active(cells, size))
    np.testing.assert_array_equal(up, np.kron(cells[..., 0], np.ones((32 // stride,) * 2))[..., None])
    full = np.kron(cells[..., 0], np.ones((32, 32)))[..., None].astype("float32")
    np.testing.assert_array_equal(to_numpy(resize_active(full, size)), up)  # down from full resolution


def test_sparse_convnext_block_does_not_leak(rng):
    block = ConvNeXtBlock(8)
    block.build((2, 8, 8, 8))
    block.grn.set_weights([np.full(32, 0.5, "float32"), np.full(32, 0.1, "float32")])  # a non-identity GRN
    active = visible_map(rng, 2, 8, 8, 4)
    x = rng.normal(size=(2, 8, 8, 8)).astype("float32") * active
    changed = x + 5.0 * rng.normal(size=x.shape).astype("float32") * (1 - active)
    a, b = to_numpy(block(x, active)), to_numpy(block(changed * active, active))
    np.testing.assert_array_equal(a, b)
    assert np.all(a[active[..., 0] == 0] == 0)
    dense = to_numpy(block(x))
    assert not np.allclose(dense * active, a, atol=1e-4)  # the dense block mixes hidden zeros' statistics


def test_sparse_batch_norm_refuses_channels_first():
    with pytest.raises(ValueError, match="axis"):
        SparseBatchNormalization(keras.layers.BatchNormalization(axis=1))
    with pytest.raises(TypeError, match="BatchNormalization"):
        SparseBatchNormalization(keras.layers.LayerNormalization())
