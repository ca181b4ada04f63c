"""MAE: Masked Autoencoders Are Scalable Vision Learners (He et al., 2021)."""

import keras
from keras import ops

from keras_mim.layers.patching import patchify, unpatchify
from keras_mim.losses import masked_mean, mse_per_token
from keras_mim.masking import get_mask_generator
from keras_mim.models.mae_decoder import MAEDecoder
from keras_mim.models.presets import build_preset
from keras_mim.models.pretraining_model import PretrainingModel
from keras_mim.models.vit_encoder import ViTEncoder
from keras_mim.targets import PixelTarget, get_target
from keras_mim.utils import check_mask_ratio


@keras.saving.register_keras_serializable(package="keras_mim")
class MaskedAutoencoder(PretrainingModel):
    """MAE pretraining model: encode visible tokens only, decode all, score hidden ones.

    `call(images, noise=None)` returns a dict: `pred` `(B, N, ph*pw*C)` (per-patch
    normalised pixels when `norm_pix_loss`), `mask` `(B, N)` (1 = hidden) and
    `ids_restore` `(B, N)`. The loss lives in `compute_loss`, so `fit` works
    unchanged on every backend: per-token MSE against the target (normalised pixels by
    default; any `keras_mim.targets.Target`, e.g. HOG), averaged over hidden patches
    only, in float32.

    Args:
        encoder: a `ViTEncoder`; after pretraining, this object is what downstream
            models reuse.
        decoder: a `MAEDecoder`; a dict of `MAEDecoder` arguments (`decoder_dim`,
            `depth`, `num_heads`, `mlp_ratio`); or None for the MAE default
            (512 x 8 blocks x 16 heads). Its grid and output width follow the encoder
            and the target.
        mask_generator: a `keras_mim.masking.MaskGenerator`, or a name from
            `keras_mim.masking.MASK_GENERATORS` (`"random"`, `"block"`, `"green"`, ...).
        mask_ratio: fraction of hidden tokens when `mask_generator` is a name.
        norm_pix_loss: with the default pixel target, normalise each target patch by its
            mean and unbiased variance (default True); leave None when giving `target`.
        norm_pix_eps: epsilon of that normalisation (default 1e-6, as MAE).
        target: None (pixels, per `norm_pix_loss`), a `keras_mim.targets.Target`, or a
            name from `keras_mim.targets.TARGETS` (`"pixels"`, `"hog"`, `"fourier"`).
        seed: optional int seed of the mask generator when built from a name.
        **kwargs: standard model arguments (name, dtype).

    Example:
    >>> import numpy as np, keras
    >>> model = MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
    >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    >>> history = model.fit(np.random.rand(8, 16, 16, 3).astype("float32"), epochs=1, verbose=0)
    >>> sorted(model.predict(np.zeros((2, 16, 16, 3), "float32"), verbose=0))
    ['ids_restore', 'mask', 'pred']
    """

    encoder_defaults = {}  # ViTEncoder arguments this method needs (see presets)

    def __init__(
        self,
        encoder,
        decoder=None,
        mask_generator="random",
        mask_ratio=0.75,
        norm_pix_loss=None,
        norm_pix_eps=None,
        target=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(encoder, ViTEncoder):
            raise TypeError(f"`encoder` must be a ViTEncoder, got {type(encoder).__name__}.")
        self.encoder = encoder
        self.patch_size = encoder.patch_size
        self.target = self.make_target(target, norm_pix_loss, norm_pix_eps)
        self.decoder = self.make_decoder(decoder, self.target.output_dim(self.patch_size, encoder.num_channels))
        self.mask_generator = get_mask_generator(
            mask_generator, mask_ratio=mask_ratio, seed=seed, patch_size=encoder.patch_size[0]
        )
        # The generator's own ratio rules; fail now if it leaves no token visible.
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, encoder.num_patches)
        self.mask_generator.num_visible(encoder.grid_shape)
        self.seed = seed
        self.build()  # every shape is known from the config

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """Build a freshly initialised model from a preset name (see `list_presets()`).

        Keyword arguments override the preset: encoder ones (`image_size`,
        `num_channels`, `drop_path_rate`, ...), decoder ones prefixed `decoder_`
        (`decoder_dim`, `decoder_depth`, `decoder_num_heads`) and this model's own
        (`mask_ratio`, `mask_generator`, `norm_pix_loss`, `seed`).
        """
        return build_preset(cls, preset, **kwargs)

    @staticmethod
    def make_target(target, norm_pix_loss=None, norm_pix_eps=None):
        """The `Target` from `target`, or pixels normalised per `norm_pix_loss`."""
        if target is None:
            return PixelTarget(
                normalize=True if norm_pix_loss is None else bool(norm_pix_loss),
                eps=1e-6 if norm_pix_eps is None else norm_pix_eps,
            )
        if norm_pix_loss is not None or norm_pix_eps is not None:
            raise ValueError(
                "`norm_pix_loss`/`norm_pix_eps` configure the default pixel target; with "
                f"`target`={target!r} leave them unset (use `PixelTarget(normalize=...)`)."
            )
        return get_target(target)

    def make_decoder(self, decoder, output_dim):
        """A `MAEDecoder` on the encoder's grid predicting `output_dim` values per token."""
        enc = self.encoder
        if decoder is None or isinstance(decoder, dict):
            kwargs = dict(decoder or {})
            kwargs.setdefault("name", "decoder")
            return MAEDecoder(enc.grid_shape, output_dim, num_prefix_tokens=enc.num_prefix_tokens, **kwargs)
        if not isinstance(decoder, MAEDecoder):
            raise TypeError(
                f"`decoder` must be a MAEDecoder, a dict of its arguments or None, got "
                f"{type(decoder).__name__}."
            )
        if decoder.grid_shape != enc.grid_shape or decoder.output_dim != output_dim:
            raise ValueError(
                f"`decoder` (grid {decoder.grid_shape}, output_dim {decoder.output_dim}) does not "
                f"match the encoder and target (grid {enc.grid_shape}, output_dim {output_dim})."
            )
        return decoder

    def build(self, images_shape=None):
        # Sub-models deserialised from a `.keras` file (or shared) arrive already built.
        if not self.encoder.built:
            self.encoder.build()
        if not self.decoder.built:
            k = self.mask_generator.num_visible(self.encoder.grid_shape)
            self.decoder.build((None, k + self.encoder.num_prefix_tokens, self.encoder.embed_dim))
        self.built = True

    # ------------------------------------------------------------------ the method
    def patchify(self, images):
        """`(B, H, W, C) -> (B, N, ph * pw * C)`."""
        return patchify(images, self.patch_size)

    def unpatchify(self, patches):
        """`(B, N, ph * pw * C) -> (B, H, W, C)` at the encoder's image size."""
        return unpatchify(patches, self.patch_size, self.encoder.image_size + (self.encoder.num_channels,))

    def forward_encoder(self, images, noise=None, training=None):
        self.encoder.check_images(images)
        masking = self.random_masking(images, noise=noise)
        latent = self.encoder(images, ids_keep=masking["ids_keep"], training=training)  # (B, 1+K, D)
        return latent, masking

    def forward_decoder(self, latent, ids_restore, training=None):
        return self.decoder(latent, ids_restore, training=training)  # (B, N, P)

    def forward_loss(self, images, pred, mask):
        target = self.target(images, patch_size=self.patch_size)  # (B, N, P)
        loss = mse_per_token(pred, target)  # (B, N)
        if self.mask_generator.num_visible(self.encoder.grid_shape) == self.encoder.num_patches:
            mask = ops.ones_like(mask)  # nothing hidden (ratio 0): score every patch
        return masked_mean(loss, mask)

    def call(self, images, noise=None, training=None):
        latent, masking = self.forward_encoder(images, noise=noise, training=training)
        pred = self.forward_decoder(latent, masking["ids_restore"], training=training)
        return {"pred": pred, "mask": masking["mask"], "ids_restore": masking["ids_restore"]}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        loss = self.forward_loss(x, y_pred["pred"], y_pred["mask"])
        return self.add_layer_losses(loss)

    def reconstruct(self, images, noise=None):
        """Reconstructed images `(B, H, W, C)` in pixel space and the hidden-pixel mask
        `(B, H, W, 1)`; returns `(reconstruction, pixel_mask, mask)`.

        With `norm_pix_loss=True` the model predicts each patch only up to its mean and
        contrast, so the prediction is mapped back with the statistics of the original
        patch, hidden ones included. That borrows information the model never saw: such
        figures look better than what was learned. The official MAE trains its
        visualisation models with `norm_pix_loss=False` for this reason; do the same
        (as `keras-mim pretrain` does by default) for honest figures.
        """
        if not isinstance(self.target, PixelTarget):
            raise ValueError(
                f"`reconstruct` needs a pixel target; this model predicts "
                f"{type(self.target).__name__} values."
            )
        out = self(images, noise=noise, training=False)
        pred = self.target.denormalize(out["pred"], images, self.patch_size)
        ph, pw = self.patch_size
        mask_patches = ops.repeat(ops.expand_dims(out["mask"], -1), ph * pw, axis=-1)
        pixel_mask = unpatchify(mask_patches, self.patch_size, self.encoder.image_size + (1,))
        return self.unpatchify(pred), pixel_mask, out["mask"]

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            decoder=keras.saving.serialize_keras_object(self.decoder),
            mask_generator=keras.saving.serialize_keras_object(self.mask_generator),
            mask_ratio=self.mask_ratio,
            target=keras.saving.serialize_keras_object(self.target),
            seed=self.seed,
        )
        return config
