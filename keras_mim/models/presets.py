"""Named configurations. Each entry: encoder kwargs, decoder kwargs, model kwargs."""

import inspect

_DEC_MAE = {"decoder_dim": 512, "depth": 8, "num_heads": 16}


def _vit(image_size, patch_size, embed_dim, depth, num_heads):
    return dict(image_size=image_size, patch_size=patch_size, embed_dim=embed_dim,
                depth=depth, num_heads=num_heads)


PRESETS = {
    # ImageNet-scale (224 px; ViT-H uses patch 14). B/L/H decoders are the official 512 x 8 x 16.
    "mae_vit_tiny_patch16": dict(
        description="ViT-Ti/16 (192 x 12 blocks x 3 heads), 224 px, decoder 256 x 4 x 8.",
        encoder=_vit(224, 16, 192, 12, 3), decoder={"decoder_dim": 256, "depth": 4, "num_heads": 8}),
    "mae_vit_small_patch16": dict(
        description="ViT-S/16 (384 x 12 x 6), 224 px, decoder 256 x 8 x 8.",
        encoder=_vit(224, 16, 384, 12, 6), decoder={"decoder_dim": 256, "depth": 8, "num_heads": 8}),
    "mae_vit_base_patch16": dict(
        description="ViT-B/16 (768 x 12 x 12), 224 px, decoder 512 x 8 x 16 (official MAE).",
        encoder=_vit(224, 16, 768, 12, 12), decoder=_DEC_MAE),
    "mae_vit_large_patch16": dict(
        description="ViT-L/16 (1024 x 24 x 16), 224 px, decoder 512 x 8 x 16 (official MAE).",
        encoder=_vit(224, 16, 1024, 24, 16), decoder=_DEC_MAE),
    "mae_vit_huge_patch14": dict(
        description="ViT-H/14 (1280 x 32 x 16), 224 px, decoder 512 x 8 x 16 (official MAE).",
        encoder=_vit(224, 14, 1280, 32, 16), decoder=_DEC_MAE),
    "colormae_vit_base_patch16": dict(
        description="ColorMAE: MAE ViT-B/16 with green (band-pass) noise masks, ratio 0.75.",
        encoder=_vit(224, 16, 768, 12, 12), decoder=_DEC_MAE,
        model={"mask_generator": "green", "mask_ratio": 0.75}),
    # Small images (32 px and below): CIFAR-sized data, CPU demos, tests.
    "mae_vit_tiny_patch4_32": dict(
        description="ViT-Ti (192 x 12 x 3), 32 px, patch 4 (64 tokens), decoder 128 x 4 x 4.",
        encoder=_vit(32, 4, 192, 12, 3), decoder={"decoder_dim": 128, "depth": 4, "num_heads": 4}),
    "mae_vit_micro_patch4_32": dict(
        description="128 x 6 x 4, 32 px, patch 4 (64 tokens), decoder 64 x 2 x 4: trains on a CPU.",
        encoder=_vit(32, 4, 128, 6, 4), decoder={"decoder_dim": 64, "depth": 2, "num_heads": 4}),
    "mae_vit_nano_patch2_16": dict(
        description="64 x 4 x 4, 16 px, patch 2 (64 tokens), decoder 64 x 2 x 4: digits-sized images.",
        encoder=_vit(16, 2, 64, 4, 4), decoder={"decoder_dim": 64, "depth": 2, "num_heads": 4}),
    "mae_vit_test": dict(
        description="32 x 2 x 2, 16 px, patch 4 (16 tokens), decoder 32 x 1 x 2: for unit tests.",
        encoder=_vit(16, 4, 32, 2, 2), decoder={"decoder_dim": 32, "depth": 1, "num_heads": 2}),
}


def list_presets():
    """Preset names with their one-line descriptions, as a dict."""
    return {name: spec["description"] for name, spec in PRESETS.items()}


def build_preset(model_cls, preset, **overrides):
    """Build `model_cls(encoder, decoder, ...)` from `PRESETS[preset]` and overrides."""
    from keras_mim.models.mae_decoder import MAEDecoder
    from keras_mim.models.vit_encoder import ViTEncoder

    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; expected one of {sorted(PRESETS)}.")
    spec = PRESETS[preset]
    enc_args = set(inspect.signature(ViTEncoder.__init__).parameters) - {"self", "kwargs"}
    model_args = set(inspect.signature(model_cls.__init__).parameters) - {"self", "kwargs", "encoder", "decoder"}
    enc_kw, dec_kw, model_kw = dict(spec["encoder"]), dict(spec["decoder"]), dict(spec.get("model", {}))
    for key, value in overrides.items():
        if key in enc_args:
            enc_kw[key] = value
        elif key in ("decoder_dim", "decoder_depth", "decoder_num_heads", "decoder_mlp_ratio"):
            dec_kw[key if key == "decoder_dim" else key[len("decoder_"):]] = value
        elif key in model_args or key in ("name", "dtype"):
            model_kw[key] = value
        else:
            raise TypeError(
                f"Unknown override {key!r} for preset {preset!r}; expected encoder arguments "
                f"{sorted(enc_args)}, decoder_dim/decoder_depth/decoder_num_heads/decoder_mlp_ratio, "
                f"or model arguments {sorted(model_args)}."
            )
    if "dtype" in model_kw:
        enc_kw["dtype"] = dec_kw["dtype"] = model_kw["dtype"]
    encoder = ViTEncoder(**enc_kw, name="encoder")
    ph, pw = encoder.patch_size
    decoder = MAEDecoder(
        encoder.grid_shape, ph * pw * encoder.num_channels,
        num_prefix_tokens=encoder.num_prefix_tokens, name="decoder", **dec_kw,
    )
    return model_cls(encoder, decoder, **model_kw)
