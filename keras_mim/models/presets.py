"""Named configurations, and building a model from one.

Each method module declares its presets in its `MethodSpec` (`keras_mim.models.methods`):
name -> `dict(description=..., encoder=ViTEncoder arguments, [decoder=decoder
arguments], [kwargs=the method's own model arguments tuned to that size])`. `PRESETS`
gathers them all (each entry also names its `method`). The architecture of any preset
can be used by any pretraining class (`SimMIM.from_preset("mae_vit_base_patch16")` takes
the ViT-B/16 encoder); the `kwargs` apply only to the class of the preset's method.

This module also holds the architectures several methods share (`vit`, `video_vit`,
the ViT sizes of the MAE paper, the decoders), so that a preset reads as one line.
"""

import collections.abc
import inspect

from keras_mim.models.methods import get_method_spec
from keras_mim.models.preset_io import builtin_presets


def vit(image_size, patch_size, embed_dim, depth, num_heads, **kwargs):
    """ViTEncoder arguments of one architecture."""
    return dict(image_size=image_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                num_heads=num_heads, **kwargs)


def video_vit(image_vit, num_frames, tubelet_size=2):
    """A ViT's arguments for clips of `num_frames` frames (VideoMAE: no cls token, flat 1D sin-cos)."""
    return dict(image_vit, num_frames=num_frames, tubelet_size=tubelet_size, cls_token=False,
                pos_embed="sincos_1d")


def decoder(decoder_dim, depth, num_heads, **kwargs):
    """Decoder arguments (`MAEDecoder`, `CrossAttentionDecoder`)."""
    return dict(decoder_dim=decoder_dim, depth=depth, num_heads=num_heads, **kwargs)


# The ViT sizes of the MAE paper (224 px; ViT-H uses patch 14) and its decoder.
VIT_TINY_16 = vit(224, 16, 192, 12, 3)
VIT_SMALL_16 = vit(224, 16, 384, 12, 6)
VIT_BASE_16 = vit(224, 16, 768, 12, 12)
VIT_LARGE_16 = vit(224, 16, 1024, 24, 16)
VIT_HUGE_14 = vit(224, 14, 1280, 32, 16)
MAE_DECODER = decoder(512, 8, 16)
# The unit-test architecture: 16 px images, patch 4 (16 tokens), 32 wide x 2 blocks.
TEST_VIT = vit(16, 4, 32, 2, 2)
TEST_DECODER = decoder(32, 1, 2)

DECODER_OVERRIDES = ("decoder_dim", "decoder_depth", "decoder_num_heads", "decoder_mlp_ratio")


class _Presets(collections.abc.Mapping):
    """name -> preset dict (with its `method`), read from the registry at each access."""

    def _all(self):
        return builtin_presets()

    def __getitem__(self, name):
        return self._all()[name]

    def __iter__(self):
        return iter(self._all())

    def __len__(self):
        return len(self._all())


#: Every preset of every registered method: name -> dict(description, encoder, [decoder],
#: [kwargs], method).
PRESETS = _Presets()


def list_presets():
    """Preset names with their one-line descriptions, as a dict."""
    return {name: spec["description"] for name, spec in PRESETS.items()}


def preset_patch_size(preset):
    """`(ph, pw)` of a preset's encoder: the ViT patch, or a convolutional encoder's cell
    (its total stride)."""
    from keras_mim.utils import to_2tuple

    spec = PRESETS[preset]
    if "encoder_class" in spec:
        return to_2tuple(spec["encoder_class"].cell_size(**spec["encoder"]), "patch_size")
    return to_2tuple(spec["encoder"]["patch_size"], "patch_size")


def check_preset(preset):
    """Raise a ValueError listing the built-in names unless `preset` is one."""
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; expected one of {sorted(PRESETS)}.")


def preset_method(preset):
    """The name of the method a preset belongs to."""
    check_preset(preset)
    return PRESETS[preset]["method"]


def preset_model_class(preset):
    """The pretraining class a preset is tuned for."""
    return get_method_spec(preset_method(preset)).model


def build_preset(model_cls, preset, apply_preset_kwargs=None, **overrides):
    """Build (and build the weights of) `model_cls(encoder, [decoder=...], **kwargs)` from
    `PRESETS[preset]`.

    The encoder gets `model_cls.encoder_defaults` (e.g. `mask_token=True` for
    mask-token methods) under the preset's arguments; a decoder is passed only to classes
    that take one; the preset's `kwargs` only to the class of its method (or as
    `apply_preset_kwargs` says, when given). `overrides` go to the encoder (its
    arguments), the decoder (`decoder_dim`, `decoder_depth`, ...) or the model.
    """
    from keras_mim.models.vit_encoder import ViTEncoder

    check_preset(preset)
    spec = PRESETS[preset]
    takes = set(inspect.signature(model_cls.__init__).parameters) - {"self", "kwargs", "encoder"}
    encoder_cls = spec.get("encoder_class", ViTEncoder)
    enc_args = set(inspect.signature(encoder_cls.__init__).parameters) - {"self", "kwargs"}
    enc_kw = {**getattr(model_cls, "encoder_defaults", {}), **spec["encoder"]}
    dec_kw = dict(spec.get("decoder") or {}) if "decoder" in takes else None
    own = get_method_spec(spec["method"]).model is model_cls
    if apply_preset_kwargs is not None:
        own = bool(apply_preset_kwargs)
    model_kw = dict(spec.get("kwargs", {})) if own else {}
    for key, value in overrides.items():
        if key == "seed" and "seed" in takes:
            model_kw["seed"] = value  # masks (model)
            if "seed" in enc_args:
                enc_kw["seed"] = value  # and drop path (encoder)
        elif key in enc_args:
            enc_kw[key] = value
        elif key in DECODER_OVERRIDES and dec_kw is not None:
            dec_kw[key if key == "decoder_dim" else key[len("decoder_"):]] = value
        elif key in takes - {"decoder"} or key in ("name", "dtype"):
            model_kw[key] = value
        else:
            decoders = f"{', '.join(DECODER_OVERRIDES)}, " if dec_kw is not None else ""
            raise TypeError(
                f"Unknown override {key!r} for {model_cls.__name__} preset {preset!r}; expected "
                f"encoder arguments {sorted(enc_args)}, {decoders}or model arguments "
                f"{sorted(takes - {'decoder'})}."
            )
    if "dtype" in model_kw:
        enc_kw["dtype"] = model_kw["dtype"]
        if dec_kw is not None:
            dec_kw["dtype"] = model_kw["dtype"]
    encoder = encoder_cls(**enc_kw, name="encoder")
    if dec_kw is not None:
        model_kw["decoder"] = dec_kw
    model = model_cls(encoder, **model_kw)
    model.build()  # every shape is known from the config
    return model


def build_method(name, preset=None, **overrides):
    """Method `name`'s model on `preset`'s architecture (default: its test preset).

    On one of the method's own presets the preset's settings apply (they are tuned to
    its size); on another method's preset, the method's own `kwargs` (MaskFeat's HOG
    target) replace them. `overrides` as `build_preset`.

    Examples:
        >>> model = build_method("simmim", "maskfeat_vit_test")  # SimMIM on MaskFeat's architecture
        >>> type(model).__name__, model.target is None
        ('SimMIM', True)
    """
    spec = get_method_spec(name)
    preset = spec.test_preset if preset is None else preset
    check_preset(preset)
    own = preset in spec.presets
    kwargs = {} if own else dict(spec.kwargs)
    kwargs.update(overrides)
    return build_preset(spec.model, preset, apply_preset_kwargs=own, **kwargs)
