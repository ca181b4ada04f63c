"""MAE's fine-tuning data recipe for labelled images as a `tf.data` pipeline built from
Keras' own preprocessing layers (which run inside tf.data on every backend).

Per image (training): horizontal flip, an optional random shift (not in MAE's recipe), then
RandAugment. Per batch: mixup or cutmix,
switched with probability `switch_prob` (timm's `Mixup(mixup_alpha=0.8, cutmix_alpha=1.0,
switch_prob=0.5, prob=1.0)`), then label smoothing of the one-hot labels. Evaluation
batches get one-hot labels only.

How this maps MAE's timm recipe (`--aa rand-m9-mstd0.5-inc1 --mixup 0.8 --cutmix 1.0
--smoothing 0.1`) onto Keras:

- RandAugment `rand-m9-mstd0.5-inc1` -> `keras.layers.RandAugment(num_ops=2, factor=0.9)`:
  timm picks 2 of 15 ops per image, each applied with probability 0.5 at magnitude 9 of 10
  (jittered with std 0.5); Keras' `factor` is the same normalised magnitude in [0, 1], but
  Keras always applies its 2 ops (of 11), draws each op's strength uniformly in
  `[0, factor]` and defines the ops' ranges its own way (e.g. rotations up to
  `factor * 360` degrees where timm rotates at most 30). Keras draws the ops once per
  call, so the layer runs per image here (as timm) rather than per batch.
- mixup: `keras.layers.MixUp(alpha)`, one Beta(alpha, alpha) weight and one random partner
  per image (timm's default "batch" mode draws one weight per batch and pairs image `i`
  with `B - 1 - i`); images and labels get the same weight.
- cutmix: `keras.layers.CutMix(factor=(alpha, alpha))` (Keras draws the Beta parameter in
  `factor`; a pair fixes it to `alpha`, at most 1), boxes always inside the image. Keras
  mixes labels by the box's real-valued area, which is not the area of the pixels it
  pastes; here the label weight is the exact pasted fraction (timm's `correct_lam`), read
  from an index channel that travels through CutMix with the image.
- label smoothing in the labels, `y * (1 - s) + s / K` (timm's `mixup_target`): it commutes
  with mixing, keeps evaluation labels exact and lets training use plain
  `CategoricalCrossentropy` on soft targets (timm's `SoftTargetCrossEntropy`).
- not included: MAE's RandomResizedCrop(0.08-1) and random erasing (`--reprob 0.25`).

Randomness: each Keras layer owns a seeded generator, the mixing switch a seeded
`tf.random.Generator`, and the shuffle is seeded. With a `seed` the maps run one element at
a time so that a new pipeline repeats the same batches; without one they run in parallel.
"""

import keras
import numpy as np

from keras_mim.compat import Equalization, replace_rand_augment_op
from keras_mim.data.views import _check_probability
from keras_mim.utils import check_positive_int


def _check_alpha(value, name, upper=None):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    if not ok or (upper is not None and value > upper):
        bound = f"[0, {upper}]" if upper is not None else ">= 0"
        raise ValueError(f"`{name}` must be a float {bound} (0 switches it off), got {value!r}.")
    return float(value)


def _check_value_range(value_range):
    if (not isinstance(value_range, (tuple, list)) or len(value_range) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value_range)
            or not value_range[0] < value_range[1]):
        raise ValueError(f"`value_range` must be a pair (low, high) with low < high, got {value_range!r}.")
    return tuple(float(v) for v in value_range)


def _source(images, labels, num_classes):
    """`(dataset of (image, label), num_classes, size or None)` from arrays or a dataset."""
    import tensorflow as tf

    if isinstance(images, tf.data.Dataset):
        if labels is not None:
            raise ValueError("Pass `labels=None` with a dataset: its elements must be `(image, label)` pairs.")
        spec = images.element_spec
        if not isinstance(spec, tuple) or len(spec) != 2 or spec[0].shape.rank != 3:
            raise ValueError(
                f"The dataset must yield unbatched `(image (H, W, C), label)` pairs, got element spec {spec}."
            )
        label_rank = spec[1].shape.rank
        if label_rank == 1 and num_classes is None:
            num_classes = spec[1].shape[0]
        size = images.cardinality()
        size = int(size) if size >= 0 else None
        return images, num_classes, label_rank, size
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"`images` must be an array (N, H, W, C), got shape {images.shape}.")
    if labels is None:
        raise ValueError("`labels` are needed with an image array: ints (N,) or one-hot (N, num_classes).")
    labels = np.asarray(labels)
    if labels.shape[:1] != images.shape[:1] or labels.ndim not in (1, 2):
        raise ValueError(
            f"`labels` must be (N,) class ids or (N, num_classes) one-hot for {len(images)} images, "
            f"got shape {labels.shape}."
        )
    if labels.ndim == 2:
        num_classes = labels.shape[1] if num_classes is None else num_classes
        if labels.shape[1] != num_classes:
            raise ValueError(f"One-hot `labels` have {labels.shape[1]} classes but `num_classes`={num_classes}.")
    elif num_classes is not None and labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
        raise ValueError(
            f"`labels` must be class ids in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]."
        )
    if labels.ndim == 1 and not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"Class-id `labels` must be ints, got dtype {labels.dtype}.")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    return dataset, num_classes, labels.ndim - 1, len(images)


class _TFDataEqualization(Equalization):
    """`keras.layers.Equalization` whose histogram uses `bincount` whenever it runs in
    TensorFlow. Keras 3.15 picks the histogram by the global backend, so inside tf.data
    under JAX it builds a loop over the 256 bins per channel (a graph that takes tens of
    seconds to trace for RGB and runs several times slower); the counts are the same.
    """

    def __init__(self, name="tf_data_equalization", **kwargs):  # the class name is no valid TF scope
        super().__init__(name=name, **kwargs)

    def histogram(self, values, value_range, nbins):
        if self.backend.name != "tensorflow":
            return super().histogram(values, value_range, nbins)
        import tensorflow as tf

        low, high = (float(v) for v in value_range)
        scaled = (tf.cast(values, tf.float32) - low) * (nbins - 1) / (high - low)
        indices = tf.clip_by_value(tf.cast(scaled, tf.int32), 0, nbins - 1)
        return tf.math.bincount(tf.reshape(indices, [-1]), minlength=nbins, maxlength=nbins)


def rand_augment(num_ops=2, factor=0.9, value_range=(0.0, 1.0), seed=None):
    """`keras.layers.RandAugment` for tf.data pipelines on every backend (its
    Equalization op counting its histogram with `bincount` in TensorFlow: Keras 3.15 loops
    over the 256 bins per channel there under the JAX backend, a graph that takes tens of
    seconds to trace for RGB; the counts are the same).

    Args:
        num_ops: ops applied per call (timm's `n`).
        factor: strength in [0, 1] (timm's magnitude / 10).
        value_range: `(low, high)` of the pixel values.
        seed: optional int seed.

    Examples:
        >>> import tensorflow as tf, numpy as np
        >>> layer = rand_augment(seed=0)
        >>> ds = tf.data.Dataset.from_tensor_slices(np.random.rand(2, 8, 8, 3).astype("float32"))
        >>> [tuple(x.shape) for x in ds.map(layer)]
        [(8, 8, 3), (8, 8, 3)]
    """
    layer = keras.layers.RandAugment(value_range=value_range, num_ops=num_ops, factor=factor, seed=seed)
    replace_rand_augment_op(layer, "equalization",
                            _TFDataEqualization(value_range=value_range, data_format=layer.data_format))
    return layer


def _seed(seed, offset):
    return None if seed is None else seed + offset


def _mix_batch(mixup, cutmix, switch_prob, mix_prob, generator):
    """A tf.data map over `(images (B, H, W, C), labels (B, K))` doing mixup or cutmix."""
    import tensorflow as tf

    def cut_mix(images, labels):
        # An index channel records where every pixel comes from after CutMix pastes a box.
        index = tf.cast(tf.range(tf.shape(images)[0]), images.dtype)  # (B,)
        marker = tf.ones_like(images[..., :1]) * index[:, None, None, None]  # (B, H, W, 1)
        mixed = cutmix(tf.concat([images, marker], axis=-1))
        source = mixed[..., -1]  # (B, H, W) index of the image each pixel came from
        own = tf.cast(tf.equal(source, index[:, None, None]), labels.dtype)
        lam = tf.reduce_mean(own, axis=[1, 2])  # (B,) fraction of own pixels
        pasted = tf.where(own > 0, -1.0, tf.cast(source, tf.float32))
        partner = tf.reduce_max(pasted, axis=[1, 2])  # -1 when nothing was pasted
        partner = tf.where(partner < 0, tf.range(tf.shape(images)[0]), tf.cast(partner, tf.int32))
        labels = lam[:, None] * labels + (1 - lam[:, None]) * tf.gather(labels, partner)
        return mixed[..., :-1], labels

    def mix(images, labels):
        if mixup is not None:
            out = mixup({"images": images, "labels": labels})
            mix_images, mix_labels = out["images"], out["labels"]
        if cutmix is not None:
            cut_images, cut_labels = cut_mix(images, labels)
        if mixup is None:
            mix_images, mix_labels = cut_images, cut_labels
        elif cutmix is not None:  # both: cutmix with probability `switch_prob`
            use_cut = generator.uniform(()) < switch_prob
            mix_images = tf.where(use_cut, cut_images, mix_images)
            mix_labels = tf.where(use_cut, cut_labels, mix_labels)
        apply = generator.uniform(()) < mix_prob
        return tf.where(apply, mix_images, images), tf.where(apply, mix_labels, labels)

    return mix


def finetune_dataset(
    images,
    labels=None,
    num_classes=None,
    batch_size=32,
    training=True,
    rand_augment_ops=2,
    rand_augment_factor=0.9,
    horizontal_flip=True,
    translate=0.0,
    mixup_alpha=0.8,
    cutmix_alpha=1.0,
    switch_prob=0.5,
    mix_prob=1.0,
    label_smoothing=0.1,
    value_range=(0.0, 1.0),
    shuffle=True,
    shuffle_buffer=None,
    drop_remainder=None,
    seed=None,
    time_mask=0,
    frequency_mask=0,
    mask_value=0.0,
):
    """Batches of `(images, one-hot labels)` for fine-tuning a classifier, MAE's recipe.

    Args:
        images: float images `(N, H, W, C)` (any C), or a `tf.data.Dataset` of unbatched
            `(image, label)` pairs (then `labels=None`).
        labels: class ids `(N,)` or one-hot / soft labels `(N, num_classes)`.
        num_classes: number of classes (taken from one-hot labels when None).
        batch_size: images per batch.
        training: augment, mix and smooth (True), or only batch with one-hot labels
            (False, for evaluation).
        rand_augment_ops: RandAugment ops per image (timm's `n`, 2); 0 switches it off.
        rand_augment_factor: RandAugment strength in [0, 1] (timm's `m / 10`, 0.9).
        horizontal_flip: flip images left-right with probability 0.5.
        translate: shift images by up to this fraction of their height and width
            (`keras.layers.RandomTranslation`, edges reflected); 0 switches it off (MAE's
            recipe has no shift: its RandomResizedCrop moves and rescales instead; on small
            images a shift is the light alternative, see docs/value.md).
        mixup_alpha: mixup Beta parameter (0.8); 0 switches mixup off.
        cutmix_alpha: cutmix Beta parameter in [0, 1] (1.0); 0 switches cutmix off.
        switch_prob: probability of cutmix instead of mixup for a batch when both are on.
        mix_prob: probability that a batch is mixed at all (timm's `prob`, 1.0).
        label_smoothing: `s` in `y * (1 - s) + s / num_classes` (0.1).
        value_range: `(low, high)` of the pixel values (RandAugment needs it).
        shuffle: shuffle the images each epoch (training only).
        shuffle_buffer: shuffle buffer size; None takes the whole set (or 10000 for a
            dataset of unknown size).
        drop_remainder: drop a last partial batch; None drops it when training.
        seed: int seed making the pipeline repeatable (maps then run sequentially).
        time_mask: spectrograms `(frames, mel_bins, 1)`: SpecAugment's widest band of
            frames set to `mask_value` per training clip (`keras_mim.data.spec_augment`,
            Audio-MAE's fine-tuning); 0 (default) switches it off.
        frequency_mask: the same for a band of mel bins.
        mask_value: the value of the masked bands.

    Returns:
        A prefetched `tf.data.Dataset` of float32 `(images (B, H, W, C), labels (B, K))`
        for `model.fit` / `model.evaluate` (train with `CategoricalCrossentropy`).

    Examples:
        >>> import numpy as np
        >>> x, y = np.random.rand(8, 16, 16, 3).astype("float32"), np.arange(8) % 4
        >>> ds = finetune_dataset(x, y, num_classes=4, batch_size=4, seed=0)
        >>> images, labels = next(iter(ds))
        >>> tuple(images.shape), tuple(labels.shape), bool(np.allclose(np.sum(labels, -1), 1.0))
        ((4, 16, 16, 3), (4, 4), True)
    """
    import tensorflow as tf

    batch_size = check_positive_int(batch_size, "batch_size")
    if num_classes is not None:
        num_classes = check_positive_int(num_classes, "num_classes")
    if isinstance(rand_augment_ops, bool) or not isinstance(rand_augment_ops, int) or rand_augment_ops < 0:
        raise ValueError(f"`rand_augment_ops` must be an int >= 0, got {rand_augment_ops!r}.")
    rand_augment_factor = _check_probability(rand_augment_factor, "rand_augment_factor")
    translate = _check_probability(translate, "translate")
    mixup_alpha = _check_alpha(mixup_alpha, "mixup_alpha")
    cutmix_alpha = _check_alpha(cutmix_alpha, "cutmix_alpha", upper=1.0)
    switch_prob = _check_probability(switch_prob, "switch_prob")
    mix_prob = _check_probability(mix_prob, "mix_prob")
    label_smoothing = _check_probability(label_smoothing, "label_smoothing")
    value_range = _check_value_range(value_range)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"`seed` must be an int or None, got {seed!r}.")

    dataset, num_classes, label_rank, size = _source(images, labels, num_classes)
    if num_classes is None:
        raise ValueError("`num_classes` is needed with class-id labels.")
    calls = None if seed is not None else tf.data.AUTOTUNE

    def prepare(image, label):
        label = tf.one_hot(tf.cast(label, tf.int32), num_classes) if label_rank == 0 else label
        return tf.cast(image, tf.float32), tf.cast(label, tf.float32)

    dataset = dataset.map(prepare, num_parallel_calls=calls)
    if training and shuffle:
        buffer = shuffle_buffer or size or 10000
        dataset = dataset.shuffle(check_positive_int(buffer, "shuffle_buffer"), seed=seed)
    if training and (horizontal_flip or rand_augment_ops or translate or time_mask or frequency_mask):
        mask_bands = None
        if time_mask or frequency_mask:
            from keras_mim.data.spec_augment import spec_augment

            mask_bands = spec_augment(time_mask, frequency_mask, mask_value, _seed(seed, 7))
        flip = keras.layers.RandomFlip("horizontal", seed=_seed(seed, 1)) if horizontal_flip else None
        shift = keras.layers.RandomTranslation(translate, translate, seed=_seed(seed, 6)) if translate else None
        augment_ops = None
        if rand_augment_ops:
            augment_ops = rand_augment(rand_augment_ops, rand_augment_factor, value_range, _seed(seed, 2))

        def augment(image, label):  # one image (H, W, C): its own flip and its own ops
            if flip is not None:
                image = flip(image)
            if shift is not None:
                image = shift(image)
            if augment_ops is not None:
                image = augment_ops(image)
            if mask_bands is not None:
                image = mask_bands(image)
            return image, label

        dataset = dataset.map(augment, num_parallel_calls=calls)
    drop = training if drop_remainder is None else bool(drop_remainder)
    dataset = dataset.batch(batch_size, drop_remainder=drop)
    if training and (mixup_alpha > 0 or cutmix_alpha > 0):
        mixup = keras.layers.MixUp(alpha=mixup_alpha, seed=_seed(seed, 3)) if mixup_alpha > 0 else None
        cutmix = keras.layers.CutMix(factor=(cutmix_alpha, cutmix_alpha), seed=_seed(seed, 4)) if cutmix_alpha else None
        generator = (tf.random.Generator.from_seed(seed + 5) if seed is not None
                     else tf.random.Generator.from_non_deterministic_state())
        dataset = dataset.map(_mix_batch(mixup, cutmix, switch_prob, mix_prob, generator), num_parallel_calls=calls)
    if training and label_smoothing > 0:
        dataset = dataset.map(
            lambda x, y: (x, y * (1.0 - label_smoothing) + label_smoothing / num_classes), num_parallel_calls=calls
        )
    return dataset.prefetch(tf.data.AUTOTUNE)
