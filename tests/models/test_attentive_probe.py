import math

import keras
import numpy as np
import pytest
from scipy.special import erf

from keras_mim import AttentiveProbe, LinearProbe
from keras_mim.evaluation import fit_attentive_probe
from tests.conftest import to_numpy
from tests.models.test_image_classifier import load_labels, tiny_encoder
from tests.training import digits, jit_for_backend, same_config


def randomize(layer, rng, scale=0.3):
    """Random values for every trained weight (LayerNorm scales around 1)."""
    for w in layer.trainable_weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * scale + (1.0 if "gamma" in w.path else 0.0))


def np_layer_norm(x, gamma, beta, eps):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def np_probe(probe, tokens):
    """V-JEPA's AttentiveClassifier in numpy, from the probe's weights: the learned queries
    attend (per head, softmax(q k^T / sqrt(d)) v, no output projection) to the normalised
    tokens, residual; LN + MLP (exact GELU), residual; Linear on the concatenated queries."""
    w = lambda v: to_numpy(v).astype(np.float64)  # noqa: E731
    tokens = tokens.astype(np.float64)
    if probe.standardize_tokens:  # per-channel BatchNorm (no affine) with the set statistics
        norm = probe.token_norm
        tokens = (tokens - w(norm.moving_mean)) / np.sqrt(w(norm.moving_variance) + 1e-6)
    b, t, d = tokens.shape
    heads, hd, nq = probe.num_heads, d // probe.num_heads, probe.num_queries
    ctx = np_layer_norm(tokens, w(probe.context_norm.gamma), w(probe.context_norm.beta), probe.norm_epsilon)
    q0 = np.broadcast_to(w(probe.query), (b, nq, d))
    attn = probe.cross_attn
    q = (q0 @ w(attn.q.kernel) + w(attn.q.bias)).reshape(b, nq, heads, hd).transpose(0, 2, 1, 3)
    kv = ctx @ w(attn.kv.kernel) + w(attn.kv.bias)  # [k | v]
    k = kv[..., :d].reshape(b, t, heads, hd).transpose(0, 2, 1, 3)
    v = kv[..., d:].reshape(b, t, heads, hd).transpose(0, 2, 1, 3)
    logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    x = q0 + (weights @ v).transpose(0, 2, 1, 3).reshape(b, nq, d)
    h = np_layer_norm(x, w(probe.mlp_norm.gamma), w(probe.mlp_norm.beta), probe.norm_epsilon)
    h = h @ w(probe.mlp.fc1.kernel) + w(probe.mlp.fc1.bias)
    h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
    x = x + h @ w(probe.mlp.fc2.kernel) + w(probe.mlp.fc2.bias)
    return x.reshape(b, nq * d) @ w(probe.head.kernel) + w(probe.head.bias)


@pytest.mark.parametrize("kwargs", [{}, {"num_queries": 2, "num_heads": 4}, {"block": 0}, {"standardize_tokens": True}],
                         ids=["official", "two_queries", "block0", "standardized"])
def test_logits_match_numpy_cross_attention(rng, kwargs):
    probe = AttentiveProbe(tiny_encoder(), num_classes=5, **kwargs)
    for layer in (probe.context_norm, probe.cross_attn, probe.mlp_norm, probe.mlp, probe.head):
        randomize(layer, rng)
    probe.query.assign(rng.normal(size=probe.query.shape).astype("float32"))
    x = rng.random((3, 16, 16, 3)).astype("float32")
    enc = probe.encoder
    if "block" in kwargs:  # the first block's output, cls token included, before the final norm
        tokens = to_numpy(enc.blocks[0](enc.prepend_cls(enc.embed_patches(x))))
    else:  # all the tokens the encoder outputs: cls and 16 patches, after the final norm
        tokens = to_numpy(enc(x))
    assert tokens.shape == (3, 17, 32) == (3, probe.num_tokens, 32)
    if probe.standardize_tokens:
        probe.adapt(x)
        flat = tokens.reshape(-1, 32).astype(np.float64)
        np.testing.assert_allclose(to_numpy(probe.token_norm.moving_mean), flat.mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(to_numpy(probe.token_norm.moving_variance), flat.var(0), rtol=1e-3, atol=1e-9)
    expected = np_probe(probe, tokens)
    np.testing.assert_allclose(to_numpy(probe(x)), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(to_numpy(probe(x, training=True)), expected, rtol=1e-4, atol=1e-4)


def test_initialisation_follows_the_official_pooler():
    probe = AttentiveProbe(tiny_encoder(embed_dim=64), num_classes=7, seed=0)
    std = lambda v: float(to_numpy(v).std())  # noqa: E731
    for kernel in (probe.cross_attn.q.kernel, probe.cross_attn.kv.kernel, probe.mlp.fc1.kernel):
        assert std(kernel) == pytest.approx(0.02, rel=0.1)
    assert std(probe.query) == pytest.approx(0.02, rel=0.35)  # 64 values
    assert std(probe.mlp.fc2.kernel) == pytest.approx(0.02 / math.sqrt(2), rel=0.1)  # official _rescale_blocks
    for bias in (probe.cross_attn.q.bias, probe.cross_attn.kv.bias, probe.mlp.fc1.bias, probe.mlp.fc2.bias):
        assert not to_numpy(bias).any()
    assert not hasattr(probe.cross_attn, "proj")  # declared but unused in the official forward
    bound = 1 / math.sqrt(64)  # torch nn.Linear's default init of the head
    kernel, bias = (np.abs(to_numpy(v)) for v in probe.head.weights)
    assert kernel.max() <= bound and kernel.max() > 0.9 * bound and bias.max() <= bound and bias.min() > 0
    assert probe.num_heads == 2 and probe.norm_epsilon == 1e-5  # the encoder's heads, torch's LayerNorm


def test_fit_moves_only_the_pooler_and_head():
    x, y = digits(128), load_labels(128)
    probe = AttentiveProbe(tiny_encoder(num_channels=1, drop_path_rate=0.3), num_classes=10, standardize_tokens=True,
                           seed=0)
    probe.adapt(x)
    assert not probe.encoder.trainable_weights
    names = {v.path.split("/", 1)[1] for v in probe.trainable_weights}
    assert names == {"query", "context_norm/gamma", "context_norm/beta", "cross_attn/q/kernel", "cross_attn/q/bias",
                     "cross_attn/kv/kernel", "cross_attn/kv/bias", "mlp_norm/gamma", "mlp_norm/beta",
                     "mlp/fc1/kernel", "mlp/fc1/bias", "mlp/fc2/kernel", "mlp/fc2/bias", "head/kernel", "head/bias"}
    encoder_before = [w.copy() for w in probe.encoder.get_weights()]
    statistics = [to_numpy(v).copy() for v in probe.token_norm.weights]
    head_before = [to_numpy(v).copy() for v in probe.trainable_weights]
    # drop path is off even in training: the frozen encoder runs in inference mode
    np.testing.assert_array_equal(to_numpy(probe(x[:4], training=True)), to_numpy(probe(x[:4], training=True)))
    probe.compile(optimizer=keras.optimizers.AdamW(1e-2), jit_compile=jit_for_backend(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = probe.fit(x, y, epochs=5, batch_size=32, verbose=0).history
    for a, b in zip(probe.encoder.get_weights(), encoder_before):
        np.testing.assert_array_equal(a, b)
    assert all(np.abs(to_numpy(v) - b).max() > 0 for v, b in zip(probe.trainable_weights, head_before))
    for v, b in zip(probe.token_norm.weights, statistics):  # frozen: inference mode, the statistics set
        np.testing.assert_array_equal(to_numpy(v), b)
    assert history["loss"][-1] < 0.8 * history["loss"][0], history["loss"]
    assert probe.evaluate(x, y, verbose=0, return_dict=True).keys() == {"loss", "accuracy"}


@pytest.mark.one_backend  # the recipe, not a backend: the per-backend fit is the test above
def test_the_recipe_learns_real_digits():
    """V-JEPA's recipe on once-computed tokens (AdamW, cosine, weight decay): held-out digits
    through a random tiny encoder, far above chance (0.1)."""
    x, y = digits(600), load_labels(600)
    keras.utils.set_random_seed(0)
    probe = AttentiveProbe(tiny_encoder(num_channels=1, seed=0), num_classes=10, standardize_tokens=True, seed=0)
    history = fit_attentive_probe(probe, x[:400], y[:400], epochs=15, batch_size=32, learning_rate=1e-2,
                                  jit_compile=jit_for_backend(), verbose=0)
    assert history["loss"][-1] < 0.3 * history["loss"][0], history["loss"]
    tokens = probe.predict_tokens(x[:400], batch_size=150)
    flat = tokens.reshape(-1, 32).astype(np.float64)  # the statistics: the training tokens'
    np.testing.assert_allclose(to_numpy(probe.token_norm.moving_variance), flat.var(0), rtol=1e-3)
    accuracy = float(np.mean(np.asarray(probe.predict(x[400:], verbose=0)).argmax(-1) == y[400:]))
    assert accuracy > 0.4, accuracy  # measured 0.595 (JAX)
    # fitting the head model on cached tokens trained the probe itself
    head = probe.head_model()
    np.testing.assert_allclose(to_numpy(head(tokens[:8])), to_numpy(probe(x[:8])), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("standardize", [False, True])
def test_roundtrip_keeps_it_frozen(tmp_path, rng, standardize):
    probe = AttentiveProbe(tiny_encoder(), num_classes=3, num_queries=2, block=0, standardize_tokens=standardize)
    randomize(probe.mlp, rng)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    if standardize:
        probe.set_token_statistics(rng.normal(size=(4, 17, 32)) * 3 + 1)
    probe.save(tmp_path / "probe.keras")
    loaded = keras.saving.load_model(tmp_path / "probe.keras")
    assert type(loaded) is AttentiveProbe and same_config(loaded.get_config(), probe.get_config())
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(probe(x)), atol=1e-6)
    assert len(loaded.trainable_weights) == 15 and not loaded.encoder.trainable_weights
    if standardize:
        np.testing.assert_array_equal(to_numpy(loaded.token_norm.moving_variance),
                                      to_numpy(probe.token_norm.moving_variance))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_classes": 0}, ValueError, "`num_classes` must be a positive int, got 0"),
    ({"num_heads": 3}, ValueError, "`num_heads`=3 must divide the encoder's width 32"),
    ({"num_queries": 0}, ValueError, "`num_queries` must be a positive int, got 0"),
    ({"mlp_ratio": -1.0}, ValueError, "`mlp_ratio` must be a positive number, got -1.0"),
    ({"init_std": float("nan")}, ValueError, "`init_std` must be a positive number, got nan"),
    ({"block": 2}, ValueError, r"`block` must be None or a block index in \[-2, 1\]"),
    ({"encoder": "vit"}, TypeError, "Expected an encoder"),
])
def test_bad_arguments(kwargs, error, match):
    kwargs = {"encoder": tiny_encoder(), "num_classes": 3, **kwargs}
    with pytest.raises(error, match=match):
        AttentiveProbe(**kwargs)


def test_bad_data():
    probe = AttentiveProbe(tiny_encoder(), num_classes=3)
    x, y = np.zeros((4, 16, 16, 3), "float32"), np.arange(4) % 3
    with pytest.raises(ValueError, match="`x` has 1 channels but the encoder expects `num_channels`=3"):
        probe.predict(np.zeros((4, 16, 16, 1), "float32"))
    with pytest.raises(ValueError, match="needs a probe built with `standardize_tokens=True`"):
        probe.set_token_statistics(np.zeros((4, 17, 32)))
    with pytest.raises(ValueError, match=r"`tokens` must be \(N, 17, 32\) encoder tokens with N >= 1, got shape"):
        AttentiveProbe(tiny_encoder(), 3, standardize_tokens=True).set_token_statistics(np.zeros((4, 16, 32)))
    with pytest.raises(TypeError, match="`probe` must be a keras_mim AttentiveProbe, got LinearProbe"):
        fit_attentive_probe(LinearProbe(tiny_encoder(), 3), x, y)
    with pytest.raises(ValueError, match="`labels` hold class 3 but the probe has `num_classes`=3"):
        fit_attentive_probe(probe, x, np.arange(4))
    with pytest.raises(ValueError, match="`learning_rate` must be positive, got 0"):
        fit_attentive_probe(probe, x, y, learning_rate=0)
