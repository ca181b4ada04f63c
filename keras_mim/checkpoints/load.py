"""Load official MAE, timm and Hugging Face ViT / ViTMAE weights into keras_mim models."""

import math
import warnings

import numpy as np
from keras import ops

from keras_mim.checkpoints.common import CheckpointError, describe_keys
from keras_mim.checkpoints.config import (
    FIXED_TABLE_ATOL,
    HF_DEFAULTS,
    build_model,
    infer_config,
    sincos_table_error,
    square_grid,
)
from keras_mim.checkpoints.layouts import describe_hf, detect_layout, to_official
from keras_mim.checkpoints.mapping import POS, model_entries, model_parts, to_keras, to_torch
from keras_mim.checkpoints.sources import read_state_dict
from keras_mim.layers.pos_embed import PositionEmbedding


def _name(key, layout, prefix=""):
    return describe_hf(key, prefix) if layout == "hf" else prefix + key


def _position_table(entry, value, key):
    """The value to assign to a position table; None to keep the layer's own table.

    Fixed (sin-cos) tables must match keras_mim's table on the checkpoint's grid; on
    the same grid the checkpoint's copy is assigned (its cls row with it), on another
    grid (a new image size) the layer keeps its own table. Learned tables are copied,
    or resized bicubically to the new grid (as MAE's `interpolate_pos_embed`). Tables
    of another rank or width are returned as they are (reported as a shape mismatch).
    """
    layer, target = entry.owner, tuple(entry.variable.shape)
    if value.ndim != 3 or value.shape[-1] != target[-1]:
        return value
    has_cls = layer.cls_token
    rows = value.shape[1] - int(has_cls)
    same = value.shape == target
    grid = layer.grid_shape if same else square_grid(rows, key)
    if layer.mode != "learned":
        error = sincos_table_error(value, grid, has_cls)
        if error > FIXED_TABLE_ATOL:
            fix = (
                "keras_mim's MAE decoder only has the fixed table" if entry.key == "decoder_pos_embed" else
                "Build the encoder with `pos_embed='learned'` (load_mae_checkpoint(path) does so by itself)"
            )
            raise CheckpointError(
                f"`{key}` (-> `{entry.variable.path}`) is not the fixed 2D sin-cos table the model uses "
                f"(max difference {error:.3g}); the checkpoint has a learned or different table. {fix}."
            )
        return value if same else None
    if same:
        return value
    resized = PositionEmbedding(grid, mode="learned", cls_token=has_cls)
    resized.build((None, rows, value.shape[-1]))
    resized.pos_embed.assign(value.astype("float32"))
    table = ops.convert_to_numpy(resized.patch_embedding(layer.grid_shape))
    return np.concatenate([value[:, : int(has_cls)], table], axis=1) if has_cls else table


def plan_assignment(entries, state_dict, origin=None, layout="official", allow_extra=False, ignore=(), prefix=""):
    """Check a checkpoint against a model's entries; return `[(variable, value)]`.

    Nothing is assigned here: every problem (missing keys, unexpected keys unless
    allowed, shape mismatches, a position table that does not fit) raises first.
    Keys starting with one of `ignore` may be left over; `prefix` is the checkpoint's
    key prefix (`"vit."`, `"module."`), used to name missing keys.
    """
    origin = origin or {}
    missing = [e.key for e in entries if e.key not in state_dict]
    if missing:
        hint = ""
        if any(k.startswith("norm.") for k in missing) and "fc_norm.weight" in state_dict:
            hint = (" The checkpoint was fine-tuned with global pooling (`fc_norm` replaces `norm`); "
                    "keras_mim's encoder ends with `norm`.")
        no_decoder = "decoder_embed.weight" not in state_dict
        if no_decoder and any(k.startswith("decoder") or k == "mask_token" for k in missing):
            hint += (" It has no MAE decoder: load it into the encoder alone, "
                     "`load_mae_checkpoint(path, model.encoder)`.")
        raise CheckpointError(
            f"The checkpoint lacks {len(missing)} tensor(s) the model needs: "
            f"{describe_keys([_name(k, layout, prefix) for k in missing])}.{hint}"
        )
    used = {e.key for e in entries}
    extra = [k for k in state_dict if k not in used and not any(k.startswith(p) for p in ignore)]
    if extra and not allow_extra:
        raise CheckpointError(
            f"The checkpoint has {len(extra)} tensor(s) the model does not use: "
            f"{describe_keys([origin.get(k, k) for k in extra])}. Pass `allow_extra=True` to skip them "
            "(e.g. a classifier head or a decoder when loading an encoder)."
        )
    plan, problems = [], []
    for entry in entries:
        key = origin.get(entry.key, entry.key)
        value = np.asarray(state_dict[entry.key])
        target = tuple(entry.variable.shape)
        if entry.kind == POS:
            value = _position_table(entry, value, key)
            if value is None:
                continue  # a fixed table on a new image size: the layer keeps its own
        converted = to_keras(entry.kind, value)
        if converted.shape != target:
            problems.append(
                f"`{key}` (-> `{entry.variable.path}`): checkpoint shape {value.shape}, the model needs "
                f"{to_torch(entry.kind, np.empty(target, np.uint8)).shape}"
            )
            continue
        plan.append((entry.variable, converted))
    if problems:
        raise CheckpointError(
            f"{len(problems)} checkpoint tensor(s) do not fit the model: " + "; ".join(problems[:6])
            + (f"; ... ({len(problems) - 6} more)" if len(problems) > 6 else "")
            + ". Build the model from the checkpoint (`load_mae_checkpoint(path)`) or match its configuration."
        )
    return plan


def _check_hf_config(model, hf_config):
    """Heads are invisible in the shapes: compare them with the HF config; warn on
    another LayerNorm epsilon."""
    cfg = {**HF_DEFAULTS, **hf_config}
    encoder, decoder = model_parts(model)
    pairs = [("num_attention_heads", encoder.num_heads, "encoder")]
    if decoder is not None:
        pairs.append(("decoder_num_attention_heads", decoder.num_heads, "decoder"))
    for field, heads, part in pairs:
        if cfg[field] != heads:
            raise CheckpointError(
                f"The checkpoint config has {field}={cfg[field]} but the model's {part} has {heads} heads."
            )
    if not math.isclose(cfg["layer_norm_eps"], encoder.norm_epsilon, rel_tol=1e-3):
        warnings.warn(
            f"The checkpoint was trained with LayerNorm epsilon {cfg['layer_norm_eps']} but the model uses "
            f"{encoder.norm_epsilon}; outputs will differ slightly (build with `norm_epsilon=`).",
            stacklevel=3,
        )


def _as_dict(config):
    if config is None or isinstance(config, dict):
        return config
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise TypeError(f"`config` must be a dict (config.json) or a transformers config, got {type(config).__name__}.")


def load_mae_checkpoint(source, model=None, *, config=None, allow_extra=False, encoder_only=False, **overrides):
    """Load published MAE / ViT weights into keras_mim, on any Keras backend, without torch.

    Reads official MAE files (`mae_pretrain_vit_{base,large,huge}.pth`: encoder only;
    `mae_visualize_vit_*.pth` and full training checkpoints: encoder and decoder;
    `{"model": state_dict, "args": ...}`), timm `VisionTransformer` state dicts, and
    Hugging Face `ViTMAEForPreTraining` / `ViTMAEModel` / `ViTModel` weights (a model
    directory, or a bare `.safetensors` / `.bin` file plus `config=`). Nothing is
    downloaded. Position tables: fixed sin-cos tables are checked against keras_mim's
    and copied (a new `image_size` keeps keras_mim's own table); learned ones are
    copied or resized bicubically.

    Args:
        source: a file or HF directory path, or an in-memory state dict (see
            `read_state_dict`).
        model: None to build the model from the checkpoint (a `MaskedAutoencoder` when
            it has decoder tensors, else a `ViTEncoder`), or an existing `ViTEncoder`,
            `MaskedAutoencoder`, or any model with a `ViTEncoder` as `.encoder` (e.g. a
            classifier: only its encoder is loaded) to fill in place.
        config: for HF weights without a directory: the config as a dict (config.json)
            or a transformers config object.
        allow_extra: skip checkpoint tensors the model does not use (a fine-tuned
            head, a decoder) instead of raising.
        encoder_only: with `model=None`, build and load only the `ViTEncoder`.
        **overrides: with `model=None`: arguments that win over the inferred ones
            (`num_heads`, `decoder_num_heads`, `image_size`, `drop_path_rate`,
            `mask_ratio`, `norm_pix_loss`, `seed`, ...).

    Returns:
        The loaded model (`model` itself when given).

    Raises:
        CheckpointError: an unreadable or unknown file, missing or (unless allowed)
            unexpected tensors, or tensors whose shapes do not fit; raised before any
            variable is assigned.

    Examples:
        >>> import os, tempfile, keras, numpy as np
        >>> from keras_mim.models import ViTEncoder
        >>> from keras_mim.checkpoints import export_state_dict, save_safetensors
        >>> enc = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
        >>> path = os.path.join(tempfile.mkdtemp(), "vit.safetensors")
        >>> save_safetensors(export_state_dict(enc), path)
        >>> copy = load_mae_checkpoint(path)
        >>> x = np.random.rand(1, 16, 16, 3).astype("float32")
        >>> same = np.allclose(keras.ops.convert_to_numpy(copy(x)), keras.ops.convert_to_numpy(enc(x)), atol=1e-6)
        >>> bool(same), copy.num_heads
        (True, 2)
    """
    state, info = read_state_dict(source)
    label = repr(info["name"]) if info["name"] else "the checkpoint"
    prefix = detect_layout(list(state), label)[1]
    state, origin, layout = to_official(state, label)
    hf_config = _as_dict(config) or info["hf_config"]
    ignore = ()
    if model is None:
        cfg = infer_config(state, layout, hf_config=hf_config, args=info["args"], name=info["name"],
                           with_decoder=not encoder_only, **overrides)
        model = build_model(cfg, with_decoder=not encoder_only)
        if encoder_only:
            ignore = ("decoder_", "mask_token")
    else:
        if overrides or encoder_only:
            given = sorted(overrides) + (["encoder_only"] if encoder_only else [])
            raise TypeError(f"{given} only apply when building the model (`model=None`); got a model.")
        if hf_config:
            _check_hf_config(model, hf_config)
    plan = plan_assignment(model_entries(model), state, origin, layout, allow_extra, ignore, prefix)
    for variable, value in plan:
        variable.assign(ops.cast(value, variable.dtype))
    return model
