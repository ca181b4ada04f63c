"""What every pretraining model shares: the encoder protocol and input checks made
before Keras traces a training step."""

import keras
from keras import ops

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


class PretrainingModel(keras.Model):
    """Base class of the pretraining models (MAE, SimMIM, MFM, MaskAlign, ...).

    `fit`, `evaluate` and `predict` check the images (rank, dtype, channels, size)
    against `self.encoder` before Keras traces a step: an error raised inside a traced
    step on JAX leaves the model's variables purged (Keras 3.15), losing the user's
    weights. Subclasses set `self.encoder` (an encoder keeping the protocol of
    `ViTEncoder`) and implement `call` and `compute_loss`.
    """

    #: Config entries that hold serialized Keras objects (sub-models, layers, targets).
    nested_objects = ("encoder", "decoder", "mask_generator", "target", "teacher", "loss_predictor",
                      "decoder_mask_generator")

    @property
    def norm_pix_loss(self):
        """Whether predictions are per-patch normalised pixels (figures need to know)."""
        from keras_mim.targets import PixelTarget

        return isinstance(getattr(self, "target", None), PixelTarget) and self.target.normalize

    def build_from_config(self, config):
        # Every shape is fixed by the config; the recorded input shape adds nothing.
        self.build()

    def random_masking(self, images, noise=None):
        """Decide which tokens to hide: dict of `ids_keep`, `ids_restore`, `mask` `(B, N)`."""
        return self.mask_generator(images, grid_shape=self.encoder.grid_shape, noise=noise)

    def add_layer_losses(self, loss):
        """`loss` plus the losses layers added (e.g. activity regularisers), in float32."""
        if self.losses:
            loss = loss + ops.cast(ops.sum(self.losses), "float32")
        return loss

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in cls.nested_objects:
            if isinstance(config.get(key), dict) and "class_name" in config[key]:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    @staticmethod
    def data_spec(x):
        """What `fit` will feed: a tf.data dataset's element spec, else `x`; of a
        `(inputs, labels)` pair, the inputs."""
        spec = getattr(x, "element_spec", x)
        if isinstance(spec, (tuple, list)) and spec:
            spec = spec[0]
        return spec

    def check_input_size(self, shape, name="x", what="inputs"):
        """Raise unless `shape[1:-1]` is the encoder's input size (`(H, W)`, `(T, H, W)` for clips)."""
        size = tuple(shape[1:-1])
        expected = tuple(getattr(self.encoder, "input_size", self.encoder.image_size))
        if size != expected:
            clips = ", with `num_frames` first for clips" if what == "inputs" else ""
            raise ValueError(
                f"`{name}` has {what} of size {size} but this model pretrains on {expected} "
                f"(`image_size`{clips}); resize or crop them, or build the model with that size."
            )

    def _check_data(self, x):
        spec = self.data_spec(x)
        if hasattr(spec, "shape") and hasattr(spec, "dtype"):
            self.encoder.check_images(spec, name="x")
            self.check_input_size(spec.shape)

    def fit(self, x=None, *args, **kwargs):
        self._check_data(x)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_data(x)
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_data(x)
        return super().predict(x, *args, **kwargs)

