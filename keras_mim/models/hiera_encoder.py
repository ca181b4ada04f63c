"""Hiera: the hierarchical ViT built for MAE (Ryali et al., ICML 2023)."""

import math

import keras
import numpy as np
from keras import ops

from keras_mim.layers.hiera_block import HieraBlock
from keras_mim.layers.hiera_ops import keep_units, reroll, undo_windowing, unroll
from keras_mim.layers.patching import _dense_glorot_scale
from keras_mim.layers.sparse_ops import apply_active, active_like, cell_mask_to_active
from keras_mim.layers.token_ops import hidden_mask
from keras_mim.models.feature_export import FeatureExport
from keras_mim.models.preset_io import EncoderPresetMixin
from keras_mim.utils import check_image_batch, check_image_size, check_positive_int, to_2tuple

#: Official sizes (facebookresearch/hiera `hiera.py`): name -> (embed_dim, num_heads, stages).
HIERA_SIZES = {
    "tiny": (96, 1, (1, 2, 7, 2)),
    "small": (96, 1, (1, 2, 11, 2)),
    "base": (96, 1, (2, 3, 16, 3)),
    "base_plus": (112, 2, (2, 3, 16, 3)),
    "large": (144, 2, (2, 6, 36, 4)),
    "huge": (256, 4, (2, 6, 36, 4)),
}


@keras.saving.register_keras_serializable(package="keras_mim")
class HieraEncoder(EncoderPresetMixin, FeatureExport, keras.Model):
    """Hiera (facebookresearch/hiera `hiera.py`) for images, channels last, as a keras_mim encoder.

    A `patch_kernel` convolution of stride `patch_stride` makes tokens, a learned absolute
    position embedding is added, and the tokens are *unrolled* (`keras_mim.layers.hiera_ops`)
    so that every later step is a reshape: stages of `HieraBlock`s, attention inside mask
    units in the first stages (`mask_unit_attn`) and global after, width and heads doubling
    and a 2 x 2 max pool of the queries at the start of each of the first `q_pool` later
    stages. A mask unit is `q_stride ** (len(stages) - 1)` tokens a side (8 x 8 tokens = 32 px
    for the official patch stride 4): that is this encoder's `patch_size` and `grid_shape` is
    the unit grid, so every mask generator masks whole mask units. With `ids_keep` `(B, K)`
    only the visible units are encoded (their pixels are the only ones the patch embedding
    reads: hidden units are zeroed first, official `do_masked_conv`), as MAE drops tokens.

    `encoder(images)` returns the last stage as tokens `(B, N, D)` row-major over
    `output_grid_shape`, with no final norm (the official norm comes after the average pool,
    as `ImageClassifier`'s `fc_norm`); `stage_units(images, ids_keep)` every stage as units
    `(B, K, u, u, C)`; `feature_maps(images)` every stage as a map `(B, h, w, C)`.

    Differences from the official code: images only (the video variant's separate
    space-time position embeddings and 3D patches are not built); square strides; the
    unrolled orders are static gathers instead of reshape chains (the same orders); the
    initialisation is the official MAE one (xavier-uniform Dense, zero biases, the patch
    embedding as a Dense on the flattened patch) rather than the classification one
    (truncated normal 0.02, biases 0.02); the classification head is `ImageClassifier`'s.

    Args:
        image_size: int or `(H, W)`, multiples of the mask unit (32 px by default).
        num_channels: input channels.
        embed_dim: width of the first stage (tiny / base: 96).
        num_heads: heads of the first stage (tiny / base: 1).
        stages: blocks per stage (tiny `(1, 2, 7, 2)`, base `(2, 3, 16, 3)`; `HIERA_SIZES`).
        q_pool: number of stage transitions that pool (official: 3 for classification, 2 for MAE).
        q_stride: pooling stride per axis (official 2).
        mask_unit_attn: per stage, attention within mask units (True) or global (False).
        dim_mul: width factor at each stage transition.
        head_mul: heads factor at each stage transition.
        patch_kernel: patch-embedding kernel (official 7).
        patch_stride: patch-embedding stride (official 4).
        patch_padding: zero padding of the patch embedding (official 3).
        mlp_ratio: MLP hidden width / token width.
        drop_path_rate: stochastic depth, rising linearly over all blocks.
        norm_epsilon: LayerNorm epsilon (official 1e-6).
        seed: optional int seed of drop path.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np
        >>> enc = HieraEncoder(image_size=64, embed_dim=8, stages=(1, 1, 1, 1), patch_kernel=3, patch_stride=2,
        ...                    patch_padding=1, q_pool=2)
        >>> enc.patch_size, enc.grid_shape, enc.output_grid_shape
        ((16, 16), (4, 4), (8, 8))
        >>> tuple(enc(np.zeros((2, 64, 64, 3), "float32")).shape)
        (2, 64, 64)
        >>> [tuple(u.shape) for u in enc.stage_units(np.zeros((2, 64, 64, 3), "float32"), np.array([[0, 5]] * 2))]
        [(2, 2, 8, 8, 8), (2, 2, 4, 4, 16), (2, 2, 2, 2, 32), (2, 2, 2, 2, 64)]
    """

    num_prefix_tokens = 0
    num_frames = None
    use_cls_token = False
    use_mask_token = False

    def __init__(self, image_size=224, num_channels=3, embed_dim=96, num_heads=1, stages=(2, 3, 16, 3), q_pool=3,
                 q_stride=2, mask_unit_attn=(True, True, False, False), dim_mul=2.0, head_mul=2.0, patch_kernel=7,
                 patch_stride=4, patch_padding=3, mlp_ratio=4.0, drop_path_rate=0.0, norm_epsilon=1e-6, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.stage_depths = tuple(check_positive_int(s, "stages") for s in stages)
        levels = len(self.stage_depths) - 1
        if levels < 1:
            raise ValueError(f"`stages` must list at least two stages, got {stages!r}.")
        if isinstance(q_pool, bool) or not isinstance(q_pool, int) or not 0 <= q_pool <= levels:
            raise ValueError(f"`q_pool` must be an int in [0, {levels}] (stage transitions), got {q_pool!r}.")
        self.mask_unit_attn = tuple(bool(a) for a in mask_unit_attn)
        if len(self.mask_unit_attn) != len(self.stage_depths):
            raise ValueError(f"`mask_unit_attn` {mask_unit_attn!r} must give one flag per stage "
                             f"({len(self.stage_depths)}).")
        self.image_size = to_2tuple(image_size, "image_size")
        self.num_channels = check_positive_int(num_channels, "num_channels")
        self.embed_dim = check_positive_int(embed_dim, "embed_dim")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.q_pool, self.q_stride = q_pool, check_positive_int(q_stride, "q_stride")
        self.dim_mul, self.head_mul, self.mlp_ratio = float(dim_mul), float(head_mul), float(mlp_ratio)
        self.patch_kernel = check_positive_int(patch_kernel, "patch_kernel")
        self.patch_stride = check_positive_int(patch_stride, "patch_stride")
        self.patch_padding = int(patch_padding)
        for size in self.image_size:
            tokens = (size + 2 * self.patch_padding - self.patch_kernel) // self.patch_stride + 1
            if tokens != size // self.patch_stride:
                raise ValueError(f"`patch_kernel` {patch_kernel}, `patch_stride` {patch_stride} and `patch_padding` "
                                 f"{patch_padding} must give image_size / patch_stride tokens a side (official "
                                 f"7, 4, 3).")
        if not 0.0 <= float(drop_path_rate) < 1.0:
            raise ValueError(f"`drop_path_rate` must be in [0, 1), got {drop_path_rate!r}.")
        self.drop_path_rate, self.norm_epsilon, self.seed = float(drop_path_rate), float(norm_epsilon), seed
        # the protocol: a mask unit is this encoder's patch, the unit grid its token grid
        self.levels = levels
        self.unit_tokens = self.q_stride ** levels  # mask unit side, in tokens
        self.patch_size = self.patch_shape = (self.cell_size(self.stage_depths, q_stride, patch_stride),) * 2
        self.grid_shape = check_image_size(self.image_size, self.patch_size, "`image_size`")
        self.num_patches = math.prod(self.grid_shape)
        self.token_shape = (self.image_size[0] // self.patch_stride, self.image_size[1] // self.patch_stride)
        final = self.q_stride ** self.q_pool
        self.output_grid_shape = (self.token_shape[0] // final, self.token_shape[1] // final)
        self.stage_ends = list(np.cumsum(self.stage_depths) - 1)
        self.depth = sum(self.stage_depths)
        self.blocks, self.stage_dims = self.make_blocks()
        self.output_dim = self.stage_dims[-1]
        p = self.dtype_policy
        area = self.patch_kernel ** 2
        self.patch_embed = keras.layers.Conv2D(
            self.embed_dim, self.patch_kernel, strides=self.patch_stride, padding="valid", dtype=p, name="patch_embed",
            kernel_initializer=keras.initializers.VarianceScaling(
                _dense_glorot_scale(area, self.num_channels, self.embed_dim), mode="fan_avg", distribution="uniform"))
        self.build()

    @classmethod
    def cell_size(cls, stages=(2, 3, 16, 3), q_stride=2, patch_stride=4, **config):
        """The mask unit in pixels: `patch_stride * q_stride ** (len(stages) - 1)`."""
        return patch_stride * q_stride ** (len(stages) - 1)

    def make_blocks(self):
        """The blocks as the official constructor lays them out (the attention kind lags one
        block behind each stage change, so the pooling block still attends in mask units)."""
        dim, heads, window = self.embed_dim, self.num_heads, self.unit_tokens ** 2
        flat_stride = self.q_stride ** 2
        pool_blocks = [end + 1 for end in self.stage_ends[: self.q_pool]]
        rates = np.linspace(0.0, self.drop_path_rate, self.depth)
        blocks, dims, stage = [], [], 0
        for i in range(self.depth):
            dim_out, use_mask_unit_attn = dim, self.mask_unit_attn[stage]
            if i - 1 in self.stage_ends:
                dim_out, heads, stage = int(dim * self.dim_mul), int(heads * self.head_mul), stage + 1
                if i in pool_blocks:
                    window //= flat_stride
            blocks.append(HieraBlock(
                dim_out, heads, mlp_ratio=self.mlp_ratio, drop_path=float(rates[i]),
                q_stride=flat_stride if i in pool_blocks else 1, window_size=window,
                use_mask_unit_attn=use_mask_unit_attn, norm_epsilon=self.norm_epsilon,
                seed=None if self.seed is None else self.seed + 2 * i, dtype=self.dtype_policy, name=f"block_{i}"))
            if i in self.stage_ends:
                dims.append(dim_out)
            dim = dim_out
        return blocks, dims

    def build(self, images_shape=None):
        if self.built:
            return
        pad = 2 * self.patch_padding
        self.patch_embed.build((None, self.image_size[0] + pad, self.image_size[1] + pad, self.num_channels))
        n = math.prod(self.token_shape)
        self.pos_embed = self.add_weight(shape=(1, n, self.embed_dim), name="pos_embed",
                                         initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        dim = self.embed_dim
        for block in self.blocks:
            block.build((None, n, dim))
            n, dim = n // max(block.q_stride, 1), block.dim_out
        self.built = True

    def build_from_config(self, config):
        self.build()

    @property
    def input_size(self):
        return self.image_size

    def check_images(self, images, name="images"):
        """Raise a clear error unless `images` is a float batch of this encoder's size."""
        shape = check_image_batch(images, self.num_channels, name)
        grid = check_image_size(shape[1:3], self.patch_size, f"`{name}` size")
        if tuple(shape[1:3]) != self.image_size:
            raise ValueError(f"`{name}` size {tuple(shape[1:3])} differs from the encoder's image_size "
                             f"{self.image_size} (Hiera's position embedding is learned for that size).")
        return grid

    def stage_levels(self, stage):
        """Strides a mask unit still spans after `stage` (0-based): its side is `q_stride ** levels`."""
        return self.levels - min(stage, self.q_pool)

    # ------------------------------------------------------------------ forward
    def embed(self, images, ids_keep=None):
        """Patch embedding + position embedding, unrolled, visible units only: `(B, J * K, D)`."""
        x = images
        if ids_keep is not None:  # hidden units' pixels are zero before the overlapping kernel
            active = cell_mask_to_active(hidden_mask(ids_keep, self.num_patches), self.grid_shape)
            x = apply_active(x, active_like(active, x))
        p = self.patch_padding
        if p:
            x = ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        x = self.patch_embed(x)  # (B, th, tw, D)
        x = ops.reshape(x, (-1, math.prod(self.token_shape), self.embed_dim)) + ops.cast(self.pos_embed, x.dtype)
        x = unroll(x, self.token_shape, self.q_stride, self.levels)  # (B, J * U, D)
        return x if ids_keep is None else keep_units(x, ids_keep, self.num_patches)

    def stage_units(self, images, ids_keep=None, training=None, stages=None):
        """Each stage's output as units `(B, K, u, u, C)` (K = every unit in order without
        `ids_keep`); the official intermediates with a mask. `stages` (indices, default all)
        picks the stages to return, in stage order: only those are rerolled."""
        num_stages = len(self.stage_depths)
        wanted = range(num_stages) if stages is None else sorted({s % num_stages for s in stages})
        x = self.embed(images, ids_keep)
        k = self.num_patches if ids_keep is None else ids_keep.shape[1]
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x, training=training)
            stage = self.stage_ends.index(i) if i in self.stage_ends else None
            if stage in wanted:
                out.append(reroll(x, k, self.q_stride, self.stage_levels(stage)))
        return out

    def feature_maps(self, images, training=None):
        """Each stage as a feature map `(B, h, w, C)`, finest first (for dense tasks)."""
        return [undo_windowing(u, self.grid_shape) for u in self.stage_units(images, training=training)]

    def call(self, images, ids_keep=None, training=None):
        """The last stage's tokens: `(B, N, D)` row-major over `output_grid_shape`, or with
        `ids_keep` the visible units' tokens `(B, K * u * u, D)`, unit by unit."""
        [last] = self.stage_units(images, ids_keep, training=training, stages=[-1])  # (B, K, u, u, D)
        if ids_keep is None:
            last = undo_windowing(last, self.grid_shape)
        return ops.reshape(last, (-1, math.prod(last.shape[1:-1]), last.shape[-1]))

    def pooled_features(self, images, training=None):
        """Average of the last stage `(B, D)` (what the official head normalises and reads)."""
        [last] = self.stage_units(images, training=training, stages=[-1])  # (B, U, u, u, D), any order
        return ops.mean(last, axis=(1, 2, 3))

    def with_q_pool(self, q_pool):
        """A copy that pools at `q_pool` stage transitions, with these weights (pooling has
        none). The official fine-tuning turns MAE's `q_pool=2` encoder into a `q_pool=3` one."""
        encoder = type(self).from_config({**self.get_config(), "q_pool": q_pool})
        encoder.set_weights(self.get_weights())
        return encoder

    def get_config(self):
        config = super().get_config()
        config.update(image_size=self.image_size, num_channels=self.num_channels, embed_dim=self.embed_dim,
                      num_heads=self.num_heads, stages=self.stage_depths, q_pool=self.q_pool, q_stride=self.q_stride,
                      mask_unit_attn=self.mask_unit_attn, dim_mul=self.dim_mul, head_mul=self.head_mul,
                      patch_kernel=self.patch_kernel, patch_stride=self.patch_stride,
                      patch_padding=self.patch_padding, mlp_ratio=self.mlp_ratio,
                      drop_path_rate=self.drop_path_rate, norm_epsilon=self.norm_epsilon, seed=self.seed)
        return config
