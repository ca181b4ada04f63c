"""One entry point from the user's images to what `model.fit` takes: `image_dataset`.

Sources: numpy arrays, a `tf.data.Dataset`, a prepared TensorFlow Datasets set
(`"tfds:NAME"`), a folder of image files (or an `ImageFolder`) and a PyTorch `DataLoader`.
Every one comes out as a prefetched `tf.data.Dataset` of float32 `(B, H, W, C)` batches in
`[0, 1]` (Keras takes tf.data on every backend). TensorFlow Datasets and torch are imported
only when such a source is given; nothing is ever downloaded.
"""

import os
import sys

import numpy as np

from keras_mim.data.augmentation import mae_augmentation, medical_augmentation
from keras_mim.data.checks import check_channels_last, check_float_pixels, looks_channels_first, stack_images
from keras_mim.data.conversions import RESIZE_MODES, convert_channels, resize_images, to_float
from keras_mim.data.image_folder import ImageFolder
from keras_mim.utils import check_positive_int, to_2tuple

AUGMENTATIONS = {"mae": mae_augmentation, "medical": medical_augmentation}
SOURCE_KINDS = ("a numpy array (N, H, W) or (N, H, W, C) (or a list of equal-shape arrays)", "a tf.data.Dataset",
                "'tfds:NAME[/CONFIG]'", "a folder path", "an ImageFolder", "a torch.utils.data.DataLoader")


# ----------------------------------------------------------------------------- sources
# Each gives `(dataset of (raw image (H, W, C), label), channels or None, class names or None)`.
def _array_source(array, labels, shuffle, seed):
    import tensorflow as tf

    if array.ndim == 3 and array.shape[-1] in (3, 4) and min(array.shape[:2]) > 4:
        raise ValueError(f"`source` array of shape {array.shape} looks like one (H, W, C) image, not a batch of "
                         f"{array.shape[0]} grayscale images (N, H, W); pass a batch of one: x[None].")
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or not len(array):
        raise ValueError(f"`source` array must be (N, H, W) or (N, H, W, C) with N >= 1, got shape {array.shape}.")
    if not (array.dtype in (np.uint8, np.uint16) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"`source` array must be uint8, uint16 or float, got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).reshape(len(array), -1).all(axis=1))[0])
        raise ValueError(f"`source` array holds NaN or inf pixels (first in image {bad}).")
    check_channels_last(array.shape[1:], "`source` array", array.shape, "np.moveaxis(x, 1, -1)")
    check_float_pixels(array, "`source` array")
    if isinstance(labels, str) or labels is None:
        if labels is not None:
            raise ValueError(f"`labels` for an array must be None or an array (N,), got {labels!r}.")
        labels = np.zeros(len(array), "int32")
    labels = np.asarray(labels)
    if labels.shape != (len(array),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must be {len(array)} integer class ids, got shape {labels.shape} "
                         f"of dtype {labels.dtype}.")
    dataset = tf.data.Dataset.from_tensor_slices((array, labels.astype("int32")))
    if shuffle:
        dataset = dataset.shuffle(len(array), seed=seed, reshuffle_each_iteration=True)
    return dataset, array.shape[-1], None


def _folder_source(folder, labels, shuffle, seed):
    import tensorflow as tf

    if labels == "inferred" and (folder.labels < 0).any():
        first = folder.files[int(np.argmax(folder.labels < 0))]
        raise ValueError(f"`labels='inferred'` needs every image in a class subfolder of {folder.path!r}; "
                         f"{first!r} is directly in it.")
    channels = sorted(set(folder.channels))
    sizes = set(folder.sizes)
    height, width = sizes.pop() if len(sizes) == 1 else (None, None)

    def read(index):
        try:
            return folder.load(int(index)), True
        except Exception as error:  # a file that passed the header check but does not decode
            folder.mark_skipped(int(index), error)
            return np.zeros((1, 1, channels[0]), "float32"), False

    def load(index, label):
        image, ok = tf.numpy_function(read, [index], (tf.float32, tf.bool), stateful=False)
        image.set_shape([height, width, channels[0] if len(channels) == 1 else None])
        return image, label, ok

    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(folder)), np.maximum(folder.labels, 0)))
    if shuffle:
        dataset = dataset.shuffle(len(folder), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).filter(lambda x, y, ok: ok)
    return dataset.map(lambda x, y, ok: (x, y)), channels, folder.class_names


def _split_element(spec, labels, what):
    """A function mapping a dataset element to `(image, label)`, from its `element_spec`."""
    import tensorflow as tf

    if isinstance(spec, dict):
        if "image" not in spec:
            raise ValueError(f"`source` {what} yields dicts without an 'image' key (keys {sorted(spec)}).")
        has_label = "label" in spec
        get = lambda e: (e["image"], e["label"] if has_label else 0)  # noqa: E731
    elif isinstance(spec, tuple) and len(spec) == 2:
        has_label = True
        get = lambda *e: (e[0], e[1])  # noqa: E731
    elif isinstance(spec, tf.TensorSpec):
        has_label = False
        get = lambda e: (e, 0)  # noqa: E731
    else:
        raise ValueError(f"`source` {what} must yield images, (image, label) pairs or dicts with an 'image' "
                         f"key, got element_spec {spec}.")
    if labels == "inferred" and not has_label:
        raise ValueError(f"`labels='inferred'` but the `source` {what} yields no label.")
    return lambda *e: tuple(tf.cast(v, tf.int32) if i else v for i, v in enumerate(get(*e)))


def _dataset_source(dataset, labels, shuffle, seed, shuffle_buffer, what="dataset"):
    import tensorflow as tf

    if int(dataset.cardinality()) == 0:
        raise ValueError(f"`source` {what} is empty (it yields no element).")
    dataset = dataset.map(_split_element(dataset.element_spec, labels, what))
    spec = dataset.element_spec[0]
    if spec.shape.rank == 4:  # batched images
        dataset = dataset.unbatch()
    elif spec.shape.rank == 2:
        dataset = dataset.map(lambda x, y: (x[..., None], y))
    elif spec.shape.rank != 3:
        raise ValueError(f"`source` {what} images must be (H, W), (H, W, C) or batches (B, H, W, C), "
                         f"got shape {spec.shape}.")
    if not (spec.dtype in (tf.uint8, tf.uint16) or spec.dtype.is_floating):
        raise TypeError(f"`source` {what} images must be uint8, uint16 or float, got {spec.dtype.name}.")
    if spec.shape.rank in (3, 4):
        perm = (0, 2, 3, 1) if spec.shape.rank == 4 else (1, 2, 0)
        check_channels_last(spec.shape[-3:].as_list(), f"`source` {what}", spec.shape.as_list(),
                            f"dataset.map(lambda x: tf.transpose(x, {perm}))")
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    channels = dataset.element_spec[0].shape[-1]
    return dataset, None if channels is None else [channels], None


def tfds_builder(source, data_dir=None):
    """The TensorFlow Datasets builder of `source` ("tfds:NAME[/CONFIG]"), checked to be
    prepared under `data_dir` without touching the network; raises at once otherwise.

    Args:
        source: "tfds:NAME" or "tfds:NAME/CONFIG".
        data_dir: the folder holding prepared sets; None for tfds' default.
    """
    name = source[len("tfds:"):]
    if not name:
        raise ValueError(f"`source` must name the dataset after 'tfds:', e.g. 'tfds:mnist', got {source!r}.")
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            f"`source`={source!r} needs TensorFlow Datasets: `pip install tensorflow-datasets`.") from error
    data_dir = None if data_dir is None else os.fspath(data_dir)
    try:  # reads the local registry and data_dir only, no network
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:
        raise ValueError(f"TensorFlow Datasets has no dataset {name!r} (`source`={source!r}): "
                         f"{str(error).splitlines()[0]}") from error
    if not builder.is_prepared():
        where = data_dir or "the default ~/tensorflow_datasets"
        raise ValueError(
            f"The TensorFlow Datasets set {name!r} is not prepared under `data_dir`={where!r}, and keras_mim never "
            f"downloads. On a machine with network run `tfds build {name.split('/')[0]} --data_dir DIR` (or "
            f"`tfds.builder({name!r}, data_dir=DIR).download_and_prepare()`), then copy DIR here and pass "
            "`data_dir=DIR`.")
    return builder


def _tfds_source(source, split, data_dir, labels, shuffle, seed, shuffle_buffer):
    builder = tfds_builder(source, data_dir)  # first: it reports a missing tensorflow_datasets
    import tensorflow_datasets as tfds

    name = source[len("tfds:"):]
    splits = sorted(builder.info.splits)
    if str(split).split("[")[0] not in splits:
        raise ValueError(f"`split`={split!r} is not a split of {name!r}; it has {splits}.")
    dataset = builder.as_dataset(split=split, shuffle_files=shuffle,
                                 read_config=tfds.ReadConfig(shuffle_seed=seed))
    label = builder.info.features["label"] if "label" in builder.info.features else None
    return _dataset_source(dataset, labels, shuffle, seed, shuffle_buffer, "tfds set")[:2] + (
        getattr(label, "names", None),)


def _is_torch_loader(source):
    torch = sys.modules.get("torch")  # a DataLoader exists only if torch was imported
    return torch is not None and isinstance(source, torch.utils.data.DataLoader)


def _torch_source(loader, labels):
    """Batches `(B, C, H, W)` (torchvision's `ToTensor` layout; `(B, H, W)` for grayscale)."""
    import tensorflow as tf

    def pick(batch):
        if isinstance(batch, dict):
            return batch["image"], batch.get("label")
        if isinstance(batch, (tuple, list)):
            return batch[0], batch[1] if len(batch) > 1 else None
        return batch, None

    def as_numpy(batch):
        images, label = pick(batch)
        images = np.asarray(images)
        images = images[..., None] if images.ndim == 3 else np.moveaxis(images, 1, -1)
        label = np.zeros(len(images), "int32") if label is None else np.asarray(label).astype("int32")
        return images, label

    first = next(iter(loader), None)  # one batch, for the channel count and image size
    if first is None:
        raise ValueError("`source` DataLoader is empty (it yields no batch).")
    if labels == "inferred" and pick(first)[1] is None:
        raise ValueError("`labels='inferred'` but the `source` DataLoader yields no label.")
    raw = tuple(np.shape(pick(first)[0]))
    if len(raw) == 4 and looks_channels_first(raw[:0:-1]):  # (B, H, W, C) read as (B, C, H, W)
        raise ValueError(f"`source` DataLoader yields batches of shape {raw}, which look channels-last (B, H, W, C); "
                         "a DataLoader is read as (B, C, H, W), torchvision's ToTensor layout: permute them with "
                         "images.permute(0, 3, 1, 2) (or yield ToTensor output).")
    images, _ = as_numpy(first)
    if images.ndim != 4:
        raise ValueError(f"`source` DataLoader must yield image batches (B, C, H, W), got shape {images.shape}.")
    check_float_pixels(images, "`source` DataLoader (its first batch)")
    spec = (tf.TensorSpec((None,) + images.shape[1:], tf.as_dtype(images.dtype)),  # sizes of the first batch
            tf.TensorSpec((None,), tf.int32))
    dataset = tf.data.Dataset.from_generator(lambda: (as_numpy(b) for b in loader), output_signature=spec)
    return _dataset_source(dataset, None, False, 0, 1, "DataLoader")[0], [images.shape[-1]], None


def _target_channels(channels, num_channels):
    """The output channel count, checking that every source count converts to it."""
    if num_channels is None:
        if channels is None:
            raise ValueError("The `source` images have an unknown channel count; pass `num_channels`.")
        if len(set(channels) - {1, 3}) and len(set(channels)) > 1:
            raise ValueError(f"The `source` images mix channel counts {sorted(set(channels))}; pass "
                             "`num_channels` (1 or 3) or keep one kind of image.")
        return 3 if set(channels) == {1, 3} else channels[0]
    bad = [c for c in (channels or []) if c != num_channels and {c, num_channels} - {1, 3}]
    if bad:
        raise ValueError(f"`num_channels`={num_channels} but the `source` has {bad[0]}-channel images; only "
                         "grayscale <-> RGB is converted.")
    return num_channels


def image_dataset(source, image_size=None, batch_size=32, augmentation=None, resize="resize", num_channels=None,
                  labels=None, shuffle=True, seed=0, split="train", data_dir=None, drop_remainder=False,
                  shuffle_buffer=1024):
    """Turn the user's images into batches for `model.fit`: a `tf.data.Dataset`.

    What is taken, converted or refused (the same for every source; wrong input is never
    trained on in silence):

    - Layout: channels-last. An array or dataset whose images look channels-first (a first
      axis of 1, 3 or 4 and more than 4 "channels" last, e.g. `(N, 3, 32, 32)`) raises a
      ValueError naming the shape and the fix (`np.moveaxis(x, 1, -1)`); so does one image
      `(H, W, 3)` given where a batch is expected, and a DataLoader yielding
      `(B, H, W, C)` (it is read as `(B, C, H, W)`).
    - Pixels: uint8 are divided by 255 and uint16 by 65535; float pixels are taken as
      already in `[0, 1]`: values beyond `[-0.5, 1.5]` (0-255 floats, `[-1, 1]` or
      mean/std-normalised images) raise a ValueError with the range found and the fix for
      an array or a DataLoader (its first batch is checked), and make a folder skip and
      list the file (float TIFFs). float64 (and float16) are cast to float32 silently.
      NaN/inf raise (arrays) or skip the file. A `tf.data.Dataset`'s float pixels are not
      checked (that would read it).
    - Files (see `ImageFolder`): EXIF orientation honoured, CMYK converted to RGB, 16-bit
      PNG/TIFF divided by 65535 (colour PNGs read at 8 bits), animated GIF/WebP/PNG read
      as their first frame (a warning says so); files that are not complete, readable
      images (a text file named `x.png`, a truncated body, found without decoding) are
      skipped and listed in `dataset.skipped`, with one warning in all.
    - A list of arrays of one shape is stacked; of different shapes it raises, naming the
      first image whose shape differs.

    Args:
        source: one of: a numpy array `(N, H, W)` or `(N, H, W, C)` (or a list of arrays
            `(H, W[, C])` of one shape; scaled and checked as above); a `tf.data.Dataset`
            of images, `(image, label)` pairs or dicts with an `"image"` key (batched or
            not); `"tfds:NAME"` or `"tfds:NAME/CONFIG"`, a TensorFlow Datasets set already
            prepared under `data_dir`; a folder path or an `ImageFolder` (unreadable files
            are skipped and listed in `dataset.skipped`); a `torch.utils.data.DataLoader`
            of `(B, C, H, W)` tensors (alone, in `(images, labels)` or in dicts).
        image_size: int or `(H, W)` of the output; None keeps the source size (then all
            images must share one size).
        batch_size: images per batch, a positive int.
        augmentation: None, `"mae"` (`mae_augmentation`), `"medical"`
            (`medical_augmentation`), or any callable / Keras layer taking one float
            `(H, W, C)` image; it replaces the resize (the presets crop to `image_size`).
        resize: how `image_size` is reached without augmentation: `"resize"` (stretch),
            `"crop"` (resize the short side, centre crop) or `"pad"` (fit inside, pad
            with zeros).
        num_channels: 1 or 3 to convert grayscale <-> RGB (BT.601 luma); None keeps the
            source's (a folder of grayscale and RGB files gives 3).
        labels: None for images only; `"inferred"` for `(images, labels)` with labels from
            the source (a folder's subfolders, a dataset's label); or, for an array
            source, integer class ids `(N,)`.
        shuffle: shuffle at every pass (arrays and folders fully, datasets with a buffer of
            `shuffle_buffer`, tfds files too); a DataLoader keeps its own order.
        seed: int seed of the shuffling.
        split: tfds split (`"train"`, `"test[:10%]"`, ...).
        data_dir: tfds folder holding the prepared set; None for TFDS's default.
        drop_remainder: drop the last partial batch (static batch shape).
        shuffle_buffer: buffer size when shuffling a dataset.

    Returns:
        A prefetched `tf.data.Dataset` of float32 `(B, H, W, C)` batches (or
        `(images, int32 labels)`), with attributes `skipped` (list of `(path, reason)`),
        `class_names` (or None) and `num_channels`.

    Examples:
        >>> x = (np.random.default_rng(0).random((10, 24, 20, 3)) * 255).astype("uint8")
        >>> ds = image_dataset(x, image_size=16, batch_size=4, augmentation="mae")
        >>> [tuple(batch.shape) for batch in ds]
        [(4, 16, 16, 3), (4, 16, 16, 3), (2, 16, 16, 3)]
    """
    import tensorflow as tf

    check_positive_int(batch_size, "batch_size")
    check_positive_int(shuffle_buffer, "shuffle_buffer")
    size = None if image_size is None else to_2tuple(image_size, "image_size")
    if resize not in RESIZE_MODES:
        raise ValueError(f"`resize` must be one of {RESIZE_MODES}, got {resize!r}.")
    if num_channels not in (None, 1, 3):
        raise ValueError(f"`num_channels` must be None, 1 or 3, got {num_channels!r}.")
    for value, name in ((shuffle, "shuffle"), (drop_remainder, "drop_remainder")):
        if not isinstance(value, bool):
            raise TypeError(f"`{name}` must be a bool, got {value!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, got {seed!r}.")
    if isinstance(augmentation, str):
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"`augmentation` must be None, one of {sorted(AUGMENTATIONS)} or a callable, "
                             f"got {augmentation!r}.")
        if size is None:
            raise ValueError(f"`augmentation`={augmentation!r} needs `image_size`.")
        augmentation = AUGMENTATIONS[augmentation](size, seed=int(seed))
    elif augmentation is not None and not callable(augmentation):
        raise TypeError(f"`augmentation` must be None, a preset name or a callable, got {augmentation!r}.")
    if isinstance(labels, str) and labels != "inferred":
        raise ValueError(f"`labels` must be None, 'inferred' or an array of class ids, got {labels!r}.")
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, np.ndarray) for s in source):
        source = stack_images(source)  # one array, or a ValueError naming the first image of another shape
    if labels is not None and not isinstance(labels, str) and not isinstance(source, np.ndarray):
        raise ValueError("`labels` as an array is only for an array `source`; use labels='inferred' otherwise.")

    skipped = []
    if isinstance(source, str) and source.startswith("tfds:"):
        dataset, channels, class_names = _tfds_source(source, split, data_dir, labels, shuffle, seed, shuffle_buffer)
    elif isinstance(source, (str, os.PathLike, ImageFolder)):
        folder = source if isinstance(source, ImageFolder) else ImageFolder(source)
        if size is None and augmentation is None and len(set(folder.sizes)) > 1:
            raise ValueError(f"The images under {folder.path!r} differ in size ({len(set(folder.sizes))} sizes, "
                             f"e.g. {sorted(set(folder.sizes))[:3]}); pass `image_size`.")
        dataset, channels, class_names = _folder_source(folder, labels, shuffle, seed)
        skipped = folder.skipped  # the same list: files failing to decode later are added
    elif isinstance(source, np.ndarray):
        dataset, channels, class_names = _array_source(source, labels, shuffle, seed)
        channels = [channels]
    elif isinstance(source, tf.data.Dataset):
        dataset, channels, class_names = _dataset_source(source, labels, shuffle, seed, shuffle_buffer)
    elif _is_torch_loader(source):
        dataset, channels, class_names = _torch_source(source, labels)
    else:
        raise TypeError(f"`source` must be {', '.join(SOURCE_KINDS)}; got {type(source).__name__} {source!r:.80}.")
    target = _target_channels(channels, num_channels)
    spatial = dataset.element_spec[0].shape[:2]
    if size is None and augmentation is None and not spatial.is_fully_defined() and batch_size > 1:
        raise ValueError("The `source` images have no fixed size; pass `image_size` to batch them.")

    def prepare(image, label):
        image = convert_channels(to_float(image), target)
        if augmentation is not None:
            image = augmentation(image)
        elif size is not None:
            image = resize_images(image, size, resize)
        return image, label

    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if labels is None:
        dataset = dataset.map(lambda x, y: x)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    dataset.skipped, dataset.class_names, dataset.num_channels = skipped, class_names, target
    return dataset
