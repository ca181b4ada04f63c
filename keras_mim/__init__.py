"""keras_mim: masked image modeling in Keras 3, on TensorFlow, JAX and PyTorch."""

from keras_mim import callbacks, data, layers, losses, masking, models, targets, viz
from keras_mim.masking import MaskGenerator, RandomMaskGenerator
from keras_mim.models import (
    HPM,
    MFM,
    MRMAE,
    Data2Vec,
    MAEDecoder,
    MaskAlign,
    MaskedAutoencoder,
    SiameseMAE,
    SimMIM,
    VideoMAE,
    ViTEncoder,
    list_presets,
)

__version__ = "0.1.0"
