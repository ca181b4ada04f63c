"""Encoders, decoders, downstream models, and the pretraining methods with their registry.

Importing this package imports every module in it, so every method module registers
itself (`keras_mim.models.methods`), and the model class of every registered method is
exported here by its class name (a new method needs no line in this file).
"""

import importlib
import pkgutil

from keras_mim.models.attentive_probe import AttentiveProbe
from keras_mim.models.convnext_encoder import ConvNeXtEncoder
from keras_mim.models.cross_attention_decoder import CrossAttentionDecoder
from keras_mim.models.group_channel_encoder import GroupChannelEncoder
from keras_mim.models.hiera_encoder import HieraEncoder
from keras_mim.models.image_classifier import ImageClassifier, get_encoder
from keras_mim.models.keras_hub_vit import to_keras_hub
from keras_mim.models.linear_probe import LinearProbe
from keras_mim.models.mae_decoder import MAEDecoder
from keras_mim.models.multi_modal_encoder import MultiModalEncoder
from keras_mim.models.methods import METHODS, MethodSpec, get_method, get_method_spec, list_methods, register_method
from keras_mim.models.partial_decoding import PartialDecoding
from keras_mim.models.point_classifier import PointClassifier
from keras_mim.models.point_encoder import PointEncoder
from keras_mim.models.presets import build_method, list_presets
from keras_mim.models.sparse_cnn import SparseCNN
from keras_mim.models.vit_encoder import ViTEncoder

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

# The method classes (MaskedAutoencoder, SimMIM, ...), and their helpers such as HPMSchedule.
from keras_mim.models.hpm import HPMSchedule  # noqa: E402

for _spec in METHODS.values():
    globals()[_spec.model.__name__] = _spec.model

__all__ = sorted(
    {"AttentiveProbe", "ConvNeXtEncoder", "CrossAttentionDecoder", "GroupChannelEncoder", "HieraEncoder",
     "ImageClassifier", "LinearProbe",
     "MAEDecoder", "MultiModalEncoder", "PartialDecoding", "PointClassifier", "PointEncoder", "SparseCNN", "ViTEncoder",
     "HPMSchedule", "METHODS", "MethodSpec", "build_method", "get_encoder", "get_method", "get_method_spec",
     "list_methods", "list_presets", "register_method", "to_keras_hub"}
    | {spec.model.__name__ for spec in METHODS.values()}
)
del _module, _spec
