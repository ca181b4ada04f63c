import keras
import numpy as np
import pytest

from keras_mim import ImageClassifier, MaskedAutoencoder, ViTEncoder
from tests.conftest import to_numpy
from tests.training import digits, jit_for_backend, same_config


def tiny_encoder(**kwargs):
    kwargs = {"image_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2, **kwargs}
    return ViTEncoder(**kwargs)


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def randomize(layer, rng):
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])


@pytest.mark.parametrize("pooling", ["avg", "cls"])
def test_logits_match_official_head(rng, pooling):
    """MAE's models_vit forward_features + head: avg = fc_norm(mean of the last block's
    patch tokens before the final norm), cls = final-normed cls token."""
    model = ImageClassifier(tiny_encoder(), num_classes=5, pooling=pooling)
    randomize(model.head, rng)
    if pooling == "avg":
        randomize(model.fc_norm, rng)
    x = rng.random((3, 16, 16, 3)).astype("float32")
    final, [last] = model.encoder.forward_features(x, layers=[-1])
    if pooling == "avg":
        gamma, beta = model.fc_norm.get_weights()
        feats = layer_norm(to_numpy(last)[:, 1:].mean(1), gamma, beta, 1e-6)
    else:
        feats = to_numpy(final)[:, 0]
    kernel, bias = model.head.get_weights()
    np.testing.assert_allclose(to_numpy(model(x)), feats @ kernel + bias, rtol=1e-4, atol=1e-5)


def test_head_init_as_official_finetuning():
    model = ImageClassifier(tiny_encoder(embed_dim=64), num_classes=100)
    kernel, bias = model.head.get_weights()
    assert 1.5e-5 < kernel.std() < 2.2e-5 and np.abs(kernel).max() <= 4e-5
    np.testing.assert_array_equal(bias, 0.0)
    gamma, beta = model.fc_norm.get_weights()
    np.testing.assert_array_equal(gamma, 1.0)
    np.testing.assert_array_equal(beta, 0.0)


def test_trains_a_copy_and_leaves_the_pretrained_encoder_alone():
    mae = MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1)
    before = [w.copy() for w in mae.encoder.get_weights()]
    model = ImageClassifier(mae, num_classes=10, drop_path_rate=0.1)
    assert model.encoder is not mae.encoder
    for a, b in zip(model.encoder.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    x, y = digits(64), load_labels(64)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    for a, b in zip(mae.encoder.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(model.encoder.get_weights()[0], before[0])


def load_labels(n):
    from sklearn.datasets import load_digits

    return load_digits().target[:n].astype("int32")


def test_drop_path_rises_over_blocks_and_only_acts_in_training(rng):
    model = ImageClassifier(tiny_encoder(depth=3), num_classes=4, drop_path_rate=0.2, seed=1)
    rates = [block.drop_path for block in model.encoder.blocks]
    np.testing.assert_allclose(rates, [0.0, 0.1, 0.2])
    x = rng.random((8, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(to_numpy(model(x)), to_numpy(model(x)))
    assert not np.allclose(to_numpy(model(x, training=True)), to_numpy(model(x, training=True)))


def test_unused_final_norm_is_frozen_with_avg_pooling():
    avg = ImageClassifier(tiny_encoder(), num_classes=3)
    cls = ImageClassifier(tiny_encoder(), num_classes=3, pooling="cls")
    assert not avg.encoder.norm.trainable and cls.encoder.norm.trainable
    paths = {v.path for v in avg.trainable_weights}
    assert not any(v.path in paths for v in avg.encoder.norm.weights)
    assert len(cls.trainable_weights) == len(avg.trainable_weights)  # fc_norm replaces norm


def test_fine_tuning_learns_real_digits():
    x, y = digits(256), load_labels(256)
    model = ImageClassifier(tiny_encoder(num_channels=1), num_classes=10, seed=0)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3), metrics=["accuracy"],
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit_for_backend(),
    )
    history = model.fit(x, y, epochs=6, batch_size=16, verbose=0).history
    # from random init with the 2e-5 head the loss sits near ln(10) for a few epochs first
    assert history["loss"][-1] < 0.9 * history["loss"][0], history["loss"]
    assert history["accuracy"][-1] > 0.3, history["accuracy"]


def test_video_classifier(rng):
    enc = tiny_encoder(num_frames=4, tubelet_size=2, cls_token=False)
    model = ImageClassifier(enc, num_classes=3)
    assert tuple(model(rng.random((2, 4, 16, 16, 3)).astype("float32")).shape) == (2, 3)


def test_roundtrip(tmp_path, rng):
    model = ImageClassifier(tiny_encoder(), num_classes=4, drop_path_rate=0.1, dropout=0.1, seed=3)
    randomize(model.head, rng)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    model.save(tmp_path / "clf.keras")
    loaded = keras.saving.load_model(tmp_path / "clf.keras")
    assert type(loaded) is ImageClassifier and same_config(loaded.get_config(), model.get_config())
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-6)
    assert not loaded.encoder.norm.trainable
    assert loaded.encoder.drop_path_rate == 0.1


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_classes": 0}, ValueError, "num_classes"),
        ({"num_classes": 3, "pooling": "max"}, ValueError, r"`pooling` must be one of"),
        ({"num_classes": 3, "dropout": 1.5}, ValueError, "dropout"),
        ({"num_classes": 3, "drop_path_rate": -0.1}, ValueError, "drop_path_rate"),
        ({"num_classes": 3, "drop_path_rate": 0.1, "copy_encoder": False}, ValueError, "copy_encoder"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ImageClassifier(tiny_encoder(), **kwargs)


def test_cls_pooling_needs_a_cls_token():
    with pytest.raises(ValueError, match="needs an encoder with a cls token"):
        ImageClassifier(tiny_encoder(cls_token=False), num_classes=3, pooling="cls")


def test_not_an_encoder():
    with pytest.raises(TypeError, match=r"an encoder .* or a model with an `.encoder`"):
        ImageClassifier(keras.layers.Dense(3), num_classes=3)


def test_wrong_image_size_fails_before_training():
    model = ImageClassifier(tiny_encoder(), num_classes=3)
    model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"size \(32, 32\) but this model classifies \(16, 16\)"):
        model.fit(np.zeros((4, 32, 32, 3), "float32"), np.zeros(4), verbose=0)


def test_block_freezes_what_comes_after_it():
    model = ImageClassifier(tiny_encoder(depth=3), num_classes=4, pooling="cls", block=1)
    trainable = {v.path for v in model.trainable_weights}
    assert any("/block_1/" in p for p in trainable) and any("fc_norm" in p for p in trainable)
    assert not any("/block_2/" in p or "encoder_" in p and p.endswith("/norm/gamma") for p in trainable), trainable
    # 12 variables per block, the final norm's 2; fc_norm's 2 added
    assert len(trainable) == len(ImageClassifier(tiny_encoder(depth=3), 4, pooling="cls").trainable_weights) - 12
    assert model.get_config()["block"] == 1
    with pytest.raises(ValueError, match=r"`block` must be None or a block index in \[-3, 2\]"):
        ImageClassifier(tiny_encoder(depth=3), num_classes=4, block=3)
