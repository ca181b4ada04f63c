"""SparseCNN: keras.applications ResNet50 and ConvNeXtTiny (and any functional CNN) made
sparse leak nothing from hidden cells, equal the dense network with nothing hidden, keep
their weights in the dense network, and refuse layers that cannot be made sparse."""

import keras
import numpy as np
import pytest

from keras_mim.models import ImageClassifier
from keras_mim.models.sparse_cnn import SparseCNN
from tests.conftest import to_numpy

MASK = np.array([[1, 0, 0, 1], [0, 1, 0, 0]], "float32")  # 2 x 2 cells of 32 px, 1 = hidden


def hide_differently(rng, x, mask):
    pixels = np.kron(mask.reshape(-1, 2, 2), np.ones((32, 32), "float32"))[..., None]
    return x * (1 - pixels) + rng.random(x.shape).astype("float32") * pixels


def small_cnn(channels=3, extra=None):
    """A small functional CNN of stride 32 with batch norms, a residual sum and padding."""
    inputs = keras.Input((64, 64, channels))
    x = keras.layers.ZeroPadding2D(1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, name="stem")(x)  # 32 x 32
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU()(x)
    for i, width in enumerate((8, 16, 24, 32)):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", name=f"down_{i}")(x)
        y = keras.layers.Conv2D(width, 3, padding="same", name=f"conv_{i}")(x)
        y = keras.layers.BatchNormalization(name=f"bn_{i}")(y)
        x = keras.layers.Add(name=f"add_{i}")([x, keras.layers.ReLU()(y)])
    if extra is not None:
        x = extra(x)
    return keras.Model(inputs, x, name="small_cnn")


@pytest.mark.parametrize("name", ["resnet50", "convnext_tiny"])
def test_keras_applications_made_sparse_leak_nothing_and_match_dense(name, rng):
    enc = SparseCNN(name, image_size=64)
    x = rng.random((2, 64, 64, 3)).astype("float32")
    a = [to_numpy(f) for f in enc.stages(x, MASK, training=True)]  # batch statistics over visible cells
    b = [to_numpy(f) for f in enc.stages(hide_differently(rng, x, MASK), MASK, training=True)]
    assert [f.shape[1] for f in a] == [16, 8, 4, 2]
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa, fb)
    np.testing.assert_allclose(to_numpy(enc.stages(x, training=False)[-1]), to_numpy(enc.backbone(x, training=False)),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.one_backend  # the sparse BN update itself is tested per backend (tests/layers); 12 s on JAX
def test_training_updates_the_dense_networks_batch_norm(rng):
    enc = SparseCNN(small_cnn())
    bn = enc.backbone.get_layer("stem_bn")
    x = rng.random((2, 64, 64, 3)).astype("float32")
    stem = keras.Model(enc.backbone.input, enc.backbone.get_layer("stem").output)
    pixels = np.kron(MASK.reshape(-1, 2, 2), np.ones((16, 16), "float32"))  # the stem's 32 x 32 map
    visible = to_numpy(stem(x * np.kron(1 - MASK.reshape(-1, 2, 2), np.ones((32, 32)))[..., None]))[pixels == 0]
    enc.stages(x, MASK, training=True)
    np.testing.assert_allclose(to_numpy(bn.moving_mean), 0.01 * visible.mean(axis=0), rtol=1e-4, atol=1e-6)


def test_round_trip_copy_and_classifier(rng, tmp_path):
    enc = SparseCNN(small_cnn(channels=1), name="encoder")
    x = rng.random((2, 64, 64, 1)).astype("float32")
    inputs = keras.Input((64, 64, 1))
    holder = keras.Model(inputs, enc(inputs))
    holder.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(holder(x)), atol=1e-6)
    model = ImageClassifier(enc, num_classes=2)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, np.array([0, 1]), epochs=1, verbose=0)
    assert tuple(model.predict(x, verbose=0).shape) == (2, 2)


@pytest.mark.parametrize("extra, word", [
    (lambda x: keras.layers.GlobalAveragePooling2D(name="gap")(x), "'gap'"),
    (lambda x: keras.layers.GroupNormalization(4, name="group_norm")(x), "'group_norm'"),
    (lambda x: keras.layers.LayerNormalization(axis=(1, 2, 3), name="spatial_ln")(x), "'spatial_ln'"),
])
def test_layers_that_mix_positions_are_refused_by_name(extra, word):
    with pytest.raises(ValueError, match=word):
        SparseCNN(small_cnn(extra=extra))


def test_bad_backbones():
    inputs = keras.Input((64, 64, 3))
    stride16 = keras.Model(inputs, keras.layers.Conv2D(4, 16, strides=16)(inputs))
    with pytest.raises(ValueError, match="stride"):
        SparseCNN(stride16)
    with pytest.raises(ValueError, match="Unknown CNN"):
        SparseCNN("vgg1000")
    with pytest.raises(TypeError, match="functional"):
        SparseCNN(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="static size"):
        dynamic = keras.Input((None, None, 3))
        SparseCNN(keras.Model(dynamic, keras.layers.Conv2D(4, 32, strides=32)(dynamic)))
