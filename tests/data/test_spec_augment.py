"""SpecAugment's bands (keras_mim.data.spec_augment) and their place in finetune_dataset."""

import numpy as np
import pytest

from keras_mim.data.finetune_augment import finetune_dataset
from keras_mim.data.spec_augment import spec_augment

pytestmark = pytest.mark.backend_independent  # tf.data ops, the same on every backend


def bands(out, value):
    """`(hidden frames, hidden bins)` as sorted index lists, checked to be whole rows / columns."""
    hidden = (out[..., 0] == value)
    rows = np.flatnonzero(hidden.all(axis=1))
    cols = np.flatnonzero(hidden.all(axis=0))
    expected = np.zeros_like(hidden)
    expected[rows, :] = True
    expected[:, cols] = True
    np.testing.assert_array_equal(hidden, expected)  # nothing hidden outside the two bands
    return rows, cols


def contiguous(index):
    return len(index) == 0 or np.array_equal(index, np.arange(index[0], index[-1] + 1))


def test_one_band_of_frames_and_one_of_bins_within_their_widths():
    augment = spec_augment(time_mask=10, frequency_mask=5, mask_value=-2.0, seed=0)
    x = np.random.default_rng(0).uniform(0, 1, (40, 16, 1)).astype("float32")
    widths = []
    for _ in range(60):
        out = augment(x).numpy()
        rows, cols = bands(out, -2.0)
        assert contiguous(rows) and contiguous(cols) and len(rows) <= 10 and len(cols) <= 5  # floor(start + w) - floor(start), w < max
        np.testing.assert_array_equal(out[out != -2.0], x[out != -2.0])
        widths.append((len(rows), len(cols)))
    rows, cols = np.array(widths).T
    assert rows.max() >= 7 and cols.max() >= 3 and rows.min() <= 1  # widths spread over [0, max)


def test_off_and_seeded():
    x = np.ones((8, 4, 1), "float32")
    np.testing.assert_array_equal(spec_augment(seed=0)(x).numpy(), x)
    first = [spec_augment(6, 3, 0.0, seed=5)(x).numpy() for _ in range(2)]
    np.testing.assert_array_equal(*first)
    with pytest.raises(ValueError, match="`time_mask` must be an int >= 0"):
        spec_augment(time_mask=-1)


def test_finetune_dataset_masks_training_clips_only():
    x = np.full((8, 24, 8, 1), 3.0, "float32")
    y = np.arange(8) % 2
    train = finetune_dataset(x, y, num_classes=2, batch_size=8, rand_augment_ops=0, horizontal_flip=False,
                             mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.0, seed=0,
                             time_mask=12, frequency_mask=4, mask_value=-1.0)
    images = next(iter(train))[0].numpy()
    assert (images == -1.0).any() and set(np.unique(images)) <= {-1.0, 3.0}
    for image in images:
        bands(image, -1.0)
    test = finetune_dataset(x, y, num_classes=2, batch_size=8, training=False, time_mask=12)
    assert (next(iter(test))[0].numpy() == 3.0).all()
