from keras_mim.models.mae_decoder import MAEDecoder
from keras_mim.models.masked_autoencoder import MaskedAutoencoder
from keras_mim.models.presets import list_presets
from keras_mim.models.vit_encoder import ViTEncoder
