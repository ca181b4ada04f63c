"""Small built-in image sets made only from data shipped inside installed packages.

Nothing here touches the network: `"digits"` comes from scikit-learn's bundled
`load_digits`, `"photos"` from the sample photos bundled with scikit-image and
scikit-learn. They are meant for demos, tests and the `keras-mim pretrain` default
run on a CPU, not for benchmarks.
"""

import functools

import numpy as np

from keras_mim.utils import to_2tuple

#: Default image size (pixels per side) of each sample dataset.
DEFAULT_IMAGE_SIZES = {"digits": 16, "photos": 32}

#: Default number of random crops drawn by `load_sample_images("photos")`.
DEFAULT_NUM_PHOTO_CROPS = 4096

#: Number of images in scikit-learn's digits set.
NUM_DIGITS = 1797

# scikit-image samples stored inside the scikit-image wheel itself (no pooch download).
_SKIMAGE_COLOR = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina",
                  "immunohistochemistry", "stereo_motorcycle")
_SKIMAGE_GRAY = ("camera", "coins", "moon", "brick", "grass", "gravel", "clock")

# Each photo is shrunk so that its shorter side is this many crop sizes (capped at the
# original size); crops are drawn from every level, from object-scale to texture-scale.
_PYRAMID_LEVELS = (3, 5, 8)


def list_sample_datasets():
    """Names of the built-in sample datasets with a one-line description, as a dict."""
    return {
        "digits": f"scikit-learn digits: {NUM_DIGITS} grayscale 8x8 digits, upscaled "
                  f"(bilinear) to image_size (default {DEFAULT_IMAGE_SIZES['digits']}), C=1.",
        "photos": "random RGB crops (default "
                  f"{DEFAULT_IMAGE_SIZES['photos']} px, {DEFAULT_NUM_PHOTO_CROPS} crops) of the "
                  "sample photos bundled with scikit-image and scikit-learn, C=3.",
    }


def load_sample_images(name="digits", image_size=None, num_images=None, seed=0):
    """Load a small built-in image set as a float32 array `(B, H, W, C)` in `[0, 1]`.

    Only data bundled inside installed packages is used; nothing is downloaded.

    - `"digits"`: scikit-learn's `load_digits` (1797 grayscale 8x8 digits, values
      0..16), scaled to `[0, 1]` and resized bilinearly to `image_size`
      (`skimage.transform.resize`, anti-aliased when shrinking); `C = 1`.
      The images come in a random order fixed by `seed`, dealt class by class so
      that the first `n` images cover the ten digits evenly (labels are not returned).
    - `"photos"`: random `image_size` crops of the photos bundled with scikit-image
      (astronaut, coffee, chelsea, rocket, hubble_deep_field, retina,
      immunohistochemistry, stereo_motorcycle, and the grayscale camera, coins, moon,
      brick, grass, gravel, clock repeated to RGB) and scikit-learn (china, flower).
      Each photo is first downscaled to several sizes (shorter side 3, 5 and 8 times
      the crop size, never enlarged); each crop picks a photo, a size, a position and
      a horizontal flip at random. `C = 3`.

    Args:
        name: `"digits"` or `"photos"`.
        image_size: int or `(H, W)` pair of the returned images; None for the
            dataset's default (16 for digits, 32 for photos).
        num_images: number of images to return; None for all 1797 digits or 4096
            photo crops. At most 1797 for digits.
        seed: int fixing the digits order and the photo crops; the same arguments
            always return the same array.

    Returns:
        A float32 numpy array `(num_images, H, W, C)` with values in `[0, 1]`.

    Raises:
        ValueError: unknown `name`, or a bad `image_size`, `num_images` or `seed`.

    Examples:
        >>> x = load_sample_images("digits", image_size=16, num_images=8)
        >>> x.shape, str(x.dtype)
        ((8, 16, 16, 1), 'float32')
        >>> load_sample_images("photos", num_images=4, seed=1).shape
        (4, 32, 32, 3)
    """
    if name not in DEFAULT_IMAGE_SIZES:
        raise ValueError(
            f"Unknown sample dataset `name`={name!r}; expected one of {sorted(DEFAULT_IMAGE_SIZES)}."
        )
    if image_size is None:
        image_size = DEFAULT_IMAGE_SIZES[name]
    size = to_2tuple(image_size, "image_size")
    if num_images is not None and (
        isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) or num_images < 1
    ):
        raise ValueError(f"`num_images` must be a positive int or None, got {num_images!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, got {seed!r}.")
    if name == "digits":
        return _load_digits(size, num_images, int(seed))
    return _load_photo_crops(size, DEFAULT_NUM_PHOTO_CROPS if num_images is None else int(num_images), int(seed))


# ---------------------------------------------------------------------------- digits
def _load_digits(size, num_images, seed):
    if size[0] < 2 or size[1] < 2:
        raise ValueError(f"`image_size` for 'digits' must be at least 2 pixels per side, got {size}.")
    if num_images is not None and num_images > NUM_DIGITS:
        raise ValueError(
            f"`num_images`={num_images} is more than the {NUM_DIGITS} images of the 'digits' dataset."
        )
    images = _digits_resized(size)
    order = _balanced_order(_digit_labels(), np.random.default_rng(seed))
    if num_images is not None:
        order = order[:num_images]
    return images[order]


#: Fraction of each digit class in the fixed test split of `load_labelled_digits`.
DIGITS_TEST_FRACTION = 0.2
#: Sizes of its train and test splits.
NUM_TRAIN_DIGITS, NUM_TEST_DIGITS = 1438, 359


def load_labelled_digits(split="train", image_size=None, seed=0):
    """scikit-learn's digits with labels, in a fixed stratified train/test split.

    The split never changes (20% of each class is test, chosen once with a fixed seed),
    so pretraining on `"train"` images and evaluating probes, k-NN or fine-tuning on
    `"test"` never scores an image the encoder was pretrained on. `seed` only orders the
    images within the split (class by class, as `load_sample_images`).

    Args:
        split: `"train"` (1438 images), `"test"` (359) or `"all"` (1797).
        image_size: int or `(H, W)`; None for 16.
        seed: non-negative int ordering the images.

    Returns:
        `(images, labels)`: float32 `(n, H, W, 1)` in `[0, 1]` and int32 `(n,)` in 0..9.

    Examples:
        >>> x, y = load_labelled_digits("test")
        >>> x.shape, sorted(set(y.tolist())) == list(range(10))
        ((359, 16, 16, 1), True)
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"`split` must be 'train', 'test' or 'all', got {split!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, got {seed!r}.")
    size = to_2tuple(DEFAULT_IMAGE_SIZES["digits"] if image_size is None else image_size, "image_size")
    if size[0] < 2 or size[1] < 2:
        raise ValueError(f"`image_size` for 'digits' must be at least 2 pixels per side, got {size}.")
    labels = _digit_labels()
    keep = np.ones(len(labels), bool) if split == "all" else _digits_test_mask() == (split == "test")
    index = np.flatnonzero(keep)
    order = index[_balanced_order(labels[index], np.random.default_rng(seed))]
    return _digits_resized(size)[order], labels[order].astype("int32")


@functools.lru_cache(maxsize=1)
def _digits_test_mask():
    labels = _digit_labels()
    rng = np.random.default_rng(20261122)  # fixed forever: the split must not move
    test = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        test[rng.choice(members, round(DIGITS_TEST_FRACTION * len(members)), replace=False)] = True
    return test


def _balanced_order(labels, rng):
    """A random order that deals the classes round-robin (each round in a random class
    order), so every prefix of it covers the classes as evenly as possible."""
    classes = np.unique(labels)
    queues = [list(rng.permutation(np.flatnonzero(labels == c))) for c in classes]
    order = []
    while any(queues):
        for k in rng.permutation(len(queues)):
            if queues[k]:
                order.append(queues[k].pop())
    return np.asarray(order)


@functools.lru_cache(maxsize=1)
def _digit_labels():
    from sklearn.datasets import load_digits

    return load_digits().target


@functools.lru_cache(maxsize=4)
def _digits_resized(size):
    from skimage.transform import resize
    from sklearn.datasets import load_digits

    images = load_digits().images.astype("float32") / 16.0  # (1797, 8, 8) in [0, 1]
    # Images last, as channels: one call resizes the whole stack. Bilinear with half-pixel
    # centres and edge clamping; anti-aliased (Gaussian prefilter) only when shrinking.
    out = resize(images.transpose(1, 2, 0), size, order=1, mode="edge", anti_aliasing=True)
    out = np.clip(out.transpose(2, 0, 1), 0.0, 1.0).astype("float32")[..., None]
    out.setflags(write=False)
    return out


# ---------------------------------------------------------------------------- photos
def _bundled_photos():
    """The bundled photos as float32 `(h, w, 3)` arrays in [0, 1] (skips any that fail)."""
    import skimage.data

    photos = []
    for name in _SKIMAGE_COLOR + _SKIMAGE_GRAY:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            image = loader()
        except Exception:  # not shipped in this scikit-image version: skip, never download
            continue
        if isinstance(image, tuple):  # stereo_motorcycle -> (left, right, disparity)
            image = image[0]
        photos.append(_to_rgb_float(image))
    try:
        from sklearn.datasets import load_sample_images as sklearn_samples

        photos.extend(_to_rgb_float(image) for image in sklearn_samples().images)
    except Exception:  # pragma: no cover - scikit-learn always ships china/flower
        pass
    if not photos:  # pragma: no cover
        raise RuntimeError("No bundled sample photo could be loaded from scikit-image or scikit-learn.")
    return photos


def _to_rgb_float(image):
    image = np.asarray(image)
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    image = image.astype("float32") / scale
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return image[..., :3]


@functools.lru_cache(maxsize=4)
def _photo_pyramid(size):
    """Every photo, downscaled so its shorter side is `k * max(size)` for each level k."""
    from skimage.transform import resize

    crop = max(size)
    levels = []
    for photo in _bundled_photos():
        h, w = photo.shape[:2]
        seen = set()
        for k in _PYRAMID_LEVELS:
            scale = min(1.0, k * crop / min(h, w))
            new_hw = (max(size[0], round(h * scale)), max(size[1], round(w * scale)))
            if new_hw in seen or new_hw[0] > h or new_hw[1] > w:
                continue
            seen.add(new_hw)
            level = photo if new_hw == (h, w) else resize(photo, new_hw + (3,), order=1, anti_aliasing=True)
            levels.append(np.clip(level, 0.0, 1.0).astype("float32"))
    if not levels:
        raise ValueError(
            f"`image_size`={size} is larger than every bundled sample photo; use a smaller size."
        )
    return tuple(levels)


def _load_photo_crops(size, num_images, seed):
    if size[0] < 2 or size[1] < 2:
        raise ValueError(f"`image_size` for 'photos' must be at least 2 pixels per side, got {size}.")
    if size[0] > 512 or size[1] > 512:
        raise ValueError(f"`image_size` for 'photos' must be at most 512 pixels per side, got {size}.")
    levels = _photo_pyramid(size)
    rng = np.random.default_rng(seed)
    h, w = size
    out = np.empty((num_images, h, w, 3), dtype="float32")
    which = rng.integers(0, len(levels), size=num_images)
    flips = rng.random(num_images) < 0.5
    for i in range(num_images):
        level = levels[which[i]]
        top = rng.integers(0, level.shape[0] - h + 1)
        left = rng.integers(0, level.shape[1] - w + 1)
        crop = level[top:top + h, left:left + w]
        out[i] = crop[:, ::-1] if flips[i] else crop
    return out
