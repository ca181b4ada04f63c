"""The Point-MAE encoder: point clouds -> local groups -> tokens -> a transformer."""

import keras
import numpy as np

from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.point_group_embedding import PointGroupEmbedding
from keras_mim.layers.point_ops import group_points
from keras_mim.layers.token_ops import gather_tokens
from keras_mim.layers.transformer_block import TransformerBlock
from keras_mim.models.preset_io import EncoderPresetMixin
from keras_mim.utils import block_indices, check_positive_int


@keras.saving.register_keras_serializable(package="keras_mim")
class PointEncoder(EncoderPresetMixin, keras.Model):
    """Point clouds `(B, num_points, 3)` -> group tokens `(B, num_groups, embed_dim)`.

    As the official Point-MAE: `num_groups` centres by farthest point sampling, each with
    its `group_size` nearest points taken relative to it (`keras_mim.layers.point_ops`);
    a mini-PointNet makes one token per group (`PointGroupEmbedding`); an MLP of the
    centre (3 -> 128 -> GELU -> `embed_dim`) is the position embedding, added to the
    tokens before every block; pre-norm blocks without qkv bias, stochastic depth rising
    linearly to `drop_path_rate`; a final LayerNorm. No cls token. With `ids_keep` `(B,
    K)` only those groups are encoded (the visible ones in pretraining).

    Its token grid is `(num_groups,)`, so the mask generators that work on any grid
    (`"random"`) choose the hidden groups. It keeps the encoder protocol of `ViTEncoder`
    where it applies: `input_size == image_size == (num_points,)`, `num_channels == 3`,
    `grid_shape == (num_groups,)`, `patch_size == (group_size,)`.

    Args:
        num_points: points per cloud (Point-MAE: 1024).
        num_groups: groups (tokens) per cloud (64).
        group_size: points per group (32).
        embed_dim: token width (384).
        depth: transformer blocks (12).
        num_heads: attention heads (6).
        mlp_ratio: MLP width / token width (4).
        drop_path_rate: stochastic depth of the last block (0.1).
        norm_epsilon: LayerNorm epsilon (PyTorch's default, 1e-5, as the official code).
        seed: optional int seed of drop path.
        **kwargs: standard model arguments.

    Examples:
        >>> import numpy as np
        >>> encoder = PointEncoder(num_points=64, num_groups=8, group_size=8, embed_dim=32, depth=1, num_heads=2)
        >>> tuple(encoder(np.random.rand(2, 64, 3).astype("float32")).shape)
        (2, 8, 32)
    """

    def __init__(self, num_points=1024, num_groups=64, group_size=32, embed_dim=384, depth=12, num_heads=6,
                 mlp_ratio=4.0, drop_path_rate=0.1, norm_epsilon=1e-5, seed=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("num_points", num_points), ("num_groups", num_groups), ("group_size", group_size),
                            ("embed_dim", embed_dim), ("depth", depth), ("num_heads", num_heads)):
            check_positive_int(value, name)
        if num_groups > num_points or group_size > num_points:
            raise ValueError(f"A cloud of `num_points`={num_points} cannot make `num_groups`={num_groups} groups of "
                             f"`group_size`={group_size} points; each must be at most num_points.")
        if embed_dim % num_heads:
            raise ValueError(f"`num_heads`={num_heads} must divide `embed_dim`={embed_dim}.")
        self.num_points, self.num_groups, self.group_size = num_points, num_groups, group_size
        self.embed_dim, self.depth, self.num_heads = embed_dim, depth, num_heads
        self.mlp_ratio, self.drop_path_rate, self.norm_epsilon = float(mlp_ratio), float(drop_path_rate), float(norm_epsilon)
        self.seed = seed
        p = self.dtype_policy
        self.group_embed = PointGroupEmbedding(embed_dim, dtype=p, name="group_embed")
        self.pos_fc1 = keras.layers.Dense(128, dtype=p, name="pos_fc1")
        self.pos_fc2 = keras.layers.Dense(embed_dim, dtype=p, name="pos_fc2")
        rates = np.linspace(0.0, self.drop_path_rate, depth)
        self.blocks = [
            TransformerBlock(num_heads, mlp_ratio, qkv_bias=False, drop_path=float(rates[i]), norm_epsilon=norm_epsilon,
                             seed=None if seed is None else seed + 2 * i, dtype=p, name=f"block_{i}")
            for i in range(depth)
        ]
        self.norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="norm")
        self.build()

    # ------------------------------------------------------------------ the encoder protocol
    image_size = property(lambda self: (self.num_points,))
    input_size = property(lambda self: (self.num_points,))
    patch_size = property(lambda self: (self.group_size,))
    patch_shape = property(lambda self: (self.group_size,))
    num_channels = 3
    grid_shape = property(lambda self: (self.num_groups,))
    output_grid_shape = property(lambda self: (self.num_groups,))
    num_patches = property(lambda self: self.num_groups)
    num_prefix_tokens = 0
    output_dim = property(lambda self: self.embed_dim)

    def check_images(self, points, name="points"):
        """Raise a clear error unless `points` is a float batch `(B, num_points, 3)`; returns
        the token grid `(num_groups,)`."""
        shape = tuple(points.shape)
        if len(shape) != 3:
            raise ValueError(f"`{name}` must be a batch of point clouds (B, num_points, 3), got rank {len(shape)} "
                             f"shape {shape}.")
        dtype = keras.backend.standardize_dtype(points.dtype)
        if "float" not in dtype:
            raise TypeError(f"`{name}` must be a float tensor of coordinates, got dtype {dtype}.")
        if shape[-1] != 3:
            raise ValueError(f"`{name}` has {shape[-1]} channels per point but the encoder takes x, y, z (3).")
        if shape[1] is not None and shape[1] != self.num_points:
            raise ValueError(f"`{name}` has clouds of size {shape[1]} points but the encoder takes `num_points`="
                             f"{self.num_points}; sample or repeat points to that count.")
        return self.grid_shape

    def build(self, points_shape=None):
        if self.built:
            return
        self.group_embed.build((None, self.num_groups, self.group_size, 3))
        self.pos_fc1.build((None, self.num_groups, 3))
        self.pos_fc2.build((None, self.num_groups, 128))
        shape = (None, self.num_groups, self.embed_dim)
        for block in self.blocks:
            block.build(shape)
        self.norm.build(shape)
        self.built = True

    # ------------------------------------------------------------------ the method
    def group(self, points):
        """`(neighbourhoods (B, G, K, 3) relative to their centres, centres (B, G, 3))`."""
        self.check_images(points)
        return group_points(points, self.num_groups, self.group_size)

    def position_embedding(self, centres):
        """`(B, n, 3) -> (B, n, D)`: the MLP of the group centres."""
        return self.pos_fc2(keras.activations.gelu(self.pos_fc1(centres), approximate=False))

    def encode_groups(self, neighbourhoods, centres, ids_keep=None, training=None, return_layers=None):
        """Tokens of the groups (only those at `ids_keep` when given), through the blocks:
        `(B, G or K, D)`. With `return_layers` (block indices), also the list of those
        blocks' outputs (before the final norm): `(output, [features])`."""
        tokens = self.group_embed(neighbourhoods, training=training)  # (B, G, D)
        pos = self.position_embedding(centres)  # (B, G, D)
        if ids_keep is not None:
            tokens, pos = gather_tokens(tokens, ids_keep), gather_tokens(pos, ids_keep)
        wanted = None if return_layers is None else self.layer_indices(return_layers)
        x, features = tokens, {}
        for i, block in enumerate(self.blocks):
            x = block(x + pos, training=training)  # the position is added before every block (official)
            if wanted is not None and i in wanted:
                features[i] = x
        x = self.norm(x)
        return x if wanted is None else (x, [features[i] for i in wanted])

    def call(self, points, ids_keep=None, training=None):
        neighbourhoods, centres = self.group(points)
        return self.encode_groups(neighbourhoods, centres, ids_keep=ids_keep, training=training)

    def forward_features(self, points, layers, ids_keep=None, training=None):
        """Outputs of the blocks `layers` (list of `(B, G or K, D)`, before the final norm)
        and the final output, as `(output, features)` (as `ViTEncoder.forward_features`:
        what linear probes of a chosen block and classifiers read)."""
        neighbourhoods, centres = self.group(points)
        return self.encode_groups(neighbourhoods, centres, ids_keep=ids_keep, training=training,
                                  return_layers=layers)

    def layer_indices(self, layers):
        """Normalise block indices (negative count from the end); raise on bad ones."""
        return block_indices(layers, self.depth)

    def layer_groups(self):
        """Layer-wise lr decay's groups: the group embedding and the centre MLP (layer 0),
        then one block each (`keras_mim.optimizers.layer_ids`)."""
        return [[self.group_embed, self.pos_fc1, self.pos_fc2], *([block] for block in self.blocks)]

    def get_config(self):
        config = super().get_config()
        config.update(num_points=self.num_points, num_groups=self.num_groups, group_size=self.group_size,
                      embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                      drop_path_rate=self.drop_path_rate, norm_epsilon=self.norm_epsilon, seed=self.seed)
        return config
