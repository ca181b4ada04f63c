"""WindowAttention / WindowTransformerBlock: attention stays inside (shifted) windows, and the
scaled cosine attention with its position bias matches a numpy formula."""

import math

import keras
import numpy as np
import pytest

from keras_mim.layers import WindowAttention, WindowTransformerBlock
from keras_mim.layers.window_attention import window_token_ids
from tests.conftest import to_numpy

GRID, WINDOW = (8, 4), (4, 2)


def allowed_pairs(grid, window, shift):
    """Independent reference: token i may attend to j iff, after rolling the grid by -shift,
    both sit in the same window and neither or both wrapped around an edge."""
    t, f = grid
    rows, cols = np.divmod(np.arange(t * f), f)
    key = []
    for axis, (pos, size, w, s) in enumerate(((rows, t, window[0], shift[0]), (cols, f, window[1], shift[1]))):
        rolled = (pos - s) % size
        key += [rolled // w, pos < s]  # window index along the axis, wrapped around it or not
    key = np.stack(key, 1)
    return (key[:, None, :] == key[None, :, :]).all(-1)


def full_probs(layer, x):
    """`(B, H, N, N)` attention matrix assembled from the per-window probabilities."""
    probs = to_numpy(layer.attention_probs(x))  # (B, W, H, A, A)
    ids = window_token_ids(layer.grid_shape, layer.window_size, layer.shift_size)  # (W, A)
    n = math.prod(layer.grid_shape)
    full = np.zeros((x.shape[0], layer.num_heads, n, n), "float32")
    for w, slots in enumerate(ids):
        full[:, :, slots[:, None], slots[None, :]] = probs[:, w]
    return full


@pytest.mark.parametrize("shift", [(0, 0), (2, 0), (2, 1)])
def test_attention_weights_outside_the_window_are_zero(shift, rng):
    layer = WindowAttention(2, GRID, WINDOW, shift, meta_dropout=0.0)
    x = rng.normal(size=(2, 32, 16)).astype("float32")
    probs = full_probs(layer, x)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)  # every row a distribution
    allowed = allowed_pairs(GRID, WINDOW, shift)
    assert np.abs(probs[..., ~allowed]).max() < 1e-20  # the -100 shift mask leaves ~e-44
    assert (probs[..., allowed] > 0).all()
    if any(shift):  # the shift joins tokens from different unshifted windows
        assert not (allowed == allowed_pairs(GRID, WINDOW, (0, 0))).all()


def test_a_token_changes_only_its_own_windows_outputs(rng):
    block = WindowTransformerBlock(2, GRID, WINDOW, (2, 0), meta_dropout=0.0)
    x = rng.normal(size=(1, 32, 16)).astype("float32")
    y = x.copy()
    y[0, 5] += 3.0  # token (1, 1)
    changed = np.abs(to_numpy(block(y)) - to_numpy(block(x)))[0].max(-1) > 1e-6
    np.testing.assert_array_equal(changed, allowed_pairs(GRID, WINDOW, (2, 0))[5])


def np_window_attention(layer, x):
    """Scaled cosine attention per unshifted window with the meta-MLP position bias, in numpy."""
    w = {v.path.split("/")[-2] + "/" + v.name: to_numpy(v) for v in layer.weights}
    qkv = x @ w["qkv/kernel"] + w["qkv/bias"]
    heads, d = layer.num_heads, x.shape[-1]
    hd = d // heads
    wt, wf = layer.window_size
    coords = np.array([(i, j) for i in range(wt) for j in range(wf)], "float32")
    rel = (coords[:, None] - coords[None, :]).reshape(-1, 2)
    rel = np.sign(rel) * np.log1p(np.abs(rel))
    bias = np.maximum(rel @ w["meta_fc1/kernel"] + w["meta_fc1/bias"], 0) @ w["meta_fc2/kernel"] + w["meta_fc2/bias"]
    bias = bias.T.reshape(heads, wt * wf, wt * wf)
    tau = np.maximum(to_numpy(layer.tau), 0.01)
    out = np.zeros_like(x)
    for slots in window_token_ids(layer.grid_shape, layer.window_size):
        q, k, v = (qkv[:, slots, i * d : (i + 1) * d].reshape(len(x), -1, heads, hd).transpose(0, 2, 1, 3)
                   for i in range(3))
        cos = (q @ k.transpose(0, 1, 3, 2)) / np.maximum(
            np.linalg.norm(q, axis=-1)[..., None] * np.linalg.norm(k, axis=-1)[..., None, :], 1e-6)
        logits = cos / tau[None, :, None, None] + bias[None]
        att = np.exp(logits - logits.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        out[:, slots] = (att @ v).transpose(0, 2, 1, 3).reshape(len(x), -1, d)
    return out @ w["proj/kernel"] + w["proj/bias"]


def test_matches_numpy_scaled_cosine_attention_with_position_bias(rng):
    layer = WindowAttention(2, GRID, WINDOW, meta_dropout=0.0, meta_hidden_dim=8)
    x = rng.normal(size=(2, 32, 16)).astype("float32")
    layer.build(x.shape)
    layer.tau.assign(np.array([0.5, 2.0], "float32"))
    np.testing.assert_allclose(to_numpy(layer(x)), np_window_attention(layer, x), rtol=1e-4, atol=1e-5)


def test_config_round_trip_and_bad_input(tmp_path):
    block = WindowTransformerBlock(2, (8, 2), window_size=(4, 4), shift_size=(2, 2))
    assert block.attn.window_size == (4, 2) and block.attn.shift_size == (2, 0)  # clipped to the grid, as timm
    again = WindowTransformerBlock.from_config(block.get_config())
    assert again.get_config() == block.get_config()
    model = keras.Sequential([keras.Input((16, 8)), block])
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(0).normal(size=(1, 16, 8)).astype("float32")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-6)
    with pytest.raises(ValueError, match="must tile the token grid"):
        WindowAttention(2, (6, 4), (4, 4))
    with pytest.raises(ValueError, match="takes 32 tokens"):
        WindowAttention(2, (8, 4), (4, 4)).build((None, 30, 16))
