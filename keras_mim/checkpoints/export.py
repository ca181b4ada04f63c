"""Export keras_mim encoders (and MAE decoders) as official-MAE / timm or Hugging Face
state dicts, and as Hugging Face model directories."""

import json
import os

import numpy as np
from keras import ops

from keras_mim.checkpoints.layouts import HF_NAMINGS, official_to_hf
from keras_mim.checkpoints.mapping import model_entries, model_parts, to_torch
from keras_mim.checkpoints.safetensors_file import save_safetensors

LAYOUTS = ("official", "timm", "hf")


def export_state_dict(model, layout="official", hf_naming="legacy", include_decoder=True):
    """The weights of a keras_mim model as a torch-layout state dict of numpy arrays.

    Args:
        model: a `ViTEncoder`, or a model with one as `.encoder` (a `MaskedAutoencoder`,
            a classifier, ...); an `MAEDecoder` as `.decoder` is exported too.
        layout: `"official"` (= `"timm"`): the official MAE / timm `VisionTransformer`
            keys (`blocks.0.attn.qkv.weight`, ...; `decoder_*` for the decoder).
            `"hf"`: Hugging Face `ViTMAEModel` / `ViTModel` keys for an encoder, and
            `ViTMAEForPreTraining` keys (`vit.` + encoder, `decoder.`) with a decoder.
        hf_naming: with `layout="hf"`: `"legacy"`, the names of published files and of
            `save_pretrained` (any transformers version reads them with
            `from_pretrained`), or `"v5"`, the module names of transformers>=5, which
            `model.load_state_dict(...)` expects there.
        include_decoder: export the MAE decoder when the model has one.

    Returns:
        dict key -> contiguous float32 numpy array (torch layouts: Linear weights
        `(out, in)`, the patch projection `(D, C, ph, pw)`). Convert with
        `torch.from_numpy` to load it into a torch model.

    Examples:
        >>> from keras_mim.models import ViTEncoder
        >>> enc = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2)
        >>> sd = export_state_dict(enc)
        >>> sd["patch_embed.proj.weight"].shape, sd["blocks.0.attn.qkv.weight"].shape
        ((32, 3, 4, 4), (96, 32))
        >>> sorted(export_state_dict(enc, layout="hf", hf_naming="v5"))[:2]
        ['embeddings.cls_token', 'embeddings.patch_embeddings.projection.bias']
    """
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {LAYOUTS}, got {layout!r}.")
    if hf_naming not in HF_NAMINGS:
        raise ValueError(f"`hf_naming` must be one of {HF_NAMINGS}, got {hf_naming!r}.")
    entries = model_entries(model, include_decoder)
    state = {
        e.key: np.ascontiguousarray(to_torch(e.kind, ops.convert_to_numpy(ops.cast(e.variable, "float32"))))
        for e in entries
    }
    if layout != "hf":
        return state
    encoder, decoder = model_parts(model)
    _check_hf_encoder(encoder)
    root = "vit." if include_decoder and decoder is not None else ""
    return {k: np.ascontiguousarray(v) for k, v in official_to_hf(state, hf_naming, root).items()}


def _check_hf_encoder(encoder):
    if not encoder.use_cls_token:
        raise ValueError("Hugging Face ViT models need a cls token; this encoder has `cls_token=False`.")
    if encoder.layer_scale is not None:
        raise ValueError("Hugging Face ViT / ViTMAE have no LayerScale; export with `layout='official'` (timm).")
    if encoder.patch_size[0] != encoder.patch_size[1]:
        raise ValueError(f"Hugging Face ViTMAE needs square patches, got patch_size={encoder.patch_size}.")


def export_hf_config(model, model_type="vit_mae"):
    """The Hugging Face config (a config.json dict) of a keras_mim model.

    Args:
        model: as in `export_state_dict`.
        model_type: `"vit_mae"` (`ViTMAEConfig`: `ViTMAEForPreTraining` when the model has
            an MAE decoder, else `ViTMAEModel` with `mask_ratio` 0) or `"vit"`
            (`ViTConfig` / `ViTModel`, encoder only).

    Returns:
        dict: `ViTMAEConfig(**d)` / `ViTConfig(**d)` rebuilds the config. HF ViTMAE always
        shuffles tokens by random noise, even at `mask_ratio` 0; pass `noise` (e.g.
        `arange`) to keep the grid order.

    Raises:
        ValueError: for what HF cannot hold: no cls token, LayerScale, rectangular patches,
            a decoder predicting other values than pixels, or an MAE with a decoder on
            non-square images (`ViTMAEForPreTraining` builds its decoder's sin-cos table for
            a square grid; its encoder alone exports on any grid).

    Examples:
        >>> from keras_mim.models import ViTEncoder
        >>> enc = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2)
        >>> cfg = export_hf_config(enc)
        >>> cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"], cfg["mask_ratio"]
        (32, 2, 1e-06, 0.0)
    """
    if model_type not in ("vit_mae", "vit"):
        raise ValueError(f"`model_type` must be 'vit_mae' or 'vit', got {model_type!r}.")
    encoder, decoder = model_parts(model)
    _check_hf_encoder(encoder)
    h, w = encoder.image_size
    hidden = int(encoder.blocks[0].mlp.fc1.units)
    config = dict(
        model_type=model_type, hidden_size=encoder.embed_dim, num_hidden_layers=encoder.depth,
        num_attention_heads=encoder.num_heads, intermediate_size=hidden, hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=encoder.norm_epsilon,
        image_size=h if h == w else [h, w], patch_size=encoder.patch_size[0],
        num_channels=encoder.num_channels, qkv_bias=encoder.qkv_bias,
    )
    if model_type == "vit":
        return dict(config, architectures=["ViTModel"])
    if decoder is None:
        return dict(config, architectures=["ViTMAEModel"], mask_ratio=0.0)
    if h != w:  # ViTMAEForPreTraining.__init__ builds its decoder table for a square grid
        raise ValueError(
            f"Hugging Face ViTMAEForPreTraining needs square images, got image_size={encoder.image_size}; "
            "export the encoder alone (`model.encoder`, a ViTMAEModel) instead."
        )
    patch_values = encoder.patch_size[0] * encoder.patch_size[1] * encoder.num_channels
    if decoder.output_dim != patch_values:
        raise ValueError(
            f"HF ViTMAE predicts pixels ({patch_values} values per patch); this decoder predicts "
            f"{decoder.output_dim} (another target). Export the encoder alone (`model.encoder`)."
        )
    target = getattr(model, "target", None)
    return dict(
        config, architectures=["ViTMAEForPreTraining"], decoder_hidden_size=decoder.decoder_dim,
        decoder_num_hidden_layers=decoder.depth, decoder_num_attention_heads=decoder.num_heads,
        decoder_intermediate_size=int(decoder.blocks[0].mlp.fc1.units),
        mask_ratio=float(getattr(model, "mask_ratio", 0.75)), norm_pix_loss=bool(getattr(target, "normalize", False)),
    )


def save_hf_pretrained(model, directory, model_type="vit_mae", overwrite=False):
    """Write a Hugging Face model directory (config.json + model.safetensors) that
    `ViTMAEForPreTraining` / `ViTMAEModel` / `ViTModel.from_pretrained(directory)` load.

    Args:
        model: as in `export_state_dict`.
        directory: created if missing.
        model_type: as in `export_hf_config`.
        overwrite: replace an existing `config.json` / `model.safetensors` in `directory`;
            by default they are left untouched and a `FileExistsError` is raised.

    Returns:
        The directory.

    Examples:
        >>> import os, tempfile
        >>> from keras_mim.models import ViTEncoder
        >>> enc = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2)
        >>> sorted(os.listdir(save_hf_pretrained(enc, tempfile.mkdtemp())))
        ['config.json', 'model.safetensors']
    """
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"`directory` {directory!r} exists and is not a folder.")
    existing = [n for n in ("config.json", "model.safetensors") if os.path.exists(os.path.join(directory, n))]
    if existing and not overwrite:
        raise FileExistsError(
            f"`directory` {directory!r} already holds {', '.join(existing)}; choose another "
            "folder or pass overwrite=True to replace them."
        )
    config = export_hf_config(model, model_type)
    state = export_state_dict(model, layout="hf", include_decoder=model_type == "vit_mae")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save_safetensors(state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    return directory
