"""Independent references for the checkpoint tests: tiny Hugging Face ViTMAE / ViT models
built offline (`ViTMAEConfig(...)`, never a hub id), the official MAE sin-cos table and
key names written out here, and a hand mapping from official keys to HF modules."""

import numpy as np
import torch
from transformers import ViTConfig, ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel, ViTModel

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=128, decoder_hidden_size=16, decoder_num_hidden_layers=1,
            decoder_num_attention_heads=2, decoder_intermediate_size=64)
GRID, TOKENS = 4, 16


def mae_sincos(dim, grid, cls_token=True):
    """util/pos_embed.py of facebookresearch/mae: meshgrid(w, h), the first half of the
    channels from the column index, each half [sin | cos], omega = 1 / 10000^(i / (dim/4))."""
    w, h = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))

    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2) / (d / 2.0))
        out = pos.reshape(-1)[:, None] * omega[None]
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    table = np.concatenate([one_d(dim // 2, w), one_d(dim // 2, h)], axis=1)
    if cls_token:
        table = np.concatenate([np.zeros((1, dim)), table], axis=0)
    return table[None].astype("float32")


def randomize(model, seed=0, scale=0.2, fixed_tables=True):
    """Random values in every parameter (norm weights around 1); with `fixed_tables`,
    MAE sin-cos position tables (transformers 5 leaves them at zero on random init)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * scale
            is_norm_weight = ("layernorm" in name or "norm." in name) and name.endswith("weight")
            p.copy_(1.0 + noise if is_norm_weight else noise)
        if not fixed_tables:  # a learned table: random, as any other parameter
            for name, p in model.state_dict().items():
                if name.endswith("position_embeddings"):
                    p.copy_(torch.randn(p.shape, generator=gen) * scale)
        for name, p in model.state_dict().items():
            if fixed_tables and name.endswith("position_embeddings") or name.endswith("decoder_pos_embed"):
                p.copy_(torch.from_numpy(mae_sincos(p.shape[-1], GRID)))
    return model.eval()


def hf_mae(norm_pix_loss=True, mask_ratio=0.75, layer_norm_eps=1e-12, seed=0):
    config = ViTMAEConfig(**TINY, norm_pix_loss=norm_pix_loss, mask_ratio=mask_ratio, layer_norm_eps=layer_norm_eps)
    return randomize(ViTMAEForPreTraining(config), seed)


def hf_encoder(seed=1):
    config = ViTMAEConfig(**TINY, mask_ratio=0.0)
    return randomize(ViTMAEModel(config), seed)


def hf_vit(seed=2):
    """A ViTModel with its pooler and a learned position table (random like every other parameter)."""
    keep = {k: v for k, v in TINY.items() if not k.startswith("decoder")}
    return randomize(ViTModel(ViTConfig(**keep, layer_norm_eps=1e-6)), seed, fixed_tables=False)


def hf_forward(model, images, noise):
    """HF forward on channels-last numpy images (HF takes channels-first)."""
    with torch.no_grad():
        return model(torch.from_numpy(images).permute(0, 3, 1, 2), noise=torch.from_numpy(noise))


def official_state_dict(depth=2, dec_depth=1, width=32, dec_width=16, patch=8, channels=3, grid=GRID,
                        seed=0, decoder=True, mlp_ratio=4):
    """Random tensors under the official MAE (models_mae.py / timm Block) key names."""
    rng = np.random.default_rng(seed)

    def rand(*shape, around=0.0):
        return (around + 0.2 * rng.standard_normal(shape)).astype("float32")

    def blocks(prefix, n, d):
        out = {}
        for i in range(n):
            b = f"{prefix}.{i}."
            out.update({
                b + "norm1.weight": rand(d, around=1.0), b + "norm1.bias": rand(d),
                b + "attn.qkv.weight": rand(3 * d, d), b + "attn.qkv.bias": rand(3 * d),
                b + "attn.proj.weight": rand(d, d), b + "attn.proj.bias": rand(d),
                b + "norm2.weight": rand(d, around=1.0), b + "norm2.bias": rand(d),
                b + "mlp.fc1.weight": rand(mlp_ratio * d, d), b + "mlp.fc1.bias": rand(mlp_ratio * d),
                b + "mlp.fc2.weight": rand(d, mlp_ratio * d), b + "mlp.fc2.bias": rand(d),
            })
        return out

    sd = {"cls_token": rand(1, 1, width), "pos_embed": mae_sincos(width, grid),
          "patch_embed.proj.weight": rand(width, channels, patch, patch), "patch_embed.proj.bias": rand(width)}
    sd.update(blocks("blocks", depth, width))
    sd.update({"norm.weight": rand(width, around=1.0), "norm.bias": rand(width)})
    if decoder:
        sd.update({"decoder_embed.weight": rand(dec_width, width), "decoder_embed.bias": rand(dec_width),
                   "mask_token": rand(1, 1, dec_width), "decoder_pos_embed": mae_sincos(dec_width, grid)})
        sd.update(blocks("decoder_blocks", dec_depth, dec_width))
        sd.update({"decoder_norm.weight": rand(dec_width, around=1.0), "decoder_norm.bias": rand(dec_width),
                   "decoder_pred.weight": rand(patch * patch * channels, dec_width),
                   "decoder_pred.bias": rand(patch * patch * channels)})
    return sd


def hf_naming(model):
    """`"v5"` for transformers>=5 modules (`layers.0.attention.q_proj`), else the
    published names (`encoder.layer.0.attention.attention.query`)."""
    return "v5" if any(".attention.q_proj." in k for k in model.state_dict()) else "published"


def official_to_hf_by_hand(sd, naming, root="vit."):
    """The official -> HF key mapping, written out independently of keras_mim."""
    if naming == "v5":
        enc, dec = root + "layers.{}.", "decoder.decoder_layers.{}."
        names = dict(q="attention.q_proj", k="attention.k_proj", v="attention.v_proj", proj="attention.o_proj",
                     fc1="mlp.fc1", fc2="mlp.fc2")
    else:
        enc, dec = root + "encoder.layer.{}.", "decoder.decoder_layers.{}."
        names = dict(q="attention.attention.query", k="attention.attention.key", v="attention.attention.value",
                     proj="attention.output.dense", fc1="intermediate.dense", fc2="output.dense")
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] in ("blocks", "decoder_blocks"):
            base = (enc if parts[0] == "blocks" else dec).format(parts[1])
            sub, param = ".".join(parts[2:-1]), parts[-1]
            if sub == "attn.qkv":
                for w, third in zip("qkv", np.split(value, 3, axis=0)):
                    out[f"{base}{names[w]}.{param}"] = third
                continue
            sub = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": names["proj"],
                   "mlp.fc1": names["fc1"], "mlp.fc2": names["fc2"]}[sub]
            out[f"{base}{sub}.{param}"] = value
            continue
        top = {"cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
               "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
               "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
               "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}
        out[root + top[key] if key in top else "decoder." + key] = value
    return out


def load_into_hf(model, sd, root="vit."):
    """`load_state_dict(strict=True)` of an official-layout numpy dict into an HF model."""
    hf = official_to_hf_by_hand(sd, hf_naming(model), root)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in hf.items()}, strict=True)
    return model.eval()
