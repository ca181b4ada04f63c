"""keras_mim: masked image modeling in Keras 3, on TensorFlow, JAX and PyTorch."""

from keras_mim import (
    callbacks,
    checkpoints,
    data,
    distribute,
    evaluation,
    layers,
    losses,
    masking,
    models,
    optimizers,
    targets,
    viz,
)
from keras_mim.checkpoints import export_state_dict, load_mae_checkpoint, save_hf_pretrained
from keras_mim.masking import MaskGenerator, RandomMaskGenerator
from keras_mim.models import (
    HPM,
    ImageClassifier,
    LinearProbe,
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
