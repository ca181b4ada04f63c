"""MAE: Masked Autoencoders Are Scalable Vision Learners (He et al., CVPR 2022).

Official code: facebookresearch/mae, `models_mae.py`; this module follows its structure
(`patchify`, `random_masking`, `forward_encoder`, `forward_decoder`, `forward_loss`).
"""

import keras
from keras import ops

from keras_mim.layers.patching import patchify, unpatchify
from keras_mim.losses import masked_mean
from keras_mim.masking import get_mask_generator
from keras_mim.models.mae_decoder import make_decoder
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.partial_decoding import PartialDecoding
from keras_mim.models.presets import (
    MAE_DECODER, TEST_DECODER, TEST_VIT, VIT_BASE_16, VIT_HUGE_14, VIT_LARGE_16, VIT_SMALL_16, VIT_TINY_16,
    decoder, vit,
)
from keras_mim.models.pretraining_model import PretrainingModel, check_encoder
from keras_mim.models.reconstruction import make_target, pixel_reconstruction
from keras_mim.targets import PixelTarget
from keras_mim.utils import check_mask_ratio


@keras.saving.register_keras_serializable(package="keras_mim")
class MaskedAutoencoder(PretrainingModel):
    """MAE pretraining model: encode visible tokens only, decode all, score hidden ones.

    `call(images, noise=None)` returns a dict: `pred` `(B, N, ph*pw*C)` (per-patch
    normalised pixels when `norm_pix_loss`), `mask` `(B, N)` (1 = hidden) and
    `ids_restore` `(B, N)`. The loss lives in `compute_loss`, so `fit` works
    unchanged on every backend: the target's per-token loss (`Target.loss_per_token`:
    MSE, or a `TeacherFeatures`' cosine) against the target (normalised pixels by
    default; any `keras_mim.targets.Target`, e.g. HOG or a frozen teacher's features),
    averaged over hidden patches only, in float32.

    Partial reconstruction (VideoMAE V2's dual masking, also on images): with a
    `decoder_mask_generator`, a `PartialDecoding` runs the decoder on the visible tokens
    plus a static subset of the hidden ones, and the loss scores that subset; `call`
    then also returns `decode_mask` `(B, N)` (1 = hidden and decoded), `pred` is zero
    where nothing was decoded, and `call(..., decoder_noise=scores)` fixes the decoder
    mask (lower = decoded).

    Args:
        encoder: a `ViTEncoder` (or any encoder keeping its protocol); after
            pretraining, this object is what downstream models reuse.
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
        target: None (pixels, per `norm_pix_loss`), a `keras_mim.targets.Target` (e.g.
            `TeacherFeatures(teacher, loss="cosine")`, checked against the encoder here),
            or a name from `keras_mim.targets.TARGETS` (`"pixels"`, `"hog"`, `"fourier"`).
        decoder_mask_generator: None (decode every token), or the decoder mask of
            partial reconstruction: a `MaskGenerator` or a name (VideoMAE V2:
            `"running_cell"`).
        decoder_mask_ratio: fraction of tokens the decoder mask hides (V2: 0.5).
        seed: optional int seed of the mask generators built from names.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> model = MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(8, 16, 16, 3).astype("float32"), epochs=1, verbose=0)
        >>> sorted(model.predict(np.zeros((2, 16, 16, 3), "float32"), verbose=0))
        ['ids_restore', 'mask', 'pred']
    """

    #: Default pixel-target options (VideoMAE normalises per channel).
    pixel_target_options = {}

    def __init__(self, encoder, decoder=None, mask_generator="random", mask_ratio=0.75, norm_pix_loss=None,
                 norm_pix_eps=None, target=None, decoder_mask_generator=None, decoder_mask_ratio=0.5, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.encoder = check_encoder(encoder, type(self).__name__)
        self.patch_size = encoder.patch_shape  # (ph, pw), or (t, ph, pw) tubelets for clips
        self.target = make_target(target, norm_pix_loss, norm_pix_eps, encoder=encoder, **self.pixel_target_options)
        self.decoder = make_decoder(decoder, encoder, self.target.output_dim(self.patch_size, encoder.num_channels))
        self.mask_generator = get_mask_generator(
            mask_generator, mask_ratio=mask_ratio, seed=seed, patch_size=encoder.patch_size[0]
        )
        # The generator's own ratio rules; fail now if it leaves no token visible.
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, encoder.num_patches)
        self.num_visible = self.mask_generator.num_visible(encoder.grid_shape)  # K, static
        self.partial_decoding = None
        if decoder_mask_generator is not None:
            self.partial_decoding = PartialDecoding(
                decoder_mask_generator, decoder_mask_ratio, seed=None if seed is None else seed + 1,
                patch_size=encoder.patch_size[0], name="partial_decoding",
            )
            self.partial_decoding.num_decoded(encoder.grid_shape, self.num_visible)  # raises if none
        self.decoder_mask_ratio = decoder_mask_ratio
        self.seed = seed

    @property
    def decoder_mask_generator(self):
        """The decoder mask of partial reconstruction (None: every token is decoded)."""
        return None if self.partial_decoding is None else self.partial_decoding.mask_generator

    @property
    def num_decoded(self):
        """Static number of hidden tokens the decoder reconstructs."""
        if self.partial_decoding is None:
            return self.encoder.num_patches - self.num_visible
        return self.partial_decoding.num_decoded(self.encoder.grid_shape, self.num_visible)

    def build(self, images_shape=None):
        # Sub-models deserialised from a `.keras` file (or shared) arrive already built.
        if not self.encoder.built:
            self.encoder.build()
        if not self.decoder.built:
            self.decoder.build((None, self.num_visible + self.encoder.num_prefix_tokens, self.encoder.output_dim))
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
        masking = self.random_masking(images, noise=noise)  # ids_keep (B, K), ids_restore, mask (B, N)
        latent = self.encoder(images, ids_keep=masking["ids_keep"], training=training)  # (B, 1 + K, D)
        return latent, masking

    def forward_decoder(self, latent, masking, decoder_noise=None, training=None):
        """`{"pred": (B, N, P)}`; with partial decoding also `decode_mask` `(B, N)`."""
        if self.partial_decoding is None:
            return {"pred": self.decoder(latent, masking["ids_restore"], training=training)}
        return self.partial_decoding.decode(self.decoder, latent, masking, self.encoder.grid_shape,
                                            self.num_visible, decoder_noise, training=training)

    def forward_loss(self, images, pred, mask):
        target = self.target(images, patch_size=self.patch_size)  # (B, N, P) float32
        loss = self.target.loss_per_token(pred, target)  # (B, N): MSE unless the target says otherwise
        if self.num_visible == self.encoder.num_patches:
            mask = ops.ones_like(mask)  # nothing hidden (ratio 0): score every patch
        return masked_mean(loss, mask)  # mean over hidden patches

    def call(self, images, noise=None, decoder_noise=None, training=None):
        latent, masking = self.forward_encoder(images, noise=noise, training=training)
        out = self.forward_decoder(latent, masking, decoder_noise, training=training)
        return {**out, "mask": masking["mask"], "ids_restore": masking["ids_restore"]}

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
            decoder_mask_generator=keras.saving.serialize_keras_object(self.decoder_mask_generator),
            decoder_mask_ratio=self.decoder_mask_ratio,
            seed=self.seed,
        )
        return config


register_method(MethodSpec(
    name="mae", model=MaskedAutoencoder, family="pixels", pixels=True,
    description="MAE: visible-only encoder, light decoder, pixel loss on hidden patches.",
    paper="He et al., CVPR 2022", code="facebookresearch/mae",
    presets={
        # ImageNet-scale (224 px; ViT-H uses patch 14). B/L/H decoders are the official 512 x 8 x 16.
        "mae_vit_tiny_patch16": dict(
            description="ViT-Ti/16 (192 x 12 blocks x 3 heads), 224 px, decoder 256 x 4 x 8.",
            encoder=VIT_TINY_16, decoder=decoder(256, 4, 8)),
        "mae_vit_small_patch16": dict(
            description="ViT-S/16 (384 x 12 x 6), 224 px, decoder 256 x 8 x 8.",
            encoder=VIT_SMALL_16, decoder=decoder(256, 8, 8)),
        "mae_vit_base_patch16": dict(
            description="ViT-B/16 (768 x 12 x 12), 224 px, decoder 512 x 8 x 16 (official MAE).",
            encoder=VIT_BASE_16, decoder=MAE_DECODER),
        "mae_vit_large_patch16": dict(
            description="ViT-L/16 (1024 x 24 x 16), 224 px, decoder 512 x 8 x 16 (official MAE).",
            encoder=VIT_LARGE_16, decoder=MAE_DECODER),
        "mae_vit_huge_patch14": dict(
            description="ViT-H/14 (1280 x 32 x 16), 224 px, decoder 512 x 8 x 16 (official MAE).",
            encoder=VIT_HUGE_14, decoder=MAE_DECODER),
        # Medical MAE (Xiao et al., WACV 2023, lambert-x/medical_mae) on chest X-rays: ratio 0.9 and a
        # milder crop (RandomResizedCrop scale 0.5-1.0, no flip): `keras-mim pretrain` applies it.
        "medmae_vit_base_patch16": dict(
            description="Medical MAE (chest X-rays): MAE ViT-B/16, mask ratio 0.9, medical augmentation.",
            encoder=VIT_BASE_16, decoder=MAE_DECODER, kwargs={"mask_ratio": 0.9}, augmentation="medical"),
        "medmae_vit_small_patch16": dict(
            description="Medical MAE ViT-S/16 (the paper's best ChestX-ray14 mAUC), mask ratio 0.9, medical "
                        "augmentation.",
            encoder=VIT_SMALL_16, decoder=decoder(256, 8, 8), kwargs={"mask_ratio": 0.9}, augmentation="medical"),
        "colormae_vit_base_patch16": dict(
            description="ColorMAE: MAE ViT-B/16 with green (band-pass) noise masks, ratio 0.75.",
            encoder=VIT_BASE_16, decoder=MAE_DECODER, kwargs={"mask_generator": "green", "mask_ratio": 0.75}),
        # Small images (32 px and below): CIFAR-sized data, CPU demos, tests.
        "mae_vit_tiny_patch4_32": dict(
            description="ViT-Ti (192 x 12 x 3), 32 px, patch 4 (64 tokens), decoder 128 x 4 x 4.",
            encoder=vit(32, 4, 192, 12, 3), decoder=decoder(128, 4, 4)),
        "mae_vit_micro_patch4_32": dict(
            description="128 x 6 x 4, 32 px, patch 4 (64 tokens), decoder 64 x 2 x 4: trains on a CPU.",
            encoder=vit(32, 4, 128, 6, 4), decoder=decoder(64, 2, 4)),
        "mae_vit_nano_patch2_16": dict(
            description="64 x 4 x 4, 16 px, patch 2 (64 tokens), decoder 64 x 2 x 4: digits-sized images.",
            encoder=vit(16, 2, 64, 4, 4), decoder=decoder(64, 2, 4)),
        "mae_vit_test": dict(
            description="32 x 2 x 2, 16 px, patch 4 (16 tokens), decoder 32 x 1 x 2: for unit tests.",
            encoder=TEST_VIT, decoder=TEST_DECODER),
    },
))
