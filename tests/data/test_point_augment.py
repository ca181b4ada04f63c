"""Point-MAE's fine-tuning augmentation (keras_mim.data.point_augment)."""

import numpy as np
import pytest

from keras_mim.data.point_augment import point_finetune_dataset

pytestmark = pytest.mark.backend_independent  # tf.data ops, the same on every backend


def test_each_cloud_is_scaled_and_shifted_per_axis_within_range():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 50, 3)).astype("float32")
    y = np.arange(16) % 4
    data = point_finetune_dataset(x, y, num_classes=4, batch_size=16, label_smoothing=0.2, seed=0)
    clouds, labels = (a.numpy() for a in next(iter(data)))
    # the shuffled clouds: find each one's source by its label-free shape (the fit below)
    for cloud in clouds:
        fits = []
        for source in x:
            a = np.stack([source, np.ones_like(source)], axis=-1)  # per axis: cloud = scale * source + shift
            coef = [np.linalg.lstsq(a[:, d], cloud[:, d], rcond=None)[0] for d in range(3)]
            residual = sum(np.abs(a[:, d] @ coef[d] - cloud[:, d]).max() for d in range(3))
            fits.append((residual, coef))
        residual, coef = min(fits, key=lambda f: f[0])
        assert residual < 1e-4
        scale, shift = np.array(coef).T
        assert (scale >= 2 / 3 - 1e-5).all() and (scale <= 1.5 + 1e-5).all() and (np.abs(shift) <= 0.2 + 1e-5).all()
    np.testing.assert_allclose(np.sort(np.unique(labels.round(6))), [0.05, 0.85])  # 0.8 + 0.2 / 4, 0.2 / 4


def test_evaluation_batches_are_unchanged_and_bad_input():
    x = np.random.rand(5, 10, 3).astype("float32")
    batches = list(point_finetune_dataset(x, np.arange(5) % 2, num_classes=2, batch_size=4, training=False))
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in batches]), x)
    with pytest.raises(ValueError, match=r"`points` must be clouds \(N, P, 3\)"):
        point_finetune_dataset(x[..., :2], np.arange(5), num_classes=5)
    with pytest.raises(ValueError, match=r"`labels` must be in \[0, 2\)"):
        point_finetune_dataset(x, np.arange(5), num_classes=2)
