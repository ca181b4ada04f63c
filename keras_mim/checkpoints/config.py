"""Infer keras_mim model arguments from a checkpoint's tensors (and its HF config or
official `args`, when there is one)."""

import inspect
import math
import re
import warnings

import numpy as np

from keras_mim.checkpoints.common import CheckpointError
from keras_mim.layers.pos_embed import sincos_2d
from keras_mim.models.masked_autoencoder import MaskedAutoencoder
from keras_mim.models.presets import DECODER_OVERRIDES, PRESETS
from keras_mim.models.vit_encoder import ViTEncoder
from keras_mim.utils import to_2tuple

#: `ViTMAEConfig` defaults (transformers), for config.json files that leave some out.
HF_DEFAULTS = dict(
    model_type="vit_mae", hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu", layer_norm_eps=1e-12, image_size=224, patch_size=16,
    num_channels=3, qkv_bias=True, decoder_num_attention_heads=16, decoder_hidden_size=512,
    decoder_num_hidden_layers=8, decoder_intermediate_size=2048, mask_ratio=0.75, norm_pix_loss=False,
)
#: LayerNorm epsilon of each layout when nothing says otherwise.
DEFAULT_EPSILON = {"official": 1e-6, "hf": 1e-12}
#: Largest difference from keras_mim's sin-cos table for a table to count as that fixed table.
FIXED_TABLE_ATOL = 1e-4
ENCODER_ARGS = set(inspect.signature(ViTEncoder.__init__).parameters) - {"self", "kwargs"}
MODEL_ARGS = set(inspect.signature(MaskedAutoencoder.__init__).parameters) - {"self", "kwargs", "encoder", "decoder"}


def sincos_table_error(table, grid_shape, has_cls):
    """Max |difference| between a checkpoint position table `(1, [1 +] N, D)` and the
    fixed 2D sin-cos table of `grid_shape` (with a zero cls row); inf if shapes differ."""
    table = np.asarray(table, np.float64)[0]
    dim = table.shape[-1]
    if dim % 4 or table.shape[0] != math.prod(grid_shape) + int(has_cls):
        return math.inf
    ref = sincos_2d(dim, grid_shape)
    if has_cls:
        ref = np.concatenate([np.zeros((1, dim)), ref], axis=0)
    return float(np.max(np.abs(table - ref)))


def square_grid(num_tokens, key):
    """`(g, g)` for `g * g == num_tokens`, else a clear error."""
    g = math.isqrt(num_tokens)
    if g * g != num_tokens:
        raise CheckpointError(
            f"`{key}` has {num_tokens} patch rows, not a square grid; pass `image_size=(H, W)`."
        )
    return (g, g)


def _count(state_dict, stack):
    return len({m[1] for k in state_dict if (m := re.match(rf"^{stack}\.(\d+)\.", k))})


def _tensor(state_dict, key):
    if key not in state_dict:
        raise CheckpointError(f"Cannot infer the model from the checkpoint: it has no `{key}` tensor.")
    return state_dict[key]


def _ratio(hidden, width, what):
    ratio = hidden / width
    if int(width * ratio) != hidden:
        raise CheckpointError(f"{what}: an MLP of {hidden} for width {width} is not representable.")
    return ratio


def _heads(width, depth, patch, arch, stack):
    """Heads of an encoder (`stack="blocks"`) or decoder from the official arch name,
    the preset table, or the convention (head width 64 / 32), in that order."""
    specs = [PRESETS[n] for n in (arch, f"mae_{arch}") if arch and n in PRESETS and "encoder_class" not in PRESETS[n]]
    specs += [s for s in PRESETS.values() if not s["encoder"].get("num_frames") and "encoder_class" not in s]
    for spec in specs:
        if stack == "blocks":
            enc = spec["encoder"]
            if (enc["embed_dim"], enc["depth"], to_2tuple(enc["patch_size"], "patch_size")) == (width, depth, patch):
                return enc["num_heads"]
        elif spec.get("decoder") and (spec["decoder"]["decoder_dim"], spec["decoder"]["depth"]) == (width, depth):
            return spec["decoder"]["num_heads"]
    head_dim = 64 if stack == "blocks" else 32
    name = "num_heads" if stack == "blocks" else "decoder_num_heads"
    if width % head_dim:
        raise CheckpointError(
            f"Cannot infer `{name}` for width {width} x {depth} blocks (no preset matches and {width} is "
            f"not a multiple of {head_dim}); pass `{name}=`."
        )
    warnings.warn(
        f"No preset matches width {width} x {depth} blocks; assuming heads of width {head_dim} "
        f"({name}={width // head_dim}). Pass `{name}=` if the checkpoint used another count.",
        stacklevel=4,
    )
    return width // head_dim


def split_overrides(overrides):
    """`(encoder, decoder, model)` keyword arguments from `load_mae_checkpoint` overrides."""
    enc, dec, model = {}, {}, {}
    for key, value in overrides.items():
        if key in ("seed", "dtype"):
            enc[key] = model[key] = value
            if key == "dtype":
                dec[key] = value
        elif key in ENCODER_ARGS:
            enc[key] = value
        elif key in DECODER_OVERRIDES:
            dec[key if key == "decoder_dim" else key[len("decoder_"):]] = value
        elif key in MODEL_ARGS or key == "name":
            model[key] = value
        else:
            raise TypeError(
                f"Unknown argument {key!r}; expected ViTEncoder arguments {sorted(ENCODER_ARGS)}, "
                f"{', '.join(DECODER_OVERRIDES)} or MaskedAutoencoder arguments {sorted(MODEL_ARGS)}."
            )
    return enc, dec, model


def infer_config(state_dict, layout="official", hf_config=None, args=None, name="", with_decoder=True,
                 **overrides):
    """keras_mim arguments that reproduce a checkpoint.

    Shapes come from the tensors: width, depth, channels, patch size, MLP ratio, qkv
    bias, cls token, LayerScale, image size (a square grid from `pos_embed`, unless
    the HF config or `image_size=` says otherwise), and whether the position table is
    MAE's fixed sin-cos one or a learned one. Heads are not in the tensors: they come
    from the HF config, the official arch name in `args.model`, the preset table, or
    the head-width convention (64 encoder, 32 decoder; with a warning).

    Args:
        state_dict: canonical (official-layout) dict of numpy arrays.
        layout: `"official"` or `"hf"` (sets the default LayerNorm epsilon and loss).
        hf_config: the HF config as a dict (config.json), or None.
        args: the official MAE `args` as a dict, or None.
        name: the file name (`mae_visualize_*` checkpoints use `norm_pix_loss=False`).
        with_decoder: infer the decoder too, when the checkpoint has one.
        **overrides: ViTEncoder arguments, `decoder_*` arguments and MaskedAutoencoder
            arguments, which win over what is inferred.

    Returns:
        dict with `"encoder"` (ViTEncoder arguments), `"decoder"` (MAEDecoder
        arguments, None without decoder tensors) and `"model"` (MaskedAutoencoder ones).

    Examples:
        >>> import numpy as np
        >>> sd = {"patch_embed.proj.weight": np.zeros((64, 3, 8, 8)), "cls_token": np.zeros((1, 1, 64)),
        ...       "pos_embed": np.zeros((1, 17, 64)), "blocks.0.mlp.fc1.weight": np.zeros((256, 64))}
        >>> enc = infer_config(sd, num_heads=4)["encoder"]
        >>> enc["image_size"], enc["embed_dim"], enc["depth"], enc["num_heads"], enc["pos_embed"]
        ((32, 32), 64, 1, 4, 'learned')
    """
    hf = {**HF_DEFAULTS, **hf_config} if hf_config else None
    args = args or {}
    enc_over, dec_over, model_over = split_overrides(overrides)
    weight = _tensor(state_dict, "patch_embed.proj.weight")
    if weight.ndim != 4:
        raise CheckpointError(f"`patch_embed.proj.weight` has shape {weight.shape}; expected a 2D conv (D, C, ph, pw).")
    width, channels, patch = weight.shape[0], weight.shape[1], tuple(weight.shape[2:])
    depth = _count(state_dict, "blocks")
    has_cls = "cls_token" in state_dict
    table = _tensor(state_dict, "pos_embed")
    rows = table.shape[1] - int(has_cls)
    size = enc_over.get("image_size") or (hf["image_size"] if hf else None)
    grid = (
        tuple(s // p for s, p in zip(to_2tuple(size, "image_size"), patch)) if size else square_grid(rows, "pos_embed")
    )
    if math.prod(grid) != rows:  # a new image size: the table is checked / resized on load
        grid = square_grid(rows, "pos_embed")
    if hf is not None and hf["hidden_act"] != "gelu":
        raise CheckpointError(f"keras_mim's MLP uses exact GELU; the config asks for {hf['hidden_act']!r}.")
    arch = args.get("model")
    encoder = dict(
        image_size=tuple(g * p for g, p in zip(grid, patch)),
        patch_size=patch,
        num_channels=int(channels),
        embed_dim=int(width),
        depth=depth,
        num_heads=enc_over.get("num_heads") or (hf["num_attention_heads"] if hf else None),
        mlp_ratio=_ratio(_tensor(state_dict, "blocks.0.mlp.fc1.weight").shape[0], width, "blocks.0.mlp.fc1"),
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict,
        cls_token=has_cls,
        pos_embed="sincos" if sincos_table_error(table, grid, has_cls) <= FIXED_TABLE_ATOL else "learned",
        layer_scale=1e-5 if "blocks.0.ls1.gamma" in state_dict else None,  # its values come from the file
        norm_epsilon=float(hf["layer_norm_eps"]) if hf else DEFAULT_EPSILON[layout],
    )
    if encoder["num_heads"] is None:
        encoder["num_heads"] = _heads(width, depth, patch, arch, "blocks")
    encoder.update(enc_over)
    decoder = None
    if with_decoder and "decoder_embed.weight" in state_dict:
        dec_width, dec_depth = state_dict["decoder_embed.weight"].shape[0], _count(state_dict, "decoder_blocks")
        decoder = dict(
            decoder_dim=int(dec_width),
            depth=dec_depth,
            num_heads=dec_over.get("num_heads") or (hf["decoder_num_attention_heads"] if hf else None),
            mlp_ratio=_ratio(
                _tensor(state_dict, "decoder_blocks.0.mlp.fc1.weight").shape[0], dec_width, "decoder_blocks.0.mlp.fc1"
            ),
            norm_epsilon=encoder["norm_epsilon"],
        )
        if decoder["num_heads"] is None:
            decoder["num_heads"] = _heads(dec_width, dec_depth, patch, arch, "decoder_blocks")
        decoder.update(dec_over)
    if hf is not None:
        model = dict(mask_ratio=float(hf["mask_ratio"]), norm_pix_loss=bool(hf["norm_pix_loss"]))
    else:  # official pretraining uses norm_pix_loss; its visualisation checkpoints do not
        default_norm = layout == "official" and "visualize" not in name
        model = dict(mask_ratio=float(args.get("mask_ratio", 0.75)),
                     norm_pix_loss=bool(args.get("norm_pix_loss", default_norm)))
    model.update(model_over)
    return {"encoder": encoder, "decoder": decoder, "model": model}


def build_model(config, with_decoder=True):
    """A `MaskedAutoencoder` (or a bare `ViTEncoder`) from `infer_config` output."""
    encoder = ViTEncoder(**config["encoder"], name="encoder")
    if not with_decoder or config["decoder"] is None:
        return encoder
    model = MaskedAutoencoder(encoder, decoder=dict(config["decoder"]), **config["model"])
    model.build()  # every shape is known from the config
    return model
