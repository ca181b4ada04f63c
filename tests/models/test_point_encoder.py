"""PointEncoder's block outputs and layer groups: what linear probes of a chosen block,
attentive probes, layer-wise lr decay and k-NN features read from a Point-MAE encoder."""

import keras
import numpy as np

from keras_mim import PointEncoder
from keras_mim.data.sample_points import shape_clouds
from keras_mim.models.attentive_probe import AttentiveProbe
from keras_mim.models.linear_probe import LinearProbe
from keras_mim.optimizers import layer_ids
from tests.conftest import to_numpy


def encoder():
    return PointEncoder(num_points=64, num_groups=8, group_size=8, embed_dim=16, depth=2, num_heads=2,
                        drop_path_rate=0.0, seed=0)


def test_forward_features_are_the_blocks_before_the_final_norm():
    enc = encoder()
    x = shape_clouds(3, num_points=64, seed=0)[0]
    out, (first, last) = enc.forward_features(x, [0, -1], training=False)
    np.testing.assert_allclose(to_numpy(out), to_numpy(enc(x, training=False)), atol=1e-6)
    last = to_numpy(last).astype("float64")
    mean, var = last.mean(-1, keepdims=True), last.var(-1, keepdims=True)
    gamma, beta = (to_numpy(w) for w in enc.norm.weights)
    np.testing.assert_allclose(to_numpy(out), (last - mean) / np.sqrt(var + 1e-5) * gamma + beta, atol=1e-4)
    assert to_numpy(first).shape == (3, 8, 16)


def test_layer_groups_give_every_variable_its_layer():
    enc = encoder()
    ids = layer_ids(enc)
    assert {ids[v.path] for v in enc.group_embed.trainable_weights + enc.pos_fc1.trainable_weights} == {0}
    assert {ids[v.path] for v in enc.blocks[1].trainable_weights} == {2}
    assert {ids[v.path] for v in enc.norm.trainable_weights} == {3}


def test_probes_of_a_point_encoder_and_round_trip(tmp_path):
    enc = encoder()
    x, y, _ = shape_clouds(6, num_points=64, seed=0)
    probe = LinearProbe(enc, num_classes=6, block=0)
    probe.adapt(x)
    attentive = AttentiveProbe(enc, num_classes=6)
    assert tuple(to_numpy(attentive(x)).shape) == (6, 6)
    path = tmp_path / "probe.keras"
    probe.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(probe(x)), atol=1e-5)
    assert type(loaded.encoder).__name__ == "PointEncoder" and loaded.block == 0
