import math

import keras
import numpy as np
import pytest
from scipy.special import erf

from keras_mim.layers.cross_attention import MultiHeadCrossAttention
from keras_mim.layers.cross_attention_block import CrossAttentionBlock
from tests.conftest import to_numpy


# ---------------------------------------------------------------- numpy references
def np_layer_norm(x, gamma, beta, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def np_attention(x, context, wq, bq, wk, bk, wv, bv, wo, bo, heads, values=None):
    """Scaled dot-product attention of `x` (B, N, D) to `context` (B, M, Dc), heads split;
    values from `values` (B, M, Dc) when given."""
    b, n, d = x.shape
    m, hd = context.shape[1], d // heads
    q = (x @ wq + bq).reshape(b, n, heads, hd).transpose(0, 2, 1, 3)  # B, H, N, hd
    k = (context @ wk + bk).reshape(b, m, heads, hd).transpose(0, 2, 1, 3)
    v = ((context if values is None else values) @ wv + bv).reshape(b, m, heads, hd).transpose(0, 2, 1, 3)
    logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    att = np.exp(logits - logits.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    return (att @ v).transpose(0, 2, 1, 3).reshape(b, n, d) @ wo + bo


def np_gelu(x):
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def randomize(layer, rng, scale=0.3):
    """Random values for every trained weight (biases and LayerNorm scales included)."""
    for w in layer.trainable_weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * scale + (1.0 if "gamma" in w.path else 0.0))


def kb(dense):
    return to_numpy(dense.kernel).astype(np.float64), to_numpy(dense.bias).astype(np.float64)


def np_cross(layer, x, context, values=None):
    """`MultiHeadCrossAttention` in numpy from its weights: kv columns are [k | v]."""
    d = x.shape[-1]
    (wq, bq), (wkv, bkv), (wo, bo) = kb(layer.q), kb(layer.kv), kb(layer.proj)
    return np_attention(x, context, wq, bq, wkv[:, :d], bkv[:d], wkv[:, d:], bkv[d:], wo, bo, layer.num_heads,
                        values)


def np_self(layer, x):
    """`MultiHeadSelfAttention` in numpy: fused qkv columns are [q | k | v]."""
    d = x.shape[-1]
    (w, b), (wo, bo) = kb(layer.qkv), kb(layer.proj)
    return np_attention(x, x, w[:, :d], b[:d], w[:, d:2 * d], b[d:2 * d], w[:, 2 * d:], b[2 * d:], wo, bo,
                        layer.num_heads)


def np_block(block, x, context):
    """The official DecoderBlock order: cross-attention, feed-forward, self-attention."""
    def ln(layer, h):
        return np_layer_norm(h, to_numpy(layer.gamma), to_numpy(layer.beta), block.norm_epsilon)

    (w1, b1), (w2, b2) = kb(block.mlp.fc1), kb(block.mlp.fc2)
    branches = [
        (block.cross_norm, lambda h: np_cross(block.cross_attn, h, context)),
        (block.mlp_norm, lambda h: np_gelu(h @ w1 + b1) @ w2 + b2),
        (block.self_norm, lambda h: np_self(block.self_attn, h)),
    ]
    for norm, f in branches:
        x = x + f(ln(norm, x)) if block.norm_first else ln(norm, x + f(x))
    return x


# ---------------------------------------------------------------- MultiHeadCrossAttention
def test_cross_attention_matches_numpy(rng):
    x = rng.normal(size=(2, 5, 16)).astype("float32")
    context = rng.normal(size=(2, 7, 12)).astype("float32")  # other length and width
    layer = MultiHeadCrossAttention(4)
    layer(x, context)
    randomize(layer, rng)
    np.testing.assert_allclose(to_numpy(layer(x, context)), np_cross(layer, x.astype(np.float64), context),
                               rtol=1e-4, atol=1e-5)
    assert tuple(layer.q.kernel.shape) == (16, 16) and tuple(layer.kv.kernel.shape) == (12, 32)


def test_cross_attention_without_output_projection_returns_the_merged_heads(rng):
    # V-JEPA's attentive pooler: the output projection is declared but not applied
    x = rng.normal(size=(2, 3, 16)).astype("float32")
    context = rng.normal(size=(2, 7, 16)).astype("float32")
    layer = MultiHeadCrossAttention(4, output_projection=False)
    layer(x, context)
    randomize(layer, rng)
    assert not hasattr(layer, "proj") and len(layer.trainable_weights) == 4
    d = x.shape[-1]
    (wq, bq), (wkv, bkv) = kb(layer.q), kb(layer.kv)
    expected = np_attention(x.astype(np.float64), context, wq, bq, wkv[:, :d], bkv[:d], wkv[:, d:], bkv[d:],
                            np.eye(d), np.zeros(d), heads=4)
    np.testing.assert_allclose(to_numpy(layer(x, context)), expected, rtol=1e-4, atol=1e-5)


def test_cross_attention_takes_values_from_another_sequence(rng):
    # CAE's regressor: keys from the context (with positions), values from `values`
    x = rng.normal(size=(2, 5, 16)).astype("float32")
    context, values = rng.normal(size=(2, 2, 7, 12)).astype("float32")
    layer = MultiHeadCrossAttention(4)
    layer(x, context)
    randomize(layer, rng)
    np.testing.assert_allclose(to_numpy(layer(x, context, values=values)),
                               np_cross(layer, x.astype(np.float64), context, values), rtol=1e-4, atol=1e-5)
    assert np.abs(to_numpy(layer(x, context, values=values)) - to_numpy(layer(x, context))).max() > 1e-2


def test_cross_attention_matches_torch_multihead_attention(rng):
    torch = pytest.importorskip("torch")
    d, heads = 16, 4
    x = rng.normal(size=(3, 6, d)).astype("float32")
    context = rng.normal(size=(3, 9, d)).astype("float32")
    ref = torch.nn.MultiheadAttention(d, heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_bias.normal_()
        ref.out_proj.bias.normal_()
        expected = ref(torch.from_numpy(x), torch.from_numpy(context), torch.from_numpy(context),
                       need_weights=False)[0].numpy()
    w, b = ref.in_proj_weight.detach().numpy(), ref.in_proj_bias.detach().numpy()
    layer = MultiHeadCrossAttention(heads)
    layer(x, context)
    layer.q.set_weights([w[:d].T, b[:d]])
    layer.kv.set_weights([w[d:].T, b[d:]])  # torch stacks q, k, v: [k | v] is the rest
    layer.proj.set_weights([ref.out_proj.weight.detach().numpy().T, ref.out_proj.bias.detach().numpy()])
    np.testing.assert_allclose(to_numpy(layer(x, context)), expected, rtol=1e-4, atol=1e-5)


def test_cross_attention_init_matches_torch_in_proj():
    layer = MultiHeadCrossAttention(8)
    layer(np.zeros((1, 2, 256), "float32"), np.zeros((1, 3, 256), "float32"))
    limit = math.sqrt(6 / (256 + 3 * 256))  # xavier-uniform over torch's (3D, D) in_proj_weight
    for kernel in (to_numpy(layer.q.kernel), to_numpy(layer.kv.kernel)):
        assert np.abs(kernel).max() <= limit and kernel.std() == pytest.approx(limit / math.sqrt(3), rel=0.02)


def test_cross_attention_dropout_is_seeded_and_off_at_inference(rng):
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    context = rng.normal(size=(2, 3, 8)).astype("float32")
    a, b = MultiHeadCrossAttention(2, dropout=0.5, seed=3), MultiHeadCrossAttention(2, dropout=0.5, seed=3)
    a(x, context)
    b(x, context)
    b.set_weights(a.get_weights())
    eval_out = to_numpy(a(x, context))
    train_a, train_b = to_numpy(a(x, context, training=True)), to_numpy(b(x, context, training=True))
    np.testing.assert_allclose(train_a, train_b)  # same seed, same dropout mask
    assert np.mean(train_a == 0) > 0.2
    np.testing.assert_allclose(to_numpy(a(x, context, training=False)), eval_out)


def test_cross_attention_bad_arguments():
    with pytest.raises(ValueError, match="must divide the query width 10"):
        MultiHeadCrossAttention(4)(np.zeros((1, 2, 10), "float32"), np.zeros((1, 3, 8), "float32"))
    with pytest.raises(ValueError, match="`num_heads` must be a positive int, got 0"):
        MultiHeadCrossAttention(0)
    with pytest.raises(ValueError, match=r"`dropout` must be in \[0, 1\), got 1.5"):
        MultiHeadCrossAttention(2, dropout=1.5)


# ---------------------------------------------------------------- CrossAttentionBlock
@pytest.mark.parametrize("norm_first", [False, True])
def test_block_matches_numpy(rng, norm_first):
    x = rng.normal(size=(2, 5, 16)).astype("float32")
    context = rng.normal(size=(2, 9, 16)).astype("float32")
    block = CrossAttentionBlock(num_heads=2, mlp_ratio=2.0, norm_first=norm_first)
    block(x, context)
    randomize(block, rng)
    out = to_numpy(block(x, context, training=False))
    np.testing.assert_allclose(out, np_block(block, x.astype(np.float64), context), rtol=1e-4, atol=1e-4)


def test_block_defaults_are_the_official_ones():
    block = CrossAttentionBlock(num_heads=8)
    block(np.zeros((1, 3, 256), "float32"), np.zeros((1, 4, 256), "float32"))
    assert tuple(block.mlp.fc1.kernel.shape) == (256, 2048)  # dim_feedforward 2048
    assert (block.dropout, block.norm_first, block.norm_epsilon) == (0.1, False, 1e-6)


def test_block_matches_torch_post_norm_decoder_block(rng):
    """Against the official block written with torch modules (eval mode: no dropout)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    d, heads, ff = 16, 4, 32
    cross, selfa = nn.MultiheadAttention(d, heads, batch_first=True), nn.MultiheadAttention(d, heads, batch_first=True)
    lin1, lin2 = nn.Linear(d, ff), nn.Linear(ff, d)
    norm1, norm2, norm3 = (nn.LayerNorm(d, eps=1e-6) for _ in range(3))
    for module in (cross, selfa, lin1, lin2, norm1, norm2, norm3):
        for p in module.parameters():
            with torch.no_grad():
                p.add_(0.2 * torch.randn_like(p))
    x = rng.normal(size=(2, 5, d)).astype("float32")
    context = rng.normal(size=(2, 7, d)).astype("float32")
    with torch.no_grad():
        h, mem = torch.from_numpy(x), torch.from_numpy(context)
        h = norm2(h + cross(h, mem, mem, need_weights=False)[0])
        h = norm3(h + lin2(nn.functional.gelu(lin1(h))))
        expected = norm1(h + selfa(h, h, h, need_weights=False)[0]).numpy()

    def np_(t):
        return t.detach().numpy()

    block = CrossAttentionBlock(heads, mlp_ratio=ff / d)
    block(x, context)
    w = np_(cross.in_proj_weight)
    block.cross_attn.q.set_weights([w[:d].T, np_(cross.in_proj_bias)[:d]])
    block.cross_attn.kv.set_weights([w[d:].T, np_(cross.in_proj_bias)[d:]])
    block.cross_attn.proj.set_weights([np_(cross.out_proj.weight).T, np_(cross.out_proj.bias)])
    block.self_attn.qkv.set_weights([np_(selfa.in_proj_weight).T, np_(selfa.in_proj_bias)])
    block.self_attn.proj.set_weights([np_(selfa.out_proj.weight).T, np_(selfa.out_proj.bias)])
    block.mlp.fc1.set_weights([np_(lin1.weight).T, np_(lin1.bias)])
    block.mlp.fc2.set_weights([np_(lin2.weight).T, np_(lin2.bias)])
    for ours, theirs in ((block.cross_norm, norm2), (block.mlp_norm, norm3), (block.self_norm, norm1)):
        ours.set_weights([np_(theirs.weight), np_(theirs.bias)])
    np.testing.assert_allclose(to_numpy(block(x, context)), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make", [
    lambda: MultiHeadCrossAttention(2, qkv_bias=False, dropout=0.1, seed=4),
    lambda: MultiHeadCrossAttention(2, output_projection=False),
    lambda: CrossAttentionBlock(2, mlp_ratio=2.0, norm_first=True, seed=1),
])
def test_two_input_layers_roundtrip(make, tmp_path, rng):
    x_in, c_in = keras.Input((5, 8)), keras.Input((3, 8))
    layer = make()
    model = keras.Model([x_in, c_in], layer(x_in, c_in))
    x = [rng.random((2, 5, 8)).astype("float32"), rng.random((2, 3, 8)).astype("float32")]
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.layers[-1].get_config() == layer.get_config()
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-6)
