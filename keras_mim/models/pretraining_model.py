"""What every pretraining model shares: the encoder protocol and input checks made
before Keras traces a training step."""

import keras
from keras import ops

from keras_mim.models.encoder_model import EncoderModel
from keras_mim.models.presets import build_preset

#: What a pretraining model reads from its encoder (see `ViTEncoder`'s encoder protocol).
ENCODER_PROTOCOL = ("image_size", "input_size", "patch_size", "patch_shape", "num_channels", "grid_shape",
                    "num_patches", "num_prefix_tokens", "output_grid_shape", "output_dim", "check_images")


def check_encoder(encoder, method, mask_token=False, features=False):
    """Raise unless `encoder` keeps the encoder protocol (and owns a mask token, or gives
    the outputs of its blocks through `forward_features(images, layers, ids_keep=...)` /
    `layer_indices` / `depth`, if asked)."""
    needed = ENCODER_PROTOCOL + (("forward_features", "layer_indices", "depth") if features else ())
    missing = [a for a in needed if not hasattr(encoder, a)]
    if not isinstance(encoder, keras.Model) or missing:
        raise TypeError(
            f"`encoder` must be an encoder model such as ViTEncoder (with {', '.join(needed)}), "
            f"got {type(encoder).__name__}{' missing ' + ', '.join(missing) if missing else ''}."
        )
    if mask_token and not getattr(encoder, "use_mask_token", False):
        raise ValueError(
            f"{method} replaces hidden patches with a learned mask token, but this encoder has none; "
            f"build it with `ViTEncoder(..., mask_token=True)` or use `{method}.from_preset(...)`."
        )
    return encoder


def encoder_stride(encoder):
    """Pixels per output token along each axis: `image_size / output_grid_shape`, `(sh, sw)`."""
    (h, w), (gh, gw) = encoder.image_size, encoder.output_grid_shape
    if h % gh or w % gw:
        raise ValueError(
            f"The encoder's output grid {encoder.output_grid_shape} does not divide its image size "
            f"{encoder.image_size}; a pixel-shuffle head needs a whole stride."
        )
    return h // gh, w // gw


def feature_map(encoder, latent):
    """Encoder output `(B, prefix + n, D)` -> feature map `(B, gh, gw, D)` without the cls token."""
    gh, gw = encoder.output_grid_shape
    tokens = latent[:, encoder.num_prefix_tokens :]  # (B, n, D)
    return ops.reshape(tokens, (-1, gh, gw, tokens.shape[-1]))


class PretrainingModel(EncoderModel):
    """Base class of the pretraining models (MAE, SimMIM, MFM, MaskAlign, ...).

    Input checks before tracing and config round trips come from `EncoderModel`.
    Subclasses create their sub-layers in `__init__` (an encoder keeping the protocol of
    `ViTEncoder` as `self.encoder`), build them in `build()` (every shape is known from
    the config, so `build()` takes no input shape), and implement `call` and
    `compute_loss`. Like any subclassed Keras model, a model is built by its first call,
    by `build()`, or already by `from_preset` and `keras.saving.load_model`.
    """

    input_verb = "pretrains on"
    #: ViTEncoder arguments the method needs, applied under a preset's (e.g. `mask_token=True`).
    encoder_defaults = {}

    @classmethod
    def from_builtin_preset(cls, preset, **kwargs):
        """A freshly initialised, built model from a built-in preset name (see `list_presets()`).

        Keyword arguments override the preset: encoder ones (`image_size`,
        `num_channels`, `drop_path_rate`, ...), decoder ones prefixed `decoder_`
        (`decoder_dim`, `decoder_depth`, `decoder_num_heads`, `decoder_mlp_ratio`) for
        models with a decoder, and this model's own (`mask_ratio`, `seed`, `teacher`, ...).
        The preset's own model settings apply when it belongs to this class's method.
        `from_preset` (from `PresetMixin`) also takes preset folders and `hf://` /
        `kaggle://` handles, with their weights.
        """
        return build_preset(cls, preset, **kwargs)

    @property
    def norm_pix_loss(self):
        """Whether predictions are per-patch normalised pixels (figures need to know)."""
        from keras_mim.targets import PixelTarget

        return isinstance(getattr(self, "target", None), PixelTarget) and self.target.normalize

    def random_masking(self, images, noise=None):
        """Decide which tokens to hide: dict of `ids_keep`, `ids_restore`, `mask` `(B, N)`."""
        return self.mask_generator(images, grid_shape=self.encoder.grid_shape, noise=noise)

    def add_layer_losses(self, loss):
        """`loss` plus the losses layers added (e.g. activity regularisers), in float32,
        divided by the number of replicas under a `tf.distribute` strategy (each replica
        returns its share, as Keras' own losses do; see `keras_mim.distribute`)."""
        # read once and summed term by term: `ops.sum` of the list stacks it, which torch.compile
        # (torch 2.11, ViT-B on a GPU) traced as a stack of an empty list and refused
        for extra in list(self.losses):
            loss = loss + ops.cast(ops.sum(extra), "float32")
        strategy = getattr(self, "distribute_strategy", None)  # TensorFlow backend only
        replicas = 1 if strategy is None else strategy.num_replicas_in_sync
        return loss if replicas == 1 else loss * (1.0 / replicas)
