"""MAE: Masked Autoencoders Are Scalable Vision Learners (He et al., 2021)."""

import keras
from keras import ops

from keras_mim.layers.patching import patchify, unpatchify
from keras_mim.layers.token_ops import restore_tokens
from keras_mim.losses import masked_mean, mse_per_token
from keras_mim.masking import get_mask_generator
from keras_mim.masking.selection import select_tokens
from keras_mim.models.mae_decoder import MAEDecoder
from keras_mim.models.presets import build_preset
from keras_mim.models.pretraining_model import PretrainingModel
from keras_mim.models.reconstruction import pixel_reconstruction
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

    Partial reconstruction (VideoMAE V2's dual masking, also usable on images): with a
    `decoder_mask_generator`, the decoder blocks run only on the K visible tokens plus
    a static number M of hidden ones, those the decoder mask keeps
    (`M = (N - K) * (1 - decoder_mask_ratio)`; exactly the tokens hidden from the
    encoder AND kept by the decoder mask whenever that count does not depend on the
    sample, e.g. running cells on a time grid that is a multiple of 4 under tube
    masking; otherwise the kept ones come first and ties break at random). The loss
    is taken on those M tokens; `call` then also returns `decode_mask` `(B, N)`
    (1 = hidden and decoded) and `pred` is zero where nothing was decoded.
    `call(..., decoder_noise=scores)` fixes the decoder mask (lower = decoded).

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
        decoder_mask_generator: None (decode every token), or the decoder mask of
            partial reconstruction: a `MaskGenerator` or a name (VideoMAE V2:
            `"running_cell"`).
        decoder_mask_ratio: fraction of tokens the decoder mask hides (V2: 0.5).
        seed: optional int seed of the mask generators built from names.
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
        decoder_mask_generator=None,
        decoder_mask_ratio=0.5,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(encoder, ViTEncoder):
            raise TypeError(f"`encoder` must be a ViTEncoder, got {type(encoder).__name__}.")
        self.encoder = encoder
        self.patch_size = encoder.patch_shape  # (ph, pw), or (t, ph, pw) tubelets for clips
        self.target = self.make_target(target, norm_pix_loss, norm_pix_eps)
        self.decoder = self.make_decoder(decoder, self.target.output_dim(self.patch_size, encoder.num_channels))
        self.mask_generator = get_mask_generator(
            mask_generator, mask_ratio=mask_ratio, seed=seed, patch_size=encoder.patch_size[0]
        )
        # The generator's own ratio rules; fail now if it leaves no token visible.
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, encoder.num_patches)
        self.mask_generator.num_visible(encoder.grid_shape)
        self.decoder_mask_generator = None
        if decoder_mask_generator is not None:
            self.decoder_mask_generator = get_mask_generator(
                decoder_mask_generator, mask_ratio=decoder_mask_ratio,
                seed=None if seed is None else seed + 1, patch_size=encoder.patch_size[0],
            )
        self.decoder_mask_ratio = decoder_mask_ratio
        self.num_decoded = self.decoded_count()
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

    def decoded_count(self):
        """Static number M of hidden tokens the decoder reconstructs (all of them unless a
        decoder mask is set)."""
        grid, n = self.encoder.grid_shape, self.encoder.num_patches
        hidden = n - self.mask_generator.num_visible(grid)
        if self.decoder_mask_generator is None:
            return hidden
        m = hidden * self.decoder_mask_generator.num_visible(grid) // n
        if m < 1:
            raise ValueError(
                f"`decoder_mask_ratio`={self.decoder_mask_ratio!r} leaves none of the {hidden} "
                "hidden tokens to reconstruct; use a lower decoder mask ratio."
            )
        return m

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
        """`(B, H, W, C) -> (B, N, ph * pw * C)` (clips: `(B, T, H, W, C) -> (B, N, t * ph * pw * C)`)."""
        return patchify(images, self.patch_size)

    def unpatchify(self, patches):
        """`(B, N, P) -> (B, [T,] H, W, C)` at the encoder's input size."""
        return unpatchify(patches, self.patch_size, self.encoder.input_size + (self.encoder.num_channels,))

    def forward_encoder(self, images, noise=None, training=None):
        self.encoder.check_images(images)
        masking = self.random_masking(images, noise=noise)
        latent = self.encoder(images, ids_keep=masking["ids_keep"], training=training)  # (B, 1+K, D)
        return latent, masking

    def decoder_masking(self, mask, decoder_noise=None):
        """Partial reconstruction: the K visible + M decoded tokens, visible ones first,
        as `select_tokens` output (`ids_keep` `(B, K + M)`, `mask` 1 = not decoded)."""
        gen, n = self.decoder_mask_generator, self.encoder.num_patches
        if decoder_noise is None:
            decoder_noise = gen.scores(ops.shape(mask)[0], self.encoder.grid_shape)  # lower = decoded
        elif tuple(decoder_noise.shape)[-1:] != (n,) or len(decoder_noise.shape) != 2:
            raise ValueError(f"`decoder_noise` must have shape (batch, {n}), got {tuple(decoder_noise.shape)}.")
        tie = keras.random.uniform(ops.shape(mask), seed=gen.seed_generator)  # running cells score 0 or 1
        scores = mask * (2.0 + ops.cast(decoder_noise, "float32") + 0.5 * tie)  # visible tokens: 0
        return select_tokens(scores, self.mask_generator.num_visible(self.encoder.grid_shape) + self.num_decoded)

    def forward_decoder(self, latent, ids_restore, mask=None, decoder_noise=None, training=None):
        """Predictions `(B, N, P)`; with a decoder mask, `(pred, decode_mask)` where the
        blocks ran on K + M tokens only and `pred` is zero elsewhere."""
        if self.decoder_mask_generator is None:
            return self.decoder(latent, ids_restore, training=training)  # (B, N, P)
        decoding = self.decoder_masking(mask, decoder_noise)
        pred = self.decoder(latent, ids_restore, ids_decode=decoding["ids_keep"], training=training)  # (B, K+M, P)
        pred = restore_tokens(pred, decoding["ids_restore"], ops.zeros((pred.shape[-1],)))  # (B, N, P)
        return pred, mask * (1.0 - decoding["mask"])

    def forward_loss(self, images, pred, mask):
        target = self.target(images, patch_size=self.patch_size)  # (B, N, P)
        loss = mse_per_token(pred, target)  # (B, N)
        if self.mask_generator.num_visible(self.encoder.grid_shape) == self.encoder.num_patches:
            mask = ops.ones_like(mask)  # nothing hidden (ratio 0): score every patch
        return masked_mean(loss, mask)

    def call(self, images, noise=None, decoder_noise=None, training=None):
        latent, masking = self.forward_encoder(images, noise=noise, training=training)
        out = {"mask": masking["mask"], "ids_restore": masking["ids_restore"]}
        if self.decoder_mask_generator is None:
            out["pred"] = self.forward_decoder(latent, masking["ids_restore"], training=training)
        else:
            out["pred"], out["decode_mask"] = self.forward_decoder(
                latent, masking["ids_restore"], masking["mask"], decoder_noise, training=training
            )
        return out

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        loss = self.forward_loss(x, y_pred["pred"], y_pred.get("decode_mask", y_pred["mask"]))
        return self.add_layer_losses(loss)

    def reconstruct(self, images, noise=None):
        """Reconstructed images `(B, H, W, C)` in pixel space and the hidden-pixel mask
        `(B, H, W, 1)` (clips: `(B, T, H, W, ...)`); returns `(reconstruction, pixel_mask, mask)`.

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
        rec, pixel_mask = pixel_reconstruction(self.target, images, out["pred"], out["mask"], self.patch_size)
        return rec, pixel_mask, out["mask"]

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            decoder=keras.saving.serialize_keras_object(self.decoder),
            mask_generator=keras.saving.serialize_keras_object(self.mask_generator),
            mask_ratio=self.mask_ratio,
            target=keras.saving.serialize_keras_object(self.target),
            decoder_mask_generator=(
                None if self.decoder_mask_generator is None
                else keras.saving.serialize_keras_object(self.decoder_mask_generator)
            ),
            decoder_mask_ratio=self.decoder_mask_ratio,
            seed=self.seed,
        )
        return config
