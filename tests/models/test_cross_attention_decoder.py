import keras
import numpy as np
import pytest

from keras_mim.models.cross_attention_decoder import CrossAttentionDecoder
from tests.conftest import to_numpy
from tests.layers.test_cross_attention import np_block, np_layer_norm, randomize


def np_sincos_2d(dim, gh, gw):
    """The official MAE `get_2d_sincos_pos_embed` (without the cls row)."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2) / (d / 2.0))
        out = pos.reshape(-1)[:, None] * omega[None]
        return np.concatenate([np.sin(out), np.cos(out)], 1)

    w, h = np.meshgrid(np.arange(gw, dtype=np.float64), np.arange(gh, dtype=np.float64))
    return np.concatenate([one_d(dim // 2, w), one_d(dim // 2, h)], 1)


def np_decoder(dec, target_latent, ids_restore, reference_latent):
    """The official SiamMAE forward_decoder in numpy, from the layer's weights."""
    def dense(layer, h):
        return h @ to_numpy(layer.kernel) + to_numpy(layer.bias)

    x, ref = dense(dec.embed, target_latent), dense(dec.embed, reference_latent)
    b, n = ids_restore.shape
    mask_token = to_numpy(dec.mask_token).reshape(-1)
    shuffled = np.concatenate([x[:, 1:], np.broadcast_to(mask_token, (b, n + 1 - x.shape[1], x.shape[2]))], 1)
    restored = np.stack([shuffled[i, ids_restore[i]] for i in range(b)])  # unshuffle
    gh, gw = dec.grid_shape
    table = np.concatenate([np.zeros((1, x.shape[-1])), np_sincos_2d(x.shape[-1], gh, gw)])  # cls row 0
    x = np.concatenate([x[:, :1], restored], 1) + table
    for block in dec.blocks:
        x = np_block(block, x, ref)
    x = np_layer_norm(x, to_numpy(dec.norm.gamma), to_numpy(dec.norm.beta), dec.norm_epsilon)
    return dense(dec.pred, x)[:, 1:]


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_matches_official_forward(rng, norm_first):
    dec = CrossAttentionDecoder((2, 3), output_dim=12, decoder_dim=16, depth=2, num_heads=2, mlp_ratio=2.0,
                                norm_first=norm_first)
    target = rng.normal(size=(2, 3, 8)).astype("float32")  # cls + 2 visible
    reference = rng.normal(size=(2, 7, 8)).astype("float32")  # cls + all 6
    ids_restore = np.stack([rng.permutation(6) for _ in range(2)]).astype("int32")
    dec(target, ids_restore, reference)
    randomize(dec, rng)
    assert not dec.pos_embed.trainable_weights  # the sin-cos table is fixed
    out = to_numpy(dec(target, ids_restore, reference, training=False))
    ref = np_decoder(dec, target.astype(np.float64), ids_restore, reference.astype(np.float64))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_decoder_without_prefix_tokens(rng):
    dec = CrossAttentionDecoder((2, 2), output_dim=4, decoder_dim=8, depth=1, num_heads=2, num_prefix_tokens=0)
    target, reference = rng.random((1, 1, 8)).astype("float32"), rng.random((1, 4, 8)).astype("float32")
    out = dec(target, np.array([[3, 0, 1, 2]]), reference)  # 1 visible token, no cls anywhere
    assert tuple(out.shape) == (1, 4, 4)


def test_decoder_roundtrip(tmp_path, rng):
    target, ids, reference = keras.Input((3, 8)), keras.Input((4,), dtype="int32"), keras.Input((5, 8))
    dec = CrossAttentionDecoder((2, 2), output_dim=12, decoder_dim=16, depth=1, num_heads=2, norm_first=True,
                                dropout=0.2, seed=3)
    model = keras.Model([target, ids, reference], dec(target, ids, reference))
    x = [rng.random((2, 3, 8)).astype("float32"), np.array([[0, 2, 1, 3], [3, 1, 0, 2]], "int32"),
         rng.random((2, 5, 8)).astype("float32")]
    model.save(tmp_path / "dec.keras")
    loaded = keras.saving.load_model(tmp_path / "dec.keras")
    assert loaded.layers[-1].get_config() == dec.get_config()
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-6)


@pytest.mark.parametrize("kw,match", [
    (dict(num_heads=3), "`num_heads`=3 must divide `decoder_dim`=16"),
    (dict(dropout=1.0), r"`dropout` must be a float in \[0, 1\), got 1.0"),
    (dict(depth=0), "`depth` must be a positive int, got 0"),
    (dict(grid_shape=(2,)), "`grid_shape` must be"),
])
def test_decoder_bad_arguments(kw, match):
    args = {**dict(grid_shape=(2, 2), output_dim=4, decoder_dim=16, num_heads=2), **kw}
    with pytest.raises(ValueError, match=match):
        CrossAttentionDecoder(**args)
