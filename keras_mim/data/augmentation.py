"""Pretraining augmentation pipelines: a random resized crop and an optional horizontal flip.

Both presets are the same two Keras preprocessing layers, `keras_mim.layers.RandomResizedCrop`
and `keras.layers.RandomFlip("horizontal")`, in a `keras.layers.Pipeline`. Such a pipeline
runs inside `tf.data` on every backend (`ds.map(pipeline)`) and inside a model on device;
it works on one image `(H, W, C)` or a batch (a box and a flip coin per image) and turns
any image size into `image_size`. Images stay in `[0, 1]`: the mean/std normalisation of
the official recipes is left to the model, as everywhere in keras_mim.
"""

import keras

from keras_mim.layers.random_resized_crop import RandomResizedCrop
from keras_mim.utils import to_2tuple


def _pipeline(image_size, scale, ratio, horizontal_flip, seed, name):
    height, width = to_2tuple(image_size, "image_size")
    if not isinstance(horizontal_flip, bool):
        raise TypeError(f"`horizontal_flip` must be a bool, got {horizontal_flip!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"`seed` must be an int or None, got {seed!r}.")
    layers = [RandomResizedCrop(height, width, scale=scale, ratio=ratio, seed=seed)]
    if horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=None if seed is None else seed + 1))
    return keras.layers.Pipeline(layers, name=name)


def mae_augmentation(image_size, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), horizontal_flip=True, seed=None):
    """MAE's pretraining augmentation: `RandomResizedCrop(scale=(0.2, 1.0))` + horizontal flip.

    As the official `main_pretrain.py` (`RandomResizedCrop(input_size, scale=(0.2, 1.0),
    interpolation=3)`, `RandomHorizontalFlip()`), except for bilinear (antialiased)
    rather than bicubic resizing, and no normalisation (images stay in `[0, 1]`).

    Args:
        image_size: int or `(H, W)` of the output images.
        scale: `(low, high)` area range of the crop, as a fraction of the image.
        ratio: `(low, high)` aspect-ratio range `w / h` of the crop.
        horizontal_flip: flip each image left-right with probability 0.5.
        seed: optional int seed (the flip uses `seed + 1`).

    Returns:
        A `keras.layers.Pipeline` taking `(H, W, C)` or `(B, H, W, C)` images of any size.
        At inference (`training=False`) it is a deterministic centre crop, resized.

    Examples:
        >>> import numpy as np
        >>> augment = mae_augmentation(16, seed=0)
        >>> tuple(augment(np.random.default_rng(0).random((2, 40, 30, 3), dtype="float32")).shape)
        (2, 16, 16, 3)
    """
    return _pipeline(image_size, scale, ratio, horizontal_flip, seed, "mae_augmentation")


def medical_augmentation(image_size, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), horizontal_flip=False, seed=None):
    """Milder pretraining augmentation for medical images (X-rays, CT/MR slices, microscopy).

    The same crop as `mae_augmentation` but keeping at least half the image
    (`scale=(0.5, 1.0)`): findings are small and their anatomical context matters, so
    crops that show a few percent of a chest X-ray teach little. No flip by default:
    left and right are not interchangeable in anatomy (heart side, laterality markers);
    pass `horizontal_flip=True` for images without a handedness (microscopy, dermoscopy).
    Every choice is an argument.

    Args:
        image_size: as in `mae_augmentation`.
        scale: as in `mae_augmentation`.
        ratio: as in `mae_augmentation`.
        horizontal_flip: as in `mae_augmentation`.
        seed: as in `mae_augmentation`.

    Returns:
        A `keras.layers.Pipeline`, as `mae_augmentation`.

    Examples:
        >>> import numpy as np
        >>> augment = medical_augmentation((16, 24), seed=0)
        >>> tuple(augment(np.zeros((64, 64, 1), "float32")).shape)
        (16, 24, 1)
    """
    return _pipeline(image_size, scale, ratio, horizontal_flip, seed, "medical_augmentation")
