import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import stats

from keras_mim.layers.random_resized_crop import RandomResizedCrop, crop_and_resize
from tests.conftest import to_numpy
from tests.data.test_views import assert_same_distribution, reference_boxes, torchvision_get_params
from tests.training import jit_for_backend


# ----------------------------------------------------------------- numpy references
def bilinear_crop_resize(image, box, size):
    """Crop `box` of `(H, W, C)` and resize it bilinearly, half-pixel centres, no antialias
    (torch `interpolate(mode="bilinear", align_corners=False)` on the crop)."""
    top, left, h, w = box
    crop = image[top:top + h, left:left + w].astype("float64")

    def coords(out, n):
        x = np.clip((np.arange(out) + 0.5) * n / out - 0.5, 0, n - 1)
        x0 = np.floor(x).astype(int)
        return x0, np.minimum(x0 + 1, n - 1), x - x0

    y0, y1, wy = coords(size[0], h)
    x0, x1, wx = coords(size[1], w)
    rows = crop[y0] * (1 - wy)[:, None, None] + crop[y1] * wy[:, None, None]
    return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


def pil_crop_resize(image, box, size):
    """Crop, then PIL's antialiased bilinear resize, channel by channel (float mode "F"), as
    torchvision's `resized_crop` (PIL's own `box=` would read pixels outside the box)."""
    top, left, h, w = box
    crop = image[top:top + h, left:left + w].astype("float32")
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(crop[..., c]), "F").resize(
        (size[1], size[0]), Image.BILINEAR)) for c in range(image.shape[-1])]
    return np.stack(channels, axis=-1)


def boxes_of(layer, shape, n):
    images = keras.ops.zeros((n,) + shape + (1,))
    return np.stack([to_numpy(v) for v in layer.get_random_transformation(images, training=True)], axis=1)


def test_box_statistics_match_torchvision():
    for shape, scale in [((64, 96), (0.08, 1.0)), ((40, 200), (0.3, 1.0))]:
        ratio = (3 / 4, 4 / 3)
        ours = boxes_of(RandomResizedCrop(8, 8, scale=scale, seed=1), shape, 2000)
        assert (ours[:, :2] >= 0).all() and (ours[:, 2:] > 0).all()
        assert (ours[:, 0] + ours[:, 2] <= shape[0]).all() and (ours[:, 1] + ours[:, 3] <= shape[1]).all()
        assert_same_distribution(ours, reference_boxes(torchvision_get_params, shape, scale, ratio), shape)


def test_area_and_log_aspect_uniform_when_every_candidate_fits():
    scale, ratio = (0.08, 0.5), (3 / 4, 4 / 3)  # on 100 x 100 the first candidate always fits
    boxes = boxes_of(RandomResizedCrop(8, 8, scale=scale, ratio=ratio, seed=2), (100, 100), 2000)
    area = boxes[:, 2] * boxes[:, 3] / 1e4
    log_aspect = np.log(boxes[:, 3] / boxes[:, 2])
    assert stats.kstest(area, "uniform", args=(scale[0], scale[1] - scale[0])).pvalue > 1e-3
    low, high = math.log(ratio[0]), math.log(ratio[1])
    assert stats.kstest(log_aspect, "uniform", args=(low, high - low)).pvalue > 1e-3
    top = (boxes[:, 0] + 0.5) / (100 - boxes[:, 2] + 1)
    assert stats.kstest(top, "uniform").pvalue > 1e-3


def test_fallback_centre_crop_on_thin_image():
    # No candidate of area >= 8% of a 2 x 200 image has h <= 2: torchvision's fallback,
    # w = round(2 * 4/3) = 3 at left (200 - 3) // 2.
    layer = RandomResizedCrop(4, 6, seed=0)
    boxes = boxes_of(layer, (2, 200), 50)
    assert (boxes == [0, 98, 2, 3]).all()
    image = np.random.default_rng(0).random((2, 200, 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(layer(image)), pil_crop_resize(image, (0, 98, 2, 3), (4, 6)), atol=1e-5)


@pytest.mark.parametrize("shape, box", [((30, 60), (0, 10, 30, 40)), ((90, 20), (31, 0, 27, 20)),
                                        ((20, 24), (0, 0, 20, 24))])
def test_inference_is_the_centre_crop_clamped_to_ratio(shape, box):
    # torchvision's fallback box (no candidate of area 2x the image fits).
    assert torchvision_get_params(*shape, (2.0, 2.0), (3 / 4, 4 / 3), np.random.default_rng(0)) == box
    image = np.random.default_rng(1).random(shape + (2,)).astype("float32")
    out = RandomResizedCrop(12, 12)(image, training=False)
    np.testing.assert_allclose(to_numpy(out), pil_crop_resize(image, box, (12, 12)), atol=1e-5)


@pytest.mark.parametrize("box, size", [((3, 5, 7, 9), (16, 20)), ((0, 0, 30, 40), (11, 13)), ((10, 2, 4, 30), (9, 7))])
def test_crop_and_resize_matches_numpy_bilinear(box, size):
    backend = keras.ops  # the ops namespace of the running backend
    images = np.random.default_rng(2).random((2, 30, 40, 3)).astype("float32")
    boxes = tuple(np.array([v, 0 if i < 2 else v], "int32") for i, v in enumerate(box))  # image 2: box at origin
    out = to_numpy(crop_and_resize(backend, keras.ops.convert_to_tensor(images), boxes, size, antialias=False))
    for i in range(2):
        expected = bilinear_crop_resize(images[i], [int(b[i]) for b in boxes], size)
        np.testing.assert_allclose(out[i], expected, atol=1e-5)
    antialiased = to_numpy(crop_and_resize(backend, keras.ops.convert_to_tensor(images), boxes, size))
    np.testing.assert_allclose(antialiased[0], pil_crop_resize(images[0], box, size), atol=1e-4)


def test_batch_boxes_differ_and_seed_repeats():
    image = np.random.default_rng(3).random((48, 48, 3)).astype("float32")
    batch = np.stack([image] * 4)
    out = to_numpy(RandomResizedCrop(16, 16, seed=7)(batch))
    assert out.shape == (4, 16, 16, 3) and out.dtype == np.float32
    assert all(not np.allclose(out[0], out[i]) for i in range(1, 4))
    np.testing.assert_array_equal(out, to_numpy(RandomResizedCrop(16, 16, seed=7)(batch)))
    assert not np.allclose(out, to_numpy(RandomResizedCrop(16, 16, seed=8)(batch)))


def test_uint8_input_keeps_values():
    image = (np.random.default_rng(4).random((20, 30, 3)) * 255).astype("uint8")
    a = to_numpy(RandomResizedCrop(8, 8)(image, training=False))
    b = to_numpy(RandomResizedCrop(8, 8)(image.astype("float32"), training=False))
    assert a.dtype == np.float32 and a.max() > 100
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_in_tf_data_single_and_batched():
    images = np.random.default_rng(5).random((6, 40, 28, 3)).astype("float32")
    layer = RandomResizedCrop(16, 12, scale=(0.2, 1.0), seed=0)
    single = np.stack([x.numpy() for x in tf.data.Dataset.from_tensor_slices(images).map(layer)])
    batched = np.concatenate([x.numpy() for x in tf.data.Dataset.from_tensor_slices(images).batch(3).map(layer)])
    for out in (single, batched):
        assert out.shape == (6, 16, 12, 3)
        assert 0.0 <= out.min() and out.max() <= 1.0
    assert not np.allclose(batched[0], batched[1])
    # Images of different sizes, one at a time (unknown static shape in the graph).
    ragged = tf.data.Dataset.from_generator(lambda: (np.ones((h, 20, 1), "float32") for h in (10, 33)),
                                            output_signature=tf.TensorSpec((None, None, 1), tf.float32))
    out = [x.numpy() for x in ragged.map(layer)]
    assert [o.shape for o in out] == [(16, 12, 1)] * 2
    np.testing.assert_allclose(out[0], 1.0, atol=1e-5)


def test_jitted_in_a_model_and_keras_roundtrip(tmp_path):
    model = keras.Sequential([keras.Input((20, 24, 3)), RandomResizedCrop(8, 8, scale=(0.3, 1.0), seed=3),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit_for_backend())
    x = np.random.default_rng(6).random((8, 20, 24, 3)).astype("float32")
    history = model.fit(x, np.zeros((8, 2), "float32"), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    predicted = model.predict(x, verbose=0)  # inference: deterministic centre crops
    np.testing.assert_allclose(predicted, model.predict(x, verbose=0), atol=1e-6)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    layer, loaded_layer = model.layers[0], loaded.layers[0]
    assert isinstance(loaded_layer, RandomResizedCrop)
    assert loaded_layer.get_config() == layer.get_config()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), predicted, atol=1e-5)


def test_config_roundtrip():
    layer = RandomResizedCrop(5, 7, scale=(0.5, 0.9), ratio=(0.5, 2.0), interpolation="nearest", antialias=False,
                              seed=4)
    clone = RandomResizedCrop.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    image = np.random.default_rng(7).random((10, 12, 1)).astype("float32")
    np.testing.assert_array_equal(to_numpy(clone(image)), to_numpy(layer(image)))
    assert np.isin(to_numpy(layer(image)), image).all()  # nearest only copies pixels


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(height=0, width=4), "`height`"),
        (dict(height=4, width=-1), "`width`"),
        (dict(height=4, width=4, scale=(0.5, 0.1)), "`scale`"),
        (dict(height=4, width=4, scale=(0.5, 1.5)), "`scale`"),
        (dict(height=4, width=4, scale=0.5), "`scale`"),
        (dict(height=4, width=4, scale=(0.0, 1.0)), "`scale`"),
        (dict(height=4, width=4, ratio=(0, 1)), "`ratio`"),
        (dict(height=4, width=4, ratio=(2.0, 1.0)), "`ratio`"),
        (dict(height=4, width=4, interpolation="bicubic"), "`interpolation`"),
        (dict(height=4, width=4, seed="a"), "`seed`"),
        (dict(height=4, width=4, data_format="channels_first"), "`data_format`"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomResizedCrop(**kwargs)
