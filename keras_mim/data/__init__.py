"""Datasets: small built-in sample images (offline), later image folders, tfds, arrays."""

from keras_mim.data.sample_datasets import (
    DEFAULT_IMAGE_SIZES,
    list_sample_datasets,
    load_sample_images,
)
