"""What every pretraining model shares: the encoder protocol and input checks made
before Keras traces a training step."""

import keras
from keras import ops

from keras_mim.distribute import scale_loss
from keras_mim.models.encoder_model import EncoderModel

#: What a pretraining model reads from its encoder (see `ViTEncoder`'s encoder protocol).
ENCODER_PROTOCOL = ("image_size", "patch_size", "num_channels", "grid_shape", "num_patches",
                    "num_prefix_tokens", "output_grid_shape", "output_dim", "check_images")


def check_encoder(encoder, method, mask_token=False):
    """Raise unless `encoder` keeps the encoder protocol (and owns a mask token if asked)."""
    missing = [a for a in ENCODER_PROTOCOL if not hasattr(encoder, a)]
    if not isinstance(encoder, keras.Model) or missing:
        raise TypeError(
            f"`encoder` must be an encoder model such as ViTEncoder (with {', '.join(ENCODER_PROTOCOL)}), "
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
    Subclasses set `self.encoder` (an encoder keeping the protocol of `ViTEncoder`) and
    implement `call` and `compute_loss`.
    """

    nested_objects = ("encoder", "decoder", "mask_generator", "target", "teacher", "loss_predictor",
                      "decoder_mask_generator")
    input_verb = "pretrains on"

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
        scaled for data parallelism (`keras_mim.distribute.scale_loss`)."""
        if self.losses:
            loss = loss + ops.cast(ops.sum(self.losses), "float32")
        return scale_loss(loss)  # / replicas under tf.distribute
