"""MAE with a Hiera encoder (Ryali et al., ICML 2023).

Official code: facebookresearch/hiera, `hiera_mae.py`; this module follows its structure
(`get_random_mask` is the mask generator, `forward_encoder` with the multi-scale fusion,
`forward_decoder`, `forward_loss`).
"""

import math

import keras
from keras import ops

from keras_mim.layers.hiera_ops import undo_windowing
from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.sparse_ops import cells_to_pixels
from keras_mim.layers.token_ops import restore_tokens
from keras_mim.layers.transformer_block import TransformerBlock
from keras_mim.losses import masked_mean
from keras_mim.masking import get_mask_generator
from keras_mim.models.hiera_encoder import HIERA_SIZES, HieraEncoder
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.pretraining_model import PretrainingModel, check_encoder
from keras_mim.models.reconstruction import make_target, pixel_reconstruction
from keras_mim.utils import check_mask_ratio, check_positive_int


def hiera(size, image_size=224, **kwargs):
    """`HieraEncoder` arguments of an official size (`HIERA_SIZES`), with MAE's `q_pool=2`."""
    embed_dim, num_heads, stages = HIERA_SIZES[size]
    return dict(image_size=image_size, embed_dim=embed_dim, num_heads=num_heads, stages=stages, q_pool=2, **kwargs)


@keras.saving.register_keras_serializable(package="keras_mim")
class HieraMAE(PretrainingModel):
    """MAE on Hiera: the encoder sees the visible mask units only; the outputs of the first
    `q_pool` stages are brought to the last stage's resolution by strided convolutions
    (kernel = stride = the unit's size ratio) and summed with the last stage (multi-scale
    fusion); the decoder (a ViT on the final token grid, learned positions) fills hidden
    units with a mask token and predicts the pixels of each `pred_stride` px patch; the
    loss is the MSE on per-patch normalised pixels of the patches of hidden units.

    `call(images, noise=None)` returns `pred` `(B, Np, pred_stride ** 2 * C)` (row-major
    over the prediction grid, the encoder's `output_grid_shape`), `mask` `(B, U)` over mask
    units (1 = hidden), `pred_mask` `(B, Np)` the same at prediction resolution, and
    `ids_restore`.

    Differences from the official code: masks come from any keras_mim mask generator on
    the mask-unit grid (official: uniform random, `mask_generator="random"`, ratio 0.6);
    the fusion convolutions have zero initial biases (official: PyTorch's default uniform);
    images only (not the video model). The target's variance is unbiased (n - 1) as the
    official `label.var`.

    Args:
        encoder: a `HieraEncoder` (official MAE sizes use `q_pool=2`).
        decoder_dim: decoder width (official 512).
        decoder_depth: decoder blocks (official 8).
        decoder_num_heads: decoder heads (official 16).
        decoder_mlp_ratio: decoder MLP ratio (official 4).
        mask_generator: a `MaskGenerator` or a name from `keras_mim.masking.MASK_GENERATORS`.
        mask_ratio: fraction of hidden mask units (official 0.6).
        norm_pix_loss: normalise each target patch by its mean and variance (official True).
        seed: optional int seed of the mask generator.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> model = HieraMAE.from_preset("hiera_mae_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(4, 64, 64, 3).astype("float32"), epochs=1, verbose=0)
        >>> out = model(np.zeros((2, 64, 64, 3), "float32"))
        >>> tuple(out["pred"].shape), tuple(out["mask"].shape)
        ((2, 64, 192), (2, 16))
    """

    def __init__(self, encoder, decoder_dim=512, decoder_depth=8, decoder_num_heads=16, decoder_mlp_ratio=4.0,
                 mask_generator="random", mask_ratio=0.6, norm_pix_loss=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = check_encoder(encoder, type(self).__name__)
        if not isinstance(encoder, HieraEncoder):
            raise TypeError(f"`encoder` must be a HieraEncoder, got {type(encoder).__name__}.")
        self.decoder_dim = check_positive_int(decoder_dim, "decoder_dim")
        self.decoder_depth = check_positive_int(decoder_depth, "decoder_depth")
        self.decoder_num_heads = check_positive_int(decoder_num_heads, "decoder_num_heads")
        if self.decoder_dim % self.decoder_num_heads:
            raise ValueError(f"`decoder_num_heads`={decoder_num_heads} must divide `decoder_dim`={decoder_dim}.")
        self.decoder_mlp_ratio = float(decoder_mlp_ratio)
        self.target = make_target(None, norm_pix_loss, None)
        self.mask_generator = get_mask_generator(mask_generator, mask_ratio=mask_ratio, seed=seed,
                                                 patch_size=encoder.patch_size[0])
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, encoder.num_patches)
        self.seed = seed
        # the prediction grid is the last stage's token grid; each token predicts one patch
        self.pred_stride = encoder.patch_stride * encoder.q_stride ** encoder.q_pool
        self.pred_patch = (self.pred_stride, self.pred_stride)
        self.unit_final = encoder.q_stride ** encoder.stage_levels(len(encoder.stage_depths) - 1)
        p = self.dtype_policy
        self.fusion_heads = []
        for i in range(encoder.q_pool):
            kernel = encoder.q_stride ** encoder.stage_levels(i) // self.unit_final
            self.fusion_heads.append(keras.layers.Conv2D(
                encoder.output_dim, kernel, strides=kernel, dtype=p, name=f"fusion_head_{i}",
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02)))
        self.encoder_norm = LayerNorm(epsilon=encoder.norm_epsilon, dtype=p, name="encoder_norm")
        self.decoder_embed = keras.layers.Dense(self.decoder_dim, dtype=p, name="decoder_embed")
        self.decoder_blocks = [TransformerBlock(self.decoder_num_heads, self.decoder_mlp_ratio, dtype=p,
                                                name=f"decoder_block_{i}") for i in range(self.decoder_depth)]
        self.decoder_norm = LayerNorm(epsilon=encoder.norm_epsilon, dtype=p, name="decoder_norm")
        self.decoder_pred = keras.layers.Dense(self.pred_stride ** 2 * encoder.num_channels, dtype=p,
                                               name="decoder_pred")

    def build(self, images_shape=None):
        if self.built:
            return
        enc = self.encoder
        if not enc.built:
            enc.build()
        for i, head in enumerate(self.fusion_heads):
            u = enc.q_stride ** enc.stage_levels(i)
            head.build((None, u, u, enc.stage_dims[i]))
        self.encoder_norm.build((None, enc.output_dim))
        self.decoder_embed.build((None, enc.output_dim))
        self.mask_token = self.add_weight(shape=(self.decoder_dim,), name="mask_token",
                                          initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        n = math.prod(enc.output_grid_shape)
        self.decoder_pos_embed = self.add_weight(shape=(1, n, self.decoder_dim), name="decoder_pos_embed",
                                                 initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        for block in self.decoder_blocks:
            block.build((None, n, self.decoder_dim))
        self.decoder_norm.build((None, n, self.decoder_dim))
        self.decoder_pred.build((None, n, self.decoder_dim))
        self.built = True

    # ------------------------------------------------------------------ the method
    def forward_encoder(self, images, noise=None, training=None):
        """`(latent (B, K, uf, uf, D), masking)`: the fused, normalised visible units."""
        self.encoder.check_images(images)
        masking = self.random_masking(images, noise=noise)  # over mask units; mask 1 = hidden
        ids_keep = masking["ids_keep"]
        k = ids_keep.shape[1]
        fused = list(range(self.encoder.q_pool)) + [-1]  # the stages of changing resolution, and the last
        stages = self.encoder.stage_units(images, ids_keep, training=training, stages=fused)  # each (B, K, u, u, C)
        x = stages[-1]  # the last stage: no transform
        for head, units in zip(self.fusion_heads, stages):  # the first q_pool stages
            u, c = units.shape[2], units.shape[-1]
            y = head(ops.reshape(units, (-1, u, u, c)))  # (B * K, uf, uf, D)
            x = x + ops.reshape(y, (-1, k, self.unit_final, self.unit_final, y.shape[-1]))
        return self.encoder_norm(x), masking

    def forward_decoder(self, latent, masking, training=None):
        """Visible units + mask tokens -> `pred` `(B, Np, pred_stride ** 2 * C)`."""
        enc = self.encoder
        uf, d = self.unit_final, self.decoder_dim
        x = self.decoder_embed(latent)  # (B, K, uf, uf, Dd)
        x = ops.reshape(x, (-1, x.shape[1], uf * uf * d))  # one row per visible unit
        token = ops.tile(ops.cast(self.mask_token, x.dtype), (uf * uf,))
        x = restore_tokens(x, masking["ids_restore"], token)  # (B, U, uf * uf * Dd), unit order
        x = undo_windowing(ops.reshape(x, (-1, enc.num_patches, uf, uf, d)), enc.grid_shape)  # (B, Hf, Wf, Dd)
        x = ops.reshape(x, (-1, math.prod(enc.output_grid_shape), d)) + ops.cast(self.decoder_pos_embed, x.dtype)
        for block in self.decoder_blocks:
            x = block(x, training=training)
        return self.decoder_pred(self.decoder_norm(x))

    def prediction_mask(self, mask):
        """Unit mask `(B, U)` -> the mask of the prediction grid `(B, Np)` (1 = hidden)."""
        enc = self.encoder
        units = ops.reshape(ops.cast(mask, "float32"), (-1,) + tuple(enc.grid_shape) + (1,))  # (B, uh, uw, 1)
        return ops.reshape(cells_to_pixels(units, enc.output_grid_shape), (-1, math.prod(enc.output_grid_shape)))

    def forward_loss(self, images, pred, pred_mask):
        target = self.target(images, patch_size=self.pred_patch)  # (B, Np, P) float32
        return masked_mean(self.target.loss_per_token(pred, target), pred_mask)  # hidden units' patches only

    def call(self, images, noise=None, training=None):
        latent, masking = self.forward_encoder(images, noise=noise, training=training)
        pred = self.forward_decoder(latent, masking, training=training)
        return {"pred": pred, "mask": masking["mask"], "pred_mask": self.prediction_mask(masking["mask"]),
                "ids_restore": masking["ids_restore"]}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        return self.add_layer_losses(self.forward_loss(x, y_pred["pred"], y_pred["pred_mask"]))

    def reconstruct(self, images, noise=None):
        """`(reconstruction, pixel_mask, mask)` as `MaskedAutoencoder.reconstruct`."""
        out = self(images, noise=noise, training=False)
        rec, pixel_mask = pixel_reconstruction(self.target, images, out["pred"], out["pred_mask"], self.pred_patch)
        return rec, pixel_mask, out["mask"]

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            decoder_dim=self.decoder_dim, decoder_depth=self.decoder_depth, decoder_num_heads=self.decoder_num_heads,
            decoder_mlp_ratio=self.decoder_mlp_ratio,
            mask_generator=keras.saving.serialize_keras_object(self.mask_generator),
            mask_ratio=self.mask_ratio, norm_pix_loss=self.target.normalize, seed=self.seed,
        )
        return config


#: The CPU preset's Hiera: official widths, 64 px with a stride-2 patch embedding (16 px mask units).
SMALL_IMAGE = dict(patch_kernel=3, patch_stride=2, patch_padding=1)

register_method(MethodSpec(
    name="hiera_mae", model=HieraMAE, family="hierarchical", pixels=True,
    description="Hiera MAE: hierarchical ViT on visible mask units, multi-scale fusion, pixel loss.",
    paper="Ryali et al., ICML 2023", code="facebookresearch/hiera",
    test_preset="hiera_mae_test", cli_preset="hiera_mae_hiera_mini_64",
    presets={
        **{f"hiera_mae_hiera_{size}": dict(
            description=f"Hiera-{size.replace('_plus', '+').title()} {HIERA_SIZES[size][2]}, 224 px (7 x 7 units of "
                        "32 px), q_pool 2, decoder 512 x 8 (official).",
            encoder=hiera(size), encoder_class=HieraEncoder,
            kwargs={"decoder_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16})
           for size in ("tiny", "small", "base", "base_plus", "large")},
        "hiera_mae_hiera_tiny_64": dict(
            description="Hiera-Tiny, 64 px, stride-2 patches (4 x 4 units of 16 px), decoder 128 x 2: trains on a CPU.",
            encoder=hiera("tiny", 64, **SMALL_IMAGE), encoder_class=HieraEncoder,
            kwargs={"decoder_dim": 128, "decoder_depth": 2, "decoder_num_heads": 4}),
        "hiera_mae_hiera_mini_64": dict(
            description="Hiera-Tiny's stages (1, 2, 7, 2) at width 32 (not an official size), 64 px, 4 x 4 units of "
                        "16 px, decoder 128 x 2: trains on a CPU in minutes.",
            encoder=dict(hiera("tiny", 64, **SMALL_IMAGE), embed_dim=32), encoder_class=HieraEncoder,
            kwargs={"decoder_dim": 128, "decoder_depth": 2, "decoder_num_heads": 4}),
        "hiera_mae_test": dict(
            description="Stages (1, 1, 1, 1) from width 8, 64 px, 4 x 4 units, decoder 32 x 1: for unit tests.",
            encoder=dict(image_size=64, embed_dim=8, stages=(1, 1, 1, 1), q_pool=2, **SMALL_IMAGE),
            encoder_class=HieraEncoder, kwargs={"decoder_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2}),
    },
))
