"""Which keras_mim variable each official-MAE key fills, and how the tensor is laid out.

torch `Linear.weight` is `(out, in)`, a Keras Dense kernel `(in, out)`; the patch
embedding `Conv2d.weight` is `(D, C, ph, pw)`, keras_mim's `PatchEmbedding` kernel
`(ph, pw, C, D)`. The fused qkv weight has the same `[q; k; v]` row order (heads
contiguous inside each) in timm, official MAE and keras_mim, so it only transposes.
"""
import collections
import inspect

import numpy as np

from keras_mim.models.mae_decoder import MAEDecoder
from keras_mim.models.vit_encoder import ViTEncoder

COPY, LINEAR, CONV, POS = "copy", "linear", "conv", "pos"

#: One checkpoint tensor: its official key, the Keras variable it fills, the layout
#: conversion, and for position tables the `PositionEmbedding` layer that owns it.
Entry = collections.namedtuple("Entry", "key variable kind owner", defaults=(None,))


def to_keras(kind, array):
    """Checkpoint (torch) layout -> Keras layout."""
    if kind == LINEAR:
        return np.transpose(array)
    if kind == CONV:  # (D, C, *patch) -> (*patch, C, D)
        return np.transpose(array, tuple(range(2, array.ndim)) + (1, 0))
    return array


def to_torch(kind, array):
    """Keras layout -> checkpoint (torch) layout."""
    if kind == LINEAR:
        return np.transpose(array)
    if kind == CONV:  # (*patch, C, D) -> (D, C, *patch)
        n = array.ndim
        return np.transpose(array, (n - 1, n - 2) + tuple(range(n - 2)))
    return array


def _dense(prefix, layer):
    out = [Entry(f"{prefix}.weight", layer.kernel, LINEAR)]
    if layer.use_bias:
        out.append(Entry(f"{prefix}.bias", layer.bias, COPY))
    return out


def _norm(prefix, layer):
    return [Entry(f"{prefix}.weight", layer.gamma, COPY), Entry(f"{prefix}.bias", layer.beta, COPY)]


def block_entries(prefix, block):
    """Entries of one `TransformerBlock` under `prefix` (e.g. `"blocks.3"`)."""
    out = _norm(f"{prefix}.norm1", block.norm1) + _dense(f"{prefix}.attn.qkv", block.attn.qkv)
    out += _dense(f"{prefix}.attn.proj", block.attn.proj) + _norm(f"{prefix}.norm2", block.norm2)
    out += _dense(f"{prefix}.mlp.fc1", block.mlp.fc1) + _dense(f"{prefix}.mlp.fc2", block.mlp.fc2)
    if block.layer_scale is not None:
        out += [Entry(f"{prefix}.ls1.gamma", block.ls1.gamma, COPY),
                Entry(f"{prefix}.ls2.gamma", block.ls2.gamma, COPY)]
    return out


def encoder_entries(encoder):
    """Entries of a `ViTEncoder` (its mask token, if any, has no official counterpart
    and is left as it is)."""
    if not isinstance(encoder, ViTEncoder):
        raise TypeError(f"Expected a ViTEncoder (or a model with one as `.encoder`), got {type(encoder).__name__}.")
    if encoder.num_frames is not None:
        raise ValueError("Checkpoint conversion covers image ViT encoders; this one is a video encoder.")
    out = [Entry("cls_token", encoder.cls_token, COPY)] if encoder.use_cls_token else []
    out.append(Entry("pos_embed", encoder.pos_embed.pos_embed, POS, encoder.pos_embed))
    out += [Entry("patch_embed.proj.weight", encoder.patch_embed.proj.kernel, CONV),
            Entry("patch_embed.proj.bias", encoder.patch_embed.proj.bias, COPY)]
    for i, block in enumerate(encoder.blocks):
        out += block_entries(f"blocks.{i}", block)
    return out + _norm("norm", encoder.norm)


def decoder_entries(decoder):
    """Entries of a `MAEDecoder`."""
    if decoder.pos_embed_mode != "sincos" or len(decoder.grid_shape) != 2:
        raise ValueError("Checkpoint conversion covers MAE decoders on 2D grids with the 2D sin-cos table.")
    out = _dense("decoder_embed", decoder.embed) + [Entry("mask_token", decoder.mask_token, COPY)]
    out.append(Entry("decoder_pos_embed", decoder.pos_embed.pos_embed, POS, decoder.pos_embed))
    for i, block in enumerate(decoder.blocks):
        out += block_entries(f"decoder_blocks.{i}", block)
    return out + _norm("decoder_norm", decoder.norm) + _dense("decoder_pred", decoder.pred)


def _builds_from_config(model):
    """Whether `model.build()` takes no argument (keras_mim's models know their input shapes)."""
    params = inspect.signature(model.build).parameters.values()
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def model_parts(model):
    """`(encoder, decoder or None)` of a `ViTEncoder`, or of any model with a
    `ViTEncoder` as `.encoder` (and an `MAEDecoder` as `.decoder`, if it has one)."""
    if isinstance(model, ViTEncoder):
        return model, None
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, ViTEncoder):
        raise TypeError(
            f"`model` must be a ViTEncoder or a model with a ViTEncoder as `.encoder` (MaskedAutoencoder, "
            f"a classifier, ...), got {type(model).__name__}."
        )
    if not model.built and _builds_from_config(model):  # every shape is known from its config
        model.build()
    if not encoder.built:  # any other model (a classifier): the encoder knows its own shapes
        encoder.build()
    decoder = getattr(model, "decoder", None)
    return encoder, decoder if isinstance(decoder, MAEDecoder) else None


def model_entries(model, include_decoder=True):
    """All entries of `model` (see `model_parts`)."""
    encoder, decoder = model_parts(model)
    out = encoder_entries(encoder)
    if include_decoder and decoder is not None:
        out += decoder_entries(decoder)
    return out
