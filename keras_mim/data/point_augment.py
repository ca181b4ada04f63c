"""Point-MAE's fine-tuning data: clouds scaled and shifted at random per axis
(`PointcloudScaleAndTranslate` of the official code: scale in [2/3, 3/2], shift in
[-0.2, 0.2]), batched with one-hot (optionally smoothed) labels, as a `tf.data` pipeline."""

import numpy as np

from keras_mim.utils import check_positive_int


def point_finetune_dataset(points, labels, num_classes, batch_size=32, training=True, scale=(2.0 / 3.0, 1.5),
                           translate=0.2, label_smoothing=0.0, seed=None):
    """Batches of `(clouds (B, P, 3), one-hot labels (B, K))` for fine-tuning a `PointClassifier`.

    Args:
        points: float clouds `(N, P, 3)`.
        labels: class ids `(N,)`.
        num_classes: number of classes.
        batch_size: clouds per batch.
        training: shuffle, scale and shift each cloud and drop the last partial batch
            (True), or only batch (False).
        scale: `(low, high)` of the per-axis scale factors.
        translate: the largest per-axis shift (0 switches shifts off).
        label_smoothing: `s` in `y * (1 - s) + s / num_classes` (training only).
        seed: optional int seed (shuffle and the draws).

    Returns:
        A prefetched `tf.data.Dataset` (train with `CategoricalCrossentropy`).

    Examples:
        >>> x, y = np.random.rand(8, 64, 3).astype("float32"), np.arange(8) % 4
        >>> clouds, onehot = next(iter(point_finetune_dataset(x, y, num_classes=4, batch_size=4, seed=0)))
        >>> tuple(clouds.shape), tuple(onehot.shape)
        ((4, 64, 3), (4, 4))
    """
    import tensorflow as tf

    points, labels = np.asarray(points, "float32"), np.asarray(labels)
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"`points` must be clouds (N, P, 3), got shape {points.shape}.")
    if labels.shape != (len(points),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must be {len(points)} integer class ids, got shape {labels.shape} "
                         f"dtype {labels.dtype}.")
    num_classes = check_positive_int(num_classes, "num_classes")
    if len(labels) and not 0 <= labels.min() <= labels.max() < num_classes:
        raise ValueError(f"`labels` must be in [0, {num_classes}), got [{labels.min()}, {labels.max()}].")
    low, high = (float(v) for v in scale)
    if not 0 < low <= high:
        raise ValueError(f"`scale` must be (low, high) with 0 < low <= high, got {scale!r}.")
    if not 0.0 <= float(translate) or not 0.0 <= float(label_smoothing) < 1.0:
        raise ValueError(f"`translate` must be >= 0 and `label_smoothing` in [0, 1), got {translate!r}, "
                         f"{label_smoothing!r}.")
    dataset = tf.data.Dataset.from_tensor_slices((points, tf.one_hot(labels.astype("int32"), num_classes)))
    if not training:
        return dataset.batch(check_positive_int(batch_size, "batch_size")).prefetch(tf.data.AUTOTUNE)
    generator = (tf.random.Generator.from_seed(seed) if seed is not None
                 else tf.random.Generator.from_non_deterministic_state())

    def augment(cloud, label):
        factor = generator.uniform((1, 3), low, high)
        shift = generator.uniform((1, 3), -float(translate), float(translate))
        label = label * (1.0 - label_smoothing) + label_smoothing / num_classes
        return cloud * factor + shift, label

    dataset = dataset.shuffle(len(points), seed=seed).map(augment, num_parallel_calls=None if seed is not None else
                                                          tf.data.AUTOTUNE)
    return dataset.batch(check_positive_int(batch_size, "batch_size"), drop_remainder=True).prefetch(tf.data.AUTOTUNE)
