"""Two-view pairs for reference-conditioned MIM (CropMAE, SiamMAE) and self-distillation
(iBOT) as tf.data functions.

Every function here is made of TensorFlow ops with stateless random numbers, so it runs
inside `tf.data` (which Keras accepts on every backend) and gives the same views for the
same seed. A pair is a dict `{"reference": (H, W, C), "target": (H, W, C)}` of float32
images: the reference view is shown whole to the encoder, the target view is masked and
reconstructed. iBOT's two global crops use the same keys and are treated alike.

Follows the official CropMAE code (alexandre-eymael/CropMAE, `data/util/CropMAEStrategies.py`
`GlobalToLocal`, `data/SiamMAE_PIPE.py`, `data/util/video_utils.py`, `data/util/image_utils.py`
`RRC`), except that images stay in `[0, 1]`: the ImageNet mean/std normalisation of the
official pipelines is left to the model.
"""

import math

import numpy as np

from keras_mim.compat import backend_ops
from keras_mim.layers.random_resized_crop import CROP_METHODS, crop_boxes
from keras_mim.layers.random_resized_crop import check_range as _check_range
from keras_mim.utils import check_positive_int, to_2tuple

METHODS = ("cropmae", "siammae", "ibot")


def _check_probability(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1], got {value!r}.")
    return float(value)


def _seeds(seed, num):
    """`num` independent stateless seeds `(num, 2)` derived from `seed` (a pair of ints)."""
    import tensorflow as tf

    if isinstance(seed, (tuple, list)) and (len(seed) != 2 or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seed)):
        raise ValueError(f"`seed` must be a pair of ints or a shape-(2,) int tensor, got {seed!r}.")
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num)


def random_resized_crop_box(image_shape, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=(0, 0),
                            method="torchvision", max_attempts=10):
    """Draw a random-resized-crop box `(top, left, height, width)` (loop-free, stateless).

    `method="torchvision"` follows `torchvision.transforms.RandomResizedCrop.get_params`:
    `max_attempts` candidates, each with area `uniform(scale) * H * W` and aspect ratio
    `w / h = exp(uniform(log(ratio)))`, `w = round(sqrt(area * r))`, `h = round(sqrt(area / r))`;
    the first candidate with `0 < w <= W` and `0 < h <= H` is taken at a uniform position.
    If none fits, a centre crop of the whole image with its aspect ratio clamped to `ratio`
    (at least 1 pixel per side, where torchvision could return 0 on a 1-pixel-wide image).
    The candidates are drawn at once and the first valid one is selected (no loop).

    `method="clamped"` is the single-draw variant used by CropMAE's `RRC` (after BYOL's TF
    code): one candidate, `w` and `h` clamped to the image (and to at least 1), uniform position.

    Args:
        image_shape: `(H, W)` of the image, ints or int tensors.
        scale: `(low, high)` range of the area fraction, `0 < low <= high`.
        ratio: `(low, high)` range of the aspect ratio `w / h`, `0 < low <= high`.
        seed: stateless seed, a pair of ints or a shape-`(2,)` int tensor.
        method: `"torchvision"` or `"clamped"`.
        max_attempts: candidates drawn by the torchvision method, a positive int.

    Returns:
        `(top, left, height, width)`, int32 scalar tensors.

    Examples:
        >>> top, left, height, width = random_resized_crop_box((100, 200), scale=(0.2, 1.0), seed=(0, 1))
        >>> bool(0 <= top and top + height <= 100 and 0 <= left and left + width <= 200 and height > 0)
        True
    """
    import tensorflow as tf

    scale = _check_range(scale, "scale")
    ratio = _check_range(ratio, "ratio")
    if method not in CROP_METHODS:
        raise ValueError(f"`method` must be one of {CROP_METHODS}, got {method!r}.")
    check_positive_int(max_attempts, "max_attempts")
    seeds = _seeds(seed, 4)
    count = max_attempts if method == "torchvision" else 1
    area_fraction = tf.random.stateless_uniform([count], seeds[0], scale[0], scale[1])
    log_aspect = tf.random.stateless_uniform([count], seeds[1], math.log(ratio[0]), math.log(ratio[1]))
    position = tf.random.stateless_uniform([2], seeds[2])
    # The box rule of `keras_mim.layers.RandomResizedCrop`, run with TensorFlow ops.
    return crop_boxes(backend_ops("tensorflow"), image_shape, area_fraction, log_aspect, position, ratio, method)


def _crop_resize(images, box, size):
    """Crop `box` from `(..., H, W, C)` images and resize (bilinear, antialiased) to `size`."""
    import tensorflow as tf

    top, left, h, w = box
    cropped = images[..., top:top + h, left:left + w, :]
    # Antialiasing only changes a shrinking resize; skip its slower kernel when enlarging.
    return tf.cond((h > size[0]) | (w > size[1]),
                   lambda: tf.image.resize(cropped, size, method="bilinear", antialias=True),
                   lambda: tf.image.resize(cropped, size, method="bilinear"))


def _maybe_flip(images, probability, seed):
    """Flip `(..., H, W, C)` images horizontally with `probability` (one coin for all)."""
    import tensorflow as tf

    flip = tf.random.stateless_uniform([], seed) < probability
    return tf.cond(flip, lambda: tf.reverse(images, axis=[-2]), lambda: images)


def _as_float(x, name, rank):
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if x.shape.rank != rank:
        kind = "an image (H, W, C)" if rank == 3 else "a clip (T, H, W, C)"
        raise ValueError(f"`{name}` must be {kind}, got shape {tuple(x.shape)}.")
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
    return tf.cast(x, tf.float32)


def cropmae_views(image, image_size=224, global_scale=(0.1, 1.0), local_scale=(0.3, 0.6),
                  ratio=(3 / 4, 4 / 3), flip_probability=0.5, seed=(0, 0), crop_method="clamped"):
    """CropMAE's two views of one image (official default strategy `GlobalToLocal`).

    1. global view: a random resized crop of the image (area `global_scale`), resized to
       `image_size`;
    2. local view: a random resized crop (area `local_scale`) of that resized global view,
       resized to `image_size` (so it always lies inside the global crop);
    3. each view is then flipped horizontally with its own coin (`flip_probability`).

    As in the official code, the global view is the **reference** (fully visible to the
    encoder) and the local view the **target** (masked, 98.5% in the paper, and
    reconstructed). Defaults are those of the ImageNet run (`scripts/train_cropmae_in.sh`:
    global 0.1-1.0, local 0.3-0.6, ratio 3/4-4/3, flip 0.5); crops use the official
    single-draw `RRC` (`crop_method="clamped"`, see `random_resized_crop_box`).

    Args:
        image: `(H, W, C)` float image in `[0, 1]`, or uint8 (divided by 255).
        image_size: int or `(H, W)` of both views.
        global_scale: area range of the global crop (fraction of the image).
        local_scale: area range of the local crop (fraction of the global view).
        ratio: aspect-ratio range `w / h` of both crops.
        flip_probability: probability of flipping each view.
        seed: stateless seed, a pair of ints or a shape-`(2,)` int tensor.
        crop_method: `"clamped"` (official CropMAE) or `"torchvision"`.

    Returns:
        `{"reference": global view, "target": local view}`, float32 `(*image_size, C)` tensors.

    Examples:
        >>> image = np.random.default_rng(0).random((64, 48, 3), dtype="float32")
        >>> views = cropmae_views(image, image_size=32, seed=(1, 2))
        >>> sorted(views), tuple(views["target"].shape)
        (['reference', 'target'], (32, 32, 3))
    """
    import tensorflow as tf

    size = to_2tuple(image_size, "image_size")
    global_scale = _check_range(global_scale, "global_scale", upper=1.0)
    local_scale = _check_range(local_scale, "local_scale", upper=1.0)
    flip_probability = _check_probability(flip_probability, "flip_probability")
    image = _as_float(image, "image", rank=3)
    seeds = _seeds(seed, 4)
    box = random_resized_crop_box(tf.shape(image)[:2], global_scale, ratio, seeds[0], crop_method)
    global_view = _crop_resize(image, box, size)
    box = random_resized_crop_box(size, local_scale, ratio, seeds[1], crop_method)
    local_view = _crop_resize(global_view, box, size)
    return {"reference": _maybe_flip(global_view, flip_probability, seeds[2]),
            "target": _maybe_flip(local_view, flip_probability, seeds[3])}


def siammae_views(clip, image_size=224, min_gap=4, max_gap=47, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3),
                  flip_probability=0.5, seed=(0, 0), crop_method="clamped"):
    """SiamMAE's two frames of one clip, with the same crop and flip.

    As the official `sample_frames(gap_range=[4, 48])` (numpy's exclusive upper bound): the
    gap is uniform in `[min(min_gap, T - 1), min(max_gap, T - 1)]`, the first frame uniform
    in `[0, T - 1 - gap]`. One random resized crop (`scale` 0.5-1.0, the default of the
    official `DoubleRandomResizedCrop`) and one horizontal flip are applied to both frames.
    The earlier frame is the **reference** (fully visible), the later one the **target**
    (masked, 95% in the paper).

    Args:
        clip: `(T, H, W, C)` float clip in `[0, 1]` (or uint8), `T >= 2`.
        image_size: int or `(H, W)` of both views.
        min_gap: smallest frame gap, a positive int (clamped to `T - 1`).
        max_gap: largest frame gap (inclusive), `>= min_gap` (clamped to `T - 1`).
        scale: area range of the shared crop.
        ratio: aspect-ratio range `w / h` of the crop.
        flip_probability: probability of flipping both frames.
        seed: stateless seed, a pair of ints or a shape-`(2,)` int tensor.
        crop_method: `"clamped"` (official) or `"torchvision"`.

    Returns:
        `{"reference": earlier frame, "target": later frame}`, float32 `(*image_size, C)`.

    Examples:
        >>> clip = np.random.default_rng(0).random((8, 40, 40, 1), dtype="float32")
        >>> views = siammae_views(clip, image_size=16, seed=(0, 3))
        >>> tuple(views["reference"].shape), tuple(views["target"].shape)
        ((16, 16, 1), (16, 16, 1))
    """
    import tensorflow as tf

    size = to_2tuple(image_size, "image_size")
    check_positive_int(min_gap, "min_gap")
    check_positive_int(max_gap, "max_gap")
    if max_gap < min_gap:
        raise ValueError(f"`max_gap` must be >= `min_gap`={min_gap}, got {max_gap}.")
    scale = _check_range(scale, "scale", upper=1.0)
    flip_probability = _check_probability(flip_probability, "flip_probability")
    clip = _as_float(clip, "clip", rank=4)
    if clip.shape[0] is not None and clip.shape[0] < 2:
        raise ValueError(f"`clip` must have at least 2 frames, got shape {tuple(clip.shape)}.")
    seeds = _seeds(seed, 3)
    frames = tf.shape(clip)[0]
    low, high = tf.minimum(min_gap, frames - 1), tf.minimum(max_gap, frames - 1)
    u = tf.random.stateless_uniform([2], seeds[0])
    gap = tf.minimum(low + tf.cast(u[0] * tf.cast(high - low + 1, tf.float32), tf.int32), high)
    first = tf.minimum(tf.cast(u[1] * tf.cast(frames - gap, tf.float32), tf.int32), frames - gap - 1)
    pair = tf.gather(clip, tf.stack([first, first + gap]))
    box = random_resized_crop_box(tf.shape(clip)[1:3], scale, ratio, seeds[1], crop_method)
    pair = _maybe_flip(_crop_resize(pair, box, size), flip_probability, seeds[2])
    return {"reference": pair[0], "target": pair[1]}


def ibot_views(image, image_size=224, scale=(0.14, 1.0), ratio=(3 / 4, 4 / 3), flip_probability=0.5,
               seed=(0, 0), crop_method="torchvision"):
    """iBOT's two global crops of one image (official `DataAugmentationiBOT`, geometry only).

    Each crop is an independent random resized crop of the image (area `scale`, default
    the official `--global_crops_scale 0.14 1` recommended without local crops), resized
    to `image_size` and flipped horizontally with its own coin. The official colour
    jitter, grayscale, Gaussian blur and solarization, its bicubic resize (bilinear,
    antialiased here) and its local crops are left out. The two crops play the same part
    (iBOT masks both and distils each into the other); they take the keys of the other
    view pairs.

    Args:
        image: `(H, W, C)` float image in `[0, 1]`, or uint8 (divided by 255).
        image_size: int or `(H, W)` of both crops.
        scale: area range of each crop (fraction of the image).
        ratio: aspect-ratio range `w / h` of each crop.
        flip_probability: probability of flipping each crop.
        seed: stateless seed, a pair of ints or a shape-`(2,)` int tensor.
        crop_method: `"torchvision"` (official) or `"clamped"`.

    Returns:
        `{"reference": first crop, "target": second crop}`, float32 `(*image_size, C)` tensors.

    Examples:
        >>> image = np.random.default_rng(0).random((40, 32, 1), dtype="float32")
        >>> views = ibot_views(image, image_size=16, seed=(3, 4))
        >>> sorted(views), tuple(views["reference"].shape)
        (['reference', 'target'], (16, 16, 1))
    """
    import tensorflow as tf

    size = to_2tuple(image_size, "image_size")
    scale = _check_range(scale, "scale", upper=1.0)
    flip_probability = _check_probability(flip_probability, "flip_probability")
    image = _as_float(image, "image", rank=3)
    seeds = _seeds(seed, 4)
    crops = [_crop_resize(image, random_resized_crop_box(tf.shape(image)[:2], scale, ratio, seeds[i], crop_method),
                          size) for i in range(2)]
    return {key: _maybe_flip(crop, flip_probability, seeds[2 + i])
            for i, (key, crop) in enumerate(zip(("reference", "target"), crops))}


def view_dataset(source, method="cropmae", image_size=224, batch_size=32, seed=0, shuffle=False,
                 shuffle_buffer=1024, **view_kwargs):
    """A batched `tf.data.Dataset` of `{"reference", "target"}` view pairs.

    Each element of `source` (an image for CropMAE and iBOT, a clip for SiamMAE) gives one pair per
    pass, drawn anew at every pass (repeatably for a given `seed`). Batches are built with
    `drop_remainder=True`, so shapes are static, and prefetched.

    Args:
        source: a numpy array `(N, H, W, C)` of images (`"cropmae"`, `"ibot"`) or `(N, T, H, W, C)`
            of clips (`"siammae"`), float in `[0, 1]` or uint8; or a `tf.data.Dataset`
            of such single images or clips (e.g. from `clip_dataset` without batching).
        method: `"cropmae"`, `"siammae"` or `"ibot"`.
        image_size: int or `(H, W)` of the views.
        batch_size: pairs per batch, a positive int.
        seed: int seed of the shuffling and of the view randomness.
        shuffle: shuffle the elements at every pass.
        shuffle_buffer: shuffle buffer size for a `tf.data.Dataset` source (arrays are
            shuffled whole).
        **view_kwargs: further arguments of `cropmae_views`, `siammae_views` or `ibot_views`.

    Returns:
        A `tf.data.Dataset` of dicts of float32 `(batch_size, *image_size, C)` tensors.

    Examples:
        >>> images = np.random.default_rng(0).random((5, 40, 40, 3), dtype="float32")
        >>> ds = view_dataset(images, "cropmae", image_size=16, batch_size=2)
        >>> [tuple(batch["target"].shape) for batch in ds]
        [(2, 16, 16, 3), (2, 16, 16, 3)]
    """
    import tensorflow as tf

    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(shuffle_buffer, "shuffle_buffer")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`seed` must be an int, got {seed!r}.")
    rank = 4 if method == "siammae" else 3
    element = "image (H, W, C)" if rank == 3 else "clip (T, H, W, C)"
    if isinstance(source, tf.data.Dataset):
        spec = source.element_spec
        if not isinstance(spec, tf.TensorSpec) or spec.shape.rank != rank:
            raise ValueError(f"`source` for method={method!r} must be a dataset whose elements are each one "
                             f"{element}, got element_spec {spec}.")
        dataset, buffer = source, shuffle_buffer
    else:
        array = np.asarray(source)
        if array.ndim != rank + 1:
            raise ValueError(f"`source` for method={method!r} must be an array of {element.split()[0]}s "
                             f"(N, {element.split('(')[1]}, got shape {array.shape}.")
        if len(array) < batch_size:
            raise ValueError(f"`source` has {len(array)} elements, fewer than `batch_size`={batch_size}.")
        dataset, buffer = tf.data.Dataset.from_tensor_slices(array), len(array)
    views = {"cropmae": cropmae_views, "siammae": siammae_views, "ibot": ibot_views}[method]
    size = to_2tuple(image_size, "image_size")
    views(np.zeros((2,) * rank, "float32"), size, **view_kwargs)  # bad arguments raise here, untraced
    if shuffle:
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    dataset = tf.data.Dataset.zip((dataset, seeds)).map(
        lambda x, s: views(x, size, seed=s, **view_kwargs), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
