"""Datasets: user images (arrays, folders, tf.data, tfds, PyTorch DataLoader) and the
pretraining augmentation, small built-in sample images (offline, digits with a fixed labelled
split), synthetic and file video clips, two-view pairs, paired modalities (generated scenes,
folders of paired files), generated multispectral tiles and their time series, the
fine-tuning augmentation pipeline."""

from keras_mim.data.augmentation import mae_augmentation, medical_augmentation
from keras_mim.data.clips import ClipFolder, clip_dataset, load_clips
from keras_mim.data.finetune_augment import finetune_dataset, rand_augment
from keras_mim.data.image_folder import IMAGE_EXTENSIONS, ImageFolder
from keras_mim.data.images import image_dataset
from keras_mim.data.moving_shapes import moving_shapes
from keras_mim.data.multispectral import band_normalize, band_statistics, multispectral_scenes, multispectral_series
from keras_mim.data.paired_folder import PairedFolder
from keras_mim.data.paired_scenes import paired_scenes
from keras_mim.data.sample_datasets import (
    DEFAULT_IMAGE_SIZES,
    list_sample_datasets,
    load_labelled_digits,
    load_sample_images,
)
from keras_mim.data.views import cropmae_views, ibot_views, random_resized_crop_box, siammae_views, view_dataset
