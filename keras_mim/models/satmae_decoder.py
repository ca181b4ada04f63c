"""SatMAE's decoder (sustainlab-group/SatMAE, `forward_decoder` of
`models_mae_group_channels.py` and `models_mae_temporal.py`): every token of every group
(and frame) back in place, the fixed SatMAE encoding, and one linear head per band group."""

import math

import keras
from keras import ops

from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.token_ops import restore_tokens
from keras_mim.layers.transformer_block import TransformerBlock
from keras_mim.models.group_channel_encoder import (
    check_channel_groups,
    encoding_dims,
    encoding_table,
    time_encoding,
)
from keras_mim.utils import check_positive_int, to_2tuple


@keras.saving.register_keras_serializable(package="keras_mim")
class SatMAEDecoder(keras.layers.Layer):
    """The SatMAE decoder: project, fill hidden places with a mask token, unshuffle, add
    the fixed encoding, run `depth` blocks, norm, then predict each group's patch pixels
    with that group's own linear head.

    The encoding is the encoder's, at decoder width: the 2D sin-cos of the patch, the
    group's 1D sin-cos (`group_embed_dim`, default a quarter of the width, SatMAE's 128 of
    512) and, when temporal, the sin-cos of each frame's (year, month, hour)
    (`time_embed_dim`, default `3 * (decoder_dim // 8)`, SatMAE's 3 x 64 of 512). As in
    SatMAE, the cls token gets the group part of index G (an extra "group") and no
    position.

    Args:
        channel_groups: the encoder's band groups (tuple of tuples of band indices).
        patch_size: int or `(ph, pw)`.
        spatial_grid: `(gh, gw)` patches per image.
        num_frames: None, or the frames T of a temporal model.
        decoder_dim: decoder width (SatMAE: 512).
        depth: decoder blocks (SatMAE: 8).
        num_heads: decoder heads (SatMAE: 16).
        mlp_ratio: MLP hidden width / decoder width.
        group_embed_dim: width of the group encoding (default as described).
        time_embed_dim: width of the time encoding (default as described).
        year_origin: the year encoded as 0 (SatMAE: 2002).
        norm_epsilon: LayerNorm epsilon.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> dec = SatMAEDecoder(((0, 1), (2,)), 2, (2, 2), decoder_dim=16, depth=1, num_heads=2)
        >>> latent = np.zeros((1, 3, 8), "float32")  # cls + 2 visible of the 8 tokens
        >>> [tuple(p.shape) for p in dec(latent, np.array([[0, 2, 1, 3, 4, 5, 6, 7]]))]
        [(1, 4, 8), (1, 4, 4)]
    """

    def __init__(self, channel_groups, patch_size, spatial_grid, num_frames=None, decoder_dim=512, depth=8,
                 num_heads=16, mlp_ratio=4.0, group_embed_dim=None, time_embed_dim=None, year_origin=2002,
                 norm_epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        bands = sum(len(g) for g in channel_groups) if isinstance(channel_groups, (tuple, list)) else 0
        self.channel_groups = check_channel_groups(channel_groups, bands)
        self.patch_size = to_2tuple(patch_size, "patch_size")
        self.spatial_grid = to_2tuple(spatial_grid, "spatial_grid")
        self.num_frames = None if num_frames is None else check_positive_int(num_frames, "num_frames")
        self.decoder_dim = check_positive_int(decoder_dim, "decoder_dim")
        self.depth = check_positive_int(depth, "depth")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        if decoder_dim % num_heads:
            raise ValueError(f"`num_heads`={num_heads} must divide `decoder_dim`={decoder_dim}.")
        self.encoding_dims = encoding_dims(decoder_dim, len(self.channel_groups), self.num_frames is not None,
                                           group_embed_dim, time_embed_dim)
        self.mlp_ratio, self.year_origin, self.norm_epsilon = float(mlp_ratio), year_origin, float(norm_epsilon)
        self.num_tokens = (self.num_frames or 1) * len(self.channel_groups) * math.prod(self.spatial_grid)
        p = self.dtype_policy
        self.embed = keras.layers.Dense(decoder_dim, dtype=p, name="decoder_embed")
        self.blocks = [TransformerBlock(num_heads, mlp_ratio, norm_epsilon=norm_epsilon, dtype=p,
                                        name=f"decoder_block_{i}") for i in range(depth)]
        self.norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="decoder_norm")
        area = math.prod(self.patch_size)
        self.heads = [keras.layers.Dense(area * len(g), dtype=p, name=f"decoder_pred_{i}")
                      for i, g in enumerate(self.channel_groups)]

    def build(self, latent_shape, ids_restore_shape=None):
        self.embed.build(latent_shape)
        shape = (None, 1 + self.num_tokens, self.decoder_dim)
        table = encoding_table(self.encoding_dims, self.spatial_grid, len(self.channel_groups),
                               self.num_frames or 1, cls_group=True)  # (1 + T G N, Dd)
        self.encoding = self.add_weight(shape=table.shape, initializer=keras.initializers.Constant(table),
                                        trainable=False, name="encoding")
        self.mask_token = self.add_weight(shape=(1, 1, self.decoder_dim), name="mask_token",
                                          initializer=keras.initializers.RandomNormal(stddev=0.02))
        for layer in self.blocks + [self.norm] + self.heads:
            layer.build(shape)

    def call(self, latent, ids_restore, timestamps=None, training=None):
        """`latent` `(B, 1 + K, De)`, `ids_restore` `(B, T G N)` (and `timestamps` `(B, T, 3)`
        when temporal) -> a list, one `(B, T N, ph pw |g|)` per group, each token's
        pixels in (row, col, band of the group) order."""
        x = self.embed(latent)  # (B, 1 + K, Dd)
        tokens = restore_tokens(x[:, 1:], ids_restore, self.mask_token)  # (B, T G N, Dd)
        x = ops.concatenate([x[:, :1], tokens], axis=1) + ops.cast(ops.expand_dims(self.encoding, 0), x.dtype)
        if self.num_frames is not None:
            if timestamps is None:
                raise ValueError(f"A temporal decoder (`num_frames`={self.num_frames}) needs `timestamps`.")
            per_frame = self.num_tokens // self.num_frames
            time = time_encoding(timestamps, self.encoding_dims[2], self.year_origin, per_frame)  # (B, T G N, Dt)
            time = ops.pad(time, [[0, 0], [1, 0], [self.decoder_dim - self.encoding_dims[2], 0]])  # cls: zeros
            x = x + ops.cast(time, x.dtype)
        for block in self.blocks:
            x = block(x, training=training)
        x = self.norm(x)[:, 1:]  # (B, T G N, Dd), no cls
        t, g, n = self.num_frames or 1, len(self.channel_groups), math.prod(self.spatial_grid)
        x = ops.reshape(x, (-1, t, g, n, self.decoder_dim))
        return [ops.reshape(head(x[:, :, i]), (-1, t * n, head.units)) for i, head in enumerate(self.heads)]

    def get_config(self):
        config = super().get_config()
        config.update(channel_groups=self.channel_groups, patch_size=self.patch_size, spatial_grid=self.spatial_grid,
                      num_frames=self.num_frames, decoder_dim=self.decoder_dim, depth=self.depth,
                      num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, group_embed_dim=self.encoding_dims[1],
                      time_embed_dim=self.encoding_dims[2], year_origin=self.year_origin,
                      norm_epsilon=self.norm_epsilon)
        return config
