from keras_mim.models.cross_attention_decoder import CrossAttentionDecoder
from keras_mim.models.data2vec import Data2Vec
from keras_mim.models.hpm import HPM, HPMSchedule
from keras_mim.models.image_classifier import ImageClassifier, get_encoder
from keras_mim.models.linear_probe import LinearProbe
from keras_mim.models.mae_decoder import MAEDecoder
from keras_mim.models.mask_align import MaskAlign
from keras_mim.models.masked_autoencoder import MaskedAutoencoder
from keras_mim.models.methods import METHODS, get_method
from keras_mim.models.mfm import MFM
from keras_mim.models.mr_mae import MRMAE
from keras_mim.models.presets import list_presets
from keras_mim.models.siamese_mae import SiameseMAE
from keras_mim.models.simmim import SimMIM
from keras_mim.models.video_mae import VideoMAE
from keras_mim.models.vit_encoder import ViTEncoder
