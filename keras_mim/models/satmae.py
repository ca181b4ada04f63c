"""SatMAE: Pre-training Transformers for Temporal and Multi-Spectral Satellite Imagery
(Cong et al., NeurIPS 2022).

Official code: sustainlab-group/SatMAE (`models_mae_group_channels.py`,
`models_mae_temporal.py`); this module follows their structure (`patchify`,
`random_masking`, `forward_encoder`, `forward_decoder`, `forward_loss`). The bands of a
multispectral image are grouped, each group and patch is a token with a fixed encoding of
its position and group (and, for dated frames of one place, of each frame's date), tokens
are hidden independently or consistently across groups, and one light decoder predicts
each hidden token's pixels of its own bands.
"""

import keras
import numpy as np
from keras import ops

from keras_mim.layers.patching import patchify, unpatchify
from keras_mim.masking import get_mask_generator
from keras_mim.models.group_channel_encoder import GroupChannelEncoder
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.pretraining_model import PretrainingModel
from keras_mim.models.satmae_decoder import SatMAEDecoder
from keras_mim.targets.pixel_target import patch_statistics
from keras_mim.utils import check_mask_ratio

#: Sentinel-2 without B1, B9, B10 (10 bands, in the order B2 B3 B4 B5 B6 B7 B8 B8A B11 B12):
#: SatMAE's groups (B2 B3 B4 B8) visible + NIR, (B5 B6 B7 B8A) red edge, (B11 B12) SWIR.
SENTINEL2_GROUPS = ((0, 1, 2, 6), (3, 4, 5, 7), (8, 9))
#: SatMAE's decoder: 512 wide, 8 blocks, 16 heads.
DECODER = {"decoder_dim": 512, "depth": 8, "num_heads": 16, "mlp_ratio": 4.0}
DECODER_KEYS = ("decoder_dim", "depth", "num_heads", "mlp_ratio", "group_embed_dim", "time_embed_dim")
#: SatMAE's masking names -> mask generators over the `(T G, gh, gw)` token grid.
MASKINGS = {"independent": "random", "consistent": "tube"}
NORM_PIX_EPS = 1e-6


@keras.saving.register_keras_serializable(package="keras_mim")
class SatMAE(PretrainingModel):
    """Masked autoencoding of band groups (and dated frames) of satellite images.

    `call(inputs, noise=None)` takes images `(B, H, W, C)`, or for a temporal encoder a
    dict `{"frames": (B, T, H, W, C), "timestamps": (B, T, 3)}` (year, month, hour).
    It hides tokens of the `(T G, gh, gw)` grid of `encoder` (`GroupChannelEncoder`),
    encodes the visible ones and decodes every token with `SatMAEDecoder`. Returns a
    dict: `pred`, a list with one `(B, T N, ph pw |g|)` per group g (each token's
    pixels of the group's bands in (row, col, band of the group) order, per-patch
    normalised with `norm_pix_loss`), `mask` `(B, T G N)` (1 = hidden; frame-major, then
    group, then row-major patches) and `ids_restore`.

    Loss (`compute_loss`, float32): each group's prediction against its own bands'
    pixels, MSE per token, summed over the hidden tokens of every group and divided by
    the number of hidden tokens (the official `forward_loss`). With `norm_pix_loss`
    each patch's target is normalised by the mean and unbiased variance of the patch
    over all bands (as the official, which normalises before splitting the groups).

    Difference from the official code: the official group-channel loss compares the
    group-ordered prediction with the band-ordered target, so with non-contiguous
    groups (SatMAE's own: bands 3 and 6 swap places) some bands are scored against
    another band's pixels; here each group's prediction is scored against its own bands.

    Args:
        encoder: a `GroupChannelEncoder`.
        decoder: a dict of `SatMAEDecoder` arguments (`decoder_dim`, `depth`,
            `num_heads`, `mlp_ratio`, `group_embed_dim`, `time_embed_dim`) or None
            (SatMAE's 512 wide, 8 blocks, 16 heads).
        mask_ratio: fraction of tokens hidden (SatMAE: 0.75).
        mask_generator: `"independent"` (default: a uniform random mask over all `T G N`
            tokens, each group and frame masked on its own), `"consistent"` (the same
            spatial mask for every group and frame: SatMAE's `spatial_mask` option and the
            temporal `same_mask`), or any mask generator name or instance over the
            `(T G, gh, gw)` grid.
        norm_pix_loss: per-patch normalised targets (SatMAE: off).
        seed: optional int seed of the masks.
        **kwargs: standard model arguments.

    Examples:
        >>> import numpy as np
        >>> model = SatMAE.from_preset("satmae_vit_test", seed=0)
        >>> out = model(np.random.rand(2, 16, 16, 10).astype("float32"))
        >>> [tuple(p.shape) for p in out["pred"]]  # a (B, N, 4 x 4 x bands) per group
        [(2, 16, 64), (2, 16, 64), (2, 16, 32)]
        >>> tuple(out["mask"].shape), int(keras.ops.sum(1 - out["mask"][0]))  # 12 of 48 visible
        ((2, 48), 12)
    """

    def __init__(self, encoder, decoder=None, mask_ratio=0.75, mask_generator="independent", norm_pix_loss=False,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(encoder, GroupChannelEncoder):
            raise TypeError(f"`encoder` must be a GroupChannelEncoder, got {type(encoder).__name__}.")
        self.encoder = encoder
        if decoder is not None and not isinstance(decoder, dict):
            raise TypeError(f"`decoder` must be a dict of SatMAEDecoder arguments or None, got {type(decoder).__name__}.")
        unknown = sorted(set(decoder or {}) - set(DECODER_KEYS))
        if unknown:
            raise ValueError(f"`decoder` has unknown keys {unknown}; expected some of {list(DECODER_KEYS)}.")
        self.decoder_config = {**DECODER, **(decoder or {})}
        e = encoder
        self.decoder = SatMAEDecoder(e.channel_groups, e.patch_size, e.spatial_grid, e.num_frames,
                                     year_origin=e.year_origin, **self.decoder_config, dtype=self.dtype_policy,
                                     name="decoder")
        self.masking = mask_generator
        name = MASKINGS.get(mask_generator, mask_generator) if isinstance(mask_generator, str) else mask_generator
        self.mask_generator = get_mask_generator(name, mask_ratio=mask_ratio, seed=seed)
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, e.num_patches)
        self.num_visible = self.mask_generator.num_visible(e.grid_shape)  # K, static
        self.norm_pix_loss_enabled = bool(norm_pix_loss)
        self.seed = seed
        self.build()  # every shape is known from the config

    @property
    def norm_pix_loss(self):
        """Whether predictions are per-patch normalised pixels (figures need to know)."""
        return self.norm_pix_loss_enabled

    def build(self, input_shape=None):
        if not self.encoder.built:
            self.encoder.build()
        if not self.decoder.built:
            self.decoder.build((None, 1 + self.num_visible, self.encoder.output_dim))
        self.built = True

    def _check_data(self, x):
        spec = self.data_spec(x)
        if isinstance(spec, dict) or (hasattr(spec, "shape") and hasattr(spec, "dtype")):
            self.encoder.check_images(spec, name="x")

    def split_inputs(self, inputs):
        """`(images, timestamps)`: images `(B, [T,] H, W, C)`; timestamps None for images."""
        if self.encoder.num_frames is None:
            return inputs, None
        return inputs["frames"], inputs["timestamps"]

    # ------------------------------------------------------------------ the method
    def patchify(self, images, bands=None):
        """`(B, [T,] H, W, C) -> (B, T N, ph pw c)` float32: each token's pixels of `bands`
        (a group's band indices; None: all C), frame-major like the token grid."""
        e = self.encoder
        x = ops.reshape(ops.cast(images, "float32"), (-1,) + e.image_size + (e.num_channels,))  # (B T, H, W, C)
        if bands is not None:
            x = ops.take(x, bands, axis=-1)
        x = patchify(x, e.patch_size)  # (B T, N, ph pw c)
        return ops.reshape(x, (-1, (e.num_frames or 1) * x.shape[1], x.shape[2]))

    def unpatchify(self, patches, num_bands):
        """`(B, T N, ph pw c) -> (B T, H, W, c)`."""
        e = self.encoder
        x = ops.reshape(patches, (-1, patches.shape[1] // (e.num_frames or 1), patches.shape[2]))
        return unpatchify(x, e.patch_size, e.image_size + (num_bands,))

    def group_masks(self, mask):
        """`mask` `(B, T G N)` -> a list, one `(B, T N)` per group."""
        e = self.encoder
        t, g, n = e.num_frames or 1, len(e.channel_groups), e.num_patches // ((e.num_frames or 1) * len(e.channel_groups))
        m = ops.reshape(ops.cast(mask, "float32"), (-1, t, g, n))
        return [ops.reshape(m[:, :, i], (-1, t * n)) for i in range(g)]

    def random_masking(self, inputs, noise=None):
        images, _ = self.split_inputs(inputs)  # only its batch size is read
        return self.mask_generator(images, grid_shape=self.encoder.grid_shape, noise=noise)

    def forward_encoder(self, inputs, noise=None, training=None):
        masking = self.random_masking(inputs, noise=noise)  # ids_keep (B, K), ids_restore, mask (B, T G N)
        latent = self.encoder(inputs, ids_keep=masking["ids_keep"], training=training)  # (B, 1 + K, D)
        return latent, masking

    def forward_decoder(self, latent, ids_restore, timestamps=None, training=None):
        return self.decoder(latent, ids_restore, timestamps=timestamps, training=training)  # G x (B, T N, ph pw |g|)

    def forward_loss(self, images, pred, mask):
        """Float32: per-token MSE of each group against its own bands, summed over the hidden
        tokens of every group, over their number. The targets are the bands as the encoder
        sees them (normalised with its `band_mean` / `band_std`, if any)."""
        images = self.encoder.normalize_bands(images)
        stats = patch_statistics(self.patchify(images)) if self.norm_pix_loss_enabled else None  # (B, T N, 1) each
        if self.num_visible == self.encoder.num_patches:
            mask = ops.ones_like(mask)  # nothing hidden (ratio 0): score every token
        total = 0.0
        for group, p, m in zip(self.encoder.channel_groups, pred, self.group_masks(mask)):
            target = self.patchify(images, group)  # (B, T N, ph pw |g|)
            if stats is not None:
                target = (target - stats[0]) / ops.sqrt(stats[1] + NORM_PIX_EPS)
            per_token = ops.mean(ops.square(ops.cast(p, "float32") - target), axis=-1)  # (B, T N)
            total = total + ops.sum(per_token * m)
        return total / ops.maximum(ops.sum(ops.cast(mask, "float32")), 1.0)

    def call(self, inputs, noise=None, training=None):
        self.encoder.check_images(inputs, name="inputs")
        latent, masking = self.forward_encoder(inputs, noise=noise, training=training)
        pred = self.forward_decoder(latent, masking["ids_restore"], self.split_inputs(inputs)[1], training=training)
        return {"pred": pred, "mask": masking["mask"], "ids_restore": masking["ids_restore"]}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        loss = self.forward_loss(self.split_inputs(x)[0], y_pred["pred"], y_pred["mask"])
        return self.add_layer_losses(loss)

    def reconstruct(self, inputs, noise=None):
        """`(reconstruction, pixel_mask, token_mask)`: the predicted images in band order
        `(B, H, W, C)` (temporal: `(B, T, H, W, C)`), float32, in the input's units (the
        encoder's band normalisation undone); `pixel_mask` of the same
        shape, 1 where the pixel's token (its band group's, at its patch) was hidden; and
        the token mask `(B, T G N)`. Normalised predictions are mapped back with each
        patch's own statistics, hidden ones included (see `MaskedAutoencoder.reconstruct`
        on why such figures flatter the model)."""
        out = self(inputs, noise=noise, training=False)
        images, _ = self.split_inputs(inputs)
        e = self.encoder
        images = e.normalize_bands(images)
        stats = patch_statistics(self.patchify(images)) if self.norm_pix_loss_enabled else None
        area = e.patch_size[0] * e.patch_size[1]
        recs, masks = [], []
        for group, p, m in zip(e.channel_groups, out["pred"], self.group_masks(out["mask"])):
            p = ops.cast(p, "float32")
            if stats is not None:
                p = p * ops.sqrt(stats[1] + NORM_PIX_EPS) + stats[0]
            recs.append(self.unpatchify(p, len(group)))  # (B T, H, W, |g|)
            hidden = self.unpatchify(ops.repeat(ops.expand_dims(m, -1), area, axis=-1), 1)  # (B T, H, W, 1)
            masks.append(ops.repeat(hidden, len(group), axis=-1))
        order = np.argsort([b for group in e.channel_groups for b in group])  # group order -> band order
        shape = (-1,) + tuple(images.shape[1:])
        rec, pixel_mask = (ops.reshape(ops.take(ops.concatenate(parts, axis=-1), order, axis=-1), shape)
                           for parts in (recs, masks))
        return e.denormalize_bands(rec), pixel_mask, out["mask"]

    def get_config(self):
        config = super().get_config()
        masking = self.masking if isinstance(self.masking, str) else keras.saving.serialize_keras_object(
            self.mask_generator)
        config.update(encoder=keras.saving.serialize_keras_object(self.encoder), decoder=self.decoder_config,
                      mask_ratio=self.mask_ratio, mask_generator=masking, norm_pix_loss=self.norm_pix_loss_enabled,
                      seed=self.seed)
        return config


def sentinel2(image_size, patch_size, embed_dim, depth, num_heads, **kwargs):
    """GroupChannelEncoder arguments on SatMAE's 10 Sentinel-2 bands and groups."""
    return dict(image_size=image_size, patch_size=patch_size, num_channels=10, channel_groups=SENTINEL2_GROUPS,
                embed_dim=embed_dim, depth=depth, num_heads=num_heads, **kwargs)


register_method(MethodSpec(
    name="satmae", model=SatMAE, family="multimodal", data="multispectral", pixels=True,
    description="SatMAE: multispectral bands in groups, a token per group and patch, group and date encodings.",
    paper="Cong et al., NeurIPS 2022", code="sustainlab-group/SatMAE", test_preset="satmae_vit_test",
    cli_preset="satmae_vit_tiny",
    presets={
        "satmae_vit_large_patch8": dict(
            description="SatMAE group-channel ViT-L/8 at 96 px on 10 Sentinel-2 bands in 3 groups, decoder "
                        "512 x 8 x 16 (official).",
            encoder_class=GroupChannelEncoder, encoder=sentinel2(96, 8, 1024, 24, 16),
            decoder=dict(decoder_dim=512, depth=8, num_heads=16)),
        "satmae_temporal_vit_large_patch16": dict(
            description="SatMAE temporal ViT-L/16 at 224 px on 3 dated RGB frames (fMoW), decoder 512 x 8 x 16 "
                        "(official).",
            encoder_class=GroupChannelEncoder,
            encoder=dict(image_size=224, patch_size=16, num_channels=3, num_frames=3, embed_dim=1024, depth=24,
                         num_heads=16),
            decoder=dict(decoder_dim=512, depth=8, num_heads=16)),
        "satmae_vit_tiny": dict(
            description="SatMAE 128 x 4 x 4 at 32 px, patch 4, 10 Sentinel-2 bands in 3 groups, decoder 128 x 2 x 4.",
            encoder_class=GroupChannelEncoder, encoder=sentinel2(32, 4, 128, 4, 4),
            decoder=dict(decoder_dim=128, depth=2, num_heads=4)),
        "satmae_vit_test": dict(
            description="SatMAE 32 x 2 x 2 at 16 px, patch 4, 10 bands in 3 groups, decoder 32 x 1 x 2: for tests.",
            encoder_class=GroupChannelEncoder, encoder=sentinel2(16, 4, 32, 2, 2),
            decoder=dict(decoder_dim=32, depth=1, num_heads=2)),
    },
))
