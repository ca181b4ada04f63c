"""SparK: Designing BERT for Convolutional Networks (Tian et al., ICLR 2023).

Official code: keyu-tian/SparK, `pretrain/spark.py`; this module follows its structure
(`mask`, `forward`'s steps: mask, encode, densify, decode, loss).
"""

import keras
from keras import ops

from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.sparse_batch_norm import SparseBatchNormalization
from keras_mim.layers.sparse_ops import active_like, cell_mask_to_active
from keras_mim.models.convnext_encoder import CONVNEXT_V2_SIZES, ConvNeXtEncoder
from keras_mim.models.convolutional_encoder import ConvolutionalEncoder
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.sparse_cnn import SparseCNN
from keras_mim.models.spark_decoder import SparKDecoder
from keras_mim.models.sparse_conv_pretraining import SparseConvPretraining
from keras_mim.utils import check_positive_int

DENSIFY_NORMS = ("bn", "ln", "none")


def sparse_encoder(encoder):
    """`encoder` as a sparse `ConvolutionalEncoder`: kept if it is one, a functional
    Keras CNN or a `KERAS_CNNS` name wrapped in `SparseCNN`."""
    if isinstance(encoder, ConvolutionalEncoder):
        return encoder
    if isinstance(encoder, (str, keras.Model)):
        return SparseCNN(encoder, name="encoder")
    raise TypeError(f"`encoder` must be a ConvNeXtEncoder, a SparseCNN, a functional Keras CNN or a CNN name, "
                    f"got {type(encoder).__name__}.")


@keras.saving.register_keras_serializable(package="keras_mim")
class SparK(SparseConvPretraining):
    """SparK pretraining of a convolutional network: the sparse encoder sees visible
    32 px cells only; each of its hierarchical feature maps is "densified" (a sparse
    norm, a learned mask token per scale at hidden positions, a projection to the
    decoder's width at that scale) and fed to the UNet-style `SparKDecoder`, which
    predicts every pixel; the loss is the MSE on per-cell normalised pixels of hidden
    cells only.

    `call(images, noise=None)` returns `pred` `(B, N, 32 * 32 * C)` (cells row-major),
    `mask` `(B, N)` (1 = hidden) and `ids_restore`. After pretraining,
    `model.encoder.backbone` is the dense CNN with the learned weights (for a
    `ConvNeXtEncoder`, the encoder itself).

    Differences from the official code: see `SparseCNN` for the sparse encoder; masks
    come from any keras_mim mask generator on the cell grid (official: uniform random
    at 0.6); the sparse "ln" densify norm is a per-position LayerNorm zeroed at hidden
    positions; the transposed convolutions use Keras' "same" padding (the official
    padding 1 gives the same size; the kernel alignment may differ by one pixel).

    Args:
        encoder: a `ConvNeXtEncoder`, a `SparseCNN`, a functional Keras CNN (made sparse
            with `SparseCNN`), or a name from `keras_mim.models.sparse_cnn.KERAS_CNNS`.
        decoder_width: the decoder's width at the coarsest scale (official 768).
        densify_norm: `"bn"` (sparse batch norm, official for ResNets), `"ln"` (official
            for ConvNeXt), `"none"`, or None: "ln" for a ConvNeXtEncoder, else "bn".
        mask_generator: a `MaskGenerator` or a name from `keras_mim.masking.MASK_GENERATORS`.
        mask_ratio: fraction of hidden cells (official 0.6).
        norm_pix_loss: normalise each target cell by its mean and variance (official).
        seed: optional int seed of the mask generator.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> model = SparK.from_preset("spark_convnextv2_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(4, 64, 64, 3).astype("float32"), epochs=1, verbose=0)
        >>> tuple(model(np.zeros((2, 64, 64, 3), "float32"))["pred"].shape)
        (2, 4, 3072)
    """

    def __init__(self, encoder, decoder_width=768, densify_norm=None, mask_generator="random", mask_ratio=0.6,
                 norm_pix_loss=True, seed=None, **kwargs):
        super().__init__(sparse_encoder(encoder), mask_generator=mask_generator, mask_ratio=mask_ratio,
                         norm_pix_loss=norm_pix_loss, seed=seed, **kwargs)
        if densify_norm is None:
            densify_norm = "ln" if isinstance(self.encoder, ConvNeXtEncoder) else "bn"
        if densify_norm not in DENSIFY_NORMS:
            raise ValueError(f"`densify_norm` must be one of {DENSIFY_NORMS} or None, got {densify_norm!r}.")
        self.densify_norm = densify_norm
        self.decoder_width = check_positive_int(decoder_width, "decoder_width")
        p = self.dtype_policy
        self.decoder = SparKDecoder(self.patch_size[0], width=self.decoder_width,
                                    out_channels=self.encoder.num_channels, dtype=p, name="decoder")
        # densify layers, coarsest scale first (official order)
        widths = list(reversed(self.encoder.stage_dims))
        self.densify_norms, self.densify_projs = [], []
        for i, e_width in enumerate(widths):
            d_width = self.decoder_width // 2 ** i
            if densify_norm == "bn":
                norm = SparseBatchNormalization(keras.layers.BatchNormalization(dtype=p, name=f"densify_bn_{i}"),
                                                dtype=p, name=f"densify_norm_{i}")
            elif densify_norm == "ln":
                norm = LayerNorm(epsilon=1e-6, dtype=p, name=f"densify_norm_{i}")
            else:
                norm = None
            self.densify_norms.append(norm)
            proj = None
            if not (i == 0 and e_width == d_width):
                k = 1 if i == 0 else 3
                proj = keras.layers.Conv2D(d_width, k, padding="same", dtype=p, name=f"densify_proj_{i}",
                                           kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))
            self.densify_projs.append(proj)

    def build(self, images_shape=None):
        if self.built:
            return
        if not self.encoder.built:
            self.encoder.build()
        gh, gw = self.encoder.grid_shape
        widths = list(reversed(self.encoder.stage_dims))
        self.mask_tokens = []
        for i, e_width in enumerate(widths):
            shape = (None, gh * 2 ** i, gw * 2 ** i, e_width)
            self.mask_tokens.append(self.add_weight(
                shape=(e_width,), name=f"mask_token_{i}",
                initializer=keras.initializers.TruncatedNormal(stddev=0.02)))
            if self.densify_norms[i] is not None:
                self.densify_norms[i].build(shape)
            if self.densify_projs[i] is not None:
                self.densify_projs[i].build(shape)
        self.decoder.build((None, gh, gw, self.decoder_width))
        self.built = True

    # ------------------------------------------------------------------ the method
    def densify(self, features, mask, training=None):
        """Sparse stage maps (finest first) -> the decoder's inputs (coarsest first):
        norm, mask token at hidden positions, projection to the scale's width."""
        active = cell_mask_to_active(mask, self.encoder.grid_shape)  # (B, gh, gw, 1), 1 = visible
        to_dec = []
        for i, fmap in enumerate(reversed(features)):  # coarsest first
            a = active_like(active, fmap)
            norm = self.densify_norms[i]
            if isinstance(norm, SparseBatchNormalization):
                fmap = norm(fmap, a, training=training)
            elif norm is not None:
                fmap = norm(fmap) * a
            fmap = fmap * a + ops.cast(self.mask_tokens[i], fmap.dtype) * (1.0 - a)  # [mask] at hidden positions
            if self.densify_projs[i] is not None:
                fmap = self.densify_projs[i](fmap)
            to_dec.append(fmap)
        return to_dec

    def forward_decoder(self, features, mask, training=None):
        rec = self.decoder(self.densify(features, mask, training=training), training=training)  # (B, H, W, C)
        return self.patchify(rec)  # (B, N, 32 * 32 * C)

    def get_config(self):
        config = super().get_config()
        config.update(decoder_width=self.decoder_width, densify_norm=self.densify_norm)
        return config


def keras_cnn_preset(backbone, image_size=224):
    """`SparseCNN` arguments of a keras.applications CNN."""
    return dict(backbone=backbone, image_size=image_size)


register_method(MethodSpec(
    name="spark", model=SparK, family="convnets", pixels=True,
    description="SparK: any CNN made sparse on visible 32 px cells, UNet light decoder, pixel loss.",
    paper="Tian et al., ICLR 2023", code="keyu-tian/SparK",
    test_preset="spark_convnextv2_test", cli_preset="spark_convnextv2_atto_64",
    presets={
        "spark_resnet50": dict(
            description="keras.applications ResNet50 made sparse, 224 px, decoder width 768 (official).",
            encoder=keras_cnn_preset("resnet50"), encoder_class=SparseCNN, kwargs={"decoder_width": 768}),
        "spark_resnet101": dict(
            description="keras.applications ResNet101 made sparse, 224 px, decoder width 768 (official).",
            encoder=keras_cnn_preset("resnet101"), encoder_class=SparseCNN, kwargs={"decoder_width": 768}),
        "spark_convnext_tiny": dict(
            description="keras.applications ConvNeXtTiny made sparse, 224 px, decoder width 768 (official).",
            encoder=keras_cnn_preset("convnext_tiny"), encoder_class=SparseCNN, kwargs={"decoder_width": 768}),
        "spark_convnextv2_atto_64": dict(
            description="keras_mim ConvNeXt V2-Atto, 64 px (2 x 2 cells), decoder width 128: trains on a CPU.",
            encoder=dict(image_size=64, depths=CONVNEXT_V2_SIZES["atto"][0], dims=CONVNEXT_V2_SIZES["atto"][1]),
            encoder_class=ConvNeXtEncoder, kwargs={"decoder_width": 128}),
        "spark_resnet50_64": dict(
            description="keras.applications ResNet50 made sparse, 64 px (2 x 2 cells), decoder width 128.",
            encoder=keras_cnn_preset("resnet50", 64), encoder_class=SparseCNN, kwargs={"decoder_width": 128}),
        "spark_convnextv2_test": dict(
            description="ConvNeXt blocks (1, 1, 1, 1), dims (8, 16, 24, 32), 64 px, decoder width 64: for unit tests.",
            encoder=dict(image_size=64, depths=(1, 1, 1, 1), dims=(8, 16, 24, 32)), encoder_class=ConvNeXtEncoder,
            kwargs={"decoder_width": 64}),
    },
))
