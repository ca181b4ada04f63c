"""FCMAE: the fully convolutional masked autoencoder of ConvNeXt V2 (Woo et al., CVPR 2023).

Official code: facebookresearch/ConvNeXt-V2, `models/fcmae.py`; this module follows its
structure (`gen_random_mask`, `forward_encoder`, `forward_decoder`, `forward_loss`; the steps it
shares with SparK are in `SparseConvPretraining`).
"""

import keras
from keras import ops

from keras_mim.layers.convnext_block import ConvNeXtBlock, conv_init
from keras_mim.layers.sparse_ops import cell_mask_to_active
from keras_mim.models.convnext_encoder import CONVNEXT_V2_SIZES, ConvNeXtEncoder
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.sparse_conv_pretraining import SparseConvPretraining
from keras_mim.utils import check_positive_int


def convnext_v2(size, image_size=224, **kwargs):
    """`ConvNeXtEncoder` arguments of an official size (`CONVNEXT_V2_SIZES`)."""
    depths, dims = CONVNEXT_V2_SIZES[size]
    return dict(image_size=image_size, depths=depths, dims=dims, **kwargs)


@keras.saving.register_keras_serializable(package="keras_mim")
class FCMAE(SparseConvPretraining):
    """ConvNeXt V2's FCMAE: a sparse ConvNeXt encodes the visible 32 px cells, a light
    convolutional decoder fills hidden cells with a mask token and predicts every cell's
    pixels; the loss is the MSE on per-patch normalised pixels of hidden cells only.

    `call(images, noise=None)` returns `pred` `(B, N, 32 * 32 * C)` (cells row-major),
    `mask` `(B, N)` (1 = hidden) and `ids_restore`.

    Differences from the official code: the encoder is sparse by zeroing (see
    `ConvNeXtEncoder`); masks come from any keras_mim mask generator on the cell grid
    (official: uniform random at 0.6, `mask_generator="random"` here); the 1x1
    convolutions of the decoder are `Dense` layers on channels-last maps (the same
    function); `norm_pix_loss` defaults to True, as the official pretraining command.

    Args:
        encoder: a `ConvNeXtEncoder` (or another sparse `ConvolutionalEncoder`).
        decoder_dim: decoder width (official 512).
        decoder_depth: ConvNeXt blocks in the decoder (official 1).
        mask_generator: a `MaskGenerator` or a name from `keras_mim.masking.MASK_GENERATORS`.
        mask_ratio: fraction of hidden cells (official 0.6).
        norm_pix_loss: normalise each target cell by its mean and variance.
        seed: optional int seed of the mask generator.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> model = FCMAE.from_preset("fcmae_convnextv2_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(4, 64, 64, 3).astype("float32"), epochs=1, verbose=0)
        >>> tuple(model(np.zeros((2, 64, 64, 3), "float32"))["pred"].shape)
        (2, 4, 3072)
    """

    def __init__(self, encoder, decoder_dim=512, decoder_depth=1, mask_generator="random", mask_ratio=0.6,
                 norm_pix_loss=True, seed=None, **kwargs):
        super().__init__(encoder, mask_generator=mask_generator, mask_ratio=mask_ratio, norm_pix_loss=norm_pix_loss,
                         seed=seed, **kwargs)
        self.decoder_dim = check_positive_int(decoder_dim, "decoder_dim")
        self.decoder_depth = check_positive_int(decoder_depth, "decoder_depth")
        p = self.dtype_policy
        self.proj = keras.layers.Dense(self.decoder_dim, kernel_initializer=conv_init(), dtype=p, name="proj")
        self.decoder_blocks = [ConvNeXtBlock(self.decoder_dim, dtype=p, name=f"decoder_block_{i}")
                               for i in range(self.decoder_depth)]
        self.pred = keras.layers.Dense(self.patch_size[0] * self.patch_size[1] * encoder.num_channels,
                                       kernel_initializer=conv_init(), dtype=p, name="pred")

    def build(self, images_shape=None):
        if self.built:
            return
        if not self.encoder.built:
            self.encoder.build()
        gh, gw = self.encoder.grid_shape
        self.proj.build((None, gh, gw, self.encoder.output_dim))
        self.mask_token = self.add_weight(shape=(self.decoder_dim,), name="mask_token",
                                          initializer=keras.initializers.RandomNormal(stddev=0.02))
        for block in self.decoder_blocks:
            block.build((None, gh, gw, self.decoder_dim))
        self.pred.build((None, gh, gw, self.decoder_dim))
        self.built = True

    # ------------------------------------------------------------------ the method
    def forward_decoder(self, features, mask, training=None):
        x = self.proj(features[-1])  # last stage (B, gh, gw, D) -> (B, gh, gw, Dd)
        visible = ops.cast(cell_mask_to_active(mask, self.encoder.grid_shape), x.dtype)  # (B, gh, gw, 1)
        x = x * visible + ops.cast(self.mask_token, x.dtype) * (1.0 - visible)  # mask token at hidden cells
        for block in self.decoder_blocks:
            x = block(x, training=training)
        pred = self.pred(x)  # (B, gh, gw, 32 * 32 * C)
        return ops.reshape(pred, (-1, self.encoder.num_patches, pred.shape[-1]))

    def get_config(self):
        config = super().get_config()
        config.update(decoder_dim=self.decoder_dim, decoder_depth=self.decoder_depth)
        return config


register_method(MethodSpec(
    name="fcmae", model=FCMAE, family="convnets", pixels=True,
    description="ConvNeXt V2 FCMAE: sparse ConvNeXt on visible 32 px cells, one-block decoder, pixel loss.",
    paper="Woo et al., CVPR 2023", code="facebookresearch/ConvNeXt-V2",
    test_preset="fcmae_convnextv2_test", cli_preset="fcmae_convnextv2_atto_64",
    presets={
        **{f"fcmae_convnextv2_{size}": dict(
            description=f"ConvNeXt V2-{size[0].upper() + size[1:]} {CONVNEXT_V2_SIZES[size]}, 224 px, decoder 512 x 1 "
                        "(official).",
            encoder=convnext_v2(size), encoder_class=ConvNeXtEncoder, kwargs={"decoder_dim": 512, "decoder_depth": 1})
           for size in CONVNEXT_V2_SIZES},
        "fcmae_convnextv2_atto_64": dict(
            description="ConvNeXt V2-Atto, 64 px (2 x 2 cells of 32 px), decoder 128 x 1: trains on a CPU.",
            encoder=convnext_v2("atto", 64), encoder_class=ConvNeXtEncoder, kwargs={"decoder_dim": 128, "decoder_depth": 1}),
        "fcmae_convnextv2_test": dict(
            description="Blocks (1, 1, 1, 1), dims (8, 16, 24, 32), 64 px, decoder 32 x 1: for unit tests.",
            encoder=dict(image_size=64, depths=(1, 1, 1, 1), dims=(8, 16, 24, 32)), encoder_class=ConvNeXtEncoder,
            kwargs={"decoder_dim": 32, "decoder_depth": 1}),
    },
))
