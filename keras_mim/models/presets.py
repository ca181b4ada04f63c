"""Named configurations.

Each entry: `description`; `encoder` (ViTEncoder arguments); optionally `decoder`
(MAEDecoder arguments), `model` (the name of the pretraining class it is tuned for,
default `"MaskedAutoencoder"`), `method` (a name from `keras_mim.models.methods.METHODS`
where the class alone does not say it, e.g. MaskFeat is SimMIM with a HOG target) and
`kwargs` (that class's own arguments: mask ratio, masking, target, ...). The architecture of any preset can be used by any pretraining
class (`SimMIM.from_preset("mae_vit_base_patch16")` takes the ViT-B/16 encoder); the
`kwargs` apply only to the class the preset names.
"""

import inspect

import keras

_DEC_MAE = {"decoder_dim": 512, "depth": 8, "num_heads": 16}


def _vit(image_size, patch_size, embed_dim, depth, num_heads):
    return dict(image_size=image_size, patch_size=patch_size, embed_dim=embed_dim,
                depth=depth, num_heads=num_heads)


def _video(vit, num_frames, tubelet_size=2):
    return dict(vit, num_frames=num_frames, tubelet_size=tubelet_size, cls_token=False,
                pos_embed="sincos_1d")


_DEC_VIDEO = {"decoder_dim": 384, "depth": 4, "num_heads": 6, "pos_embed": "sincos_1d"}
_DUAL = {"decoder_mask_generator": "running_cell", "decoder_mask_ratio": 0.5}

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
        kwargs={"mask_generator": "green", "mask_ratio": 0.75}),
    # The objective family (issue 4): paper configurations at 224 px, and a tiny one each for tests.
    "simmim_vit_base_patch16": dict(
        description="SimMIM ViT-B/16: mask tokens, 32 px mask cells at ratio 0.6, pixel-shuffle head, L1.",
        model="SimMIM", encoder=_vit(224, 16, 768, 12, 12),
        kwargs={"mask_ratio": 0.6, "mask_patch_size": 32}),
    "maskfeat_vit_base_patch16": dict(
        description="MaskFeat ViT-B/16: mask tokens, block masks at 0.4, HOG target (9 bins, 8 px cells).",
        model="SimMIM", method="maskfeat", encoder=_vit(224, 16, 768, 12, 12),
        kwargs={"target": "hog", "mask_generator": "block", "mask_ratio": 0.4}),
    "mfm_vit_base_patch16": dict(
        description="MFM ViT-B/16: low/high-pass corrupted image in, loss on the removed frequencies.",
        model="MFM", encoder=_vit(224, 16, 768, 12, 12), kwargs={"radius": 16}),
    "maskalign_vit_base_patch16": dict(
        description="MaskAlign ViT-B/16 student (no decoder), attention-guided masks at 0.7; give a teacher.",
        model="MaskAlign", encoder=_vit(224, 16, 768, 12, 12), kwargs={"mask_ratio": 0.7}),
    "mrmae_vit_base_patch16": dict(
        description="MR-MAE ViT-B/16: MAE pixel loss on hidden tokens + mimic loss on visible ones; give a teacher.",
        model="MRMAE", encoder=_vit(224, 16, 768, 12, 12), decoder=_DEC_MAE),
    "data2vec_vit_base_patch16": dict(
        description="data2vec-style ViT-B/16: mask tokens, target = mean of the top-8 normalised EMA-teacher layers.",
        model="Data2Vec", encoder=_vit(224, 16, 768, 12, 12), kwargs={"top_k": 8, "mask_ratio": 0.6}),
    "hpm_vit_base_patch16": dict(
        description="HPM ViT-B/16: MAE plus a loss predictor; easy-to-hard masks (alpha up to 0.5).",
        model="HPM", encoder=_vit(224, 16, 768, 12, 12), decoder=_DEC_MAE),
    # Two views (reference-conditioned): official ViT-S/16 configurations, and tiny ones for tests.
    "cropmae_vit_small_patch16": dict(
        description="CropMAE ViT-S/16: global/local crop pair, 98.5% of the local crop hidden (2 of 196 "
                    "patches visible), cross-attention decoder 256 x 4 x 8.",
        model="SiameseMAE", method="cropmae", encoder=_vit(224, 16, 384, 12, 6),
        decoder={"decoder_dim": 256, "depth": 4, "num_heads": 8}, kwargs={"mask_ratio": 0.985}),
    "siammae_vit_small_patch16": dict(
        description="SiamMAE ViT-S/16: two video frames, 95% of the later one hidden, cross-attention "
                    "decoder 256 x 4 x 8.",
        model="SiameseMAE", method="siammae", encoder=_vit(224, 16, 384, 12, 6),
        decoder={"decoder_dim": 256, "depth": 4, "num_heads": 8}, kwargs={"mask_ratio": 0.95}),
    "cropmae_vit_test": dict(
        description="CropMAE on the test ViT (16 px, patch 4: 16 tokens), decoder 32 x 1 x 2, ratio 0.75.",
        model="SiameseMAE", method="cropmae", encoder=_vit(16, 4, 32, 2, 2),
        decoder={"decoder_dim": 32, "depth": 1, "num_heads": 2}, kwargs={"mask_ratio": 0.75}),
    "siammae_vit_test": dict(
        description="SiamMAE on the test ViT (16 px, patch 4: 16 tokens), decoder 32 x 1 x 2, ratio 0.75.",
        model="SiameseMAE", method="siammae", encoder=_vit(16, 4, 32, 2, 2),
        decoder={"decoder_dim": 32, "depth": 1, "num_heads": 2}, kwargs={"mask_ratio": 0.75}),
    # Video (issue 5): 16 x 224 x 224 clips, 2 x 16 x 16 tubelets (8 x 14 x 14 = 1568 tokens),
    # no cls token, VideoMAE's flat 1D sin-cos tables; decoders as the official ViT-S / ViT-B.
    "videomae_vit_small_patch16": dict(
        description="VideoMAE ViT-S/16 on 16 x 224 px clips, tube masks at 0.9, decoder 192 x 4 x 3.",
        model="VideoMAE", encoder=_video(_vit(224, 16, 384, 12, 6), 16),
        decoder={**_DEC_VIDEO, "decoder_dim": 192, "num_heads": 3}),
    "videomae_vit_base_patch16": dict(
        description="VideoMAE ViT-B/16 on 16 x 224 px clips, tube masks at 0.9, decoder 384 x 4 x 6.",
        model="VideoMAE", encoder=_video(_vit(224, 16, 768, 12, 12), 16), decoder=_DEC_VIDEO),
    "videomaev2_vit_base_patch16": dict(
        description="VideoMAE V2 ViT-B/16: dual masking (tube 0.9 + running-cell decoder mask 0.5).",
        model="VideoMAE", method="videomaev2", encoder=_video(_vit(224, 16, 768, 12, 12), 16),
        decoder=_DEC_VIDEO, kwargs=_DUAL),
    "videomae_vit_nano_patch4_32": dict(
        description="VideoMAE 64 x 4 x 4 on 8 x 32 px clips, 2 x 4 x 4 tubelets (4 x 8 x 8 tokens), 3D sin-cos, "
                    "decoder 64 x 2 x 4: trains on a CPU.",
        model="VideoMAE", encoder=dict(_video(_vit(32, 4, 64, 4, 4), 8), pos_embed="sincos"),
        decoder={"decoder_dim": 64, "depth": 2, "num_heads": 4}),
    "videomaev2_vit_nano_patch4_32": dict(
        description="VideoMAE V2 (dual masking) on the nano video ViT: 8 x 32 px clips.",
        model="VideoMAE", method="videomaev2", encoder=dict(_video(_vit(32, 4, 64, 4, 4), 8), pos_embed="sincos"),
        decoder={"decoder_dim": 64, "depth": 2, "num_heads": 4}, kwargs=_DUAL),
    "videomae_vit_test": dict(
        description="VideoMAE on 4 x 16 px clips, patch 4, tubelet 2 (2 x 4 x 4 tokens), tube 0.75: for tests.",
        model="VideoMAE", encoder=_video(_vit(16, 4, 32, 2, 2), 4),
        decoder={"decoder_dim": 32, "depth": 1, "num_heads": 2}, kwargs={"mask_ratio": 0.75}),
    "videomaev2_vit_test": dict(
        description="VideoMAE V2 on 8 x 16 px clips (4 x 4 x 4 tokens), tube 0.75 + running cells 0.5: for tests.",
        model="VideoMAE", method="videomaev2", encoder=_video(_vit(16, 4, 32, 2, 2), 8),
        decoder={"decoder_dim": 32, "depth": 1, "num_heads": 2}, kwargs={**_DUAL, "mask_ratio": 0.75}),
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
    "simmim_vit_test": dict(
        description="SimMIM on the test ViT (16 px, patch 4): 8 px mask cells.", model="SimMIM",
        encoder=_vit(16, 4, 32, 2, 2), kwargs={"mask_patch_size": 8}),
    "maskfeat_vit_test": dict(
        description="MaskFeat on the test ViT: HOG target with 4 px cells, block masks at 0.4.", model="SimMIM", method="maskfeat",
        encoder=_vit(16, 4, 32, 2, 2), kwargs={"target": {"class_name": "keras_mim>HOGTarget", "config": {"cell_size": 4}}, "mask_generator": "block", "mask_ratio": 0.4}),
    "mfm_vit_test": dict(
        description="MFM on the test ViT (16 px): radius 4.", model="MFM",
        encoder=_vit(16, 4, 32, 2, 2), kwargs={"radius": 4}),
    "maskalign_vit_test": dict(
        description="MaskAlign student on the test ViT; give a teacher.", model="MaskAlign",
        encoder=_vit(16, 4, 32, 2, 2)),
    "mrmae_vit_test": dict(
        description="MR-MAE on the test ViT; give a teacher.", model="MRMAE",
        encoder=_vit(16, 4, 32, 2, 2), decoder={"decoder_dim": 32, "depth": 1, "num_heads": 2}),
    "data2vec_vit_test": dict(
        description="data2vec-style on the test ViT: top-2 EMA-teacher layers.", model="Data2Vec",
        encoder=_vit(16, 4, 32, 2, 2), kwargs={"top_k": 2}),
    "hpm_vit_test": dict(
        description="HPM on the test ViT.", model="HPM",
        encoder=_vit(16, 4, 32, 2, 2), decoder={"decoder_dim": 32, "depth": 1, "num_heads": 2}),
}


def list_presets():
    """Preset names with their one-line descriptions, as a dict."""
    return {name: spec["description"] for name, spec in PRESETS.items()}


def preset_model_class(preset):
    """The pretraining class a preset is tuned for."""
    check_preset(preset)
    name = PRESETS[preset].get("model", "MaskedAutoencoder")
    return keras.saving.get_registered_object(f"keras_mim>{name}")


def check_preset(preset):
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; expected one of {sorted(PRESETS)}.")


DECODER_OVERRIDES = ("decoder_dim", "decoder_depth", "decoder_num_heads", "decoder_mlp_ratio")


def preset_method(preset):
    """The method name a preset is tuned for (`keras_mim.models.methods.METHODS`)."""
    from keras_mim.models.methods import METHODS

    check_preset(preset)
    spec = PRESETS[preset]
    if "method" in spec:
        return spec["method"]
    model = spec.get("model", "MaskedAutoencoder")
    return next(name for name, m in METHODS.items() if m["model"] == model)


def build_preset(model_cls, preset, apply_preset_kwargs=None, **overrides):
    """Build `model_cls(encoder, [decoder=...], **kwargs)` from `PRESETS[preset]`.

    The encoder gets `model_cls.encoder_defaults` (e.g. `mask_token=True` for
    mask-token methods) under the preset's arguments; a decoder is passed only to classes
    that take one; the preset's `kwargs` only to the class it names (or as
    `apply_preset_kwargs` says, when given).
    """
    from keras_mim.models.vit_encoder import ViTEncoder

    check_preset(preset)
    spec = PRESETS[preset]
    takes = set(inspect.signature(model_cls.__init__).parameters) - {"self", "kwargs", "encoder"}
    enc_args = set(inspect.signature(ViTEncoder.__init__).parameters) - {"self", "kwargs"}
    enc_kw = {**getattr(model_cls, "encoder_defaults", {}), **spec["encoder"]}
    dec_kw = dict(spec.get("decoder") or {}) if "decoder" in takes else None
    own = spec.get("model", "MaskedAutoencoder") == model_cls.__name__
    if apply_preset_kwargs is not None:
        own = bool(apply_preset_kwargs)
    model_kw = dict(spec.get("kwargs", {})) if own else {}
    for key, value in overrides.items():
        if key == "seed" and "seed" in takes:
            model_kw["seed"] = enc_kw["seed"] = value  # masks (model) and drop path (encoder)
        elif key in enc_args:
            enc_kw[key] = value
        elif key in DECODER_OVERRIDES and dec_kw is not None:
            dec_kw[key if key == "decoder_dim" else key[len("decoder_"):]] = value
        elif key in takes - {"decoder"} or key in ("name", "dtype"):
            model_kw[key] = value
        else:
            decoder = f"{', '.join(DECODER_OVERRIDES)}, " if dec_kw is not None else ""
            raise TypeError(
                f"Unknown override {key!r} for {model_cls.__name__} preset {preset!r}; expected "
                f"encoder arguments {sorted(enc_args)}, {decoder}or model arguments "
                f"{sorted(takes - {'decoder'})}."
            )
    if "dtype" in model_kw:
        enc_kw["dtype"] = model_kw["dtype"]
        if dec_kw is not None:
            dec_kw["dtype"] = model_kw["dtype"]
    encoder = ViTEncoder(**enc_kw, name="encoder")
    if dec_kw is not None:
        model_kw["decoder"] = dec_kw
    return model_cls(encoder, **model_kw)
