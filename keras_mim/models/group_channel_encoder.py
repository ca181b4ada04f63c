"""The SatMAE encoder (Cong et al., NeurIPS 2022; sustainlab-group/SatMAE,
`models_mae_group_channels.py`, `models_mae_temporal.py`): a ViT on multispectral images
whose bands are cut into groups, one token per group and patch, and optionally on a few
dated frames of the same place. Also the fixed SatMAE encodings its decoder shares."""

import math

import keras
import numpy as np
from keras import ops

from keras_mim.layers.patching import PatchEmbedding
from keras_mim.layers.pos_embed import sincos_1d, sincos_2d
from keras_mim.layers.token_ops import gather_tokens
from keras_mim.models.vit_encoder import ViTEncoder
from keras_mim.utils import check_image_batch, check_positive_int


def check_channel_groups(channel_groups, num_channels):
    """`channel_groups` as a tuple of tuples of band indices covering `range(num_channels)`
    exactly once (None: one group of every band); raises naming the bad bands."""
    if channel_groups is None:
        return (tuple(range(num_channels)),)
    ok = isinstance(channel_groups, (tuple, list)) and channel_groups and all(
        isinstance(g, (tuple, list)) and g and all(isinstance(b, int) and not isinstance(b, bool) for b in g)
        for g in channel_groups)
    if not ok:
        raise TypeError(f"`channel_groups` must be None or a non-empty tuple of non-empty tuples of band indices, "
                        f"e.g. ((0, 1, 2, 6), (3, 4, 5, 7), (8, 9)), got {channel_groups!r}.")
    groups = tuple(tuple(int(b) for b in g) for g in channel_groups)
    bands = [b for g in groups for b in g]
    problems = []
    outside = sorted({b for b in bands if not 0 <= b < num_channels})
    if outside:
        problems.append(f"bands {outside} are out of range")
    repeated = sorted({b for b in bands if bands.count(b) > 1})
    if repeated:
        problems.append(f"bands {repeated} are in more than one place")
    missing = sorted(set(range(num_channels)) - set(bands))
    if missing:
        problems.append(f"bands {missing} are in no group")
    if problems:
        raise ValueError(f"`channel_groups`={channel_groups!r} must name every band 0..{num_channels - 1} of "
                         f"`num_channels`={num_channels} exactly once: {'; '.join(problems)}.")
    return groups


def check_band_statistics(band_mean, band_std, num_channels):
    """`(band_mean, band_std)` as tuples of `num_channels` floats (stds positive), or
    `(None, None)`; raises naming the argument otherwise."""
    if (band_mean is None) != (band_std is None):
        raise ValueError(f"Give both `band_mean` and `band_std` or neither, got band_mean={band_mean!r}, "
                         f"band_std={band_std!r}.")
    if band_mean is None:
        return None, None
    out = []
    for name, value in (("band_mean", band_mean), ("band_std", band_std)):
        values = np.asarray(value, "float64")
        if values.shape != (num_channels,) or not np.isfinite(values).all():
            raise ValueError(f"`{name}` must hold one finite number per band ({num_channels}, `num_channels`), "
                             f"got {value!r}.")
        out.append(tuple(float(v) for v in values))
    if min(out[1]) <= 0:
        raise ValueError(f"`band_std` must be positive, got {band_std!r}.")
    return tuple(out)


def encoding_dims(dim, num_groups, temporal, group_dim=None, time_dim=None, prefix=""):
    """`(spatial, group, time)` widths of a SatMAE encoding of width `dim`: the group part
    (default `dim // 4` with several groups, else 0), the time part (default
    `3 * (dim // 8)` when `temporal`, else 0; three sin-cos parts) and the 2D position
    part, the rest (a positive multiple of 4). `prefix` names the arguments (`decoder_`)."""
    names = (f"{prefix}group_embed_dim", f"{prefix}time_embed_dim")
    if group_dim is None:
        group_dim = dim // 4 if num_groups > 1 else 0
    if time_dim is None:
        time_dim = 3 * (dim // 8) if temporal else 0
    for name, value in zip(names, (group_dim, time_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative int or None, got {value!r}.")
    if group_dim % 2:
        raise ValueError(f"`{names[0]}`={group_dim} must be even (a 1D sin-cos of the group index).")
    if temporal and (time_dim <= 0 or time_dim % 6):
        raise ValueError(f"`{names[1]}`={time_dim} must be a positive multiple of 6 (three 1D sin-cos parts: "
                         "year, month, hour) for a temporal model.")
    if not temporal and time_dim:
        raise ValueError(f"`{names[1]}`={time_dim} needs a temporal model (`num_frames` set); leave it None.")
    spatial = dim - group_dim - time_dim
    if spatial <= 0 or spatial % 4:
        raise ValueError(f"The width {dim} minus `{names[0]}`={group_dim} and `{names[1]}`={time_dim} leaves "
                         f"{spatial} for the 2D sin-cos position, which must be a positive multiple of 4.")
    return spatial, group_dim, time_dim


def encoding_table(dims, grid, num_groups, num_frames=1, cls_group=False):
    """The fixed encoding `(1 + T G gh gw, D)` (numpy): a row per token, frame-major, then
    group, then row-major patches: `[2D sin-cos of the patch, 1D sin-cos of the group,
    zeros for the time part]`. The first row is the cls token's: zeros, or with
    `cls_group` the group part of index G (SatMAE's decoder gives its cls that "extra
    channel")."""
    spatial, group_dim, time_dim = dims
    n = math.prod(grid)
    parts = [np.tile(sincos_2d(spatial, grid), (num_frames * num_groups, 1))]  # (T G N, Ds)
    if group_dim:
        groups = np.repeat(sincos_1d(group_dim, np.arange(num_groups)), n, axis=0)  # (G N, Dg)
        parts.append(np.tile(groups, (num_frames, 1)))
    parts.append(np.zeros((num_frames * num_groups * n, time_dim)))
    table = np.concatenate(parts, axis=1)
    cls = np.zeros((1, table.shape[1]))
    if cls_group and group_dim:
        cls[0, spatial : spatial + group_dim] = sincos_1d(group_dim, np.array([num_groups]))[0]
    return np.concatenate([cls, table], axis=0).astype("float32")


def time_encoding(timestamps, time_dim, year_origin, tokens_per_frame):
    """SatMAE's time encoding of timestamps `(B, T, 3)` (year, month 1-12, hour):
    `[sin-cos(year - year_origin), sin-cos(month - 1), sin-cos(hour)]`, each a 1D sin-cos
    of width `time_dim / 3` (`sincos_1d`'s formula), repeated over the
    `tokens_per_frame` tokens of each frame: `(B, T tokens_per_frame, time_dim)` float32."""
    d = time_dim // 3
    origin = ops.convert_to_tensor(np.array([year_origin, 1.0, 0.0], "float32"))
    t = ops.subtract(ops.cast(timestamps, "float32"), origin)  # (B, T, 3)
    omega = ops.convert_to_tensor((1.0 / 10000 ** (np.arange(d // 2) / (d / 2.0))).astype("float32"))  # (d/2,)
    angles = ops.multiply(ops.expand_dims(t, -1), omega)  # (B, T, 3, d/2)
    enc = ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)  # (B, T, 3, d)
    frames = t.shape[1]
    enc = ops.reshape(enc, (-1, frames, 1, 3 * d))
    enc = ops.broadcast_to(enc, (ops.shape(enc)[0], frames, tokens_per_frame, 3 * d))
    return ops.reshape(enc, (-1, frames * tokens_per_frame, 3 * d))


@keras.saving.register_keras_serializable(package="keras_mim")
class GroupChannelEncoder(keras.Model):
    """SatMAE's ViT encoder: a token per band group and patch, with fixed group and time encodings.

    The bands of a multispectral image are split into `channel_groups`; each group has its
    own patch embedding (on its bands only), so an image of G groups becomes G x gh x gw
    tokens. Each token gets a fixed encoding: the MAE 2D sin-cos of its patch (width
    `D - group_embed_dim - time_embed_dim`), then the 1D sin-cos of its group index
    (`group_embed_dim`, SatMAE: D / 4), concatenated. The cls token has no encoding.

    Temporal (`num_frames` = T): the input is a dict `{"frames": (B, T, H, W, C),
    "timestamps": (B, T, 3)}`, timestamps as (year, month 1-12, hour); the patch
    embeddings are shared by the frames, and each frame's tokens also carry the sin-cos of
    `year - year_origin`, `month - 1` and `hour` (`time_embed_dim / 3` each; SatMAE:
    3 x 128 for D = 1024), computed from the timestamps in `call`.

    Tokens are ordered frame-major, then group, then row-major patches: the token grid
    `grid_shape` is `(T G, gh, gw)` (`(G, gh, gw)` for images), what mask generators
    work on. The cls token, the blocks and the final norm are a `ViTEncoder`,
    `encoder.trunk`, whose patch embedding is group 0's (its own position table is not
    used). Pooled like any ViT by `ImageClassifier` and the probes (images only).

    Args:
        image_size: int or `(H, W)`.
        patch_size: int or `(ph, pw)`.
        num_channels: bands C of the input.
        channel_groups: tuple of tuples of band indices covering every band once
            (SatMAE's Sentinel-2 grouping: `SENTINEL2_GROUPS` in `keras_mim.models.satmae`);
            None: one group of all bands.
        embed_dim: token width D.
        depth: transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / D.
        qkv_bias: bias on the qkv projections.
        num_frames: None for images; T dated frames of one place (SatMAE temporal: 3).
        group_embed_dim: width of the group encoding (default D / 4 with several groups,
            else 0); even.
        time_embed_dim: width of the time encoding (default `3 * (D // 8)` when temporal);
            a multiple of 6.
        year_origin: the year encoded as 0 (SatMAE: 2002).
        band_mean: None, or the per-band means `(C,)` of the training set: with `band_std`,
            each band is mapped from `[mean - 2 std, mean + 2 std]` to `[0, 1]` and clipped
            before anything else (SatMAE's `SentinelNormalize`, done in the data pipeline
            there), so the model takes raw reflectances.
        band_std: None, or the per-band standard deviations `(C,)` (with `band_mean`).
        drop_path_rate: stochastic depth of the last block.
        norm_epsilon: LayerNorm epsilon.
        seed: optional int seed of drop path.
        **kwargs: standard model arguments.

    Examples:
        >>> import numpy as np
        >>> enc = GroupChannelEncoder(image_size=16, patch_size=4, num_channels=10,
        ...                           channel_groups=((0, 1, 2, 6), (3, 4, 5, 7), (8, 9)),
        ...                           embed_dim=32, depth=2, num_heads=2)
        >>> enc.grid_shape, tuple(enc(np.zeros((2, 16, 16, 10), "float32")).shape)
        ((3, 4, 4), (2, 49, 32))
    """

    def __init__(self, image_size=224, patch_size=16, num_channels=3, channel_groups=None, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4.0, qkv_bias=True, num_frames=None, group_embed_dim=None,
                 time_embed_dim=None, year_origin=2002, band_mean=None, band_std=None, drop_path_rate=0.0,
                 norm_epsilon=1e-6, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_channels = check_positive_int(num_channels, "num_channels")
        self.channel_groups = check_channel_groups(channel_groups, self.num_channels)
        self.num_frames = None if num_frames is None else check_positive_int(num_frames, "num_frames")
        self.embed_dim = check_positive_int(embed_dim, "embed_dim")
        g = len(self.channel_groups)
        self.encoding_dims = encoding_dims(self.embed_dim, g, self.num_frames is not None, group_embed_dim,
                                           time_embed_dim)
        if isinstance(year_origin, bool) or not isinstance(year_origin, (int, float)):
            raise TypeError(f"`year_origin` must be a number (SatMAE: 2002), got {year_origin!r}.")
        self.year_origin = year_origin
        self.band_mean, self.band_std = check_band_statistics(band_mean, band_std, self.num_channels)
        p = self.dtype_policy
        self.trunk = ViTEncoder(
            image_size=image_size, patch_size=patch_size, num_channels=len(self.channel_groups[0]),
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            cls_token=True, pos_embed="sincos_1d", drop_path_rate=drop_path_rate, norm_epsilon=norm_epsilon,
            seed=seed, dtype=p, name="trunk")
        t = self.trunk
        self.image_size, self.patch_size, self.patch_shape = t.image_size, t.patch_size, t.patch_size
        self.input_size = t.image_size if self.num_frames is None else (self.num_frames,) + t.image_size
        self.depth, self.num_heads, self.mlp_ratio, self.qkv_bias = t.depth, t.num_heads, t.mlp_ratio, t.qkv_bias
        self.drop_path_rate, self.norm_epsilon, self.seed = t.drop_path_rate, t.norm_epsilon, seed
        self.spatial_grid = tuple(t.grid_shape)  # (gh, gw)
        self.grid_shape = ((self.num_frames or 1) * g,) + self.spatial_grid
        self.num_patches = math.prod(self.grid_shape)
        self.output_grid_shape, self.output_dim, self.num_prefix_tokens = self.grid_shape, self.embed_dim, 1
        self.patch_embeds = [t.patch_embed] + [
            PatchEmbedding(self.patch_size, self.embed_dim, dtype=p, name=f"patch_embed_{i}")
            for i in range(1, g)]
        self.build()

    @classmethod
    def cell_size(cls, patch_size=16, **config):
        """Pixels behind one token (the patch), for preset listings."""
        return patch_size

    @property
    def blocks(self):
        """The transformer blocks (the trunk's)."""
        return self.trunk.blocks

    @property
    def norm(self):
        """The final norm (the trunk's)."""
        return self.trunk.norm

    def build(self, input_shape=None):
        if self.built:
            return
        for group, layer in zip(self.channel_groups[1:], self.patch_embeds[1:]):
            layer.build((None,) + self.image_size + (len(group),))
        table = encoding_table(self.encoding_dims, self.spatial_grid, len(self.channel_groups), self.num_frames or 1)
        self.encoding = self.add_weight(shape=table[1:].shape, initializer=keras.initializers.Constant(table[1:]),
                                        trainable=False, name="encoding")  # (T G N, D), no cls row
        self.built = True

    def build_from_config(self, config):
        self.build()

    def layer_groups(self):
        """Layers by fine-tuning depth (`keras_mim.optimizers.layer_decay`, MAE's table): the
        patch embeddings of every group and the cls token are layer 0, block i is layer
        i + 1 (the final norm and a classifier's head come after)."""
        return [list(self.patch_embeds) + [self.trunk.cls_token]] + [[block] for block in self.blocks]

    def layer_indices(self, layers):
        """Normalise block indices (negative count from the end); raise on bad ones."""
        return self.trunk.layer_indices(layers)

    def check_images(self, inputs, name="images"):
        """Raise a clear error unless `inputs` fit this encoder (images `(B, H, W, C)`; temporal:
        a dict of `frames` `(B, T, H, W, C)` and `timestamps` `(B, T, 3)`); returns the grid."""
        if self.num_frames is None:
            if isinstance(inputs, dict):
                raise ValueError(f"`{name}` must be images (B, H, W, {self.num_channels}) for this encoder "
                                 f"(no `num_frames`), got a dict of {sorted(inputs)}.")
            size = check_image_batch(inputs, self.num_channels, name)[1:3]
        else:
            if not isinstance(inputs, dict) or set(inputs) != {"frames", "timestamps"}:
                got = sorted(inputs) if isinstance(inputs, dict) else f"shape {tuple(getattr(inputs, 'shape', ()))}"
                raise ValueError(f"`{name}` must be a dict {{'frames': (B, {self.num_frames}, H, W, C), 'timestamps': "
                                 f"(B, {self.num_frames}, 3)}} for a temporal encoder (`num_frames`="
                                 f"{self.num_frames}), got {got}.")
            shape = check_image_batch(inputs["frames"], self.num_channels, f"{name}['frames']", clips=True)
            stamps = tuple(inputs["timestamps"].shape)
            if shape[1] != self.num_frames or len(stamps) != 3 or stamps[1:] != (self.num_frames, 3):
                raise ValueError(f"`{name}` must hold {self.num_frames} frames (`num_frames`) and timestamps "
                                 f"(B, {self.num_frames}, 3) of (year, month, hour), got frames {shape} and "
                                 f"timestamps {stamps}.")
            size = shape[2:4]
        if tuple(size) != tuple(self.image_size):
            raise ValueError(f"`{name}` has images of size {tuple(size)} but this encoder takes {self.image_size} "
                             "(`image_size`); resize or crop them, or build the encoder with that size.")
        return self.grid_shape

    def token_encoding(self, timestamps=None):
        """The encoding added to each token: `(1, T G N, D)`, or `(B, T G N, D)` with the time
        part of `timestamps` `(B, T, 3)` (needed by a temporal encoder)."""
        table = ops.expand_dims(self.encoding, 0)
        if self.num_frames is None:
            return table
        if timestamps is None:
            raise ValueError(f"A temporal encoder (`num_frames`={self.num_frames}) needs `timestamps` (B, T, 3).")
        time = time_encoding(timestamps, self.encoding_dims[2], self.year_origin,
                             len(self.channel_groups) * math.prod(self.spatial_grid))
        return table + ops.pad(time, [[0, 0], [0, 0], [self.embed_dim - self.encoding_dims[2], 0]])

    def band_range(self):
        """`(low, width)` float32 tensors `(C,)`: `mean - 2 std` and `4 std` of each band."""
        mean, std = np.asarray(self.band_mean, "float32"), np.asarray(self.band_std, "float32")
        return ops.convert_to_tensor(mean - 2.0 * std), ops.convert_to_tensor(np.maximum(4.0 * std, 1e-12))

    def normalize_bands(self, images):
        """The images as the encoder sees them: each band normalised with `band_mean` /
        `band_std` (float32), or unchanged without them."""
        if self.band_mean is None:
            return images
        low, width = self.band_range()
        return ops.clip(ops.divide(ops.subtract(ops.cast(images, "float32"), low), width), 0.0, 1.0)

    def denormalize_bands(self, images):
        """The inverse of `normalize_bands` (but its clipping), float32."""
        if self.band_mean is None:
            return ops.cast(images, "float32")
        low, width = self.band_range()
        return ops.add(ops.multiply(ops.cast(images, "float32"), width), low)

    def embed_tokens(self, inputs):
        """Every token with its encoding, no cls: `(B, T G N, D)`."""
        self.check_images(inputs)
        x = self.normalize_bands(inputs if self.num_frames is None else inputs["frames"])
        if self.num_frames is not None:
            x = ops.reshape(x, (-1,) + self.image_size + (self.num_channels,))  # (B T, H, W, C)
        tokens = ops.concatenate([embed(ops.take(x, group, axis=-1))  # (B T, N, D) per group
                                  for group, embed in zip(self.channel_groups, self.patch_embeds)], axis=1)
        tokens = ops.reshape(tokens, (-1, self.num_patches, self.embed_dim))  # (B, T G N, D)
        stamps = None if self.num_frames is None else inputs["timestamps"]
        return tokens + ops.cast(self.token_encoding(stamps), tokens.dtype)

    def select_tokens(self, inputs, ids_keep=None):
        """The tokens the blocks see: all `(B, T G N, D)`, or the `ids_keep` subset `(B, K, D)`."""
        x = self.embed_tokens(inputs)
        return x if ids_keep is None else gather_tokens(x, ids_keep)

    def call(self, inputs, ids_keep=None, training=None):
        """Encode all tokens, or the `ids_keep` `(B, K)` subset: `(B, 1 + K, D)`, cls first."""
        return self.trunk.encode_tokens(self.select_tokens(inputs, ids_keep), training=training)

    def forward_features(self, inputs, layers, ids_keep=None, training=None):
        """Outputs of the blocks `layers` (before the final norm) and the final output,
        as `(output, features)`."""
        x = self.select_tokens(inputs, ids_keep)
        return self.trunk.encode_tokens(x, training=training, return_layers=layers)

    def get_config(self):
        config = super().get_config()
        config.update(image_size=self.image_size, patch_size=self.patch_size, num_channels=self.num_channels,
                      channel_groups=self.channel_groups, embed_dim=self.embed_dim, depth=self.depth,
                      num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias,
                      num_frames=self.num_frames, group_embed_dim=self.encoding_dims[1],
                      time_embed_dim=self.encoding_dims[2], year_origin=self.year_origin,
                      band_mean=None if self.band_mean is None else list(self.band_mean),
                      band_std=None if self.band_std is None else list(self.band_std),
                      drop_path_rate=self.drop_path_rate, norm_epsilon=self.norm_epsilon, seed=self.seed)
        return config
