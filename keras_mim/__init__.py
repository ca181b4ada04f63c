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
    ImageClassifier,
    LinearProbe,
    MAEDecoder,
    ViTEncoder,
    build_method,
    get_method_spec,
    list_methods,
    list_presets,
)

# Every registered pretraining method's model class (MaskedAutoencoder, SimMIM, HPM, ...).
for _spec in models.METHODS.values():
    globals()[_spec.model.__name__] = _spec.model
del _spec

__version__ = "0.1.0"
