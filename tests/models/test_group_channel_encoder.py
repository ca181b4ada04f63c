"""GroupChannelEncoder (SatMAE's encoder): every token carries exactly its patch's 2D sin-cos,
its group's 1D sin-cos and (temporal) its frame's date sin-cos, checked against numpy
formulas written here; each group sees only its own bands; clear errors on bad groupings,
encoding widths and inputs; a classifier pools it."""

import keras
import numpy as np
import pytest

from keras_mim import GroupChannelEncoder, ImageClassifier
from tests.conftest import to_numpy

GROUPS = ((0, 1, 2, 6), (3, 4, 5, 7), (8, 9))


def sincos(dim, positions):
    """MAE's 1D sin-cos: `[sin(p w), cos(p w)]`, `w_i = 10000^(-i / (dim / 2))`."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2) / (dim / 2.0))
    angles = np.asarray(positions, "float64").reshape(-1)[:, None] * omega
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(dim, gh, gw):
    """MAE's 2D table, row-major: first half the column index, second half the row index."""
    rows, cols = np.divmod(np.arange(gh * gw), gw)
    return np.concatenate([sincos(dim // 2, cols), sincos(dim // 2, rows)], axis=1)


def zero_patch_embeddings(encoder):
    for layer in encoder.patch_embeds:
        for w in layer.weights:
            w.assign(np.zeros(w.shape, "float32"))


def encoder(**kwargs):
    args = dict(image_size=16, patch_size=4, num_channels=10, channel_groups=GROUPS, embed_dim=32, depth=1,
                num_heads=2, seed=0)
    return GroupChannelEncoder(**{**args, **kwargs})


def test_each_group_token_carries_its_position_and_group_encoding():
    enc = encoder()
    assert enc.grid_shape == (3, 4, 4) and enc.num_patches == 48 and enc.encoding_dims == (24, 8, 0)
    zero_patch_embeddings(enc)
    tokens = to_numpy(enc.embed_tokens(np.random.rand(2, 16, 16, 10).astype("float32")))  # (2, 48, 32)
    pos = sincos_2d(24, 4, 4)
    expected = np.concatenate([np.concatenate([pos, np.repeat(sincos(8, [g]), 16, axis=0)], axis=1)
                               for g in range(3)], axis=0)  # group-major
    np.testing.assert_allclose(tokens, np.broadcast_to(expected, tokens.shape), atol=1e-5)


def test_temporal_tokens_carry_the_date_encoding_of_their_frame():
    enc = encoder(num_channels=3, channel_groups=((0, 1), (2,)), num_frames=2)
    assert enc.grid_shape == (4, 4, 4) and enc.encoding_dims == (12, 8, 12)
    zero_patch_embeddings(enc)
    stamps = np.array([[[2015, 3, 10], [2016, 12, 0]], [[2002, 1, 23], [2020, 7, 5]]], "float32")
    x = {"frames": np.random.rand(2, 2, 16, 16, 3).astype("float32"), "timestamps": stamps}
    tokens = to_numpy(enc.embed_tokens(x))  # (2, 64, 32): frame, group, patch
    for b in range(2):
        rows = []
        for t in range(2):
            year, month, hour = stamps[b, t]
            date = np.concatenate([sincos(4, [year - 2002]), sincos(4, [month - 1]), sincos(4, [hour])], axis=1)
            for g in range(2):
                rows.append(np.concatenate([sincos_2d(12, 4, 4), np.repeat(sincos(8, [g]), 16, axis=0),
                                            np.repeat(date, 16, axis=0)], axis=1))
        np.testing.assert_allclose(tokens[b], np.concatenate(rows, axis=0), atol=1e-4)
    np.testing.assert_allclose(to_numpy(enc.token_encoding(stamps)), tokens, atol=1e-5)


def test_each_group_embeds_only_its_own_bands():
    enc = encoder()
    x = np.random.rand(1, 16, 16, 10).astype("float32")
    base = to_numpy(enc.embed_tokens(x)).reshape(3, 16, 32)
    x2 = x.copy()
    x2[..., 9] += 1.0  # band 9 belongs to the third group only
    moved = to_numpy(enc.embed_tokens(x2)).reshape(3, 16, 32)
    np.testing.assert_array_equal(moved[:2], base[:2])
    assert np.abs(moved[2] - base[2]).max() > 1e-3


def test_output_shapes_and_ids_keep():
    enc = encoder()
    x = np.random.rand(2, 16, 16, 10).astype("float32")
    assert tuple(enc(x).shape) == (2, 49, 32)
    assert tuple(enc(x, ids_keep=np.tile(np.arange(12), (2, 1))).shape) == (2, 13, 32)
    out, [feat] = enc.forward_features(x, [-1])
    assert tuple(out.shape) == tuple(feat.shape) == (2, 49, 32)


def test_image_classifier_on_group_tokens():
    enc = encoder()
    x = np.random.rand(3, 16, 16, 10).astype("float32")
    for pooling in ("avg", "cls"):
        model = ImageClassifier(enc, num_classes=5, pooling=pooling)
        assert tuple(model(x).shape) == (3, 5)


@pytest.mark.backend_independent  # argument checks and configs, before any backend op
def test_config_round_trip():
    enc = encoder(num_channels=3, channel_groups=None, num_frames=3)
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(enc))
    assert copy.get_config() == enc.get_config()
    assert copy.channel_groups == ((0, 1, 2),) and copy.encoding_dims == (20, 0, 12)


@pytest.mark.backend_independent
@pytest.mark.parametrize("groups, words", [
    (((0, 1, 2, 6), (3, 4, 5, 7), (8,)), "bands \\[9\\] are in no group"),
    (((0, 1, 2, 6), (3, 4, 5, 7), (8, 9, 1)), "bands \\[1\\] are in more than one place"),
    (((0, 1, 2, 6), (3, 4, 5, 7), (8, 9, 10)), "bands \\[10\\] are out of range"),
    (((0, 1, 2, 6), (3, 4, 5, 7), ()), "non-empty tuple"),
    ((0, 1, 2), "non-empty tuple"),
])
def test_bad_groupings_name_the_bands(groups, words):
    error = TypeError if words == "non-empty tuple" else ValueError
    with pytest.raises(error, match=f"channel_groups.*{words}" if error is ValueError else "channel_groups"):
        encoder(channel_groups=groups)


@pytest.mark.backend_independent
@pytest.mark.parametrize("kwargs, words", [
    ({"group_embed_dim": 7}, "group_embed_dim.*even"),
    ({"group_embed_dim": 30}, "leaves 2 for the 2D"),
    ({"group_embed_dim": -2}, "group_embed_dim.*non-negative"),
    ({"time_embed_dim": 6}, "time_embed_dim.*needs a temporal model"),
    ({"num_frames": 2, "time_embed_dim": 8}, "time_embed_dim.*multiple of 6"),
    ({"num_channels": 0}, "num_channels"),
    ({"year_origin": "2002"}, "year_origin"),
])
def test_bad_encoding_widths_and_arguments(kwargs, words):
    with pytest.raises((ValueError, TypeError), match=words):
        encoder(**kwargs)


@pytest.mark.backend_independent  # argument checks and configs, before any backend op
def test_bad_inputs_fail_clearly():
    enc = encoder()
    with pytest.raises(ValueError, match="channels"):
        enc(np.zeros((1, 16, 16, 3), "float32"))
    with pytest.raises(ValueError, match="size"):
        enc(np.zeros((1, 12, 16, 10), "float32"))
    temporal = encoder(num_channels=3, channel_groups=None, num_frames=2)
    with pytest.raises(ValueError, match="timestamps"):
        temporal(np.zeros((1, 2, 16, 16, 3), "float32"))
    with pytest.raises(ValueError, match="timestamps"):
        temporal({"frames": np.zeros((1, 2, 16, 16, 3), "float32"), "timestamps": np.zeros((1, 3, 3), "float32")})


def test_band_statistics_normalise_each_band_as_sentinel_normalize():
    mean, std = np.linspace(0.1, 0.5, 10), np.linspace(0.05, 0.2, 10)
    enc = encoder(band_mean=mean.tolist(), band_std=std.tolist())
    x = np.random.default_rng(0).random((2, 16, 16, 10)).astype("float32")
    expected = np.clip((x - (mean - 2 * std)) / (4 * std), 0, 1)
    np.testing.assert_allclose(to_numpy(enc.normalize_bands(x)), expected, atol=1e-5)
    plain = encoder()
    plain.set_weights(enc.get_weights())
    np.testing.assert_allclose(to_numpy(enc.embed_tokens(x)), to_numpy(plain.embed_tokens(expected.astype("float32"))),
                               atol=1e-5)
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(enc)).band_std == enc.band_std


@pytest.mark.backend_independent
@pytest.mark.parametrize("kwargs, words", [
    ({"band_mean": [0.0] * 10}, "both `band_mean` and `band_std`"),
    ({"band_mean": [0.0] * 9, "band_std": [1.0] * 9}, "band_mean.*one finite number per band \\(10"),
    ({"band_mean": [0.0] * 10, "band_std": [0.0] * 10}, "band_std.*positive"),
])
def test_bad_band_statistics(kwargs, words):
    with pytest.raises(ValueError, match=words):
        encoder(**kwargs)


@pytest.mark.backend_independent  # a table of variables
def test_layer_decay_table_puts_every_group_embedding_at_layer_zero():
    from keras_mim.optimizers.layer_decay import layer_ids

    encoder = GroupChannelEncoder(image_size=8, patch_size=4, num_channels=3, channel_groups=((0,), (1, 2)),
                                  embed_dim=16, depth=2, num_heads=2)
    ids = layer_ids(ImageClassifier(encoder, num_classes=2))
    embeds = [v.path for layer in encoder.patch_embeds for v in layer.weights]
    assert len(embeds) == 4 and all(ids[p] == 0 for p in embeds) and ids[encoder.trunk.cls_token.path] == 0
    for i, block in enumerate(encoder.blocks):
        assert {ids[v.path] for v in block.trainable_weights} == {i + 1}
    assert max(ids.values()) == 3  # the final norm / head: after the 2 blocks
