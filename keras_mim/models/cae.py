"""CAE: Context Autoencoder for Self-Supervised Representation Learning (Chen et al., 2022).

Official code: Atten4Vis/CAE, `models/modeling_cae.py` (`ContextAutoencoderViT.forward`)
and `furnace/engine_for_pretraining.py` (the loss); this module follows their order:
`random_masking`, `forward_encoder` (visible patches), `forward_regressor` (the latent
contextual regressor), `forward_alignment_target` (the encoder on the hidden patches, no
gradient), `forward_decoder`, `forward_loss`.
"""

import keras
from keras import ops

from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.pos_embed import PositionEmbedding
from keras_mim.layers.token_ops import gather_tokens
from keras_mim.losses import masked_mean, mse_per_token
from keras_mim.masking import BlockMaskGenerator, get_mask_generator
from keras_mim.models.cae_regressor import CAEDecoder, LatentRegressor
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import TEST_VIT, decoder, vit
from keras_mim.models.pretraining_model import PretrainingModel, check_encoder
from keras_mim.models.reconstruction import make_target, pixel_reconstruction
from keras_mim.utils import check_mask_ratio


def hidden_ids(ids_restore, num_visible):
    """Grid positions of the hidden tokens `(B, N - K)`, in the mask generator's shuffled order."""
    return ops.argsort(ids_restore, axis=1)[:, num_visible:]  # ids_shuffle[:, K:]


def as_layer(value, cls, name, defaults):
    """`value` as a `cls` layer: itself, from its serialized config, or built from a dict
    of its arguments (over `defaults`) or from `defaults` alone (None)."""
    if isinstance(value, dict) and "class_name" in value:
        value = keras.saving.deserialize_keras_object(value)
    if value is None or isinstance(value, dict):
        return cls(**{"name": name, **defaults, **(value or {})})
    if not isinstance(value, cls):
        raise TypeError(f"`{name}` must be a {cls.__name__}, a dict of its arguments or None, "
                        f"got {type(value).__name__}.")
    return value


@keras.saving.register_keras_serializable(package="keras_mim")
class CAE(PretrainingModel):
    """CAE pretraining: the encoder sees the visible patches; a latent contextual
    regressor predicts the hidden patches' latents from them; those predictions are
    aligned with the encoder's own latents of the hidden patches, and a light decoder
    maps them to the target.

    The encoder runs on the K visible patches (and its cls token). Its patch latents,
    projected by a Dense + LayerNorm when the regressor is narrower or wider (the
    official `encoder_to_regresser`), go to the `LatentRegressor`: queries = a learned
    mask token + the fixed sin-cos position of each of the M hidden patches,
    cross-attending to the visible latents and themselves (keys carry positions, values
    do not). The `CAEDecoder` runs transformer blocks on the M predicted latents (plus
    positions) only and predicts the target of each hidden patch. The alignment target
    is the same encoder run on the M hidden patches (with its cls token, dropped), projected
    the same way, under `stop_gradient`: the official code keeps an `alignment_encoder`
    whose parameters are re-pointed to the encoder's at every step
    (`param_alignment_encoder.data = param_encoder.data`) and runs it under
    `torch.no_grad()`, which is this, so no EMA teacher is kept; the encoder gets
    gradient only through the visible path. As there, the target pass runs in training
    mode during `fit` (drop path active, with its own draws).

    Loss (in `compute_loss`, float32): per-patch MSE between prediction and target,
    averaged over hidden patches, plus `alignment_weight` (official 2) x the mean squared
    error between predicted and target latents over every element.

    `call(images, noise=None)` returns `pred` `(B, N, P)` (the hidden patches'
    predictions in place, zeros at visible ones), `mask` `(B, N)` (1 = hidden),
    `ids_restore` `(B, N)` and `latent_pred` `(B, M, Dr)`, the regressor's output, its
    M tokens in the mask generator's shuffled order (`ids_restore`'s inverse from K on).

    Differences from the official code: the target is pixels by default (normalised per
    patch, as MAE; any `keras_mim.targets.Target`), not DALL-E tokens with a
    cross-entropy. keras_mim's layers: a key bias in every attention (the official has q
    and v biases only; a key bias shifts all logits of a query equally, so the softmax
    ignores it); the patch projection initialised as a Dense, xavier (the official: a
    truncated normal, std 0.02; every other Dense is xavier in both); the regressor's
    q/k/v kernels drawn with variance 1 / (2D) (`MultiHeadCrossAttention`; the official
    1 / D); the official `--fix_init_weight` rescaling not offered; MAE's sin-cos table
    (its halves in the other order: column index first, the official row first). Block
    masks hide an exact count per image (see `BlockMaskGenerator`). Hidden tokens are
    kept in the mask generator's order, not row-major (the loss is the same).

    Args:
        encoder: a `ViTEncoder` (or any encoder keeping its protocol); after
            pretraining, this object is what downstream models reuse.
        regressor: a `LatentRegressor`, a dict of its arguments, or None. Its width is
            the decoder's; its heads, MLP ratio, LayerScale and drop path default to the
            decoder's (the official shares them); depth 4.
        decoder: a `CAEDecoder`, a dict of its arguments (`decoder_dim`, `depth`,
            `num_heads`, `mlp_ratio`, `layer_scale`, `drop_path_rate`), or None:
            the encoder's width and heads, 4 blocks, LayerScale 0.1. Its width is the
            regressor's (the official `decoder_embed_dim`).
        mask_generator: a `MaskGenerator`, a name from `keras_mim.masking.MASK_GENERATORS`,
            or a dict of `BlockMaskGenerator` arguments (the ViT-B preset:
            `{"min_num_patches": 16}`, the official `min_mask_patches_per_block`).
        mask_ratio: fraction of hidden tokens when `mask_generator` is a name or a dict
            (official: 98 of 196, 0.5). At least one token must be hidden.
        norm_pix_loss: with the default pixel target, normalise each target patch by its
            mean and unbiased variance (default True); leave None when giving `target`.
        norm_pix_eps: epsilon of that normalisation (default 1e-6).
        target: None (pixels, per `norm_pix_loss`), a `keras_mim.targets.Target`, or a
            name from `keras_mim.targets.TARGETS`.
        alignment_weight: weight of the alignment loss (official `align_loss_weight` 2).
        seed: optional int seed of the mask generator (and, offset, of the regressor's and
            decoder's drop path) when built here.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> model = CAE.from_preset("cae_vit_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(8, 16, 16, 3).astype("float32"), epochs=1, verbose=0)
        >>> out = model.predict(np.zeros((2, 16, 16, 3), "float32"), verbose=0)
        >>> sorted(out), out["latent_pred"].shape  # 8 of 16 patches hidden, regressor 16 wide
        (['ids_restore', 'latent_pred', 'mask', 'pred'], (2, 8, 16))
    """

    def __init__(self, encoder, regressor=None, decoder=None, mask_generator="block", mask_ratio=0.5,
                 norm_pix_loss=None, norm_pix_eps=None, target=None, alignment_weight=2.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = check_encoder(encoder, "CAE")
        self.patch_size = encoder.patch_shape
        if tuple(encoder.output_grid_shape) != tuple(encoder.grid_shape):
            raise ValueError(
                f"CAE predicts one latent per patch, but the encoder's output grid {encoder.output_grid_shape} "
                f"differs from its patch grid {encoder.grid_shape}."
            )
        self.target = make_target(target, norm_pix_loss, norm_pix_eps)
        output_dim = self.target.output_dim(self.patch_size, encoder.num_channels)
        p = self.dtype_policy
        sub_seed = (lambda k: None) if seed is None else (lambda k: seed + k)
        self.decoder = as_layer(decoder, CAEDecoder, "decoder", dict(
            output_dim=output_dim, decoder_dim=encoder.output_dim, num_heads=getattr(encoder, "num_heads", 12),
            seed=sub_seed(200), dtype=p))
        if self.decoder.output_dim != output_dim:
            raise ValueError(f"`decoder` predicts {self.decoder.output_dim} values per patch, but the target has "
                             f"{output_dim} ({type(self.target).__name__} of {self.patch_size} patches).")
        dec = self.decoder
        self.regressor = as_layer(regressor, LatentRegressor, "regressor", dict(
            dim=dec.decoder_dim, num_heads=dec.num_heads, mlp_ratio=dec.mlp_ratio, layer_scale=dec.layer_scale,
            drop_path_rate=dec.drop_path_rate, seed=sub_seed(100), dtype=p))
        if self.regressor.dim != dec.decoder_dim:
            raise ValueError(f"The regressor's width `dim`={self.regressor.dim} must equal the decoder's "
                             f"`decoder_dim`={dec.decoder_dim} (one width, the official `decoder_embed_dim`).")
        if isinstance(mask_generator, dict) and "class_name" not in mask_generator:  # BlockMaskGenerator arguments
            mask_generator = BlockMaskGenerator(**{"mask_ratio": mask_ratio, "seed": seed, **mask_generator})
        self.mask_generator = get_mask_generator(mask_generator, mask_ratio=mask_ratio, seed=seed,
                                                 patch_size=encoder.patch_size[0])
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, encoder.num_patches)
        self.num_visible = self.mask_generator.num_visible(encoder.grid_shape)  # K, static
        if self.num_visible == encoder.num_patches:
            raise ValueError(f"`mask_ratio`={self.mask_ratio} hides none of the {encoder.num_patches} patches; "
                             "CAE predicts hidden patches, so at least one must be hidden.")
        if isinstance(alignment_weight, bool) or not isinstance(alignment_weight, (int, float)) \
                or not alignment_weight >= 0:
            raise ValueError(f"`alignment_weight` must be a float >= 0, got {alignment_weight!r}.")
        self.alignment_weight = float(alignment_weight)
        self.projection = None
        if dec.decoder_dim != encoder.output_dim:  # the official encoder_to_regresser (+ its norm)
            self.projection = keras.Sequential([
                keras.layers.Dense(dec.decoder_dim, dtype=p, name="encoder_to_regressor"),
                LayerNorm(epsilon=1e-6, dtype=p, name="encoder_to_regressor_norm"),
            ], name="projection")
        self.pos_embed = PositionEmbedding(encoder.grid_shape, "sincos", cls_token=False, dtype=p,
                                           name="regressor_pos_embed")
        self.seed = seed

    @property
    def num_hidden(self):
        """M, the static number of hidden patches per image."""
        return self.encoder.num_patches - self.num_visible

    def build(self, images_shape=None):
        # Sub-layers deserialised from a `.keras` file (or shared) arrive already built.
        if not self.encoder.built:
            self.encoder.build()
        if self.projection is not None and not self.projection.built:
            self.projection.build((None, None, self.encoder.output_dim))
        if not self.pos_embed.built:
            self.pos_embed.build((None, self.encoder.num_patches, self.decoder.decoder_dim))
        for layer in (self.regressor, self.decoder):
            if not layer.built:
                layer.build()
        self.built = True

    # ------------------------------------------------------------------ the method
    def project(self, latent):
        """Encoder latents `(B, T, D)` -> regressor width `(B, T, Dr)`."""
        return latent if self.projection is None else self.projection(latent)

    def positions(self, ids):
        """Sin-cos rows of grid positions `ids` `(B, T)` at the regressor width: `(B, T, Dr)`."""
        table = self.pos_embed.patch_embedding()  # (1, N, Dr)
        return gather_tokens(ops.broadcast_to(table, (ops.shape(ids)[0],) + tuple(table.shape[1:])), ids)

    def forward_encoder(self, images, noise=None, training=None):
        self.encoder.check_images(images)
        masking = self.random_masking(images, noise=noise)  # ids_keep (B, K), ids_restore, mask (B, N)
        latent = self.encoder(images, ids_keep=masking["ids_keep"], training=training)  # (B, 1 + K, D)
        return latent, masking

    def forward_regressor(self, latent, masking, training=None):
        """Predicted latents of the hidden patches `(B, M, Dr)` from the visible ones."""
        visible = self.project(latent)[:, self.encoder.num_prefix_tokens :]  # (B, K, Dr), cls dropped
        ids_hidden = hidden_ids(masking["ids_restore"], self.num_visible)  # (B, M)
        return self.regressor(visible, self.positions(masking["ids_keep"]), self.positions(ids_hidden),
                              training=training)

    def forward_alignment_target(self, images, ids_restore, training=None):
        """The encoder's own latents of the hidden patches `(B, M, Dr)`, no gradient."""
        ids_hidden = hidden_ids(ids_restore, self.num_visible)  # (B, M)
        latent = self.encoder(images, ids_keep=ids_hidden, training=training)  # (B, 1 + M, D)
        return ops.stop_gradient(self.project(latent[:, self.encoder.num_prefix_tokens :]))

    def forward_decoder(self, latent_pred, ids_restore, training=None):
        """Predictions of the hidden patches, put in place on the grid: `(B, N, P)`, zeros where visible."""
        ids_hidden = hidden_ids(ids_restore, self.num_visible)
        pred = self.decoder(latent_pred, self.positions(ids_hidden), training=training)  # (B, M, P)
        visible = ops.zeros_like(pred[:, :1])  # (B, 1, P)
        visible = ops.broadcast_to(visible, (ops.shape(pred)[0], self.num_visible, pred.shape[-1]))
        return gather_tokens(ops.concatenate([visible, pred], axis=1), ids_restore)  # unshuffle

    def reconstruction_loss(self, images, pred, mask):
        target = self.target(images, patch_size=self.patch_size)  # (B, N, P) float32
        return masked_mean(mse_per_token(pred, target), mask)  # mean over hidden patches

    def alignment_loss(self, latent_pred, latent_target):
        diff = ops.cast(latent_pred, "float32") - ops.cast(latent_target, "float32")
        return ops.mean(ops.square(diff))  # F.mse_loss, mean over B x M x Dr

    def forward_loss(self, images, pred, mask, latent_pred, latent_target):
        return (self.reconstruction_loss(images, pred, mask)
                + self.alignment_weight * self.alignment_loss(latent_pred, latent_target))

    def call(self, images, noise=None, training=None):
        latent, masking = self.forward_encoder(images, noise=noise, training=training)
        latent_pred = self.forward_regressor(latent, masking, training=training)  # (B, M, Dr)
        pred = self.forward_decoder(latent_pred, masking["ids_restore"], training=training)  # (B, N, P)
        return {"pred": pred, "mask": masking["mask"], "ids_restore": masking["ids_restore"],
                "latent_pred": latent_pred}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        latent_target = self.forward_alignment_target(x, y_pred["ids_restore"], training=training)
        loss = self.forward_loss(x, y_pred["pred"], y_pred["mask"], y_pred["latent_pred"], latent_target)
        return self.add_layer_losses(loss)

    def reconstruct(self, images, noise=None):
        """Images `(B, H, W, C)` with the hidden patches predicted and the visible ones as
        given (CAE predicts only hidden patches), the hidden-pixel mask `(B, H, W, 1)` and
        the token mask: `(reconstruction, pixel_mask, mask)`. A normalised prediction is
        mapped back with each patch's own statistics, as `MaskedAutoencoder.reconstruct`;
        any other target raises a ValueError."""
        out = self(images, noise=noise, training=False)
        rec, pixel_mask = pixel_reconstruction(self.target, images, out["pred"], out["mask"], self.patch_size)
        images = ops.cast(images, "float32")
        return rec * pixel_mask + images * (1.0 - pixel_mask), pixel_mask, out["mask"]

    def get_config(self):
        config = super().get_config()
        parts = ("encoder", "regressor", "decoder", "mask_generator", "target")
        config.update({name: keras.saving.serialize_keras_object(getattr(self, name)) for name in parts})
        config.update(mask_ratio=self.mask_ratio, alignment_weight=self.alignment_weight, seed=self.seed)
        return config


register_method(MethodSpec(
    name="cae", model=CAE, family="features", pixels=True,
    description="CAE: latent regressor from visible to hidden latents, aligned to the encoder's own; "
                "decoder to pixels.",
    paper="Chen et al., 2022 (IJCV)", code="Atten4Vis/CAE",
    presets={
        "cae_vit_base_patch16": dict(
            description="CAE ViT-B/16 (LayerScale 0.1, drop path 0.1), 224 px; regressor and decoder "
                        "768 x 4 x 12; block masks 98 of 196 (official cae_base_800e.sh).",
            encoder=vit(224, 16, 768, 12, 12, layer_scale=0.1, drop_path_rate=0.1),
            decoder=decoder(768, 4, 12, layer_scale=0.1, drop_path_rate=0.1),
            kwargs={"regressor": {"depth": 4}, "mask_generator": {"min_num_patches": 16}, "mask_ratio": 0.5}),
        "cae_vit_test": dict(
            description="CAE on the test ViT: regressor and decoder 16 x 1 x 2 (a projection from 32).",
            encoder=TEST_VIT, decoder=decoder(16, 1, 2), kwargs={"regressor": {"depth": 1}}),
    },
))
