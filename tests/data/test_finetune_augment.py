"""MAE's fine-tuning data recipe: mixup / cutmix / smoothing checked against numpy, the
RandAugment and flip stages, seeding, and the pipeline feeding `fit` on every backend."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from keras_mim.data.finetune_augment import _TFDataEqualization, finetune_dataset, rand_augment
from tests.training import digits

OFF = dict(rand_augment_ops=0, horizontal_flip=False, mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.0,
           shuffle=False)


def unique_images(n=16, size=8, channels=2):
    """Random images whose pixels are (almost surely) all distinct, labels `i` = image `i`."""
    x = np.random.default_rng(0).random((n, size, size, channels)).astype("float32")
    return x, np.arange(n)


def batches(ds):
    return [(np.asarray(x), np.asarray(y)) for x, y in ds]


def test_mixup_images_are_the_label_weighted_mix_of_two_images():
    x, y = unique_images()
    out = batches(finetune_dataset(x, y, num_classes=16, batch_size=8, seed=1, **dict(OFF, mixup_alpha=0.8)))
    mixed = 0
    for b, (images, labels) in enumerate(out):
        for i in range(8):
            k = 8 * b + i
            sources = np.nonzero(labels[i])[0]
            assert k in sources and len(sources) <= 2 and set(sources) <= set(range(8 * b, 8 * b + 8))
            expected = sum(labels[i, s] * x[s] for s in sources)  # numpy convex combination
            np.testing.assert_allclose(images[i], expected, atol=1e-6)
            mixed += len(sources) == 2
    assert mixed >= 8


def test_cutmix_label_weight_is_the_pasted_area():
    x, y = unique_images()
    out = batches(finetune_dataset(x, y, num_classes=16, batch_size=8, seed=2, **dict(OFF, cutmix_alpha=1.0)))
    cut = 0
    for b, (images, labels) in enumerate(out):
        for i in range(8):
            k = 8 * b + i
            own = np.all(images[i] == x[k], axis=-1)  # (H, W) pixels of the image itself
            np.testing.assert_allclose(labels[i, k], own.mean(), atol=1e-6)  # weight = own area
            others = np.nonzero(labels[i])[0]
            others = others[others != k]
            if len(others):
                (j,) = others
                pasted = np.all(images[i] == x[j], axis=-1)
                assert np.all(own | pasted) and not np.any(own & pasted)
                np.testing.assert_allclose(labels[i, j], pasted.mean(), atol=1e-6)
                rows, cols = np.nonzero(pasted)  # the pasted pixels fill one box
                box = np.zeros_like(pasted)
                box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
                assert np.array_equal(box, pasted)
                cut += 1
    assert cut >= 8


def kind_of_batch(images, labels, x, start):
    """'none' if no label is mixed, else 'cut' if every pixel is copied from a batch image,
    'mix' if some are blends."""
    if np.all(labels.max(-1) == 1.0):
        return "none"
    batch = x[start : start + len(images)]
    copied = np.all(images[:, :, :, None] == batch.transpose(1, 2, 0, 3)[None], axis=-1).any(-1)
    return "cut" if copied.all() else "mix"


@pytest.mark.parametrize("switch_prob, kinds", [(0.0, {"mix"}), (1.0, {"cut"}), (0.5, {"mix", "cut"})])
def test_switch_between_mixup_and_cutmix_per_batch(switch_prob, kinds):
    x, y = unique_images(32)
    options = dict(OFF, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=switch_prob)
    out = batches(finetune_dataset(x, y, num_classes=32, batch_size=4, seed=3, **options))
    assert {kind_of_batch(images, labels, x, 4 * b) for b, (images, labels) in enumerate(out)} - {"none"} == kinds
    unmixed = batches(finetune_dataset(x, y, num_classes=32, batch_size=4, seed=3, **dict(options, mix_prob=0.0)))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in unmixed]), x)


def test_label_smoothing_and_one_hot_inputs():
    x, y = unique_images()
    s, k = 0.1, 16
    out = batches(finetune_dataset(x, y, num_classes=k, batch_size=8, **dict(OFF, label_smoothing=s)))
    expected = np.eye(k)[y] * (1 - s) + s / k  # timm: off = s / K, on = 1 - s + s / K
    np.testing.assert_allclose(np.concatenate([b[1] for b in out]), expected, atol=1e-7)
    one_hot = batches(finetune_dataset(x, np.eye(k)[y], batch_size=8, **dict(OFF, label_smoothing=s)))
    np.testing.assert_allclose(np.concatenate([b[1] for b in one_hot]), expected, atol=1e-7)
    evaluation = batches(finetune_dataset(x, y, num_classes=k, batch_size=5, training=False))
    assert [len(b[0]) for b in evaluation] == [5, 5, 5, 1]  # nothing dropped, no smoothing, in order
    np.testing.assert_array_equal(np.concatenate([b[1] for b in evaluation]), np.eye(k)[y])


def test_flip_and_rand_augment_stages():
    x, y = digits(16), np.arange(16) % 10
    flip_only = dict(OFF, horizontal_flip=True)
    flipped = batches(finetune_dataset(x, y, num_classes=10, batch_size=16, seed=4, **flip_only))[0][0]
    is_flip = [np.array_equal(a, b[:, ::-1]) and not np.array_equal(a, b) for a, b in zip(flipped, x)]
    assert all(f or np.array_equal(a, b) for f, a, b in zip(is_flip, flipped, x)) and 0 < sum(is_flip) < 16
    augmented = batches(finetune_dataset(x, y, num_classes=10, batch_size=16, seed=4, **dict(OFF, rand_augment_ops=2)))
    images = augmented[0][0]
    assert images.shape == x.shape and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0  # stays in value_range
    changed = [not np.allclose(a, b, atol=1e-3) for a, b in zip(images, x)]
    assert sum(changed) >= 12


def test_translate_shifts_each_image_within_its_bound():
    """A bright 4 x 4 square in a 16 x 16 image: with translate 0.25 its centroid moves by at
    most 0.25 x 16 = 4 px (plus a pixel of interpolation) and moves in most images."""
    x = np.zeros((8, 16, 16, 1), "float32")
    x[:, 6:10, 6:10] = 1.0
    shifted = batches(finetune_dataset(x, np.arange(8) % 2, num_classes=2, batch_size=8, seed=3,
                                       **dict(OFF, translate=0.25)))[0][0]
    rows, cols = np.mgrid[:16, :16]
    moved = []
    for image in shifted[..., 0]:
        centre = np.array([(image * rows).sum(), (image * cols).sum()]) / image.sum()
        moved.append(np.abs(centre - 7.5).max())
    assert max(moved) <= 5.0 and sum(m > 0.5 for m in moved) >= 5


def test_tf_data_equalization_counts_like_keras():
    images = np.random.default_rng(5).random((3, 8, 8, 1)).astype("float32")
    ours, theirs = [
        np.stack([np.asarray(v) for v in tf.data.Dataset.from_tensor_slices(images).map(layer)])
        for layer in (_TFDataEqualization(value_range=(0, 1)), keras.layers.Equalization(value_range=(0, 1)))
    ]
    np.testing.assert_array_equal(ours, theirs)
    assert isinstance(rand_augment(seed=0).equalization, _TFDataEqualization)


def test_seeded_pipeline_repeats_and_feeds_fit():
    x, y = digits(64), load_digits().target[:64]
    make = lambda seed: finetune_dataset(x, y, num_classes=10, batch_size=16, seed=seed)  # noqa: E731
    ds = make(7)
    first, again = batches(ds), batches(make(7))
    for (a, la), (b, lb) in zip(first, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(first[0][0], batches(ds)[0][0])  # a new epoch draws anew
    cheap = [finetune_dataset(x, y, num_classes=10, batch_size=16, seed=s, rand_augment_ops=0) for s in (7, 8)]
    assert not np.array_equal(batches(cheap[0])[0][0], batches(cheap[1])[0][0])  # another seed, other batches
    for images, labels in first:
        assert images.shape == (16, 16, 16, 1) and labels.shape == (16, 10)
        assert np.all(labels >= 0) and np.allclose(labels.sum(-1), 1.0, atol=1e-6)
        assert np.all(labels.max(-1) <= 1 - 0.1 + 0.1 / 10 + 1e-6)  # smoothed
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    history = model.fit(ds, epochs=1, shuffle=False, verbose=0).history["loss"]
    assert np.all(np.isfinite(history))
    loss = model.evaluate(finetune_dataset(x, y, num_classes=10, batch_size=16, training=False), verbose=0)
    assert np.isfinite(loss)


def test_dataset_input():
    x, y = unique_images(8)
    source = tf.data.Dataset.from_tensor_slices((x, y))
    out = batches(finetune_dataset(source, num_classes=8, batch_size=4, **dict(OFF, label_smoothing=0.1)))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in out]), x)
    assert np.concatenate([b[1] for b in out]).argmax(-1).tolist() == list(range(8))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(mixup_alpha=-1.0), ValueError, "mixup_alpha"),
        (dict(cutmix_alpha=2.0), ValueError, "cutmix_alpha"),
        (dict(switch_prob=1.5), ValueError, "switch_prob"),
        (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
        (dict(rand_augment_ops=-1), ValueError, "rand_augment_ops"),
        (dict(rand_augment_factor=2.0), ValueError, "rand_augment_factor"),
        (dict(translate=1.5), ValueError, "translate"),
        (dict(value_range=(1, 0)), ValueError, "value_range"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(num_classes=None), ValueError, "num_classes"),
        (dict(num_classes=3), ValueError, r"\[0, 3\)"),
        (dict(labels=np.arange(5)), ValueError, "labels"),
        (dict(labels=np.arange(8) * 1.0), TypeError, "ints"),
        (dict(images=np.zeros((8, 4, 4))), ValueError, "images"),
        (dict(seed=1.5), ValueError, "seed"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    x, y = unique_images(8)
    args = {**dict(images=x, labels=y, num_classes=8), **kwargs}
    with pytest.raises(error, match=match):
        finetune_dataset(**args)
