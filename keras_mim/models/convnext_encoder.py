"""ConvNeXt V2 encoder, dense or sparse (FCMAE, SparK)."""

import keras
import numpy as np

from keras_mim.layers.convnext_block import ConvNeXtBlock, conv_init
from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.sparse_ops import active_like, apply_active
from keras_mim.models.convolutional_encoder import ConvolutionalEncoder
from keras_mim.utils import check_positive_int

#: ConvNeXt V2 sizes (official `convnextv2.py`): name -> (depths, dims).
CONVNEXT_V2_SIZES = {
    "atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "femto": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "pico": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "nano": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
}


@keras.saving.register_keras_serializable(package="keras_mim")
class ConvNeXtEncoder(ConvolutionalEncoder):
    """ConvNeXt V2 (Woo et al., CVPR 2023; facebookresearch/ConvNeXt-V2 `convnextv2.py`),
    channels last, as a keras_mim encoder.

    Stem: 4x4 stride-4 convolution + LayerNorm; stages of `ConvNeXtBlock`s (GRN, no
    LayerScale) with LayerNorm + 2x2 stride-2 convolutions between them; no final norm
    (the official model has one only in its classification head, after pooling, as
    `ImageClassifier`'s `fc_norm`). `encoder(images)` returns the last stage as tokens
    `(B, N, D)` over the 32 px cell grid (`grid_shape`); `encoder(images, mask=mask)`
    with `mask` `(B, N)` (1 = hidden cell) is the sparse encoder of FCMAE: hidden cells
    are zero in the input and after every layer (see `keras_mim.layers.sparse_ops`).

    Differences from the official code: the sparse encoder zeroes hidden positions on
    dense tensors instead of using MinkowskiEngine sparse tensors (the same function
    for visible positions, with static shapes).

    Args:
        image_size: int or `(H, W)`, multiples of 32.
        num_channels: input channels.
        depths: blocks per stage (atto: `(2, 2, 6, 2)`); see `CONVNEXT_V2_SIZES`.
        dims: channels per stage (atto: `(40, 80, 160, 320)`).
        drop_path_rate: stochastic depth, rising linearly over all blocks.
        norm_epsilon: LayerNorm epsilon (official 1e-6).
        seed: optional int seed of drop path.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np
        >>> enc = ConvNeXtEncoder(image_size=64, depths=(1, 1, 1, 1), dims=(8, 16, 24, 32))
        >>> enc.grid_shape, tuple(enc(np.zeros((2, 64, 64, 3), "float32")).shape)
        ((2, 2), (2, 4, 32))
        >>> mask = np.array([[1, 0, 0, 1]] * 2, "float32")  # hide two of the four 32 px cells
        >>> [tuple(f.shape) for f in enc.stages(np.zeros((2, 64, 64, 3), "float32"), mask)]
        [(2, 16, 16, 8), (2, 8, 8, 16), (2, 4, 4, 24), (2, 2, 2, 32)]
    """

    def __init__(self, image_size=224, num_channels=3, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768),
                 drop_path_rate=0.0, norm_epsilon=1e-6, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.depths = tuple(check_positive_int(d, "depths") for d in depths)
        self.dims = tuple(check_positive_int(d, "dims") for d in dims)
        if len(self.depths) != len(self.dims) or not self.depths:
            raise ValueError(f"`depths` {depths!r} and `dims` {dims!r} must list the same number of stages.")
        self.image_size = image_size
        self.num_channels = check_positive_int(num_channels, "num_channels")
        self.stride = self.cell_size(self.depths)
        self.stage_dims = self.dims
        self.init_grid()
        if not 0.0 <= float(drop_path_rate) < 1.0:
            raise ValueError(f"`drop_path_rate` must be in [0, 1), got {drop_path_rate!r}.")
        self.drop_path_rate, self.norm_epsilon, self.seed = float(drop_path_rate), float(norm_epsilon), seed
        self.depth = sum(self.depths)
        p = self.dtype_policy
        self.stem = keras.layers.Conv2D(self.dims[0], 4, strides=4, kernel_initializer=conv_init(), dtype=p,
                                        name="stem_conv")
        self.stem_norm = LayerNorm(epsilon=self.norm_epsilon, dtype=p, name="stem_norm")
        self.downsample_norms, self.downsample_convs = [], []
        for i in range(1, len(self.dims)):
            self.downsample_norms.append(LayerNorm(epsilon=self.norm_epsilon, dtype=p, name=f"downsample_{i}_norm"))
            self.downsample_convs.append(keras.layers.Conv2D(self.dims[i], 2, strides=2, kernel_initializer=conv_init(),
                                                             dtype=p, name=f"downsample_{i}_conv"))
        rates = np.linspace(0.0, self.drop_path_rate, self.depth)
        self.stage_blocks, k = [], 0
        for i, (depth, dim) in enumerate(zip(self.depths, self.dims)):
            blocks = []
            for j in range(depth):
                blocks.append(ConvNeXtBlock(dim, drop_path_rate=float(rates[k]), norm_epsilon=self.norm_epsilon,
                                            seed=None if seed is None else seed + k, dtype=p, name=f"stage_{i}_block_{j}"))
                k += 1
            self.stage_blocks.append(blocks)
        self.blocks = [b for blocks in self.stage_blocks for b in blocks]
        self.build()

    @classmethod
    def cell_size(cls, depths=(3, 3, 9, 3), **config):
        """Total stride: 4 (stem) x 2 per later stage."""
        return 4 * 2 ** (len(depths) - 1)

    def build(self, images_shape=None):
        if self.built:
            return
        h, w = self.image_size
        shape = (None, h, w, self.num_channels)
        self.stem.build(shape)
        h, w = h // 4, w // 4
        self.stem_norm.build((None, h, w, self.dims[0]))
        for i, dim in enumerate(self.dims):
            if i:
                self.downsample_norms[i - 1].build((None, h, w, self.dims[i - 1]))
                self.downsample_convs[i - 1].build((None, h, w, self.dims[i - 1]))
                h, w = h // 2, w // 2
            for block in self.stage_blocks[i]:
                block.build((None, h, w, dim))
        self.built = True

    def build_from_config(self, config):
        self.build()

    def layer_groups(self):
        """Layers by fine-tuning depth (official ConvNeXt V2 'single' layer decay): group 1
        holds the stem and the first block, each later block its own group, each
        downsampling layer joins the first block of its stage; group 0 is empty."""
        groups = [[]] + [[b] for b in self.blocks]
        groups[1] += [self.stem, self.stem_norm]
        first = 1
        for i, depth in enumerate(self.depths[:-1]):
            first += depth
            groups[first] += [self.downsample_norms[i], self.downsample_convs[i]]
        return groups

    def forward_stages(self, images, active=None, training=None):
        x = apply_active(images, active_like(active, images))  # hidden pixels are zero
        x = self.stem_norm(self.stem(x))
        features = []
        for i, blocks in enumerate(self.stage_blocks):
            if i:
                x = self.downsample_convs[i - 1](self.downsample_norms[i - 1](x))
            a = active_like(active, x)
            x = apply_active(x, a)  # (B, H_i, W_i, C_i), hidden cells zero
            for block in blocks:
                x = block(x, a, training=training)
            features.append(x)
        return features

    def get_config(self):
        config = super().get_config()
        config.update(image_size=self.image_size, num_channels=self.num_channels, depths=self.depths, dims=self.dims,
                      drop_path_rate=self.drop_path_rate, norm_epsilon=self.norm_epsilon, seed=self.seed)
        return config
