import keras
import numpy as np
import pytest

from keras_mim import LinearProbe
from tests.conftest import to_numpy
from tests.models.test_image_classifier import load_labels, randomize, tiny_encoder
from tests.training import digits, jit_for_backend, same_config


def test_only_the_head_trains_and_the_encoder_stays_bit_identical():
    x, y = digits(128), load_labels(128)
    probe = LinearProbe(tiny_encoder(num_channels=1, drop_path_rate=0.3), num_classes=10)
    assert [v.path.split("/")[-2:] for v in probe.trainable_weights] == [["head", "kernel"], ["head", "bias"]]
    before = [w.copy() for w in probe.encoder.get_weights()]
    probe.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit_for_backend())
    history = probe.fit(x, y, epochs=5, batch_size=32, verbose=0).history
    for a, b in zip(probe.encoder.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert history["loss"][-1] < 0.75 * history["loss"][0], history["loss"]


def test_logits_are_batchnorm_without_affine_then_dense(rng):
    probe = LinearProbe(tiny_encoder(), num_classes=4)
    randomize(probe.head, rng)
    x = rng.random((6, 16, 16, 3)).astype("float32")
    feats = to_numpy(probe.encoder(x))[:, 0]  # cls token after the final norm
    kernel, bias = probe.head.get_weights()
    # training mode: batch statistics (biased variance), eps 1e-6
    ref = (feats - feats.mean(0)) / np.sqrt(feats.var(0) + 1e-6) @ kernel + bias
    np.testing.assert_allclose(to_numpy(probe(x, training=True)), ref, rtol=1e-3, atol=1e-4)
    # the moving statistics follow PyTorch's momentum 0.1
    mean = to_numpy(probe.head_norm.moving_mean)
    np.testing.assert_allclose(mean, 0.1 * feats.mean(0), rtol=1e-4, atol=1e-6)
    # inference: moving statistics
    var = to_numpy(probe.head_norm.moving_variance)
    ref = (feats - mean) / np.sqrt(var + 1e-6) @ kernel + bias
    np.testing.assert_allclose(to_numpy(probe(x)), ref, rtol=1e-3, atol=1e-4)


def test_drop_path_is_off_even_in_training(rng):
    probe = LinearProbe(tiny_encoder(drop_path_rate=0.5), num_classes=3)
    x = rng.random((4, 16, 16, 3)).astype("float32")
    a, b = probe.forward_features(x, training=True), probe.forward_features(x, training=True)
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_default_pooling_follows_the_cls_token():
    assert LinearProbe(tiny_encoder(), num_classes=3).pooling == "cls"
    probe = LinearProbe(tiny_encoder(cls_token=False), num_classes=3)
    assert probe.pooling == "avg" and not probe.fc_norm.trainable


def test_roundtrip_keeps_it_frozen(tmp_path, rng):
    probe = LinearProbe(tiny_encoder(), num_classes=3)
    randomize(probe.head, rng)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    probe.save(tmp_path / "probe.keras")
    loaded = keras.saving.load_model(tmp_path / "probe.keras")
    assert type(loaded) is LinearProbe and same_config(loaded.get_config(), probe.get_config())
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(probe(x)), atol=1e-6)
    assert len(loaded.trainable_weights) == 2


def test_drop_path_rate_is_refused():
    with pytest.raises(ValueError, match="inference mode"):
        LinearProbe(tiny_encoder(), num_classes=3, drop_path_rate=0.1)


def test_fitting_the_head_on_cached_features_trains_the_probe(rng):
    x, y = digits(96), load_labels(96)
    probe = LinearProbe(tiny_encoder(num_channels=1), num_classes=10)
    feats = probe.predict_features(x, batch_size=40)
    np.testing.assert_allclose(feats, to_numpy(probe.forward_features(x)), atol=1e-5)
    head = probe.head_model()
    head.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(True))
    head.fit(feats, y, epochs=2, batch_size=32, verbose=0)
    np.testing.assert_allclose(to_numpy(probe(x)), to_numpy(head(feats)), rtol=1e-4, atol=1e-5)
    assert np.abs(probe.head.get_weights()[0]).max() > 0.05  # moved from the 0.01-std init


def test_feature_statistics_set_the_head_norm_for_inference(rng):
    probe = LinearProbe(tiny_encoder(), num_classes=4)
    randomize(probe.head, rng)
    x = rng.random((6, 16, 16, 3)).astype("float32")
    feats = to_numpy(probe.encoder(x))[:, 0].astype("float64")  # cls token after the final norm
    probe.adapt(x, batch_size=4)
    np.testing.assert_allclose(to_numpy(probe.head_norm.moving_mean), feats.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(probe.head_norm.moving_variance), feats.var(0), rtol=1e-3, atol=1e-9)
    kernel, bias = probe.head.get_weights()
    ref = (feats - feats.mean(0)) / np.sqrt(feats.var(0) + 1e-6) @ kernel + bias  # inference = the batch's own
    np.testing.assert_allclose(to_numpy(probe(x)), ref, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("features, match", [
    (np.zeros((5, 7)), r"`features` must be \(N, 32\) pooled encoder features with N >= 2, got shape \(5, 7\)"),
    (np.zeros((1, 32)), r"got shape \(1, 32\)"),
    (np.full((3, 32), np.nan), "NaN or infinite"),
])
def test_bad_feature_statistics(features, match):
    with pytest.raises(ValueError, match=match):
        LinearProbe(tiny_encoder(), num_classes=3).set_feature_statistics(features)


@pytest.mark.parametrize("pooling", ["cls", "avg"])
def test_block_reads_an_earlier_blocks_pooled_tokens_layer_normed(rng, pooling):
    encoder = tiny_encoder()
    probe = LinearProbe(encoder, num_classes=3, pooling=pooling, block=0)
    x = rng.random((4, 16, 16, 3)).astype("float32")
    enc = probe.encoder
    tokens = to_numpy(enc.blocks[0](enc.prepend_cls(enc.embed_patches(x))))  # after the first block only
    pooled = (tokens[:, 0] if pooling == "cls" else tokens[:, 1:].mean(1)).astype("float64")
    reference = (pooled - pooled.mean(-1, keepdims=True)) / np.sqrt(pooled.var(-1, keepdims=True) + enc.norm_epsilon)
    np.testing.assert_allclose(to_numpy(probe.forward_features(x)), reference, rtol=1e-4, atol=1e-4)
    assert LinearProbe(encoder, num_classes=3, block=-1).block is None  # the last block: the encoder's output
    assert LinearProbe(encoder, num_classes=3, block=-2).block == 0


def test_block_roundtrips_and_stays_frozen(tmp_path, rng):
    probe = LinearProbe(tiny_encoder(), num_classes=3, pooling="avg", block=0)
    randomize(probe.head, rng)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    probe.save(tmp_path / "probe.keras")
    loaded = keras.saving.load_model(tmp_path / "probe.keras")
    assert loaded.block == 0 and same_config(loaded.get_config(), probe.get_config())
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(probe(x)), atol=1e-6)
    assert len(loaded.trainable_weights) == 2


@pytest.mark.parametrize("block", [2, -3, 1.0, True, "0"])
def test_bad_block_is_refused(block):
    with pytest.raises(ValueError, match=r"`block` must be None or a block index in \[-2, 1\] for an encoder of depth 2"):
        LinearProbe(tiny_encoder(), num_classes=3, block=block)
