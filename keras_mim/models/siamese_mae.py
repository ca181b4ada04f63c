"""SiamMAE (Gupta et al., 2023) and CropMAE (Eymaël et al., 2024): reconstruct a hard-masked
target view from its own few visible patches and a fully visible reference view."""

import keras

from keras_mim.losses import masked_mean, mse_per_token
from keras_mim.masking import get_mask_generator
from keras_mim.models.cross_attention_decoder import CrossAttentionDecoder
from keras_mim.models.mae_decoder import make_decoder
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import TEST_DECODER, TEST_VIT, VIT_SMALL_16, decoder
from keras_mim.models.pretraining_model import PretrainingModel, check_encoder
from keras_mim.models.reconstruction import make_target, pixel_reconstruction
from keras_mim.models.view_pairs import VIEWS, ViewPairInputs  # noqa: F401  (VIEWS: its home was here)
from keras_mim.utils import check_mask_ratio

@keras.saving.register_keras_serializable(package="keras_mim")
class SiameseMAE(ViewPairInputs, PretrainingModel):
    """Two-view masked autoencoder (SiamMAE, CropMAE): one shared encoder sees the whole
    reference view and only the few visible patches of the target view; a
    cross-attention decoder predicts the target view's hidden patches from both.

    Input to `call`, `fit`, `evaluate` and `predict` is a dict
    `{"reference": (B, H, W, C), "target": (B, H, W, C)}`, both views of the encoder's
    size (a tf.data dataset of such dicts, or a dict of arrays). SiamMAE pairs two frames
    of a video (reference = the earlier one); CropMAE a global crop of an image
    (reference) and a local crop of that crop (target), as its default `GlobalToLocal`.
    Making the pairs is the data pipeline's job.

    `call(views, noise=None)` returns a dict: `pred` `(B, N, ph*pw*C)` (per-patch
    normalised pixels when `norm_pix_loss`), `mask` `(B, N)` of the target view
    (1 = hidden) and `ids_restore` `(B, N)`. The loss (`compute_loss`) is the per-patch
    MSE against the target view's pixels (normalised per patch by default, as both
    official trainings), averaged over its hidden patches, in float32.

    Args:
        encoder: a `ViTEncoder` for images; after pretraining, this object is what
            downstream models reuse.
        decoder: a `CrossAttentionDecoder`; a dict of its arguments (`decoder_dim`,
            `depth`, `num_heads`, `mlp_ratio`, `dropout`, `norm_first`); or None for the
            official ViT-S decoder (256 x 4 blocks x 8 heads). Its grid and output width
            follow the encoder and the target.
        mask_generator: a `keras_mim.masking.MaskGenerator` or a name from
            `keras_mim.masking.MASK_GENERATORS`; masks the target view only.
        mask_ratio: fraction of hidden target patches when `mask_generator` is a name
            (CropMAE 0.985: 2 of 196 patches visible; SiamMAE 0.95).
        norm_pix_loss: with the default pixel target, normalise each target patch by its
            mean and unbiased variance (default True); leave None when giving `target`.
        norm_pix_eps: epsilon of that normalisation (default 1e-6).
        target: None (pixels, per `norm_pix_loss`), a `keras_mim.targets.Target` or a
            name from `keras_mim.targets.TARGETS`.
        seed: optional int seed of the mask generator when built from a name.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> model = SiameseMAE.from_preset("cropmae_vit_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> views = {"reference": np.random.rand(8, 16, 16, 3).astype("float32"),
        ...          "target": np.random.rand(8, 16, 16, 3).astype("float32")}
        >>> history = model.fit(views, epochs=1, batch_size=4, verbose=0)
        >>> sorted(model.predict(views, verbose=0))
        ['ids_restore', 'mask', 'pred']
    """

    def __init__(
        self,
        encoder,
        decoder=None,
        mask_generator="random",
        mask_ratio=0.985,
        norm_pix_loss=None,
        norm_pix_eps=None,
        target=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder = check_encoder(encoder, "SiameseMAE")
        if getattr(encoder, "num_frames", None) is not None:
            raise ValueError(
                "SiameseMAE takes two image views (SiamMAE's frames are given as two images); "
                f"got a video encoder with `num_frames`={encoder.num_frames}."
            )
        self.patch_size = tuple(encoder.patch_size)
        self.target = make_target(target, norm_pix_loss, norm_pix_eps)
        output_dim = self.target.output_dim(self.patch_size, encoder.num_channels)
        self.decoder = make_decoder(decoder, encoder, output_dim, decoder_cls=CrossAttentionDecoder)
        self.mask_generator = get_mask_generator(
            mask_generator, mask_ratio=mask_ratio, seed=seed, patch_size=self.patch_size[0]
        )
        # The generator's own ratio rules; fail now if it leaves no token visible or hides none.
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, encoder.num_patches)
        if self.mask_generator.num_visible(encoder.grid_shape) == encoder.num_patches:
            raise ValueError(
                f"`mask_ratio`={self.mask_ratio!r} hides none of the {encoder.num_patches} target "
                "patches, so there is nothing to reconstruct; use a ratio of at least "
                f"{1.0 / encoder.num_patches:.4f} (CropMAE: 0.985, SiamMAE: 0.95)."
            )
        self.seed = seed

    def build(self, views_shape=None):
        # Sub-models deserialised from a `.keras` file (or shared) arrive already built.
        if not self.encoder.built:
            self.encoder.build()
        if not self.decoder.built:
            enc = self.encoder
            k = self.mask_generator.num_visible(enc.grid_shape)
            p, d = enc.num_prefix_tokens, enc.output_dim
            self.decoder.build((None, p + k, d), (None, enc.num_patches), (None, p + enc.num_patches, d))
        self.built = True

    # ------------------------------------------------------------------ the method
    def forward_encoder(self, reference, target, noise=None, training=None):
        """The reference view unmasked, the target view masked, through the one encoder."""
        reference_latent = self.encoder(reference, training=training)  # (B, P + N, D)
        masking = self.random_masking(target, noise=noise)
        target_latent = self.encoder(target, ids_keep=masking["ids_keep"], training=training)  # (B, P + K, D)
        return reference_latent, target_latent, masking

    def forward_decoder(self, target_latent, ids_restore, reference_latent, training=None):
        return self.decoder(target_latent, ids_restore, reference_latent, training=training)  # (B, N, P)

    def forward_loss(self, target_view, pred, mask):
        target = self.target(target_view, patch_size=self.patch_size)  # (B, N, P) float32
        return masked_mean(mse_per_token(pred, target), mask)  # mean over hidden target patches

    def call(self, views, noise=None, training=None):
        reference, target = self.split_views(views)
        reference_latent, target_latent, masking = self.forward_encoder(
            reference, target, noise=noise, training=training
        )
        pred = self.forward_decoder(target_latent, masking["ids_restore"], reference_latent, training=training)
        return {"pred": pred, "mask": masking["mask"], "ids_restore": masking["ids_restore"]}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        _, target = self.split_views(x, name="x")
        loss = self.forward_loss(target, y_pred["pred"], y_pred["mask"])
        return self.add_layer_losses(loss)

    def reconstruct(self, views, noise=None):
        """The target view reconstructed in pixel space `(B, H, W, C)` and its hidden-pixel
        mask `(B, H, W, 1)`; returns `(reconstruction, pixel_mask, mask)`.

        As for `MaskedAutoencoder.reconstruct`, a normalised prediction is mapped back
        with the statistics of the original patches (hidden ones included), which
        flatters the figures; train with `norm_pix_loss=False` for honest ones.
        """
        out = self(views, noise=noise, training=False)
        _, target = self.split_views(views)
        rec, pixel_mask = pixel_reconstruction(self.target, target, out["pred"], out["mask"], self.patch_size)
        return rec, pixel_mask, out["mask"]

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


VIT_S_DECODER = decoder(256, 4, 8)  # the official ViT-S/16 cross-attention decoder

register_method(MethodSpec(
    name="cropmae", model=SiameseMAE, family="two-view", views="cropmae", pixels=True, kwargs={"mask_ratio": 0.985},
    description="CropMAE: a local crop, 98.5% hidden, rebuilt from its global crop through a cross-attention "
                "decoder.",
    paper="Eymaël et al., ECCV 2024", code="alexandre-eymael/CropMAE", cli_preset="cropmae_vit_test",
    presets={
        "cropmae_vit_small_patch16": dict(
            description="CropMAE ViT-S/16: global/local crop pair, 98.5% of the local crop hidden (2 of 196 "
                        "patches visible), cross-attention decoder 256 x 4 x 8.",
            encoder=VIT_SMALL_16, decoder=VIT_S_DECODER, kwargs={"mask_ratio": 0.985}),
        "cropmae_vit_test": dict(
            description="CropMAE on the test ViT (16 px, patch 4: 16 tokens), decoder 32 x 1 x 2, ratio 0.75.",
            encoder=TEST_VIT, decoder=TEST_DECODER, kwargs={"mask_ratio": 0.75}),
    },
))

register_method(MethodSpec(
    name="siammae", model=SiameseMAE, family="two-view", data="clips", views="siammae", pixels=True,
    kwargs={"mask_ratio": 0.95},
    description="SiamMAE: a video frame, 95% hidden, rebuilt from an earlier frame through a cross-attention "
                "decoder.",
    paper="Gupta et al., NeurIPS 2023", cli_preset="siammae_vit_test",
    presets={
        "siammae_vit_small_patch16": dict(
            description="SiamMAE ViT-S/16: two video frames, 95% of the later one hidden, cross-attention "
                        "decoder 256 x 4 x 8.",
            encoder=VIT_SMALL_16, decoder=VIT_S_DECODER, kwargs={"mask_ratio": 0.95}),
        "siammae_vit_test": dict(
            description="SiamMAE on the test ViT (16 px, patch 4: 16 tokens), decoder 32 x 1 x 2, ratio 0.75.",
            encoder=TEST_VIT, decoder=TEST_DECODER, kwargs={"mask_ratio": 0.75}),
    },
))
