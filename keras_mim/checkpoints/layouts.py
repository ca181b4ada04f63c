"""Key layouts of published ViT / MAE checkpoints and the conversions between them.

Everything is converted to one canonical layout, the official MAE one (which is also
timm's `VisionTransformer`): `cls_token`, `pos_embed`, `patch_embed.proj.*`,
`blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2, ls1, ls2}.*`,
`norm.*`, and for the MAE decoder `decoder_embed.*`, `mask_token`,
`decoder_pos_embed`, `decoder_blocks.{i}.*`, `decoder_norm.*`, `decoder_pred.*`.

Hugging Face `ViTMAEForPreTraining` / `ViTMAEModel` / `ViTModel` weights use separate
query / key / value projections and other names. Two namings exist: the "legacy"
one of the published files and of `save_pretrained` (`encoder.layer.{i}.attention.
attention.query`, ...; transformers 5 writes the decoder blocks as
`decoder.decoder_encoder.layer.{i}`), and the "v5" one of transformers>=5 modules in
memory (`layers.{i}.attention.q_proj`, ...), which `load_state_dict` expects there.
Both are read; either is written.
"""

import re

import numpy as np

from keras_mim.checkpoints.common import CheckpointError, describe_keys

# official block suffix -> (legacy HF suffix, v5 HF suffix)
HF_BLOCK = {
    "norm1": ("layernorm_before", "layernorm_before"),
    "attn.q": ("attention.attention.query", "attention.q_proj"),
    "attn.k": ("attention.attention.key", "attention.k_proj"),
    "attn.v": ("attention.attention.value", "attention.v_proj"),
    "attn.proj": ("attention.output.dense", "attention.o_proj"),
    "norm2": ("layernorm_after", "layernorm_after"),
    "mlp.fc1": ("intermediate.dense", "mlp.fc1"),
    "mlp.fc2": ("output.dense", "mlp.fc2"),
}
# official key -> HF key; encoder ones are relative to the ViT(MAE)Model
HF_ENCODER = {
    "cls_token": "embeddings.cls_token",
    "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}
HF_DECODER = {
    "decoder_embed.weight": "decoder.decoder_embed.weight",
    "decoder_embed.bias": "decoder.decoder_embed.bias",
    "mask_token": "decoder.mask_token",
    "decoder_pos_embed": "decoder.decoder_pos_embed",
    "decoder_norm.weight": "decoder.decoder_norm.weight",
    "decoder_norm.bias": "decoder.decoder_norm.bias",
    "decoder_pred.weight": "decoder.decoder_pred.weight",
    "decoder_pred.bias": "decoder.decoder_pred.bias",
}
HF_BLOCK_PREFIX = {"legacy": ("encoder.layer", "decoder.decoder_layers"), "v5": ("layers", "decoder.decoder_layers")}
HF_NAMINGS = tuple(HF_BLOCK_PREFIX)
OFFICIAL_ANCHOR = "patch_embed.proj.weight"
HF_ANCHOR = "embeddings.patch_embeddings.projection.weight"
SUPPORTED = (
    "official MAE / timm ViT keys (`patch_embed.proj.weight`, `blocks.0.attn.qkv.weight`, "
    "`decoder_blocks.0...`) or Hugging Face ViTMAE / ViT keys (`[vit.]embeddings.patch_embeddings."
    "projection.weight`, `[vit.]encoder.layer.0.attention.attention.query.weight` or "
    "`[vit.]layers.0.attention.q_proj.weight`, `decoder.decoder_layers.0...`)"
)
_BLOCK = re.compile(r"^(?P<stack>blocks|decoder_blocks)\.(?P<i>\d+)\.(?P<rest>.+)\.(?P<param>weight|bias|gamma)$")
_HF_BLOCK = re.compile(
    r"^(?P<stack>encoder\.layer|layers|decoder\.decoder_layers|decoder\.decoder_encoder\.layer)"
    r"\.(?P<i>\d+)\.(?P<rest>.+)\.(?P<param>weight|bias)$"
)
_HF_SUFFIX = {name: off for off, names in HF_BLOCK.items() for name in names}
_FROM_HF = {v: k for k, v in {**HF_ENCODER, **HF_DECODER}.items()}
_QKV_PART = re.compile(r"^(?P<base>(?:decoder_)?blocks\.\d+\.attn)\.(?P<w>[qkv])\.(?P<param>weight|bias)$")


def detect_layout(keys, source="the checkpoint"):
    """`("official" | "hf", prefix)`: the layout of `keys` and the prefix in front of
    its encoder keys (e.g. `"module."`, `"vit."`); raises on anything else."""
    for layout, anchor in (("official", OFFICIAL_ANCHOR), ("hf", HF_ANCHOR)):
        found = [k for k in keys if k == anchor or k.endswith("." + anchor)]
        if found:
            return layout, min(found, key=len)[: -len(anchor)]
    raise CheckpointError(
        f"Unknown layout in {source}: found keys {describe_keys(keys, 6)}; supported: {SUPPORTED}."
    )


def hf_to_official(state_dict, prefix=""):
    """Rename HF keys to official ones and fuse q/k/v into `attn.qkv`.

    Returns `(state_dict, origin)`, `origin` mapping each official key to the HF
    key(s) it came from; keys that are not part of the layout (a pooler, a classifier)
    keep their names and stay in the dict, so callers can report them.
    """
    out, origin, parts = {}, {}, {}
    for key, value in state_dict.items():
        name = key[len(prefix):] if prefix and key.startswith(prefix) else key
        official = _FROM_HF.get(name)
        match = _HF_BLOCK.match(name)
        if match and match["rest"] in _HF_SUFFIX:
            stack = "decoder_blocks" if match["stack"].startswith("decoder") else "blocks"
            official = f"{stack}.{match['i']}.{_HF_SUFFIX[match['rest']]}.{match['param']}"
        if official is None:
            official = key  # not part of the layout: reported by the loader
        part = _QKV_PART.match(official)
        if part:
            parts.setdefault((part["base"], part["param"]), {})[part["w"]] = (key, value)
            continue
        out[official], origin[official] = value, key
    for (base, param), qkv in parts.items():
        fused = f"{base}.qkv.{param}"
        if set(qkv) == {"q", "k", "v"}:
            out[fused] = np.concatenate([qkv[w][1] for w in "qkv"], axis=0)
            origin[fused] = " + ".join(qkv[w][0] for w in "qkv")
        else:  # incomplete: leave the strays under their HF names
            for key, value in qkv.values():
                out[key], origin[key] = value, key
    return out, origin


def to_official(state_dict, source="the checkpoint"):
    """Canonical (official MAE) state dict of any supported layout.

    Args:
        state_dict: dict name -> numpy array, in any supported layout.
        source: how to name the checkpoint in errors.

    Returns:
        `(state_dict, origin, layout)`: the renamed dict, a map official key ->
        original key(s), and `"official"` or `"hf"`.

    Examples:
        >>> import numpy as np
        >>> sd = {"vit.embeddings.patch_embeddings.projection.weight": np.zeros((8, 3, 4, 4)),
        ...       "vit.encoder.layer.0.attention.attention.query.weight": np.zeros((8, 8)),
        ...       "vit.encoder.layer.0.attention.attention.key.weight": np.ones((8, 8)),
        ...       "vit.encoder.layer.0.attention.attention.value.weight": np.ones((8, 8))}
        >>> out, origin, layout = to_official(sd)
        >>> layout, sorted(out), out["blocks.0.attn.qkv.weight"].shape
        ('hf', ['blocks.0.attn.qkv.weight', 'patch_embed.proj.weight'], (24, 8))
    """
    layout, prefix = detect_layout(list(state_dict), source)
    if layout == "hf":
        return (*hf_to_official(state_dict, prefix), layout)
    out, origin = {}, {}
    for key, value in state_dict.items():
        name = key[len(prefix):] if prefix and key.startswith(prefix) else key
        out[name], origin[name] = value, key
    return out, origin, layout


def official_to_hf(state_dict, naming="legacy", root=""):
    """HF state dict of a canonical one: q/k/v split, keys renamed; encoder keys get
    `root` in front (`"vit."` for `ViTMAEForPreTraining`, `""` for `ViT(MAE)Model`)."""
    if naming not in HF_BLOCK_PREFIX:
        raise ValueError(f"`hf_naming` must be one of {HF_NAMINGS}, got {naming!r}.")
    out = {}
    for key, value in state_dict.items():
        for hf_key, part in hf_names(key, naming, root):
            out[hf_key] = value if part is None else np.split(value, 3, axis=0)[part]
    return out


def hf_names(key, naming="legacy", root=""):
    """`[(hf_key, part)]` for an official key (`part` is 0/1/2 for the q/k/v thirds of
    a fused qkv tensor, else None); raises for keys HF models do not have."""
    if key in HF_ENCODER:
        return [(root + HF_ENCODER[key], None)]
    if key in HF_DECODER:
        return [(HF_DECODER[key], None)]
    match = _BLOCK.match(key)
    if match:
        enc_prefix, dec_prefix = HF_BLOCK_PREFIX[naming]
        prefix = dec_prefix if match["stack"] == "decoder_blocks" else root + enc_prefix
        col = HF_NAMINGS.index(naming)
        rest, param = match["rest"], match["param"]
        if rest == "attn.qkv":
            return [(f"{prefix}.{match['i']}.{HF_BLOCK['attn.' + w][col]}.{param}", j) for j, w in enumerate("qkv")]
        if rest in HF_BLOCK:
            return [(f"{prefix}.{match['i']}.{HF_BLOCK[rest][col]}.{param}", None)]
    raise ValueError(f"`{key}` has no Hugging Face ViT counterpart (e.g. LayerScale is timm-only).")


def describe_hf(key, root="vit."):
    """How an official key is spelled in HF checkpoints (legacy naming), for messages."""
    try:
        names = [name for name, _ in hf_names(key, root=root)]
    except ValueError:
        return key
    return " + ".join(names)
