import math

import numpy as np
import pytest

from keras_mim.layers import MLP, DropPath, LayerScale, MultiHeadSelfAttention, TransformerBlock
from tests.conftest import to_numpy


def np_layer_norm(x, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps)


def np_attention(x, wqkv, bqkv, wproj, bproj, heads):
    b, n, d = x.shape
    hd = d // heads
    qkv = (x @ wqkv + bqkv).reshape(b, n, 3, heads, hd).transpose(2, 0, 3, 1, 4)  # 3, B, H, N, hd
    q, k, v = qkv
    logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    att = np.exp(logits - logits.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    out = (att @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
    return out @ wproj + bproj


def np_gelu(x):
    from math import erf

    return 0.5 * x * (1 + np.vectorize(erf)(x / math.sqrt(2)))


def weights(layer):
    return [to_numpy(w) for w in (layer.kernel, layer.bias)]


def test_attention_matches_numpy(rng):
    x = rng.normal(size=(2, 5, 16)).astype("float32")
    layer = MultiHeadSelfAttention(4)
    out = to_numpy(layer(x))
    ref = np_attention(x, *weights(layer.qkv), *weights(layer.proj), heads=4)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_mlp_uses_exact_gelu(rng):
    x = rng.normal(size=(2, 3, 8)).astype("float32")
    layer = MLP(mlp_ratio=4)
    out = to_numpy(layer(x))
    w1, b1 = weights(layer.fc1)
    w2, b2 = weights(layer.fc2)
    np.testing.assert_allclose(out, np_gelu(x @ w1 + b1) @ w2 + b2, rtol=1e-4, atol=1e-5)
    assert w1.shape == (8, 32)


def test_block_matches_pre_norm_reference(rng):
    x = rng.normal(size=(2, 4, 16)).astype("float32")
    block = TransformerBlock(num_heads=2, layer_scale=0.5)
    out = to_numpy(block(x))
    y = x + 0.5 * np_attention(np_layer_norm(x), *weights(block.attn.qkv), *weights(block.attn.proj), 2)
    h = np_layer_norm(y)
    w1, b1 = weights(block.mlp.fc1)
    w2, b2 = weights(block.mlp.fc2)
    ref = y + 0.5 * (np_gelu(h @ w1 + b1) @ w2 + b2)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_drop_path_per_sample():
    x = np.ones((2000, 3, 4), "float32")
    out = to_numpy(DropPath(0.25, seed=1)(x, training=True))
    per_sample = out.reshape(2000, -1)
    # every sample is either all zero or all 1 / 0.75
    assert np.all(np.isclose(per_sample, 0.0) | np.isclose(per_sample, 1 / 0.75))
    assert np.all(per_sample.min(1) == per_sample.max(1))
    assert abs((per_sample[:, 0] == 0).mean() - 0.25) < 0.04
    np.testing.assert_array_equal(to_numpy(DropPath(0.25)(x, training=False)), x)
    with pytest.raises(ValueError, match="`rate`"):
        DropPath(1.0)


def test_layer_scale_init():
    layer = LayerScale(0.1)
    out = to_numpy(layer(np.ones((1, 2, 4), "float32")))
    np.testing.assert_allclose(out, 0.1)


def test_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="`num_heads`=3"):
        MultiHeadSelfAttention(3)(np.zeros((1, 2, 8), "float32"))
