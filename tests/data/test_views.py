import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from keras_mim.data import (
    clip_dataset,
    cropmae_views,
    ibot_views,
    moving_shapes,
    random_resized_crop_box,
    siammae_views,
    view_dataset,
)


# ----------------------------------------------------------------- numpy references (torchvision / CropMAE)
def torchvision_get_params(height, width, scale, ratio, rng):
    """torchvision.transforms.RandomResizedCrop.get_params, in numpy."""
    area = height * width
    log_ratio = np.log(ratio)
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.integers(0, height - h + 1), rng.integers(0, width - w + 1), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def cropmae_rrc_get_params(height, width, scale, ratio, rng):
    """CropMAE's data/util/image_utils.py RRC.get_params (single draw, clamped), in numpy."""
    target_area = height * width * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w = min(int(round(math.sqrt(target_area * aspect))), width)
    h = min(int(round(math.sqrt(target_area / aspect))), height)
    return rng.integers(0, height - h + 1), rng.integers(0, width - w + 1), h, w


def our_boxes(shape, scale, ratio, method, n=2000, seed=(1, 2)):
    seeds = tf.random.experimental.stateless_split(tf.constant(seed, tf.int64), n)
    ds = tf.data.Dataset.from_tensor_slices(seeds).map(
        lambda s: tf.stack(random_resized_crop_box(shape, scale, ratio, s, method)))
    return next(iter(ds.batch(n))).numpy()


def reference_boxes(get_params, shape, scale, ratio, n=2000):
    rng = np.random.default_rng(0)
    return np.array([get_params(shape[0], shape[1], scale, ratio, rng) for _ in range(n)])


def assert_same_distribution(ours, theirs, shape):
    h, w = shape
    for name, f in [("area", lambda b: b[:, 2] * b[:, 3] / (h * w)), ("aspect", lambda b: b[:, 3] / b[:, 2]),
                    ("top", lambda b: (b[:, 0] + 0.5) / (h - b[:, 2] + 1)),
                    ("left", lambda b: (b[:, 1] + 0.5) / (w - b[:, 3] + 1))]:
        p = stats.ks_2samp(f(ours), f(theirs)).pvalue
        assert p > 1e-3, f"{name}: KS p-value {p:.2e}"


@pytest.mark.parametrize("shape, scale", [((64, 96), (0.08, 1.0)), ((40, 200), (0.3, 1.0)), ((224, 224), (0.1, 1.0))])
def test_torchvision_statistics(shape, scale):
    ratio = (3 / 4, 4 / 3)
    ours = our_boxes(shape, scale, ratio, "torchvision")
    theirs = reference_boxes(torchvision_get_params, shape, scale, ratio)
    assert_same_distribution(ours, theirs, shape)
    fallback = np.array(torchvision_get_params(*shape, (2.0, 2.0), ratio, np.random.default_rng(0)))  # no fit
    rate = lambda boxes: np.mean((boxes == fallback).all(axis=1))  # noqa: E731
    assert abs(rate(ours) - rate(theirs)) < 0.03


def test_torchvision_fallback_is_exact():
    # No candidate can fit: centre crop with the aspect ratio clamped to `ratio`.
    for shape, expected in [((10, 200), (0, 93, 10, 13)), ((200, 10), (93, 0, 13, 10)), ((50, 60), (0, 0, 50, 60))]:
        box = [int(v) for v in random_resized_crop_box(shape, scale=(2.0, 3.0), seed=(3, 4))]
        assert box == list(expected)
        assert tuple(torchvision_get_params(*shape, (2.0, 3.0), (3 / 4, 4 / 3), np.random.default_rng(0))) == expected


def test_clamped_statistics_match_cropmae_rrc():
    shape, scale, ratio = (40, 120), (0.2, 1.0), (3 / 4, 4 / 3)
    ours = our_boxes(shape, scale, ratio, "clamped")
    theirs = reference_boxes(cropmae_rrc_get_params, shape, scale, ratio)
    assert_same_distribution(ours, theirs, shape)
    assert (ours[:, 2] == 40).mean() > 0.3  # heights clamped to the image often, as in CropMAE


@pytest.mark.one_backend  # property test, many shapes: one CI pass; fixed cases run on every backend
@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), s0=st.floats(0.01, 1.0), s1=st.floats(0.0, 1.5),
       r0=st.floats(0.2, 2.0), r1=st.floats(0.0, 3.0), method=st.sampled_from(["torchvision", "clamped"]),
       seed=st.integers(0, 2 ** 31))
def test_property_box_inside_image(h, w, s0, s1, r0, r1, method, seed):
    top, left, bh, bw = (int(v) for v in random_resized_crop_box(
        (h, w), (s0, s0 + s1), (r0, r0 + r1), (seed, 7), method))
    assert 0 <= top and top + bh <= h and 0 < bh
    assert 0 <= left and left + bw <= w and 0 < bw


# ------------------------------------------------------------------------------------ CropMAE
def coordinate_image(h, w):
    """Channel 0 = row coordinate, channel 1 = column coordinate, both in (0, 1)."""
    rows, cols = np.mgrid[:h, :w]
    return np.stack([(rows + 0.5) / h, (cols + 0.5) / w], axis=-1).astype("float32")


def many_views(source, method, n, **kwargs):
    ds = view_dataset(tf.data.Dataset.from_tensors(source).repeat(n), method, batch_size=n, **kwargs)
    return {k: v.numpy() for k, v in next(iter(ds)).items()}


def flipped(views):
    return views[:, 0, -1, 1] < views[:, 0, 0, 1]


def test_cropmae_local_inside_global_and_flips_independent():
    image = coordinate_image(96, 128)
    views = many_views(image, "cropmae", 300, image_size=32, seed=1)
    ref, tgt = views["reference"], views["target"]
    assert ref.shape == tgt.shape == (300, 32, 32, 2) and ref.dtype == np.float32
    eps = 1e-5
    for c in (0, 1):  # every target value was interpolated from reference values
        assert (tgt[..., c].min(axis=(1, 2)) >= ref[..., c].min(axis=(1, 2)) - eps).all()
        assert (tgt[..., c].max(axis=(1, 2)) <= ref[..., c].max(axis=(1, 2)) + eps).all()
    span = lambda v, c: v[..., c].max(axis=(1, 2)) - v[..., c].min(axis=(1, 2))  # noqa: E731
    local_fraction = span(tgt, 0) * span(tgt, 1) / (span(ref, 0) * span(ref, 1))
    assert 0.25 < local_fraction.min() and local_fraction.max() < 0.7  # local_scale (0.3, 0.6)
    global_fraction = span(ref, 0) * span(ref, 1)
    assert global_fraction.min() > 0.06 and global_fraction.max() <= 1.0 and global_fraction.max() > 0.8
    # Each view has its own coin: the four combinations are about equally frequent.
    counts = np.bincount(2 * flipped(ref) + flipped(tgt), minlength=4)
    assert stats.chisquare(counts).pvalue > 1e-3, counts


def test_cropmae_torchvision_method_and_uint8():
    image = (coordinate_image(50, 70) * 255).astype("uint8")
    views = cropmae_views(image, image_size=(16, 24), crop_method="torchvision", seed=(5, 6))
    assert tuple(views["reference"].shape) == (16, 24, 2)
    assert 0.0 <= float(tf.reduce_min(views["target"])) and float(tf.reduce_max(views["target"])) <= 1.0


# ------------------------------------------------------------------------------------ iBOT
def test_ibot_global_crops_are_independent_with_their_own_flips():
    views = many_views(coordinate_image(96, 128), "ibot", 300, image_size=16, seed=2)
    ref, tgt = views["reference"], views["target"]
    assert ref.shape == tgt.shape == (300, 16, 16, 2)
    span = lambda v: (v[..., 0].max(axis=(1, 2)) - v[..., 0].min(axis=(1, 2))) * (  # noqa: E731
        v[..., 1].max(axis=(1, 2)) - v[..., 1].min(axis=(1, 2)))
    for view in (ref, tgt):  # area fraction in the default global scale (0.14, 1)
        assert span(view).min() > 0.1 and span(view).max() <= 1.0 and span(view).max() > 0.8
    # two crops of the image, neither inside the other as CropMAE's local crop is
    assert np.corrcoef(span(ref), span(tgt))[0, 1] < 0.2
    counts = np.bincount(2 * flipped(ref) + flipped(tgt), minlength=4)
    assert stats.chisquare(counts).pvalue > 1e-3, counts
    assert tuple(ibot_views(np.zeros((20, 30, 3), "uint8"), image_size=(8, 12), seed=(0, 1))["target"].shape) == (
        8, 12, 3)


# ------------------------------------------------------------------------------------ SiamMAE
def coded_clip(t, size=16):
    """Channel 0 = frame index / 100, channels 1, 2 = row and column coordinates."""
    coords = coordinate_image(size, size)
    frames = np.concatenate([np.broadcast_to(np.arange(t)[:, None, None, None] / 100.0, (t, size, size, 1)),
                             np.broadcast_to(coords, (t, size, size, 2))], axis=-1)
    return frames.astype("float32")


def frame_indices(views):
    return np.round(views[..., 0].mean(axis=(1, 2)) * 100).astype(int)


def test_siammae_gap_order_and_shared_crop():
    views = many_views(coded_clip(60), "siammae", 600, image_size=8, seed=2)
    first, second = frame_indices(views["reference"]), frame_indices(views["target"])
    gap = second - first
    assert first.min() >= 0 and second.max() <= 59
    assert gap.min() >= 4 and gap.max() <= 47  # official gap_range [4, 48)
    assert len(set(gap)) >= 40  # about uniform over the 44 gaps
    # Same crop and same flip on both frames.
    np.testing.assert_allclose(views["reference"][..., 1:], views["target"][..., 1:], atol=1e-6)
    assert 0.35 < flipped(views["reference"][..., 1:]).mean() < 0.65


@pytest.mark.parametrize("length, gaps", [(2, {1}), (3, {2}), (10, set(range(4, 10)))])
def test_siammae_gap_clamped_to_short_clips(length, gaps):
    views = many_views(coded_clip(length), "siammae", 200, image_size=8, seed=0)
    first, second = frame_indices(views["reference"]), frame_indices(views["target"])
    assert set(second - first) == gaps
    assert first.min() >= 0 and second.max() <= length - 1


def test_siammae_custom_gap_range():
    views = siammae_views(coded_clip(30), image_size=8, min_gap=1, max_gap=2, seed=(0, 1))
    gap = frame_indices(views["target"].numpy()[None]) - frame_indices(views["reference"].numpy()[None])
    assert gap[0] in (1, 2)


# ------------------------------------------------------------------------------------ datasets
def test_repeatable_with_seed_and_new_views_each_pass():
    images = np.random.default_rng(0).random((8, 24, 24, 3), dtype="float32")

    def make(seed):
        return view_dataset(images, "cropmae", image_size=8, batch_size=4, seed=seed, shuffle=True)

    a, b = make(3), make(3)
    first = [batch["target"].numpy() for batch in a]
    np.testing.assert_array_equal(first, [batch["target"].numpy() for batch in b])
    assert not np.array_equal(first, [batch["target"].numpy() for batch in a])  # second pass
    assert not np.array_equal(first, [batch["target"].numpy() for batch in make(4)])


def test_views_from_clip_dataset_and_static_shapes():
    clips = clip_dataset(moving_shapes(5, num_frames=12, image_size=24), num_frames=12)
    ds = view_dataset(clips, "siammae", image_size=16, batch_size=2)
    assert {k: tuple(v.shape) for k, v in ds.element_spec.items()} == {"reference": (2, 16, 16, 3),
                                                                      "target": (2, 16, 16, 3)}
    assert len(list(ds)) == 2  # drop_remainder


def test_dict_dataset_feeds_model_fit():
    images = np.random.default_rng(0).random((8, 16, 16, 3), dtype="float32")
    ds = view_dataset(images, "cropmae", image_size=8, batch_size=4)

    class TwoViewModel(keras.Model):
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            return keras.ops.mean(keras.ops.square(y_pred - keras.ops.mean(x["target"], axis=(1, 2))))

    reference = keras.Input((8, 8, 3), name="reference")
    target = keras.Input((8, 8, 3), name="target")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Concatenate()([reference, target]))
    model = TwoViewModel({"reference": reference, "target": target}, keras.layers.Dense(3)(pooled))
    model.compile(optimizer="sgd")
    history = model.fit(ds, epochs=2, verbose=0, shuffle=False)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: view_dataset(np.zeros((4, 8, 8, 3)), "siammae"), ValueError,
         r"must be an array of clips .*\(4, 8, 8, 3\)"),
        (lambda: view_dataset(np.zeros((4, 2, 8, 8, 3)), "cropmae"), ValueError, "must be an array of images"),
        (lambda: view_dataset(tf.data.Dataset.from_tensors(np.zeros((8, 8, 3))), "siammae"), ValueError,
         "each one clip"),
        (lambda: view_dataset(np.zeros((4, 8, 8, 3)), "mae"), ValueError, "`method`"),
        (lambda: view_dataset(np.zeros((4, 8, 8, 3)), batch_size=8), ValueError, "fewer than `batch_size`=8"),
        (lambda: view_dataset(np.zeros((4, 8, 8, 3)), batch_size=2, local_scale=(0.5, 2.0)), ValueError, "local_scale"),
        (lambda: view_dataset(np.zeros((4, 8, 8, 3)), batch_size=2, colour=1), TypeError, "colour"),
        (lambda: cropmae_views(np.zeros((8, 8)), 4), ValueError, r"`image` must be an image \(H, W, C\)"),
        (lambda: cropmae_views(np.zeros((8, 8, 1)), 4, flip_probability=2), ValueError, "flip_probability"),
        (lambda: cropmae_views(np.zeros((8, 8, 1)), 4, seed=(1,)), ValueError, "seed"),
        (lambda: ibot_views(np.zeros((8, 8, 1)), 4, scale=(0.5, 1.5)), ValueError, "scale"),
        (lambda: view_dataset(np.zeros((4, 2, 8, 8, 3)), "ibot"), ValueError, "must be an array of images"),
        (lambda: siammae_views(np.zeros((1, 8, 8, 1)), 4), ValueError, "at least 2 frames"),
        (lambda: siammae_views(np.zeros((8, 8, 1)), 4), ValueError, r"`clip` must be a clip"),
        (lambda: siammae_views(np.zeros((4, 8, 8, 1)), 4, min_gap=5, max_gap=3), ValueError, "max_gap"),
        (lambda: random_resized_crop_box((8, 8), scale=(0.5, 0.1)), ValueError, "scale"),
        (lambda: random_resized_crop_box((8, 8), ratio=(0, 1)), ValueError, "ratio"),
        (lambda: random_resized_crop_box((8, 8), method="timm"), ValueError, "method"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
