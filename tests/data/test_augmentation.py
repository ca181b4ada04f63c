import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mim.data.augmentation import mae_augmentation, medical_augmentation
from keras_mim.layers.random_resized_crop import RandomResizedCrop
from tests.conftest import to_numpy
from tests.data.test_views import coordinate_image, flipped
from tests.training import jit_for_backend


def spans(views):
    """Fraction of the image's rows and columns each view covers (coordinate images)."""
    return [views[..., c].max(axis=(1, 2)) - views[..., c].min(axis=(1, 2)) for c in (0, 1)]


@pytest.mark.parametrize("build, low, flips", [(mae_augmentation, 0.2, True), (medical_augmentation, 0.5, False)])
def test_presets_crop_area_and_flip(build, low, flips):
    images = np.stack([coordinate_image(64, 64)] * 200)
    views = to_numpy(build(16, seed=0)(images))
    assert views.shape == (200, 16, 16, 2)
    rows, cols = spans(views)
    # A crop of h rows shows row centres spanning (h - 1) / 64 at most, about h / 64.
    area = (rows + 1 / 64) * (cols + 1 / 64)
    assert area.min() > 0.8 * low and area.max() <= 1.0 + 1e-5 and np.quantile(area, 0.1) < low + 0.1
    rate = flipped(views).mean()
    assert 0.38 < rate < 0.62 if flips else rate == 0.0


def test_layers_and_options():
    pipeline = medical_augmentation((8, 12), scale=(0.6, 0.9), ratio=(0.9, 1.1), horizontal_flip=True, seed=3)
    crop, flip = pipeline.layers
    assert isinstance(crop, RandomResizedCrop) and isinstance(flip, keras.layers.RandomFlip)
    assert (crop.height, crop.width, crop.scale, crop.ratio, crop.seed) == (8, 12, (0.6, 0.9), (0.9, 1.1), 3)
    assert len(mae_augmentation(8, horizontal_flip=False).layers) == 1


def test_in_tf_data_every_backend():
    images = np.random.default_rng(0).random((6, 30, 20, 3)).astype("float32")
    for augment in (mae_augmentation(16, seed=1), medical_augmentation(16, seed=1)):
        single = [x.numpy() for x in tf.data.Dataset.from_tensor_slices(images).map(augment)]
        batched = [x.numpy() for x in tf.data.Dataset.from_tensor_slices(images).batch(3).map(augment)]
        assert [x.shape for x in single] == [(16, 16, 3)] * 6 and [x.shape for x in batched] == [(3, 16, 16, 3)] * 2
        assert all(0.0 <= x.min() and x.max() <= 1.0 for x in single + batched)


def test_same_seed_same_views():
    images = np.random.default_rng(1).random((4, 24, 24, 1)).astype("float32")
    a, b = mae_augmentation(8, seed=5)(images), mae_augmentation(8, seed=5)(images)
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_in_a_jitted_model_and_roundtrip(tmp_path):
    model = keras.Sequential([keras.Input((24, 20, 1)), mae_augmentation(8, seed=2),
                              keras.layers.Flatten(), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit_for_backend())
    x = np.random.default_rng(2).random((8, 24, 20, 1)).astype("float32")
    assert np.isfinite(model.fit(x, np.zeros((8, 1)), batch_size=4, verbose=0).history["loss"]).all()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: mae_augmentation(0), ValueError, "`image_size`"),
        (lambda: mae_augmentation(8, scale=(0.5, 0.2)), ValueError, "`scale`"),
        (lambda: medical_augmentation(8, ratio=(-1, 1)), ValueError, "`ratio`"),
        (lambda: medical_augmentation(8, horizontal_flip="yes"), TypeError, "`horizontal_flip`"),
        (lambda: mae_augmentation(8, seed=1.5), ValueError, "`seed`"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()
