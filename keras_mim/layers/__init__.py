"""Reusable blocks: patching, position tables, attention and transformer blocks, token ops,
sparse (masked) convolution helpers, the Hiera blocks."""

from keras_mim.layers.attention import MultiHeadSelfAttention
from keras_mim.layers.cross_attention import MultiHeadCrossAttention
from keras_mim.layers.cross_attention_block import CrossAttentionBlock
from keras_mim.layers.drop_path import DropPath
from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.layer_scale import LayerScale
from keras_mim.layers.mlp import MLP
from keras_mim.layers.patching import PatchEmbedding, patchify, unpatchify
from keras_mim.layers.pixel_shuffle import PixelShuffleHead, pixel_shuffle
from keras_mim.layers.pos_embed import PositionEmbedding, sincos_2d, sincos_3d, sincos_flat
from keras_mim.layers.projection_head import ProjectionHead
from keras_mim.layers.random_resized_crop import RandomResizedCrop
from keras_mim.layers.token_ops import gather_tokens, pool_tokens, restore_tokens
from keras_mim.layers.transformer_block import TransformerBlock
from keras_mim.layers.convnext_block import ConvNeXtBlock
from keras_mim.layers.global_response_norm import GlobalResponseNorm
from keras_mim.layers.sparse_batch_norm import SparseBatchNormalization
from keras_mim.layers.unet_block import UNetBlock
from keras_mim.layers.hiera_block import HieraBlock
from keras_mim.layers.mask_unit_attention import MaskUnitAttention
from keras_mim.layers.log_mel_spectrogram import LogMelSpectrogram
from keras_mim.layers.window_attention import WindowAttention
from keras_mim.layers.window_transformer_block import WindowTransformerBlock
